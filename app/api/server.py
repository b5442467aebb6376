"""The worker's HTTP server: an aiohttp app run as the faust app's web-server service."""

from __future__ import annotations

import logging
import socket
import ssl
from typing import Any

import mode
from aiohttp import web

from app.api import cluster, consistency, limits, peers
from app.api import activity_log, export, imports, openapi, people_search, read, segments, track
from app.api import segment_preview, v2
from app.api import render as render_api
from app.api.auth import BASIC_CHALLENGE, require_app
from app.api.context import RT, runtime
from app.console import install as install_console
from app.consumer_lag import LagProbe
from app.listen import listener_for
from app.metrics import PROMETHEUS_CONTENT_TYPE, Exposition, loop_gauge, peak_rss_bytes
from app.api.responses import ApiError, error_response, json_response
from app.runtime import Runtime

log = logging.getLogger(__name__)


@web.middleware
async def error_shape(request: web.Request, handler):  # type: ignore[no-untyped-def]
    """Every error leaves in the API's error shape, 5xx included."""
    try:
        return await handler(request)
    except ApiError as exc:
        headers = ({"WWW-Authenticate": exc.challenge or BASIC_CHALLENGE}
                   if exc.status == 401 else None)
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


def keyed_reads_go_to_their_owner(rt: Runtime):  # type: ignore[no-untyped-def]
    """A GET about one person (or anonymous id) is answered by the worker owning its partition."""
    topics = rt.topics

    @web.middleware
    async def middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
        if request.method == "GET" and request.path.startswith("/api/") and \
                not cluster.is_forwarded(request):
            info = request.match_info
            owner = None
            if "customer_id" in info:
                owner = cluster.owner_of(rt, topics.person_events.name,
                                         topics.person_events.partitions, info["customer_id"])
            elif "anonymous_id" in info:
                owner = cluster.owner_of(rt, topics.raw_anonymous.name,
                                         topics.raw_anonymous.partitions, info["anonymous_id"])
            if owner is not None:
                require_app(request, rt.settings)  # never forward an unauthenticated request
                return await cluster.forward(rt, request, owner)
        return await handler(request)

    return middleware


#: Where the reads of state are: the API, and the console's pages (its segment feed shows the
#: changes a viewer then opens a person's page for).
_READS = ("/api/", "/console/")


def reads_see_the_state_behind_published_records(rt: Runtime):  # type: ignore[no-untyped-def]
    """A read answered here waits until every unit whose output records may already be out has
    its state written: a unit sends its outputs before its state (the commit order, and its
    publish runs ahead of its commit), so a consumer who saw a segment change and then read the
    person at once could otherwise see the state from before it. The wait is at most the commit
    under way and the one published ahead of it, nothing when no unit is in flight; bounded like
    read-your-writes."""

    @web.middleware
    async def middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
        if request.method == "GET" and request.path.startswith(_READS):
            budget = consistency.timeout_s()
            if not await rt.state.written(budget):
                rt.counters["read_your_writes:timeout"] += 1
                raise ApiError(503, f"this worker has not written the state behind the records "
                                    f"it published within {budget:g} s; retry")
        return await handler(request)

    return middleware


#: What ``/metrics`` reports (built once per app, read when scraped) and the consumer-lag probe.
EXPOSITION = web.AppKey("exposition", Exposition)
LAG_PROBE: web.AppKey[LagProbe | None] = web.AppKey("lag_probe")
OPENAPI: web.AppKey[dict[str, Any]] = web.AppKey("openapi")


async def healthz(request: web.Request) -> web.Response:
    """``/healthz`` and ``/readyz`` (same answer): 200 once the worker joined its group and
    recovered the state of every assigned partition, 503 before (and during a rebalance's
    recovery)."""
    if ready(runtime(request)):
        return json_response({"status": "ok"})
    return error_response(503, "not ready: joining the consumer group or recovering state")


async def metrics(request: web.Request) -> web.Response:
    require_app(request, runtime(request).settings)
    labelled = loop_gauge()
    lag_probe = request.app[LAG_PROBE]
    if lag_probe is not None:
        labelled["consumer_lag"] = [({"topic": topic, "partition": partition}, lag)
                                    for topic, partition, lag in await lag_probe()]
    return web.Response(text=request.app[EXPOSITION].render(labelled),
                        headers={"Content-Type": PROMETHEUS_CONTENT_TYPE})


