"""The console's one route table."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from app.console.pages import (
                               activity_log,
                               anonymous,
                               data_index,
                               event,
                               person,
                               search,
                               segments,
                               send,
                               signin,
)

STATIC_DIR = Path(__file__).with_name("static")

ROUTES = [
    web.get("/console", signin.root),
    web.get("/console/login", signin.login_form),
    web.post("/console/login", signin.login),
    web.post("/console/logout", signin.logout),
    web.static("/console/static", STATIC_DIR),
    web.get("/console/", data_index.index),
    web.get("/console/events/{name}", event.event_page),
    web.get("/console/activity", activity_log.activity_log_page),
    web.get("/console/search/people", search.search_people_json),
    web.get("/console/people", person.people_lookup),
    # Not {customer_id}/{anonymous_id}: the API's keyed-read forwarding would take these pages
    # to the owner without the session cookie; forward.py forwards them instead.
    web.get("/console/people/{person}", person.person_page),
    web.get("/console/people/{person}/export", person.person_export),
    web.get("/console/anonymous/{anon}", anonymous.anonymous_page),
    web.post("/console/send", send.send),
    web.post("/console/resend", send.resend),
    web.get("/console/resend", send.resend_page),
    web.get("/console/segments", segments.segments_page),
    web.get("/console/segments/feed", segments.segment_feed),
    web.get("/console/segments/new", segments.new_segment),
    web.post("/console/segments/preview", segments.preview_segment),
    web.get("/console/segments/{segment_id}", segments.segment_page),
    web.post("/console/segments/{segment_id}", segments.save_segment),
    web.post("/console/segments/{segment_id}/delete", segments.delete_segment),
]
