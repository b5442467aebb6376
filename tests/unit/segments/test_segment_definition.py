"""Definitions: parsing into the tree, canonical JSON, indexing helpers, and every invalid form."""

from __future__ import annotations

import copy
import json
import pickle
from typing import Any

import pytest

from app.segments import (
    AllOf,
    AnyOf,
    AttributeCondition,
    Count,
    DefinitionError,
    Each,
    EventCondition,
    Key,
    Not,
    SendEvent,
    Where,
    Window,
    parse_segment,
)
from app.segments.definition import MAX_DEPTH

EXAMPLE = {
    "name": "Monitor cart, no purchase",
    "match": {
        "all": [
            {
                "event": "abandoned_cart",
                "where": [{"path": "items[].type", "op": "eq", "value": "monitor"}],
                "count": {"gte": 1},
                "within": "30d",
            },
            {"not": {"event": "purchased", "within": "14d"}},
            {"attribute": "email", "op": "exists"},
        ]
    },
}


def test_parse_example() -> None:
    segment = parse_segment("seg-1", EXAMPLE)
    assert segment.id == "seg-1"
    assert segment.name == "Monitor cart, no purchase"
    assert segment.match == AllOf(
        (
            EventCondition(
                "abandoned_cart",
                (Where((Key("items"), Each(), Key("type")), "eq", "monitor"),),
                Count(gte=1),
                Window(30, "d"),
            ),
            Not(EventCondition("purchased", (), Count(gte=1), Window(14, "d"))),
            AttributeCondition((Key("email"),), "exists"),
        )
    )
    assert segment.on_enter is None and segment.on_exit is None


def test_example_canonical_json_round_trips() -> None:
    segment = parse_segment("seg-1", EXAMPLE)
    doc = segment.to_json()
    # The default count is left implicit; everything else is as written.
    expected = copy.deepcopy(EXAMPLE)
    del expected["match"]["all"][0]["count"]
    assert doc == expected
    assert parse_segment("seg-1", doc) == segment
    assert json.loads(json.dumps(doc)) == doc


def test_event_defaults() -> None:
    segment = parse_segment("s", {"name": "n", "match": {"event": "signed_up"}})
    assert segment.match == EventCondition("signed_up", (), Count(gte=1), None)
    assert segment.to_json()["match"] == {"event": "signed_up"}


@pytest.mark.parametrize(
    ("within", "seconds"),
    [("1m", 60), ("90m", 5400), ("1h", 3600), ("24h", 86400), ("1d", 86400), ("30d", 2592000)],
)
def test_within_units(within: str, seconds: int) -> None:
    segment = parse_segment("s", {"name": "n", "match": {"event": "e", "within": within}})
    assert isinstance(segment.match, EventCondition)
    assert segment.match.within is not None
    assert segment.match.within.seconds == seconds
    assert segment.to_json()["match"]["within"] == within


@pytest.mark.parametrize(
    "count",
    [{"eq": 0}, {"eq": 3}, {"gte": 2}, {"lte": 5}, {"gt": 0}, {"lt": 1},
     {"gte": 2, "lte": 5}, {"gt": 1, "lt": 4, "eq": 2}, {"gte": 1, "lte": 1}, {"gte": 0}],
)
def test_count_forms_round_trip(count: dict[str, int]) -> None:
    doc = {"name": "n", "match": {"event": "e", "count": count}}
    segment = parse_segment("s", doc)
    assert isinstance(segment.match, EventCondition)
    assert segment.match.count == Count(**count)
    assert segment.to_json() == doc


def test_empty_where_is_dropped_from_canonical_json() -> None:
    segment = parse_segment("s", {"name": "n", "match": {"event": "e", "where": []}})
    assert segment.to_json()["match"] == {"event": "e"}


def test_paths_are_canonicalised() -> None:
    doc = {
        "name": "n",
        "match": {
            "any": [
                {"attribute": '["plan"]', "op": "eq", "value": "pro"},
                {"attribute": '["sign up date"]', "op": "exists"},
                {"event": "e", "where": [{"path": 'cart["unit price"]["usd"]', "op": "gt", "value": 5}]},
            ]
        },
    }
    canonical = parse_segment("s", doc).to_json()["match"]["any"]
    assert canonical[0]["attribute"] == "plan"
    assert canonical[1]["attribute"] == '["sign up date"]'
    assert canonical[2]["where"][0]["path"] == 'cart["unit price"].usd'


