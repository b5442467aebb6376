"""Property tests: change points never miss a change, the evaluator agrees with a naive reference,
and definitions round-trip through their canonical JSON."""

from __future__ import annotations

import json
from unittest.mock import patch
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.segments import (
    AllOf,
    AnyOf,
    AttributeCondition,
    EventCondition,
    Not,
    evaluate,
    is_member,
    next_change_at,
    parse_segment,
)
from app.segments.definition import Condition, Segment
from app.segments.operators import OPERATORS, VALUELESS, apply
from app.segments.paths import Each, Index, Key, format_path, parse_path, resolve
from app.core.history import Retention
from app import person_store
from app.person_store import PersonEvents
from tests.unit.memory_tables import MemoryTables

# database=None: these tests must not write example databases into the shared working tree.
SETTINGS = settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)

# ---- values and conditions over a small vocabulary, so that conditions actually match -------------

scalars = st.one_of(
    st.integers(-2, 12),
    st.sampled_from(["1", "10", "9", "2.5", "m", "n", "mon", "", "x"]),
    st.booleans(),
    st.none(),
)
json_values = st.recursive(
    scalars | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


def expected_for(op: str) -> st.SearchStrategy[Any]:
    if op == "in":
        return st.lists(scalars, max_size=4)
    if op in ("starts_with", "ends_with"):
        return st.sampled_from(["", "m", "mo", "n", "1", "x"])
    if op in ("gt", "gte", "lt", "lte"):
        return st.one_of(st.integers(-2, 12), st.sampled_from(["1", "10", "9", "m", "n"]))
    return st.one_of(scalars, st.lists(scalars, max_size=2))


@st.composite
def comparisons(draw: st.DrawFn, key: str, paths: list[str]) -> dict[str, Any]:
    op = draw(st.sampled_from(OPERATORS))
    doc: dict[str, Any] = {key: draw(st.sampled_from(paths)), "op": op}
    if op not in VALUELESS:
        doc["value"] = draw(expected_for(op))
    return doc


EVENT_NAMES = ["a", "b"]
DATA_PATHS = ["x", "items[].t", "items[0].t", "items[].tags[]", "missing", '["odd key"]']
ATTRIBUTE_PATHS = ["plan", "age", "tags[]", "tags", "address.city", '["sign up"]']
WINDOWS = ["1m", "2m", "3m", "5m", "1h"]


@st.composite
def counts(draw: st.DrawFn) -> dict[str, int]:
    keys = draw(st.lists(st.sampled_from(["eq", "gte", "lte", "gt", "lt"]), min_size=1, max_size=3, unique=True))
    return {k: draw(st.integers(0, 4)) for k in keys}


@st.composite
def event_conditions(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {"event": draw(st.sampled_from(EVENT_NAMES))}
    if draw(st.integers(0, 2)) == 0:  # a where-clause filters most events out: keep it rarer
        doc["where"] = draw(st.lists(comparisons("path", DATA_PATHS), max_size=2))
    if draw(st.booleans()):
        doc["count"] = draw(counts())
    if draw(st.integers(0, 3)):  # mostly windowed: that is where the time logic lives
        doc["within"] = draw(st.sampled_from(WINDOWS))
    return doc


leaf_conditions = st.one_of(
    event_conditions(), event_conditions(), event_conditions(), comparisons("attribute", ATTRIBUTE_PATHS)
)
condition_docs = st.recursive(
    leaf_conditions,
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda cs: {"all": cs}),
        st.lists(inner, min_size=1, max_size=3).map(lambda cs: {"any": cs}),
        inner.map(lambda c: {"not": c}),
    ),
    max_leaves=6,
)
segments = condition_docs.map(lambda match: parse_segment("s", {"name": "n", "match": match}))

item = st.fixed_dictionaries(
    {}, optional={"t": st.sampled_from(["m", "n", "mon"]), "tags": st.lists(scalars, max_size=2)}
)
event_data = st.fixed_dictionaries(
    {},
    optional={
        "x": scalars,
        "items": st.lists(item, max_size=3),
        "odd key": scalars,
    },
)
timestamps = st.one_of(st.integers(0, 600), st.integers(0, 600), st.integers(0, 600).map(lambda t: t + 0.5))


@st.composite
def activity_lists(draw: st.DrawFn) -> list[dict[str, Any]]:
    return [
        {
            "id": str(i),
            "name": draw(st.sampled_from(EVENT_NAMES + ["a", "b", "other"])),
            "type": "event",
            "data": draw(event_data),
            "timestamp": draw(timestamps),
            "processed_at": None,
        }
        for i in range(draw(st.integers(0, 12) | st.integers(3, 12)))
    ]


