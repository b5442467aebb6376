"""A segment definition reaching a person partition, as pure decisions: whether it is new here,
what it changes for each person, and the partition's segment state after it."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from app.core.evaluation import ActiveSegments, History, catch_up, evaluate
from app.core.messages import Definition
from app.core.outputs import Output
from app.core.person import PersonState
from app.segments.definition import Segment


#: One valid record of a segment in the definitions topic: (version, None for a deletion or
#: :data:`TOMBSTONE` for a deletion written as a tombstone; offset; record time in milliseconds
#: or None)
Entry = tuple[str | None, int, int | None]
#: segment id → its valid records, in topic order (``SegmentCatalog.history``)
Recorded = Mapping[str, Sequence[Entry]]

#: The version of a deletion written as a tombstone (a record with no value), as eventide wrote
#: them until 2026-12-07. A partition kept no trace of one it activated, so one with nothing
#: active could not tell a segment deleted there from one it never activated: it starts over
#: after the last tombstone (:func:`since_active`). A deletion written since (a value saying
#: so) leaves a marker in the partition's ``segment_state`` once activated there, and a
#: partition with neither activates every record after the last tombstone in turn, as live
#: partitions did whatever came first (an input, a tick or the items themselves).
TOMBSTONE = "\x00tombstone"


def version_of(entry: Entry) -> str | None:
    """The entry's version as a definition item carries it (None for either deletion)."""
    version = entry[0]
    return None if version == TOMBSTONE else version


def is_deletion(entry: Entry) -> bool:
    return entry[0] is None or entry[0] == TOMBSTONE


