"""The one description of the ingest fields (app.ingest.fields): the patterns the OpenAPI document
states accept what the checks accept, and the document, validators and CSV importer share limits."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ulid import ULID

from app.api.openapi import document, field_schema
from app.imports import csv_events
from app.ingest import fields
from app.ingest.validate import ValidationError, validate_event
from app.settings import Settings
from app.topics import build_topics

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZabcdefghjkmnpqrstvwxyz"


def _ulid_accepted(text: str) -> bool:
    try:
        ULID.from_str(text)
    except ValueError:
        return False
    return True


@given(st.text(alphabet=_CROCKFORD + "ILOU!", min_size=24, max_size=28))
def test_ulid_pattern_states_what_ulid_from_str_accepts(text: str) -> None:
    assert bool(re.fullmatch(fields.ULID_PATTERN, text)) == _ulid_accepted(text)


@pytest.mark.parametrize("text", [
    "a@example.com", "Ann <a@example.com>", "a@example", "a@@example.com", "Ann\r\n<a@b.co>",
    "a@example.com\n", "<a@example.com>", "a b@example.com",
])
def test_email_pattern_states_what_the_check_accepts(text: str) -> None:
    # JSON Schema's "$" ends the text; Python's would also match before a final newline, hence
    # the checks' fullmatch.
    documented = re.fullmatch(fields.EMAIL_PATTERN.removeprefix("^").removesuffix("$"), text)
    assert bool(documented) == bool(fields.EMAIL_RE.fullmatch(text))


@given(st.text(max_size=20))
def test_key_pattern_states_the_identifier_rule(text: str) -> None:
    rule = bool(text.strip()) and not fields.CONTROL_CHARACTERS.search(text)
    # fullmatch: in Python (not in JSON Schema) "$" also matches before a final newline.
    documented = re.fullmatch(fields.KEY_PATTERN.removeprefix("^").removesuffix("$"), text)
    assert bool(documented) == rule


def test_document_limits_are_the_fields_limits() -> None:
    s = Settings(site_id="site-x", api_key="k", app_key="a")
    schemas = document(SimpleNamespace(settings=s, topics=build_topics(s)))["components"]["schemas"]
    assert schemas["TrackEvent"]["properties"]["name"]["maxLength"] == fields.NAME.max_bytes
    assert schemas["Identifier"]["maxLength"] == fields.CUSTOMER_ID.max_bytes
    assert schemas["Identify"]["maxProperties"] == fields.MAX_ATTRIBUTES + len(
        fields.IDENTIFY_FIELDS)
    assert set(schemas["Identify"]["properties"]) == {f.name for f in fields.IDENTIFY_FIELDS}
    assert schemas["EventData"]["properties"]["recipient"]["pattern"] == fields.EMAIL_PATTERN


def test_csv_limits_are_the_api_limits() -> None:
    assert csv_events.MAX_NAME_BYTES == fields.NAME.max_bytes
    assert csv_events.MAX_CUSTOMER_BYTES == fields.CUSTOMER_ID.max_bytes
    assert csv_events.MAX_DATA_BYTES == fields.DATA.max_bytes
    assert csv_events.RESERVED_COLUMNS == tuple(c.header for c in fields.CSV_COLUMNS)


def test_every_kind_the_shapes_use_has_a_schema_and_a_check() -> None:
    shapes = (*fields.EVENT_FIELDS, *fields.IDENTIFY_FIELDS, *fields.EMAIL_FIELDS,
              fields.CUSTOMER_ID, fields.ATTRIBUTE_NAME, fields.ATTRIBUTE_VALUE, fields.PAGE_URL)
    for field in shapes:
        assert isinstance(field_schema(field, 0), dict)


def test_a_bad_event_reports_every_field_in_field_order() -> None:
    body = {"name": " ", "type": "x", "id": "nope", "timestamp": -1, "data": []}
    with pytest.raises(ValidationError) as caught:
        validate_event(body, customer="", anonymous=False, now_s=0, new_id=str,
                       received_at_ms=0)
    assert [e.field for e in caught.value.errors] == [
        "customer_id", *(f.name for f in fields.EVENT_FIELDS)]
