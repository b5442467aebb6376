"""Unit tests for app.imports.csv_events: Customer.io CSV event import, streamed row by row."""

from __future__ import annotations

import csv
import io
import itertools
import tracemalloc
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.imports.csv_events import (
    MAX_CUSTOMER_BYTES,
    MAX_DATA_BYTES,
    MAX_FUTURE_SKEW_S,
    MAX_NAME_BYTES,
    REJECT_CODES,
    CsvFileError,
    ImportSummary,
    RowResult,
    identifier_kind,
    iter_rows,
    open_csv,
    scan_identifier_kinds,
    write_rejects,
)

NOW = 1_700_000_000.0
HEADER = "_cio_name,_cio_customer_id,_cio_timestamp\n"
ULID_TEXT = "01ARZ3NDEKTSV4RRFFQ69G5FAV"


def lines(text: str) -> io.StringIO:
    # newline="" keeps line endings untouched, as open_csv does for real files.
    return io.StringIO(text, newline="")


def results(text: str, now_s: float = NOW) -> list[RowResult]:
    return list(iter_rows(lines(text), now_s=now_s))


def only_event(text: str, now_s: float = NOW) -> dict[str, Any]:
    [result] = results(text, now_s)
    assert result.reason is None, result.reason
    assert result.event is not None
    return result.event


def only_reason(text: str, now_s: float = NOW) -> str:
    [result] = results(text, now_s)
    assert result.event is None
    assert result.reason is not None
    return result.reason


def timestamp_of(cell: str, now_s: float = NOW) -> int | None:
    return only_event(f'{HEADER}purchase,42,"{cell}"\n', now_s)["timestamp"]


def timestamp_reason(cell: str, now_s: float = NOW) -> str:
    return only_reason(f'{HEADER}purchase,42,"{cell}"\n', now_s)


# --- header ----------------------------------------------------------------------------------


def test_event_shape_for_a_plain_row() -> None:
    event = only_event(f"{HEADER}purchase,42,1699999000\n")
    assert event == {
        "customer": "42",
        "name": "purchase",
        "data": {},
        "timestamp": 1_699_999_000,
        "id": None,
    }


@pytest.mark.parametrize(
    ("header", "missing"),
    [
        ("_cio_customer_id,total\n", "_cio_name"),
        ("_cio_name,total\n", "_cio_customer_id"),
        ("name,customer_id\n", "_cio_name, _cio_customer_id"),
    ],
)
def test_header_without_required_columns_is_refused(header: str, missing: str) -> None:
    with pytest.raises(CsvFileError, match=f"missing {missing}") as info:
        list(iter_rows(lines(header + "a,b\n"), now_s=NOW))
    assert "header must contain _cio_name and _cio_customer_id" in str(info.value)


def test_empty_file_is_refused() -> None:
    with pytest.raises(CsvFileError, match="file is empty"):
        list(iter_rows(lines(""), now_s=NOW))


def test_misspelt_reserved_column_is_refused_rather_than_becoming_data() -> None:
    with pytest.raises(CsvFileError, match=r"column 3 '_cio_timestmap' is not a known reserved"):
        list(iter_rows(lines("_cio_name,_cio_customer_id,_cio_timestmap\nx,1,5\n"), now_s=NOW))


def test_duplicate_column_is_refused() -> None:
    with pytest.raises(CsvFileError, match="column 4 'total' appears more than once"):
        list(iter_rows(lines("_cio_name,_cio_customer_id,total,total\nx,1,2,3\n"), now_s=NOW))


def test_nameless_column_is_refused() -> None:
    with pytest.raises(CsvFileError, match="column 3 has no name"):
        list(iter_rows(lines("_cio_name,_cio_customer_id,,total\nx,1,2,3\n"), now_s=NOW))


def test_columns_are_found_by_name_in_any_order() -> None:
    text = f"total,_cio_id,_cio_customer_id,_cio_timestamp,_cio_name\n9,{ULID_TEXT},42,100,buy\n"
    assert only_event(text) == {
        "customer": "42",
        "name": "buy",
        "data": {"total": "9"},
        "timestamp": 100,
        "id": ULID_TEXT,
    }


def test_header_names_are_trimmed() -> None:
    event = only_event(" _cio_name , _cio_customer_id ,  total \nbuy,42,9\n")
    assert event["data"] == {"total": "9"}


def test_without_timestamp_column_the_timestamp_is_none() -> None:
    assert only_event("_cio_name,_cio_customer_id\nbuy,42\n")["timestamp"] is None


