"""The person stage's reads and writes around its pure decisions: load a person, store a step,
send and count what a decision output, save what changed at the end of the unit."""

from __future__ import annotations

import logging
from typing import Iterable


from app.core import history, identity, membership, publishing
from app.core.activation import segment_state as activation_state
from app.core.evaluation import Segments
from app.core.membership import Change
from app.core.outputs import (Announce, Changed, ClearEvents, Count, Deleted, Forward, NameSeen,
                              Output, Trigger)
from app.core.messages import Definition
from app.core.person import PersonState, Policy, Step
from app.model import encode_envelope
from app.membership_index import members_key, timer_writes
from app.person_store import PersonEvents, store_step
from app.producer import OutRecord, partition_for
from app.runtime import Runtime
from app.segments.definition import Segment
from app.topics import (EVENT_NAMES, HISTORY_SIZE, MEMBERSHIP, PROFILES, SEGMENT_MEMBERS,
                        SEGMENT_STATE, TIMERS)
from tables.json_bytes import json_bytes
from tables.state import UnitOfWork

log = logging.getLogger(__name__)


def policy_of(rt: Runtime) -> Policy:
    settings = rt.settings
    return Policy(dedup_horizon_s=settings.dedup_horizon_s,
                  retention=history.Retention(settings.history_retention_s,
                                              settings.history_max_events))


def load_person(unit: UnitOfWork, partition: int, person: str) -> PersonState:
    return PersonState(
        profile=unit.get(PROFILES, partition, person),
        membership=unit.get(MEMBERSHIP, partition, person) or membership.empty(),
    )


def save_person(unit: UnitOfWork, partition: int, person: str, before: PersonState,
                after: PersonState) -> None:
    """Write only the values that changed (decisions return the same object when unchanged);
    events and dedup ids are written as they happen, each under its own key."""
    if after.profile is not before.profile:
        unit.put(PROFILES, partition, person, after.profile)
    if after.membership is not before.membership:
        # (Local index writes: every reader of the changelog derives them from membership.)
        for table, key, value in timer_writes(person, before.membership, after.membership):
            if value is None:
                unit.delete(table, partition, key)
            else:
                unit.put(table, partition, key, value)
        unit.put(MEMBERSHIP, partition, person, after.membership)


def active_map(rt: Runtime, partition: int) -> dict[str, str]:
    """Segment id → version activated in this partition (cached; the table is the truth)."""
    active = rt.active_segments.get(partition)
    if active is None:
        active = _load_segment_states(rt, partition)
    return active


def deleted_map(rt: Runtime, partition: int) -> dict[str, int]:
    """Segment id → the offset of the deletion this partition activated last, for the segments
    with nothing active here (cached with :func:`active_map`)."""
    active_map(rt, partition)   # (loads both; they are forgotten together)
    return rt.deleted_segments[partition]


def _load_segment_states(rt: Runtime, partition: int) -> dict[str, str]:
    active: dict[str, str] = {}
    deleted: dict[str, int] = {}
    for key, value in rt.state.tables[SEGMENT_STATE].store(partition).items():
        if "version" in value:
            active[key] = value["version"]
        elif "deleted" in value:
            deleted[key] = value["deleted"]
    rt.active_segments[partition], rt.deleted_segments[partition] = active, deleted
    return active


class ActiveHere:
    """The segments active in one partition (:class:`app.core.evaluation.ActiveSegments`).

    It holds the runtime, not the unit's :class:`PersonIO` (which keeps it): a cycle there kept
    every finished unit's states alive until a full garbage collection."""

    def __init__(self, rt: Runtime, partition: int) -> None:
        self.rt, self.partition = rt, partition
        catalog = rt.catalog
        self._by_event = catalog.by_event
        self.for_attributes = catalog.segments_for_attributes
        self.true_when_empty = catalog.segments_true_when_empty
        #: Candidate ids → their active segments, in this unit: the inputs of a unit name the
        #: same few events (and identifies the same attributes) again and again, and an
        #: identify's candidates are hundreds of ids to sort and look up. Valid while the
        #: partition's active map is the object it was computed from and unchanged
        #: (:meth:`forget`, when this unit activates a definition).
        self._found: dict[frozenset[str], Segments] = {}
        self._found_in: dict[str, str] | None = None

    def for_event(self, name: str) -> set[str]:
        """The segments whose conditions name event ``name``, from the catalog's index
        (``SegmentCatalog.by_event``), read here: it runs per event, and a call into the
        catalog's Python would cost a frame each time."""
        return self._by_event.get(name) or set()

    def forget(self) -> None:
        """The partition's active segments changed."""
        self._found.clear()

    def active(self, segment_ids: Iterable[str]) -> Segments:
        """The active ones of ``segment_ids`` in id order (shared: never change the list)."""
        if not segment_ids:
            return []
        active = active_map(self.rt, self.partition)
        if active is not self._found_in:
            self._found, self._found_in = {}, active
        ids = frozenset(segment_ids)
        found = self._found.get(ids)
        if found is not None:
            return found
        get = self.rt.catalog.get
        found = []
        for segment_id in sorted(ids):
            version = active.get(segment_id)
            segment = None if version is None else get(segment_id, version)
            if segment is not None:
                found.append((segment_id, segment))
        self._found[ids] = found
        return found


