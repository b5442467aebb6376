"""Unit tests for the pure parts of export/import/render: line formats, merging, body checks."""

from __future__ import annotations

import csv
import io
import itertools
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.api.export import (csv_event_rows, csv_header, event_line, iter_people, person_lines,
                            profile_line)
from app.api.imports import (DEFAULT_MAX_IMPORT_BYTES, iter_export_entries, max_import_bytes)
from app.api.render import parse_render_body
from app.api.responses import ApiError
from app.core.profiles import public_view

ID1 = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
ID2 = "01BX5ZZKBKACTAV9WEVGEMMVRY"
PROFILE = {"id": "5", "attributes": {"email": "ann@example.com", "first_name": "Ann"},
           "stamps": {}, "anonymous_ids": ["anon-1"], "created_at": 1, "updated_at": 2}
HISTORY = [
    {"id": ID1, "name": "signed_up", "type": "event", "data": {"a": 1}, "timestamp": 10,
     "processed_at": 11},
    {"id": ID2, "name": "viewed", "type": "page", "data": {"sign up date": "x, \"y\""},
     "timestamp": 20, "processed_at": 21},
]


def decoded(lines: Any) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in lines]


def test_person_lines_profile_changes_then_events_oldest_first() -> None:
    profile = {**PROFILE, "changes": [{"attribute": "plan", "from": None, "to": "pro", "at": 5}]}
    found = decoded(person_lines("5", profile, HISTORY))
    assert [line["kind"] for line in found] == ["profile", "attribute_change", "event", "event"]
    # The profile line is the read API's view of the profile (which may grow fields).
    assert found[0] == {"kind": "profile", **public_view(profile)}
    assert found[0]["id"] == "5" and found[0]["attributes"] == PROFILE["attributes"]
    assert found[1] == {"kind": "attribute_change", "attribute": "plan", "from": None,
                        "to": "pro", "at": 5}
    assert found[2] == {"kind": "event", **HISTORY[0]}
    assert [line["id"] for line in found[2:]] == [ID1, ID2]


def test_every_line_starts_with_its_kind_and_ends_with_a_newline() -> None:
    for line in person_lines("5", PROFILE, HISTORY):
        assert line.startswith(b'{"kind":') and line.endswith(b"\n") and line.count(b"\n") == 1


def test_person_without_profile_has_null_attributes() -> None:
    assert profile_line("7", None)["attributes"] is None
    assert [line["kind"] for line in decoded(person_lines("7", None, HISTORY[:1]))] == [
        "profile", "event"]


def test_event_line_has_exactly_the_activity_fields() -> None:
    assert set(event_line(HISTORY[0])) == {"kind", "id", "name", "type", "data", "timestamp",
                                           "processed_at"}


def test_csv_rows_quote_json_data() -> None:
    text = (csv_header() + b"".join(csv_event_rows(HISTORY))).decode()
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0] == ["id", "name", "type", "timestamp", "processed_at", "data"]
    assert rows[2][:5] == [ID2, "viewed", "page", "20", "21"]
    assert orjson.loads(rows[2][5]) == {"sign up date": 'x, "y"'}


@pytest.mark.parametrize("name", ["=HYPERLINK(\"http://x\",\"y\")", "+1+cmd|' /C calc'!A0",
                                  "-2+3", "@SUM(A1:A2)", "\tx", "\rx"])
def test_csv_cells_a_spreadsheet_would_run_as_formulas_are_shown_as_text(name: str) -> None:
    history = [{**HISTORY[0], "name": name, "type": name}]
    rows = list(csv.reader(io.StringIO(b"".join(csv_event_rows(history)).decode(), newline="")))
    assert rows[0][1] == rows[0][2] == "'" + name
    assert rows[0][3] == str(HISTORY[0]["timestamp"])  # numbers are left alone


def test_csv_rows_of_a_long_history_come_in_pieces() -> None:
    history = [{**HISTORY[0], "id": f"{i:026d}", "timestamp": i} for i in range(1234)]
    pieces = list(csv_event_rows(history))
    assert len(pieces) == 3
    assert b"".join(pieces).count(b"\n") == 1234


# --- merging two tables' keys ----------------------------------------------------------------


def fetcher(table: dict[str, Any], calls: list[int] | None = None):  # type: ignore[no-untyped-def]
    ordered = sorted(table.items(), key=lambda kv: kv[0].encode())

    def fetch(after: str, n: int) -> list[tuple[str, Any]]:
        if calls is not None:
            calls.append(n)
        return list(itertools.islice(((k, v) for k, v in ordered
                                      if k.encode() >= after.encode()), n))
    return fetch