attribute_docs = st.fixed_dictionaries(
    {},
    optional={
        "plan": scalars,
        "age": scalars,
        "tags": st.lists(scalars, max_size=3),
        "address": st.fixed_dictionaries({}, optional={"city": scalars}),
        "sign up": scalars,
    },
)

# ---- the naive reference ------------------------------------------------------------------------


def reference(condition: Condition, activities: list, attributes: dict, now: int) -> bool:
    """Membership straight from the spec: no buckets, no short-circuits, no early stops."""
    if isinstance(condition, AttributeCondition):
        return apply(condition.op, resolve(attributes, condition.path), condition.value)
    if isinstance(condition, EventCondition):
        w = None if condition.within is None else condition.within.seconds
        n = sum(
            1
            for a in activities
            if a["name"] == condition.event
            and a["timestamp"] <= now
            and (w is None or now - w < a["timestamp"])
            and all(apply(p.op, resolve(a["data"], p.path), p.value) for p in condition.where)
        )
        return condition.count.holds(n)
    if isinstance(condition, Not):
        return not reference(condition.condition, activities, attributes, now)
    results = [reference(c, activities, attributes, now) for c in condition.conditions]
    return all(results) if isinstance(condition, AllOf) else any(results)


# ---- properties ---------------------------------------------------------------------------------


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Segment, list, dict, int]:
    """A segment, a history, attributes and a clock; the clock is often on or next to an edge."""
    segment, activities, attributes = draw(segments), draw(activity_lists()), draw(attribute_docs)
    now = draw(st.integers(-10, 800))
    if activities and draw(st.booleans()):
        edge = int(draw(st.sampled_from(activities))["timestamp"])
        # Entering (offset 0) or leaving one of the windows, give or take a second.
        now = edge + draw(st.sampled_from([0, 60, 120, 180, 300, 3600])) + draw(st.sampled_from([-1, 0, 1]))
    return segment, activities, attributes, now


@SETTINGS
@given(scenarios(), st.data())
def test_membership_is_constant_until_the_next_change(
    scenario: tuple[Segment, list, dict, int], data: st.DataObject
) -> None:
    segment, activities, attributes, now = scenario
    result = evaluate(segment, activities, attributes, now)
    member = is_member(segment, activities, attributes, now)
    assert result.member is member
    assert result.member is reference(segment.match, activities, attributes, now)
    change = next_change_at(segment, activities, attributes, now)
    assert change == result.next_change_at
    if change is None:
        # Past every entry and exit (timestamps <= 601, windows <= 1h) and far beyond.
        later = [now + 1, now + 61, 601 + 3600, 10**9, data.draw(st.integers(now, 10_000), "later")]
    else:
        assert isinstance(change, int) and change > now
        later = [now, now + 1, change - 1, data.draw(st.integers(now, change - 1), "inside")]
    for t in later:
        if change is not None and t >= change:
            continue
        assert is_member(segment, activities, attributes, t) is member, t
        assert reference(segment.match, activities, attributes, t) is member, t


@SETTINGS
@given(scenarios())
def test_following_change_points_tracks_the_reference(scenario: tuple[Segment, list, dict, int]) -> None:
    """Walk from change point to change point: at every second in between the reference agrees."""
    segment, activities, attributes, now = scenario
    steps = 0
    while now <= 601 + 3600 and steps < 40:
        result = evaluate(segment, activities, attributes, now)
        assert result.member is reference(segment.match, activities, attributes, now)
        assert result.member is is_member(segment, activities, attributes, now)
        if result.next_change_at is None:
            break
        # Every second up to the change (bounded, to keep the test fast).
        for t in range(now, min(result.next_change_at, now + 200)):
            assert reference(segment.match, activities, attributes, t) is result.member, t
        now, steps = result.next_change_at, steps + 1


# ---- round trips ----------------------------------------------------------------------------------

keys = st.text(max_size=8)
steps_strategy = st.tuples(keys.map(Key)).flatmap(
    lambda head: st.lists(
        st.one_of(keys.map(Key), st.integers(0, 99).map(Index), st.just(Each())), max_size=5
    ).map(lambda tail: head + tuple(tail))
)


@settings(max_examples=500, deadline=None, database=None)
@given(steps_strategy)
def test_path_format_round_trips(steps: tuple) -> None:
    text = format_path(steps)
    assert parse_path(text) == steps
    assert format_path(parse_path(text)) == text


