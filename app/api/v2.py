"""Track API v2: ``POST /api/v2/entity`` and ``POST /api/v2/batch`` (a batch with some bad items
answers 207 naming each, and accepts the good ones)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from app.api.auth import require_track
from app.api.bodies import read_body
from app.api.context import runtime
from app.api.responses import ApiError, json_response
from app.core.items import BadItem, new_id, reference
from app.ingest.fields import (ENTITY_ACTIONS, MAX_BATCH_BYTES, MAX_ENTITY_BYTES,
                               PERSON_IDENTIFIER_KINDS)
from app.ingest.validate import (MAX_DEPTH, FieldError, ValidationError, too_deep,
                                 validate_event, validate_identifier, validate_identify)
from app.producer import BrokerUnavailable
from app.runtime import Runtime
from app.topics import TopicSpec



class EntityError(Exception):
    def __init__(self, *errors: FieldError) -> None:
        super().__init__(errors)
        self.errors = list(errors)


def _error(field: str, reason: str, message: str) -> EntityError:
    return EntityError(FieldError(field, reason, message))


def entity_item(rt: Runtime, entity: Any, now_s: float) -> tuple[TopicSpec, str, dict[str, Any]]:
    """Map one v2 entity to (raw topic, key, item), or raise :class:`EntityError`."""
    action = _checked_action(entity)
    if action == "merge":
        return _merge_item(rt, entity, int(now_s * 1000))
    kind, value = _identifier(entity, action)
    try:
        topic, item = _person_item(rt, entity, action, kind, value, now_s)
    except ValidationError as exc:
        raise EntityError(*exc.errors) from None
    if kind not in (rt.settings.identify_by, "anonymous_id"):
        item["customer_kind"] = kind
    return topic, value, item


def _checked_action(entity: Any) -> str:
    """The entity's action, once its shape and size are acceptable."""
    if not isinstance(entity, dict):
        raise _error("body", "type", "an entity must be a JSON object")
    if too_deep(entity, MAX_DEPTH + 2):
        raise _error("body", "too_deep", f"an entity nests deeper than {MAX_DEPTH + 2} levels")
    if len(orjson.dumps(entity)) > MAX_ENTITY_BYTES:
        raise _error("body", "too_long", f"an entity is limited to {MAX_ENTITY_BYTES} bytes")
    if entity.get("type", "person") != "person":
        raise _error("type", "invalid", "only type 'person' is supported")
    action = entity.get("action")
    if action not in ENTITY_ACTIONS:
        raise _error("action", "invalid", f"must be one of {', '.join(ENTITY_ACTIONS)}")
    return str(action)


def _merge_item(rt: Runtime, entity: dict[str, Any], received_at: int
                ) -> tuple[TopicSpec, str, dict[str, Any]]:
    try:
        sides = {side: dict([reference(entity.get(side), side)])
                 for side in ("primary", "secondary")}
    except BadItem as exc:
        field = str(exc).split(":", 1)[0]
        raise _error(field, "invalid", str(exc).split(": ", 1)[-1]) from None
    [secondary] = sides["secondary"].values()
    return rt.topics.raw_events, secondary, {"op": "merge", "id": new_id(), **sides,
                                             "received_at": received_at}


def _identifier(entity: dict[str, Any], action: str) -> tuple[str, str]:
    """(kind, value) of the entity's one identifier."""
    identifiers = entity.get("identifiers")
    if not isinstance(identifiers, dict) or len(identifiers) != 1:
        raise _error("identifiers", "invalid",
                     "must hold exactly one of id, email, cio_id (or anonymous_id for events)")
    [(kind, value)] = identifiers.items()
    try:
        value = validate_identifier(value, f"identifiers.{kind}")
    except ValidationError as exc:
        raise EntityError(*exc.errors) from None
    anonymous = kind == "anonymous_id"
    if kind not in PERSON_IDENTIFIER_KINDS and not anonymous:
        raise _error("identifiers", "invalid", f"unknown identifier kind {kind!r}")
    if anonymous and action not in ("event", "page", "screen"):
        raise _error("identifiers", "invalid", "anonymous_id identifies events only")
    return kind, value