def test_actions() -> None:
    doc = {
        "name": "n",
        "match": {"event": "e"},
        "on_enter": {"send_event": {"name": "entered", "data": {"segment": "n", "n": [1, {"a": None}]}}},
        "on_exit": {"send_event": {"name": "left"}},
    }
    segment = parse_segment("s", doc)
    assert segment.on_enter == SendEvent("entered", {"segment": "n", "n": [1, {"a": None}]})
    assert segment.on_exit == SendEvent("left", {})
    assert segment.to_json()["on_exit"] == {"send_event": {"name": "left", "data": {}}}
    assert parse_segment("s", segment.to_json()) == segment


def test_parsed_values_do_not_alias_the_input_or_the_output() -> None:
    doc = {
        "name": "n",
        "match": {"attribute": "plan", "op": "in", "value": ["pro", "team"]},
        "on_enter": {"send_event": {"name": "x", "data": {"k": [1]}}},
    }
    segment = parse_segment("s", doc)
    doc["match"]["value"].append("free")
    doc["on_enter"]["send_event"]["data"]["k"].append(2)
    assert segment.match == AttributeCondition((Key("plan"),), "in", ["pro", "team"])
    out = segment.to_json()
    out["match"]["value"].clear()
    assert segment.to_json()["match"]["value"] == ["pro", "team"]
    assert segment.on_enter is not None and segment.on_enter.data == {"k": [1]}


def test_segments_are_hashable_and_frozen() -> None:
    segment = parse_segment("s", EXAMPLE)
    assert hash(segment) == hash(parse_segment("s", copy.deepcopy(EXAMPLE)))
    assert {segment: 1}[parse_segment("s", EXAMPLE)] == 1
    with pytest.raises(AttributeError):
        segment.name = "other"  # type: ignore[misc]


def test_event_names_and_attribute_roots() -> None:
    doc = {
        "name": "n",
        "match": {
            "any": [
                {"event": "a"},
                {"not": {"all": [{"event": "b"}, {"attribute": "cart.total", "op": "gt", "value": 1}]}},
                {"attribute": '["sign up date"]', "op": "exists"},
                {"attribute": "tags[]", "op": "eq", "value": "vip"},
                {"event": "a", "within": "1d"},
                {"not": {"not": {"attribute": "email", "op": "not_exists"}}},
            ]
        },
    }
    segment = parse_segment("s", doc)
    assert segment.event_names() == frozenset({"a", "b"})
    assert segment.attribute_roots() == frozenset({"cart", "sign up date", "tags", "email"})
    only_events = parse_segment("s", {"name": "n", "match": {"event": "x"}})
    assert only_events.attribute_roots() == frozenset()
    only_attrs = parse_segment("s", {"name": "n", "match": {"attribute": "x", "op": "exists"}})
    assert only_attrs.event_names() == frozenset()


def test_any_and_nested_structure() -> None:
    doc = {"name": "n", "match": {"any": [{"not": {"any": [{"event": "a"}]}}, {"all": [{"event": "b"}]}]}}
    segment = parse_segment("s", doc)
    assert segment.match == AnyOf(
        (Not(AnyOf((EventCondition("a"),))), AllOf((EventCondition("b"),)))
    )
    assert segment.to_json() == doc


def test_nesting_limit() -> None:
    node: dict[str, Any] = {"event": "e"}
    for _ in range(MAX_DEPTH - 1):
        node = {"not": node}
    parse_segment("s", {"name": "n", "match": node})  # exactly at the limit is fine
    with pytest.raises(DefinitionError, match=f"nested deeper than {MAX_DEPTH}"):
        parse_segment("s", {"name": "n", "match": {"not": node}})


def test_definition_error_fields_and_pickling() -> None:
    with pytest.raises(DefinitionError) as info:
        parse_segment("s", {"name": "n", "match": {"event": "e", "within": "30 days"}})
    error = info.value
    assert error.location == "match.within"
    assert error.reason == 'expected "<n>m|h|d", got "30 days"'
    assert isinstance(error, ValueError)
    clone = pickle.loads(pickle.dumps(error))
    assert str(clone) == str(error) and clone.location == error.location


def _with_match(match: Any) -> dict[str, Any]:
    return {"name": "n", "match": match}


