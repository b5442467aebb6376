"""The worker's HTTP server: an aiohttp app run as the faust app's web-server service."""

from __future__ import annotations

import logging
import ssl

import mode
from aiohttp import web

from app.api import export, imports, openapi, read, segments, track, v2
from app.api import render as render_api
from app.api.auth import require_app
from app.console import install as install_console
from app.metrics import peak_rss_bytes, render
from app.api.responses import ApiError, error_response, json_response
from app.runtime import Runtime

log = logging.getLogger(__name__)


@web.middleware
async def error_shape(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """Every error leaves in the API's error shape, 5xx included."""
    try:
        return await handler(request)
    except ApiError as exc:
        headers = {"WWW-Authenticate": 'Basic realm="eventide"'} if exc.status == 401 else None
        return error_response(exc.status, *exc.messages, headers=headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, f"{request.method} {request.path}: {exc.reason}",
                              headers={k: v for k, v in exc.headers.items()
                                       if k in ("Allow",)})
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(500, "internal error; the request was not accepted")


def build_web_app(rt: Runtime) -> web.Application:
    application = web.Application(client_max_size=rt.settings.max_body_bytes,
                                  middlewares=[error_shape])

    async def healthz(request: web.Request) -> web.Response:
        if ready(rt):
            return json_response({"status": "ok"})
        return error_response(503, "not ready: joining the consumer group or recovering state")

    async def metrics(request: web.Request) -> web.Response:
        require_app(request, rt.settings)
        gauges = {"peak_rss_bytes": float(peak_rss_bytes()),
                  "rocksdb_size_bytes": float(rt.state.approximate_size_bytes()),
                  "ready": float(ready(rt))}
        return web.Response(text=render(rt.counters, rt.latency, gauges),
                            content_type="text/plain")

    openapi_document = openapi.document(rt)

    async def openapi_json(request: web.Request) -> web.Response:
        return json_response(openapi_document)

    application.router.add_get("/healthz", healthz)
    application.router.add_get("/openapi.json", openapi_json)
    application.router.add_get("/metrics", metrics)
    application.router.add_routes(track.routes(rt))
    application.router.add_routes(v2.routes(rt))
    application.router.add_routes(read.routes(rt))
    application.router.add_routes(segments.routes(rt))
    application.router.add_routes(imports.routes(rt))
    application.router.add_routes(render_api.routes(rt))
    application.router.add_routes(export.routes(rt))
    install_console(application, rt)
    return application


def ready(rt: Runtime) -> bool:
    return rt.started.is_set() and rt.joined and rt.state.all_recovered(rt.assigned)


class WebServer(mode.Service):
    """Serves the API on ``EVENTIDE_HTTP_HOST:EVENTIDE_HTTP_PORT``; drains on stop."""

    def __init__(self, rt: Runtime, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.rt = rt
        self._runner: web.AppRunner | None = None

    @property
    def web_url(self) -> str:
        return self.rt.settings.http_url

    async def on_start(self) -> None:
        self._runner = web.AppRunner(build_web_app(self.rt), access_log=None,
                                     handle_signals=False)
        await self._runner.setup()
        settings = self.rt.settings
        ssl_context = None
        if settings.tls_cert:
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.load_cert_chain(settings.tls_cert, settings.tls_key)
        site = web.TCPSite(self._runner, settings.http_host, settings.http_port,
                           shutdown_timeout=10.0, ssl_context=ssl_context)
        await site.start()
        log.info("HTTP API listening on %s", self.rt.settings.http_url)

    async def on_stop(self) -> None:
        # Stop accepting, let in-flight requests finish, then flush what they queued.
        if self._runner is not None:
            await self._runner.cleanup()
        await self.rt.batcher.drain()