def _render_path(steps: tuple, quote_all: bool) -> str:
    """A non-canonical spelling: every key quoted."""
    if not quote_all:
        return format_path(steps)
    parts = []
    for step in steps:
        if isinstance(step, Key):
            parts.append(f"[{json.dumps(step.name)}]")
        elif isinstance(step, Index):
            parts.append(f"[{step.index}]")
        else:
            parts.append("[]")
    return "".join(parts)


wild_paths = st.tuples(steps_strategy, st.booleans()).map(lambda p: _render_path(*p))


@st.composite
def wild_comparisons(draw: st.DrawFn, key: str) -> dict[str, Any]:
    op = draw(st.sampled_from(OPERATORS))
    doc: dict[str, Any] = {key: draw(wild_paths), "op": op}
    if op not in VALUELESS:
        if op == "in":
            doc["value"] = draw(st.lists(json_values, max_size=3))
        elif op in ("starts_with", "ends_with"):
            doc["value"] = draw(st.text(max_size=5))
        elif op in ("gt", "gte", "lt", "lte"):
            doc["value"] = draw(st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=5)))
        else:
            doc["value"] = draw(json_values)
    return doc


@st.composite
def wild_events(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {"event": draw(st.text(min_size=1, max_size=10))}
    if draw(st.booleans()):
        doc["where"] = draw(st.lists(wild_comparisons("path"), max_size=3))
    if draw(st.booleans()):
        comparators = draw(st.lists(st.sampled_from(["eq", "gte", "lte", "gt", "lt"]), min_size=1, unique=True))
        doc["count"] = {k: draw(st.integers(0, 10**6)) for k in comparators}
    if draw(st.booleans()):
        doc["within"] = f"{draw(st.integers(1, 10**6))}{draw(st.sampled_from('mhd'))}"
    return doc


wild_conditions = st.recursive(
    st.one_of(wild_events(), wild_comparisons("attribute")),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=4).map(lambda cs: {"all": cs}),
        st.lists(inner, min_size=1, max_size=4).map(lambda cs: {"any": cs}),
        inner.map(lambda c: {"not": c}),
    ),
    max_leaves=10,
)
actions = st.fixed_dictionaries(
    {"send_event": st.fixed_dictionaries(
        # an action's event meets the track API's rules: its name is not blank
        {"name": st.text(min_size=1, max_size=10).filter(str.strip)},
        optional={"data": st.dictionaries(st.text(max_size=5), json_values, max_size=3)},
    )}
)
wild_definitions = st.fixed_dictionaries(
    {"name": st.text(min_size=1, max_size=20), "match": wild_conditions},
    optional={"on_enter": actions, "on_exit": actions},
)


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(wild_definitions, st.text(min_size=1, max_size=10))
def test_definitions_round_trip(doc: dict[str, Any], segment_id: str) -> None:
    segment = parse_segment(segment_id, doc)
    canonical = segment.to_json()
    assert parse_segment(segment_id, canonical) == segment
    # The canonical form is a fixed point, and survives real JSON serialisation.
    assert parse_segment(segment_id, canonical).to_json() == canonical
    wire = json.loads(json.dumps(canonical))
    assert parse_segment(segment_id, wire) == segment
    assert segment.event_names() == _all_events(segment.match)


def _all_events(condition: Condition) -> frozenset[str]:
    if isinstance(condition, EventCondition):
        return frozenset({condition.event})
    if isinstance(condition, AttributeCondition):
        return frozenset()
    if isinstance(condition, Not):
        return _all_events(condition.condition)
    assert isinstance(condition, (AllOf, AnyOf))
    return frozenset().union(*(_all_events(c) for c in condition.conditions))


# ---- the stored history, read by range, decides the same ---------------------------------------


@pytest.mark.parametrize("short_history", [0, person_store.SHORT_HISTORY])
@SETTINGS
@given(scenario=scenarios())
def test_a_stored_history_read_by_range_evaluates_like_the_list(
    short_history: int, scenario: tuple[Segment, list, dict, int]
) -> None:
    """PersonEvents reads only a condition's name, from its window's start, and past events
    only up to the count's saturation, newest first (or, for a short history, the whole history
    once): the verdict and next change are the same."""
    segment, activities, attributes, now = scenario
    tables = MemoryTables()
    stored = PersonEvents(tables, 0, "p")
    with patch.object(person_store, "SHORT_HISTORY", short_history):
        for activity in activities:
            stored.add(activity, now_s=0, retention=Retention(max_age_s=0, max_events=10**6))
        assert evaluate(segment, stored, attributes, now) == evaluate(segment, activities,
                                                                      attributes, now)