def test_utf8_bom_is_ignored() -> None:
    event = only_event(f"\ufeff{HEADER}purchase,42,\n")
    assert event["name"] == "purchase"


def test_utf8_bom_before_a_quoted_header_is_ignored() -> None:
    event = only_event('\ufeff"_cio_name","_cio_customer_id"\npurchase,42\n')
    assert event["customer"] == "42"


def test_one_string_instead_of_lines_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="iterable of lines"):
        list(iter_rows(f"{HEADER}x,1,\n", now_s=NOW))  # type: ignore[arg-type]


# --- CSV syntax ------------------------------------------------------------------------------


def test_quoted_cells_keep_commas_quotes_and_newlines() -> None:
    text = (
        "_cio_name,_cio_customer_id,address,quote\n"
        'purchase,42,"1 Main St, Springfield\nUSA","she said ""hi"""\n'
    )
    assert only_event(text)["data"] == {
        "address": "1 Main St, Springfield\nUSA",
        "quote": 'she said "hi"',
    }


def test_crlf_line_endings() -> None:
    text = "_cio_name,_cio_customer_id,total\r\nbuy,1,5\r\nsell,2,6\r\n"
    events = [r.event for r in results(text)]
    assert events == [
        {"customer": "1", "name": "buy", "data": {"total": "5"}, "timestamp": None, "id": None},
        {"customer": "2", "name": "sell", "data": {"total": "6"}, "timestamp": None, "id": None},
    ]


def test_row_numbers_count_rows_not_physical_lines() -> None:
    text = (
        "_cio_name,_cio_customer_id,note\r\n"
        'buy,1,"line one\r\nline two\r\nline three"\r\n'
        ",2,\r\n"
    )
    first, second = results(text)
    assert first.row_number == 1
    assert first.event is not None
    assert first.event["data"] == {"note": "line one\r\nline two\r\nline three"}
    assert (second.row_number, second.code) == (2, "blank_name")


def test_blank_rows_are_numbered_but_yield_nothing() -> None:
    text = f"{HEADER}buy,1,\n\n,,\n  , ,\nsell,2,\n"
    assert [(r.row_number, r.event and r.event["name"]) for r in results(text)] == [
        (1, "buy"),
        (5, "sell"),
    ]


def test_unterminated_quote_refuses_the_file_naming_the_row() -> None:
    text = f'{HEADER}buy,1,\nbuy,2,"100\nbuy,3,\n'
    with pytest.raises(CsvFileError, match=r"row 2 .*not valid CSV"):
        list(iter_rows(lines(text), now_s=NOW))


def test_text_after_a_closing_quote_refuses_the_file() -> None:
    with pytest.raises(CsvFileError, match="row 1 .*not valid CSV"):
        list(iter_rows(lines(f'{HEADER}buy,"1"2,\n'), now_s=NOW))


def test_a_quote_inside_an_unquoted_cell_is_literal() -> None:
    event = only_event('_cio_name,_cio_customer_id,size\nbuy,1,27" monitor\n')
    assert event["data"] == {"size": '27" monitor'}


# --- data columns ----------------------------------------------------------------------------


def test_empty_and_whitespace_cells_are_left_out_of_data() -> None:
    text = "_cio_name,_cio_customer_id,a,b,c,d\nbuy,1,x,,  ,0\n"
    assert only_event(text)["data"] == {"a": "x", "d": "0"}


def test_dotted_column_names_stay_flat_keys() -> None:
    text = "_cio_name,_cio_customer_id,property.subproperty,items[0].type\nbuy,1,blue,monitor\n"
    data = only_event(text)["data"]
    assert data == {"property.subproperty": "blue", "items[0].type": "monitor"}
    assert "property" not in data


def test_values_stay_strings_and_keep_their_spacing() -> None:
    text = '_cio_name,_cio_customer_id,total,flag,label\nbuy,1,23.45,true," padded "\n'
    assert only_event(text)["data"] == {"total": "23.45", "flag": "true", "label": " padded "}


def test_short_rows_read_missing_cells_as_empty() -> None:
    text = "_cio_name,_cio_customer_id,_cio_timestamp,_cio_id,total\nbuy,1\n"
    assert only_event(text) == {
        "customer": "1",
        "name": "buy",
        "data": {},
        "timestamp": None,
        "id": None,
    }


def test_row_with_more_cells_than_the_header_is_rejected() -> None:
    reason = only_reason(f"{HEADER}buy,1,,surplus\n")
    assert reason == "too_many_columns: row has 4 cells but the header has 3"


