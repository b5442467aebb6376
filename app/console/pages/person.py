"""One person (``/console/people/{person}``): profile, segments, attributes, identified and
still-anonymous activity (filtered, paged, resendable), attribute changes, and the export.

A person's tables live on the worker owning the person's partition: these pages are forwarded
there (:mod:`app.console.forward`) and read its tables directly."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from app.api import export
from app.api.context import runtime
from app.api.responses import ApiError
from app.console import auth, data, forward
from app.console.guard import guarded
from app.console.html import json_block, link, path_segment, table, when
from app.console.parts import activity_rows, activity_tabs, send_form, sent_notice, type_choices
from app.console.respond import page, redirect
from app.console.urls import anonymous_url, person_url, segment_url
from app.core.profiles import identifiers
from app.model import EVENT_TYPES
from app.queries import people
from app.queries.people import exportable_person
from app.queries.segments import customer_segments
from app.runtime import Runtime


def activity_filters(request: web.Request) -> dict[str, str]:
    tab = request.query.get("tab", "identified")
    type_filter = request.query.get("type", "")
    return {"tab": tab if tab in ("identified", "anonymous") else "identified",
            "name": request.query.get("name", "").strip(),
            "type": type_filter if type_filter in EVENT_TYPES else "",
            "anonymous_id": request.query.get("anonymous_id", "").strip()}


def profile_context(rt: Runtime, identifier: str, person: str,
                    profile: dict[str, Any] | None) -> dict[str, Any]:
    """The Profile, Attributes and Attribute changes sections."""
    segments = table("Segments", ["Segment", "Member since"],
                     [[link(segment_url(s["id"]), s["id"]), when(s["since"])]
                      for s in customer_segments(rt, person)],
                     empty="Not in any segment.", caption_hidden=True)
    if profile is None:
        return {"has_profile": False, "segments_table": segments, "attributes_table": ""}
    changes = list(reversed(profile.get("changes", [])))[:50]
    return {
        "has_profile": True, "segments_table": segments,
        "ids": [{"kind": k, "value": v} for k, v in identifiers(profile).items()],
        "anonymous_links": [{"id": a, "href": person_url(identifier, tab="anonymous",
                                                         anonymous_id=a)}
                            for a in profile["anonymous_ids"]],
        "created": when(profile.get("created_at")), "updated": when(profile.get("updated_at")),
        "attributes_table": table("Attributes", ["Attribute", "Value"],
                                  [[k, json_block(v)]
                                   for k, v in sorted(profile["attributes"].items())],
                                  empty="No attributes.", caption_hidden=True),
        "changes_table": table(f"Attribute changes (newest {len(changes)})",
                               ["Attribute", "When", "Old", "New", "Source"],
                               [[c.get("name"), when(c.get("at")), json_block(c.get("old")),
                                 json_block(c.get("new")), c.get("source", "")]
                                for c in changes],
                               empty="No attribute changes recorded.", caption_hidden=True)}


def identified_activity(rt: Runtime, request: web.Request, identifier: str,
                        events: list[dict[str, Any]], f: dict[str, str], here: str
                        ) -> dict[str, Any]:
    found, next_cursor = data.activity_page(
        events, now_s=rt.clock.now(), name=f["name"], type_=f["type"],
        cursor=request.query.get("cursor") or None)
    rows = activity_rows(found, kind="person", who=identifier, return_to=here)
    days = data.WINDOW_DAYS
    matching = " matching the filter." if f["name"] or f["type"] else "."
    return {"activity_table": table(
                f"Identified activity, last {days} days, newest first",
                ["Name", "Type", "Timestamp", "Processed at", "Data", "Event id", "Action"],
                rows, empty=f"No identified activity in the last {days} days{matching}"),
            "more_url": person_url(identifier, tab=f["tab"], name=f["name"], type=f["type"],
                                   cursor=next_cursor) if next_cursor else ""}


def anonymous_activity(rt: Runtime, profile: dict[str, Any] | None, f: dict[str, str],
                       here: str) -> dict[str, Any]:
    """Still-anonymous activity of the person's anonymous ids (and of one looked up)."""
    known = list(profile["anonymous_ids"]) if profile else []
    lookup = f["anonymous_id"]
    anon_ids = known + ([lookup] if lookup and lookup not in known else [])
    merged = [{**a, "anonymous_id": anonymous_id, "_who": anonymous_id}
              for anonymous_id in anon_ids
              for a in people.anonymous_events(rt, anonymous_id) or []]
    merged.sort(key=lambda a: (a["timestamp"], a["id"]))
    found, _ = data.activity_page(merged, now_s=rt.clock.now(), name=f["name"],
                                  type_=f["type"], cursor=None, limit=200)
    rows = activity_rows(found, kind="anonymous", who="", return_to=here,
                         anonymous_column="anonymous_id")
    return {"looked": f" and {lookup}" if lookup and profile and lookup not in known else "",
            "more_url": "",
            "activity_table": table(
                f"Anonymous activity, last {data.WINDOW_DAYS} days, newest first",
                ["Name", "Type", "Anonymous id", "Timestamp", "Processed at", "Data",
                 "Event id", "Action"], rows, empty="No activity that is still anonymous.")}


