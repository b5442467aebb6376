"""Unit tests for app.ingest.forms: bracketed form keys decode into nested dicts and lists."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.ingest.forms import decode_form
from app.ingest.validate import validate_event, validate_identify

NOW = 1_700_000_000.0


def parse(body: str) -> dict[str, Any]:
    return decode_form(parse_qsl(body, keep_blank_values=True))


# --- the spec's example -------------------------------------------------------------------------


def test_spec_example_decodes_to_strings() -> None:
    assert parse("name=purchased&data[price]=23.45&timestamp=1359389415") == {
        "name": "purchased",
        "data": {"price": "23.45"},
        "timestamp": "1359389415",
    }


def test_spec_example_with_percent_encoded_brackets() -> None:
    # curl -d leaves brackets alone, but other clients percent-encode them.
    assert parse("name=purchased&data%5Bprice%5D=23.45&timestamp=1359389415") == {
        "name": "purchased",
        "data": {"price": "23.45"},
        "timestamp": "1359389415",
    }


def test_spec_example_validates_into_an_event_with_an_int_timestamp() -> None:
    body = parse("name=purchased&data[price]=23.45&timestamp=1359389415")
    item = validate_event(
        body, customer="5", anonymous=False, now_s=NOW, new_id=lambda: "ID", received_at_ms=1
    )
    assert item["timestamp"] == 1_359_389_415 and type(item["timestamp"]) is int
    assert item["name"] == "purchased"
    assert item["data"] == {"price": "23.45"}
    assert item["customer"] == "5"


def test_form_identify_converts_update_and_timestamp() -> None:
    body = parse("email=jane%40example.com&_update=true&_timestamp=1700000000&anonymous_id=anon")
    item = validate_identify(
        body, customer="5", now_s=NOW, new_id=lambda: "ID", received_at_ms=1
    )
    assert item["update"] is True
    assert item["timestamp"] == 1_700_000_000
    assert item["anonymous_id"] == "anon"
    assert item["attributes"] == {"email": "jane@example.com"}


# --- nesting ------------------------------------------------------------------------------------


def test_plain_keys_stay_strings() -> None:
    assert decode_form([("name", "purchased"), ("type", "page")]) == {
        "name": "purchased", "type": "page",
    }


def test_empty_form_is_an_empty_dict() -> None:
    assert decode_form([]) == {}


def test_deeper_nesting_and_sibling_merging() -> None:
    pairs = [("data[cart][total]", "5"), ("data[cart][count]", "2"), ("data[coupon]", "X")]
    assert decode_form(pairs) == {"data": {"cart": {"total": "5", "count": "2"}, "coupon": "X"}}


def test_four_levels_deep() -> None:
    assert decode_form([("a[b][c][d]", "1")]) == {"a": {"b": {"c": {"d": "1"}}}}


def test_list_of_values() -> None:
    assert parse("data[tags][]=a&data[tags][]=b") == {"data": {"tags": ["a", "b"]}}


def test_top_level_list() -> None:
    assert decode_form([("tags[]", "a"), ("tags[]", "b"), ("tags[]", "a")]) == {
        "tags": ["a", "b", "a"]
    }


def test_list_inside_deeper_object() -> None:
    assert decode_form([("data[cart][skus][]", "1"), ("data[cart][skus][]", "2")]) == {
        "data": {"cart": {"skus": ["1", "2"]}}
    }


def test_interleaved_keys_keep_first_appearance_order() -> None:
    result = decode_form([("b", "1"), ("a[x]", "2"), ("c", "3"), ("a[y]", "4"), ("b", "5")])
    assert list(result) == ["b", "a", "c"]
    assert list(result["a"]) == ["x", "y"]
    assert result["b"] == "5"


def test_repeated_plain_key_keeps_the_last_value() -> None:
    assert decode_form([("name", "first"), ("name", "second")]) == {"name": "second"}


def test_repeated_nested_key_keeps_the_last_value() -> None:
    assert decode_form([("data[a]", "1"), ("data[a]", "2")]) == {"data": {"a": "2"}}


def test_values_are_never_interpreted() -> None:
    pairs = [("a", "[b]"), ("b", "x=y&z"), ("c", ""), ("d", "1"), ("e", "true")]
    assert decode_form(pairs) == {"a": "[b]", "b": "x=y&z", "c": "", "d": "1", "e": "true"}


def test_segment_names_may_hold_spaces_dots_and_unicode() -> None:
    pairs = [
        ("data[sign up date]", "2024"),
        ("data[property.subproperty]", "x"),
        ("data[prix€]", "1"),
    ]
    assert decode_form(pairs) == {
        "data": {"sign up date": "2024", "property.subproperty": "x", "prix€": "1"}
    }


def test_plain_key_with_dots_stays_one_key() -> None:
    assert decode_form([("a.b", "1")]) == {"a.b": "1"}


# --- conflicts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pairs", "name"),
    [
        ([("data", "1"), ("data[x]", "2")], "'data'"),
        ([("data[x]", "2"), ("data", "1")], "'data'"),
        ([("data[x]", "1"), ("data[x][y]", "2")], "'data[x]'"),
        ([("data[x][y]", "2"), ("data[x]", "1")], "'data[x]'"),
        ([("tags[]", "a"), ("tags", "b")], "'tags'"),
        ([("tags", "b"), ("tags[]", "a")], "'tags'"),
        ([("tags[]", "a"), ("tags[x]", "b")], "'tags'"),
        ([("tags[x]", "b"), ("tags[]", "a")], "'tags'"),
        ([("data[tags][]", "a"), ("data[tags][x]", "b")], "'data[tags]'"),
    ],
)
def test_conflicting_uses_of_a_key_raise_naming_it(pairs: list[tuple[str, str]], name: str) -> None:
    with pytest.raises(ValueError, match="used both as") as info:
        decode_form(pairs)
    assert name in str(info.value)


def test_conflict_message_says_which_uses_clash() -> None:
    with pytest.raises(ValueError) as info:
        decode_form([("data", "1"), ("data[price]", "2")])
    message = str(info.value)
    assert "a value" in message and "an object" in message and "'data[price]'" in message


# --- malformed names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["", "[x]", "[]", "data[price", "data]", "data]x", "a[b]c", "a[b[c]]", "a[b]]", "a[[b]"],
)
def test_malformed_names_raise_naming_the_key(key: str) -> None:
    with pytest.raises(ValueError) as info:
        decode_form([(key, "1")])
    assert repr(key) in str(info.value)


@pytest.mark.parametrize("key", ["a[][b]", "a[b][][c]", "a[][]"])
def test_empty_brackets_are_only_allowed_last(key: str) -> None:
    with pytest.raises(ValueError, match="only allowed at the end") as info:
        decode_form([(key, "1")])
    assert repr(key) in str(info.value)


def test_decode_form_accepts_any_iterable_of_pairs() -> None:
    assert decode_form(iter([("a[b]", "1")])) == {"a": {"b": "1"}}


# --- properties ---------------------------------------------------------------------------------

segment_names = st.text(min_size=1, max_size=8).filter(lambda s: "[" not in s and "]" not in s)
form_values = st.text(max_size=8)
nested_forms = st.recursive(
    form_values | st.lists(form_values, min_size=1, max_size=4),
    lambda inner: st.dictionaries(segment_names, inner, min_size=1, max_size=4),
    max_leaves=15,
)
top_level_forms = st.dictionaries(segment_names, nested_forms, max_size=5)


def encode_form(doc: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """The inverse of decode_form, written independently as the test's oracle."""
    pairs: list[tuple[str, str]] = []
    for key, value in doc.items():
        name = f"{prefix}[{key}]" if prefix else key
        if isinstance(value, dict):
            pairs += encode_form(value, name)
        elif isinstance(value, list):
            pairs += [(f"{name}[]", item) for item in value]
        else:
            pairs.append((name, value))
    return pairs


@given(top_level_forms)
def test_round_trip_of_nested_documents(doc: dict[str, Any]) -> None:
    assert decode_form(encode_form(doc)) == doc


@given(top_level_forms)
def test_round_trip_through_url_encoding(doc: dict[str, Any]) -> None:
    # The full path a real request takes: urlencode on the client, parse_qsl on the server.
    body = urlencode(encode_form(doc))
    assert decode_form(parse_qsl(body, keep_blank_values=True)) == doc


@given(st.lists(st.tuples(st.text(alphabet="ab[]", max_size=8), st.text(max_size=3)), max_size=6))
def test_arbitrary_pairs_decode_or_raise_value_error(pairs: list[tuple[str, str]]) -> None:
    try:
        result = decode_form(pairs)
    except ValueError as exc:
        assert str(exc)
    else:
        assert isinstance(result, dict)
        assert set(result) <= {key.split("[", 1)[0] for key, _ in pairs}
