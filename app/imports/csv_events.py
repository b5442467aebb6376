"""Customer.io CSV event import, streamed row by row in constant memory.

File format (Customer.io's "Upload a CSV" for events)::

    _cio_name,_cio_customer_id,_cio_timestamp,_cio_id,total,property.subproperty
    purchase,42,1700000000,01HF...,23.45,blue

``_cio_name`` and ``_cio_customer_id`` are required; ``_cio_timestamp`` (Unix seconds or ISO-8601)
back-dates the event; ``_cio_id`` (a ULID) becomes the event id so re-importing a file is
deduplicated. Every other column is one flat key of the event's ``data``: ``property.subproperty``
stays a single string key, values stay strings, and empty cells are left out.

An import takes two streaming passes over the file, so nothing is ever held in memory:

1. :func:`scan_identifier_kinds` checks the header, parses every row (so broken quoting refuses the
   file up front) and checks the file uses one identifier kind. Any :class:`CsvFileError` means
   the caller refuses the whole file before sending a single event.
2. :func:`iter_rows` yields one :class:`RowResult` per data row: an event, or a rejection reason
   starting with a stable code (see ``REJECT_CODES``). :class:`ImportSummary` counts them and
   :func:`write_rejects` writes the rejected rows for the uploader.

``lines`` is any iterable of text lines *with their line endings kept*, e.g. a file from
:func:`open_csv` (``newline=""``), which is what lets quoted cells hold newlines.

Row numbers count data rows: 1 is the first row after the header. A quoted cell with embedded
newlines spans several physical lines but is still one row, so row numbers are what a spreadsheet
shows (minus the header), not line numbers of the file. Blank rows are numbered but yield nothing.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Literal

import orjson
from ulid import ULID

from app.imports.csv_reading import ID_COLUMN, NAME_COLUMN, TIMESTAMP_COLUMN, Header, read
# Re-exported: callers name columns, and open, bound and refuse files, through this module.
from app.imports.csv_reading import CUSTOMER_COLUMN as CUSTOMER_COLUMN
from app.imports.csv_reading import RESERVED_COLUMNS as RESERVED_COLUMNS
from app.imports.csv_reading import MAX_LINE_CHARS as MAX_LINE_CHARS
from app.imports.csv_reading import BoundedLines as BoundedLines
from app.imports.csv_reading import CsvFileError as CsvFileError
from app.imports.csv_reading import open_csv as open_csv
from app.ingest.fields import (CONTROL_CHARACTERS, CSV_CUSTOMER, CSV_NAME, DATA,
                               MAX_FUTURE_SECONDS, MILLISECONDS_THRESHOLD)
from app.spreadsheet import spreadsheet_safe

# The track API's limits (app.ingest.fields), applied here too so that an imported event is never
# one the API would have refused.
MAX_NAME_BYTES = CSV_NAME.field.limit
MAX_CUSTOMER_BYTES = CSV_CUSTOMER.field.limit
MAX_DATA_BYTES = DATA.limit

#: How far past ``now_s`` a timestamp may lie: the track API's limit. Import is for back-filling;
#: a stamp days ahead is a typo or a unit mistake, and it would pass the 72-hour trigger rule and
#: send messages. A day of slack absorbs clock skew and local times written without an offset.
MAX_FUTURE_SKEW_S = MAX_FUTURE_SECONDS

REJECT_CODES = (
    "too_many_columns",
    "blank_name",
    "name_too_long",
    "blank_customer",
    "customer_too_long",
    "bad_customer",
    "bad_timestamp",
    "bad_id",
    "data_too_large",
)

IdentifierKind = Literal["email", "id"]

_SCIENTIFIC = re.compile(r"[+-]?[0-9]+(\.[0-9]*)?[eE][+-]?[0-9]+", re.ASCII)
_DECIMAL = re.compile(r"-?[0-9]*\.[0-9]+|-[0-9]+", re.ASCII)


@dataclass(frozen=True, slots=True)
class RowResult:
    """The outcome of one data row: exactly one of ``event`` and ``reason`` is set.

    ``row_number`` counts data rows from 1 (the first row after the header).
    """

    row_number: int
    event: dict[str, Any] | None
    reason: str | None

    def __post_init__(self) -> None:
        if (self.event is None) == (self.reason is None):
            raise ValueError("a RowResult carries either an event or a reason, not both or neither")

    @property
    def code(self) -> str | None:
        """The stable reason code (``"bad_timestamp"``), or ``None`` for an accepted row."""
        return None if self.reason is None else self.reason.partition(":")[0]


@dataclass
class ImportSummary:
    """Running counts of an import: accepted rows and rejected rows by reason code."""

    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)

    def record(self, result: RowResult) -> None:
        if result.code is None:
            self.accepted += 1
        else:
            self.rejected[result.code] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "rejected": sum(self.rejected.values()),
            "rejected_by_reason": dict(sorted(self.rejected.items())),
        }


def identifier_kind(value: str) -> IdentifierKind:
    """Classify a ``_cio_customer_id`` value: anything with an ``@`` is an email address."""
    return "email" if "@" in value else "id"


def scan_identifier_kinds(lines: Iterable[str]) -> IdentifierKind:
    """First pass: return the one identifier kind the file uses, or raise :class:`CsvFileError`.

    Stops at the first row whose kind differs from the first identifier seen, and names both rows.
    Rows with a blank identifier are skipped here (:func:`iter_rows` rejects them). A file with no
    identifier at all is refused, since nothing in it could be imported.
    """
    header, rows = read(lines)
    first: tuple[int, IdentifierKind] | None = None
    for row_number, cells in rows:
        index = header.customer_index
        customer = cells[index].strip() if index < len(cells) else ""
        if not customer:
            continue
        kind = identifier_kind(customer)
        if first is None:
            first = (row_number, kind)
        elif kind != first[1]:
            raise CsvFileError(
                "file mixes customer ids and email addresses "
                f"(row {first[0]} is {_article(first[1])}, row {row_number} is {_article(kind)}); "
                "use one identifier kind per file"
            )
    if first is None:
        raise CsvFileError(f"file has no rows with a {CUSTOMER_COLUMN}; nothing to import")
    return first[1]


def iter_rows(lines: Iterable[str], *, now_s: float) -> Iterator[RowResult]:
    """Second pass: yield one :class:`RowResult` per non-blank data row, lazily.

    Row numbers start at 1 for the first row after the header; a row whose quoted cells span
    several physical lines is still one row. An accepted row's event is
    ``{"customer", "name", "data", "timestamp", "id"}`` with ``timestamp`` in Unix seconds (or
    ``None``: the processor stamps it with processing time) and ``id`` a canonical ULID (or
    ``None``). ``now_s`` bounds how far in the future a timestamp may be.

    Raises :class:`CsvFileError` for a bad header or broken CSV quoting; run
    :func:`scan_identifier_kinds` first so that happens before anything is sent.
    """
    header, rows = read(lines)
    latest_s = now_s + MAX_FUTURE_SKEW_S
    for row_number, cells in rows:
        try:
            event = _event_from(header, cells, latest_s)
        except _Reject as reject:
            yield RowResult(row_number, None, str(reject))
        else:
            yield RowResult(row_number, event, None)


def write_rejects(path: str | os.PathLike[str], rejects: Iterable[RowResult]) -> int:
    """Write the rejected results among ``rejects`` to ``path`` as a ``row,reason`` CSV.

    Accepted results are skipped, so the whole result stream may be passed. Returns the number of
    rows written.
    """
    written = 0
    with open(path, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["row", "reason"])
        for result in rejects:
            if result.reason is not None:
                writer.writerow([result.row_number, spreadsheet_safe(result.reason)])
                written += 1
    return written

# --- validating one row ----------------------------------------------------------------------


class _Reject(Exception):
    """One row is rejected; ``str()`` is the reason, ``"<code>: <detail>"``."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")