def test_iter_people_merges_both_tables_in_key_order() -> None:
    profiles = {"a": "pa", "c": "pc", "e": "pe"}
    histories = {"b": "hb", "c": "hc", "f": "hf"}
    found = list(iter_people(fetcher(profiles), fetcher(histories), profile_batch=2,
                             history_batch=1))
    assert found == [("a", "pa", None), ("b", None, "hb"), ("c", "pc", "hc"),
                     ("e", "pe", None), ("f", None, "hf")]


@given(st.sets(st.text(min_size=1, max_size=4)), st.sets(st.text(min_size=1, max_size=4)),
       st.integers(1, 4), st.integers(1, 4))
def test_iter_people_yields_the_union_once_each(profile_keys: set[str], history_keys: set[str],
                                                pb: int, hb: int) -> None:
    profiles = {k: ("p", k) for k in profile_keys}
    histories = {k: ("h", k) for k in history_keys}
    found = list(iter_people(fetcher(profiles), fetcher(histories), profile_batch=pb,
                             history_batch=hb))
    keys = [k for k, _, _ in found]
    assert keys == sorted(profile_keys | history_keys, key=str.encode)
    for key, profile, history in found:
        assert profile == profiles.get(key) and history == histories.get(key)


def test_iter_people_on_empty_tables() -> None:
    assert list(iter_people(fetcher({}), fetcher({}))) == []


# --- reading an export back ------------------------------------------------------------------


def entries(lines: list[bytes]) -> list[Any]:
    counter = itertools.count()
    return list(iter_export_entries(lines, received_at_ms=1_700_000_000_000,
                                    new_id=lambda: f"01H{next(counter):023d}"))


def test_export_lines_read_back_into_identify_and_events() -> None:
    profile = {**PROFILE, "changes": [{"attribute": "plan"}]}
    found = entries(list(person_lines("5", profile, HISTORY)))
    assert [(e.kind, e.op, e.error) for e in found] == [
        ("profile", "identify", None), ("attribute_change", None, None),
        ("event", "event", None), ("event", "event", None)]
    identify = found[0].item
    assert identify["op"] == "identify" and identify["customer"] == "5"
    assert identify["attributes"] == PROFILE["attributes"]
    assert identify["anonymous_id"] is None and identify["timestamp"] is None
    assert identify["update"] is False and identify["received_at"] == 1_700_000_000_000
    event = found[3].item
    assert {k: event[k] for k in ("id", "name", "type", "data", "timestamp", "processed_at")} == \
        HISTORY[1]
    assert event["customer"] == "5" and event["source"] == "import"


def test_events_belong_to_the_profile_line_before_them() -> None:
    lines = [*person_lines("5", PROFILE, HISTORY[:1]), *person_lines("6", None, HISTORY[1:])]
    found = entries(lines)
    assert [(e.op, e.person) for e in found] == [("identify", "5"), ("event", "5"),
                                                 (None, "6"), ("event", "6")]


@pytest.mark.parametrize("line, fragment", [
    (b"{not json", "not JSON"),
    (b"[1]", "not a JSON object"),
    (b'{"kind":"mystery"}', "kind: unknown"),
    (b'{"kind":"event","id":"' + ID1.encode() + b'","name":"x"}', "without a valid profile"),
])
def test_bad_lines_are_errors_with_their_number(line: bytes, fragment: str) -> None:
    [found] = entries([b"\n", line])
    assert found.line == 2 and fragment in (found.error or "")


@pytest.mark.parametrize("event, fragment", [
    ({"name": "x", "timestamp": 1}, "id: is required"),
    ({"id": "nope", "name": "x"}, "id: must be a ULID"),
    ({"id": ID1, "name": " "}, "name"),
    ({"id": ID1, "name": "x", "type": "click"}, "type"),
    ({"id": ID1, "name": "x", "data": [1]}, "data"),
    ({"id": ID1, "name": "x", "timestamp": -1}, "timestamp"),
])
def test_event_lines_pass_the_routers_gate(event: dict[str, Any], fragment: str) -> None:
    lines = [orjson.dumps(profile_line("5", None)), orjson.dumps({"kind": "event", **event})]
    found = entries(lines)
    assert found[1].error is not None and fragment in found[1].error


def test_profile_line_needs_an_id_and_object_attributes() -> None:
    bad_id = entries([orjson.dumps({"kind": "profile", "id": "", "attributes": {}})])
    assert "id" in (bad_id[0].error or "")
    bad_attributes = entries([orjson.dumps({"kind": "profile", "id": "5", "attributes": [1]})])
    assert "attributes" in (bad_attributes[0].error or "")


