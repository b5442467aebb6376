"""``eventide api``: the HTTP ingest tier. Validates, produces, answers; nothing else.

A stateless process serving the track API (v1 events, identify, delete, merge; v2 entity and
batch) from the same handlers as a worker (:mod:`app.api.track`, :mod:`app.api.v2`), with no faust
app, no consumer group and no local state, so any number of them can run behind a load balancer.
A ``200`` still means "acknowledged by the broker" (``acks=all``; on Kafka, idempotent).

- ``/healthz`` and ``/readyz``: 200 once the producer is connected and the raw topics exist with
  ``EVENTIDE_PARTITIONS`` partitions (a mismatch would send keys to the wrong partitions: the tier
  exits with status 2 instead); 503 before. Track requests get a 503 until then, too.
- ``/metrics`` (bearer app key): accepted items per operation, responses per status, request
  latency as a histogram, process metrics.
- ``PUT /api/v1/customers/{id}`` with ``_update: true`` is answered as a worker answers it:
  accepted (200); the worker that processes it drops an ``_update`` identify of an unknown person
  in log order (counted as ``eventide_identify_total{kind="update_of_unknown_person"}``), so it
  never creates the person.
- SIGTERM / SIGINT: stop accepting, let in-flight requests finish (up to 10 s), send every open
  batch and wait for its acknowledgement, then close the producer.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import time
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web
from aiokafka.admin import AIOKafkaAdminClient

from app.api import track, v2
from app.api.auth import require_app
from app.api.context import RT
from app.api.responses import ApiError, error_response, json_response
from app.api import limits
from app.api.server import error_shape
from app.clock import Clock, SystemClock
from app.ingest.batcher import IngestBatcher
from app.ingest.durability import durability_of
from app.kafka_clients import kafka_client_options
from app.listen import listener_for
from app.metrics import (PROMETHEUS_CONTENT_TYPE, Exposition, LatencyHistogram, loop_gauge,
                         peak_rss_bytes)
from app.producer import IdempotenceRefused, Producer
from app.settings import Settings
from app.topics import Topics, build_topics

log = logging.getLogger("eventide.api")


@dataclass
class TierRuntime:
    """What :func:`app.api.track.routes` and :func:`app.api.v2.routes` use of a worker's
    :class:`~app.runtime.Runtime`: settings, topics, clock, batcher and counters."""

    settings: Settings
    topics: Topics
    clock: Clock
    producer: Producer
    batcher: IngestBatcher
    counters: Counter = field(default_factory=Counter)
    #: Request arrival → response, per API request.
    request_latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    #: Set once the producer is connected and the raw topics are checked.
    connected: asyncio.Event = field(default_factory=asyncio.Event)

    def resolve_person(self, identifier: str, kind: str | None = None) -> str:
        return identifier

    @classmethod
    def create(cls, settings: Settings, clock: Clock | None = None) -> "TierRuntime":
        producer = Producer(settings)
        topics = build_topics(settings)
        # Beside an embedded instance (EVENTIDE_INPUT_LOG_DIR), a 200 waits for its input log.
        return cls(settings=settings, topics=topics, clock=clock or SystemClock(),
                   producer=producer,
                   batcher=IngestBatcher(producer, linger_s=settings.ingest_linger_ms / 1000,
                                         max_items=settings.ingest_max_batch,
                                         durable=durability_of(settings, topics)))


class TopicMismatch(RuntimeError):
    """A raw topic has another partition count than EVENTIDE_PARTITIONS."""


def _measure(rt: TierRuntime):  # type: ignore[no-untyped-def]
    @web.middleware
    async def middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
        if not request.path.startswith("/api/"):
            return await handler(request)
        start = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = 499  # the client went away
            raise
        finally:
            rt.request_latency.observe(time.perf_counter() - start)
            rt.counters[f"http_responses:{status}"] += 1

    return middleware


def _connected_first(rt: TierRuntime):  # type: ignore[no-untyped-def]
    @web.middleware
    async def middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
        if request.path.startswith("/api/") and not rt.connected.is_set():
            raise ApiError(503, "not ready: connecting to the broker; nothing was accepted, retry")
        return await handler(request)

    return middleware


def build_tier_app(rt: TierRuntime) -> web.Application:
    application = web.Application(client_max_size=rt.settings.max_body_bytes,
                                  middlewares=[_measure(rt), limits.limit_failed_authentication(
                                      limits.FailureLimiter(
                                          max_failures=rt.settings.auth_failures_per_minute)),
                                      error_shape, _connected_first(rt)])

    async def healthz(request: web.Request) -> web.Response:
        if rt.connected.is_set():
            return json_response({"status": "ok"})
        return error_response(503, "not ready: connecting to the broker")

    exposition = Exposition(
        rt.counters, {"http_request_duration_seconds": rt.request_latency},
        gauges=lambda: {"peak_rss_bytes": float(peak_rss_bytes()),
                        "ready": float(rt.connected.is_set())})

    async def metrics(request: web.Request) -> web.Response:
        require_app(request, rt.settings)
        return web.Response(text=exposition.render(loop_gauge()),
                            headers={"Content-Type": PROMETHEUS_CONTENT_TYPE})

    application.router.add_get("/healthz", healthz)
    application.router.add_get("/readyz", healthz)
    application.router.add_get("/metrics", metrics)
    # The shared handlers only touch what TierRuntime has (see its docstring).
    application[RT] = rt  # type: ignore[misc]
    application.router.add_routes(track.ROUTES)
    application.router.add_routes(v2.ROUTES)
    return application


async def raw_topic_partitions(bootstrap_servers: str, names: list[str],
                               client_options: dict | None = None) -> dict[str, int]:
    """Partition counts of the topics that exist among ``names``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **(client_options or {}))
    try:
        await admin.start()
        described = await admin.describe_topics(names)
    finally:
        try:
            await admin.close()
        except Exception:  # noqa: S110 - it may not have started
            pass
    return {d["topic"]: len(d["partitions"]) for d in described
            if not d.get("error_code") and d.get("partitions")}


