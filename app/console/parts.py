"""Pieces several console pages share: the send-event form, person pickers, resend actions,
activity tabs and tables, the live segment feed."""

from __future__ import annotations

import re
from typing import Any, Callable

from aiohttp import web
from markupsafe import Markup

from app.console.html import code_id, json_block, link, url, when
from app.console.templating import render
from app.console.urls import event_url
from app.model import EVENT_TYPES

_ULID_RE = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")
ACTIVITY_KINDS = (("identified", "Identified"), ("anonymous", "Anonymous"))


def sent_notice(request: web.Request) -> str:
    sent = request.query.get("sent", "")
    if _ULID_RE.fullmatch(sent):
        return (f"Event {sent} accepted. It appears in the activity below once processed "
                "(reload in a moment).")
    return ""


def send_form(*, customer_id: str = "", name: str = "", data_text: str = "{}",
              event_type: str = "event", return_to: str = "/console/",
              errors: list[str] | None = None, names: list[str] | None = None,
              heading: str = "Send an event") -> Markup:
    """The send-event form. JSON ``data`` is checked by console.js before sending, and again by
    the server with the track API's validation."""
    errors = errors or []
    return render("parts/send_form", heading=heading, errors=errors, return_to=return_to,
                  customer_input=person_search_input("send-customer", "customer_id",
                                                     customer_id, required=True),
                  name=name, names=(names or [])[:200], types=EVENT_TYPES,
                  event_type=event_type, data_text=data_text,
                  data_invalid=any(e.startswith("data") for e in errors))


def person_search_input(input_id: str, name: str, value: str, *, required: bool = False,
                        placeholder: str = "id or email, or the start of one") -> Markup:
    """A person field that suggests people as you type (id, email or a prefix of either:
    ``GET /api/v1/search/customers``, through ``/console/search/people``); what is typed is sent
    as is, so it works without JavaScript too."""
    return render("parts/person_search", input_id=input_id, name=name, value=value,
                  is_required=required, placeholder=placeholder)


def activity_tabs(href: Callable[[str], str], current: str) -> Markup:
    """The Identified and Anonymous tabs (``<li>`` items), ``current`` marked."""
    return render("parts/tabs", tabs=[{"href": href(key), "label": label,
                                       "current": key == current}
                                      for key, label in ACTIVITY_KINDS])


def type_choices(selected: str) -> Markup:
    """``<option>`` items of an event type filter (any, or one of the types)."""
    return render("parts/type_choices", types=EVENT_TYPES, selected=selected)


def resend_to_link(kind: str, who: str, event_id: str, return_to: str) -> Markup:
    return link(url("/console/resend", kind=kind, who=who, event_id=event_id,
                    return_to=return_to), "to…",
                aria_label=f"Resend {event_id} to a person you pick")


def resend_button(kind: str, who: str, event_id: str, return_to: str) -> Markup:
    return render("parts/resend_button", kind=kind, who=who, event_id=event_id,
                  return_to=return_to)


def activity_rows(events: list[dict[str, Any]], *, kind: str, who: str, return_to: str,
                  anonymous_column: str | None = None) -> list[list[Any]]:
    """Table rows of stored activity, each with its Resend action."""
    rows = []
    for a in events:
        row: list[Any] = [link(event_url(a["name"]), a["name"]), a["type"]]
        if anonymous_column is not None:
            row.append(a.get(anonymous_column, ""))
        row += [when(a["timestamp"]),
                when(a.get("processed_at"), empty="not yet (anonymous)"),
                json_block(a.get("data") or {}), code_id(a["id"]),
                resend_button(kind, a.get("_who", who), a["id"], return_to)]
        rows.append(row)
    return rows


def feed_section(segment_id: str | None) -> Markup:
    return render("parts/feed", feed_url=url("/console/segments/feed", segment=segment_id),
                  what="this segment" if segment_id else "every segment")
