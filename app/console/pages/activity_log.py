"""The workspace Activity log (``/console/activity``): everyone's activity from every worker,
identified or still anonymous, filtered and paged like ``GET /api/v1/activities``."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from markupsafe import Markup

from app.api.context import runtime
from app.console import auth
from app.console.guard import guarded
from app.console.html import code_id, json_block, link, table, url, when
from app.console.parts import (
    activity_tabs,
    person_search_input,
    resend_button,
    resend_to_link,
    sent_notice,
    type_choices,
)
from app.console.respond import page
from app.console.urls import anonymous_url, event_url, person_url
from app.model import EVENT_TYPES
from app.queries import people
from app.queries.activity_log import activity_log
from app.runtime import Runtime

PAGE = "/console/activity"


def filters_of(request: web.Request) -> dict[str, str]:
    """The page's filters from its query (unknown values fall back to none)."""
    tab = request.query.get("tab", "identified")
    type_filter = request.query.get("type", "")
    return {"tab": tab if tab in ("identified", "anonymous") else "identified",
            "type": type_filter if type_filter in EVENT_TYPES else "",
            "name": request.query.get("name", "").strip(),
            "person": request.query.get("person", "").strip()}


def log_row(rt: Runtime, a: dict[str, Any], *, identified: bool, here: str) -> list[Any]:
    if identified:
        person = a["customer_id"]
        who_cell: Any = link(person_url(person), person)
        kind, target = "person", people.customer_identifier(rt, person)
        times = [when(a["timestamp"]), when(a.get("processed_at"))]
    else:
        kind, target = "anonymous", a["anonymous_id"]
        who_cell = Markup(f'{link(anonymous_url(target), target)} '
                          '<span class="tag">anonymous</span>')
        received = a.get("received_at")
        times = [when(a["timestamp"]), when(None, empty="not yet (anonymous)"),
                 when(None if received is None else received // 1000)]
    resend = resend_button(kind, target, a["id"], here) + resend_to_link(kind, target, a["id"],
                                                                          here)
    return [who_cell, link(event_url(a["name"]), a["name"]), a["type"], *times,
            json_block(a.get("data") or {}), code_id(a["id"]), resend]


def log_table(rows: list[list[Any]], *, identified: bool, filtered: bool) -> Markup:
    headers = ["Person" if identified else "Anonymous id", "Name", "Type", "Timestamp",
               "Processed at", *([] if identified else ["Received at"]), "Data", "Event id",
               "Action"]
    return table(("Identified" if identified else "Anonymous") + " activity, newest first",
                 headers, rows,
                 empty="No activity" + (" matching the filters." if filtered else " yet."))


@guarded
async def activity_log_page(request: web.Request, viewer: auth.Viewer) -> web.Response:
    rt = runtime(request)
    filters = filters_of(request)
    tab, identified = filters["tab"], filters["tab"] == "identified"
    before = request.query.get("before", "")
    here = url(PAGE, **filters, before=before)
    params = {"anonymous": "" if identified else "true", "type": filters["type"],
              "name": filters["name"], "customer": filters["person"], "before": before,
              "limit": "50"}
    answer = await activity_log(rt, request, {k: v for k, v in params.items() if v})
    rows = [log_row(rt, a, identified=identified, here=here) for a in answer["activities"]]
    filtered = bool(filters["type"] or filters["name"] or filters["person"])
    return page(
        "activity_log", "Activity log", by_cookie=viewer.by_cookie, section="activity",
        notice=sent_notice(request), tab=tab, identified=identified,
        tabs=activity_tabs(lambda key: url(PAGE, tab=key), tab),
        type_options=type_choices(filters["type"]), name_filter=filters["name"],
        person_filter=filters["person"],
        person_field=person_search_input("log-person", "person", filters["person"],
                                         placeholder="customer id, or the start of one"),
        filtered=filtered, clear_url=url(PAGE, tab=tab),
        activity_table=log_table(rows, identified=identified, filtered=filtered),
        complete=answer.get("complete", True),
        newest_url=url(PAGE, **filters) if before else "",
        older_url=url(PAGE, **filters, before=answer["next"]) if answer["next"] else "")
