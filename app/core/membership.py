"""Segment membership of one person as a pure step, and the change records it produces.

A person's membership state is ``{"in": {segment_id: since_s}, "due": {segment_id: due_s}}``:
the segments they are in, and for each segment whose membership can change with time alone, when
it next can. Re-evaluating compares the evaluator's answer with that state; every difference is a
:class:`Change`. Changes alternate per (person, segment) by construction: an ``entered`` is only
produced when the state says "not in", and it flips the state.

``change_id`` is derived from (segment, person, cause, change), so re-running the same input —
a redelivery, or a replay of the same log — re-sends the same id and consumers can drop repeats.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from app.segments.definition import Segment
from app.segments.evaluate import EventSource, evaluator

Membership = dict[str, dict[str, int]]

#: A change id is the 16-byte BLAKE2b of its parts; each is hashed by a copy of this, unused.
_CHANGE_ID_HASH = hashlib.blake2b(digest_size=16)


def empty() -> Membership:
    return {"in": {}, "due": {}}


@dataclass(frozen=True, init=False)
class Change:
    """One transition (made per change, dozens per identify: ``__init__`` written out,
    ``tables.native`` "Made per item")."""

    segment_id: str
    person_id: str
    change: str  # "entered" | "exited"
    at: int
    cause: str

    def __init__(self, segment_id: str, person_id: str, change: str, at: int,
                 cause: str) -> None:
        object.__setattr__(self, "segment_id", segment_id)
        object.__setattr__(self, "person_id", person_id)
        object.__setattr__(self, "change", change)
        object.__setattr__(self, "at", at)
        object.__setattr__(self, "cause", cause)

    @property
    def change_id(self) -> str:
        raw = "\x1f".join((self.segment_id, self.person_id, self.cause, self.change))
        digest = _CHANGE_ID_HASH.copy()  # (cheaper than a new one: no keywords to parse)
        digest.update(raw.encode())
        return digest.hexdigest()

    def record(self) -> dict[str, Any]:
        return {"change_id": self.change_id, "segment_id": self.segment_id,
                "person_id": self.person_id, "change": self.change, "at": self.at,
                "cause": self.cause}


def reevaluate(state: Membership, person_id: str,
               segments: Iterable[tuple[str, Segment | None]],
               activities: "Iterable[Mapping[str, Any]] | EventSource",
               attributes: Mapping[str, Any], *,
               now_s: int, cause: str) -> tuple[Membership, list[Change]]:
    """Evaluate ``segments`` (``None`` = deleted) at ``now_s``; returns the new state and changes.

    Returns ``state`` itself when nothing changed, so callers can skip the write.
    """
    members, due = state["in"], state["due"]
    changes: list[Change] = []
    # Copied once, at the first difference (someone new can enter hundreds of segments at once).
    new_members, new_due = members, due
    evaluate = evaluator(activities, attributes, now_s)
    for segment_id, segment in segments:
        if segment is None:
            member, next_at = False, None
        else:
            member, next_at = evaluate(segment)
        was_member = segment_id in new_members
        if member != was_member:
            if new_members is members:
                new_members = dict(members)
            if member:
                new_members[segment_id] = now_s
            else:
                del new_members[segment_id]
            changes.append(Change(segment_id, person_id, "entered" if member else "exited",
                                  now_s, cause))
        if new_due.get(segment_id) != next_at:
            if new_due is due:
                new_due = dict(due)
            if next_at is None:
                del new_due[segment_id]
            else:
                new_due[segment_id] = next_at
    if new_members is members and new_due is due:
        return state, changes
    return {"in": new_members, "due": new_due}, changes


def earliest_due(state: Membership | None) -> int | None:
    if not state or not state["due"]:
        return None
    return min(state["due"].values())


def due_segments(state: Membership, at_s: int) -> list[str]:
    return sorted(segment for segment, due in state["due"].items() if due <= at_s)


def timer_key(due_s: int, person_id: str) -> str:
    """Keys sort by due time, so the timer scan is a range read up to now."""
    return f"{due_s:012d}:{person_id}"
