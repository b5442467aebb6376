"""Reading an eventide export file back (``POST /api/v1/imports/export``): each jsonl line as
the item it re-creates, a line to skip, or the reason it is refused."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import orjson

from app.core.items import BadItem, new_id, normalize
from app.ingest.validate import (
    ValidationError,
    validate_event,
    validate_identifier,
    validate_identify,
)

#: Bad lines listed when an export file is refused.
MAX_LISTED_LINE_ERRORS = 20


@dataclass(frozen=True, slots=True)
class ExportEntry:
    """One line of an export file: an item to send, a line to skip, or an error."""

    line: int
    kind: str
    #: ``"identify"`` or ``"event"`` for lines that send an item, else ``None``.
    op: str | None = None
    person: str | None = None
    item: dict[str, Any] | None = None
    error: str | None = None


def iter_export_entries(lines: Iterable[bytes], *, received_at_ms: int,
                        new_id: Callable[[], str] = new_id) -> Iterator[ExportEntry]:
    """Turn an export's jsonl lines into items, line by line (1-based line numbers).

    A ``profile`` line names the person the following lines belong to; with attributes it
    becomes an identify (``attributes: null`` means the person had events but no profile). An
    ``event`` line becomes an event with its original id. ``attribute_change`` lines are history
    of the profile and are skipped. Every line meets the track API's rules first (sizes, nesting,
    names, timestamps, reserved fields: an export file is input like any other), then the router's
    own gate (:func:`app.core.items.normalize`), so nothing sent here can end up dead-lettered.
    """
    person: str | None = None
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            yield ExportEntry(number, "?", error=f"not JSON ({exc.msg})")
            continue
        if not isinstance(doc, dict):
            yield ExportEntry(number, "?", error="not a JSON object")
            continue
        kind = doc.get("kind")
        if kind == "profile":
            # (None after a profile line without a valid id: its events are refused.)
            person, entry = _profile_entry(number, doc, received_at_ms, new_id)
            yield entry
        elif kind == "event":
            yield _event_entry(number, doc, person, received_at_ms, new_id)
        elif kind == "attribute_change":
            yield ExportEntry(number, kind)
        else:
            yield ExportEntry(number, str(kind), error=f"kind: unknown {kind!r}")


def _profile_entry(number: int, doc: dict[str, Any], received_at_ms: int,
                   new_id: Callable[[], str]) -> tuple[str | None, ExportEntry]:
    """(the person the following lines belong to, this line's entry)."""
    kind = "profile"
    try:
        person = validate_identifier(doc.get("id"), "id")
    except ValidationError as exc:
        return None, ExportEntry(number, kind, error="; ".join(exc.messages()))
    attributes = doc.get("attributes")
    if attributes is None:
        return person, ExportEntry(number, kind, person=person)
    if not isinstance(attributes, dict):
        return person, ExportEntry(number, kind, error="attributes: must be an object or null")
    problem = _track_rules(lambda: validate_identify(
        attributes, customer=person, now_s=time.time(), new_id=new_id,
        received_at_ms=received_at_ms))
    if problem:
        return person, ExportEntry(number, kind, error=problem)
    item = {"op": "identify", "id": new_id(), "customer": person,
            "attributes": attributes, "anonymous_id": None, "timestamp": None,
            "update": False, "received_at": received_at_ms}
    return person, _checked(number, kind, "identify", person, item)


def _event_entry(number: int, doc: dict[str, Any], person: str | None, received_at_ms: int,
                 new_id: Callable[[], str]) -> ExportEntry:
    kind = "event"
    if person is None:
        return ExportEntry(number, kind, error="event line without a valid profile line before it")
    if doc.get("id") is None:
        return ExportEntry(number, kind, error="id: is required")
    problem = _track_rules(lambda: validate_event(
        {key: doc[key] for key in ("id", "name", "type", "data", "timestamp")
         if doc.get(key) is not None},
        customer=person, anonymous=False, now_s=time.time(), new_id=new_id,
        received_at_ms=received_at_ms))
    if problem:
        return ExportEntry(number, kind, error=problem)
    item = {"op": "event", "id": doc.get("id"), "name": doc.get("name"),
            "type": doc.get("type") or "event", "data": doc.get("data") or {},
            "timestamp": doc.get("timestamp"), "customer": person,
            "received_at": received_at_ms, "source": "import"}
    processed_at = doc.get("processed_at")
    if isinstance(processed_at, int) and not isinstance(processed_at, bool) and processed_at >= 0:
        item["processed_at"] = processed_at
    return _checked(number, kind, "event", person, item)
def _track_rules(check: Callable[[], Any]) -> str | None:
    """What the track API would say of a line (None: it would accept it)."""
    try:
        check()
    except ValidationError as exc:
        return "; ".join(exc.messages())
    return None


def _checked(number: int, kind: str, op: str, person: str, item: dict[str, Any]) -> ExportEntry:
    try:
        normal = normalize(item, topic="import", partition=0, offset=0, index=0,
                           record_ts_ms=item["received_at"], identifier_field="customer")
    except BadItem as exc:
        return ExportEntry(number, kind, error=str(exc))
    return ExportEntry(number, kind, op=op, person=person, item=normal)


def check_export_file(path: Path) -> tuple[list[str], Counter[str]]:
    """First pass over an export file: the bad lines (first few) and the count of each kind."""
    errors: list[str] = []
    kinds: Counter[str] = Counter()
    with open(path, "rb") as lines:
        for entry in iter_export_entries(lines, received_at_ms=0, new_id=lambda: "0" * 26):
            if entry.error is not None:
                kinds["error"] += 1
                if len(errors) < MAX_LISTED_LINE_ERRORS:
                    errors.append(f"line {entry.line}: {entry.error}")
            else:
                kinds[entry.kind] += 1
    return errors, kinds


