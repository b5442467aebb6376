"""Unit tests for app.core.items.normalize: items written straight to a raw topic."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ulid import ULID

from app.core import dedup
from app.core.items import BadItem, canonical_ulid, id_for_position, normalize

RECORD_TS_MS = 1_700_000_000_250
RECEIVED = 1_700_000_123_456
GIVEN_ID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"


def norm(item: dict[str, Any], *, topic: str = "eventide.raw.events", partition: int = 1,
         offset: int = 42, index: int = 0, record_ts_ms: int = RECORD_TS_MS,
         identifier_field: str = "customer") -> dict[str, Any]:
    return normalize(item, topic=topic, partition=partition, offset=offset, index=index,
                     record_ts_ms=record_ts_ms, identifier_field=identifier_field)


def ev(**fields: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"op": "event", "customer": "cust-1", "name": "purchase",
                            "received_at": RECEIVED}
    item.update(fields)
    return {k: v for k, v in item.items() if v is not ...}


def bad(item: dict[str, Any], field: str, **kwargs: Any) -> str:
    with pytest.raises(BadItem) as info:
        norm(item, **kwargs)
    message = str(info.value)
    assert message.startswith(f"{field}:"), message
    return message


# --- deterministic ids ---------------------------------------------------------------------------


def test_missing_id_is_derived_from_the_position() -> None:
    first = norm(ev())
    again = norm(ev())
    assert first["id"] == again["id"]
    assert ULID.from_str(first["id"]).milliseconds == RECEIVED
    assert first["id"] == id_for_position("eventide.raw.events", 1, 42, 0, RECEIVED)


@pytest.mark.parametrize("change", [
    {"topic": "eventide.raw.identifies"}, {"partition": 2}, {"offset": 43}, {"index": 1},
])
def test_any_other_position_gives_another_id(change: dict[str, Any]) -> None:
    assert norm(ev(), **change)["id"] != norm(ev())["id"]


@given(st.tuples(st.text(min_size=1, max_size=10), st.integers(0, 63), st.integers(0, 10**12),
                 st.integers(0, 999)),
       st.tuples(st.text(min_size=1, max_size=10), st.integers(0, 63), st.integers(0, 10**12),
                 st.integers(0, 999)),
       st.integers(0, 2**48 - 1))
def test_ids_are_equal_exactly_when_positions_are(a: tuple[str, int, int, int],
                                                  b: tuple[str, int, int, int], ts: int) -> None:
    id_a, id_b = id_for_position(*a, ts), id_for_position(*b, ts)
    assert (id_a == id_b) == (a == b)
    assert ULID.from_str(id_a).milliseconds == ts
    assert dedup.ulid_ms(id_a) == ts


def test_a_given_ulid_is_kept_and_upper_cased() -> None:
    assert norm(ev(id=GIVEN_ID))["id"] == GIVEN_ID
    assert norm(ev(id=GIVEN_ID.lower()))["id"] == GIVEN_ID


def test_received_at_is_filled_from_the_record_timestamp() -> None:
    item = norm(ev(received_at=...))
    assert item["received_at"] == RECORD_TS_MS
    assert ULID.from_str(item["id"]).milliseconds == RECORD_TS_MS
    assert item["timestamp"] == RECORD_TS_MS // 1000


def test_a_given_received_at_is_kept() -> None:
    assert norm(ev())["received_at"] == RECEIVED


def test_defaults_are_filled_and_name_is_stripped() -> None:
    item = norm(ev(name="  purchase  "))
    assert item["name"] == "purchase"
    assert item["type"] == "event"
    assert item["data"] == {}
    assert item["timestamp"] == RECEIVED // 1000
    assert item["customer"] == "cust-1"


def test_normalize_does_not_mutate_its_input() -> None:
    item = ev(name=" x ")
    snapshot = copy.deepcopy(item)
    norm(item)
    assert item == snapshot


def test_identify_gets_empty_attributes_by_default() -> None:
    item = norm({"op": "identify", "customer": "cust-1", "received_at": RECEIVED})
    assert item["attributes"] == {}
    assert ULID.from_str(item["id"]).milliseconds == RECEIVED


def test_anonymous_items_check_their_own_identifier() -> None:
    item = norm({"op": "event", "anonymous_id": "anon-1", "name": "n", "received_at": RECEIVED},
                identifier_field="anonymous_id")
    assert item["anonymous_id"] == "anon-1"
    bad({"op": "event", "customer": "c", "name": "n"}, "anonymous_id",
        identifier_field="anonymous_id")


# --- rejections ----------------------------------------------------------------------------------


@pytest.mark.parametrize("op", [None, "track", "EVENT", 1, "teleport"])
def test_unknown_op_is_rejected(op: Any) -> None:
    assert "unknown action" in bad(ev(op=op), "op")


@pytest.mark.parametrize("value", [..., None, "", "   ", 5, ["c"]])
def test_blank_or_missing_identifier_is_rejected(value: Any) -> None:
    bad(ev(customer=value), "customer")


def test_identifier_at_and_past_its_byte_limit() -> None:
    assert norm(ev(customer="x" * 150))["customer"] == "x" * 150
    assert "150" in bad(ev(customer="x" * 151), "customer")
    bad(ev(customer="é" * 76), "customer")      # 152 bytes in UTF-8


@pytest.mark.parametrize("name", [..., None, "", "  ", 3])
def test_bad_name_is_rejected(name: Any) -> None:
    bad(ev(name=name), "name")


def test_name_at_and_past_its_byte_limit() -> None:
    assert norm(ev(name="n" * 100))["name"] == "n" * 100
    assert "100" in bad(ev(name="n" * 101), "name")


@pytest.mark.parametrize("type_", ["track", "", None, "PAGE"])
def test_bad_type_is_rejected(type_: Any) -> None:
    bad(ev(type=type_), "type")


@pytest.mark.parametrize("type_", ["event", "page", "screen"])
def test_known_types_are_accepted(type_: str) -> None:
    assert norm(ev(type=type_))["type"] == type_


@pytest.mark.parametrize("data", [None, [], "x", 3])
def test_bad_data_is_rejected(data: Any) -> None:
    bad(ev(data=data), "data")


@pytest.mark.parametrize("timestamp", [None, -1, "1700000000", 1.5, True])
def test_bad_timestamp_is_rejected(timestamp: Any) -> None:
    bad(ev(timestamp=timestamp), "timestamp")


def test_zero_timestamp_is_accepted() -> None:
    assert norm(ev(timestamp=0))["timestamp"] == 0


@pytest.mark.parametrize("event_id", [5, "", "not-a-ulid", GIVEN_ID + "0", "01ARZ3NDEKTSV4RRFFQ69G5FAU"[:-1] + "!",
                                      "01ARZ3NDEKTSV4RRFFQ69G5FIL"])
def test_bad_id_is_rejected(event_id: Any) -> None:
    bad(ev(id=event_id), "id")


@pytest.mark.parametrize("received_at", ["1700000000000", 1.5, True])
def test_bad_received_at_is_rejected(received_at: Any) -> None:
    bad(ev(received_at=received_at), "received_at")


def test_identify_attributes_must_be_an_object() -> None:
    bad({"op": "identify", "customer": "c", "attributes": ["a"]}, "attributes")
    bad({"op": "identify", "customer": "c", "attributes": None}, "attributes")


# --- bugs: things the route stage lets through to the person stage -------------------------------


def test_an_id_that_overflows_128_bits_is_rejected() -> None:
    overflowing = "8ZZZZZZZZZZZZZZZZZZZZZZZZZ"
    with pytest.raises(ValueError):
        ULID.from_str(overflowing)
    bad(ev(id=overflowing), "id")


@pytest.mark.parametrize("timestamp", ["soon", True, -5, 1.9])
def test_identify_with_a_bad_sender_timestamp_is_rejected(timestamp: Any) -> None:
    bad({"op": "identify", "customer": "c", "timestamp": timestamp, "received_at": RECEIVED},
        "timestamp")


@pytest.mark.parametrize("received_at", [-1, 2**48])
def test_out_of_range_received_at_is_a_bad_item(received_at: int) -> None:
    bad(ev(received_at=received_at), "received_at")


# --- ULIDs made canonical without a decode: the same answers as python-ulid --------------------

def python_ulid(value: str) -> str | None:
    try:
        return str(ULID.from_str(value))
    except ValueError:
        return None


CROCKFORD_AND_NEIGHBOURS = "0123456789ABCDEFGHJKMNPQRSTVWXYZabcdefghjkmnpqrstvwxyzILOUilou-_ \nſßı"


@pytest.mark.parametrize("value", [
    GIVEN_ID, GIVEN_ID.lower(), "7ZZZZZZZZZZZZZZZZZZZZZZZZZ", "8ZZZZZZZZZZZZZZZZZZZZZZZZZ",
    GIVEN_ID + "\n", GIVEN_ID[:-1], GIVEN_ID + "0", GIVEN_ID[:-1] + "I", GIVEN_ID[:-1] + "ſ",
    GIVEN_ID[:-2] + "ß", "", " " + GIVEN_ID[1:]])
def test_canonical_ulid_answers_as_python_ulid(value: str) -> None:
    assert canonical_ulid(value) == python_ulid(value)


@given(st.text(alphabet=CROCKFORD_AND_NEIGHBOURS, min_size=24, max_size=27))
def test_canonical_ulid_answers_as_python_ulid_on_any_text(value: str) -> None:
    assert canonical_ulid(value) == python_ulid(value)


@given(st.integers(min_value=0, max_value=2**128 - 1))
def test_every_ulid_is_its_own_canonical_form(n: int) -> None:
    text = str(ULID.from_int(n))
    assert canonical_ulid(text) == text == canonical_ulid(text.lower())
    assert dedup.ulid_ms(text) == n >> 80 == ULID.from_int(n).milliseconds
