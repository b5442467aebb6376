"""Segments: the list (``/console/segments``), one segment's editor with its members and live
changes, saving and deleting a definition, the editor's live preview and the change feed.

Summaries and members come from :mod:`app.queries.segments` (cluster-wide, as the API answers
them); definitions are validated and published like ``PUT /api/v1/segments/{id}``."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from markupsafe import Markup

from app.api import segment_preview
from app.api.context import runtime
from app.api.responses import ApiError, json_response
from app.api.segments import check_segment_id
from app.console import auth, data, feed
from app.console.guard import form_of, guarded
from app.console.html import esc, link, table, url, when
from app.console.parts import feed_section
from app.console.respond import page, redirect
from app.console.urls import person_url, segment_url
from app.queries import segments as queries
from app.segments.definition import DefinitionError

NEW_SEGMENT_TEMPLATE = {"match": {"all": [{"event": "purchased", "within": "30d"}]}}
#: Members listed on a segment's page (the rest are in the API's membership listing).
MEMBERS_SHOWN = 100


def _pretty(doc: Any) -> str:
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode()


@guarded
async def segments_page(request: web.Request, viewer: auth.Viewer) -> web.Response:
    found = await queries.segment_list(runtime(request), request)
    rows = [[link(segment_url(s["id"]), s["id"]), s["name"],
             Markup(f'<span data-members-for="{esc(s["id"])}">{s["members"]:,}</span>'),
             Markup(f'<span class="state state-{esc(s["state"])}">{esc(s["state"])}</span>'),
             when(s["updated_at"])] for s in found]
    segments_table = table(f"Segments ({len(found)})",
                           ["Segment", "Name", "Members", "State", "Updated"], rows,
                           empty="No segments yet: create one below.", numeric=(2,))
    return page("segments", "Segments", by_cookie=viewer.by_cookie, section="segments",
                segments_table=segments_table, feed=feed_section(None))


@guarded
async def new_segment(request: web.Request, viewer: auth.Viewer) -> web.Response:
    segment_id = request.query.get("id", "").strip()
    check_segment_id(segment_id)
    return redirect(segment_url(segment_id))


async def segment_editor(request: web.Request, viewer: auth.Viewer, segment_id: str, *,
                         text: str, errors: list[str], notice: str = "",
                         status: int = 200) -> web.Response:
    """A segment's page: its definition in the editor (with ``errors`` from a failed save),
    facts and members once saved."""
    rt = runtime(request)
    summary = await queries.segment_summary(rt, request, segment_id)
    members: dict[str, Any] = {"people": [], "next": None}
    if summary is not None:
        members = await queries.segment_members(rt, request, segment_id, limit=MEMBERS_SHOWN,
                                                cursor=None)
    title = summary["name"] if summary and not errors else segment_id
    return page(
        "segment", title, by_cookie=viewer.by_cookie, section="segments", notice=notice,
        status=status, segment_id=segment_id, saved=summary is not None, summary=summary,
        heading=summary["name"] if summary else segment_id,
        members_count=f"{summary['members']:,}" if summary else "",
        updated=when(summary["updated_at"]) if summary else "",
        errors=errors, invalid=bool(errors), text=text, segment_url=segment_url(segment_id),
        members=[{"id": p, "href": person_url(p)} for p in members["people"]],
        more=bool(members["next"]), feed=feed_section(segment_id))


@guarded
async def segment_page(request: web.Request, viewer: auth.Viewer) -> web.Response:
    rt = runtime(request)
    segment_id = check_segment_id(request.match_info["segment_id"])
    definition = data.segment_definition(rt, segment_id)
    doc = definition if definition is not None else {"name": segment_id, **NEW_SEGMENT_TEMPLATE}
    notice = ("Saved. Everyone is being re-evaluated with the new definition."
              if request.query.get("saved") and definition is not None else "")
    return await segment_editor(request, viewer, segment_id, text=_pretty(doc), errors=[],
                                notice=notice)


@guarded
async def save_segment(request: web.Request, viewer: auth.Viewer) -> web.Response:
    segment_id = check_segment_id(request.match_info["segment_id"])
    form = await form_of(request)
    text = str(form.get("definition", ""))
    errors: list[str] = []
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        errors.append(f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}")
    else:
        try:
            await data.save_segment(runtime(request), segment_id, doc)
        except DefinitionError as exc:
            errors.extend(f"{e.location}: {e.reason}" for e in exc.errors)
    if errors:
        return await segment_editor(request, viewer, segment_id, text=text, errors=errors,
                                    status=400)
    return redirect(url(segment_url(segment_id), saved="1"))


@guarded
async def delete_segment(request: web.Request, viewer: auth.Viewer) -> web.Response:
    rt = runtime(request)
    segment_id = check_segment_id(request.match_info["segment_id"])
    if rt.catalog.latest.get(segment_id) is None:
        raise ApiError(404, f"segment {segment_id!r} not found")
    await data.delete_segment(rt, segment_id)
    return redirect("/console/segments")


@guarded
async def preview_segment(request: web.Request, viewer: auth.Viewer) -> web.Response:
    """The segment editor's live preview (JSON): count and sample, or the mistakes."""
    try:
        doc = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        return json_response({"errors": [f"not valid JSON: {exc.msg}"]}, status=400)
    try:
        return json_response(await segment_preview.preview(runtime(request), request, doc))
    except ApiError as exc:
        return json_response({"errors": list(exc.messages)}, status=exc.status)


@guarded
async def segment_feed(request: web.Request, viewer: auth.Viewer) -> web.StreamResponse:
    segment_id = request.query.get("segment") or None
    return await feed.stream(request, request.app[feed.FEEDS], segment_id)
