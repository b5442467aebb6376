"""The console's own URLs, built in one place."""

from __future__ import annotations

from typing import Any

from yarl import URL

from app.console.html import path_segment, url


def person_url(identifier: str, **query: Any) -> str:
    return url(f"/console/people/{path_segment(identifier)}", **query)


def anonymous_url(anonymous_id: str) -> str:
    return f"/console/anonymous/{path_segment(anonymous_id)}"


def event_url(name: str) -> str:
    return f"/console/events/{path_segment(name)}"


def segment_url(segment_id: str) -> str:
    return f"/console/segments/{path_segment(segment_id)}"


def with_query(path: str, **params: str) -> str:
    """``path`` (a console path, maybe with a query) with ``params`` set (replacing old ones)."""
    return str(URL(path).update_query(params))
