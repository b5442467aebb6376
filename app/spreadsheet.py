"""Cells that go into CSV files people open in spreadsheets."""

from __future__ import annotations

from typing import Any

#: A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell: Any) -> Any:
    """A text cell a spreadsheet would run as a formula, prefixed with ``'`` so it shows as text
    (OWASP's advice against CSV injection); numbers and other text are left alone. The export
    format is for people: ``eventide import export`` reads the jsonl export, not the CSV."""
    if isinstance(cell, str) and cell.startswith(FORMULA_STARTS):
        return "'" + cell
    return cell