def _cart(**changes: Any) -> dict[str, Any]:
    """The example's first condition, modified."""
    condition = copy.deepcopy(EXAMPLE["match"]["all"][0])
    condition.update(changes)
    return _with_match({"all": [condition]})


def _where(item: Any) -> dict[str, Any]:
    return _with_match({"all": [{"event": "e", "where": [{"path": "a", "op": "exists"}, item]}]})


INVALID: list[tuple[str, Any, str]] = [
    # the document and its top-level keys
    ("not an object", ["x"], 'definition: expected an object, got ["x"]'),
    ("missing name", {"match": {"event": "e"}}, "name: required, a non-empty string"),
    ("empty name", {"name": "", "match": {"event": "e"}}, 'name: expected a non-empty string, got ""'),
    ("name not a string", {"name": 5, "match": {"event": "e"}}, "name: expected a non-empty string, got 5"),
    ("missing match", {"name": "n"}, "match: required"),
    ("unknown top-level key", {"name": "n", "match": {"event": "e"}, "segment": 1},
     "segment: unknown key (allowed here: name, match, on_enter, on_exit)"),
    ("unknown key with a space", {"name": "n", "match": {"event": "e"}, "a b": 1},
     '["a b"]: unknown key (allowed here: name, match, on_enter, on_exit)'),
    # condition shapes
    ("match not an object", _with_match([]), "match: expected a condition object, got []"),
    ("empty condition", _with_match({}),
     'match: expected a condition with one of "all", "any", "not", "event", "attribute", got keys []'),
    ("no condition kind", _with_match({"evnt": "e"}),
     'match: expected a condition with one of "all", "any", "not", "event", "attribute", got keys ["evnt"]'),
    ("two kinds", _with_match({"event": "e", "attribute": "a"}),
     'match: ambiguous condition: has both "event" and "attribute"'),
    ("all and any", _with_match({"all": [], "any": []}), 'match: ambiguous condition: has both "all" and "any"'),
    ("all not a list", _with_match({"all": {"event": "e"}}),
     'match.all: expected a non-empty list of conditions, got {"event": "e"}'),
    ("empty all", _with_match({"all": []}), "match.all: expected a non-empty list of conditions, got []"),
    ("empty any", _with_match({"any": []}), "match.any: expected a non-empty list of conditions, got []"),
    ("extra key beside all", _with_match({"all": [{"event": "e"}], "name": "x"}),
     "match.name: unknown key (allowed here: all)"),
    ("extra key beside not", _with_match({"not": {"event": "e"}, "within": "1d"}),
     "match.within: unknown key (allowed here: not)"),
    ("child not an object", _with_match({"any": [{"event": "e"}, "purchased"]}),
     'match.any[1]: expected a condition object, got "purchased"'),
    ("not of a list", _with_match({"not": [{"event": "e"}]}),
     'match.not: expected a condition object, got [{"event": "e"}]'),
    ("deep location", _with_match({"any": [{"event": "e"}, {"not": {"all": [{"event": "e"}, {"event": ""}]}}]}),
     'match.any[1].not.all[1].event: expected a non-empty string, got ""'),
    # event conditions
    ("event not a string", _with_match({"event": 3}), "match.event: expected a non-empty string, got 3"),
    ("unknown event key", _cart(withn="30d"),
     "match.all[0].withn: unknown key (allowed here: event, where, count, within)"),
    ("within words", _cart(within="30 days"), 'match.all[0].within: expected "<n>m|h|d", got "30 days"'),
    ("within zero", _cart(within="0d"), 'match.all[0].within: expected "<n>m|h|d", got "0d"'),
    ("within negative", _cart(within="-1d"), 'match.all[0].within: expected "<n>m|h|d", got "-1d"'),
    ("within seconds", _cart(within="30s"), 'match.all[0].within: expected "<n>m|h|d", got "30s"'),
    ("within weeks", _cart(within="2w"), 'match.all[0].within: expected "<n>m|h|d", got "2w"'),
    ("within no unit", _cart(within="30"), 'match.all[0].within: expected "<n>m|h|d", got "30"'),
    ("within upper case", _cart(within="30D"), 'match.all[0].within: expected "<n>m|h|d", got "30D"'),
    ("within leading zero", _cart(within="030d"), 'match.all[0].within: expected "<n>m|h|d", got "030d"'),
    ("within number", _cart(within=30), 'match.all[0].within: expected "<n>m|h|d", got 30'),
    ("within null", _cart(within=None), 'match.all[0].within: expected "<n>m|h|d", got null'),
    ("count not an object", _cart(count=1),
     "match.all[0].count: expected an object with eq/gte/lte/gt/lt, got 1"),
    ("count empty", _cart(count={}), "match.all[0].count: expected at least one of eq, gte, lte, gt, lt"),
    ("count unknown comparator", _cart(count={"ge": 1}),
     "match.all[0].count.ge: unknown key (allowed here: eq, gte, lte, gt, lt)"),
    ("count negative", _cart(count={"gte": -1}),
     "match.all[0].count.gte: expected a non-negative integer, got -1"),
    ("count float", _cart(count={"lt": 1.5}), "match.all[0].count.lt: expected a non-negative integer, got 1.5"),
    ("count bool", _cart(count={"eq": True}), "match.all[0].count.eq: expected a non-negative integer, got true"),
    ("count string", _cart(count={"gte": 1, "lte": "5"}),
     'match.all[0].count.lte: expected a non-negative integer, got "5"'),
    ("where not a list", _cart(where={"path": "a", "op": "exists"}),
     'match.all[0].where: expected a list of {path, op, value}, got {"path": "a", "op": "exists"}'),
    ("where item not an object", _where("a = 1"),
     'match.all[0].where[1]: expected an object {path, op, value}, got "a = 1"'),
    ("where unknown key", _where({"path": "a", "op": "eq", "value": 1, "negate": True}),
     "match.all[0].where[1].negate: unknown key (allowed here: path, op, value)"),
    ("where missing path", _where({"op": "exists"}), "match.all[0].where[1].path: required"),
    ("where path not a string", _where({"path": ["a"], "op": "exists"}),
     'match.all[0].where[1].path: expected a path string, got ["a"]'),
    ("where bad path", _where({"path": "items[].", "op": "exists"}),
     "match.all[0].where[1].path: invalid path \"items[].\": path ends with '.'"),
    ("where missing op", _where({"path": "a", "value": 1}),
     "match.all[0].where[1].op: required, one of eq, neq, gt, gte, lt, lte, contains, not_contains, "
     "starts_with, ends_with, in, exists, not_exists"),
    ("where unknown op", _where({"path": "a", "op": "equals", "value": 1}),
     'match.all[0].where[1].op: unknown operator "equals", expected one of eq, neq, gt, gte, lt, lte, '
     "contains, not_contains, starts_with, ends_with, in, exists, not_exists"),
    ("where op not a string", _where({"path": "a", "op": None, "value": 1}),
     "match.all[0].where[1].op: unknown operator null, expected one of eq, neq, gt, gte, lt, lte, "
     "contains, not_contains, starts_with, ends_with, in, exists, not_exists"),
    ("where missing value", _where({"path": "a", "op": "eq"}),
     'match.all[0].where[1].value: required with operator "eq"'),
    ("where value for exists", _where({"path": "a", "op": "exists", "value": True}),
     'match.all[0].where[1].value: not allowed with operator "exists"'),
    ("where in needs a list", _where({"path": "a", "op": "in", "value": "gold"}),
     'match.all[0].where[1].value: expected a list for operator "in"'),
    ("where value not JSON", _where({"path": "a", "op": "eq", "value": {"k": [1, float("nan")]}}),
     "match.all[0].where[1].value.k[1]: not a JSON number: nan"),
    ("where value a tuple", _where({"path": "a", "op": "eq", "value": (1, 2)}),
     "match.all[0].where[1].value: not a JSON value: tuple"),
    # attribute conditions
    ("attribute not a string", _with_match({"attribute": 1, "op": "exists"}),
     "match.attribute: expected a path string, got 1"),
    ("attribute with spaces", _with_match({"attribute": "sign up date", "op": "exists"}),
     'match.attribute: invalid path "sign up date": whitespace at position 4 (write keys with spaces as ["..."])'),
    ("attribute empty", _with_match({"attribute": "", "op": "exists"}),
     'match.attribute: invalid path "": empty path'),
    ("attribute unknown key", _with_match({"attribute": "a", "op": "exists", "where": []}),
     "match.where: unknown key (allowed here: attribute, op, value)"),
    ("attribute missing op", _with_match({"any": [{"attribute": "a", "value": 1}]}),
     "match.any[0].op: required, one of eq, neq, gt, gte, lt, lte, contains, not_contains, starts_with, "
     "ends_with, in, exists, not_exists"),
    ("attribute value for not_exists", _with_match({"attribute": "a", "op": "not_exists", "value": None}),
     'match.value: not allowed with operator "not_exists"'),
    ("attribute starts_with number", _with_match({"attribute": "a", "op": "starts_with", "value": 1}),
     'match.value: expected a string for operator "starts_with"'),
    ("attribute ends_with list", _with_match({"attribute": "a", "op": "ends_with", "value": ["x"]}),
     'match.value: expected a string for operator "ends_with"'),
    ("attribute gt bool", _with_match({"attribute": "a", "op": "gt", "value": False}),
     'match.value: expected a number or string for operator "gt"'),
    ("attribute lt null", _with_match({"attribute": "a", "op": "lt", "value": None}),
     'match.value: expected a number or string for operator "lt"'),
    ("attribute infinite", _with_match({"attribute": "a", "op": "eq", "value": float("inf")}),
     "match.value: not a JSON number: inf"),
    # actions
    ("action not an object", {"name": "n", "match": {"event": "e"}, "on_enter": "x"},
     'on_enter: expected {"send_event": {"name", "data"}}, got "x"'),
    ("action missing send_event", {"name": "n", "match": {"event": "e"}, "on_enter": {}},
     "on_enter.send_event: required"),
    ("action unknown kind", {"name": "n", "match": {"event": "e"}, "on_exit": {"webhook": {}}},
     "on_exit.webhook: unknown key (allowed here: send_event)"),
    ("send_event not an object", {"name": "n", "match": {"event": "e"}, "on_exit": {"send_event": "x"}},
     'on_exit.send_event: expected {"name", "data"}, got "x"'),
    ("send_event missing name", {"name": "n", "match": {"event": "e"}, "on_enter": {"send_event": {"data": {}}}},
     "on_enter.send_event.name: required, a non-empty string"),
    ("send_event empty name", {"name": "n", "match": {"event": "e"}, "on_enter": {"send_event": {"name": ""}}},
     'on_enter.send_event.name: expected a non-empty string, got ""'),
    ("send_event data not an object",
     {"name": "n", "match": {"event": "e"}, "on_enter": {"send_event": {"name": "x", "data": [1]}}},
     "on_enter.send_event.data: expected an object, got [1]"),
    ("send_event unknown key",
     {"name": "n", "match": {"event": "e"}, "on_enter": {"send_event": {"name": "x", "delay": "1h"}}},
     "on_enter.send_event.delay: unknown key (allowed here: name, data)"),
    ("send_event data not JSON",
     {"name": "n", "match": {"event": "e"}, "on_enter": {"send_event": {"name": "x", "data": {"a b": {1: 2}}}}},
     'on_enter.send_event.data["a b"]: object key 1 is not a string'),
]


