"""Unit tests for app.core.person.step: the person stage as a pure function (DATAFLOW rule 2)."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from ulid import ULID

from app.core.dedup import Verdict
from app.core.history import Retention
from app.core.person import PersonState, Policy, activity_of, step

PERSON = "cust-1"
NOW_S = 1_700_000_000.0
POLICY = Policy(dedup_horizon_s=30 * 86_400, retention=Retention(max_age_s=0, max_events=10_000))


def ulid_at(ms: int, tail: int) -> str:
    return str(ULID.from_bytes(ms.to_bytes(6, "big") + tail.to_bytes(10, "big")))


def event(n: int, *, timestamp: int = 1_699_999_000, received_at: int = 1_700_000_000_500,
          **extra: Any) -> dict[str, Any]:
    return {"op": "event", "id": ulid_at(1_699_999_000_000 + n, n), "name": f"e{n}",
            "type": "event", "data": {"n": n}, "timestamp": timestamp, "customer": PERSON,
            "person": PERSON, "received_at": received_at, **extra}


def identify_item(n: int, attributes: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"op": "identify", "id": ulid_at(1_699_999_000_000 + n, 10_000 + n), "customer": PERSON,
            "person": PERSON, "attributes": attributes, "anonymous_id": None, "timestamp": None,
            "update": False, "received_at": 1_700_000_000_000 + n, **extra}


def run(state: PersonState, item: dict[str, Any], ref: tuple[int, int, int],
        now_s: float = NOW_S) -> tuple[PersonState, Verdict]:
    return step(state, PERSON, item, ref, now_s=now_s, policy=POLICY)


def test_a_new_event_is_appended_with_processed_at_from_received_at() -> None:
    item = event(1, received_at=1_700_000_123_999)
    state, verdict = run(PersonState.empty(), item, (2, 40, 0))
    assert verdict is Verdict.NEW
    assert state.history == [{"id": item["id"], "name": "e1", "type": "event", "data": {"n": 1},
                              "timestamp": item["timestamp"], "processed_at": 1_700_000_123}]
    assert state.history == [activity_of(item, 1_700_000_123)]
    assert state.seen[item["id"]][1:] == [2, 40, 0]
    assert state.profile is None


def test_a_given_processed_at_is_kept() -> None:
    item = event(1, processed_at=1_650_000_000)
    state, _ = run(PersonState.empty(), item, (0, 0, 0))
    assert state.history[0]["processed_at"] == 1_650_000_000


def test_a_duplicate_returns_the_very_same_state() -> None:
    item = event(1)
    state, _ = run(PersonState.empty(), item, (0, 5, 0))
    for other_ref in [(0, 6, 0), (0, 5, 1), (1, 5, 0)]:
        again, verdict = run(state, dict(item, name="changed"), other_ref)
        assert verdict is Verdict.DUPLICATE
        assert again is state
    assert state.history[0]["name"] == "e1"


def test_a_redelivery_re_runs_idempotently() -> None:
    item = event(1)
    state, _ = run(PersonState.empty(), item, (0, 5, 0))
    snapshot = copy.deepcopy(state)
    again, verdict = run(state, item, (0, 5, 0), now_s=NOW_S + 60)
    assert verdict is Verdict.REDELIVERY
    assert again == snapshot
    assert len(again.history) == 1
    assert again.seen == snapshot.seen, "a redelivery does not move the first-delivery record"


def test_a_redelivery_completes_what_the_first_run_did_not_persist() -> None:
    """If only the dedup entry reached the state before a crash, the redelivery appends."""
    item = event(1)
    full, _ = run(PersonState.empty(), item, (0, 5, 0))
    partial = PersonState(seen=full.seen, history=[], profile=None)
    again, verdict = run(partial, item, (0, 5, 0))
    assert verdict is Verdict.REDELIVERY
    assert again.history == full.history


def test_step_never_mutates_its_input_state() -> None:
    state, _ = run(PersonState.empty(), event(1), (0, 0, 0))
    snapshot = copy.deepcopy(state)
    run(state, event(2), (0, 1, 0))
    run(state, identify_item(3, {"plan": "pro"}), (0, 2, 0))
    assert state == snapshot


def test_identify_updates_only_the_profile() -> None:
    state, _ = run(PersonState.empty(), event(1), (0, 0, 0))
    after, verdict = run(state, identify_item(2, {"plan": "pro"}), (0, 1, 0))
    assert verdict is Verdict.NEW
    assert after.history is state.history
    assert after.profile is not None
    assert after.profile["id"] == PERSON
    assert after.profile["attributes"] == {"plan": "pro"}
    assert len(after.seen) == 2


def test_an_identify_redelivery_leaves_the_profile_equal() -> None:
    item = identify_item(2, {"plan": "pro"})
    state, _ = run(PersonState.empty(), item, (0, 1, 0))
    again, verdict = run(state, item, (0, 1, 0))
    assert verdict is Verdict.REDELIVERY
    assert again == state


def test_an_event_keeps_the_profile_object() -> None:
    state, _ = run(PersonState.empty(), identify_item(2, {"plan": "pro"}), (0, 1, 0))
    after, _ = run(state, event(3), (0, 2, 0))
    assert after.profile is state.profile


def test_expired_dedup_entries_are_pruned_when_a_new_id_is_remembered() -> None:
    item = event(1)
    state, _ = run(PersonState.empty(), item, (0, 0, 0))
    expires_s = state.seen[item["id"]][0] / 1000
    later, verdict = run(state, event(2), (0, 1, 0), now_s=expires_s)
    assert verdict is Verdict.NEW
    assert set(later.seen) == {event(2)["id"]}
    # the history is not affected by forgetting the id
    assert [a["id"] for a in later.history] == [item["id"], event(2)["id"]]


# --- property: any interleaving of duplicates and redeliveries -----------------------------------


deliveries = st.lists(
    st.tuples(st.integers(0, 9),            # which distinct item
              st.sampled_from(["first", "redeliver", "duplicate"]),
              st.integers(0, 50)),           # event time offset
    min_size=1, max_size=50,
)


@settings(max_examples=200, deadline=None)
@given(deliveries)
def test_history_holds_each_distinct_id_exactly_once(plan: list[tuple[int, str, int]]) -> None:
    state = PersonState.empty()
    first_ref: dict[int, tuple[int, int, int]] = {}
    items: dict[int, dict[str, Any]] = {}
    offset = 0
    verdicts: list[Verdict] = []
    for n, kind, ts in plan:
        if n not in items:
            items[n] = event(n, timestamp=1_699_999_000 + ts)
        if n not in first_ref or kind == "first":
            offset += 1
            ref = (0, offset, 0) if n not in first_ref else (1, offset, 0)
            first_ref.setdefault(n, ref)
        elif kind == "redeliver":
            ref = first_ref[n]
        else:
            offset += 1
            ref = (0, offset, n % 3)
        state, verdict = run(state, items[n], ref)
        verdicts.append(verdict)
        if ref != first_ref[n]:
            assert verdict is Verdict.DUPLICATE
        elif verdict is not Verdict.NEW:
            assert verdict is Verdict.REDELIVERY
    history_ids = [a["id"] for a in state.history]
    assert len(history_ids) == len(set(history_ids))
    assert set(history_ids) == {item["id"] for item in items.values()}
    assert verdicts.count(Verdict.NEW) == len(items)
    assert [(a["timestamp"], a["id"]) for a in state.history] == sorted(
        (a["timestamp"], a["id"]) for a in state.history)