async def openapi_json(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI])


#: The API's one route table (the console adds its own, app.console.routes).
ROUTES = [
    web.get("/healthz", healthz),
    web.get("/readyz", healthz),
    web.get("/openapi.json", openapi_json),
    web.get("/metrics", metrics),
    *track.ROUTES, *v2.ROUTES, *read.ROUTES, *activity_log.ROUTES, *segment_preview.ROUTES,
    *segments.ROUTES, *people_search.ROUTES, *imports.ROUTES, *render_api.ROUTES,
    *export.ROUTES, *consistency.ROUTES,
]


def exposition_of(rt: Runtime) -> Exposition:
    """Reads rt.counters and rt.latency when scraped; the hot path only increments them."""

    def gauges() -> dict[str, float]:
        return {"peak_rss_bytes": float(peak_rss_bytes()),
                "rocksdb_size_bytes": float(rt.state.approximate_size_bytes()),
                "ready": float(ready(rt)),
                "changelog_fences": float(rt.state.fences),
                "changelog_void_records": float(rt.state.void_records),
                "changelog_recovered_records": float(rt.state.recovered_records),
                "changelog_standby_records": float(rt.state.standby_records),
                "event_loop_lag_seconds": rt.loop_lag_s,
                "event_loop_lag_max_seconds": rt.loop_lag_max_s,
                "state_cache_bytes": float(rt.state.cache.size_bytes),
                "state_cache_hits": float(rt.state.cache.hits),
                "state_cache_misses": float(rt.state.cache.misses),
                "heap_trims": float(rt.heap.trims),
                "heap_trim_seconds": rt.heap.trim_seconds}

    return Exposition(rt.counters, {"processing_latency_seconds": rt.latency, **rt.stages},
                      gauges=gauges)


def build_web_app(rt: Runtime, *, lag_probe: LagProbe | None = None) -> web.Application:
    failures = limits.FailureLimiter(max_failures=rt.settings.auth_failures_per_minute)
    application = web.Application(client_max_size=rt.settings.max_body_bytes,
                                  middlewares=[limits.limit_failed_authentication(failures),
                                               error_shape, peers.verified_peers(rt.settings),
                                               keyed_reads_go_to_their_owner(rt),
                                               reads_see_the_state_behind_published_records(rt)])
    application[RT] = rt
    application[EXPOSITION] = exposition_of(rt)
    application[LAG_PROBE] = lag_probe
    application[OPENAPI] = openapi.document(rt)
    application.router.add_routes(ROUTES)
    install_console(application, rt)
    return application


def ready(rt: Runtime) -> bool:
    return rt.started.is_set() and rt.joined and rt.state.all_recovered(rt.assigned)


class WebServer(mode.Service):
    """Serves the API on ``EVENTIDE_HTTP_HOST:EVENTIDE_HTTP_PORT``; drains on stop.

    ``listener``: that port, bound before the worker joined its group (:mod:`app.listen`);
    without it, the port is bound here, when the worker has its first partitions."""

    def __init__(self, rt: Runtime, *, lag_probe: LagProbe | None = None,
                 listener: socket.socket | None = None,
                 **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self.rt = rt
        self.lag_probe = lag_probe
        self.listener = listener
        self._runner: web.AppRunner | None = None

    @property
    def web_url(self) -> str:
        return self.rt.settings.http_url

    async def on_start(self) -> None:
        self._runner = web.AppRunner(build_web_app(self.rt, lag_probe=self.lag_probe),
                                     access_log=None,
                                     handle_signals=False)
        await self._runner.setup()
        settings = self.rt.settings
        ssl_context = None
        if settings.tls_cert:
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.load_cert_chain(settings.tls_cert, settings.tls_key)
        listener = self.listener or listener_for(settings)[0]
        site = web.SockSite(self._runner, listener, shutdown_timeout=10.0,
                            ssl_context=ssl_context)
        await site.start()
        log.info("HTTP API listening on %s", self.rt.settings.http_url)

    async def on_stop(self) -> None:
        # Stop accepting, let in-flight requests finish, then flush what they queued.
        if self._runner is not None:
            await self._runner.cleanup()
        await self.rt.batcher.drain()
