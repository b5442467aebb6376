"""Read API (bearer app key): activities of a person or an anonymous id, and profiles."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from app.api.auth import require_app
from app.api.context import runtime
from app.api.responses import ApiError, json_response
from app.core import history
from app.api.people import lookup_profile
from app.core.profiles import public_view
from app.queries import people
from app.runtime import Runtime

DAY_S = 86_400
MAX_LIMIT = 500


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name}: must be an integer") from None
    if not low <= value <= high:
        raise ApiError(400, f"{name}: must be between {low} and {high}")
    return value


def activity_query(request: web.Request, now_s: float) -> history.ActivityQuery:
    days = _int_param(request, "days", 30, 1, 36_500)
    cursor = request.query.get("cursor") or None
    if cursor is not None:
        try:
            history.decode_cursor(cursor)
        except ValueError:
            raise ApiError(400, "cursor: not a cursor this API returned") from None
    return history.ActivityQuery(
        since_s=now_s - days * DAY_S,
        type=request.query.get("type") or None,
        name=request.query.get("name") or None,
        cursor=cursor,
        limit=_int_param(request, "limit", 50, 1, MAX_LIMIT),
    )


def _public(activity: dict[str, Any]) -> dict[str, Any]:
    return {key: activity[key] for key in ("id", "name", "type", "data", "timestamp",
                                           "processed_at")}


def _page(rt: Runtime, events: list[dict[str, Any]], request: web.Request,
          **extra: Any) -> web.Response:
    found, next_cursor = history.query(events, activity_query(request, rt.clock.now()))
    return json_response({"activities": [_public(a) for a in found], "next": next_cursor,
                          **extra})


def _authorized(request: web.Request) -> Runtime:
    rt = runtime(request)
    require_app(request, rt.settings)
    return rt


async def customer_activities(request: web.Request) -> web.Response:
    rt = _authorized(request)
    customer = request.match_info["customer_id"]
    found = lookup_profile(rt, customer)
    person = found[0] if found else customer
    events = people.person_history(rt, person)
    if (people.raw_profile(rt, person) or {}).get("merged_into"):
        events = None  # merged away: the secondary is gone
    if events is None and found is None:
        raise ApiError(404, f"customer {customer!r} not found")
    return _page(rt, events or [], request)


async def anonymous_activities(request: web.Request) -> web.Response:
    rt = _authorized(request)
    anonymous_id = request.match_info["anonymous_id"]
    events = people.anonymous_events(rt, anonymous_id)
    # Identified: its activity moved to that person; say who (200, not a 404).
    linked = people.anonymous_link(rt, anonymous_id)
    if events is None and linked is None:
        raise ApiError(404, f"anonymous id {anonymous_id!r} not found")
    return _page(rt, events or [], request, identified_as=linked)


async def customer_profile(request: web.Request) -> web.Response:
    rt = _authorized(request)
    customer = request.match_info["customer_id"]
    found = lookup_profile(rt, customer)
    if found is None:
        raise ApiError(404, f"customer {customer!r} not found")
    return json_response({"customer": public_view(found[1])})


async def attribute_changes(request: web.Request) -> web.Response:
    rt = _authorized(request)
    customer = request.match_info["customer_id"]
    profile = people.raw_profile(rt, customer)
    if profile is None or profile.get("merged_into"):
        raise ApiError(404, f"customer {customer!r} not found")
    return json_response({"changes": list(reversed(profile.get("changes", [])))})


ROUTES = [
    web.get("/api/v1/customers/{customer_id}/attribute_changes", attribute_changes),
    web.get("/api/v1/customers/{customer_id}/activities", customer_activities),
    web.get("/api/v1/anonymous/{anonymous_id}/activities", anonymous_activities),
    web.get("/api/v1/customers/{customer_id}", customer_profile),
]
