"""Segment definitions, membership reads, and the event-name index (bearer app key)."""

from __future__ import annotations

import asyncio
import heapq
import time

from typing import Any, Iterator

import orjson
from aiohttp import web
from ulid import ULID

from app.api import cluster
from app.api.auth import require_app
from app.api.bodies import read_body
from app.api.responses import ApiError, json_response
from app.core.name_search import compile_query
from app.producer import BrokerUnavailable, OutRecord, partition_for
from app.runtime import Runtime
from app.ingest.validate import too_deep
from app.segments.definition import DefinitionError, parse_segment
from app.topics import EVENT_NAMES, MEMBERSHIP, SEGMENT_MEMBERS, SEGMENT_STATE
from app.ingest.validate import CONTROL_CHARACTERS

MAX_SEGMENT_ID_BYTES = 150
#: Conditions nest up to 64 levels; their values add more. The record wrapping a definition adds
#: its own, and orjson encodes at most 254.
MAX_DEFINITION_DEPTH = 200


async def publish_definition(rt: Runtime, segment_id: str, value: dict[str, Any] | None) -> None:
    """Write a definition (``None``: a deletion) to the definitions topic, and wait until this
    worker's catalog has it (read-your-writes)."""
    record = OutRecord(rt.topics.segment_definitions.name, 0, segment_id.encode(),
                       None if value is None else orjson.dumps(value),
                       timestamp_ms=int(time.time() * 1000))
    try:
        offset = await rt.producer.send_one(record)
        if rt.batcher.durable is not None:
            await rt.batcher.durable([record], [offset])
    except BrokerUnavailable as exc:
        raise ApiError(503, f"broker: {exc}; the definition was not saved") from None
    await rt.catalog.wait_for(offset, timeout_s=10)