def test_name_and_customer_are_trimmed() -> None:
    event = only_event(f"{HEADER}  purchase  , 42 ,\n")
    assert (event["name"], event["customer"]) == ("purchase", "42")


@given(
    st.dictionaries(
        st.text(alphabet="abcdefghij._ [] ", min_size=1, max_size=12).filter(
            lambda key: key.strip() == key and key.strip() != "" and not key.startswith("_cio_")
        ),
        st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=30),
        max_size=6,
    )
)
@settings(max_examples=150, deadline=None)
def test_any_data_written_by_the_csv_module_reads_back(data: dict[str, str]) -> None:
    out = io.StringIO(newline="")
    writer = csv.writer(out)
    writer.writerow(["_cio_name", "_cio_customer_id", *data])
    writer.writerow(["buy", "7", *data.values()])
    event = only_event(out.getvalue())
    assert event["data"] == {key: value for key, value in data.items() if value.strip()}


# --- required cells and limits ---------------------------------------------------------------


def test_blank_name_is_rejected() -> None:
    assert only_reason(f"{HEADER}  ,42,\n") == "blank_name: _cio_name is empty"


def test_blank_customer_is_rejected() -> None:
    assert only_reason(f"{HEADER}buy, ,\n") == "blank_customer: _cio_customer_id is empty"


def test_name_longer_than_the_api_limit_is_rejected() -> None:
    assert only_event(f"{HEADER}{'n' * MAX_NAME_BYTES},1,\n")["name"] == "n" * MAX_NAME_BYTES
    reason = only_reason(f"{HEADER}{'é' * (MAX_NAME_BYTES // 2 + 1)},1,\n")
    assert reason.startswith("name_too_long: ")


def test_customer_longer_than_the_api_limit_is_rejected() -> None:
    longest = "c" * MAX_CUSTOMER_BYTES
    assert only_event(f"{HEADER}buy,{longest},\n")["customer"] == longest
    reason = only_reason(f"{HEADER}buy,{'c' * (MAX_CUSTOMER_BYTES + 1)},\n")
    assert reason.startswith("customer_too_long: ")


def test_data_larger_than_the_api_limit_is_rejected() -> None:
    header = "_cio_name,_cio_customer_id,a,b\n"
    half = "x" * (MAX_DATA_BYTES // 2)
    assert only_reason(f"{header}buy,1,{half},{half}\n").startswith("data_too_large: ")
    small = "x" * 1000
    assert only_event(f"{header}buy,1,{small},{small}\n")["data"] == {"a": small, "b": small}


def test_data_size_is_measured_as_encoded_json() -> None:
    # A newline is one character in the cell but two bytes in JSON (an escape): 50,001 of them
    # fit the limit as characters yet exceed it as JSON; 20,000 are accepted.
    header = "_cio_name,_cio_customer_id,a\n"
    assert only_reason(f'{header}buy,1,"{chr(10) * 50_001}z"\n').startswith("data_too_large: ")
    value = "\n" * 20_000 + "z"
    assert only_event(f'{header}buy,1,"{value}"\n')["data"] == {"a": value}


def test_first_problem_in_a_row_decides_its_reason() -> None:
    assert only_reason(f"{HEADER} , ,yesterday\n").startswith("blank_name: ")
    assert only_reason(f"{HEADER}buy, ,yesterday\n").startswith("blank_customer: ")


# --- timestamps ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("1699999000", 1_699_999_000),
        ("0", 0),
        (" 1699999000 ", 1_699_999_000),
        ("0000001699999000", 1_699_999_000),  # leading zeros are not mistaken for milliseconds
        ("2023-11-14T22:13:20Z", 1_700_000_000),
        ("2023-11-14T22:13:20+00:00", 1_700_000_000),
        ("2023-11-15T00:13:20+02:00", 1_700_000_000),
        ("2023-11-14T17:13:20-05:00", 1_700_000_000),
        ("2023-11-14T22:13:20", 1_700_000_000),
        ("2023-11-14 22:13:20", 1_700_000_000),
        ("2023-11-14T22:13:20.999Z", 1_700_000_000),
        ("2023-11-14", 1_699_920_000),
        ("2024-01-31", 1_706_659_200),
        ("1970-01-01T00:00:00Z", 0),
    ],
)
def test_unix_and_iso_timestamps(cell: str, expected: int) -> None:
    assert timestamp_of(cell, now_s=1_706_659_200.0) == expected


