"""Reading a Customer.io CSV event file: lines of bounded length, a checked header, and the data
rows as ``(row_number, cells)``, lazily (see :mod:`app.imports.csv_events` for the format)."""

from __future__ import annotations

import csv
import itertools
import os
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, TextIO

from app.ingest.fields import CSV_COLUMNS, CSV_CUSTOMER, CSV_ID, CSV_NAME, CSV_TIMESTAMP

NAME_COLUMN = CSV_NAME.header
CUSTOMER_COLUMN = CSV_CUSTOMER.header
TIMESTAMP_COLUMN = CSV_TIMESTAMP.header
ID_COLUMN = CSV_ID.header
RESERVED_COLUMNS = tuple(column.header for column in CSV_COLUMNS)
_RESERVED_PREFIX = "_cio_"
_BOM = "\ufeff"


class CsvFileError(ValueError):
    """The file as a whole cannot be imported; nothing from it should be sent."""



#: The longest line a CSV file may have (characters). Lines are read one at a time, so this, and
#: the csv module's own bound on one field (128 KiB), bound the memory an import takes whatever
#: the upload's size: one 100 MB row once took a worker to 1.15 GB.
MAX_LINE_CHARS = 1024 * 1024


class BoundedLines:
    """A text file's lines, refusing any over :data:`MAX_LINE_CHARS` before reading all of it."""

    def __init__(self, file: TextIO, max_chars: int = MAX_LINE_CHARS) -> None:
        self._file = file
        self._max = max_chars
        self._number = 0

    def __iter__(self) -> "BoundedLines":
        return self

    def __next__(self) -> str:
        line = self._file.readline(self._max + 1)
        if not line:
            raise StopIteration
        self._number += 1
        if len(line) > self._max:
            raise CsvFileError(f"line {self._number} is longer than {self._max:,} characters; "
                               "split the file's long rows")
        return line

    def __enter__(self) -> "BoundedLines":
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()



def open_csv(path: str | os.PathLike[str]) -> BoundedLines:
    """Open an uploaded CSV the way this module expects (UTF-8, BOM dropped, newlines untouched,
    lines bounded)."""
    return BoundedLines(open(path, encoding="utf-8-sig", newline=""))



@dataclass(frozen=True, slots=True)
class Header:
    width: int
    name_index: int
    customer_index: int
    timestamp_index: int | None
    id_index: int | None
    data_columns: tuple[tuple[int, str], ...]

    @classmethod
    def parse(cls, cells: list[str]) -> Header:
        names = [cell.strip() for cell in cells]
        _check_names(names)
        missing = [column for column in (NAME_COLUMN, CUSTOMER_COLUMN) if column not in names]
        if missing:
            raise CsvFileError(
                f"header must contain {NAME_COLUMN} and {CUSTOMER_COLUMN}; "
                f"missing {', '.join(missing)} (found: {_preview(names)})"
            )
        return cls(
            width=len(names),
            name_index=names.index(NAME_COLUMN),
            customer_index=names.index(CUSTOMER_COLUMN),
            timestamp_index=names.index(TIMESTAMP_COLUMN) if TIMESTAMP_COLUMN in names else None,
            id_index=names.index(ID_COLUMN) if ID_COLUMN in names else None,
            data_columns=tuple(
                (index, name) for index, name in enumerate(names) if name not in RESERVED_COLUMNS
            ),
        )


def _check_names(names: list[str]) -> None:
    # Each of these would otherwise lose data silently: a misspelt reserved column would become
    # event data, a nameless or repeated column has no single key for its values.
    seen: set[str] = set()
    for position, name in enumerate(names, start=1):
        if not name:
            raise CsvFileError(f"header column {position} has no name")
        if name.lower().startswith(_RESERVED_PREFIX) and name not in RESERVED_COLUMNS:
            raise CsvFileError(
                f"header column {position} {name!r} is not a known reserved column "
                f"(known: {', '.join(RESERVED_COLUMNS)})"
            )
        if name in seen:
            raise CsvFileError(f"header column {position} {name!r} appears more than once")
        seen.add(name)


def read(lines: Iterable[str]) -> tuple[Header, Iterator[tuple[int, list[str]]]]:
    """Parse the header and return it with a lazy iterator of ``(row_number, cells)``."""
    if isinstance(lines, str):
        raise TypeError("lines must be an iterable of lines, not one string")
    # strict: an unterminated quote would otherwise swallow the rest of the file into one cell.
    reader = csv.reader(_without_bom(lines), strict=True)
    try:
        header_cells = next(reader, None)
    except csv.Error as exc:
        raise CsvFileError(f"header is not valid CSV: {exc}") from exc
    if header_cells is None:
        raise CsvFileError(
            f"file is empty; expected a header row with {NAME_COLUMN} and {CUSTOMER_COLUMN}"
        )
    return Header.parse(header_cells), _data_rows(reader)


def _data_rows(reader: Any) -> Iterator[tuple[int, list[str]]]:
    # ``reader`` is a csv reader; its type is private to the csv module, hence Any.
    row_number = 0
    while True:
        try:
            cells = next(reader, None)
        except csv.Error as exc:
            raise CsvFileError(
                f"row {row_number + 1} (near line {reader.line_num}) is not valid CSV: {exc}"
            ) from exc
        if cells is None:
            return
        row_number += 1
        if any(map(str.strip, cells)):
            yield row_number, cells


def _without_bom(lines: Iterable[str]) -> Iterator[str]:
    iterator = iter(lines)
    first = next(iterator, None)
    if first is None:
        return iter(())
    return itertools.chain((first.removeprefix(_BOM),), iterator)



def _preview(names: list[str], limit: int = 10) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", … ({len(names)} columns)" if len(names) > limit else "")