def _person_item(rt: Runtime, entity: dict[str, Any], action: str, kind: str, value: str,
                 now_s: float) -> tuple[TopicSpec, dict[str, Any]]:
    """An identify, delete or event item (raises ValidationError)."""
    topics, received_at = rt.topics, int(now_s * 1000)
    attributes = entity.get("attributes")
    if attributes is not None and not isinstance(attributes, dict):
        raise _error("attributes", "type", "must be an object")
    if action == "identify":
        body = dict(attributes or {})
        if entity.get("timestamp") is not None:
            body["_timestamp"] = entity["timestamp"]
        return topics.raw_events, validate_identify(body, customer=value, now_s=now_s,
                                                    new_id=new_id, received_at_ms=received_at)
    if action == "delete":
        return topics.raw_events, {"op": "delete", "id": new_id(), "customer": value,
                                   "received_at": received_at}
    anonymous = kind == "anonymous_id"
    body = {"name": entity.get("name"), "type": action, "data": entity.get("attributes"),
            "id": entity.get("id"), "timestamp": entity.get("timestamp")}
    if anonymous:
        body["anonymous_id"] = value
    item = validate_event(body, customer=None if anonymous else value, anonymous=anonymous,
                          now_s=now_s, new_id=new_id, received_at_ms=received_at)
    return (topics.raw_anonymous if anonymous else topics.raw_events), item


def _errors_json(errors: list[FieldError], index: int | None = None) -> list[dict[str, Any]]:
    base = {} if index is None else {"batch_index": index}
    return [{**base, "reason": e.reason, "field": e.field, "message": e.message}
            for e in errors]


async def _submit(rt: Runtime, accepted: list[tuple[TopicSpec, str, dict[str, Any]]]) -> None:
    by_topic: dict[str, tuple[TopicSpec, list[tuple[str, dict[str, Any]]]]] = {}
    for topic, key, item in accepted:
        by_topic.setdefault(topic.name, (topic, []))[1].append((key, item))
    try:
        for topic, keyed in by_topic.values():
            await rt.batcher.submit_many(topic.name, topic.partitions, keyed)
    except BrokerUnavailable as exc:
        raise ApiError(503, f"broker: {exc}; retry") from None
    for _, _, item in accepted:
        rt.counters[f"accepted:{item['op']}"] += 1


async def entity(request: web.Request) -> web.Response:
    rt = runtime(request)
    require_track(request, rt.settings)
    body = await read_body(request, rt.settings.max_body_bytes)
    try:
        accepted = entity_item(rt, body, rt.clock.now())
    except EntityError as exc:
        return json_response({"errors": _errors_json(exc.errors)}, 400)
    await _submit(rt, [accepted])
    return json_response({})


async def batch(request: web.Request) -> web.Response:
    rt = runtime(request)
    require_track(request, rt.settings)
    too_long = json_response({"errors": _errors_json([FieldError(
        "body", "too_long", f"a batch is limited to {MAX_BATCH_BYTES} bytes")])}, 413)
    if (request.content_length or 0) > MAX_BATCH_BYTES:
        return too_long
    body = await read_body(request, rt.settings.max_body_bytes)
    if len(await request.read()) > MAX_BATCH_BYTES:  # chunked: no Content-Length to trust
        return too_long
    items = body.get("batch") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        return json_response({"errors": _errors_json([FieldError(
            "batch", "invalid", "must be a non-empty list of entities")])}, 400)
    now_s = rt.clock.now()
    accepted, errors = [], []
    for index, entity_doc in enumerate(items):
        try:
            accepted.append(entity_item(rt, entity_doc, now_s))
        except EntityError as exc:
            errors.extend(_errors_json(exc.errors, index))
    if accepted:
        await _submit(rt, accepted)
    if errors:
        return json_response({"errors": errors}, 207)
    return json_response({})


ROUTES = [web.post("/api/v2/entity", entity), web.post("/api/v2/batch", batch)]
