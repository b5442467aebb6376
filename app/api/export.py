"""Export (bearer app key): one person, or every person of a partition, streamed.

``GET /api/v1/customers/{id}/export?format=jsonl|csv``
    jsonl: a ``profile`` line, one ``attribute_change`` line per entry of the profile's ``changes``
    (when the profile keeps them), then one ``event`` line per stored event, oldest first.
    csv: one row per event, columns ``id,name,type,timestamp,processed_at,data`` (data as JSON).
``GET /api/v1/export/partitions``
    How many person partitions there are and which ones this worker owns.
``GET /api/v1/export/partitions/{p}``
    Every person of person partition ``p`` as jsonl (each person's profile line, then its lines),
    in key order. Only the worker that owns ``p`` may answer (409 otherwise): another worker's
    copy of a partition it does not own may be stale.

A person who has events but no profile (events tracked before any identify) is exported with a
profile line whose ``attributes`` is ``null``; importing it back re-creates only the events.
The jsonl format is what ``POST /api/v1/imports/export`` reads back.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from typing import Any, Callable, Iterator

import orjson
from aiohttp import web

from app.api.auth import require_app
from app.api.context import runtime
from app.queries.people import exportable_person, is_exportable
from app.api.responses import ApiError, json_response
from app.core.profiles import public_view
from app.runtime import Runtime
from app.person_store import stored_history
from app.topics import HISTORY_SIZE, PROFILES
from app.spreadsheet import spreadsheet_safe

CSV_COLUMNS = ("id", "name", "type", "timestamp", "processed_at", "data")
FORMATS = {"jsonl": "application/x-ndjson", "csv": "text/csv"}
#: People read from RocksDB per step of a partition export (profiles are small, histories not).
PROFILE_BATCH = 64
HISTORY_BATCH = 16
#: Bytes buffered before a write to the client.
FLUSH_BYTES = 64 * 1024
#: Above every UTF-8 encoded person id (ids are at most 150 bytes; RocksDB orders by bytes).
_KEY_STOP = "\U0010ffff" * 64

Fetch = Callable[[str, int], list[tuple[str, Any]]]


# --- pure formatting -----------------------------------------------------------------------------


def profile_line(person: str, profile: dict[str, Any] | None) -> dict[str, Any]:
    if profile is None:
        return {"kind": "profile", "id": person, "attributes": None, "anonymous_ids": [],
                "created_at": None, "updated_at": None}
    return {"kind": "profile", **public_view(profile)}


def event_line(activity: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "event", **{key: activity.get(key) for key in CSV_COLUMNS}}


def person_lines(person: str, profile: dict[str, Any] | None,
                 history: list[dict[str, Any]] | None) -> Iterator[bytes]:
    """A person's jsonl export, line by line (each ending in a newline)."""
    yield orjson.dumps(profile_line(person, profile)) + b"\n"
    for change in (profile or {}).get("changes") or []:
        body = change if isinstance(change, dict) else {"change": change}
        yield orjson.dumps({"kind": "attribute_change", **body}) + b"\n"
    for activity in history or []:
        yield orjson.dumps(event_line(activity)) + b"\n"


def csv_header() -> bytes:
    return _csv_bytes([CSV_COLUMNS])


def csv_event_rows(history: list[dict[str, Any]]) -> Iterator[bytes]:
    """The csv export's rows, a few hundred at a time."""
    for start in range(0, len(history), 500):
        yield _csv_bytes(
            [a["id"], a["name"], a["type"], a["timestamp"],
             "" if a.get("processed_at") is None else a["processed_at"],
             orjson.dumps(a.get("data") or {}).decode()]
            for a in history[start:start + 500])


def _csv_bytes(rows: Any) -> bytes:
    out = io.StringIO(newline="")
    csv.writer(out).writerows([spreadsheet_safe(cell) for cell in row] for row in rows)
    return out.getvalue().encode()


def iter_people(fetch_profiles: Fetch, fetch_histories: Fetch, *,
                profile_batch: int = PROFILE_BATCH, history_batch: int = HISTORY_BATCH
                ) -> Iterator[tuple[str, Any, Any]]:
    """Every key of either table, in order, with its profile and history (``None`` if absent).

    ``fetch(after, n)`` returns up to ``n`` ``(key, value)`` pairs with ``key >= after``, in key
    order. Both tables are read a batch at a time and merged up to the smaller of the two
    batches' last keys, so no iterator stays open between batches and memory stays bounded.
    """
    after = ""
    while True:
        profiles = fetch_profiles(after, profile_batch)
        histories = fetch_histories(after, history_batch)
        if not profiles and not histories:
            return
        bound: str | None = None
        if len(profiles) >= profile_batch:
            bound = profiles[-1][0]
        if len(histories) >= history_batch:
            last = histories[-1][0]
            bound = last if bound is None else min(bound, last)
        by_profile = {k: v for k, v in profiles if bound is None or k <= bound}
        by_history = {k: v for k, v in histories if bound is None or k <= bound}
        for key in sorted(by_profile.keys() | by_history.keys()):
            yield key, by_profile.get(key), by_history.get(key)
        if bound is None:
            return
        after = bound + "\x00"  # the smallest key after ``bound``