def routes(rt: Runtime) -> list[web.RouteDef]:
    settings, topics = rt.settings, rt.topics
    tables = rt.state.tables
    partitions = topics.person_events.partitions

    def stores(table: str) -> Iterator[Any]:
        """This worker's own partitions (a revoked partition's local copy may be stale)."""
        owned = cluster.owned_partitions(rt, topics.person_events.name, partitions)
        return (tables[table].store(p) for p in owned)

    def local_states(segment_id: str) -> dict[int, dict[str, Any]]:
        owned = cluster.owned_partitions(rt, topics.person_events.name, partitions)
        found = {p: tables[SEGMENT_STATE].store(p).get(segment_id) for p in owned}
        return {p: state for p, state in found.items() if state is not None}

    async def cluster_states(request: web.Request, segment_ids: list[str], *,
                             required: bool = True) -> dict[str, dict[int, dict[str, Any]]]:
        """Per segment, every partition's activated version and member count, from every
        worker (a forwarded request answers for this worker alone)."""
        states = {sid: local_states(sid) for sid in segment_ids}
        path_qs = str(request.rel_url.with_query({**request.query, "partition_states": "1"}))
        for answer in await cluster.gather(request, rt, path_qs, required=required):
            for sid, by_partition in answer.get("partition_states", {}).items():
                states.setdefault(sid, {}).update({int(p): v for p, v in by_partition.items()})
        return states

    def segment_id_of(request: web.Request) -> str:
        segment_id = request.match_info["segment_id"]
        if not segment_id.strip() or len(segment_id.encode()) > MAX_SEGMENT_ID_BYTES:
            raise ApiError(400, f"segment_id: must be 1 to {MAX_SEGMENT_ID_BYTES} bytes")
        if CONTROL_CHARACTERS.search(segment_id):
            # NUL separates segment and person in the members index: "a\x00b" would read as
            # segment "a"'s members.
            raise ApiError(400, "segment_id: must not contain control characters")
        return segment_id

    def summary(segment_id: str, value: dict[str, Any],
                states: dict[int, dict[str, Any]]) -> dict[str, Any]:
        live = all(states.get(p, {}).get("version") == value["version"]
                   for p in range(partitions))
        return {"id": segment_id, **value["definition"], "version": value["version"],
                "updated_at": value["updated_at"], "state": "live" if live else "building",
                "members": sum(st.get("members", 0) for st in states.values())}

    def partition_states_answer(request: web.Request, segment_ids: list[str]
                                ) -> web.Response | None:
        """A peer asking for this worker's share of segment states."""
        if not (cluster.is_forwarded(request) and request.query.get("partition_states")):
            return None
        return json_response({"partition_states": {
            sid: {str(p): state for p, state in local_states(sid).items()}
            for sid in segment_ids}})

    async def publish(segment_id: str, value: dict[str, Any] | None) -> None:
        await publish_definition(rt, segment_id, value)

    async def put_segment(request: web.Request) -> web.Response:
        require_app(request, settings)
        segment_id = segment_id_of(request)
        body = await read_body(request, settings.max_body_bytes)
        if too_deep(body, MAX_DEFINITION_DEPTH):
            raise ApiError(400, f"body: a definition nests deeper than {MAX_DEFINITION_DEPTH} "
                                "levels")
        try:
            segment = parse_segment(segment_id, body)
        except DefinitionError as exc:
            # Every mistake, each "location: reason", in the API's error shape.
            raise ApiError(400, *(str(error) for error in exc.errors)) from None
        value = {"definition": segment.to_json(), "version": str(ULID()),
                 "updated_at": int(rt.clock.now())}
        await publish(segment_id, value)
        states = await cluster_states(request, [segment_id], required=False)
        return json_response({"segment": summary(segment_id, value, states[segment_id])})

    async def get_segment(request: web.Request) -> web.Response:
        require_app(request, settings)
        segment_id = segment_id_of(request)
        answer = partition_states_answer(request, [segment_id])
        if answer is not None:
            return answer  # a peer's share, whether or not this catalog has caught up yet
        value = rt.catalog.latest.get(segment_id)
        if value is None:
            raise ApiError(404, f"segment {segment_id!r} not found")
        states = await cluster_states(request, [segment_id])
        return json_response({"segment": summary(segment_id, value, states[segment_id])})

    async def delete_segment(request: web.Request) -> web.Response:
        require_app(request, settings)
        segment_id = segment_id_of(request)
        if rt.catalog.latest.get(segment_id) is None:
            raise ApiError(404, f"segment {segment_id!r} not found")
        await publish(segment_id, None)
        return json_response({})

    async def list_segments(request: web.Request) -> web.Response:
        require_app(request, settings)
        live = rt.catalog.live()
        answer = partition_states_answer(request, sorted(live))
        if answer is not None:
            return answer
        states = await cluster_states(request, sorted(live))
        return json_response({"segments": [summary(sid, live[sid], states.get(sid, {}))
                                           for sid in sorted(live)]})

    async def membership(request: web.Request) -> web.Response:
        require_app(request, settings)
        segment_id = segment_id_of(request)
        if rt.catalog.latest.get(segment_id) is None:
            raise ApiError(404, f"segment {segment_id!r} not found")
        limit = _limit(request)
        after = request.query.get("cursor") or None
        people: list[str] = []
        for store in stores(SEGMENT_MEMBERS):
            # Each partition's limit+1 first after the cursor are enough for the global page.
            people.extend(await _first_members(store, segment_id, after, limit + 1))
        peer_more = False
        for answer in await cluster.gather(request, rt):
            people.extend(answer["people"])
            peer_more = peer_more or answer["next"] is not None
        people = sorted(set(people), key=natural_key)
        page = people[:limit]
        more = len(people) > limit or peer_more
        return json_response({"people": page, "next": page[-1] if more and page else None})

    async def customer_segments(request: web.Request) -> web.Response:
        require_app(request, settings)
        person = request.match_info["customer_id"]
        partition = partition_for(person.encode(), partitions)
        state = tables[MEMBERSHIP].get(partition, person) or {"in": {}}
        return json_response({"segments": [{"id": sid, "since": since}
                                           for sid, since in sorted(state["in"].items())]})

    async def event_names(request: web.Request) -> web.Response:
        require_app(request, settings)
        limit = _limit(request)  # a bad parameter is a 400 here, before any worker is asked
        matches = compile_query(request.query.get("q", ""))
        totals: dict[str, dict[str, int]] = {}
        for store in stores(EVENT_NAMES):
            for name, entry in store.items():
                if matches(name):
                    total = totals.setdefault(name, {"count": 0, "last_seen": 0})
                    total["count"] += entry["count"]
                    total["last_seen"] = max(total["last_seen"], entry["last_seen"])
        for answer in await cluster.gather(request, rt):
            for entry in answer["names"]:
                total = totals.setdefault(entry["name"], {"count": 0, "last_seen": 0})
                total["count"] += entry["count"]
                total["last_seen"] = max(total["last_seen"], entry["last_seen"])
        found = sorted(totals.items(), key=lambda kv: (-kv[1]["count"], kv[0]))
        return json_response({"names": [{"name": n, **t} for n, t in found[:limit]]})

    return [
        web.get("/api/v1/segments", list_segments),
        web.put("/api/v1/segments/{segment_id}", put_segment),
        web.get("/api/v1/segments/{segment_id}", get_segment),
        web.delete("/api/v1/segments/{segment_id}", delete_segment),
        web.get("/api/v1/segments/{segment_id}/membership", membership),
        web.get("/api/v1/customers/{customer_id}/segments", customer_segments),
        web.get("/api/v1/events/names", event_names),
    ]


def natural_key(person: str) -> tuple[int, int, str]:
    """The members listing's order: ids that are whole numbers by value ("5, 10, 11", not
    "10, 11, 5"), then every other id as a string (code point order)."""
    if person.isascii() and person.isdigit():
        return (0, int(person), person)
    return (1, 0, person)


#: Members looked at between two yields to the event loop.
_SCAN_SLICE = 5_000


async def _first_members(store: Any, segment_id: str, after: str | None, count: int
                         ) -> list[str]:
    """The ``count`` first members of a partition in :func:`natural_key` order after ``after``.

    The index (``SEGMENT_MEMBERS``) is kept in byte order, where "10" < "5", so every member of
    the segment in the partition is looked at (keys only, ~2 us each), in slices between which
    the event loop runs; what is kept is bounded by ``count``."""
    prefix = f"{segment_id}\x00"
    floor = natural_key(after) if after is not None else None
    best: list[str] = []
    batch: list[str] = []
    for seen, (key, _) in enumerate(store.range(prefix, f"{segment_id}\x01"), 1):
        person = key[len(prefix):]
        if floor is None or natural_key(person) > floor:
            batch.append(person)
        if seen % _SCAN_SLICE == 0:
            best = heapq.nsmallest(count, best + batch, key=natural_key)
            batch = []
            await asyncio.sleep(0)
    return heapq.nsmallest(count, best + batch, key=natural_key)


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", "100")
    # isascii: str.isdigit() accepts digits such as "²" that int() refuses.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 4) or not 1 <= int(raw) <= 1000:
        raise ApiError(400, "limit: must be an integer between 1 and 1000")
    return int(raw)