def test_empty_timestamp_cell_leaves_the_timestamp_to_processing_time() -> None:
    assert timestamp_of("") is None
    assert timestamp_of("   ") is None


def test_compact_digits_read_as_unix_seconds_not_as_a_basic_iso_date() -> None:
    assert timestamp_of("20240131") == 20_240_131


@pytest.mark.parametrize(
    ("cell", "detail"),
    [
        ("yesterday", "neither Unix seconds nor an ISO-8601 date"),
        ("31/01/2024", "neither Unix seconds nor an ISO-8601 date"),
        ("2024-02-30", "day is out of range for month"),
        ("2024-01-31T25:00:00Z", "neither Unix seconds nor an ISO-8601 date"),
        ("1700000000000", "looks like milliseconds"),
        ("100000000000", "looks like milliseconds"),
        ("1.7E+09", "scientific notation"),
        ("1.699999e9", "scientific notation"),
        ("1699999000.5", "not a whole, non-negative number"),
        ("-5", "not a whole, non-negative number"),
        ("1969-12-31T23:59:59Z", "before 1970"),
        ("1969-12-31T23:59:59.500Z", "before 1970"),
        ("\u0661\u0667\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660", "neither Unix seconds"),
        ("9999-12-31", "out of range"),
        ("1" * 15, "out of range"),
        ("9" * 5000, "out of range"),
        ("99999999999999", "looks like milliseconds"),
        ("2023-11-16T22:13:21Z", "more than 24 hours in the future"),
    ],
)
def test_bad_timestamps_are_rejected_with_a_reason(cell: str, detail: str) -> None:
    reason = timestamp_reason(cell)
    assert reason.startswith("bad_timestamp: _cio_timestamp ")
    assert detail in reason


def test_future_skew_boundary() -> None:
    edge = int(NOW) + MAX_FUTURE_SKEW_S
    assert timestamp_of(str(edge)) == edge
    assert timestamp_reason(str(edge + 1)).startswith("bad_timestamp: ")


def test_milliseconds_threshold_is_not_confused_with_the_future_check() -> None:
    # With a clock far enough ahead the largest non-millisecond value is accepted, which shows
    # the milliseconds rule is what rejects 10**11.
    far_future = float(10**11 + MAX_FUTURE_SKEW_S)
    assert timestamp_of(str(10**11 - 1), now_s=far_future) == 10**11 - 1
    assert "looks like milliseconds" in timestamp_reason(str(10**11), now_s=far_future)


def test_long_bad_values_are_truncated_in_the_reason() -> None:
    reason = timestamp_reason("z" * 500)
    assert "z" * 40 + "…" in reason
    assert "z" * 41 not in reason


# --- _cio_id ---------------------------------------------------------------------------------


def _id_row(cell: str) -> str:
    return f"_cio_name,_cio_customer_id,_cio_id\nbuy,1,{cell}\n"


def test_valid_ulid_becomes_the_event_id() -> None:
    assert only_event(_id_row(ULID_TEXT))["id"] == ULID_TEXT


def test_lower_case_ulid_is_canonicalised_so_reimports_dedupe() -> None:
    assert only_event(_id_row(ULID_TEXT.lower()))["id"] == ULID_TEXT


def test_empty_id_cell_leaves_the_id_to_the_processor() -> None:
    assert only_event(_id_row(""))["id"] is None


@pytest.mark.parametrize(
    "cell",
    [
        ULID_TEXT[:-1],  # too short
        ULID_TEXT + "0",  # too long
        ULID_TEXT[:-1] + "U",  # U is not Crockford base32
        "8" + ULID_TEXT[1:],  # timestamp overflows 48 bits
        "order-1234",
    ],
)
def test_invalid_ulid_is_rejected(cell: str) -> None:
    reason = only_reason(_id_row(cell))
    assert reason.startswith(f"bad_id: _cio_id {cell!r} is not a ULID")


def test_every_reason_starts_with_a_known_code() -> None:
    text = (
        "_cio_name,_cio_customer_id,_cio_timestamp,_cio_id,a\n"
        f"{'n' * 101},1,,,\n"
        " ,1,,,\n"
        "x, ,,,\n"
        f"x,{'c' * 151},,,\n"
        "x,a\x00b,,,\n"
        "x,1,soon,,\n"
        "x,1,,nope,\n"
        f"x,1,,,{'d' * (MAX_DATA_BYTES + 1)}\n"
        "x,1,,,,\n"
    )
    codes = [r.code for r in results(text)]
    assert codes == [
        "name_too_long",
        "blank_name",
        "blank_customer",
        "customer_too_long",
        "bad_customer",
        "bad_timestamp",
        "bad_id",
        "data_too_large",
        "too_many_columns",
    ]
    assert sorted(codes) == sorted(REJECT_CODES)