def _event_from(header: Header, cells: list[str], latest_s: float) -> dict[str, Any]:
    # Checked in a fixed order so a row's reason is deterministic: structure, then the required
    # cells, then the optional ones, then the size of what is left.
    if len(cells) > header.width:
        raise _Reject(
            "too_many_columns", f"row has {len(cells)} cells but the header has {header.width}"
        )
    if len(cells) < header.width:
        # Short rows are common in hand-edited files: missing trailing cells read as empty.
        cells = cells + [""] * (header.width - len(cells))
    name = _name(cells[header.name_index])
    customer = _customer(cells[header.customer_index])
    timestamp = _timestamp(_optional(cells, header.timestamp_index), latest_s)
    event_id = _event_id(_optional(cells, header.id_index))
    data: dict[str, str] = {}
    for index, column in header.data_columns:
        if cells[index].strip():
            data[column] = cells[index]
    _check_data_size(data)
    return {
        "customer": customer,
        "name": name,
        "data": data,
        "timestamp": timestamp,
        "id": event_id,
    }


def _optional(cells: list[str], index: int | None) -> str:
    return "" if index is None else cells[index]


def _check_data_size(data: dict[str, str]) -> None:
    # JSON spends at most 6 bytes on a character (a \u00XX escape) plus 6 per key/value pair for
    # quotes, colon and comma, so only rows that might exceed the limit pay for encoding.
    characters = sum(map(len, data)) + sum(map(len, data.values()))
    if 6 * (characters + len(data)) + 2 <= MAX_DATA_BYTES:
        return
    if len(orjson.dumps(data)) > MAX_DATA_BYTES:
        raise _Reject("data_too_large", f"event data is over {MAX_DATA_BYTES} bytes as JSON")


