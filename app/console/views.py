"""The console's pages and actions, served by the worker at ``/console/``.

Every page and action requires the app key: as a bearer token, or as the session cookie set by the
sign-in form (see :mod:`app.console.auth`). Pages are server-rendered; ``console.js`` only adds
inline JSON checks, confirmation prompts and the live segment feed.
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any, Awaitable, Callable

import orjson
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from app.api import activity_log, consistency, export, people_search, segment_preview, segments
from app.api.people import lookup_profile
from app.api.responses import ApiError, json_response
from app.console import auth, data, feed, forward
from app.console.html import (Html, ago, attr, error_page, errors_box, esc, hidden, json_block,
                              layout, link, login_page, path_segment, sparkline, table, url,
                              when)
from app.core.profiles import identifiers
from app.ingest.validate import ValidationError
from app.model import EVENT_TYPES
from app.producer import BrokerUnavailable, OutRecord
from app.runtime import Runtime
from app.segments.definition import DefinitionError
from app.sessions import revocation_record

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
#: How long a worker that has not read every sign-out yet holds a cookie request before a 503.
SIGN_OUTS_WAIT_S = 10.0
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                "script-src 'self'; connect-src 'self'; form-action 'self'; "
                                "frame-ancestors 'none'; base-uri 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}
_ULID_RE = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")
NEW_SEGMENT_TEMPLATE = {"match": {"all": [{"event": "purchased", "within": "30d"}]}}

Handler = Callable[[web.Request, auth.Viewer], Awaitable[web.StreamResponse]]


def html_response(body: Html, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html",
                        headers=SECURITY_HEADERS)


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def person_url(identifier: str, **query: Any) -> str:
    return url(f"/console/people/{path_segment(identifier)}", **query)


def anonymous_url(anonymous_id: str) -> str:
    return f"/console/anonymous/{path_segment(anonymous_id)}"


def event_url(name: str) -> str:
    return f"/console/events/{path_segment(name)}"


def segment_url(segment_id: str) -> str:
    return f"/console/segments/{path_segment(segment_id)}"


def sent_notice(request: web.Request) -> str:
    sent = request.query.get("sent", "")
    if _ULID_RE.fullmatch(sent):
        return (f"Event {sent} accepted. It appears in the activity below once processed "
                "(reload in a moment).")
    return ""


# --- forms shared by several pages ---------------------------------------------------------------


def send_form(*, customer_id: str = "", name: str = "", data_text: str = "{}",
              event_type: str = "event", return_to: str = "/console/",
              errors: list[str] | None = None, names: list[str] | None = None,
              heading: str = "Send an event") -> Html:
    """The send-event form. JSON ``data`` is checked by console.js before sending, and again by
    the server with the track API's validation."""
    errors = errors or []
    options = "".join(f'<option value="{attr(t)}"{" selected" if t == event_type else ""}>'
                      f"{esc(t)}</option>" for t in EVENT_TYPES)
    datalist = "".join(f'<option value="{attr(n)}">' for n in (names or [])[:200])
    invalid = ' aria-invalid="true"' if any(e.startswith("data") for e in errors) else ""
    return Html(f"""
<section class="card" aria-labelledby="send-heading">
  <h2 id="send-heading">{esc(heading)}</h2>
  <p class="hint">Sent through the normal pipeline, exactly like
    <code>POST /api/v1/customers/{{id}}/events</code>.</p>
  {errors_box(errors, box_id="send-errors")}
  <form method="post" action="/console/send" class="grid-form" data-send-form novalidate>
    {hidden("return_to", return_to)}
    <label for="send-customer">Person (customer id)</label>
    {person_search_input("send-customer", "customer_id", customer_id, required=True)}
    <label for="send-name">Event name</label>
    <input id="send-name" name="name" value="{attr(name)}" required list="send-names"
           autocomplete="off">
    <datalist id="send-names">{datalist}</datalist>
    <label for="send-type">Type</label>
    <select id="send-type" name="type">{options}</select>
    <label for="send-data">Data (a JSON object)</label>
    <div>
      <textarea id="send-data" name="data" rows="5" spellcheck="false" data-json="object"
                aria-describedby="send-data-error send-data-hint"{invalid}>{esc(data_text)}</textarea>
      <p id="send-data-hint" class="hint">For example <code>{{"plan": "pro", "price": 23.45}}</code></p>
      <p id="send-data-error" class="field-error" aria-live="polite"></p>
    </div>
    <div class="actions"><button type="submit" class="primary">Send event</button></div>
  </form>
</section>""")


def person_search_input(input_id: str, name: str, value: str, *, required: bool = False,
                        placeholder: str = "id or email, or the start of one") -> Html:
    """A person field that suggests people as you type (id, email or a prefix of either:
    ``GET /api/v1/search/customers``, through ``/console/search/people``); what is typed is sent
    as is, so it works without JavaScript too."""
    return Html(
        f'<input id="{attr(input_id)}" name="{attr(name)}" value="{attr(value)}"'
        f'{" required" if required else ""} autocomplete="off" list="{attr(input_id)}-options"'
        f' data-person-search="/console/search/people" placeholder="{attr(placeholder)}"'
        f' aria-describedby="{attr(input_id)}-found">'
        f'<datalist id="{attr(input_id)}-options"></datalist>'
        f'<span id="{attr(input_id)}-found" class="hint" aria-live="polite"></span>')


def activity_tabs(href: Callable[[str], str], current: str) -> str:
    """The Identified and Anonymous tabs (``<li>`` items), ``current`` marked."""
    return "".join(
        f'<li><a href="{attr(href(key))}"{" aria-current=page" if key == current else ""}>'
        f"{label}</a></li>"
        for key, label in (("identified", "Identified"), ("anonymous", "Anonymous")))


def type_choices(selected: str) -> str:
    """``<option>`` items of an event type filter (any, or one of the types)."""
    return '<option value="">any type</option>' + "".join(
        f'<option value="{t}"{" selected" if t == selected else ""}>{t}</option>'
        for t in EVENT_TYPES)


def resend_to_link(kind: str, who: str, event_id: str, return_to: str) -> Html:
    return link(url("/console/resend", kind=kind, who=who, event_id=event_id,
                    return_to=return_to), "to…",
                aria_label=f"Resend {event_id} to a person you pick")


