"""Unit tests for app.core.triggers: the 72-hour trigger rule and reserved event-data fields."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.triggers import TRIGGER_HORIZON_S, extract_overrides, is_fresh, trigger_record

NOW = 1_700_000_000.0
HOUR = 3600


def test_horizon_is_72_hours() -> None:
    assert TRIGGER_HORIZON_S == 259_200


@pytest.mark.parametrize(
    ("age_s", "fresh"),
    [
        (0, True),
        (1, True),
        (72 * HOUR - 1, True),
        (72 * HOUR, True),  # exactly 72 h old: still triggers
        (72 * HOUR + 1, False),
        (30 * 24 * HOUR, False),
        (-1, True),  # stamped a second in the future
        (-365 * 24 * HOUR, True),  # stamped far in the future
    ],
)
def test_is_fresh_at_the_edges(age_s: int, fresh: bool) -> None:
    assert is_fresh(int(NOW) - age_s, NOW) is fresh


def test_fractional_now_past_the_horizon_is_not_fresh() -> None:
    stamp = int(NOW)
    assert is_fresh(stamp, NOW + TRIGGER_HORIZON_S) is True
    assert is_fresh(stamp, NOW + TRIGGER_HORIZON_S + 0.25) is False


@given(st.integers(min_value=0, max_value=2**33), st.integers(min_value=-(2**20), max_value=2**20))
def test_is_fresh_matches_the_age_rule(stamp: int, age: int) -> None:
    assert is_fresh(stamp, float(stamp + age)) is (age <= TRIGGER_HORIZON_S)


def test_all_reserved_fields_map_to_their_headers() -> None:
    data = {
        "recipient": "person@example.com",
        "from_address": "from@example.com",
        "reply_to": "manager@example.com",
        "total": 12,
    }
    assert extract_overrides(data) == {
        "to": "person@example.com",
        "from": "from@example.com",
        "reply_to": "manager@example.com",
    }


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({}, {}),
        ({"total": 1, "to": "x@y.z", "from": "a@b.c"}, {}),
        ({"recipient": "a@b.c"}, {"to": "a@b.c"}),
        ({"from_address": "a@b.c"}, {"from": "a@b.c"}),
        ({"reply_to": "a@b.c"}, {"reply_to": "a@b.c"}),
        ({"recipient": "a@b.c", "reply_to": "r@b.c"}, {"to": "a@b.c", "reply_to": "r@b.c"}),
    ],
)
def test_only_present_fields_are_extracted(data: dict[str, Any], expected: dict[str, str]) -> None:
    assert extract_overrides(data) == expected


@pytest.mark.parametrize("value", [None, "", "   ", 42, ["a@b.c"], {"email": "a@b.c"}])
def test_blank_or_non_string_values_do_not_override(value: object) -> None:
    assert extract_overrides({"recipient": value, "reply_to": "r@b.c"}) == {"reply_to": "r@b.c"}


def test_override_values_are_trimmed() -> None:
    assert extract_overrides({"from_address": "  Support <help@x.io> \n"}) == {
        "from": "Support <help@x.io>"
    }


def test_extract_overrides_leaves_the_data_untouched() -> None:
    data = {"recipient": " a@b.c "}
    extract_overrides(data)
    assert data == {"recipient": " a@b.c "}


def _event(**changes: Any) -> dict[str, Any]:
    event = {
        "id": "01HF0000000000000000000000",
        "name": "invite",
        "data": {"recipient": "friend@example.com", "inviter": "Ada"},
        "timestamp": 1_699_999_000,
        "type": "event",
    }
    event.update(changes)
    return event


def test_trigger_record_fields() -> None:
    assert trigger_record(_event(), "person-7") == {
        "trigger_id": "01HF0000000000000000000000",
        "event_id": "01HF0000000000000000000000",
        "person_id": "person-7",
        "name": "invite",
        "data": {"recipient": "friend@example.com", "inviter": "Ada"},
        "timestamp": 1_699_999_000,
        "overrides": {"to": "friend@example.com"},
    }


def test_trigger_id_follows_the_event_id_so_redelivery_is_idempotent() -> None:
    first = trigger_record(_event(), "p")
    again = trigger_record(_event(), "p")
    other = trigger_record(_event(id="01HF0000000000000000000001"), "p")
    assert first["trigger_id"] == again["trigger_id"]
    assert other["trigger_id"] != first["trigger_id"]


def test_trigger_record_copies_data_instead_of_aliasing_it() -> None:
    event = _event()
    record = trigger_record(event, "p")
    record["data"]["inviter"] = "changed"
    assert event["data"]["inviter"] == "Ada"


def test_trigger_record_without_data_or_timestamp() -> None:
    record = trigger_record({"id": "E1", "name": "signup", "data": None, "timestamp": None}, "p")
    assert (record["data"], record["overrides"], record["timestamp"]) == ({}, {}, None)
    record = trigger_record({"id": "E2", "name": "signup"}, "p")
    assert (record["data"], record["overrides"], record["timestamp"]) == ({}, {}, None)