@guarded
@forward.at_owner("person", anonymous=False)
async def person_page(request: web.Request, viewer: auth.Viewer) -> web.StreamResponse:
    rt = runtime(request)
    identifier = request.match_info["person"]
    view = people.person_view(rt, identifier)
    if view is None:
        raise ApiError(404, f"No person {identifier!r} on this worker (no profile and no "
                            "activity). Check the id, or look it up as an anonymous id.")
    person, profile, events = view
    f = activity_filters(request)
    here = person_url(identifier, tab=f["tab"], name=f["name"], type=f["type"],
                      anonymous_id=f["anonymous_id"])
    identified = f["tab"] == "identified"
    activity = identified_activity(rt, request, identifier, events or [], f, here) \
        if identified else anonymous_activity(rt, profile, f, here)
    email = (profile or {}).get("attributes", {}).get("email")
    return page(
        "person", identifier, by_cookie=viewer.by_cookie, notice=sent_notice(request),
        lookup_value=identifier, identifier=identifier, has_email=isinstance(email, str),
        email=email, export_url=f"/console/people/{path_segment(identifier)}/export",
        person_url=person_url(identifier), tab=f["tab"], identified=identified,
        tabs=activity_tabs(lambda key: person_url(identifier, tab=key), f["tab"]),
        name_filter=f["name"], type_options=type_choices(f["type"]),
        lookup_anon=f["anonymous_id"], filtered=bool(f["name"] or f["type"]),
        clear_url=person_url(identifier, tab=f["tab"]),
        send_form=send_form(customer_id=identifier, return_to=here,
                            heading="Send an event to this person"),
        **profile_context(rt, identifier, person, profile), **activity)


@guarded
async def people_lookup(request: web.Request, viewer: auth.Viewer) -> web.Response:
    anonymous_id = request.query.get("anonymous_id", "").strip()
    if anonymous_id:
        return redirect(anonymous_url(anonymous_id))
    identifier = request.query.get("id", "").strip()
    if not identifier:
        return redirect("/console/")
    return redirect(person_url(identifier))


@guarded
@forward.at_owner("person", anonymous=False)
async def person_export(request: web.Request, viewer: auth.Viewer) -> web.StreamResponse:
    """``GET /api/v1/customers/{id}/export``'s answer, built by the export module."""
    fmt = request.query.get("format") or "jsonl"
    if fmt not in export.FORMATS:
        raise ApiError(400, "format: must be jsonl or csv")
    person, profile, history = exportable_person(runtime(request), request.match_info["person"])
    chunks = export.export_chunks(fmt, person, profile, history)
    return web.Response(body=b"".join(chunks), headers={
        "Content-Type": export.FORMATS[fmt] + "; charset=utf-8",
        "Content-Disposition": f'attachment; filename="{export.attachment_name(person, fmt)}"',
        "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"})
