"""Console requests about one person, served by the worker that owns the person's partition.

With several workers, a person's tables live on the worker that owns its partition. The API's
keyed reads are forwarded there by ``app.api.server``'s middleware; console pages are forwarded
here instead, because they authenticate with a session cookie that the API's forwarding does not
carry, and because a console action answers with a redirect that must reach the browser as is.
The forwarded request is signed with the cluster secret (``app.api.peers``; the viewer was checked
here first) and carries no credentials of the viewer's, so the owner serves it locally.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Awaitable, Callable

import aiohttp
from aiohttp import web

from app.api import cluster, peers
from app.api.context import RT
from app.api.responses import ApiError
from app.console.auth import Viewer
from app.runtime import Runtime

log = logging.getLogger(__name__)

Handler = Callable[[web.Request, Viewer], Awaitable[web.StreamResponse]]

_PASSED_REQUEST = ("Content-Type", "Accept")
_PASSED_RESPONSE = ("Content-Type", "Location", "Content-Disposition", "Cache-Control",
                    "Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy",
                    "X-Frame-Options", "WWW-Authenticate")


def owner(rt: Runtime, request: web.Request, *, anonymous: bool, key: str) -> str | None:
    """The URL of the worker to ask about ``key``, or None to answer here."""
    if cluster.is_forwarded(request):
        return None
    topic = rt.topics.raw_anonymous if anonymous else rt.topics.person_events
    return cluster.owner_of(rt, topic.name, topic.partitions, key)


async def forward(rt: Runtime, request: web.Request, url: str) -> web.Response:
    # read() returns the cached body when a handler has parsed the form already.
    body = await request.read() if request.method not in ("GET", "HEAD") else b""
    headers = {k: v for k, v in request.headers.items() if k in _PASSED_REQUEST}
    headers.update(peers.sign(rt.settings, request.method, request.path_qs, body))
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            async with session.request(request.method, url + request.path_qs, headers=headers,
                                       data=body or None, allow_redirects=False,
                                       ssl=cluster.peer_ssl(rt, url)) as response:
                payload = await response.read()
                passed = {k: v for k, v in response.headers.items() if k in _PASSED_RESPONSE}
                return web.Response(body=payload, status=response.status, headers=passed)
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        log.warning("forwarding %s %s to %s failed: %r", request.method, request.path, url, exc)
        raise ApiError(503, "the worker that holds this person did not answer; the group may be "
                            "rebalancing, retry") from None


async def from_owner(request: web.Request, *, anonymous: bool, key: str) -> web.Response | None:
    """The answer of the worker holding ``key`` (a person, or an anonymous id), or None when
    this worker holds it and should answer."""
    rt = request.app[RT]
    url = owner(rt, request, anonymous=anonymous, key=key)
    return None if url is None else await forward(rt, request, url)


def at_owner(path_part: str, *, anonymous: bool) -> Callable[[Handler], Handler]:
    """A page about the person (or anonymous id) in the path part ``path_part``, answered by the
    worker holding it (put under :func:`app.console.guard.guarded`: the viewer is checked
    here first)."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def handle(request: web.Request, viewer: Viewer) -> web.StreamResponse:
            answered = await from_owner(request, anonymous=anonymous,
                                        key=request.match_info[path_part])
            return answered if answered is not None else await handler(request, viewer)

        return handle

    return wrap
