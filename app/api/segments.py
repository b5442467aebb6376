"""Segment definitions, membership reads, and the event-name index (bearer app key).

Thin handlers: each checks the caller and its parameters, then asks :mod:`app.queries.segments`
(which the console reads too) and answers JSON.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp import web
from ulid import ULID

from app.api import cluster
from app.api.auth import require_app
from app.api.bodies import read_body
from app.api.context import runtime
from app.api.responses import ApiError, json_response
from app.ingest.validate import CONTROL_CHARACTERS, too_deep
from app.producer import BrokerUnavailable, OutRecord
from app.queries import segments as queries
from app.runtime import Runtime
from app.segments.catalog import deletion_value
from app.segments.definition import DefinitionError, parse_segment

MAX_SEGMENT_ID_BYTES = 150
#: Conditions nest up to 64 levels; their values add more. The record wrapping a definition adds
#: its own, and orjson encodes at most 254.
MAX_DEFINITION_DEPTH = 200


async def publish_definition(rt: Runtime, segment_id: str, value: dict[str, Any] | None) -> None:
    """Write a definition (``None``: a deletion, :func:`app.segments.catalog.deletion_value`)
    to the definitions topic, and wait until this worker's catalog has it (read-your-writes)."""
    record = OutRecord(rt.topics.segment_definitions.name, 0, segment_id.encode(),
                       orjson.dumps(deletion_value() if value is None else value),
                       timestamp_ms=int(time.time() * 1000))
    try:
        offset = await rt.producer.send_one(record)
        if rt.batcher.durable is not None:
            await rt.batcher.durable([record], [offset])
    except BrokerUnavailable as exc:
        raise ApiError(503, f"broker: {exc}; the definition was not saved") from None
    await rt.catalog.wait_for(offset, timeout_s=10)


def segment_id_of(request: web.Request) -> str:
    return check_segment_id(request.match_info["segment_id"])


def check_segment_id(segment_id: str) -> str:
    """A segment id as the API and the console accept it, or ApiError(400)."""
    if not segment_id.strip() or len(segment_id.encode()) > MAX_SEGMENT_ID_BYTES:
        raise ApiError(400, f"segment_id: must be 1 to {MAX_SEGMENT_ID_BYTES} bytes")
    if CONTROL_CHARACTERS.search(segment_id):
        # NUL separates segment and person in the members index: "a\x00b" would read as
        # segment "a"'s members.
        raise ApiError(400, "segment_id: must not contain control characters")
    return segment_id


def asks_for_partition_states(request: web.Request) -> bool:
    """A peer asking for this worker's share of segment states."""
    return cluster.is_forwarded(request) and bool(request.query.get("partition_states"))


def limit_of(request: web.Request) -> int:
    raw = request.query.get("limit", "100")
    # isascii: str.isdigit() accepts digits such as "²" that int() refuses.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 4) or not 1 <= int(raw) <= 1000:
        raise ApiError(400, "limit: must be an integer between 1 and 1000")
    return int(raw)


def _must_exist(rt: Runtime, segment_id: str) -> None:
    if rt.catalog.latest.get(segment_id) is None:
        raise ApiError(404, f"segment {segment_id!r} not found")


async def put_segment(request: web.Request) -> web.Response:
    rt = runtime(request)
    require_app(request, rt.settings)
    segment_id = segment_id_of(request)
    body = await read_body(request, rt.settings.max_body_bytes)
    if too_deep(body, MAX_DEFINITION_DEPTH):
        raise ApiError(400, f"body: a definition nests deeper than {MAX_DEFINITION_DEPTH} levels")
    try:
        segment = parse_segment(segment_id, body)
    except DefinitionError as exc:
        # Every mistake, each "location: reason", in the API's error shape.
        raise ApiError(400, *(str(error) for error in exc.errors)) from None
    value = {"definition": segment.to_json(), "version": str(ULID()),
             "updated_at": int(rt.clock.now())}
    await publish_definition(rt, segment_id, value)
    states = await queries.cluster_states(rt, request, [segment_id],
                                          queries.segment_path(segment_id), required=False)
    return json_response({"segment": queries.summary(rt, segment_id, value, states[segment_id])})


async def get_segment(request: web.Request) -> web.Response:
    rt = runtime(request)
    require_app(request, rt.settings)
    segment_id = segment_id_of(request)
    if asks_for_partition_states(request):
        # A peer's share, whether or not this catalog has caught up yet.
        return json_response(queries.partition_states(rt, [segment_id]))
    found = await queries.segment_summary(rt, request, segment_id)
    if found is None:
        raise ApiError(404, f"segment {segment_id!r} not found")
    return json_response({"segment": found})


async def delete_segment(request: web.Request) -> web.Response:
    rt = runtime(request)
    require_app(request, rt.settings)
    segment_id = segment_id_of(request)
    _must_exist(rt, segment_id)
    await publish_definition(rt, segment_id, None)
    return json_response({})


async def list_segments(request: web.Request) -> web.Response:
    rt = runtime(request)
    require_app(request, rt.settings)
    if asks_for_partition_states(request):
        return json_response(queries.partition_states(rt, sorted(rt.catalog.live())))
    return json_response({"segments": await queries.segment_list(rt, request)})


async def membership(request: web.Request) -> web.Response:
    rt = runtime(request)
    require_app(request, rt.settings)
    segment_id = segment_id_of(request)
    _must_exist(rt, segment_id)
    return json_response(await queries.segment_members(
        rt, request, segment_id, limit=limit_of(request),
        cursor=request.query.get("cursor") or None))


async def customer_segments(request: web.Request) -> web.Response:
    rt = runtime(request)
    require_app(request, rt.settings)
    person = request.match_info["customer_id"]
    return json_response({"segments": queries.customer_segments(rt, person)})


async def event_names(request: web.Request) -> web.Response:
    rt = runtime(request)
    require_app(request, rt.settings)
    limit = limit_of(request)  # a bad parameter is a 400 here, before any worker is asked
    names = await queries.event_names(rt, request, request.query.get("q", ""), limit)
    return json_response({"names": names})


ROUTES = [
    web.get(queries.SEGMENTS_PATH, list_segments),
    web.put("/api/v1/segments/{segment_id}", put_segment),
    web.get("/api/v1/segments/{segment_id}", get_segment),
    web.delete("/api/v1/segments/{segment_id}", delete_segment),
    web.get("/api/v1/segments/{segment_id}/membership", membership),
    web.get("/api/v1/customers/{customer_id}/segments", customer_segments),
    web.get(queries.EVENT_NAMES_PATH, event_names),
]
