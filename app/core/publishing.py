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
from tables.json_bytes import json_bytes


def change_value(change: Change) -> bytes:
    """For ``segments.changes`` (keyed by person)."""
    return json_bytes(change.record())


def membership_record(change: Change) -> tuple[bytes, bytes | None]:
    """For the compacted ``segments.membership``: key, and value (None, a tombstone, on exit)."""
    key = f"{change.segment_id}:{change.person_id}".encode()
    if change.change != "entered":
        return key, None
    return key, json_bytes({"segment_id": change.segment_id, "person_id": change.person_id,
                              "since": change.at})


def members_after(stats: dict[str, Any] | None, change: Change) -> dict[str, Any]:
    """The partition's ``segment_state`` entry with the change counted."""
    stats = stats or {"members": 0}
    step = 1 if change.change == "entered" else -1
    return {**stats, "members": max(0, stats.get("members", 0) + step)}


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