class PersonIO:
    """A unit's person states (loaded once, saved once at :meth:`flush`) and the effects of
    decisions on them."""

    def __init__(self, rt: Runtime, unit: UnitOfWork) -> None:
        self.rt = rt
        self.unit = unit
        self.policy = policy_of(rt)
        self.loaded: dict[tuple[int, str], PersonState] = {}
        self.current: dict[tuple[int, str], PersonState] = {}
        self.stored: dict[tuple[int, str], PersonEvents] = {}
        self.active_here: dict[int, ActiveHere] = {}
        self.accepted_at_ms: list[int] = []
        #: People deleted in this unit: their keys are removed at flush, not written.
        self.deleted: set[tuple[int, str]] = set()
        #: (partition, segment) → this unit's changes to its member count, written at
        #: :meth:`flush` (or before the segment's state is read: :meth:`count_members`).
        self.member_tallies: dict[tuple[int, str], publishing.MemberTally] = {}
        #: (partition, offset, index) of the item being handled: its dedup ref, error reports.
        self.ref: tuple[int, int, int] = (0, -1, -1)
        self.at: tuple[int, int | None, int | None] = (0, None, None)

    def person(self, partition: int, person: str) -> PersonState:
        slot = (partition, person)
        if slot not in self.current:
            self.loaded[slot] = self.current[slot] = load_person(self.unit, partition, person)
        return self.current[slot]

    def events(self, partition: int, person: str) -> PersonEvents:
        """The person's stored events and dedup ids (reads see this unit's writes)."""
        slot = (partition, person)
        stored = self.stored.get(slot)
        if stored is None:
            stored = self.stored[slot] = PersonEvents(self.unit, partition, person,
                                                      self.rt.prune_schedule)
        return stored

    def segments(self, partition: int) -> ActiveHere:
        found = self.active_here.get(partition)
        if found is None:
            found = self.active_here[partition] = ActiveHere(self.rt, partition)
        return found

    def store(self, partition: int, event_id: str, person: str, step: Step) -> None:
        """Store what a step decided: the new id, the event, the profile."""
        store_step(self.events(partition, person), event_id, step, now_s=self.rt.clock.now(),
                   retention=self.policy.retention)
        self.current[(partition, person)] = step.state

    def decided(self, partition: int, person: str,
                decision: tuple[PersonState, list[Output]]) -> None:
        state, outputs = decision
        self.current[(partition, person)] = state
        self.emit(partition, person, outputs)

    def emit(self, partition: int, person: str, outputs: list[Output]) -> None:
        counters = self.rt.counters
        for output in outputs:  # the kinds of every new event first: this runs per item
            if isinstance(output, Count):
                counters[output.name] += output.n
            elif isinstance(output, NameSeen):
                self.count_name(partition, output.name, output.timestamp)
            elif isinstance(output, Trigger):
                self.send(self.rt.topics.campaign_triggers.name, partition, person,
                          json_bytes(output.record))
                counters["triggers:sent"] += 1
            elif isinstance(output, Changed):
                self.publish(partition, output.change, output.segment)
            elif isinstance(output, Announce):
                self.announce(output.announcement)
            elif isinstance(output, Forward):
                spec = self.rt.topics.person_events
                self.send(spec.name, partition_for(output.person.encode(), spec.partitions),
                          output.person, encode_envelope([output.item]))
                counters["forwarded_to_survivor"] += 1
            elif isinstance(output, ClearEvents):
                self.events(partition, person).clear()
            elif isinstance(output, Deleted):
                self.deleted.add((partition, person))

    def send(self, topic: str, partition: int, key: str, value: bytes | None) -> None:
        self.unit.send(OutRecord(topic, partition, key.encode(), value))

    def announce(self, announcement: identity.Announcement) -> None:
        """To the partition that owns the identifier (or the anonymous id)."""
        topics = self.rt.topics
        if isinstance(announcement, identity.Alias):
            spec, key = topics.identity_commands, announcement.key
        else:
            spec, key = topics.anonymous_links, announcement.anonymous_id
        self.send(spec.name, partition_for(key.encode(), spec.partitions), key,
                  encode_envelope([announcement.command]))

    def publish(self, partition: int, change: Change, segment: Segment | None) -> None:
        unit, topics = self.unit, self.rt.topics
        key_of_members = members_key(change.segment_id, change.person_id)
        entered = change.change == "entered"
        if (unit.get(SEGMENT_MEMBERS, partition, key_of_members) is not None) == entered:
            # The members index is written with every published change, so it holds the kind of
            # the last one. Publishing the same kind again (two entered in a row) can only mean
            # the person's membership and the index disagree: state was lost or mixed. Never
            # expected; counted (/metrics must show 0) and withheld from consumers.
            self.rt.counters["invariant_violations"] += 1
            log.error("invariant: %s %s %s again (cause %s, change %s) at person.events[%d] "
                      "offset %s item %s; not published", change.person_id, change.change,
                      change.segment_id, change.cause, change.change_id, partition,
                      *self.at[1:])
            return
        value, membership_key, membership_value = publishing.change_records(change)
        self.send(topics.segment_changes.name, partition, change.person_id, value)
        unit.send(OutRecord(topics.segment_membership.name, partition, membership_key,
                            membership_value))
        if entered:
            unit.put(SEGMENT_MEMBERS, partition, key_of_members, change.at)
        else:
            unit.delete(SEGMENT_MEMBERS, partition, key_of_members)
        slot = (partition, change.segment_id)
        tally = self.member_tallies.get(slot)
        if tally is None:
            tally = self.member_tallies[slot] = publishing.MemberTally()
        tally.count(change)
        self.rt.counters[f"segment_changes:{change.change}"] += 1
        action = publishing.action_event(change, segment)
        if action is not None:
            self.send(topics.person_events.name, partition, change.person_id,
                      encode_envelope([action.item]))

    def count_name(self, partition: int, name: str, timestamp: int) -> None:
        entry = self.unit.get(EVENT_NAMES, partition, name) or {"count": 0, "last_seen": 0}
        self.unit.put(EVENT_NAMES, partition, name,
                      {"count": entry["count"] + 1, "last_seen": max(entry["last_seen"],
                                                                      timestamp)})

    # -- the partition's segments and people ---------------------------------------------------

    def activated(self, partition: int, definition: Definition) -> None:
        """Record the definition as the one active in the partition: its version, or for a
        deletion its offset (what the partition activates after)."""
        segment_id = definition.segment
        self.segments(partition).forget()
        self.count_members(partition, segment_id)
        stored = self.unit.get(SEGMENT_STATE, partition, segment_id)
        state = activation_state(stored, definition)
        active, deleted = active_map(self.rt, partition), deleted_map(self.rt, partition)
        active.pop(segment_id, None)
        deleted.pop(segment_id, None)
        if state is None:
            self.unit.delete(SEGMENT_STATE, partition, segment_id)
            return
        self.unit.put(SEGMENT_STATE, partition, segment_id, state)
        if "version" in state:
            active[segment_id] = state["version"]
        else:
            deleted[segment_id] = state["deleted"]

    def due_people(self, partition: int, at_s: int) -> list[str]:
        """People of the timer index due at or before ``at_s``, pending writes included."""
        stop = membership.timer_key(at_s + 1, "")
        keys = {key for key, _ in self.rt.state.tables[TIMERS].store(partition).range("", stop)}
        for key, value in self.unit.pending_items(TIMERS, partition).items():
            if key < stop:
                (keys.add if value is not None else keys.discard)(key)
        people = {key.split(":", 1)[1] for key in keys}
        # People this unit changed: their timer keys are only written at flush.
        for (p, person), state in self.current.items():
            due = membership.earliest_due(state.membership)
            if p == partition and due is not None and due <= at_s:
                people.add(person)
        return sorted(people)

    def people_in(self, partition: int) -> set[str]:
        """Everyone with a history or a profile here: stored (unless a unit not written yet
        removed them), or loaded by this unit."""
        people = {person for (p, person) in self.current if p == partition}
        for table in (HISTORY_SIZE, PROFILES):
            pending = self.unit.pending_items(table, partition)
            people.update(key for key in self.rt.state.tables[table].store(partition).keys()
                          if pending.get(key, True) is not None)
            people.update(key for key, value in pending.items() if value is not None)
        return people

    def is_new(self, partition: int, person: str, state: PersonState) -> bool:
        return state.profile is None and self.events(partition, person).size() == 0

    def count_members(self, partition: int, segment_id: str) -> None:
        """Write the segment's member count with this unit's changes so far."""
        tally = self.member_tallies.pop((partition, segment_id), None)
        if tally is not None:
            self.unit.put(SEGMENT_STATE, partition, segment_id, publishing.members_counted(
                self.unit.get(SEGMENT_STATE, partition, segment_id), tally))

    def flush(self) -> None:
        for partition, segment_id in list(self.member_tallies):
            self.count_members(partition, segment_id)
        for stored in self.stored.values():
            stored.finish()
        for (partition, person), after in self.current.items():
            save_person(self.unit, partition, person, self.loaded[(partition, person)], after)
            # Deleted, and not identified again later in this unit: remove the keys entirely.
            if (partition, person) in self.deleted and self.is_new(partition, person, after):
                for table in (PROFILES, MEMBERSHIP):
                    self.unit.delete(table, partition, person)