# --- identifier kinds ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind"),
    [("42", "id"), ("user-abc", "id"), ("ada@example.com", "email"), ("@", "email")],
)
def test_identifier_kind(value: str, kind: str) -> None:
    assert identifier_kind(value) == kind


def test_scan_returns_the_single_kind_used() -> None:
    assert scan_identifier_kinds(lines(f"{HEADER}buy,1,\nbuy,2,\n")) == "id"
    assert scan_identifier_kinds(lines(f"{HEADER}buy,a@x.io,\nbuy,b@x.io,\n")) == "email"


def test_scan_refuses_a_mixed_file_naming_the_first_row_of_each_kind() -> None:
    text = f"{HEADER}buy,1,\nbuy,2,\nbuy,3,\nbuy,4,\nbuy,5,\nbuy,a@x.io,\nbuy,b@x.io,\n"
    with pytest.raises(CsvFileError) as info:
        scan_identifier_kinds(lines(text))
    assert str(info.value) == (
        "file mixes customer ids and email addresses (row 1 is an id, row 6 is an email); "
        "use one identifier kind per file"
    )


def test_scan_names_the_email_first_when_the_file_starts_with_emails() -> None:
    text = f"{HEADER}buy,a@x.io,\n\nbuy,,\nbuy,42,\n"
    with pytest.raises(CsvFileError, match=r"\(row 1 is an email, row 4 is an id\)"):
        scan_identifier_kinds(lines(text))


def test_scan_stops_at_the_first_conflict_without_reading_further() -> None:
    def source() -> Iterator[str]:
        yield HEADER
        yield "buy,1,\n"
        yield "buy,a@x.io,\n"
        raise AssertionError("scan read past the conflicting row")

    with pytest.raises(CsvFileError, match="row 1 is an id, row 2 is an email"):
        scan_identifier_kinds(source())


def test_scan_refuses_a_file_without_any_identifier() -> None:
    with pytest.raises(CsvFileError, match="no rows with a _cio_customer_id"):
        scan_identifier_kinds(lines(f"{HEADER}buy,,\n"))


def test_scan_checks_the_header_and_the_quoting_of_the_whole_file() -> None:
    with pytest.raises(CsvFileError, match="header must contain"):
        scan_identifier_kinds(lines("name,id\nbuy,1\n"))
    with pytest.raises(CsvFileError, match="row 3 .*not valid CSV"):
        scan_identifier_kinds(lines(f'{HEADER}buy,1,\nbuy,2,\nbuy,3,"1\n'))


def test_scan_and_iter_rows_number_rows_the_same_way() -> None:
    text = f'{HEADER}buy,1,\n\nbuy,"2",\n"multi\nline",3,\nbuy,a@x.io,\n'
    with pytest.raises(CsvFileError, match="row 5 is an email"):
        scan_identifier_kinds(lines(text))
    assert [r.row_number for r in results(text)] == [1, 3, 4, 5]


# --- results, summary and rejects file -------------------------------------------------------


def test_row_result_holds_exactly_one_of_event_and_reason() -> None:
    with pytest.raises(ValueError):
        RowResult(1, None, None)
    with pytest.raises(ValueError):
        RowResult(1, {"name": "x"}, "blank_name: x")
    assert RowResult(3, None, "bad_id: nope").code == "bad_id"
    assert RowResult(3, {"name": "x"}, None).code is None


def test_row_result_is_frozen() -> None:
    result = RowResult(1, None, "blank_name: _cio_name is empty")
    with pytest.raises(AttributeError):
        result.reason = None  # type: ignore[misc]


def test_import_summary_counts_accepted_and_rejected_by_code() -> None:
    text = f"{HEADER}buy,1,\nbuy,2,\n,3,\n,4,\nbuy,5,soon\nbuy,6,\n"
    summary = ImportSummary()
    for result in iter_rows(lines(text), now_s=NOW):
        summary.record(result)
    assert summary.as_dict() == {
        "accepted": 3,
        "rejected": 3,
        "rejected_by_reason": {"bad_timestamp": 1, "blank_name": 2},
    }


def test_empty_summary() -> None:
    assert ImportSummary().as_dict() == {"accepted": 0, "rejected": 0, "rejected_by_reason": {}}


