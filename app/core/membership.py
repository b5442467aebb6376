"""Segment membership of one person as a pure step, and the change records it produces.

A person's membership state is ``{"in": {segment_id: since_s}, "due": {segment_id: due_s},
"n": {segment_id: transitions}}``: the segments they are in; for each segment whose membership
can change with time alone, when it next can; and how many transitions a (person, segment) pair
has had, where that is not what membership alone implies (:func:`transitions`). Re-evaluating
compares the evaluator's answer with that state; every difference is a :class:`Change`. Changes
alternate per (person, segment) by construction: an ``entered`` is only produced when the state
says "not in", and it flips the state.

``change_id`` is derived from (segment, person, the transition's place in that pair's sequence,
change), not from what caused it. A redo of inputs after a crash starts from the same recovered
state, so it gives each transition the same place, and so the same id, whichever input causes it:
a worker killed after a unit's outputs went out but before its state was written may redo that
unit's inputs in another order (a customer's own item, taken in place from ``raw.events``, and a
merge's or an anonymous link's on ``person.events``), and the same transition then has another
cause (``tests/agents/test_change_ids_across_paths.py``). Re-running the same input — a
redelivery, or a replay of the same log — re-sends the same id too, and consumers drop repeats.
A person deleted (or merged away) starts over: their count goes with their membership.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Final, Iterable, Mapping

from app.segments.definition import Segment
from app.segments.evaluate import EventSource, evaluator

Membership = dict[str, dict[str, int]]

#: A change id is the 16-byte BLAKE2b of its parts; each is hashed by a copy of this, unused.
_CHANGE_ID_HASH = hashlib.blake2b(digest_size=16)
#: Its methods, taken once: compiled, ``digest.update(...)`` is Python's method call, a lookup
#: on the type each time (~1,000 instructions of a change id's ~5,000); a method taken from
#: the type is called directly.
_NEW_DIGEST: Final = _CHANGE_ID_HASH.copy
_UPDATE: Final = type(_CHANGE_ID_HASH).update
_HEXDIGEST: Final = type(_CHANGE_ID_HASH).hexdigest


def empty() -> Membership:
    return {"in": {}, "due": {}}


def transitions(state: Membership, segment_id: str) -> int:
    """How many transitions (person, ``segment_id``) has had. Stored in ``state["n"]`` only where
    it is not what membership implies, 1 for a member and 0 otherwise: most pairs only ever enter
    once, and a state written before the counts existed reads as that."""
    counts = state.get("n")
    if counts is not None:
        count = counts.get(segment_id)
        if count is not None:
            return count
    return 1 if segment_id in state["in"] else 0


@dataclass(frozen=True, init=False)
class Change:
    """One transition (made per change, dozens per identify: ``__init__`` written out,
    ``tables.native`` "Made per item")."""

    segment_id: str
    person_id: str
    change: str  # "entered" | "exited"
    at: int
    cause: str
    #: Transitions of this (person, segment) before this one (:func:`transitions`).
    ordinal: int

    def __init__(self, segment_id: str, person_id: str, change: str, at: int,
                 cause: str, ordinal: int) -> None:
        object.__setattr__(self, "segment_id", segment_id)
        object.__setattr__(self, "person_id", person_id)
        object.__setattr__(self, "change", change)
        object.__setattr__(self, "at", at)
        object.__setattr__(self, "cause", cause)
        object.__setattr__(self, "ordinal", ordinal)

    @property
    def change_id(self) -> str:
        # ("#<n>" where ids derived from a cause had the cause: no cause is "#" and digits, so
        # an id of this kind never equals one of the earlier kind.)
        raw = "\x1f".join((self.segment_id, self.person_id, f"#{self.ordinal}", self.change))
        digest = _NEW_DIGEST()  # (cheaper than a new one: no keywords to parse)
        _UPDATE(digest, raw.encode())
        hexdigest: str = _HEXDIGEST(digest)
        return hexdigest

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
    counts: dict[str, int] = state.get("n") or {}
    changes: list[Change] = []
    # Copied once, at the first difference (someone new can enter hundreds of segments at once).
    new_members, new_due, new_counts = members, due, counts
    evaluate = evaluator(activities, attributes, now_s)
    for segment_id, segment in segments:
        if segment is None:
            member, next_at = False, None
        else:
            member, next_at = evaluate(segment)
        was_member = segment_id in new_members
        if member != was_member:
            count = new_counts.get(segment_id, 1 if was_member else 0)  # (see transitions)
            if new_members is members:
                new_members = dict(members)
            if member:
                new_members[segment_id] = now_s
            else:
                del new_members[segment_id]
            # Only a first entry leaves the count membership implies (1, a member); after any
            # other transition it differs (an exit leaves 2 or more for a non-member), so it is
            # kept. A kept count only grows: none is ever dropped.
            if count > 0:
                if new_counts is counts:
                    new_counts = dict(counts)
                new_counts[segment_id] = count + 1
            changes.append(Change(segment_id, person_id, "entered" if member else "exited",
                                  now_s, cause, count))
        if new_due.get(segment_id) != next_at:
            if new_due is due:
                new_due = dict(due)
            if next_at is None:
                del new_due[segment_id]
            else:
                new_due[segment_id] = next_at
    if new_members is members and new_due is due and new_counts is counts:
        return state, changes
    if not new_counts:  # (most people: every pair entered once at most)
        return {"in": new_members, "due": new_due}, changes
    return {"in": new_members, "due": new_due, "n": new_counts}, changes


def earliest_due(state: Membership | None) -> int | None:
    if not state or not state["due"]:
        return None
    return min(state["due"].values())


def due_segments(state: Membership, at_s: int) -> list[str]:
    return sorted(segment for segment, due in state["due"].items() if due <= at_s)


def timer_key(due_s: int, person_id: str) -> str:
    """Keys sort by due time, so the timer scan is a range read up to now."""
    return f"{due_s:012d}:{person_id}"
