"""The door of every console page and action: a signed-in viewer (bearer app key or session
cookie), no cross-site POSTs, and errors shown as console pages instead of the API's JSON."""

from __future__ import annotations

import asyncio
import functools
from typing import Any, Awaitable, Callable

from aiohttp import web

from app.api.context import runtime
from app.api.responses import ApiError
from app.console import auth
from app.console.forward import Handler
from app.console.html import url
from app.console.respond import error_page, redirect
from app.runtime import Runtime

#: How long a worker that has not read every sign-out yet holds a cookie request before a 503.
SIGN_OUTS_WAIT_S = 10.0

async def sign_outs_known(rt: Runtime, request: web.Request) -> bool:
    """Whether this worker has read every sign-out so far: until then it cannot tell a session
    cookie from a signed-out one (a worker that just started), so it waits a little."""
    if auth.COOKIE not in request.cookies or rt.revoked.caught_up.is_set():
        return True
    try:
        await asyncio.wait_for(rt.revoked.caught_up.wait(), SIGN_OUTS_WAIT_S)
        return True
    except asyncio.TimeoutError:
        return False


def _not_signed_in(request: web.Request) -> web.Response:
    wants_page = (request.method == "GET" and "Authorization" not in request.headers
                  and "text/event-stream" not in request.headers.get("Accept", ""))
    if wants_page:
        return redirect(url("/console/login", next=request.path_qs))
    response = error_page(401, "Sign in with the app key (bearer token or the sign-in form).")
    response.headers["WWW-Authenticate"] = 'Bearer realm="eventide console"'
    return response


def guarded(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """``handler(request, viewer)`` as a route handler that only signed-in viewers reach."""

    @functools.wraps(handler)
    async def handle(request: web.Request) -> web.StreamResponse:
        rt = runtime(request)
        if not await sign_outs_known(rt, request):
            response = error_page(
                503, "This worker is starting (reading sign-outs); retry in a moment.")
            response.headers["Retry-After"] = "2"
            return response
        viewer = auth.viewer_of(request, rt.settings, rt.clock.now(), rt.revoked)
        if viewer is None:
            return _not_signed_in(request)
        if request.method == "POST" and viewer.by_cookie and auth.cross_site(request):
            return error_page(403, "Cross-site requests are refused.")
        try:
            return await handler(request, viewer)
        except ApiError as exc:
            return error_page(exc.status, "; ".join(exc.messages), by_cookie=viewer.by_cookie)

    return handle


async def form_of(request: web.Request) -> Any:
    try:
        return await request.post()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, f"body: larger than the limit of "
                            f"{runtime(request).settings.max_body_bytes} bytes") from None
