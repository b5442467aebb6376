"""The console (``/console/``) and the browser snippet's endpoints, installed on the API's app.

:func:`install` is the one call ``app.api.server`` makes: it adds the console's pages
(:data:`app.console.routes.ROUTES`), the browser track endpoints
(``/api/v1/browser/{site_id}/...``) and ``/js/track.js``.
"""

from __future__ import annotations

from aiohttp import web

from app.runtime import Runtime


def install(application: web.Application, rt: Runtime) -> None:
    from app.api import browser
    from app.console import feed
    from app.console.routes import ROUTES

    feeds = application[feed.FEEDS] = feed.Feeds(rt)

    async def stop_feeds(_: web.Application) -> None:
        feeds.stopping.set()  # live feeds end within a second instead of holding the shutdown

    application.on_shutdown.append(stop_feeds)
    application.router.add_routes(browser.ROUTES)
    application.router.add_routes(ROUTES)
