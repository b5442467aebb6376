"""One event name (``/console/events/{name}``): totals, a 30-day trend, and its recent activity
across people (from a bounded scan of this worker's history), each resendable."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from markupsafe import Markup

from app.api.context import runtime
from app.console import auth, data
from app.console.guard import guarded
from app.console.html import code_id, json_block, link, sparkline, table, when
from app.console.parts import resend_button, send_form, sent_notice
from app.console.respond import page
from app.console.urls import anonymous_url, event_url, person_url
from app.queries import people
from app.queries.segments import event_names
from app.runtime import Runtime


async def name_totals(rt: Runtime, request: web.Request, name: str) -> dict[str, Any] | None:
    """Count and last sighting of exactly ``name`` (searched for literally)."""
    literal = re.sub(r"([*+|\\])", r"\\\1", name)
    for entry in await event_names(rt, request, literal, 1000):
        if entry["name"] == name:
            return entry
    return None


def scan_rows(rt: Runtime, scan: data.Recent, here: str) -> list[list[Any]]:
    rows = []
    for timestamp, event_id, kind, who, activity in scan.rows:
        if kind == "person":
            person_cell = link(person_url(who), who)
            target = people.customer_identifier(rt, who)
        else:
            person_cell = Markup(f'{link(anonymous_url(who), who)} '
                                 '<span class="tag">anonymous</span>')
            target = who
        rows.append([person_cell, activity["type"], when(timestamp),
                     when(activity.get("processed_at"), empty="not yet (anonymous)"),
                     json_block(activity.get("data") or {}), code_id(event_id),
                     resend_button(kind, target, event_id, here)])
    return rows


@guarded
async def event_page(request: web.Request, viewer: auth.Viewer) -> web.Response:
    rt = runtime(request)
    name = request.match_info["name"]
    totals = await name_totals(rt, request, name)
    scan = data.recent(rt, name=name, max_rows=100)
    counts = scan.daily.get(name, [0] * data.WINDOW_DAYS)
    here = event_url(name)
    days = data.WINDOW_DAYS
    scope = (f"From a scan of this worker's local history ({scan.people:,} people and "
             f"anonymous ids, {scan.events:,} events"
             + ("" if scan.complete else "; the scan stopped at its bound, so this may be "
                                         "partial") + ").")
    activity_table = table(
        f"Recent “{name}” activity across people (last {days} days, newest first)",
        ["Person", "Type", "Timestamp", "Processed at", "Data", "Event id", "Action"],
        scan_rows(rt, scan, here), empty=f"No “{name}” activity in the last {days} days.")
    return page(
        "event", name, by_cookie=viewer.by_cookie, section="index", notice=sent_notice(request),
        name=name, window_days=days, window_total=f"{sum(counts):,}", scope=scope,
        stats=("No event of this name has been processed yet." if totals is None else
               f"{totals['count']:,} processed; last seen "),
        last_seen=when(totals["last_seen"]) if totals else "",
        trend=sparkline(counts, label=f"{name} per day", width=360, height=64),
        activity_table=activity_table,
        send_form=send_form(name=name, return_to=here, heading=f"Send “{name}”"))