@pytest.mark.parametrize(("doc", "message"), [(d, m) for _, d, m in INVALID], ids=[i for i, _, _ in INVALID])
def test_invalid_definitions(doc: Any, message: str) -> None:
    with pytest.raises(DefinitionError) as info:
        parse_segment("s", doc)
    assert str(info.value) == message


@pytest.mark.parametrize("segment_id", ["", None, 7])
def test_invalid_segment_id(segment_id: Any) -> None:
    with pytest.raises(DefinitionError, match=r"^id: expected a non-empty string"):
        parse_segment(segment_id, EXAMPLE)


@pytest.mark.parametrize("field, value", [
    ("recipient", "victim@example.com\r\nBcc: list@evil.example"),
    ("from_address", "not an address"),
    ("reply_to", "a@b.c\nX-Injected: 1"),
])
def test_action_data_meets_the_track_api_s_rules_for_reserved_fields(field: str,
                                                                       value: str) -> None:
    doc = {"name": "x", "match": {"event": "e"},
           "on_enter": {"send_event": {"name": "n", "data": {field: value}}}}
    with pytest.raises(DefinitionError) as caught:
        parse_segment("s", doc)
    assert f"on_enter.send_event.data.{field}" in str(caught.value)
    assert "email address" in str(caught.value)
    ok = {**doc, "on_enter": {"send_event": {"name": "n",
                                             "data": {field: "Ann <ann@example.com>"}}}}
    assert parse_segment("s", ok).on_enter.data == {field: "Ann <ann@example.com>"}


