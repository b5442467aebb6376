"""The runtime a handler serves, kept on the aiohttp application (so handlers are plain
module-level functions that can be imported and tested alone)."""

from __future__ import annotations

from aiohttp import web

from app.runtime import Runtime

#: ``application[RT]``: set once by :func:`app.api.server.build_web_app`.
RT = web.AppKey("rt", Runtime)


def runtime(request: web.Request) -> Runtime:
    return request.app[RT]
