"""How console pages answer: HTML with the console's security headers, the layout around a
page's own template, and redirects."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from markupsafe import Markup

from app.console.templating import render

SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                "script-src 'self'; connect-src 'self'; form-action 'self'; "
                                "frame-ancestors 'none'; base-uri 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}
NAV = ({"href": "/console/", "text": "Data index", "key": "index"},
       {"href": "/console/activity", "text": "Activity log", "key": "activity"},
       {"href": "/console/segments", "text": "Segments", "key": "segments"})
ERROR_TITLES = {400: "Bad request", 401: "Not signed in", 403: "Forbidden", 404: "Not found",
                503: "Unavailable"}


def html_response(body: str, status: int = 200) -> web.Response:
    return web.Response(text=body, status=status, content_type="text/html",
                        headers=SECURITY_HEADERS)


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, "Cache-Control": "no-store"})


def layout(title: str, body: Markup, *, section: str = "", signed_in_by_cookie: bool = False,
           notice: str = "", lookup_value: str = "") -> Markup:
    return render("layout", title=title, body=body, section=section, nav=NAV,
                  signed_in_by_cookie=signed_in_by_cookie, notice=notice,
                  has_notice=bool(notice), lookup_value=lookup_value)


def page(template: str, title: str, /, *, by_cookie: bool, section: str = "", notice: str = "",
         status: int = 200, lookup_value: str = "", **context: Any) -> web.Response:
    """``templates/pages/<template>.liquid`` rendered with ``context``, in the layout."""
    body = render(f"pages/{template}", **context)
    return html_response(layout(title, body, section=section, notice=notice,
                                signed_in_by_cookie=by_cookie, lookup_value=lookup_value),
                         status)


def error_page(status: int, message: str, *, by_cookie: bool = False) -> web.Response:
    title = ERROR_TITLES.get(status, "Error")
    return page("error", title, by_cookie=by_cookie, status=status, title=title,
                message=message)


def login_page(*, next_path: str, error: str = "", status: int = 200) -> web.Response:
    return html_response(render("login", next_path=next_path, error=error,
                                has_error=bool(error)), status)