def test_a_definition_over_the_condition_bound_is_refused_with_its_count() -> None:
    from app.segments.definition import MAX_CONDITIONS, count_conditions
    within = [{"event": f"e{i}"} for i in range(MAX_CONDITIONS - 1)]
    assert count_conditions(parse_segment("s", {"name": "x", "match": {"any": within}}).match) \
        == MAX_CONDITIONS
    over = within + [{"event": "last", "where": [{"path": "a", "op": "exists"}]}]
    with pytest.raises(DefinitionError, match=f"has {MAX_CONDITIONS + 2} conditions"):
        parse_segment("s", {"name": "x", "match": {"any": over}})


def test_a_definition_over_the_size_bound_is_refused_before_parsing() -> None:
    from app.segments.definition import MAX_DEFINITION_BYTES
    doc = {"name": "x" * (MAX_DEFINITION_BYTES + 1), "match": {"event": "e"}}
    with pytest.raises(DefinitionError, match="bytes as JSON"):
        parse_segment("s", doc)


def test_every_mistake_is_named_not_only_the_first() -> None:
    doc = {"name": "", "colour": "red",
           "match": {"all": [
               {"event": "abandoned_cart", "within": "30 days", "count": {"gte": -1},
                "where": [{"path": "a", "op": "eq", "value": 1}, {"path": "b", "op": "near"}]},
               {"attribute": "email", "op": "exists"},
               {"not": {"event": ""}},
               {"attribute": "plan", "op": "eq"}]},
           "on_enter": {"send_event": {"name": 5, "data": []}}}
    with pytest.raises(DefinitionError) as info:
        parse_segment("s", doc)
    error = info.value
    # The first mistake stays the error's own location/reason (what callers used to see).
    assert (error.location, error.reason) == ("colour", "unknown key (allowed here: name, "
                                                        "match, on_enter, on_exit)")
    assert str(error) == f"{error.location}: {error.reason}"
    assert [e.location for e in error.errors] == [
        "colour", "name", "match.all[0].where[1].op", "match.all[0].count.gte",
        "match.all[0].within", "match.all[2].not.event", "match.all[3].value",
        "on_enter.send_event.name", "on_enter.send_event.data"]
    assert all(e.errors == [e] for e in error.errors)
    clone = pickle.loads(pickle.dumps(error))
    assert [str(e) for e in clone.errors] == [str(e) for e in error.errors]


