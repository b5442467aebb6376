"""Segment evaluation of one person as pure decisions: re-evaluate, leave everything, catch up on
time-driven changes. Each returns the person's next state and the outputs it implies."""

from __future__ import annotations

from typing import Any, Collection, Iterable, Iterator, Protocol

from app.core import membership
from app.core.outputs import Changed, Output, counted
from app.core.person import PersonState
from app.segments.definition import Segment

#: Bound on due times handled for one person at once (each step moves time strictly forward).
MAX_DUE_STEPS = 1000

Segments = list[tuple[str, Segment | None]]


class History(Protocol):
    """A person's stored events, read-only (:class:`app.person_store.PersonEvents`)."""

    def named(self, name: str, after: float | None) -> Iterator[dict[str, Any]]: ...
    def newest(self, name: str, after: float | None) -> Iterator[dict[str, Any]]: ...
    def names(self) -> Collection[str] | None: ...
    def size(self) -> int: ...
    def all(self) -> list[dict[str, Any]]: ...


class ActiveSegments(Protocol):
    """The segments active in the person's partition, and which of them an input can affect."""

    def for_event(self, name: str) -> set[str]: ...
    def for_attributes(self, names: set[str]) -> set[str]: ...
    def true_when_empty(self) -> set[str]: ...
    def active(self, segment_ids: Iterable[str]) -> Segments: ...


def evaluate(state: PersonState, person: str, events: History, segments: Segments, *,
             now_s: int, cause: str) -> tuple[PersonState, list[Output]]:
    if not segments:
        return state, []
    new_membership, changes = membership.reevaluate(
        state.membership or membership.empty(), person, segments, events, state.attributes,
        now_s=now_s, cause=cause)
    out: list[Output] = [counted("segment_evaluations", len(segments))]
    if changes:
        by_id = dict(segments)
        out.extend(Changed(change, by_id[change.segment_id]) for change in changes)
    if new_membership is state.membership:
        return state, out
    return PersonState(state.profile, new_membership), out


def leave(state: PersonState, person: str, events: History, *, cause: str,
          at: int) -> tuple[PersonState, list[Output]]:
    """Exit every segment the person is in (merged away or deleted)."""
    members = (state.membership or membership.empty())["in"]
    return evaluate(state, person, events, [(sid, None) for sid in sorted(members)], now_s=at,
                    cause=cause)


def catch_up(state: PersonState, person: str, events: History, segments: ActiveSegments,
             until_s: int) -> tuple[PersonState, list[Output]]:
    """Apply, in due order and each at its own due time, every time-driven change up to
    ``until_s``.

    Evaluating at the due time (not the tick's) makes a change's ``at`` the moment it became
    true, and running this before any evaluation at a later time makes the sequence of changes
    independent of when ticks happen to run (a replay, which runs faster than time, gets the
    same sequence).
    """
    due = (state.membership or {}).get("due")
    if not due or min(due.values()) > until_s:
        return state, []  # the common case: nothing time-driven is due
    out: list[Output] = []
    for _ in range(MAX_DUE_STEPS):
        current = state.membership or membership.empty()
        due_now = membership.due_segments(current, until_s)
        if not due_now:
            break
        segment_id = min(due_now, key=lambda sid: (current["due"][sid], sid))
        at = current["due"][segment_id]
        state, changed = evaluate(state, person, events, segments.active({segment_id}),
                                  now_s=at, cause=f"timer:{at}")
        out += changed
        if (state.membership or membership.empty())["due"].get(segment_id) == at:
            break  # no longer active here: leave it for the definition item
    return state, out
