"""A change id follows the transition's place in its (person, segment) sequence, not its cause.

(Why: ``tests/agents/test_change_ids_across_paths.py``.) Pure: ``membership.reevaluate`` over
an attribute segment, its answers driven by the attributes.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from app.core import membership
from app.core.membership import Change, Membership
from app.segments.definition import parse_segment

PRO = parse_segment("pro", {"name": "Pro", "match": {"attribute": "plan", "op": "eq",
                                                     "value": "pro"}})
FREE = parse_segment("free", {"name": "Free", "match": {"attribute": "plan", "op": "eq",
                                                        "value": "free"}})


def _run(state: Membership, plans: list[str], cause: str = "c"
         ) -> tuple[Membership, list[Change]]:
    changes: list[Change] = []
    for n, plan in enumerate(plans):
        state, new = membership.reevaluate(state, "p", [("pro", PRO), ("free", FREE)], [],
                                           {"plan": plan}, now_s=1_000 + n,
                                           cause=f"{cause}{n}")
        changes += new
    return state, changes


@given(st.lists(st.sampled_from(["pro", "free", "none"]), max_size=30))
def test_each_pair_counts_its_transitions_and_never_reuses_an_id(plans: list[str]) -> None:
    state, changes = _run(membership.empty(), plans)
    for segment in ("pro", "free"):
        ours = [c for c in changes if c.segment_id == segment]
        assert [c.ordinal for c in ours] == list(range(len(ours)))
        assert [c.change for c in ours] == ["entered", "exited"] * (len(ours) // 2) + (
            ["entered"] if len(ours) % 2 else [])
        assert membership.transitions(state, segment) == len(ours)
    assert len({c.change_id for c in changes}) == len(changes)
    # Stored only where membership does not imply it: a pair that entered once holds nothing.
    for segment, count in state.get("n", {}).items():
        assert count != (1 if segment in state["in"] else 0)


@given(st.lists(st.sampled_from(["pro", "free", "none"]), max_size=12),
       st.lists(st.sampled_from(["pro", "free", "none"]), min_size=1, max_size=12))
def test_the_same_transitions_from_the_same_state_have_the_same_ids_whatever_caused_them(
        before: list[str], after: list[str]) -> None:
    """What a redo in another order relies on: from the recovered state, the same transitions
    get the same ids though their causes (and times) differ."""
    state, _ = _run(membership.empty(), before)
    _, one = _run(state, after, cause="first-run-")
    _, other = _run(state, after, cause="redo-")
    assert [c.change_id for c in one] == [c.change_id for c in other]
    assert [c.cause for c in one] != [c.cause for c in other] or not one


def test_a_state_without_counts_reads_as_entered_once() -> None:
    """Membership values written before the counts existed: a member has entered once, anyone
    else never; the next transitions count on from there and ids stay distinct."""
    legacy: Membership = {"in": {"pro": 900}, "due": {}}
    state, changes = _run(legacy, ["free", "pro", "none"])
    assert [(c.segment_id, c.change, c.ordinal) for c in changes] == [
        ("pro", "exited", 1), ("free", "entered", 0), ("pro", "entered", 2),
        ("free", "exited", 1), ("pro", "exited", 3)]
    assert state["n"] == {"free": 2, "pro": 4}


def test_a_change_id_does_not_depend_on_the_cause_or_time() -> None:
    one = Change("s", "p", "entered", 1, "event-a", 4)
    assert one.change_id == Change("s", "p", "entered", 99, "merge:b", 4).change_id
    assert one.change_id != Change("s", "p", "entered", 1, "event-a", 6).change_id
    assert one.change_id != Change("s", "q", "entered", 1, "event-a", 4).change_id
