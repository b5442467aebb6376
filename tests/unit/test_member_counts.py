"""A segment's member count per partition: a unit's changes tallied and written once equal the
same changes counted one at a time (held at 0 at every step, as the count always was)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.membership import Change
from app.core.publishing import MemberTally, members_after, members_counted


def _one_at_a_time(stats: dict[str, Any] | None, changes: list[Change]) -> dict[str, Any] | None:
    for change in changes:
        stats = members_after(stats, change)
    return stats


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.none(), st.integers(0, 5).map(lambda n: {"members": n, "version": "v1"})),
       st.lists(st.booleans(), max_size=30))
def test_a_tally_counts_like_each_change_in_turn(stats: dict[str, Any] | None,
                                                 entered: list[bool]) -> None:
    changes = [Change("s", f"p{n}", "entered" if kind else "exited", n, "c", 0 if kind else 1)
               for n, kind in enumerate(entered)]
    tally = MemberTally()
    for change in changes:
        tally.count(change)
    # (no change at all: the count as it was, or 0 where there was none)
    assert members_counted(stats, tally) == (_one_at_a_time(stats, changes) if changes
                                             else stats or {"members": 0})


def test_exits_below_zero_are_held_at_zero_then_entries_count() -> None:
    exited, entered = (Change("s", "p", kind, 0, "c", ordinal)
                       for kind, ordinal in (("exited", 1), ("entered", 0)))
    tally = MemberTally().count(exited).count(exited).count(entered)
    assert members_counted({"members": 1}, tally) == {"members": 1}
    assert members_counted(None, MemberTally().count(entered)) == {"members": 1}
    assert members_counted({"members": 2, "version": "v9"}, MemberTally()) == {
        "members": 2, "version": "v9"}
