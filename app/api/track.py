"""Track API v1: events (identified and anonymous) and identify. 200 only once the broker acked."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from app.api.auth import require_track
from app.api.bodies import read_body
from app.api.context import runtime
from app.api.responses import ApiError, json_response
from app.core.items import BadItem, new_id, reference
from app.ingest.validate import (ValidationError, validate_event, validate_identifier,
                                 validate_identify)
from app.producer import BrokerUnavailable
from app.runtime import Runtime
from app.topics import TopicSpec


async def _accept(rt: Runtime, topic: TopicSpec, key: str, item: dict) -> web.Response:
    try:
        await rt.batcher.submit(topic.name, topic.partitions, key, item)
    except BrokerUnavailable as exc:
        raise ApiError(503, f"broker: {exc}; nothing was accepted, retry") from None
    rt.counters[f"accepted:{item['op']}"] += 1
    return json_response({})


async def _parse(request: web.Request) -> tuple[Runtime, Any, float]:
    """(runtime, JSON body, now) of a track call with valid Basic credentials."""
    rt = runtime(request)
    require_track(request, rt.settings)
    return rt, await read_body(request, rt.settings.max_body_bytes), rt.clock.now()


async def track_customer_event(request: web.Request) -> web.Response:
    rt, body, now_s = await _parse(request)
    customer = request.match_info["customer_id"]
    try:
        item = validate_event(body, customer=customer, anonymous=False, now_s=now_s,
                              new_id=new_id, received_at_ms=int(now_s * 1000))
    except ValidationError as exc:
        raise ApiError(400, *exc.messages()) from None
    return await _accept(rt, rt.topics.raw_events, customer, item)


async def track_anonymous_event(request: web.Request) -> web.Response:
    rt, body, now_s = await _parse(request)
    try:
        item = validate_event(body, customer=None, anonymous=True, now_s=now_s,
                              new_id=new_id, received_at_ms=int(now_s * 1000))
    except ValidationError as exc:
        raise ApiError(400, *exc.messages()) from None
    return await _accept(rt, rt.topics.raw_anonymous, item["anonymous_id"], item)


async def identify(request: web.Request) -> web.Response:
    rt, body, now_s = await _parse(request)
    customer = request.match_info["customer_id"]
    try:
        item = validate_identify(body, customer=customer, now_s=now_s, new_id=new_id,
                                 received_at_ms=int(now_s * 1000))
    except ValidationError as exc:
        raise ApiError(400, *exc.messages()) from None
    # ``_update: true`` (update only, never create) is decided by the person stage, in log
    # order: an identify accepted just before counts, and every worker answers alike.
    return await _accept(rt, rt.topics.raw_events, customer, item)


async def delete_customer(request: web.Request) -> web.Response:
    rt, _, now_s = await _parse(request)
    customer = request.match_info["customer_id"]
    try:
        validate_identifier(customer, "customer_id")
    except ValidationError as exc:
        raise ApiError(400, *exc.messages()) from None
    item = {"op": "delete", "id": new_id(), "customer": customer,
            "received_at": int(now_s * 1000)}
    return await _accept(rt, rt.topics.raw_events, customer, item)


async def merge_customers(request: web.Request) -> web.Response:
    rt, body, now_s = await _parse(request)
    item = merge_item(body, now_s)
    [secondary] = item["secondary"].values()
    return await _accept(rt, rt.topics.raw_events, secondary, item)


ROUTES = [
    web.post("/api/v1/customers/{customer_id}/events", track_customer_event),
    web.post("/api/v1/events", track_anonymous_event),
    web.put("/api/v1/customers/{customer_id}", identify),
    web.delete("/api/v1/customers/{customer_id}", delete_customer),
    web.post("/api/v1/merge_customers", merge_customers),
]


def merge_item(body: object, now_s: float) -> dict:
    """``{"primary": {kind: value}, "secondary": {kind: value}}`` as a merge item, or a 400."""
    if not isinstance(body, dict):
        raise ApiError(400, "body: must be a JSON object")
    errors = []
    sides = {}
    for side in ("primary", "secondary"):
        try:
            kind, value = reference(body.get(side), side)
            sides[side] = {kind: value}
        except BadItem as exc:
            errors.append(str(exc))
    if errors:
        raise ApiError(400, *errors)
    return {"op": "merge", "id": new_id(), **sides, "received_at": int(now_s * 1000)}
