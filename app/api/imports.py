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
import contextlib
import itertools
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import IO, Any, AsyncIterator, Callable, Iterator, TypeVar

from aiohttp import web

from app.api import consistency
from app.api.auth import require_app
from app.api.context import runtime
from app.api.responses import ApiError, json_response
from app.core.items import new_id
from app.imports.csv_events import (CUSTOMER_COLUMN, CsvFileError, ImportSummary, RowResult,
                                    iter_rows, open_csv, scan_identifier_kinds)
from app.imports.export_lines import check_export_file, iter_export_entries
from app.ingest.validate import ValidationError, validate_event
from app.producer import BrokerUnavailable
from app.runtime import Runtime

#: Default cap on an uploaded import file (override with EVENTIDE_IMPORT_MAX_BYTES).
DEFAULT_MAX_IMPORT_BYTES = 2 * 1024**3
#: Rows (or export lines) per acknowledged chunk.
CHUNK_ROWS = 500
#: Rejected rows listed in the answer (all are counted).
MAX_LISTED_REJECTS = 1000
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


# --- handlers ------------------------------------------------------------------------------------


def _spool(rt: Runtime, suffix: str) -> IO[bytes]:
    directory = rt.settings.data_dir / "imports"
    directory.mkdir(parents=True, exist_ok=True)
    return tempfile.NamedTemporaryFile(dir=directory, suffix=suffix)


async def _send_chunk(rt: Runtime, keyed: list[tuple[str, dict[str, Any]]],
                      done_before: str) -> None:
    """Submit a chunk to the raw events topic (one topic for all of a customer's operations)."""
    if not keyed:
        return
    topic = rt.topics.raw_events
    try:
        await rt.batcher.submit_many(topic.name, topic.partitions, keyed)
    except BrokerUnavailable as exc:
        raise ApiError(503, f"broker: {exc}; {done_before}; import the file again to "
                            "finish (events with an id are deduplicated)") from None


@contextlib.asynccontextmanager
async def _uploaded(request: web.Request, types: tuple[str, ...], what: str,
                    suffix: str) -> AsyncIterator[tuple[Runtime, Path]]:
    """The app's runtime and the request body spooled to a temporary file (removed after)."""
    rt = runtime(request)
    require_app(request, rt.settings)
    check_content_type(request, types, what)
    with _spool(rt, suffix) as upload:
        await receive_to_file(request, upload, max_import_bytes())
        yield rt, Path(upload.name)


async def import_events(request: web.Request) -> web.Response:
    async with _uploaded(request, _CSV_TYPES, "text/csv", ".csv") as (rt, path):
        try:
            await asyncio.to_thread(_scan_csv, path)
        except CsvFileError as exc:
            raise ApiError(400, f"file: {exc}; nothing was imported") from None
        return json_response(await _import_rows(rt, request, path))


class _Rejects:
    """Rejected rows: all counted in the summary, the first few listed."""

    def __init__(self, summary: ImportSummary) -> None:
        self.summary = summary
        self.listed: list[dict[str, Any]] = []

    def __call__(self, result: RowResult) -> None:
        self.summary.record(result)
        if len(self.listed) < MAX_LISTED_REJECTS:
            self.listed.append({"row": result.row_number, "reason": result.reason})


async def _import_rows(rt: Runtime, request: web.Request, path: Path) -> dict[str, Any]:
    summary = ImportSummary()
    reject = _Rejects(summary)
    # Every write accepted before this import is below these offsets: the owners of the file's
    # people answer "who exists" once they have applied them (app.api.consistency).
    raw_positions = await consistency.positions(rt, range(rt.topics.raw_events.partitions))
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
            keyed = _row_items(chunk, known, rt.clock.now(), reject)
            await _send_chunk(rt, keyed, done_before)
            summary.accepted += len(keyed)
            rt.counters["accepted:event"] += len(keyed)
            rt.counters["imported:csv_rows"] += len(keyed)
    return {**summary.as_dict(), "rejects": reject.listed}


def _row_items(chunk: list[RowResult], known: dict[str, str | None], now_s: float,
               reject: Callable[[RowResult], None]) -> list[tuple[str, dict[str, Any]]]:
    """(person, item) of each row of an existing person that the track API would accept; the
    other rows are rejected."""
    keyed: list[tuple[str, dict[str, Any]]] = []
    for result in chunk:
        if result.event is None:
            reject(result)
            continue
        event = result.event
        customer = event["customer"]
        person = known.get(customer)
        if person is None:
            reject(RowResult(result.row_number, None, f"unknown_customer: {CUSTOMER_COLUMN} "
                                                      f"{customer!r} is not a known person"))
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
    return keyed


async def import_export(request: web.Request) -> web.Response:
    async with _uploaded(request, _JSONL_TYPES, "application/x-ndjson (an eventide export)",
                         ".jsonl") as (rt, path):
        errors, kinds = await asyncio.to_thread(check_export_file, path)
        if errors:
            more = kinds["error"] - len(errors)
            raise ApiError(400, *errors, *([f"... and {more} more bad lines"] if more else []),
                           "file: not an eventide export as written; nothing was imported")
        counts = await _send_export(rt, path)
    rt.counters["accepted:identify"] += counts["identify"]
    rt.counters["accepted:event"] += counts["event"]
    return json_response({"people": counts["profile"], "identifies": counts["identify"],
                          "events": counts["event"],
                          "skipped": {"attribute_change": counts["attribute_change"]}})


async def _send_export(rt: Runtime, path: Path) -> Counter[str]:
    """Send a checked export file's items, chunk by chunk; what was sent, by kind."""
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
            # Written in file order (profiles first), so the log alone decides what a person
            # saw first.
            await _send_chunk(rt, identifies, done)  # type: ignore[arg-type]
            await _send_chunk(rt, events, done)  # type: ignore[arg-type]
            counts["identify"] += len(identifies)
            counts["event"] += len(events)
            counts["profile"] += sum(1 for e in chunk if e.kind == "profile")
            counts["attribute_change"] += sum(1 for e in chunk if e.kind == "attribute_change")
    return counts


ROUTES = [
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
