"""``membership``'s local indexes: who is in a segment, and whose membership is due when.

* ``segment_members``  ``<segment>\\x00<person>`` → since: the membership listing (API, console)
  and the invariant check before a change is published (``agents/person_io.py``);
* ``timers``           ``<due:012d>:<person>`` → 1: the people a tick re-evaluates.

Both follow from a person's ``membership`` value (``{"in": {segment: since}, "due": {...}}``)
alone, so they are not in the changelog: every reader derives them as it applies a membership
record (:func:`membership_index`), as recovery and standbys derive history's by-name index. They
used to be logged tables, and the members index alone was one changelog record per published
change: ~533,000 of the ~1.45 million records a recovery read after the 1,000-segment benchmark.

The unit that changes a membership writes the same entries as it goes (the members index per
published change, so a second change of the same person and segment in the unit sees the first;
the timer at the end of the unit): what a unit leaves behind is what :func:`index_writes` derives
from the membership before and after it, which ``tests/agents/test_membership_properties.py``
checks by rebuilding every example's tables from its changelog.
"""

from __future__ import annotations

from typing import Any, Callable

import orjson

from app.core.membership import Membership, earliest_due, timer_key
from app.topics import SEGMENT_MEMBERS, TIMERS

#: (index table, key, value or None to delete)
IndexWrite = tuple[str, str, Any]


def members_key(segment_id: str, person: str) -> str:
    return f"{segment_id}\x00{person}"


def timer_writes(person: str, before: Membership | None, after: Membership | None
                 ) -> list[IndexWrite]:
    """The due-time index entries to change when a membership goes from ``before`` to
    ``after``: one key per person, at their earliest due time."""
    old_due, new_due = earliest_due(before), earliest_due(after)
    if old_due == new_due:
        return []
    writes: list[IndexWrite] = []
    if old_due is not None:
        writes.append((TIMERS, timer_key(old_due, person), None))
    if new_due is not None:
        writes.append((TIMERS, timer_key(new_due, person), 1))
    return writes


def index_writes(person: str, before: Membership | None, after: Membership | None
                 ) -> list[IndexWrite]:
    """Every index entry to change when a membership goes from ``before`` to ``after``."""
    old_in = before["in"] if before else {}
    new_in = after["in"] if after else {}
    writes: list[IndexWrite] = []
    if old_in != new_in:  # (most changes of a membership are of its due times only)
        writes += [(SEGMENT_MEMBERS, members_key(segment_id, person), None)
                   for segment_id in old_in if segment_id not in new_in]
        writes += [(SEGMENT_MEMBERS, members_key(segment_id, person), since)
                   for segment_id, since in new_in.items() if old_in.get(segment_id) != since]
    return writes + timer_writes(person, before, after)


def membership_index() -> tuple[tuple[str, ...],
                                Callable[[str, bytes | None, bytes | None],
                                         list[tuple[str, str, bytes | None]]]]:
    """The indexes as the state manager derives them while applying a changelog (a
    :data:`tables.state.Index`)."""

    def derive(person: str, old: bytes | None, new: bytes | None
               ) -> list[tuple[str, str, bytes | None]]:
        if old == new:
            return []
        before = orjson.loads(old) if old is not None else None
        after = orjson.loads(new) if new is not None else None
        # Every value is a number (since when, or 1): its JSON is how Python writes it.
        return [(table, key, None if value is None else str(value).encode())
                for table, key, value in index_writes(person, before, after)]

    return (SEGMENT_MEMBERS, TIMERS), derive