def attachment_name(stem: str, extension: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", stem)[:100] or "export"
    return f"{safe}.{extension}"


# --- handlers ------------------------------------------------------------------------------------


class _Buffered:
    """Coalesce small writes into ~64 KiB chunks of a streamed response."""

    def __init__(self, response: web.StreamResponse) -> None:
        self.response = response
        self.parts: list[bytes] = []
        self.size = 0

    async def write(self, data: bytes) -> None:
        self.parts.append(data)
        self.size += len(data)
        if self.size >= FLUSH_BYTES:
            await self.flush()

    async def flush(self) -> None:
        if self.parts:
            await self.response.write(b"".join(self.parts))
            self.parts, self.size = [], 0


async def start_stream(request: web.Request, content_type: str,
                       filename: str) -> web.StreamResponse:
    response = web.StreamResponse(headers={
        "Content-Type": content_type + "; charset=utf-8",
        "Content-Disposition": f'attachment; filename="{filename}"'})
    response.enable_chunked_encoding()
    await response.prepare(request)
    return response


async def customer_export(request: web.Request) -> web.StreamResponse:
    rt = runtime(request)
    require_app(request, rt.settings)
    fmt = request.query.get("format") or "jsonl"
    if fmt not in FORMATS:
        raise ApiError(400, "format: must be jsonl or csv")
    person, profile, history = exportable_person(rt, request.match_info["customer_id"])
    response = await start_stream(request, FORMATS[fmt], attachment_name(person, fmt))
    out = _Buffered(response)
    for chunk in export_chunks(fmt, person, profile, history):
        await out.write(chunk)
    await out.flush()
    await response.write_eof()
    return response


def export_chunks(fmt: str, person: str, profile: dict[str, Any] | None,
                  history: list[dict[str, Any]] | None) -> Iterator[bytes]:
    """One person's export in ``fmt`` (jsonl: profile and events; csv: events)."""
    if fmt == "jsonl":
        yield from person_lines(person, profile, history)
    else:
        yield csv_header()
        yield from csv_event_rows(history or [])


def _owned(rt: Runtime, partition: int) -> bool:
    tp = (rt.topics.person_events.name, partition)
    return tp in rt.assigned and rt.state.is_recovered(*tp)


async def list_partitions(request: web.Request) -> web.Response:
    rt = runtime(request)
    require_app(request, rt.settings)
    partitions = rt.topics.person_events.partitions
    return json_response({"partitions": partitions,
                          "owned": [p for p in range(partitions) if _owned(rt, p)]})


def _fetcher(rt: Runtime, table: str, partition: int) -> Fetch:
    def fetch(after: str, n: int) -> list[tuple[str, Any]]:
        if not _owned(rt, partition):
            raise _Revoked()
        store = rt.state.tables[table].store(partition)
        return list(itertools.islice(store.range(after, _KEY_STOP), n))
    return fetch


def _partition_of(rt: Runtime, request: web.Request) -> int:
    """The path's partition: a 404 if there is no such partition, a 409 if not owned here."""
    partitions = rt.topics.person_events.partitions
    raw = request.match_info["partition"]
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6) or not 0 <= int(raw) < partitions:
        raise ApiError(404, f"partition {raw!r} not found: there are {partitions} "
                            f"person partitions, 0 to {partitions - 1}")
    partition = int(raw)
    if not _owned(rt, partition):
        raise ApiError(409, f"partition {partition} is not owned by this worker (or is "
                            "still recovering); ask the worker that owns it")
    return partition


async def partition_export(request: web.Request) -> web.StreamResponse:
    rt = runtime(request)
    require_app(request, rt.settings)
    partition = _partition_of(rt, request)
    response = await start_stream(request, FORMATS["jsonl"],
                                  attachment_name(f"part-{partition}", "jsonl"))
    out = _Buffered(response)
    people = iter_people(_fetcher(rt, PROFILES, partition), _fetcher(rt, HISTORY_SIZE, partition))
    try:
        for person, profile, size in people:
            if not is_exportable(profile):
                continue
            history = stored_history(rt.state.tables, partition, person) if size else None
            for line in person_lines(person, profile, history):
                await out.write(line)
    except _Revoked:
        # Headers are gone already: end the connection without the final chunk, so the
        # client sees a broken transfer rather than a complete-looking partial export.
        if request.transport is not None:
            request.transport.close()
        return response
    await out.flush()
    await response.write_eof()
    return response


ROUTES = [
    web.get("/api/v1/customers/{customer_id}/export", customer_export),
    web.get("/api/v1/export/partitions", list_partitions),
    web.get("/api/v1/export/partitions/{partition}", partition_export),
]


class _Revoked(Exception):
    """The partition being exported was taken from this worker mid-export."""
