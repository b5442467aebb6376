"""Bulk imports (bearer app key): Customer.io CSV event files, and eventide's own jsonl exports.

``POST /api/v1/imports/events`` (``text/csv``)
    The body is streamed to a temporary file under the data directory (constant memory, capped at
    ``EVENTIDE_IMPORT_MAX_BYTES``, 2 GiB by default), scanned once to refuse a broken or mixed-
    identifier file before anything is sent (400 naming the rows), then read row by row: each
    valid row of an existing person becomes exactly the item the track API builds for an
    identified event (plus ``"source": "import"``), sent in acknowledged chunks of 500 rows. The
    answer counts accepted and rejected rows, by reason, and lists the first 1000 rejects.
    Whether a row's person exists is answered by the worker owning that person, after every write
    accepted before the import (:mod:`app.api.consistency`): the same on every worker, and an
    identify answered just before the import counts.

``POST /api/v1/imports/export`` (jsonl, as written by the export endpoints)
    Re-creates the exported people: a ``profile`` line becomes an identify of its attributes, each
    ``event`` line an event with its original id, name, type, data, timestamp (and processed_at).
    The whole file is checked first; any bad line refuses the file with nothing sent.

CSV parsing, row validation and reading RocksDB-free work run in a worker thread, one chunk at a
time, so a large file does not stall the event loop the faust agents share.
"""

from __future__ import annotations

import asyncio
import time
import itertools
import os
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterable, Iterator, TypeVar

import orjson
from aiohttp import web

from app.api.auth import require_app
from app.api import consistency
from app.api.responses import ApiError, json_response
from app.core.items import BadItem, new_id, normalize
from app.imports.csv_events import (CUSTOMER_COLUMN, CsvFileError, ImportSummary, RowResult,
                                    iter_rows, open_csv, scan_identifier_kinds)
from app.ingest.validate import (ValidationError, validate_event, validate_identifier,
                                 validate_identify)
from app.producer import BrokerUnavailable
from app.runtime import Runtime

#: Default cap on an uploaded import file (override with EVENTIDE_IMPORT_MAX_BYTES).
DEFAULT_MAX_IMPORT_BYTES = 2 * 1024**3
#: Rows (or export lines) per acknowledged chunk.
CHUNK_ROWS = 500
#: Rejected rows listed in the answer (all are counted).
MAX_LISTED_REJECTS = 1000
#: Bad lines listed when an export file is refused.
MAX_LISTED_LINE_ERRORS = 20
_RECEIVE_CHUNK = 256 * 1024

_CSV_TYPES = ("text/csv", "application/csv", "text/plain", "application/octet-stream",
              "application/vnd.ms-excel", "")
_JSONL_TYPES = ("application/x-ndjson", "application/jsonl", "application/json-lines",
                "application/x-jsonlines", "application/json", "text/plain",
                "application/octet-stream", "")

T = TypeVar("T")


def max_import_bytes(env: dict[str, str] | None = None) -> int:
    raw = (os.environ if env is None else env).get("EVENTIDE_IMPORT_MAX_BYTES") or ""
    return int(raw) if raw.strip().isdigit() and int(raw) > 0 else DEFAULT_MAX_IMPORT_BYTES


def _take(iterator: Iterator[T], n: int) -> list[T]:
    return list(itertools.islice(iterator, n))


# --- receiving a large body ----------------------------------------------------------------------


def check_content_type(request: web.Request, allowed: tuple[str, ...], what: str) -> None:
    if request.content_type not in allowed:
        raise ApiError(415, f"body: unsupported content type {request.content_type!r}; "
                            f"send {what}")


