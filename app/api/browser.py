"""Browser endpoints: what ``/js/track.js`` calls from visitors' browsers.

``POST /api/v1/browser/{site_id}/events``    an event: ``{"name", "data", "type"?, "id"?,
                                              "timestamp"?}`` plus ``"customer_id"`` (identified)
                                              or ``"anonymous_id"`` (anonymous)
``POST /api/v1/browser/{site_id}/page``      a page view: ``{"url", "data"?, ...}``, stored as an
                                              event of type ``page`` named by the URL
``POST /api/v1/browser/{site_id}/identify``  ``{"id", "anonymous_id"?, ...attributes}``
``OPTIONS`` on each                          the CORS preflight
``GET /js/track.js``                         the snippet

A web page cannot keep a secret, so these endpoints authenticate with the public site id alone
(compared in constant time with ``settings.site_id``) and so may only *add* data, like Customer.io's
JavaScript snippet: no reads, no deletes, no merges, no ``_update`` (which would tell whether a
person exists). Items are validated by the track API's own functions, with its body limit, and
enter the pipeline exactly as track API items do.

CORS: an ``Origin`` listed in ``EVENTIDE_CORS_ORIGINS`` gets ``Access-Control-Allow-Origin``
(also on errors, so the page can read them). A request from any other origin is refused with 403
and no CORS headers, preflight included; requests without ``Origin`` (not from a browser page)
are accepted.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import web

from app.core.items import new_id
from app.api.bodies import read_body
from app.api.context import runtime
from app.api.responses import ApiError, error_response, json_response
from app.ingest.validate import ValidationError, validate_event, validate_identify
from app.producer import BrokerUnavailable
from app.runtime import Runtime
from app.topics import TopicSpec

SNIPPET = Path(__file__).resolve().parents[1] / "static" / "track.js"
PREFLIGHT_MAX_AGE_S = 600


def site_matches(given: str, expected: str) -> bool:
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def cors_headers(origin: str) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


BrowserHandler = Callable[[Runtime, dict[str, Any], float], Awaitable[dict[str, Any]]]


def _origin_allowed(rt: Runtime, origin: str | None) -> bool:
    return origin is None or origin in rt.settings.cors_origins


def from_browser(handler: BrowserHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """``handler(rt, body, now_s)`` → the submitted item, as a route handler: the page's origin
    and site id checked, the body read as a JSON object, and CORS headers on every answer
    (errors included, so the page can read them)."""

    async def handle(request: web.Request) -> web.Response:
        rt = runtime(request)
        origin = request.headers.get("Origin")
        if not _origin_allowed(rt, origin):
            return error_response(403, f"origin: {origin!r} may not call this endpoint; "
                                       "list it in EVENTIDE_CORS_ORIGINS")
        try:
            if not site_matches(request.match_info["site_id"], rt.settings.site_id):
                raise ApiError(401, "unauthorized: unknown site id")
            body = await read_body(request, rt.settings.max_body_bytes)
            now_s = rt.clock.now()
            if not isinstance(body, dict):
                raise ApiError(400, "body: must be a JSON object")
            item = await handler(rt, body, now_s)
            response = json_response({})
            rt.counters[f"accepted:{item['op']}"] += 1
            rt.counters["accepted:browser"] += 1
        except ApiError as exc:
            response = error_response(exc.status, *exc.messages)
        response.headers.update(cors_headers(origin) if origin is not None else {})
        return response

    return handle


async def preflight(request: web.Request) -> web.Response:
    origin = request.headers.get("Origin")
    method = request.headers.get("Access-Control-Request-Method", "")
    if origin is None or not _origin_allowed(runtime(request), origin) or method.upper() != "POST":
        return web.Response(status=403, text="CORS: origin or method not allowed\n")
    return web.Response(status=204, headers={
        **cors_headers(origin),
        "Access-Control-Allow-Methods": "POST",
        "Access-Control-Allow-Headers": "Content-Type",
        "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S)})


async def _submit(rt: Runtime, topic: TopicSpec, key: str, item: dict[str, Any]
                  ) -> dict[str, Any]:
    try:
        await rt.batcher.submit(topic.name, topic.partitions, key, item)
    except BrokerUnavailable as exc:
        raise ApiError(503, f"broker: {exc}; nothing was accepted, retry") from None
    return item


async def events(rt: Runtime, body: dict[str, Any], now_s: float) -> dict[str, Any]:
    customer = body.get("customer_id")
    try:
        if customer is not None:
            item = validate_event(body, customer=customer, anonymous=False, now_s=now_s,
                                  new_id=new_id, received_at_ms=int(now_s * 1000))
            return await _submit(rt, rt.topics.raw_events, customer, item)
        if body.get("anonymous_id") is None:
            raise ApiError(400, "customer_id or anonymous_id: one is required")
        item = validate_event(body, customer=None, anonymous=True, now_s=now_s,
                              new_id=new_id, received_at_ms=int(now_s * 1000))
    except ValidationError as exc:
        raise ApiError(400, *exc.messages()) from None
    return await _submit(rt, rt.topics.raw_anonymous, item["anonymous_id"], item)


async def page(rt: Runtime, body: dict[str, Any], now_s: float) -> dict[str, Any]:
    page_url = body.get("url", body.get("name"))
    if not isinstance(page_url, str) or not page_url.strip():
        raise ApiError(400, "url: is required (the page's URL)")
    return await events(rt, {**body, "name": page_url, "type": "page"}, now_s)


async def identify(rt: Runtime, body: dict[str, Any], now_s: float) -> dict[str, Any]:
    settings = rt.settings
    if not settings.browser_identify:
        raise ApiError(403, "identify: turned off for browsers on this workspace "
                            "(EVENTIDE_BROWSER_IDENTIFY=0); identify people from your "
                            "server with the track API")
    if "_update" in body:
        raise ApiError(400, "_update: not accepted from browsers")
    attributes = dict(body)
    customer = attributes.pop("id", None)
    if customer is None and settings.identify_by == "email":
        customer = attributes.get("email")
    if customer is None:
        raise ApiError(400, "id: is required")
    if not isinstance(customer, str):
        raise ApiError(400, "id: must be a string")
    try:
        item = validate_identify(attributes, customer=customer, now_s=now_s,
                                 new_id=new_id, received_at_ms=int(now_s * 1000))
    except ValidationError as exc:
        raise ApiError(400, *exc.messages()) from None
    return await _submit(rt, rt.topics.raw_events, customer, item)


async def snippet(request: web.Request) -> web.Response:
    return web.Response(body=SNIPPET.read_bytes(), content_type="application/javascript",
                        charset="utf-8", headers={"Cache-Control": "public, max-age=300",
                                                  "X-Content-Type-Options": "nosniff"})


_BASE = "/api/v1/browser/{site_id}"
ROUTES = [
    web.post(_BASE + "/events", from_browser(events)),
    web.post(_BASE + "/page", from_browser(page)),
    web.post(_BASE + "/identify", from_browser(identify)),
    web.options(_BASE + "/events", preflight),
    web.options(_BASE + "/page", preflight),
    web.options(_BASE + "/identify", preflight),
    web.get("/js/track.js", snippet),
]
