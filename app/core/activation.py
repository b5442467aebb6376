"""A segment definition reaching a person partition, as pure decisions: whether it is new here,
what it changes for each person, and the partition's segment state after it."""

from __future__ import annotations

from typing import Any

from app.core.evaluation import ActiveSegments, History, catch_up, evaluate
from app.core.messages import Definition
from app.core.outputs import Output
from app.core.person import PersonState
from app.segments.definition import Segment


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


def segment_state(stored: dict[str, Any] | None, version: str | None) -> dict[str, Any] | None:
    """The partition's ``segment_state`` entry once ``version`` is active (None: delete it)."""
    if version is None:
        return None
    return {**(stored or {"members": 0}), "version": version}
