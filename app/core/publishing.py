"""What a segment membership change puts on the topics, and on the members count: pure records.

Each record's content comes from the change alone, so re-publishing a change (a redelivered
input) sends identical records with the same ids.
"""

from __future__ import annotations

from typing import Any


from app.core.items import derived_id
from app.core.membership import Change
from app.core.messages import Event
from app.segments.definition import Segment
from tables.json_bytes import json_bytes, plain_text


# Both records are written out as text when their ids need no escaping (almost always), not
# encoded from a dict: a change is a few ids and a number, and building the dict and calling
# orjson was ~40% of publishing a change. The bytes are orjson's for the same dicts, key for key
# (tests/unit/test_change_records.py).

def change_records(change: Change) -> tuple[bytes, bytes, bytes | None]:
    """A change's value on ``segments.changes`` (keyed by person: :meth:`Change.record` as
    JSON), and its key and value on the compacted ``segments.membership`` (None, a tombstone,
    on exit)."""
    segment, person, cause = change.segment_id, change.person_id, change.cause
    key = f"{segment}:{person}".encode()
    entered = change.change == "entered"
    if not plain_text(segment + person + cause):  # (one check of the three ids)
        return (json_bytes(change.record()), key,
                json_bytes({"segment_id": segment, "person_id": person, "since": change.at})
                if entered else None)
    value = (f'{{"change_id":"{change.change_id}","segment_id":"{segment}",'
             f'"person_id":"{person}","change":"{change.change}","at":{change.at},'
             f'"cause":"{cause}"}}').encode()
    if not entered:
        return value, key, None
    return value, key, (f'{{"segment_id":"{segment}","person_id":"{person}",'
                        f'"since":{change.at}}}').encode()


def members_after(stats: dict[str, Any] | None, change: Change) -> dict[str, Any]:
    """The partition's ``segment_state`` entry with the change counted (never below 0)."""
    return members_counted(stats, MemberTally().count(change))


class MemberTally:
    """A unit's changes of one segment's member count, kept as the walk they make (each ±1),
    so the count is read and written once per unit, not once per change."""

    __slots__ = ("net", "lowest")

    def __init__(self) -> None:
        self.net = 0
        #: The lowest the walk went below where it started (0 or negative).
        self.lowest = 0

    def count(self, change: Change) -> "MemberTally":
        self.net += 1 if change.change == "entered" else -1
        self.lowest = min(self.lowest, self.net)
        return self


def members_counted(stats: dict[str, Any] | None, tally: MemberTally) -> dict[str, Any]:
    """The ``segment_state`` entry after the tallied changes, each counted in turn and the count
    kept from going below 0 at every step, as :func:`members_after` one change at a time: the
    walk from ``start``, held at 0, ends at ``start + net`` raised by however far below 0 it
    would have gone."""
    stats = stats or {"members": 0}
    start = stats.get("members", 0)
    return {**stats, "members": start + tally.net - min(0, start + tally.lowest)}


def action_event(change: Change, segment: Segment | None) -> Event | None:
    """The segment's send-event action for this transition, if it has one; its id comes from
    the change, so the event is sent once per transition however often the change is."""
    if segment is None:
        return None
    action = segment.on_enter if change.change == "entered" else segment.on_exit
    if action is None:
        return None
    return Event.create(person=change.person_id,
                        id=derived_id(change.at * 1000, "send_event:" + change.change_id),
                        name=action.name, type="event", data=action.data, timestamp=change.at,
                        received_at=change.at * 1000, source=f"segment:{change.segment_id}")
