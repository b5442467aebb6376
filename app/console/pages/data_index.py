"""The data index (``/console/``): every event name with its count, last sighting and a
sparkline of the last days; the send-event form; anonymous id lookup."""

from __future__ import annotations

from aiohttp import web
from markupsafe import Markup

from app.api.context import runtime
from app.console import auth, data
from app.console.guard import guarded
from app.console.html import ago, esc, link, sparkline, table, when
from app.console.parts import send_form, sent_notice
from app.console.respond import page
from app.console.urls import event_url
from app.queries.segments import event_names


@guarded
async def index(request: web.Request, viewer: auth.Viewer) -> web.Response:
    rt = runtime(request)
    q = request.query.get("q", "")
    names = await event_names(rt, request, q, 200)
    scan = data.recent(rt)
    now_s = rt.clock.now()
    rows = [[link(event_url(entry["name"]), entry["name"]), f"{entry['count']:,}",
             Markup(f'{when(entry["last_seen"])} <span class="muted">'
                    f'{esc(ago(entry["last_seen"], now_s))}</span>'),
             sparkline(scan.daily.get(entry["name"], [0] * data.WINDOW_DAYS),
                       label=f"{entry['name']} per day")]
            for entry in names]
    scope = ("" if scan.complete else
             f" Daily counts come from a bounded scan ({scan.people:,} people, "
             f"{scan.events:,} events) and may be partial.")
    names_table = table(
        f"Event names ({len(names)})" + (f" matching “{q}”" if q else ""),
        ["Event name", "Count", "Last seen", f"Last {data.WINDOW_DAYS} days"], rows,
        empty="No event names match." if q else "No events processed yet.", numeric=(1,))
    return page("data_index", "Data index", by_cookie=viewer.by_cookie, section="index",
                notice=sent_notice(request), q=q, searched=bool(q), names_table=names_table,
                window_days=data.WINDOW_DAYS, scope=scope,
                send_form=send_form(return_to="/console/", names=[n["name"] for n in names]))