def test_import_cap_is_configurable() -> None:
    assert max_import_bytes({}) == DEFAULT_MAX_IMPORT_BYTES == 2 * 1024**3
    assert max_import_bytes({"EVENTIDE_IMPORT_MAX_BYTES": "1000"}) == 1000
    assert max_import_bytes({"EVENTIDE_IMPORT_MAX_BYTES": "lots"}) == DEFAULT_MAX_IMPORT_BYTES


# --- render body -------------------------------------------------------------------------------


def test_render_body_with_event_id() -> None:
    assert parse_render_body({"template": "hi", "customer_id": "5", "event_id": ID1}) == (
        "hi", "5", ID1, None, False)


def test_render_body_with_inline_event_and_strict() -> None:
    assert parse_render_body({"template": "", "customer_id": "5", "event": {"a": 1},
                              "strict": True}) == ("", "5", None, {"a": 1}, True)


def test_render_body_names_every_problem() -> None:
    with pytest.raises(ApiError) as caught:
        parse_render_body({"event_id": ID1, "event": [], "strict": "yes"})
    messages = caught.value.messages
    assert caught.value.status == 400
    assert any(m.startswith("template:") for m in messages)
    assert any(m.startswith("customer_id:") for m in messages)
    assert any("not both" in m for m in messages)
    assert any(m.startswith("strict:") for m in messages)
    with pytest.raises(ApiError):
        parse_render_body(["not", "an", "object"])


# --- receiving a large body ------------------------------------------------------------------


async def test_receive_to_file_streams_and_enforces_the_cap(tmp_path: Any) -> None:
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from app.api.imports import _CSV_TYPES, check_content_type, receive_to_file
    from app.api.responses import error_response

    async def upload(request: web.Request) -> web.Response:
        try:
            check_content_type(request, _CSV_TYPES, "text/csv")
            with open(tmp_path / "body", "wb") as out:
                size = await receive_to_file(request, out, 1000)
        except ApiError as exc:
            return error_response(exc.status, *exc.messages)
        return web.json_response({"size": size})

    app = web.Application(client_max_size=10)  # the streamed body ignores this limit
    app.router.add_post("/", upload)
    async with TestClient(TestServer(app)) as client:
        async def chunks():  # type: ignore[no-untyped-def]
            for _ in range(10):
                yield b"x" * 100

        ok = await client.post("/", data=chunks(), headers={"Content-Type": "text/csv"})
        assert (ok.status, await ok.json()) == (200, {"size": 1000})
        assert (tmp_path / "body").read_bytes() == b"x" * 1000

        async def too_many():  # type: ignore[no-untyped-def]
            for _ in range(11):
                yield b"x" * 100

        big = await client.post("/", data=too_many(), headers={"Content-Type": "text/csv"})
        assert big.status == 413
        declared = await client.post("/", data=b"y" * 1001, headers={"Content-Type": "text/csv"})
        assert declared.status == 413
        xml = await client.post("/", data=b"<x/>", headers={"Content-Type": "text/xml"})
        assert xml.status == 415


def test_an_export_file_meets_the_track_api_s_limits() -> None:
    """Issue 14.7: a 20 MB attribute, 250-level nesting, a timestamp of 99999999999 and 300 KB
    of event data were stored through /api/v1/imports/export."""
    from app.api.imports import iter_export_entries

    deep: dict[str, Any] = {}
    for _ in range(250):
        deep = {"d": deep}
    good_id = "01HZZZZZZZZZZZZZZZZZZZZ001"
    lines = [
        {"kind": "profile", "id": "p1", "attributes": {"big": "x" * (20 * 1024 * 1024)}},
        {"kind": "profile", "id": "p2", "attributes": {"deep": deep}},
        {"kind": "profile", "id": "p3", "attributes": {"plan": "pro"}},
        {"kind": "event", "id": good_id, "name": "e", "timestamp": 99999999999},
        {"kind": "event", "id": good_id, "name": "e", "data": {"blob": "y" * 300_000}},
        {"kind": "event", "id": good_id, "name": "e", "timestamp": 1_700_000_000},
    ]
    entries = list(iter_export_entries((orjson.dumps(line) for line in lines),
                                       received_at_ms=1_700_000_100_000))
    errors = [entry.error for entry in entries]
    assert errors[0] and "big" in errors[0]
    assert errors[1] and "deep" in errors[1]
    assert errors[2] is None
    assert errors[3] and "timestamp" in errors[3]
    assert errors[4] and "data" in errors[4]
    assert errors[5] is None and entries[5].item is not None