async def receive_to_file(request: web.Request, out: IO[bytes], max_bytes: int) -> int:
    """Copy the request body to ``out`` chunk by chunk; 413 past ``max_bytes``. Returns the size."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise ApiError(413, f"body: larger than the import limit of {max_bytes} bytes")
    total = 0
    async for chunk in request.content.iter_chunked(_RECEIVE_CHUNK):
        total += len(chunk)
        if total > max_bytes:
            raise ApiError(413, f"body: larger than the import limit of {max_bytes} bytes")
        out.write(chunk)
    out.flush()
    return total


# --- the round trip: reading an export file ------------------------------------------------------


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
            try:
                person = validate_identifier(doc.get("id"), "id")
            except ValidationError as exc:
                person = None
                yield ExportEntry(number, kind, error="; ".join(exc.messages()))
                continue
            attributes = doc.get("attributes")
            if attributes is None:
                yield ExportEntry(number, kind, person=person)
                continue
            if not isinstance(attributes, dict):
                yield ExportEntry(number, kind, error="attributes: must be an object or null")
                continue
            problem = _track_rules(lambda: validate_identify(
                attributes, customer=person, now_s=time.time(), new_id=new_id,
                received_at_ms=received_at_ms))
            if problem:
                yield ExportEntry(number, kind, error=problem)
                continue
            item = {"op": "identify", "id": new_id(), "customer": person,
                    "attributes": attributes, "anonymous_id": None, "timestamp": None,
                    "update": False, "received_at": received_at_ms}
            yield _checked(number, kind, "identify", person, item)
        elif kind == "event":
            if person is None:
                yield ExportEntry(number, kind,
                                  error="event line without a valid profile line before it")
                continue
            if doc.get("id") is None:
                yield ExportEntry(number, kind, error="id: is required")
                continue
            problem = _track_rules(lambda: validate_event(
                {key: doc[key] for key in ("id", "name", "type", "data", "timestamp")
                 if doc.get(key) is not None},
                customer=person, anonymous=False, now_s=time.time(), new_id=new_id,
                received_at_ms=received_at_ms))
            if problem:
                yield ExportEntry(number, kind, error=problem)
                continue
            item = {"op": "event", "id": doc.get("id"), "name": doc.get("name"),
                    "type": doc.get("type") or "event", "data": doc.get("data") or {},
                    "timestamp": doc.get("timestamp"), "customer": person,
                    "received_at": received_at_ms, "source": "import"}
            processed_at = doc.get("processed_at")
            if isinstance(processed_at, int) and not isinstance(processed_at, bool) \
                    and processed_at >= 0:
                item["processed_at"] = processed_at
            yield _checked(number, kind, "event", person, item)
        elif kind == "attribute_change":
            yield ExportEntry(number, kind)
        else:
            yield ExportEntry(number, str(kind), error=f"kind: unknown {kind!r}")


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


# --- handlers ------------------------------------------------------------------------------------


def routes(rt: Runtime) -> list[web.RouteDef]:
    settings, topics = rt.settings, rt.topics
    limit = max_import_bytes()

    def spool(suffix: str) -> IO[bytes]:
        directory = settings.data_dir / "imports"
        directory.mkdir(parents=True, exist_ok=True)
        return tempfile.NamedTemporaryFile(dir=directory, suffix=suffix)

    async def send_chunk(topic: str, partitions: int, keyed: list[tuple[str, dict[str, Any]]],
                         done_before: str) -> None:
        if not keyed:
            return
        try:
            await rt.batcher.submit_many(topic, partitions, keyed)
        except BrokerUnavailable as exc:
            raise ApiError(503, f"broker: {exc}; {done_before}; import the file again to "
                                "finish (events with an id are deduplicated)") from None

    async def import_events(request: web.Request) -> web.Response:
        require_app(request, settings)
        check_content_type(request, _CSV_TYPES, "text/csv")
        with spool(".csv") as upload:
            await receive_to_file(request, upload, limit)
            path = Path(upload.name)
            try:
                await asyncio.to_thread(_scan_csv, path)
            except CsvFileError as exc:
                raise ApiError(400, f"file: {exc}; nothing was imported") from None
            return json_response(await _import_rows(request, path))

    async def _import_rows(request: web.Request, path: Path) -> dict[str, Any]:
        summary = ImportSummary()
        rejects: list[dict[str, Any]] = []
        spec = topics.raw_events
        # Every write accepted before this import is below these offsets: the owners of the
        # file's people answer "who exists" once they have applied them (app.api.consistency).
        raw_positions = await consistency.positions(rt, range(spec.partitions))

        def reject(result: RowResult) -> None:
            summary.record(result)
            if len(rejects) < MAX_LISTED_REJECTS:
                rejects.append({"row": result.row_number, "reason": result.reason})

        with open_csv(path) as lines:
            rows = iter_rows(lines, now_s=rt.clock.now())
            while True:
                try:
                    chunk = await asyncio.to_thread(_take, rows, CHUNK_ROWS)
                except CsvFileError as exc:  # the scan passed, so this is not expected
                    raise ApiError(400, f"file: {exc}; rows before it may have been "
                                        f"imported ({summary.accepted} accepted)") from None
                if not chunk:
                    break
                done_before = (f"{summary.accepted} rows before row {chunk[0].row_number} "
                               "were imported")
                try:
                    known = await consistency.lookup_people(
                        rt, request, (r.event["customer"] for r in chunk if r.event is not None),
                        raw_positions)
                except ApiError as exc:
                    raise ApiError(exc.status, *exc.messages,
                                   f"{done_before}; import the file again to finish (events "
                                   "with an id are deduplicated)") from None
                now_s = rt.clock.now()
                keyed: list[tuple[str, dict[str, Any]]] = []
                for result in chunk:
                    if result.event is None:
                        reject(result)
                        continue
                    event = result.event
                    customer = event["customer"]
                    person = known.get(customer)
                    if person is None:
                        reject(RowResult(result.row_number, None,
                                         f"unknown_customer: {CUSTOMER_COLUMN} {customer!r} "
                                         "is not a known person"))
                        continue
                    try:
                        item = validate_event(
                            {"name": event["name"], "id": event["id"], "data": event["data"],
                             "timestamp": event["timestamp"]},
                            customer=person, anonymous=False, now_s=now_s, new_id=new_id,
                            received_at_ms=int(now_s * 1000))
                    except ValidationError as exc:
                        reject(RowResult(result.row_number, None,
                                         "invalid_event: " + "; ".join(exc.messages())))
                        continue
                    item["source"] = "import"
                    keyed.append((person, item))
                await send_chunk(spec.name, spec.partitions, keyed, done_before)
                summary.accepted += len(keyed)
                rt.counters["accepted:event"] += len(keyed)
                rt.counters["imported:csv_rows"] += len(keyed)
        return {**summary.as_dict(), "rejects": rejects}

    async def import_export(request: web.Request) -> web.Response:
        require_app(request, settings)
        check_content_type(request, _JSONL_TYPES, "application/x-ndjson (an eventide export)")
        with spool(".jsonl") as upload:
            await receive_to_file(request, upload, limit)
            path = Path(upload.name)
            errors, kinds = await asyncio.to_thread(check_export_file, path)
            if errors:
                more = kinds["error"] - len(errors)
                raise ApiError(400, *errors, *([f"... and {more} more bad lines"] if more else []),
                               "file: not an eventide export as written; nothing was imported")
            counts: Counter[str] = Counter()
            with open(path, "rb") as lines:
                entries = iter_export_entries(lines, received_at_ms=int(rt.clock.now() * 1000))
                while True:
                    chunk = await asyncio.to_thread(_take, entries, CHUNK_ROWS)
                    if not chunk:
                        break
                    identifies = [(e.person, e.item) for e in chunk if e.op == "identify"]
                    events = [(e.person, e.item) for e in chunk if e.op == "event"]
                    done = (f"{counts['identify']} people and {counts['event']} events before "
                            f"line {chunk[0].line} were imported")
                    # One raw topic for all of a customer's operations, written in file order
                    # (profiles first), so the log alone decides what a person saw first.
                    await send_chunk(topics.raw_events.name, topics.raw_events.partitions,
                                     identifies, done)  # type: ignore[arg-type]
                    await send_chunk(topics.raw_events.name, topics.raw_events.partitions,
                                     events, done)  # type: ignore[arg-type]
                    counts["identify"] += len(identifies)
                    counts["event"] += len(events)
                    counts["profile"] += sum(1 for e in chunk if e.kind == "profile")
                    counts["attribute_change"] += sum(1 for e in chunk
                                                      if e.kind == "attribute_change")
            rt.counters["accepted:identify"] += counts["identify"]
            rt.counters["accepted:event"] += counts["event"]
        return json_response({"people": counts["profile"], "identifies": counts["identify"],
                              "events": counts["event"],
                              "skipped": {"attribute_change": counts["attribute_change"]}})

    return [
        web.post("/api/v1/imports/events", import_events),
        web.post("/api/v1/imports/export", import_export),
    ]


def _scan_csv(path: Path) -> None:
    try:
        with open_csv(path) as lines:
            scan_identifier_kinds(lines)
    except UnicodeDecodeError as exc:
        raise CsvFileError(f"file is not valid UTF-8 (byte {exc.start} of a block: "
                           f"{exc.reason})") from None