class ApiTier:
    """The tier's lifecycle: serve at once (503 until connected), connect, drain on stop."""

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.rt = TierRuntime.create(settings, clock)
        self._runner: web.AppRunner | None = None
        self.connecting: asyncio.Task | None = None

    async def start(self) -> None:
        listener, self.settings = listener_for(self.settings)
        # shutdown_timeout: how long a stop waits for in-flight requests.
        self._runner = web.AppRunner(build_tier_app(self.rt), access_log=None,
                                     handle_signals=False, shutdown_timeout=10.0)
        await self._runner.setup()
        ssl_context = None
        if self.settings.tls_cert:
            ssl_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_context.load_cert_chain(self.settings.tls_cert, self.settings.tls_key)
        site = web.SockSite(self._runner, listener, ssl_context=ssl_context)
        await site.start()
        log.info("ingest tier listening on %s (broker %s)", self.settings.http_url,
                 self.settings.bootstrap_servers)
        self.connecting = asyncio.ensure_future(self._connect())

    async def _connect(self) -> None:
        """Wait for the broker and the raw topics, then start the producer. Raises
        :class:`TopicMismatch` if a raw topic has the wrong partition count."""
        specs = list(self.rt.topics.raw)
        delay, last_note = 0.25, 0.0
        while True:
            try:
                found = await raw_topic_partitions(self.settings.bootstrap_servers,
                                                   [spec.name for spec in specs],
                                                   kafka_client_options(self.settings))
                wrong = [f"{spec.name} has {found[spec.name]} partitions"
                         for spec in specs
                         if spec.name in found and found[spec.name] != spec.partitions]
                if wrong:
                    raise TopicMismatch(
                        "; ".join(wrong) + f": EVENTIDE_PARTITIONS is {self.settings.partitions}"
                        " and must match the topics, or keys would go to the wrong partitions")
                missing = [spec.name for spec in specs if spec.name not in found]
                if not missing:
                    await self._start_producer()
                    break
                reason = f"waiting for topics {', '.join(missing)} (run `eventide topics`)"
            except (TopicMismatch, IdempotenceRefused):
                raise
            except Exception as exc:
                reason = f"broker {self.settings.bootstrap_servers} not reachable: {exc!r}"
            if time.monotonic() - last_note > 10:
                log.warning("not ready: %s", reason)
                last_note = time.monotonic()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
        self.rt.connected.set()
        log.info("ingest tier ready: producing to %s",
                 ", ".join(spec.name for spec in specs))

    async def _start_producer(self) -> None:
        try:
            await self.rt.producer.start()
        except BaseException:
            # Producer.start() leaves the aiokafka producer it failed to start open: close it
            # before the next attempt builds another.
            leftover = getattr(self.rt.producer, "_producer", None)
            if leftover is not None and not getattr(self.rt.producer, "_started", True):
                try:
                    await leftover.stop()
                except Exception:  # noqa: S110 - best effort
                    pass
            raise

    async def stop(self) -> None:
        """Stop accepting, finish in-flight requests, flush open batches, close the producer."""
        if self.connecting is not None and not self.connecting.done():
            self.connecting.cancel()
            await asyncio.gather(self.connecting, return_exceptions=True)
        # Requests already read are waiting in open batches: send those now, so that the
        # runner's wait for in-flight handlers is a wait for the broker, not for the linger.
        self.rt.batcher.stop_lingering()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.rt.batcher.drain()
        await self.rt.producer.stop()
        log.info("ingest tier stopped (%d items accepted)",
                 sum(v for k, v in self.rt.counters.items() if k.startswith("accepted:")))


async def serve(settings: Settings) -> int:
    """Run the tier until SIGTERM/SIGINT; the process's exit status."""
    tier = ApiTier(settings)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await tier.start()
    assert tier.connecting is not None
    stop = asyncio.ensure_future(stopping.wait())
    await asyncio.wait({stop, tier.connecting}, return_when=asyncio.FIRST_COMPLETED)
    status = 0
    if tier.connecting.done() and not tier.connecting.cancelled() \
            and tier.connecting.exception() is not None:
        log.error("cannot serve: %s", tier.connecting.exception())
        status = 2
    else:
        await stop
        log.info("stopping: draining in-flight requests and open batches")
    stop.cancel()
    await tier.stop()
    return status