def test_a_flood_of_mistakes_is_listed_up_to_a_cap() -> None:
    from app.segments.definition import MAX_REPORTED_ERRORS

    doc = {"name": "n", "match": {"any": [{"event": ""} for _ in range(80)]}}
    with pytest.raises(DefinitionError) as info:
        parse_segment("s", doc)
    errors = info.value.errors
    assert len(errors) == MAX_REPORTED_ERRORS + 1
    assert str(errors[-1]) == "definition: 30 more not listed"


def test_what_evaluation_reads_of_a_condition_is_worked_out_once_and_is_not_its_value() -> None:
    # A window's length, a count's saturation and an all/any's children in evaluation order are
    # read at every evaluation: computed when the condition is made, not at each read (the
    # hot path is compiled with mypyc, where functools.cached_property computes every time).
    match = parse_segment("s", {"name": "n", "match": {"any": [
        {"event": "viewed", "count": {"gt": 2, "lte": 9}, "within": "2h"},
        {"attribute": "plan", "op": "eq", "value": "pro"}]}}).match
    assert match.static_first is match.static_first
    static, timed = match.static_first
    assert static == (match.conditions[1], True) and timed == (match.conditions[0], False)
    event = match.conditions[0]
    assert event.within.seconds == 7_200 and event.count.saturation == 10
    # They follow from the fields, so they are not arguments, nor in equality, hashes or repr.
    from app.segments.conditions import Count, Window

    assert Count(gt=2, lte=9) == event.count and hash(Count(gt=2, lte=9)) == hash(event.count)
    all_of = parse_segment("s", {"name": "n", "match": {"all": list(
        match.to_json()["any"])}}).match
    assert all_of.conditions == match.conditions and all_of != match, "all is not any"
    assert repr(Window(2, "h")) == "Window(amount=2, unit='h')"
    with pytest.raises(TypeError):
        Window(2, "h", 7_200)
    assert match.to_json() == {"any": [
        {"event": "viewed", "count": {"lte": 9, "gt": 2}, "within": "2h"},
        {"attribute": "plan", "op": "eq", "value": "pro"}]}
