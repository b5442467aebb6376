"""One anonymous id (``/console/anonymous/{anon}``): its still-anonymous activity, or who it was
identified as. Forwarded to the worker owning the id's partition."""

from __future__ import annotations

from aiohttp import web

from app.api.context import runtime
from app.api.responses import ApiError
from app.console import auth, data, forward
from app.console.guard import guarded
from app.console.html import table
from app.console.parts import activity_rows, sent_notice
from app.console.respond import page
from app.console.urls import anonymous_url, person_url
from app.queries import people


@guarded
@forward.at_owner("anon", anonymous=True)
async def anonymous_page(request: web.Request, viewer: auth.Viewer) -> web.StreamResponse:
    rt = runtime(request)
    anonymous_id = request.match_info["anon"]
    events = people.anonymous_events(rt, anonymous_id)
    linked = people.anonymous_link(rt, anonymous_id)
    if events is None and linked is None:
        raise ApiError(404, f"No activity stored for anonymous id {anonymous_id!r} (events "
                            "older than the anonymous horizon are dropped).")
    found, _ = data.activity_page(events or [], now_s=rt.clock.now(), name=None, type_=None,
                                  cursor=None, limit=200)
    rows = activity_rows(found, kind="anonymous", who=anonymous_id,
                         return_to=anonymous_url(anonymous_id))
    activity_table = table(
        f"Activity that is still anonymous, last {data.WINDOW_DAYS} days, newest first",
        ["Name", "Type", "Timestamp", "Processed at", "Data", "Event id", "Action"], rows,
        empty="No activity that is still anonymous.")
    return page("anonymous", f"Anonymous {anonymous_id}", by_cookie=viewer.by_cookie,
                notice=sent_notice(request), anonymous_id=anonymous_id,
                identified=bool(linked), linked=linked or "",
                person_href=person_url(linked) if linked else "",
                activity_table=activity_table)