def resend_button(kind: str, who: str, event_id: str, return_to: str) -> Html:
    return Html(
        '<form method="post" action="/console/resend" class="inline">'
        f'{hidden("kind", kind)}{hidden("who", who)}{hidden("event_id", event_id)}'
        f'{hidden("return_to", return_to)}'
        f'<button type="submit" class="small" aria-label="Resend {attr(event_id)} as a new event">'
        "Resend</button></form>")


def activity_rows(events: list[dict[str, Any]], *, kind: str, who: str, return_to: str,
                  anonymous_column: str | None = None) -> list[list[Any]]:
    rows = []
    for a in events:
        row: list[Any] = [link(event_url(a["name"]), a["name"]), a["type"]]
        if anonymous_column is not None:
            row.append(a.get(anonymous_column, ""))
        row += [when(a["timestamp"]),
                when(a.get("processed_at"), empty="not yet (anonymous)"),
                json_block(a.get("data") or {}),
                Html(f'<code class="id">{esc(a["id"])}</code>'),
                resend_button(kind, a.get("_who", who), a["id"], return_to)]
        rows.append(row)
    return rows


# --- routes --------------------------------------------------------------------------------------


def routes(rt: Runtime, feeds: feed.Feeds) -> list[web.AbstractRouteDef]:
    settings = rt.settings
    # Lists and counts come from the segments API's own handlers (they gather across workers).
    api_get = {r.path: r.handler for r in (*segments.routes(rt), *activity_log.routes(rt),
                                           *people_search.routes(rt))
               if isinstance(r, web.RouteDef) and r.method == "GET"}

    async def api(request: web.Request, path: str, rel_url: str) -> Any:
        """Call the API handler of ``path`` (a route pattern) for ``rel_url``, as the app key."""
        headers = CIMultiDict(request.headers)
        headers["Authorization"] = f"Bearer {settings.app_key}"
        headers.pop("Cookie", None)
        response = await api_get[path](request.clone(method="GET", rel_url=rel_url,
                                                     headers=headers))
        return orjson.loads(response.body)

    async def event_names(request: web.Request, q: str, limit: int = 200) -> list[dict]:
        return (await api(request, "/api/v1/events/names",
                          url("/api/v1/events/names", q=q, limit=limit)))["names"]

    async def event_name_totals(request: web.Request, name: str) -> dict[str, int] | None:
        literal = re.sub(r"([*+|\\])", r"\\\1", name)
        for entry in await event_names(request, literal, limit=1000):
            if entry["name"] == name:
                return entry
        return None

    async def segment_summary(request: web.Request, segment_id: str) -> dict[str, Any] | None:
        if rt.catalog.latest.get(segment_id) is None:
            return None
        path = f"/api/v1/segments/{path_segment(segment_id)}"
        return (await api(request, "/api/v1/segments/{segment_id}", path))["segment"]

    async def segment_members(request: web.Request, segment_id: str
                              ) -> tuple[list[str], str | None]:
        path = f"/api/v1/segments/{path_segment(segment_id)}/membership?limit=100"
        answer = await api(request, "/api/v1/segments/{segment_id}/membership", path)
        return answer["people"], answer["next"]

    def customer_identifier(person: str) -> str:
        """What the track API's ``{id}`` path means for this person (id, or email)."""
        if settings.identify_by == "id":
            return person
        profile = data.raw_profile(rt, person)
        email = identifiers(profile).get("email") if profile else None
        return email or person

    async def sign_outs_known(request: web.Request) -> bool:
        """Whether this worker has read every sign-out so far: until then it cannot tell a
        session cookie from a signed-out one (a worker that just started), so it waits a little."""
        if auth.COOKIE not in request.cookies or rt.revoked.caught_up.is_set():
            return True
        try:
            await asyncio.wait_for(rt.revoked.caught_up.wait(), SIGN_OUTS_WAIT_S)
            return True
        except asyncio.TimeoutError:
            return False

    def guarded(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            if not await sign_outs_known(request):
                response = html_response(error_page(
                    503, "This worker is starting (reading sign-outs); retry in a moment."), 503)
                response.headers["Retry-After"] = "2"
                return response
            viewer = auth.viewer_of(request, settings, rt.clock.now(), rt.revoked)
            if viewer is None:
                wants_page = (request.method == "GET" and "Authorization" not in request.headers
                              and "text/event-stream" not in request.headers.get("Accept", ""))
                if wants_page:
                    return redirect(url("/console/login", next=request.path_qs))
                response = html_response(error_page(
                    401, "Sign in with the app key (bearer token or the sign-in form)."), 401)
                response.headers["WWW-Authenticate"] = 'Bearer realm="eventide console"'
                return response
            if request.method == "POST" and viewer.by_cookie and auth.cross_site(request):
                return html_response(error_page(403, "Cross-site requests are refused."), 403)
            try:
                return await handler(request, viewer)
            except ApiError as exc:
                return html_response(error_page(exc.status, "; ".join(exc.messages),
                                                signed_in_by_cookie=viewer.by_cookie),
                                     exc.status)
        return handle

    def page(title: str, body: Html, viewer: auth.Viewer, *, section: str = "",
             notice: str = "", status: int = 200, lookup_value: str = "") -> web.Response:
        return html_response(layout(title, body, section=section, notice=notice,
                                    signed_in_by_cookie=viewer.by_cookie,
                                    lookup_value=lookup_value), status)

    async def form_of(request: web.Request) -> Any:
        try:
            return await request.post()
        except web.HTTPRequestEntityTooLarge:
            raise ApiError(413, f"body: larger than the limit of {settings.max_body_bytes} "
                                "bytes") from None

    # -- sign in ---------------------------------------------------------------------------------

    async def login_form(request: web.Request) -> web.Response:
        next_path = auth.safe_next(request.query.get("next"))
        if await sign_outs_known(request) and \
                auth.viewer_of(request, settings, rt.clock.now(), rt.revoked) is not None:
            return redirect(next_path)
        return html_response(login_page(next_path=next_path))

    async def login(request: web.Request) -> web.Response:
        if auth.cross_site(request):
            return html_response(error_page(403, "Cross-site requests are refused."), 403)
        form = await form_of(request)
        next_path = auth.safe_next(form.get("next"))
        given = form.get("app_key")
        if not isinstance(given, str) or not auth.keys_equal(given, settings.app_key):
            await asyncio.sleep(0.25)  # a little friction for guessing
            return html_response(login_page(next_path=next_path,
                                            error="That is not this workspace's app key."), 401)
        response = redirect(next_path)
        auth.set_session(response, settings, rt.clock.now(), request)
        return response

    async def logout(request: web.Request) -> web.Response:
        """End the session on every worker: its revocation is acknowledged by the broker
        (acks=all) and applied here before the answer; the others refuse the cookie as soon as
        they have read it (app/sessions.py)."""
        if auth.cross_site(request):
            return html_response(error_page(403, "Cross-site requests are refused."), 403)
        session = auth.cookie_session(request, settings, rt.clock.now())
        if session is not None and not rt.revoked.is_revoked(session.session_id):
            key, value = revocation_record(session.session_id, session.expiry)
            record = OutRecord(rt.topics.session_revocations.name, 0, key, value)
            try:
                offset = await rt.producer.send_one(record)
                if rt.batcher.durable is not None:  # embedded: on disk in the input log too
                    await rt.batcher.durable([record], [offset])
            except BrokerUnavailable as exc:
                log.error("sign-out not published: %s", exc)
                return html_response(error_page(
                    503, "Not signed out: the sign-out could not be recorded for every worker "
                         "(the broker did not acknowledge it). Try again."), 503)
            rt.revoked.add(session.session_id, session.expiry)
        response = redirect("/console/login")
        auth.clear_session(response, settings, request)
        return response

    # -- data index ------------------------------------------------------------------------------

    async def index(request: web.Request, viewer: auth.Viewer) -> web.Response:
        q = request.query.get("q", "")
        names = await event_names(request, q)
        scan = data.recent(rt)
        now_s = rt.clock.now()
        rows = []
        for entry in names:
            counts = scan.daily.get(entry["name"], [0] * data.WINDOW_DAYS)
            rows.append([
                link(event_url(entry["name"]), entry["name"]),
                f"{entry['count']:,}",
                Html(f'{when(entry["last_seen"])} <span class="muted">'
                     f'{esc(ago(entry["last_seen"], now_s))}</span>'),
                sparkline(counts, label=f"{entry['name']} per day"),
            ])
        scope = ("" if scan.complete else
                 f" Daily counts come from a bounded scan ({scan.people:,} people, "
                 f"{scan.events:,} events) and may be partial.")
        body = Html(f"""
<h1>Data index</h1>
<p class="lede">Every event name processed, with how often and when it was last seen (the same
index and search as <code>GET /api/v1/events/names</code>). Open a name for its recent activity
across people.</p>
<form method="get" action="/console/" role="search" class="search" aria-describedby="q-help">
  <label for="q">Search event names</label>
  <input id="q" name="q" value="{attr(q)}" autocomplete="off" placeholder="purchase*+signup|*test*">
  <button type="submit">Search</button>
  {link("/console/", "Clear") if q else ""}
</form>
<p id="q-help" class="hint"><code>*</code> is a wildcard, <code>+</code> adds an alternative,
<code>|</code> excludes, <code>\\</code> makes them literal; matching ignores case.</p>
{table(f"Event names ({len(names)})" + (f" matching “{q}”" if q else ""),
       ["Event name", "Count", "Last seen", f"Last {data.WINDOW_DAYS} days"], rows,
       empty="No event names match." if q else "No events processed yet.", numeric=(1,))}
<p class="hint">Sparklines count events of the last {data.WINDOW_DAYS} days by event time
(UTC days) in this worker's local history.{esc(scope)}</p>
<div class="columns">
{send_form(return_to="/console/", names=[n["name"] for n in names])}
<section class="card" aria-labelledby="anon-heading">
  <h2 id="anon-heading">Look up an anonymous id</h2>
  <form method="get" action="/console/people" class="grid-form">
    <label for="anon-id">Anonymous id</label>
    <input id="anon-id" name="anonymous_id" required autocomplete="off">
    <div class="actions"><button type="submit">Show its activity</button></div>
  </form>
</section>
</div>""")
        return page("Data index", body, viewer, section="index", notice=sent_notice(request))

    async def event_page(request: web.Request, viewer: auth.Viewer) -> web.Response:
        name = request.match_info["name"]
        totals = await event_name_totals(request, name)
        scan = data.recent(rt, name=name, max_rows=100)
        counts = scan.daily.get(name, [0] * data.WINDOW_DAYS)
        here = event_url(name)
        rows = []
        for timestamp, event_id, kind, who, activity in scan.rows:
            if kind == "person":
                person_cell = link(person_url(who), who)
                target = customer_identifier(who)
            else:
                person_cell = Html(f'{link(anonymous_url(who), who)} '
                                   '<span class="tag">anonymous</span>')
                target = who
            rows.append([person_cell, activity["type"], when(timestamp),
                         when(activity.get("processed_at"), empty="not yet (anonymous)"),
                         json_block(activity.get("data") or {}),
                         Html(f'<code class="id">{esc(event_id)}</code>'),
                         resend_button(kind, target, event_id, here)])
        scope = (f"From a scan of this worker's local history ({scan.people:,} people and "
                 f"anonymous ids, {scan.events:,} events"
                 + ("" if scan.complete else "; the scan stopped at its bound, so this may be "
                                             "partial") + ").")
        stats = ("No event of this name has been processed yet." if totals is None else
                 f"{totals['count']:,} processed; last seen ")
        body = Html(f"""
<p class="crumbs"><a href="/console/">Data index</a> › event</p>
<h1>{esc(name)}</h1>
<div class="summary">
  <p>{esc(stats)}{when(totals["last_seen"]) if totals else ""}</p>
  <figure class="trend">
    {sparkline(counts, label=f"{name} per day", width=360, height=64)}
    <figcaption><span>{data.WINDOW_DAYS} days ago</span>
      <span>{sum(counts):,} in the last {data.WINDOW_DAYS} days (UTC days)</span>
      <span>today</span></figcaption>
  </figure>
</div>
{table(f"Recent “{name}” activity across people (last {data.WINDOW_DAYS} days, newest first)",
       ["Person", "Type", "Timestamp", "Processed at", "Data", "Event id", "Action"], rows,
       empty=f"No “{name}” activity in the last {data.WINDOW_DAYS} days.")}
<p class="hint">{esc(scope)}</p>
{send_form(name=name, return_to=here, heading=f"Send “{name}”")}
""")
        return page(name, body, viewer, section="index", notice=sent_notice(request))

    # -- workspace activity log ------------------------------------------------------------------

    async def activity_log_page(request: web.Request, viewer: auth.Viewer) -> web.Response:
        tab = request.query.get("tab", "identified")
        tab = tab if tab in ("identified", "anonymous") else "identified"
        type_filter = request.query.get("type", "")
        type_filter = type_filter if type_filter in EVENT_TYPES else ""
        name_filter = request.query.get("name", "").strip()
        person_filter = request.query.get("person", "").strip()
        before = request.query.get("before", "")
        filters = {"tab": tab, "type": type_filter, "name": name_filter,
                   "person": person_filter}
        here = url("/console/activity", **filters, before=before)
        answer = await api(request, activity_log.PATH, url(
            activity_log.PATH, anonymous="true" if tab == "anonymous" else None,
            type=type_filter, name=name_filter, customer=person_filter, before=before,
            limit=50))
        rows = []
        for a in answer["activities"]:
            if tab == "identified":
                person = a["customer_id"]
                who_cell = link(person_url(person), person)
                target = customer_identifier(person)
                resend = Html(resend_button("person", target, a["id"], here) +
                              resend_to_link("person", target, a["id"], here))
                times = [when(a["timestamp"]), when(a.get("processed_at"))]
            else:
                who_cell = Html(f'{link(anonymous_url(a["anonymous_id"]), a["anonymous_id"])} '
                                '<span class="tag">anonymous</span>')
                resend = Html(resend_button("anonymous", a["anonymous_id"], a["id"], here) +
                              resend_to_link("anonymous", a["anonymous_id"], a["id"], here))
                received = a.get("received_at")
                times = [when(a["timestamp"]), when(None, empty="not yet (anonymous)"),
                         when(None if received is None else received // 1000)]
            rows.append([who_cell, link(event_url(a["name"]), a["name"]), a["type"], *times,
                         json_block(a.get("data") or {}),
                         Html(f'<code class="id">{esc(a["id"])}</code>'), resend])
        tabs = activity_tabs(lambda key: url("/console/activity", tab=key), tab)
        type_options = type_choices(type_filter)
        person_label = "Person" if tab == "identified" else "Anonymous id"
        person_field = (person_search_input("log-person", "person", person_filter,
                                            placeholder="customer id, or the start of one")
                        if tab == "identified" else
                        Html(f'<input id="log-person" name="person" value="{attr(person_filter)}"'
                             ' autocomplete="off">'))
        filtered = bool(type_filter or name_filter or person_filter)
        form = Html(f"""
<form method="get" action="/console/activity" class="filters" role="search"
      aria-label="Filter the activity log">
  {hidden("tab", tab)}
  <label for="log-type">Type</label>
  <select id="log-type" name="type">{type_options}</select>
  <label for="log-name">Event name</label>
  <input id="log-name" name="name" value="{attr(name_filter)}" autocomplete="off">
  <label for="log-person">{person_label}</label>
  {person_field}
  <button type="submit">Filter</button>
  {link(url("/console/activity", tab=tab), "Clear") if filtered else ""}
</form>""")
        pager = []
        if before:
            pager.append(link(url("/console/activity", **filters), "← Newest"))
        if answer["next"]:
            pager.append(link(url("/console/activity", **filters, before=answer["next"]),
                              "Older activity →", cls="more"))
        headers = ["Person" if tab == "identified" else "Anonymous id", "Name", "Type",
                   "Timestamp", "Processed at"]
        if tab == "anonymous":
            headers.append("Received at")
        headers += ["Data", "Event id", "Action"]
        explain = ("Everyone's activity, newest processed first, from every worker. "
                   "<em>Timestamp</em> is when the event happened (as sent); <em>Processed "
                   "at</em> is when eventide stored it for the person (for activity sent "
                   "anonymously, when the anonymous id was identified).") \
            if tab == "identified" else (
                "Activity of anonymous ids not identified yet, newest received first. It has "
                "no <em>Processed at</em> until an identify links the anonymous id; then it "
                "moves to <em>Identified</em>.")
        partial = ("" if answer.get("complete", True) else
                   '<p class="hint">From a bounded scan of anonymous ids on each worker: '
                   "older or less recent ids may be missing.</p>")
        body = Html(f"""
<h1>Activity log</h1>
<p class="lede">{explain}</p>
<nav class="tabs" aria-label="Activity kinds"><ul>{tabs}</ul></nav>
{form}
{table(("Identified" if tab == "identified" else "Anonymous") + " activity, newest first",
       headers, rows, empty="No activity" + (" matching the filters." if filtered else " yet."))}
{partial}
<p class="pager">{" ".join(pager)}</p>""")
        return page("Activity log", body, viewer, section="activity",
                    notice=sent_notice(request))

    async def search_people(request: web.Request, viewer: auth.Viewer) -> web.Response:
        """Suggestions for the person search boxes (JSON)."""
        answer = await api(request, people_search.PATH, url(
            people_search.PATH, q=request.query.get("q", ""), limit=10))
        return json_response(answer)

    async def preview_segment(request: web.Request, viewer: auth.Viewer) -> web.Response:
        """The segment editor's live preview (JSON): count and sample, or the mistakes."""
        raw = await request.read()
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return json_response({"errors": [f"not valid JSON: {exc.msg}"]}, status=400)
        try:
            return json_response(await segment_preview.preview(rt, request, doc))
        except ApiError as exc:
            return json_response({"errors": list(exc.messages)}, status=exc.status)

    # -- people ----------------------------------------------------------------------------------

    async def people_lookup(request: web.Request, viewer: auth.Viewer) -> web.Response:
        anonymous_id = request.query.get("anonymous_id", "").strip()
        if anonymous_id:
            return redirect(anonymous_url(anonymous_id))
        identifier = request.query.get("id", "").strip()
        if not identifier:
            return redirect("/console/")
        return redirect(person_url(identifier))

    async def person_page(request: web.Request, viewer: auth.Viewer) -> web.Response:
        identifier = request.match_info["person"]
        owner = forward.owner(rt, request, anonymous=False, key=identifier)
        if owner is not None:
            return await forward.forward(rt, request, owner)
        found = lookup_profile(rt, identifier)
        person = found[0] if found else (rt.resolve_person(identifier) or identifier)
        profile = found[1] if found else None
        events = data.person_history(rt, person)
        if found is None and events is None:
            raise ApiError(404, f"No person {identifier!r} on this worker (no profile and no "
                                "activity). Check the id, or look it up as an anonymous id.")
        now_s = rt.clock.now()
        tab = request.query.get("tab", "identified")
        tab = tab if tab in ("identified", "anonymous") else "identified"
        name_filter = request.query.get("name", "").strip()
        type_filter = request.query.get("type", "")
        type_filter = type_filter if type_filter in EVENT_TYPES else ""
        lookup_anon = request.query.get("anonymous_id", "").strip()
        here = person_url(identifier, tab=tab, name=name_filter, type=type_filter,
                          anonymous_id=lookup_anon)

        # profile
        if profile is not None:
            view = identifiers(profile)
            ids = "".join(f"<dt>{esc(k)}</dt><dd><code>{esc(v)}</code></dd>"
                          for k, v in view.items())
            anon_links = ", ".join(
                link(person_url(identifier, tab="anonymous", anonymous_id=a), a)
                for a in profile["anonymous_ids"]) or "none"
            profile_html = Html(f"""
<dl class="facts">{ids}
  <dt>anonymous ids</dt><dd>{anon_links}</dd>
  <dt>created</dt><dd>{when(profile.get("created_at"))}</dd>
  <dt>updated</dt><dd>{when(profile.get("updated_at"))}</dd>
</dl>""")
            attributes = table("Attributes", ["Attribute", "Value"],
                               [[k, json_block(v)] for k, v in
                                sorted(profile["attributes"].items())],
                               empty="No attributes.", caption_hidden=True)
            changes = list(reversed(profile.get("changes", [])))[:50]
            change_rows = [[c.get("name"), when(c.get("at")), json_block(c.get("old")),
                            json_block(c.get("new")), c.get("source", "")] for c in changes]
            changes_html = table(f"Attribute changes (newest {len(changes)})",
                                 ["Attribute", "When", "Old", "New", "Source"], change_rows,
                                 empty="No attribute changes recorded.", caption_hidden=True)
        else:
            profile_html = Html('<p class="empty">No profile yet: events arrived for this id, '
                                "but no identify.</p>")
            attributes = changes_html = Html("")
        seg_rows = [[link(segment_url(sid), sid), when(since)]
                    for sid, since in data.person_segments(rt, person)]
        segments_html = Html('<h3 class="sub">Segments</h3>' + table(
            "Segments", ["Segment", "Member since"], seg_rows, empty="Not in any segment.",
            caption_hidden=True))

        # activity
        tabs = activity_tabs(lambda key: person_url(identifier, tab=key), tab)
        type_options = type_choices(type_filter)
        anon_field = (f"""<label for="f-anon">Anonymous id</label>
    <input id="f-anon" name="anonymous_id" value="{attr(lookup_anon)}" autocomplete="off">"""
                      if tab == "anonymous" else "")
        filters = Html(f"""
<form method="get" action="{attr(person_url(identifier))}" class="filters" role="search"
      aria-label="Filter activity">
  {hidden("tab", tab)}
  <label for="f-name">Name</label>
  <input id="f-name" name="name" value="{attr(name_filter)}" autocomplete="off">
  <label for="f-type">Type</label>
  <select id="f-type" name="type">{type_options}</select>
  {anon_field}
  <button type="submit">Filter</button>
  {link(person_url(identifier, tab=tab), "Clear") if (name_filter or type_filter) else ""}
</form>""")
        if tab == "identified":
            cursor = request.query.get("cursor") or None
            found_events, next_cursor = data.activity_page(
                events or [], now_s=now_s, name=name_filter, type_=type_filter, cursor=cursor)
            rows = activity_rows(found_events, kind="person", who=identifier, return_to=here)
            more = (link(person_url(identifier, tab=tab, name=name_filter, type=type_filter,
                                    cursor=next_cursor), "Older activity →", cls="more")
                    if next_cursor else "")
            activity_html = Html(
                table(f"Identified activity, last {data.WINDOW_DAYS} days, newest first",
                      ["Name", "Type", "Timestamp", "Processed at", "Data", "Event id",
                       "Action"], rows, empty="No identified activity in the last "
                                              f"{data.WINDOW_DAYS} days" +
                      (" matching the filter." if name_filter or type_filter else "."))
                + more)
        else:
            anon_ids = list(profile["anonymous_ids"]) if profile else []
            if lookup_anon and lookup_anon not in anon_ids:
                anon_ids.append(lookup_anon)
            merged: list[dict[str, Any]] = []
            for anonymous_id in anon_ids:
                for a in data.anonymous_events(rt, anonymous_id) or []:
                    merged.append({**a, "anonymous_id": anonymous_id, "_who": anonymous_id})
            merged.sort(key=lambda a: (a["timestamp"], a["id"]))
            found_events, _ = data.activity_page(merged, now_s=now_s, name=name_filter,
                                                 type_=type_filter, cursor=None, limit=200)
            rows = activity_rows(found_events, kind="anonymous", who="", return_to=here,
                                 anonymous_column="anonymous_id")
            looked = (f" and {lookup_anon}" if lookup_anon and profile and lookup_anon
                      not in profile["anonymous_ids"] else "")
            activity_html = Html(
                '<p class="hint">Activity of this person\'s anonymous ids' + esc(looked) +
                " that is still anonymous. Once an identify links an anonymous id, its "
                "activity moves to <em>Identified</em> (with a Processed at).</p>"
                + table(f"Anonymous activity, last {data.WINDOW_DAYS} days, newest first",
                        ["Name", "Type", "Anonymous id", "Timestamp", "Processed at", "Data",
                         "Event id", "Action"], rows,
                        empty="No activity that is still anonymous."))
        export_link = f"/console/people/{path_segment(identifier)}/export"
        title = identifier
        email = (profile or {}).get("attributes", {}).get("email")
        body = Html(f"""
<p class="crumbs"><a href="/console/">Data index</a> › person</p>
<div class="title-row">
  <h1>{esc(title)}{f' <span class="muted">{esc(email)}</span>' if isinstance(email, str) else ""}</h1>
  <p class="export">{link(export_link + "?format=jsonl", "Export profile data")}
     <span class="muted">(JSON lines; {link(export_link + "?format=csv", "events as CSV")})</span></p>
</div>
<div class="columns">
  <section class="card" aria-labelledby="profile-heading">
    <h2 id="profile-heading">Profile</h2>
    {profile_html}
    {segments_html}
  </section>
  <section class="card" aria-labelledby="attributes-heading">
    <h2 id="attributes-heading">Attributes</h2>
    {attributes}
  </section>
</div>
<section aria-labelledby="activity-heading">
  <h2 id="activity-heading">Activity</h2>
  <nav aria-label="Activity kind" class="tabs"><ul>{tabs}</ul></nav>
  {filters}
  {activity_html}
</section>
<section class="card" aria-labelledby="changes-heading">
  <h2 id="changes-heading">Attribute changes</h2>
  {changes_html or Html('<p class="empty">No profile yet.</p>')}
</section>
{send_form(customer_id=identifier, return_to=here, names=None,
           heading="Send an event to this person")}
""")
        return page(title, body, viewer, notice=sent_notice(request), lookup_value=identifier)

    async def anonymous_page(request: web.Request, viewer: auth.Viewer) -> web.Response:
        anonymous_id = request.match_info["anon"]
        owner = forward.owner(rt, request, anonymous=True, key=anonymous_id)
        if owner is not None:
            return await forward.forward(rt, request, owner)
        events = data.anonymous_events(rt, anonymous_id)
        linked = data.anonymous_link(rt, anonymous_id)
        if events is None and linked is None:
            raise ApiError(404, f"No activity stored for anonymous id {anonymous_id!r} (events "
                                "older than the anonymous horizon are dropped).")
        here = anonymous_url(anonymous_id)
        found, _ = data.activity_page(events or [], now_s=rt.clock.now(), name=None,
                                      type_=None, cursor=None, limit=200)
        rows = activity_rows(found, kind="anonymous", who=anonymous_id, return_to=here)
        linked_html = (Html(f"<p>Identified as {link(person_url(linked), linked)}: its "
                            "activity is under that person.</p>") if linked else
                       Html("<p>Not identified yet.</p>"))
        body = Html(f"""
<p class="crumbs"><a href="/console/">Data index</a> › anonymous id</p>
<h1>Anonymous id <code>{esc(anonymous_id)}</code></h1>
{linked_html}
{table(f"Activity that is still anonymous, last {data.WINDOW_DAYS} days, newest first",
       ["Name", "Type", "Timestamp", "Processed at", "Data", "Event id", "Action"], rows,
       empty="No activity that is still anonymous.")}
""")
        return page(f"Anonymous {anonymous_id}", body, viewer, notice=sent_notice(request))

    async def person_export(request: web.Request, viewer: auth.Viewer) -> web.StreamResponse:
        """``GET /api/v1/customers/{id}/export``'s answer, built by the export module."""
        identifier = request.match_info["person"]
        owner = forward.owner(rt, request, anonymous=False, key=identifier)
        if owner is not None:
            return await forward.forward(rt, request, owner)
        fmt = request.query.get("format") or "jsonl"
        if fmt not in export.FORMATS:
            raise ApiError(400, "format: must be jsonl or csv")
        person = rt.resolve_person(identifier)
        profile = history = None
        if person is not None:
            profile = data.raw_profile(rt, person)
            history = data.person_history(rt, person)
        if person is None or (profile is None and history is None) \
                or not export.is_exportable(profile):
            raise ApiError(404, f"customer {identifier!r} not found")
        if fmt == "jsonl":
            chunks = list(export.person_lines(person, profile, history))
        else:
            chunks = [export.csv_header(), *export.csv_event_rows(history or [])]
        return web.Response(body=b"".join(chunks), headers={
            "Content-Type": export.FORMATS[fmt] + "; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{export.attachment_name(person, fmt)}"',
            "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})

    # -- send and resend -------------------------------------------------------------------------

    async def send(request: web.Request, viewer: auth.Viewer) -> web.Response:
        form = await form_of(request)
        customer = str(form.get("customer_id", ""))
        name = str(form.get("name", ""))
        event_type = str(form.get("type", "") or "event")
        data_text = str(form.get("data", "")).strip() or "{}"
        return_to = auth.safe_next(str(form.get("return_to", "")))
        errors: list[str] = []
        parsed: Any = None
        try:
            parsed = orjson.loads(data_text)
        except orjson.JSONDecodeError as exc:
            errors.append(f"data: not valid JSON ({exc.msg}, line {exc.lineno} column "
                          f"{exc.colno})")
        if not customer.strip():
            errors.append("customer_id: is required")
        if not errors:
            try:
                item = await data.send_event(rt, customer=customer, anonymous_id=None, body={
                    "name": name, "type": event_type, "data": parsed})
            except ValidationError as exc:
                errors.extend(exc.messages())
        if errors:
            body = Html('<p class="crumbs"><a href="/console/">Data index</a> › send</p>'
                        + send_form(customer_id=customer, name=name, data_text=data_text,
                                    event_type=event_type, return_to=return_to,
                                    errors=errors))
            return page("Send an event", body, viewer, status=400)
        return redirect(_with_query(return_to, sent=item["id"]))

    async def stored_event(request: web.Request, kind: str, who: str, event_id: str
                           ) -> dict[str, Any] | web.Response:
        """The stored event to resend, or the owner's answer to this request (forwarded)."""
        if kind in ("person", "anonymous"):
            owner = forward.owner(rt, request, anonymous=kind == "anonymous", key=who)
            if owner is not None:
                return await forward.forward(rt, request, owner)
        if kind == "person":
            # Writes accepted before this request are seen by it (the API's read-your-writes).
            await consistency.settle_for(rt, who)
            found = lookup_profile(rt, who)
            person = found[0] if found else (rt.resolve_person(who) or who)
            events = data.person_history(rt, person) or []
        elif kind == "anonymous":
            events = data.anonymous_events(rt, who) or []
        else:
            raise ApiError(400, "kind: must be person or anonymous")
        activity = data.find_activity(events, event_id)
        if activity is None:
            raise ApiError(404, f"event {event_id!r} is no longer stored for {who!r}")
        return activity

    async def resend(request: web.Request, viewer: auth.Viewer) -> web.Response:
        """Send a stored event again as a new event: for the same person (or anonymous id), or
        for the person picked in the Resend page's search box (``to``)."""
        form = await form_of(request)
        kind = str(form.get("kind", ""))
        who = str(form.get("who", ""))
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
        return redirect(_with_query(return_to, sent=item["id"]))

    async def resend_page(request: web.Request, viewer: auth.Viewer) -> web.Response:
        """Resend, picking the person with a search box (id, email, or a prefix of either)."""
        kind = request.query.get("kind", "")
        who = request.query.get("who", "")
        event_id = request.query.get("event_id", "")
        return_to = auth.safe_next(request.query.get("return_to", ""))
        found = await stored_event(request, kind, who, event_id)
        if isinstance(found, web.Response):
            return found
        body = Html(f"""
<p class="crumbs"><a href="{attr(return_to)}">Back</a> › resend</p>
<h1>Resend “{esc(found["name"])}”</h1>
<dl class="facts">
  <dt>From</dt><dd>{esc(who)}{' <span class="tag">anonymous</span>' if kind == "anonymous"
                               else ""}</dd>
  <dt>Type</dt><dd>{esc(found["type"])}</dd>
  <dt>Timestamp</dt><dd>{when(found["timestamp"])}</dd>
  <dt>Data</dt><dd>{json_block(found.get("data") or {})}</dd>
  <dt>Event id</dt><dd><code class="id">{esc(event_id)}</code></dd>
</dl>
<section class="card" aria-labelledby="resend-heading">
  <h2 id="resend-heading">Send it again as a new event</h2>
  <form method="post" action="/console/resend" class="grid-form">
    {hidden("kind", kind)}{hidden("who", who)}{hidden("event_id", event_id)}
    {hidden("return_to", return_to)}
    <label for="resend-to">For person</label>
    {person_search_input("resend-to", "to", who if kind == "person" else "")}
    <p class="hint span">Leave it empty to send it for {esc(who)} again.</p>
    <div class="actions"><button type="submit" class="primary">Resend</button></div>
  </form>
</section>""")
        return page("Resend", body, viewer)

    # -- segments --------------------------------------------------------------------------------

    async def segments_page(request: web.Request, viewer: auth.Viewer) -> web.Response:
        found = (await api(request, "/api/v1/segments", "/api/v1/segments"))["segments"]
        rows = [[link(segment_url(s["id"]), s["id"]), s["name"],
                 Html(f'<span data-members-for="{attr(s["id"])}">{s["members"]:,}</span>'),
                 Html(f'<span class="state state-{attr(s["state"])}">{esc(s["state"])}</span>'),
                 when(s["updated_at"])] for s in found]
        body = Html(f"""
<h1>Segments</h1>
<p class="lede">Live segments: membership is re-evaluated as events and attributes arrive.
Member counts below update live from the change feed.</p>
{table(f"Segments ({len(found)})", ["Segment", "Name", "Members", "State", "Updated"], rows,
       empty="No segments yet: create one below.", numeric=(2,))}
<div class="columns">
<section class="card" aria-labelledby="new-heading">
  <h2 id="new-heading">Create a segment</h2>
  <form method="get" action="/console/segments/new" class="grid-form">
    <label for="new-id">Segment id</label>
    <input id="new-id" name="id" required maxlength="150" autocomplete="off"
           pattern=".*\\S.*" aria-describedby="new-id-hint">
    <p id="new-id-hint" class="hint span">The id is the segment's key in the API
      (<code>/api/v1/segments/{{id}}</code>).</p>
    <div class="actions"><button type="submit" class="primary">Open the editor</button></div>
  </form>
</section>
{feed_section(None)}
</div>""")
        return page("Segments", body, viewer, section="segments")

    def feed_section(segment_id: str | None) -> Html:
        feed_url = url("/console/segments/feed", segment=segment_id)
        what = "this segment" if segment_id else "every segment"
        return Html(f"""
<section class="card feed" aria-labelledby="feed-heading">
  <h2 id="feed-heading">Live changes</h2>
  <p class="hint">People entering and leaving {what}, as they happen.</p>
  <p class="feed-status" data-feed-status aria-live="polite">Connecting…</p>
  <ol class="feed-list" data-feed="{attr(feed_url)}" aria-live="polite" aria-relevant="additions"
      aria-label="Segment changes, newest first"></ol>
  <noscript><p>The live feed needs JavaScript.</p></noscript>
</section>""")

    async def new_segment(request: web.Request, viewer: auth.Viewer) -> web.Response:
        segment_id = request.query.get("id", "").strip()
        data.check_segment_id(segment_id)
        return redirect(segment_url(segment_id))

    def segment_body(segment_id: str, *, text: str, errors: list[str],
                     summary: dict[str, Any] | None,
                     members_page: tuple[list[str], str | None]) -> Html:
        if summary is not None:
            facts = Html(f"""
<dl class="facts inline-facts">
  <dt>Members</dt><dd><span data-members-for="{attr(segment_id)}">{summary["members"]:,}</span></dd>
  <dt>State</dt><dd><span class="state state-{attr(summary["state"])}">{esc(summary["state"])}</span></dd>
  <dt>Version</dt><dd><code>{esc(summary["version"])}</code></dd>
  <dt>Updated</dt><dd>{when(summary["updated_at"])}</dd>
</dl>""")
            members, next_after = members_page
            items = "".join(f'<li data-person="{attr(p)}">{link(person_url(p), p)}</li>'
                            for p in members)
            members_html = Html(
                f'<ul class="members" data-members-list="{attr(segment_id)}"'
                f'{"" if next_after else " data-complete"}>{items}</ul>'
                f'<p class="empty" data-members-empty{"" if not members else " hidden"}>'
                "No members.</p>"
                + (f'<p class="hint">Showing the first {len(members)} by id; the full list is at '
                   f"<code>GET /api/v1/segments/{esc(segment_id)}/membership</code>.</p>"
                   if next_after else ""))
            heading = summary["name"]
            delete = Html(f"""
<form method="post" action="{attr(segment_url(segment_id))}/delete" class="inline danger-zone"
      data-confirm="Delete segment {attr(segment_id)}? Its members all exit.">
  <button type="submit" class="danger">Delete segment</button>
</form>""")
        else:
            facts = Html('<p class="hint">New segment: not saved yet.</p>')
            members_html = Html('<p class="empty">Save the definition to start.</p>')
            heading = segment_id
            delete = Html("")
        invalid = ' aria-invalid="true"' if errors else ""
        server_errors = "".join(f"<li>{esc(e)}</li>" for e in errors)
        return Html(f"""
<p class="crumbs"><a href="/console/segments">Segments</a> › {esc(segment_id)}</p>
<h1>{esc(heading)} <span class="muted">({esc(segment_id)})</span></h1>
{facts}
<div class="columns wide-left">
<section class="card" aria-labelledby="def-heading">
  <h2 id="def-heading">Definition</h2>
  <div id="def-errors" class="errors" role="alert"{"" if errors else " hidden"}>
    <p>Not saved — the definition is invalid:</p><ul>{server_errors}</ul></div>
  <form method="post" action="{attr(segment_url(segment_id))}" class="stack" novalidate>
    <label for="definition">Definition (JSON)</label>
    <textarea id="definition" name="definition" rows="18" spellcheck="false"
              data-json="object" class="code"
              aria-describedby="definition-error def-help"{invalid}>{esc(text)}</textarea>
    <p id="definition-error" class="field-error" aria-live="polite"></p>
    <div class="preview" data-segment-preview="/console/segments/preview" aria-live="polite">
      <p class="hint" data-preview-status>The number of people who would match now appears
        here as you type.</p>
      <ul class="members" data-preview-sample></ul>
    </div>
    <p id="def-help" class="hint">Keys: <code>name</code>, <code>match</code> (conditions
      <code>all</code>, <code>any</code>, <code>not</code>, <code>event</code>,
      <code>attribute</code>), optional <code>on_enter</code>/<code>on_exit</code>
      <code>send_event</code>. Saving re-evaluates everyone from stored history.</p>
    <div class="actions"><button type="submit" class="primary">Save definition</button></div>
  </form>
  {delete}
</section>
<div>
{feed_section(segment_id)}
<section class="card" aria-labelledby="members-heading">
  <h2 id="members-heading">Members</h2>
  {members_html}
</section>
</div>
</div>""")

    async def segment_page(request: web.Request, viewer: auth.Viewer) -> web.Response:
        segment_id = data.check_segment_id(request.match_info["segment_id"])
        summary = await segment_summary(request, segment_id)
        members_page = await segment_members(request, segment_id) if summary else ([], None)
        definition = data.segment_definition(rt, segment_id)
        doc = definition if definition is not None else {"name": segment_id,
                                                         **NEW_SEGMENT_TEMPLATE}
        notice = ("Saved. Everyone is being re-evaluated with the new definition."
                  if request.query.get("saved") and summary else "")
        body = segment_body(segment_id, text=_pretty(doc), errors=[], summary=summary,
                            members_page=members_page)
        return page(summary["name"] if summary else segment_id, body, viewer,
                    section="segments", notice=notice)

    async def save_segment(request: web.Request, viewer: auth.Viewer) -> web.Response:
        segment_id = data.check_segment_id(request.match_info["segment_id"])
        form = await form_of(request)
        text = str(form.get("definition", ""))
        errors: list[str] = []
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            errors.append(f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}")
        else:
            try:
                await data.save_segment(rt, segment_id, doc)
            except DefinitionError as exc:
                errors.extend(f"{e.location}: {e.reason}" for e in exc.errors)
        if errors:
            summary = await segment_summary(request, segment_id)
            members_page = await segment_members(request, segment_id) if summary else ([], None)
            body = segment_body(segment_id, text=text, errors=errors, summary=summary,
                                members_page=members_page)
            return page(segment_id, body, viewer, section="segments", status=400)
        return redirect(url(segment_url(segment_id), saved="1"))

    async def delete_segment(request: web.Request, viewer: auth.Viewer) -> web.Response:
        segment_id = data.check_segment_id(request.match_info["segment_id"])
        if rt.catalog.latest.get(segment_id) is None:
            raise ApiError(404, f"segment {segment_id!r} not found")
        await data.delete_segment(rt, segment_id)
        return redirect("/console/segments")

    async def segment_feed(request: web.Request, viewer: auth.Viewer) -> web.StreamResponse:
        segment_id = request.query.get("segment") or None
        return await feed.stream(request, feeds, segment_id)

    async def root(request: web.Request) -> web.Response:
        return redirect("/console/")

    return [
        web.get("/console", root),
        web.get("/console/login", login_form),
        web.post("/console/login", login),
        web.post("/console/logout", logout),
        web.static("/console/static", STATIC_DIR),
        web.get("/console/", guarded(index)),
        web.get("/console/events/{name}", guarded(event_page)),
        web.get("/console/activity", guarded(activity_log_page)),
        web.get("/console/search/people", guarded(search_people)),
        web.get("/console/people", guarded(people_lookup)),
        # Not {customer_id}/{anonymous_id}: the API's keyed-read forwarding would take these
        # pages to the owner without the session cookie; forward.py forwards them instead.
        web.get("/console/people/{person}", guarded(person_page)),
        web.get("/console/people/{person}/export", guarded(person_export)),
        web.get("/console/anonymous/{anon}", guarded(anonymous_page)),
        web.post("/console/send", guarded(send)),
        web.post("/console/resend", guarded(resend)),
        web.get("/console/resend", guarded(resend_page)),
        web.get("/console/segments", guarded(segments_page)),
        web.get("/console/segments/feed", guarded(segment_feed)),
        web.get("/console/segments/new", guarded(new_segment)),
        web.post("/console/segments/preview", guarded(preview_segment)),
        web.get("/console/segments/{segment_id}", guarded(segment_page)),
        web.post("/console/segments/{segment_id}", guarded(save_segment)),
        web.post("/console/segments/{segment_id}/delete", guarded(delete_segment)),
    ]


def _pretty(doc: Any) -> str:
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode()


def _with_query(path: str, **params: str) -> str:
    """``path`` (a console path, maybe with a query) with ``params`` set (replacing old ones)."""
    return str(URL(path).update_query(params))
