"""Liquid preview (bearer app key): ``POST /api/v1/render``.

Body: ``{"template", "customer_id", "event_id"}`` or ``{"template", "customer_id", "event": {...}}``
with optional ``"strict": true``. ``customer`` in the template is the person's attributes plus
``id``; ``event`` is the stored event's ``data`` (looked up in the person's history by id) or the
inline object (neither given: an empty event). Answers ``{"output": "..."}``; a template problem
is a 400 ``template: line N: message``.

The worker owning the person answers (the request is forwarded there, signed), once it has
applied every write accepted before the request (:mod:`app.api.consistency`): a render right
after an identify sees that identify, on any worker; a 503 if that takes too long.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from ulid import ULID

from app.api import cluster, consistency
from app.api.auth import require_app
from app.api.context import runtime
from app.api.bodies import read_body
from app.api.people import lookup_profile
from app.api.responses import ApiError, json_response
from app.producer import partition_for
from app.render import TemplateError, render
from app.person_store import stored_history


def parse_render_body(body: Any) -> tuple[str, str, str | None, dict[str, Any] | None, bool]:
    """``(template, customer_id, event_id, inline event, strict)``; ApiError 400 names every
    problem."""
    if not isinstance(body, dict):
        raise ApiError(400, "body: must be a JSON object")
    errors: list[str] = []
    template = body.get("template")
    if not isinstance(template, str):
        errors.append("template: is required (a string)")
    customer_id = body.get("customer_id")
    if not isinstance(customer_id, str) or not customer_id.strip():
        errors.append("customer_id: is required (a non-blank string)")
    event_id, event = body.get("event_id"), body.get("event")
    if event_id is not None and event is not None:
        errors.append("event: give event_id or event, not both")
    if event_id is not None and (not isinstance(event_id, str) or not event_id.strip()):
        errors.append("event_id: must be a non-blank string")
    if event is not None and not isinstance(event, dict):
        errors.append("event: must be an object (the event's data)")
    strict = body.get("strict", False)
    if not isinstance(strict, bool):
        errors.append("strict: must be true or false")
    if errors:
        raise ApiError(400, *errors)
    return template, customer_id, event_id, event, strict  # type: ignore[return-value]


def _canonical(event_id: str) -> str:
    try:
        return str(ULID.from_str(event_id.strip()))
    except ValueError:
        return event_id



async def render_template(request: web.Request) -> web.Response:
    rt = runtime(request)
    require_app(request, rt.settings)
    body = await read_body(request, rt.settings.max_body_bytes)
    template, customer_id, event_id, event, strict = parse_render_body(body)
    # The person's worker decides (every worker answers alike), once it has applied every
    # write accepted before this request (an identify answered just before, say).
    if not cluster.is_forwarded(request):
        owner = consistency.owner_of(rt, customer_id)
        if owner is not None:
            return await cluster.forward(rt, request, owner)
    await consistency.settle_for(rt, customer_id)
    found = lookup_profile(rt, customer_id)
    if found is None:
        raise ApiError(404, f"customer {customer_id!r} not found")
    person, profile = found
    customer = {**profile.get("attributes", {}), "id": person}
    if event_id is not None:
        wanted = _canonical(event_id)
        partition = partition_for(person.encode(), rt.topics.person_events.partitions)
        history = stored_history(rt.state.tables, partition, person)
        stored = next((a for a in history if a["id"] == wanted), None)
        if stored is None:
            raise ApiError(404, f"event {event_id!r} not found in the history of customer "
                                f"{customer_id!r}")
        event = stored.get("data") or {}
    try:
        # In a thread: a heavy template must not stall the loop the agents share.
        output = await asyncio.to_thread(render, template, customer=customer,
                                         event=event or {}, strict=strict)
    except TemplateError as exc:
        raise ApiError(400, f"template: {exc}") from None
    return json_response({"output": output})


ROUTES = [web.post("/api/v1/render", render_template)]
