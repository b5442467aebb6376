"""Live segment changes for the console: server-sent events read from ``segments.changes``.

Each SSE connection has its own aiokafka consumer (no group, nothing committed) positioned at the
end of every partition, so a viewer sees changes from the moment it connected. Connections are
bounded in number and in lifetime (the browser's EventSource reconnects by itself, sending the
``Last-Event-ID`` it saw, which resumes exactly where the previous connection stopped), and the
consumer is closed as soon as the client goes, the lifetime ends, or the worker shuts down.

The embedded broker may answer "latest offset" with an offset slightly in the past, so a fresh
(not resumed) connection also drops records produced before it connected.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from aiokafka import AIOKafkaConsumer, TopicPartition

from app.console.auth import COOKIE, cookie_session
from app.kafka_clients import kafka_client_options
from app.runtime import Runtime

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 16
#: Live feeds one viewer may hold open at once.
MAX_PER_VIEWER = 4
LIFETIME_S = 300.0
HEARTBEAT_S = 15.0
RETRY_MS = 2000
#: At the limit, how often and how long a new feed waits for a closing one to be noticed.
SETTLE_POLL_S = 0.05
SETTLE_POLLS = 10
#: Records produced this long before the connection are still shown (clock skew between hosts).
SLACK_MS = 1000


@dataclass
class Feeds:
    """Shared by every SSE connection of one worker."""

    rt: Runtime
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    #: The requests serving open feeds, per viewer (session cookie, or the caller's address).
    by_viewer: dict[str, list[web.BaseRequest]] = field(default_factory=dict)
    lifetime_s: float = LIFETIME_S

    @property
    def active(self) -> int:
        return sum(len(requests) for requests in self.by_viewer.values())

    def live(self, viewer: str | None = None) -> int:
        """Open feeds whose browser is still connected (all, or ``viewer``'s).

        A page that navigates away closes its connection at once, but its feed only notices on
        its next poll, up to a second later (longer while its consumer starts). A console page
        that reloads after a save would otherwise count twice for that while, and a viewer
        saving a few times then opening a tab was refused a feed it was entitled to.
        """
        groups = self.by_viewer.values() if viewer is None else [self.by_viewer.get(viewer, ())]
        return sum(1 for requests in groups for request in requests
                   if request.transport is not None and not request.transport.is_closing())


#: ``application[FEEDS]``: the worker's live feeds (set by :func:`app.console.install`).
FEEDS = web.AppKey("console_feeds", Feeds)


def parse_positions(raw: str | None, partitions: int) -> dict[int, int]:
    """``"0:12,1:5"`` (an SSE event id this module wrote) → {partition: next offset}."""
    positions: dict[int, int] = {}
    if not raw or len(raw) > 4000:
        return positions
    for part in raw.split(","):
        p, _, o = part.partition(":")
        if p.isascii() and o.isascii() and p.isdigit() and o.isdigit() and int(p) < partitions:
            positions[int(p)] = int(o)
    return positions


def format_positions(positions: dict[int, int]) -> str:
    return ",".join(f"{p}:{o}" for p, o in sorted(positions.items()))


def sse(event: str | None, data: Any, event_id: str | None = None) -> bytes:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    if event is not None:
        lines.append(f"event: {event}")
    lines.append("data: " + orjson.dumps(data).decode())
    return ("\n".join(lines) + "\n\n").encode()


async def _refusal(feeds: Feeds, viewer: str) -> web.Response | None:
    """Why a new feed may not open now (too many open overall, or for this viewer), if so.

    A page that reloads opens its new feed as its old connection closes, and the new request
    can be read before the old connection's end is: at the limit, wait a moment for that.
    """
    for _ in range(SETTLE_POLLS):
        if feeds.live() < MAX_CONNECTIONS and feeds.live(viewer) < MAX_PER_VIEWER:
            break
        await asyncio.sleep(SETTLE_POLL_S)
    if feeds.stopping.is_set() or feeds.live() >= MAX_CONNECTIONS:
        return web.Response(status=503, text="too many live feeds open; retry later\n",
                            headers={"Retry-After": "5"})
    if feeds.live(viewer) >= MAX_PER_VIEWER:
        return web.Response(status=429, text=f"at most {MAX_PER_VIEWER} live feeds per viewer; "
                                             "close one first\n", headers={"Retry-After": "5"})
    return None


def _new_consumer(rt: Runtime) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(bootstrap_servers=rt.settings.bootstrap_servers, group_id=None,
                            enable_auto_commit=False, auto_offset_reset="latest",
                            fetch_max_wait_ms=250, client_id="eventide-console-feed",
                            **kafka_client_options(rt.settings))


async def _start(consumer: AIOKafkaConsumer, rt: Runtime, request: web.Request
                 ) -> tuple[list[TopicPartition], bool]:
    """Start ``consumer`` on every ``segments.changes`` partition, at the ``Last-Event-ID`` the
    browser resumes from (then True), or at the end."""
    topic = rt.topics.segment_changes
    await consumer.start()
    tps = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
    consumer.assign(tps)
    resumed = parse_positions(request.headers.get("Last-Event-ID"), topic.partitions)
    for tp in tps:
        if tp.partition in resumed:
            consumer.seek(tp, resumed[tp.partition])
        else:
            consumer.seek_to_end(tp)
    return tps, bool(resumed)


def _changes(batches: dict[TopicPartition, list[Any]], positions: dict[int, int],
             since_ms: int, segment_id: str | None) -> list[bytes]:
    """SSE ``change`` events of a fetch (advancing ``positions``), for ``segment_id`` or all."""
    out: list[bytes] = []
    for tp, records in batches.items():
        for record in records:
            positions[tp.partition] = record.offset + 1
            if record.value is None or record.timestamp < since_ms:
                continue
            try:
                change = orjson.loads(record.value)
            except orjson.JSONDecodeError:
                continue
            if segment_id is not None and change.get("segment_id") != segment_id:
                continue
            out.append(sse("change", change, format_positions(positions)))
    return out


async def _relay(request: web.Request, response: web.StreamResponse, feeds: Feeds,
                 consumer: AIOKafkaConsumer, tps: list[TopicPartition], resumed: bool,
                 segment_id: str | None) -> None:
    """Write changes to the browser until it leaves, the session ends, the lifetime is over or
    the worker stops."""
    rt = feeds.rt
    session = cookie_session(request, rt.settings, rt.clock.now())
    # Resolve every position now, so "ready" means nothing produced from here on is missed.
    positions = {tp.partition: await consumer.position(tp) for tp in tps}
    since_ms = 0 if resumed else int(time.time() * 1000) - SLACK_MS
    await response.write(f"retry: {RETRY_MS}\n\n".encode())
    await response.write(sse("ready", {"segment": segment_id}, format_positions(positions)))
    deadline = time.monotonic() + feeds.lifetime_s
    last_write = time.monotonic()
    while time.monotonic() < deadline and not feeds.stopping.is_set():
        transport = request.transport
        if transport is None or transport.is_closing():
            break
        if session is not None and rt.revoked.is_revoked(session.session_id):
            break  # signed out (here or on another worker): the feed ends with the session
        batches = await consumer.getmany(*tps, timeout_ms=1000, max_records=200)
        out = _changes(batches, positions, since_ms, segment_id)
        if out:
            await response.write(b"".join(out))
            last_write = time.monotonic()
        elif time.monotonic() - last_write > HEARTBEAT_S:
            await response.write(b": keep-alive\n\n")  # also finds out the client left
            last_write = time.monotonic()


async def _close(feeds: Feeds, viewer: str, request: web.Request,
                 consumer: AIOKafkaConsumer | None) -> None:
    left = [r for r in feeds.by_viewer.get(viewer, []) if r is not request]
    if left:
        feeds.by_viewer[viewer] = left
    else:
        feeds.by_viewer.pop(viewer, None)
    if consumer is not None:
        try:
            await asyncio.wait_for(consumer.stop(), 5)
        except Exception:  # noqa: BLE001 - closing a consumer must not mask the response
            log.warning("console feed consumer did not stop cleanly", exc_info=True)
        log.info("console live feed closed (%d open)", feeds.active)


async def stream(request: web.Request, feeds: Feeds, segment_id: str | None) -> web.StreamResponse:
    """Serve one SSE connection (the caller has checked the viewer is signed in)."""
    # One viewer (session, or bearer caller's address) may not take every slot for everyone.
    viewer = request.cookies.get(COOKIE) or f"addr:{request.remote}"
    refused = await _refusal(feeds, viewer)
    if refused is not None:
        return refused
    feeds.by_viewer[viewer] = [*feeds.by_viewer.get(viewer, []), request]
    consumer: AIOKafkaConsumer | None = None
    response: web.StreamResponse | None = None
    try:
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store", "X-Accel-Buffering": "no"})
        await response.prepare(request)
        consumer = _new_consumer(feeds.rt)
        tps, resumed = await _start(consumer, feeds.rt, request)
        log.info("console live feed opened (%d open)", feeds.active)
        await _relay(request, response, feeds, consumer, tps, resumed, segment_id)
        return response
    except ConnectionError:
        return response or web.Response(status=503)  # the client is gone
    except Exception:  # noqa: BLE001 - the headers are out; end the stream, the client retries
        log.warning("console feed failed", exc_info=True)
        return response or web.Response(status=503, text="live feed unavailable\n")
    finally:
        await _close(feeds, viewer, request, consumer)