def test_write_rejects_writes_row_and_reason_for_rejected_rows_only(tmp_path: Path) -> None:
    text = f'{HEADER}buy,1,\n,2,\nbuy,3,"1,5"\nbuy,4,\n'
    path = tmp_path / "rejects.csv"
    written = write_rejects(path, iter_rows(lines(text), now_s=NOW))
    assert written == 2
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["row", "reason"]
    assert rows[1] == ["2", "blank_name: _cio_name is empty"]
    assert rows[2][0] == "3"
    # The reason holds a comma and quotes; the csv module must have quoted it intact.
    assert rows[2][1].startswith("bad_timestamp: _cio_timestamp '1,5'")
    assert len(rows) == 3


def test_write_rejects_with_nothing_rejected_writes_only_the_header(tmp_path: Path) -> None:
    path = tmp_path / "rejects.csv"
    assert write_rejects(path, []) == 0
    assert path.read_bytes() == b"row,reason\r\n"


def test_open_csv_reads_a_bom_file_with_embedded_crlf(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_bytes(
        b"\xef\xbb\xbf_cio_name,_cio_customer_id,note\r\nbuy,ada@example.com,\"a\r\nb\"\r\n"
    )
    with open_csv(path) as handle:
        assert scan_identifier_kinds(handle) == "email"
    with open_csv(path) as handle:
        [result] = list(iter_rows(handle, now_s=NOW))
    assert result.event is not None
    assert result.event["data"] == {"note": "a\r\nb"}


# --- streaming -------------------------------------------------------------------------------


def test_iter_rows_is_lazy() -> None:
    consumed = 0

    def source() -> Iterator[str]:
        nonlocal consumed
        for line in itertools.chain([HEADER], (f"buy,{i},\n" for i in range(1_000))):
            consumed += 1
            yield line

    first = next(iter_rows(source(), now_s=NOW))
    assert first.row_number == 1
    assert consumed <= 3


def test_a_million_rows_stream_in_constant_memory() -> None:
    rows = 1_000_000
    # A thousand distinct lines cycled: building each line would dominate the run under
    # tracemalloc, and what is measured here is the importer, not the generator.
    pattern = [f"purchase,{i},{1_699_000_000 + i},{i % 100}.5,sku-{i}\n" for i in range(999)]
    pattern.append("purchase,999,1700000000000,1.5,sku-999\n")  # milliseconds: rejected

    def source() -> Iterator[str]:
        yield "_cio_name,_cio_customer_id,_cio_timestamp,total,sku\n"
        yield from itertools.islice(itertools.cycle(pattern), rows)

    summary = ImportSummary()
    last: RowResult | None = None
    tracemalloc.start()
    try:
        for result in iter_rows(source(), now_s=NOW):
            summary.record(result)
            last = result
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert summary.as_dict() == {
        "accepted": 999_000,
        "rejected": 1_000,
        "rejected_by_reason": {"bad_timestamp": 1_000},
    }
    assert last is not None and last.row_number == rows
    # A list of a million results would take hundreds of MB; streaming keeps a handful of rows.
    assert peak < 1_000_000, f"peak traced memory {peak} bytes"
    # (No wall-clock bound: speed is measured in bench/, never asserted on a shared machine.)


def test_a_line_over_the_bound_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    """Issue 14.6: memory follows the line bound, not the longest row of the upload."""
    from app.imports.csv_events import BoundedLines
    path = tmp_path / "long.csv"
    path.write_text("_cio_name,_cio_customer_id,a\nx,1,short\nx,1," + "d" * 5000 + "\n")
    with open(path, encoding="utf-8-sig", newline="") as f:
        lines = BoundedLines(f, max_chars=1000)
        assert next(lines).startswith("_cio_name") and next(lines) == "x,1,short\n"
        with pytest.raises(CsvFileError, match="line 3 is longer than 1,000 characters"):
            next(lines)
        assert f.tell() < 2100, "stopped after the bound, not at the end of the line"


def test_an_upload_with_a_long_line_is_refused_as_a_file_error(tmp_path: Path) -> None:
    from app.imports.csv_events import MAX_LINE_CHARS
    path = tmp_path / "long.csv"
    path.write_text("_cio_name,_cio_customer_id\n" + "x," + "1" * (MAX_LINE_CHARS + 5) + "\n")
    with open_csv(path) as lines:
        with pytest.raises(CsvFileError, match="longer than"):
            scan_identifier_kinds(lines)