def recorded_by(recorded: Recorded, active: Mapping[str, str], at_ms: int,
                deleted: Mapping[str, int] | None = None
                ) -> tuple[list[Definition], int | None]:
    """The definitions recorded at or before ``at_ms`` that a partition with ``active``
    versions has not activated, in topic order, and when the next one not yet due was recorded
    (None: none).

    An input accepted at ``at_ms`` is evaluated against every definition recorded by then. Their
    ``segment`` items reach the partition through ``person.events``, and an input taken in place
    from ``raw.events`` is not ordered with them: activating them first, as their item would
    (which then finds them active), makes the input's evaluation the same whichever arrives
    first, live or replayed. Every version of a segment recorded since the active one is
    activated in turn, not only the latest: live, a partition activated each edit as it came,
    and an input accepted between two edits was evaluated against the first; a replay, whose
    catalog already holds the second, must do the same (:func:`since_active`; ``deleted``:
    segment id → the offset of the deletion this partition activated last). A record of
    unknown time is left to its item, and so is everything of its segment after it. Times
    compare in milliseconds: the worker can confirm its catalog holds every definition written
    before an instant (``SegmentCatalog.complete_through``), not before the end of a second that
    has not ended yet."""
    due: list[Definition] = []
    later: int | None = None
    deleted = deleted or {}
    for segment_id, entries in recorded.items():
        for entry in since_active(entries, active.get(segment_id), at_ms,
                                  deleted.get(segment_id)):
            recorded_at = entry[2]
            if recorded_at is None:
                break
            if recorded_at > at_ms:
                if later is None or recorded_at < later:
                    later = recorded_at
                break
            due.append(Definition(segment_id, version_of(entry), entry[1], recorded_at // 1000))
    due.sort(key=lambda definition: definition.offset or 0)
    return due, later


def since_active(entries: Sequence[Entry], active_version: str | None, at_ms: int,
                 deleted_at: int | None = None) -> Sequence[Entry]:
    """A segment's records after the one a partition has active (``active_version``), or after
    the deletion it activated last (``deleted_at``, its offset).

    - A version found among them: every record after it.
    - One not found (an older record compacted away, on a topic created before definitions kept
      every record): the latest record alone.
    - A deletion activated here: the records after it.
    - Neither: the records after the last tombstone recorded by ``at_ms`` (:data:`TOMBSTONE`:
      a partition of the time kept no trace of one it activated). Only records recorded by
      ``at_ms`` are looked at for it, so a catalog that holds later records (a replay's) decides
      as one that does not yet (live) did.

    A deletion when nothing is active is left out (:func:`in_effect`)."""
    if active_version is not None:
        for index in range(len(entries) - 1, -1, -1):
            if entries[index][0] == active_version:
                return in_effect(entries[index + 1:], True)
        return in_effect(entries[-1:], True)
    start = 0
    if deleted_at is not None:
        while start < len(entries) and entries[start][1] <= deleted_at:
            start += 1
    else:
        for index, (version, _, recorded_at) in enumerate(entries):
            if recorded_at is None or recorded_at > at_ms:
                break
            if version == TOMBSTONE:
                start = index + 1
    return in_effect(entries[start:], False)


def in_effect(entries: Sequence[Entry], active: bool) -> list[Entry]:
    """The records that change something, activated in turn from a partition with a version
    ``active`` or not: a deletion when nothing is active changes nothing and is left out, so a
    partition that activated a version between two deletions and one that did not leave the
    same marker (the first deletion that found something active)."""
    return [entries[i] for i in _changing([version_of(e) for e in entries], active)]


def _changing(versions: Sequence[str | None], active: bool) -> list[int]:
    """The positions of :func:`in_effect`'s records, from their versions (None: a deletion)."""
    kept: list[int] = []
    for index, version in enumerate(versions):
        if version is None:
            if not active:
                continue
            active = False
        else:
            active = True
        kept.append(index)
    return kept


def on_arrival(entries: Sequence[Entry], active_version: str | None,
               definition: Definition, deleted_at: int | None = None) -> list[Definition]:
    """What a partition activates, in turn, when a definition's item is activated on its
    arrival: the records of its segment before it that the partition has not activated (after
    its active version or its last deletion, :func:`since_active`), then the item itself, less
    what changes nothing (a deletion where nothing is active, :func:`in_effect`; the version
    active already, an item coming again). The records before it are there when an earlier item
    was left to the partition's inputs and this one arrives once they are in: skipping them
    would skip an activation a replay makes (before an input accepted after them)."""
    if is_active(definition, active_version):
        return []
    prior: list[Entry] = []
    if definition.offset is not None:
        offset_of = definition.offset
        # (the active version or deletion is looked for among them all; a tombstone only
        # among those before it)
        among = (entries if active_version is not None or deleted_at is not None
                 else [e for e in entries if e[1] < offset_of])
        prior = [entry for entry in since_active(among, active_version, _ALWAYS, deleted_at)
                 if entry[1] < offset_of and entry[2] is not None]
    due = [Definition(definition.segment, version_of(entry), entry[1], _seconds(entry))
           for entry in prior]
    due.append(definition)
    return [due[i] for i in _changing([d.version for d in due], active_version is not None)]


def _seconds(entry: Entry) -> int:
    assert entry[2] is not None
    return entry[2] // 1000


#: Later than any record time: every record counts.
_ALWAYS = 2 ** 62


def overtaken(definition: Definition, entries: Sequence[Entry], active_version: str | None,
              deleted_at: int | None = None) -> bool:
    """A definition's item that arrives once a later record of its segment is active here
    (activated from the catalog, :func:`recorded_by`: a later version, or a deletion at
    ``deleted_at`` or later): activating it would go back to an older version and forward
    again. (Nothing active and no deletion does not overtake: the partition may simply not have
    seen the segment yet.)"""
    if definition.offset is None:
        return False
    if deleted_at is not None:
        return deleted_at >= definition.offset
    if active_version is None:
        return False
    for version, offset, _ in reversed(entries):
        if version == active_version:
            return offset > definition.offset
    return False


def left_to_inputs(definition: Definition, latest: tuple[str | None, int, int | None] | None,
                   raw_behind: bool, settled_ms: int) -> bool:
    """A definition's item that arrives while inputs accepted before the definition was written
    may still reach its partition: the partition's raw records are not all taken yet, or the
    definition was recorded after ``settled_ms`` (now less the time an accepted input is given to
    reach ``raw.events``, ``EVENTIDE_DEFINITION_GRACE_S``). It is not activated now, but once
    they are in (:func:`recorded_by`: before the first input accepted after it was recorded, or
    when the partition has taken every raw record it holds and the grace has passed).

    Activated on arrival, it would evaluate those inputs against it. A replay sends every
    definition's item at its start, ahead of its whole backlog, and would have the inputs behind
    it enter people whom the live run, which stored them before the definition existed, had the
    definition itself enter (a different cause and change id). Live, an input accepted a moment
    before the definition was written can reach ``raw.events`` after its item: activated on
    arrival, the input would enter people live whom the replay has the definition enter.
    Activation then follows the partition's own inputs, not the item's arrival. Only a record
    the catalog holds with its time, this one or a later one of the segment, can be left
    (:func:`recorded_by` activates what the catalog holds); a later one is activated instead,
    as it would be anyway once this item finds it recorded."""
    return (latest is not None and latest[2] is not None
            and definition.offset is not None and latest[1] >= definition.offset
            and (raw_behind or latest[2] > settled_ms))


def recorded_ms(entries: Sequence[Entry], offset: int | None) -> int | None:
    """When the record at ``offset`` was written (ms), if the catalog holds it with its time."""
    for entry in reversed(entries):
        if entry[1] == offset:
            return entry[2]
    return None


def is_active(definition: Definition, active_version: str | None) -> bool:
    """Already activated here (a redelivery): its changes were all sent then."""
    return definition.version is not None and active_version == definition.version


def activate(state: PersonState, person: str, events: History, segments: ActiveSegments,
             definition: Definition, segment: Segment | None
             ) -> tuple[PersonState, list[Output]]:
    """The person re-evaluated against the definition (``segment`` None: deleted) at its time."""
    # Time-driven changes due before the definition's time come first, as for inputs.
    state, out = catch_up(state, person, events, segments, definition.at)
    state, evaluated = evaluate(state, person, events, [(definition.segment, segment)],
                                now_s=definition.at, cause=cause_of(definition))
    return state, out + evaluated


def cause_of(definition: Definition) -> str:
    """The cause of a definition's changes: its version, or for a deletion (which has none) its
    record's offset in the definitions topic. A segment deleted, created again and deleted again
    exits people twice, and a change id is derived from the cause: "deleted" alone gave both
    exits one id, and consumers dropping repeats of an id would have missed the second."""
    if definition.version is not None:
        return f"definition:{definition.version}"
    if definition.offset is not None:
        return f"definition:deleted@{definition.offset}"
    return f"definition:deleted@{definition.at}s"


def segment_state(stored: dict[str, Any] | None, definition: Definition) -> dict[str, Any] | None:
    """The partition's ``segment_state`` entry once the definition is active: its version and
    member count, or for a deletion the deletion's offset (what the partition activates after,
    :func:`since_active`) and no version (None: a deletion of unknown offset, no entry)."""
    members = (stored or {}).get("members", 0)
    if definition.version is not None:
        return {"version": definition.version, "members": members}
    if definition.offset is None:
        return None
    return {"deleted": definition.offset, "members": members}