def _name(raw: str) -> str:
    # The track API trims event names; an imported name must match the same segments.
    name = raw.strip()
    if not name:
        raise _Reject("blank_name", f"{NAME_COLUMN} is empty")
    if len(name.encode()) > MAX_NAME_BYTES:
        raise _Reject("name_too_long", f"{NAME_COLUMN} is over {MAX_NAME_BYTES} bytes")
    return name


def _customer(raw: str) -> str:
    customer = raw.strip()
    if not customer:
        raise _Reject("blank_customer", f"{CUSTOMER_COLUMN} is empty")
    if len(customer.encode()) > MAX_CUSTOMER_BYTES:
        raise _Reject("customer_too_long", f"{CUSTOMER_COLUMN} is over {MAX_CUSTOMER_BYTES} bytes")
    if CONTROL_CHARACTERS.search(customer):
        raise _Reject("bad_customer", f"{CUSTOMER_COLUMN} contains control characters")
    return customer


def _event_id(raw: str) -> str | None:
    text = raw.strip()
    if not text:
        return None
    try:
        # Canonical (upper-case) form, so a re-import written in lower case still deduplicates.
        return str(ULID.from_str(text))
    except ValueError as exc:
        raise _Reject("bad_id", f"{ID_COLUMN} {_show(text)} is not a ULID ({exc})") from exc


def _timestamp(raw: str, latest_s: float) -> int | None:
    text = raw.strip()
    if not text:
        return None
    # isdecimal() alone would accept non-ASCII digits, which int() would happily read.
    is_unix = text.isascii() and text.isdecimal()
    seconds = _unix_seconds(text) if is_unix else _iso_seconds(text)
    if seconds < 0:
        raise _Reject("bad_timestamp", f"{TIMESTAMP_COLUMN} {_show(text)} is before 1970")
    if seconds >= MILLISECONDS_THRESHOLD:
        raise _Reject("bad_timestamp", f"{TIMESTAMP_COLUMN} {_show(text)} is out of range")
    if seconds > latest_s:
        raise _Reject(
            "bad_timestamp",
            f"{TIMESTAMP_COLUMN} {_show(text)} is more than {MAX_FUTURE_SKEW_S // 3600} hours "
            "in the future",
        )
    return seconds


def _unix_seconds(text: str) -> int:
    # Only digit strings get here, so a compact ISO date such as 20240131 reads as Unix seconds.
    # Length first: int() of thousands of digits is slow, and refused outright past 4,300.
    if len(text.lstrip("0")) > 14:
        raise _Reject("bad_timestamp", f"{TIMESTAMP_COLUMN} {_show(text)} is out of range")
    seconds = int(text)
    if seconds >= MILLISECONDS_THRESHOLD:
        raise _Reject(
            "bad_timestamp",
            f"{TIMESTAMP_COLUMN} {_show(text)} looks like milliseconds; use Unix seconds",
        )
    return seconds


def _iso_seconds(text: str) -> int:
    if _SCIENTIFIC.fullmatch(text):
        raise _Reject(
            "bad_timestamp",
            f"{TIMESTAMP_COLUMN} {_show(text)} is in scientific notation (a spreadsheet "
            "reformatted it); format the column as whole numbers",
        )
    if _DECIMAL.fullmatch(text):
        raise _Reject(
            "bad_timestamp",
            f"{TIMESTAMP_COLUMN} {_show(text)} is not a whole, non-negative number of seconds",
        )
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        # Keep datetime's explanation ("day is out of range for month") unless it only repeats
        # the (possibly huge) value back.
        why = "" if text in str(exc) else f" ({exc})"
        raise _Reject(
            "bad_timestamp",
            f"{TIMESTAMP_COLUMN} {_show(text)} is neither Unix seconds nor an ISO-8601 date{why}",
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    # floor, not int(): half a second before the epoch is before 1970, not the epoch itself.
    return math.floor(moment.timestamp())


def _show(value: str, limit: int = 40) -> str:
    # Reasons end up in a rejects file and in logs; a runaway cell must not bloat either.
    return repr(value if len(value) <= limit else value[:limit] + "…")



def _article(kind: IdentifierKind) -> str:
    return "an email" if kind == "email" else "an id"
