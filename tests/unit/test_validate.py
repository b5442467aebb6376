"""Unit tests for app.ingest.validate: every rule, and every limit exactly at and just past it."""

from __future__ import annotations

import copy
from typing import Any, Callable

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from ulid import ULID

from app.ingest.validate import (
    FieldError,
    ValidationError,
    validate_event,
    validate_identifier,
    validate_identify,
)
from app.model import decode_envelope, encode_envelope

NOW = 1_700_000_000.0
RECEIVED_MS = 1_700_000_000_123
MINTED = "01HV5Z8N3Q4R5S6T7V8W9X0Y1Z"
GIVEN_ID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"


def mint() -> str:
    return MINTED


def must_not_mint() -> str:
    raise AssertionError("new_id() must not be called when the body carries an id")


def event(body: Any, **overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(
        customer="5", anonymous=False, now_s=NOW, new_id=mint, received_at_ms=RECEIVED_MS
    )
    kwargs.update(overrides)
    return validate_event(body, **kwargs)


def identify(body: Any, **overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(customer="5", now_s=NOW, new_id=mint, received_at_ms=RECEIVED_MS)
    kwargs.update(overrides)
    return validate_identify(body, **kwargs)


def failures(call: Callable[[], Any]) -> list[tuple[str, str]]:
    """The (field, reason) pairs of the ValidationError that ``call`` must raise."""
    with pytest.raises(ValidationError) as info:
        call()
    assert info.value.errors, "a ValidationError must carry at least one FieldError"
    return [(error.field, error.reason) for error in info.value.errors]


# --- FieldError / ValidationError ---------------------------------------------------------------


def test_field_error_is_frozen_and_compares_by_value() -> None:
    error = FieldError("name", "required", "is required")
    assert error == FieldError("name", "required", "is required")
    with pytest.raises(AttributeError):
        error.field = "other"  # type: ignore[misc]


def test_validation_error_is_a_value_error_with_field_first_messages() -> None:
    error = ValidationError(
        [FieldError("name", "required", "is required"), FieldError("type", "invalid", "bad")]
    )
    assert isinstance(error, ValueError)
    assert error.messages() == ["name: is required", "type: bad"]
    assert str(error) == "name: is required; type: bad"


def test_missing_name_message_is_exactly_the_v1_string() -> None:
    with pytest.raises(ValidationError) as info:
        event({})
    assert info.value.messages() == ["name: is required"]


# --- validate_identifier ------------------------------------------------------------------------


def test_identifier_is_returned_unchanged_not_trimmed() -> None:
    assert validate_identifier("42", "customer_id") == "42"
    assert validate_identifier(" 42 ", "customer_id") == " 42 "


@pytest.mark.parametrize(
    ("value", "reason"),
    [(None, "required"), ("", "required"), ("   ", "required"), (42, "type"), (True, "type"),
     (["a"], "type"), ("\ud800", "invalid")],
)
def test_identifier_rejections(value: Any, reason: str) -> None:
    assert failures(lambda: validate_identifier(value, "anonymous_id")) == [
        ("anonymous_id", reason)
    ]


@pytest.mark.parametrize(
    "value",
    ["a" * 150, "é" * 75, "€" * 50, "😀" * 37 + "aa"],
    ids=["ascii", "2-byte", "3-byte", "4-byte"],
)
def test_identifier_at_150_bytes_is_accepted(value: str) -> None:
    assert len(value.encode()) == 150
    assert validate_identifier(value, "customer_id") == value


@pytest.mark.parametrize("value", ["a" * 151, "é" * 75 + "a", "😀" * 38])
def test_identifier_over_150_bytes_is_too_long(value: str) -> None:
    assert len(value.encode()) > 150
    with pytest.raises(ValidationError) as info:
        validate_identifier(value, "customer_id")
    (error,) = info.value.errors
    assert (error.field, error.reason) == ("customer_id", "too_long")
    assert "150" in error.message


# --- validate_event: shape ----------------------------------------------------------------------


def test_minimal_identified_event_gets_defaults() -> None:
    assert event({"name": "purchase"}) == {
        "op": "event",
        "id": MINTED,
        "name": "purchase",
        "type": "event",
        "data": {},
        "timestamp": 1_700_000_000,
        "customer": "5",
        "received_at": RECEIVED_MS,
    }


def test_full_identified_event_keeps_every_given_field() -> None:
    body = {
        "name": "purchase",
        "id": GIVEN_ID,
        "type": "page",
        "timestamp": 1_365_436_200,
        "data": {"price": 23.45, "items": [{"type": "monitor"}]},
    }
    item = event(body, new_id=must_not_mint)
    assert item == {
        "op": "event",
        "id": GIVEN_ID,
        "name": "purchase",
        "type": "page",
        "data": {"price": 23.45, "items": [{"type": "monitor"}]},
        "timestamp": 1_365_436_200,
        "customer": "5",
        "received_at": RECEIVED_MS,
    }


def test_anonymous_event_carries_anonymous_id_and_no_customer() -> None:
    item = event({"name": "viewed", "anonymous_id": "anon-7"}, anonymous=True, customer=None)
    assert item["anonymous_id"] == "anon-7"
    assert "customer" not in item
    assert item["op"] == "event" and item["name"] == "viewed"


def test_anonymous_event_ignores_a_passed_customer() -> None:
    item = event({"name": "viewed", "anonymous_id": "anon-7"}, anonymous=True, customer="5")
    assert "customer" not in item and item["anonymous_id"] == "anon-7"


def test_identified_event_ignores_body_anonymous_id_and_unknown_keys() -> None:
    item = event({"name": "x", "anonymous_id": "anon-7", "extra": 1})
    assert "anonymous_id" not in item and "extra" not in item
    assert item["customer"] == "5"


def test_event_keys_are_exactly_the_documented_ones() -> None:
    assert list(event({"name": "x"})) == [
        "op", "id", "name", "type", "data", "timestamp", "customer", "received_at",
    ]


def test_event_item_survives_the_topic_codec() -> None:
    item = event({"name": "purchase", "data": {"price": "23.45", "nested": {"a": [1, 2]}}})
    assert decode_envelope(encode_envelope([item])) == [item]


def test_validation_does_not_mutate_the_body() -> None:
    body = {"name": "  purchase  ", "id": GIVEN_ID.lower(), "timestamp": "1359389415",
            "data": {"a": 1}}
    before = copy.deepcopy(body)
    event(body)
    assert body == before


def test_null_optional_fields_behave_as_absent() -> None:
    item = event({"name": "x", "type": None, "data": None, "id": None, "timestamp": None})
    assert (item["type"], item["data"], item["id"], item["timestamp"]) == (
        "event", {}, MINTED, 1_700_000_000,
    )


@pytest.mark.parametrize("body", [[], "name=x", None, 3, ["name"]])
def test_event_body_must_be_an_object(body: Any) -> None:
    assert failures(lambda: event(body)) == [("body", "type")]


def test_non_object_body_still_reports_a_bad_path_customer() -> None:
    assert failures(lambda: event([], customer="")) == [
        ("customer_id", "required"), ("body", "type"),
    ]


def test_all_event_errors_are_collected_in_field_order() -> None:
    body = {"name": " ", "type": "click", "id": "nope", "timestamp": -1, "data": []}
    assert failures(lambda: event(body, customer=None)) == [
        ("customer_id", "required"),
        ("name", "required"),
        ("type", "invalid"),
        ("id", "invalid"),
        ("timestamp", "invalid"),
        ("data", "type"),
    ]


# --- validate_event: the person -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("customer", "reason"),
    [(None, "required"), ("", "required"), (" \t", "required"), ("a" * 151, "too_long"),
     ("é" * 75 + "x", "too_long")],
)
def test_identified_event_customer_rules(customer: Any, reason: str) -> None:
    assert failures(lambda: event({"name": "x"}, customer=customer)) == [("customer_id", reason)]


def test_customer_at_150_bytes_is_accepted() -> None:
    assert event({"name": "x"}, customer="é" * 75)["customer"] == "é" * 75


@pytest.mark.parametrize(
    ("anonymous_id", "reason"),
    [(None, "required"), ("", "required"), ("  ", "required"), (12, "type"),
     ("a" * 151, "too_long")],
)
def test_anonymous_event_anonymous_id_rules(anonymous_id: Any, reason: str) -> None:
    body: dict[str, Any] = {"name": "x"}
    if anonymous_id is not None:
        body["anonymous_id"] = anonymous_id
    assert failures(lambda: event(body, anonymous=True, customer=None)) == [
        ("anonymous_id", reason)
    ]


def test_anonymous_id_at_150_bytes_is_accepted() -> None:
    item = event({"name": "x", "anonymous_id": "€" * 50}, anonymous=True, customer=None)
    assert item["anonymous_id"] == "€" * 50


# --- validate_event: name -----------------------------------------------------------------------


@pytest.mark.parametrize("body", [{}, {"name": None}, {"name": ""}, {"name": "   \n\t"}])
def test_name_is_required_and_non_blank(body: dict[str, Any]) -> None:
    assert failures(lambda: event(body)) == [("name", "required")]


@pytest.mark.parametrize("name", [5, 1.5, True, ["purchase"], {"n": "purchase"}])
def test_name_must_be_a_string(name: Any) -> None:
    assert failures(lambda: event({"name": name})) == [("name", "type")]


def test_name_is_trimmed() -> None:
    assert event({"name": "  purchase \n"})["name"] == "purchase"


def test_name_inner_whitespace_is_kept() -> None:
    assert event({"name": " sign  up "})["name"] == "sign  up"


@pytest.mark.parametrize(
    "name",
    ["a" * 100, "é" * 50, "€" * 33 + "a", "😀" * 25, "  " + "a" * 100 + "  "],
    ids=["ascii", "2-byte", "3-byte", "4-byte", "trimmed-first"],
)
def test_name_at_100_bytes_is_accepted(name: str) -> None:
    item = event({"name": name})
    assert item["name"] == name.strip()
    assert len(item["name"].encode()) == 100


@pytest.mark.parametrize(
    "name", ["a" * 101, "é" * 51, "€" * 34, "😀" * 25 + "a"],
    ids=["ascii", "2-byte", "3-byte", "4-byte"],
)
def test_name_over_100_bytes_is_too_long(name: str) -> None:
    assert len(name.encode()) > 100
    with pytest.raises(ValidationError) as info:
        event({"name": name})
    (error,) = info.value.errors
    assert (error.field, error.reason) == ("name", "too_long")
    assert "100" in error.message


def test_name_length_counts_bytes_not_characters() -> None:
    # 51 characters, but 102 bytes in UTF-8.
    assert failures(lambda: event({"name": "é" * 51})) == [("name", "too_long")]


def test_name_with_lone_surrogate_is_invalid() -> None:
    assert failures(lambda: event({"name": "bad\ud800"})) == [("name", "invalid")]


# --- validate_event: type -----------------------------------------------------------------------


@pytest.mark.parametrize("event_type", ["event", "page", "screen"])
def test_each_event_type_is_accepted(event_type: str) -> None:
    assert event({"name": "x", "type": event_type})["type"] == event_type


@pytest.mark.parametrize("event_type", ["Event", "PAGE", "track", "", " page", 1, True, ["page"]])
def test_other_event_types_are_invalid(event_type: Any) -> None:
    with pytest.raises(ValidationError) as info:
        event({"name": "x", "type": event_type})
    (error,) = info.value.errors
    assert (error.field, error.reason) == ("type", "invalid")
    assert "event, page, screen" in error.message


# --- validate_event: id -------------------------------------------------------------------------


def test_given_ulid_is_used_and_new_id_not_called() -> None:
    assert event({"name": "x", "id": GIVEN_ID}, new_id=must_not_mint)["id"] == GIVEN_ID


def test_lower_case_ulid_is_normalized_to_upper_case() -> None:
    assert event({"name": "x", "id": GIVEN_ID.lower()})["id"] == GIVEN_ID


def test_mixed_case_ulid_is_normalized() -> None:
    mixed = "".join(c.lower() if i % 2 else c for i, c in enumerate(GIVEN_ID))
    assert event({"name": "x", "id": mixed})["id"] == GIVEN_ID


def test_generated_ulid_round_trips() -> None:
    ulid = str(ULID())
    assert event({"name": "x", "id": ulid})["id"] == ulid


@pytest.mark.parametrize(
    "bad_id",
    ["", "abc", GIVEN_ID + "A", GIVEN_ID[:-1], "U" * 26, "I" * 26, "8" * 26,
     " " + GIVEN_ID[1:], "550e8400-e29b-41d4-a716-446655440000"],
    ids=["empty", "short", "27-chars", "25-chars", "U", "I", "overflow", "space", "uuid"],
)
def test_invalid_ulids_are_rejected(bad_id: str) -> None:
    assert failures(lambda: event({"name": "x", "id": bad_id})) == [("id", "invalid")]


@pytest.mark.parametrize("bad_id", [123, 1.0, True, ["01ARZ3NDEKTSV4RRFFQ69G5FAV"]])
def test_non_string_id_is_a_type_error(bad_id: Any) -> None:
    assert failures(lambda: event({"name": "x", "id": bad_id})) == [("id", "type")]


def test_new_id_is_called_once_per_accepted_event() -> None:
    calls: list[int] = []

    def counting() -> str:
        calls.append(1)
        return MINTED

    event({"name": "x"}, new_id=counting)
    assert len(calls) == 1


# --- validate_event: timestamp ------------------------------------------------------------------


def test_absent_timestamp_is_now_truncated_to_seconds() -> None:
    assert event({"name": "x"}, now_s=1_700_000_000.99)["timestamp"] == 1_700_000_000


@pytest.mark.parametrize(
    ("given", "expected"),
    [(1_365_436_200, 1_365_436_200), ("1359389415", 1_359_389_415), (0, 0), ("0", 0),
     ("0001359389415", 1_359_389_415), (1, 1)],
)
def test_valid_timestamps(given: Any, expected: int) -> None:
    item = event({"name": "x", "timestamp": given})
    assert item["timestamp"] == expected
    assert type(item["timestamp"]) is int


@pytest.mark.parametrize("given", [-1, -1_700_000_000])
def test_negative_timestamp_is_invalid(given: int) -> None:
    assert failures(lambda: event({"name": "x", "timestamp": given})) == [("timestamp", "invalid")]


@pytest.mark.parametrize("given", [1.5, 1_359_389_415.0, True, False, [1], {"s": 1}])
def test_non_integer_timestamp_is_a_type_error(given: Any) -> None:
    assert failures(lambda: event({"name": "x", "timestamp": given})) == [("timestamp", "type")]


@pytest.mark.parametrize(
    "given", ["", " 1359389415", "1359389415 ", "-5", "+5", "1.5", "12a", "1e9", "١٢٣", "²"],
)
def test_non_digit_timestamp_strings_are_invalid(given: str) -> None:
    assert failures(lambda: event({"name": "x", "timestamp": given})) == [("timestamp", "invalid")]


@pytest.mark.parametrize(
    "given", [10**11, "100000000000", 1_700_000_000_000, "1700000000000", "9" * 25, "9" * 5000],
)
def test_millisecond_timestamps_are_rejected_with_a_hint(given: Any) -> None:
    with pytest.raises(ValidationError) as info:
        event({"name": "x", "timestamp": given})
    (error,) = info.value.errors
    assert (error.field, error.reason) == ("timestamp", "milliseconds")
    assert error.message == "looks like milliseconds; send Unix seconds"


def test_just_below_the_millisecond_threshold_is_judged_as_seconds() -> None:
    # 10**11 - 1 is a (far future) seconds value, so it is "future", not "milliseconds".
    assert failures(lambda: event({"name": "x", "timestamp": 10**11 - 1})) == [
        ("timestamp", "future")
    ]


def test_timestamp_exactly_one_day_ahead_is_accepted() -> None:
    assert event({"name": "x", "timestamp": 1_700_086_400})["timestamp"] == 1_700_086_400


def test_timestamp_one_second_past_a_day_ahead_is_future() -> None:
    assert failures(lambda: event({"name": "x", "timestamp": 1_700_086_401})) == [
        ("timestamp", "future")
    ]
    assert failures(lambda: event({"name": "x", "timestamp": "1700086401"})) == [
        ("timestamp", "future")
    ]


def test_future_limit_uses_the_fractional_now() -> None:
    # now + 86400 = 87400.5, so 87400 is inside the window and 87401 is not.
    assert event({"name": "x", "timestamp": 87_400}, now_s=1_000.5)["timestamp"] == 87_400
    assert failures(lambda: event({"name": "x", "timestamp": 87_401}, now_s=1_000.5)) == [
        ("timestamp", "future")
    ]


def test_old_back_dated_timestamps_are_accepted() -> None:
    assert event({"name": "x", "timestamp": 946_684_800})["timestamp"] == 946_684_800


# --- validate_event: data -----------------------------------------------------------------------


def test_data_is_passed_through() -> None:
    data = {"price": 23.45, "tags": ["a", "b"], "cart": {"total": 5}, "none": None}
    assert event({"name": "x", "data": data})["data"] == data


@pytest.mark.parametrize("data", [[], [1], "price=1", 3, True])
def test_data_must_be_an_object(data: Any) -> None:
    assert failures(lambda: event({"name": "x", "data": data})) == [("data", "type")]


def _data_of_json_size(size: int, char: str = "x") -> dict[str, str]:
    """A data object whose JSON is exactly ``size`` bytes, filled mostly with ``char``."""
    room = size - len(b'{"k":""}')
    width = len(char.encode())
    data = {"k": char * (room // width) + "x" * (room % width)}
    assert len(orjson.dumps(data)) == size
    return data


@pytest.mark.parametrize("char", ["x", "é", "€", "😀"])
def test_data_of_exactly_100000_bytes_is_accepted(char: str) -> None:
    data = _data_of_json_size(100_000, char)
    assert event({"name": "x", "data": data})["data"] is data


@pytest.mark.parametrize("char", ["x", "€"])
def test_data_of_100001_bytes_is_too_long(char: str) -> None:
    data = _data_of_json_size(100_001, char)
    with pytest.raises(ValidationError) as info:
        event({"name": "x", "data": data})
    (error,) = info.value.errors
    assert (error.field, error.reason) == ("data", "too_long")
    assert "100000" in error.message


def test_data_size_counts_multibyte_characters_as_bytes() -> None:
    # 50,000 characters but over 100,000 bytes once encoded.
    assert failures(lambda: event({"name": "x", "data": {"k": "é" * 50_000}})) == [
        ("data", "too_long")
    ]


def test_data_that_cannot_be_serialized_is_invalid() -> None:
    assert failures(lambda: event({"name": "x", "data": {"k": "\ud800"}})) == [
        ("data", "invalid")
    ]


# --- validate_event: reserved email fields in data ----------------------------------------------

GOOD_ADDRESSES = [
    "a@b.co",
    "first.last+tag@sub.example.org",
    "Jane Doe <jane@example.com>",
    '"Doe, Jane" <jane@example.com>',
    "<jane@example.com>",
    "Jane<jane@example.com>",
]
BAD_ADDRESSES = [
    "",
    "not-an-email",
    "a@b",
    "a@b.",
    "a@.co",
    "a@b..co",
    "@b.co",
    "a b@c.co",
    "a@b .co",
    " a@b.co",
    "a@b.co ",
    "a@@b.co",
    "Jane <a@b>",
    "Jane <a@b.co",
    "Jane a@b.co>",
    "a@b.co, c@d.co",
    "Jane\r\nBcc: x@evil.com <a@b.co>",
]


@pytest.mark.parametrize("field", ["recipient", "from_address", "reply_to"])
@pytest.mark.parametrize("address", GOOD_ADDRESSES)
def test_reserved_email_fields_accept_addresses(field: str, address: str) -> None:
    assert event({"name": "x", "data": {field: address}})["data"][field] == address


@pytest.mark.parametrize("field", ["recipient", "from_address", "reply_to"])
@pytest.mark.parametrize("address", BAD_ADDRESSES)
def test_reserved_email_fields_reject_non_addresses(field: str, address: str) -> None:
    with pytest.raises(ValidationError) as info:
        event({"name": "x", "data": {field: address}})
    (error,) = info.value.errors
    assert (error.field, error.reason) == (f"data.{field}", "invalid")


@pytest.mark.parametrize("value", [None, 42, ["a@b.co"], {"email": "a@b.co"}])
def test_reserved_email_fields_must_be_strings(value: Any) -> None:
    assert failures(lambda: event({"name": "x", "data": {"recipient": value}})) == [
        ("data.recipient", "invalid")
    ]


def test_every_bad_reserved_email_field_is_reported() -> None:
    data = {"recipient": "x", "from_address": "y", "reply_to": "z"}
    assert failures(lambda: event({"name": "x", "data": data})) == [
        ("data.recipient", "invalid"),
        ("data.from_address", "invalid"),
        ("data.reply_to", "invalid"),
    ]


def test_non_reserved_data_fields_are_not_checked_as_emails() -> None:
    data = {"email": "not an email", "to": "nope", "nested": {"recipient": "nope"}}
    assert event({"name": "x", "data": data})["data"] == data


# --- validate_identify --------------------------------------------------------------------------


def test_identify_example_from_the_api() -> None:
    body = {
        "email": "jane@example.com",
        "anonymous_id": "anon-7",
        "created_at": 1_700_000_000,
        "_timestamp": 1_699_999_999,
        "_update": True,
        "plan": "pro",
    }
    assert identify(body) == {
        "op": "identify",
        "id": MINTED,
        "customer": "5",
        "attributes": {"email": "jane@example.com", "created_at": 1_700_000_000, "plan": "pro"},
        "anonymous_id": "anon-7",
        "timestamp": 1_699_999_999,
        "update": True,
        "received_at": RECEIVED_MS,
    }


def test_minimal_identify_has_defaults() -> None:
    item = identify({})
    assert item == {
        "op": "identify",
        "id": MINTED,
        "customer": "5",
        "attributes": {},
        "anonymous_id": None,
        "timestamp": None,
        "update": False,
        "received_at": RECEIVED_MS,
    }


def test_identify_item_survives_the_topic_codec() -> None:
    item = identify({"email": "a@b.co", "tags": ["x"], "address": {"city": "Oslo"}})
    assert decode_envelope(encode_envelope([item])) == [item]


def test_identify_does_not_mutate_the_body() -> None:
    body = {"email": "a@b.co", "anonymous_id": "anon", "_update": "true"}
    before = copy.deepcopy(body)
    item = identify(body)
    assert body == before
    assert item["attributes"] is not body


def test_identify_always_mints_an_id() -> None:
    # Identify bodies have no event id: an "id" key is just an attribute.
    item = identify({"id": GIVEN_ID})
    assert item["id"] == MINTED
    assert item["attributes"] == {"id": GIVEN_ID}


@pytest.mark.parametrize("body", [[], "email=a@b.co", None, 1])
def test_identify_body_must_be_an_object(body: Any) -> None:
    assert failures(lambda: identify(body)) == [("body", "type")]


@pytest.mark.parametrize(
    ("customer", "reason"),
    [("", "required"), ("  ", "required"), (None, "required"), ("a" * 151, "too_long"),
     (5, "type")],
)
def test_identify_customer_rules(customer: Any, reason: str) -> None:
    assert failures(lambda: identify({}, customer=customer)) == [("customer_id", reason)]


def test_identify_customer_at_150_bytes_is_accepted() -> None:
    assert identify({}, customer="€" * 50)["customer"] == "€" * 50


@pytest.mark.parametrize(
    ("anonymous_id", "reason"),
    [("", "required"), ("  ", "required"), (7, "type"), ("a" * 151, "too_long")],
)
def test_identify_anonymous_id_rules(anonymous_id: Any, reason: str) -> None:
    assert failures(lambda: identify({"anonymous_id": anonymous_id})) == [
        ("anonymous_id", reason)
    ]


def test_identify_null_anonymous_id_is_none() -> None:
    assert identify({"anonymous_id": None})["anonymous_id"] is None


@pytest.mark.parametrize(
    ("given", "expected"), [(1_700_000_000, 1_700_000_000), ("1700000000", 1_700_000_000),
                            (0, 0), (None, None)],
)
def test_identify_timestamp_values(given: Any, expected: int | None) -> None:
    assert identify({"_timestamp": given})["timestamp"] == expected


@pytest.mark.parametrize(
    ("given", "reason"),
    [(1_700_000_000_000, "milliseconds"), ("1700000000000", "milliseconds"),
     (1_700_086_401, "future"), (-1, "invalid"), ("soon", "invalid"), (1.5, "type"),
     (True, "type")],
)
def test_identify_timestamp_rejections(given: Any, reason: str) -> None:
    assert failures(lambda: identify({"_timestamp": given})) == [("_timestamp", reason)]


@pytest.mark.parametrize(
    ("given", "expected"),
    [(True, True), (False, False), ("true", True), ("false", False), (None, False)],
)
def test_identify_update_flag(given: Any, expected: bool) -> None:
    assert identify({"_update": given})["update"] is expected


@pytest.mark.parametrize("given", ["yes", "1", "True", "", 1, 0, [True]])
def test_identify_update_flag_rejections(given: Any) -> None:
    assert failures(lambda: identify({"_update": given})) == [("_update", "invalid")]


def test_reserved_identify_keys_are_not_attributes() -> None:
    item = identify({"anonymous_id": "a", "_timestamp": 1, "_update": False, "email": "a@b.co"})
    assert item["attributes"] == {"email": "a@b.co"}


def test_attribute_values_of_any_json_type_are_kept() -> None:
    attributes = {"s": "x", "n": 1, "f": 1.5, "b": False, "null": None, "l": [1], "o": {"a": 1}}
    assert identify(dict(attributes))["attributes"] == attributes


@pytest.mark.parametrize("name", ["a" * 150, "é" * 75, "€" * 50])
def test_attribute_name_at_150_bytes_is_accepted(name: str) -> None:
    assert identify({name: 1})["attributes"] == {name: 1}


@pytest.mark.parametrize("name", ["a" * 151, "é" * 75 + "a", "€" * 51])
def test_attribute_name_over_150_bytes_is_too_long(name: str) -> None:
    assert failures(lambda: identify({name: 1})) == [(f"attributes.{name}", "too_long")]


@pytest.mark.parametrize("name", ["", "  "])
def test_blank_attribute_names_are_rejected(name: str) -> None:
    assert failures(lambda: identify({name: 1})) == [(f"attributes.{name}", "required")]


@pytest.mark.parametrize("value", ["x" * 1000, "é" * 500, "€" * 333 + "a", '"' * 1000])
def test_string_attribute_value_at_1000_bytes_is_accepted(value: str) -> None:
    # Strings are measured as text: 1,000 quote characters are fine although their JSON is longer.
    assert len(value.encode()) == 1000
    assert identify({"bio": value})["attributes"]["bio"] == value


@pytest.mark.parametrize("value", ["x" * 1001, "é" * 501, "€" * 334])
def test_string_attribute_value_over_1000_bytes_is_too_long(value: str) -> None:
    with pytest.raises(ValidationError) as info:
        identify({"bio": value})
    (error,) = info.value.errors
    assert (error.field, error.reason) == ("attributes.bio", "too_long")
    assert "1000" in error.message


def test_structured_attribute_value_is_measured_as_json() -> None:
    at_limit = {"k": "x" * (1000 - len(b'{"k":""}'))}
    over = {"k": "x" * (1001 - len(b'{"k":""}'))}
    assert len(orjson.dumps(at_limit)) == 1000 and len(orjson.dumps(over)) == 1001
    assert identify({"address": at_limit})["attributes"]["address"] == at_limit
    assert failures(lambda: identify({"address": over})) == [("attributes.address", "too_long")]


def test_list_attribute_value_over_1000_bytes_is_too_long() -> None:
    assert failures(lambda: identify({"ids": list(range(400))})) == [("attributes.ids", "too_long")]


def test_unserializable_attribute_value_is_invalid() -> None:
    assert failures(lambda: identify({"bad": "\ud800"})) == [("attributes.bad", "invalid")]


def _attributes(count: int) -> dict[str, int]:
    return {f"attr_{index}": index for index in range(count)}


def test_300_attributes_are_accepted() -> None:
    assert len(identify(_attributes(300))["attributes"]) == 300


def test_reserved_keys_do_not_count_towards_the_300() -> None:
    body: dict[str, Any] = {**_attributes(300), "anonymous_id": "a", "_timestamp": 1,
                            "_update": True}
    assert len(identify(body)["attributes"]) == 300


def test_301_attributes_are_too_many() -> None:
    with pytest.raises(ValidationError) as info:
        identify(_attributes(301))
    (error,) = info.value.errors
    assert (error.field, error.reason) == ("attributes", "too_many")
    assert "300" in error.message and "301" in error.message


def test_all_identify_errors_are_collected() -> None:
    body = {
        "anonymous_id": "",
        "_timestamp": 1_700_000_000_000,
        "_update": "maybe",
        "a" * 151: 1,
        "bio": "x" * 1001,
    }
    assert failures(lambda: identify(body, customer="")) == [
        ("customer_id", "required"),
        ("anonymous_id", "required"),
        ("_timestamp", "milliseconds"),
        ("_update", "invalid"),
        ("attributes." + "a" * 151, "too_long"),
        ("attributes.bio", "too_long"),
    ]


# --- properties ---------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@given(
    name=st.text(min_size=1, max_size=30).filter(lambda s: s.strip()),
    data=st.dictionaries(st.text(max_size=10), json_values, max_size=5).filter(
        lambda d: not set(d) & {"recipient", "from_address", "reply_to"}
    ),
    timestamp=st.integers(0, int(NOW) + 86_400),
)
def test_any_reasonable_event_is_accepted_and_normalized(
    name: str, data: dict[str, Any], timestamp: int
) -> None:
    item = event({"name": name, "data": data, "timestamp": timestamp})
    assert item["name"] == name.strip()
    assert item["data"] == data
    assert item["timestamp"] == timestamp
    assert decode_envelope(encode_envelope([item])) == [item]


@given(st.integers(min_value=0, max_value=10**15))
def test_digit_string_and_int_timestamps_agree(timestamp: int) -> None:
    def outcome(value: Any) -> Any:
        try:
            return event({"name": "x", "timestamp": value})["timestamp"]
        except ValidationError as exc:
            return [(e.field, e.reason) for e in exc.errors]

    assert outcome(timestamp) == outcome(str(timestamp))


@given(st.text(max_size=200))
def test_validate_identifier_either_returns_the_value_or_raises(value: str) -> None:
    try:
        result = validate_identifier(value, "customer_id")
    except ValidationError as exc:
        assert exc.errors and all(e.field == "customer_id" for e in exc.errors)
        assert not value.strip() or len(value.encode("utf-8", "surrogatepass")) > 150 or any(
            "\ud800" <= c <= "\udfff" or c < " " or c == "\x7f" for c in value
        )
    else:
        assert result == value and value.strip() and len(value.encode()) <= 150
        assert not any(c < " " or c == "\x7f" for c in value)


@pytest.mark.parametrize("value", ["a\x00b", "line\nbreak", "tab\there", "del\x7f", "x\x1f"])
def test_identifiers_refuse_control_characters(value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_identifier(value, "customer_id")
    assert caught.value.messages() == ["customer_id: must not contain control characters"]


def test_identifiers_keep_every_other_character() -> None:
    assert validate_identifier("Ünïcode 5 — x@y", "customer_id") == "Ünïcode 5 — x@y"
