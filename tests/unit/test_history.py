"""Unit tests for app.core.history: ordered append, retention at its edges, the activity query."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.history import (
    ActivityQuery,
    Retention,
    append,
    contains,
    decode_cursor,
    encode_cursor,
    prune,
    query,
)

NOW = 1_700_000_000
NO_LIMIT = Retention(max_age_s=0, max_events=1_000_000)


def act(event_id: str, timestamp: int, name: str = "viewed", type_: str = "event") -> dict[str, Any]:
    return {"id": event_id, "name": name, "type": type_, "data": {"k": event_id},
            "timestamp": timestamp, "processed_at": NOW}


def ids(history: list[dict[str, Any]]) -> list[str]:
    return [a["id"] for a in history]


def build(*activities: dict[str, Any], retention: Retention = NO_LIMIT,
          now_s: float = NOW) -> list[dict[str, Any]]:
    history: list[dict[str, Any]] = []
    for activity in activities:
        history = append(history, activity, now_s=now_s, retention=retention)
    return history


# --- append --------------------------------------------------------------------------------------


def test_append_keeps_timestamp_then_id_order_for_back_dated_events() -> None:
    history = build(act("B", 200), act("D", 400), act("A", 100), act("C", 300), act("E", 50))
    assert ids(history) == ["E", "A", "B", "C", "D"]


def test_equal_timestamps_are_ordered_by_id() -> None:
    history = build(act("Z", 100), act("M", 100), act("A", 100), act("Q", 99))
    assert ids(history) == ["Q", "A", "M", "Z"]


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 10)), max_size=40,
                unique_by=lambda t: t[1]))
def test_append_order_does_not_depend_on_arrival_order(pairs: list[tuple[int, int]]) -> None:
    activities = [act(f"ID{n:03d}", ts) for ts, n in pairs]
    forward = build(*activities)
    backward = build(*reversed(activities))
    assert forward == backward
    assert [(a["timestamp"], a["id"]) for a in forward] == sorted(
        (a["timestamp"], a["id"]) for a in activities)


def test_append_of_a_present_id_is_idempotent_and_returns_the_same_list() -> None:
    history = build(act("A", 100), act("B", 200))
    again = append(history, act("A", 100), now_s=NOW, retention=NO_LIMIT)
    assert again is history
    assert ids(again) == ["A", "B"]
    assert contains(history, "A", 100)
    assert not contains(history, "A", 101)
    assert not contains(history, "C", 100)


def test_append_never_mutates_its_input() -> None:
    history = build(act("A", 100), act("C", 300))
    snapshot = copy.deepcopy(history)
    grown = append(history, act("B", 200), now_s=NOW, retention=NO_LIMIT)
    assert history == snapshot
    assert grown is not history
    assert ids(grown) == ["A", "B", "C"]
    # nor when retention drops something
    small = Retention(max_age_s=0, max_events=2)
    trimmed = append(history, act("D", 400), now_s=NOW, retention=small)
    assert history == snapshot
    assert ids(trimmed) == ["C", "D"]


# --- retention -----------------------------------------------------------------------------------


def test_count_retention_drops_the_oldest_by_event_time() -> None:
    three = Retention(max_age_s=0, max_events=3)
    history = build(act("A", 100), act("B", 200), act("C", 300), retention=three)
    assert ids(history) == ["A", "B", "C"]            # exactly at the limit: nothing dropped
    history = append(history, act("D", 150), now_s=NOW, retention=three)
    assert ids(history) == ["D", "B", "C"]            # the oldest (A) goes, not the newest arrival
    history = append(history, act("E", 10), now_s=NOW, retention=three)
    assert ids(history) == ["D", "B", "C"]            # a back-dated event older than all is dropped


def test_age_retention_at_its_exact_edge() -> None:
    hundred = Retention(max_age_s=100, max_events=1_000)
    now = 10_000
    edge = now - 100
    history = build(act("OLD", edge - 1), act("EDGE", edge), act("NEW", edge + 1),
                    retention=NO_LIMIT)
    pruned = prune(history, now_s=now, retention=hundred)
    assert ids(pruned) == ["EDGE", "NEW"]
    # appending applies the same cut
    assert ids(build(act("OLD", edge - 1), act("EDGE", edge), retention=hundred,
                     now_s=now)) == ["EDGE"]
    # a moment later the edge event is gone too
    assert ids(prune(history, now_s=now + 1, retention=hundred)) == ["NEW"]


def test_zero_age_means_no_age_limit() -> None:
    no_age = Retention(max_age_s=0, max_events=10)
    history = build(act("ANCIENT", 0), act("B", 1), retention=no_age, now_s=NOW)
    assert ids(history) == ["ANCIENT", "B"]
    assert prune(history, now_s=10 ** 12, retention=no_age) is history


def test_prune_returns_the_same_list_when_nothing_goes() -> None:
    history = build(act("A", 100), act("B", 200))
    assert prune(history, now_s=NOW, retention=Retention(max_age_s=0, max_events=2)) is history


def test_both_limits_apply_together() -> None:
    both = Retention(max_age_s=50, max_events=2)
    history = build(act("A", 900), act("B", 960), act("C", 970), act("D", 980), retention=NO_LIMIT)
    assert ids(prune(history, now_s=1000, retention=both)) == ["C", "D"]   # count is tighter
    assert ids(prune(history, now_s=1015, retention=both)) == ["C", "D"]
    assert ids(prune(history, now_s=1025, retention=both)) == ["D"]        # age is tighter


# --- query ---------------------------------------------------------------------------------------


SAMPLE = build(
    act("A", 100, "signup", "event"),
    act("B", 200, "home", "page"),
    act("C", 300, "signup", "event"),
    act("D", 400, "home", "screen"),
    act("E", 500, "purchase", "event"),
)


def test_query_is_newest_first() -> None:
    page, cursor = query(SAMPLE, ActivityQuery(since_s=0))
    assert ids(page) == ["E", "D", "C", "B", "A"]
    assert cursor is None


def test_query_cuts_at_since() -> None:
    page, cursor = query(SAMPLE, ActivityQuery(since_s=300))
    assert ids(page) == ["E", "D", "C"]            # timestamp == since is included
    assert cursor is None
    assert ids(query(SAMPLE, ActivityQuery(since_s=301))[0]) == ["E", "D"]
    assert query(SAMPLE, ActivityQuery(since_s=501)) == ([], None)


def test_query_filters_by_type_and_name() -> None:
    assert ids(query(SAMPLE, ActivityQuery(since_s=0, type="event"))[0]) == ["E", "C", "A"]
    assert ids(query(SAMPLE, ActivityQuery(since_s=0, type="page"))[0]) == ["B"]
    assert ids(query(SAMPLE, ActivityQuery(since_s=0, name="home"))[0]) == ["D", "B"]
    assert ids(query(SAMPLE, ActivityQuery(since_s=0, name="signup", type="event"))[0]) == [
        "C", "A"]
    assert query(SAMPLE, ActivityQuery(since_s=0, name="signup", type="page")) == ([], None)


def test_query_pages_with_a_cursor() -> None:
    page, cursor = query(SAMPLE, ActivityQuery(since_s=0, limit=2))
    assert ids(page) == ["E", "D"]
    assert cursor == encode_cursor(page[-1]) == "400.D"
    page, cursor = query(SAMPLE, ActivityQuery(since_s=0, limit=2, cursor=cursor))
    assert ids(page) == ["C", "B"]
    page, cursor = query(SAMPLE, ActivityQuery(since_s=0, limit=2, cursor=cursor))
    assert ids(page) == ["A"]
    assert cursor is None


def test_a_full_last_page_has_no_next_cursor() -> None:
    page, cursor = query(SAMPLE, ActivityQuery(since_s=0, limit=5))
    assert len(page) == 5 and cursor is None
    page, cursor = query(SAMPLE, ActivityQuery(since_s=0, type="event", limit=3))
    assert ids(page) == ["E", "C", "A"] and cursor is None


def test_query_does_not_mutate_history() -> None:
    snapshot = copy.deepcopy(SAMPLE)
    query(SAMPLE, ActivityQuery(since_s=0, limit=2, name="home"))
    assert SAMPLE == snapshot


activity_strategy = st.builds(
    lambda n, ts, name, type_: act(f"01H{n:023d}", ts, name, type_),
    st.integers(0, 10 ** 6), st.integers(0, 30),
    st.sampled_from(["a", "b", "c"]), st.sampled_from(["event", "page", "screen"]),
)


@settings(max_examples=200, deadline=None)
@given(
    activities=st.lists(activity_strategy, max_size=60, unique_by=lambda a: a["id"]),
    limit=st.integers(1, 7),
    since=st.integers(0, 30),
    type_=st.none() | st.sampled_from(["event", "page", "screen"]),
    name=st.none() | st.sampled_from(["a", "b", "c"]),
)
def test_cursor_pagination_visits_every_matching_item_exactly_once(
    activities: list[dict[str, Any]], limit: int, since: int, type_: str | None,
    name: str | None,
) -> None:
    history = build(*activities)
    expected = [
        a["id"] for a in sorted(history, key=lambda a: (a["timestamp"], a["id"]), reverse=True)
        if a["timestamp"] >= since and (type_ is None or a["type"] == type_)
        and (name is None or a["name"] == name)
    ]
    visited: list[str] = []
    cursor: str | None = None
    for _ in range(len(history) + 2):
        page, cursor = query(history, ActivityQuery(since_s=since, type=type_, name=name,
                                                    cursor=cursor, limit=limit))
        assert len(page) <= limit
        if cursor is not None:
            assert len(page) == limit, "a next cursor only follows a full page"
        visited.extend(ids(page))
        if cursor is None:
            break
    else:
        pytest.fail("pagination did not terminate")
    assert visited == expected
    assert len(set(visited)) == len(visited)


# --- cursors -------------------------------------------------------------------------------------


def test_cursor_round_trip() -> None:
    activity = act("01HV5Z8N3Q4R5S6T7V8W9X0Y1Z", 1_700_000_123)
    assert decode_cursor(encode_cursor(activity)) == (1_700_000_123, "01HV5Z8N3Q4R5S6T7V8W9X0Y1Z")


@pytest.mark.parametrize("garbage", ["", "abc", "123", "123.", ".ABC", "x.ABC", "1e3.ABC",
                                     "\u00e9.A"])
def test_decode_cursor_rejects_garbage(garbage: str) -> None:
    with pytest.raises(ValueError):
        decode_cursor(garbage)


def test_query_with_a_garbage_cursor_raises_value_error() -> None:
    with pytest.raises(ValueError):
        query(SAMPLE, ActivityQuery(since_s=0, cursor="not-a-cursor"))


@given(st.text(max_size=40))
def test_decode_cursor_either_raises_value_error_or_returns_a_position(text: str) -> None:
    try:
        timestamp, event_id = decode_cursor(text)
    except ValueError:
        return
    assert isinstance(timestamp, int)
    assert isinstance(event_id, str) and event_id
