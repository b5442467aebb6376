"""Sending events from the console: the send-event form's action, and resending a stored event
(to the same person or anonymous id, or to a person picked on the Resend page).

Events go through the normal pipeline (:func:`app.console.data.send_event`), validated like the
track API's."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from app.api import consistency
from app.api.context import runtime
from app.api.responses import ApiError
from app.console import auth, data, forward
from app.console.guard import form_of, guarded
from app.console.html import json_block, when
from app.console.parts import person_search_input, send_form
from app.console.respond import page, redirect
from app.console.urls import with_query
from app.ingest.validate import ValidationError
from app.queries import people


def parse_data(text: str) -> tuple[Any, list[str]]:
    """The form's JSON ``data``, or the mistake."""
    try:
        return orjson.loads(text), []
    except orjson.JSONDecodeError as exc:
        return None, [f"data: not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno})"]


@guarded
async def send(request: web.Request, viewer: auth.Viewer) -> web.Response:
    rt = runtime(request)
    form = await form_of(request)
    customer = str(form.get("customer_id", ""))
    name = str(form.get("name", ""))
    event_type = str(form.get("type", "") or "event")
    data_text = str(form.get("data", "")).strip() or "{}"
    return_to = auth.safe_next(str(form.get("return_to", "")))
    parsed, errors = parse_data(data_text)
    if not customer.strip():
        errors.append("customer_id: is required")
    if not errors:
        try:
            item = await data.send_event(rt, customer=customer, anonymous_id=None, body={
                "name": name, "type": event_type, "data": parsed})
        except ValidationError as exc:
            errors.extend(exc.messages())
    if errors:
        return page("send_failed", "Send an event", by_cookie=viewer.by_cookie, status=400,
                    send_form=send_form(customer_id=customer, name=name, data_text=data_text,
                                        event_type=event_type, return_to=return_to,
                                        errors=errors))
    return redirect(with_query(return_to, sent=item["id"]))


async def stored_event(request: web.Request, kind: str, who: str, event_id: str
                       ) -> dict[str, Any] | web.Response:
    """The stored event to resend, or the owner's answer to this request (forwarded)."""
    rt = runtime(request)
    if kind in ("person", "anonymous"):
        answered = await forward.from_owner(request, anonymous=kind == "anonymous", key=who)
        if answered is not None:
            return answered
    if kind == "person":
        # Writes accepted before this request are seen by it (the API's read-your-writes).
        await consistency.settle_for(rt, who)
        view = people.person_view(rt, who)
        events = (view[2] if view else None) or []
    elif kind == "anonymous":
        events = people.anonymous_events(rt, who) or []
    else:
        raise ApiError(400, "kind: must be person or anonymous")
    activity = data.find_activity(events, event_id)
    if activity is None:
        raise ApiError(404, f"event {event_id!r} is no longer stored for {who!r}")
    return activity


@guarded
async def resend(request: web.Request, viewer: auth.Viewer) -> web.Response:
    """Send a stored event again as a new event: for the same person (or anonymous id), or for
    the person picked in the Resend page's search box (``to``)."""
    rt = runtime(request)
    form = await form_of(request)
    kind, who = str(form.get("kind", "")), str(form.get("who", ""))
    to = str(form.get("to", "")).strip()
    return_to = auth.safe_next(str(form.get("return_to", "")))
    found = await stored_event(request, kind, who, str(form.get("event_id", "")))
    if isinstance(found, web.Response):
        return found
    body = {"name": found["name"], "type": found["type"], "data": found.get("data") or {}}
    try:
        if to:
            item = await data.send_event(rt, customer=to, anonymous_id=None, body=body)
        else:
            item = await data.send_event(rt, customer=who if kind == "person" else None,
                                         anonymous_id=who if kind == "anonymous" else None,
                                         body=body)
    except ValidationError as exc:
        raise ApiError(400, *exc.messages()) from None
    return redirect(with_query(return_to, sent=item["id"]))


@guarded
async def resend_page(request: web.Request, viewer: auth.Viewer) -> web.Response:
    """Resend, picking the person with a search box (id, email, or a prefix of either)."""
    kind = request.query.get("kind", "")
    who = request.query.get("who", "")
    event_id = request.query.get("event_id", "")
    return_to = auth.safe_next(request.query.get("return_to", ""))
    found = await stored_event(request, kind, who, event_id)
    if isinstance(found, web.Response):
        return found
    return page("resend", "Resend", by_cookie=viewer.by_cookie, return_to=return_to,
                event=found, who=who, anonymous=kind == "anonymous", kind=kind,
                event_id=event_id, timestamp=when(found["timestamp"]),
                data=json_block(found.get("data") or {}),
                to_input=person_search_input("resend-to", "to",
                                             who if kind == "person" else ""))
