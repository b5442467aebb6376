"""The one place that builds a worker: settings → topics → runtime → faust app, agents, web."""

from __future__ import annotations

import asyncio
import gc
import os
import logging
import socket
from typing import Any

import faust
from faust.types import TP

from agents import people, routing, segments
from app.assignment_watch import watch_assignment
from app.api.server import WebServer
from app.bulk_fetch import BulkTransport, fetch_in_bulk
from app.clock import Clock, SystemClock
from app.consumer_lag import faust_lag_probe
from app.heap import HeapTrimmer, glibc, keep_trimmed
from app.ingest.batcher import IngestBatcher
from app.ingest.durability import durability_of
from app.kafka_clients import faust_credentials, kafka_client_options
from app.ops.input_log import InputLog
from app.producer import Producer
from app.progress import EndOffsets
from app.runtime import Runtime
from app.sessions import RevokedSessions
from app.settings import Settings
from app.membership_index import membership_index
from app.person_store import history_index
from app.segments.catalog import EndConfirmer, follow
from app.topics import (EVENT_NAMES, HISTORY, HISTORY_SIZE, MEMBERSHIP, PROFILES, SEGMENT_STATE,
                        build_topics)
from tables import torn_fetch
from tables.state import StateManager

log = logging.getLogger(__name__)


#: Allocations between young-generation collections (CPython's default is 700).
GC_YOUNG_THRESHOLD = 50_000
#: How often a worker looks whether its C heap holds freed memory to give back (app/heap.py);
#: EVENTIDE_HEAP_TRIM_INTERVAL_MS=0 turns it off.
HEAP_TRIM_INTERVAL_MS = 1_000
#: The tables whose values a worker keeps decoded (``EVENTIDE_STATE_CACHE_MB``): what a unit
#: point-reads per person, per event name and per segment.
CACHED_TABLES = (PROFILES, MEMBERSHIP, HISTORY_SIZE, EVENT_NAMES, SEGMENT_STATE)


def tune_garbage_collector() -> None:
    """Collect less often on the hot path.

    A batch allocates many short-lived dicts (decoded items, states, records); with CPython's
    default thresholds the cyclic collector ran constantly and took a quarter of a worker's time in
    the benchmark's native profile. Everything allocated at start-up is frozen out of collection,
    and young collections run every 50,000 allocations instead of 700. Reference counting still
    frees almost everything at once; only reference cycles wait longer.
    """
    young = int(os.environ.get("EVENTIDE_GC_YOUNG_THRESHOLD") or GC_YOUNG_THRESHOLD)
    gc.collect()
    gc.freeze()
    gc.set_threshold(young, 20, 20)


class EventideApp(faust.App):
    """A faust app that starts eventide's producer first and closes its state last."""

    runtime: Runtime
    # What on_start creates. A start can fail part-way (the broker refuses the producer, say) and
    # faust still stops the app: on_shutdown then closes only what was made.
    _stopping: asyncio.Event | None = None
    _catalog_task: asyncio.Future | None = None
    _revocations_task: asyncio.Future | None = None
    _started_task: asyncio.Future | None = None
    _loop_lag_task: asyncio.Future | None = None
    _assignment_task: asyncio.Future | None = None
    _heap_task: asyncio.Future | None = None
    _input_log_task: asyncio.Future | None = None
    _end_confirmer: EndConfirmer | None = None

    def _new_transport(self) -> Any:
        # faust's Kafka transport, with a consumer that fetches for the agents in bulk.
        return BulkTransport(self.conf.broker_consumer, self)

    async def on_start(self) -> None:
        await super().on_start()
        tune_garbage_collector()
        rt = self.runtime
        self._stopping = asyncio.Event()
        await rt.producer.start()
        self._catalog_task = asyncio.ensure_future(follow(
            rt.catalog, rt.settings.bootstrap_servers, rt.topics.segment_definitions.name,
            self._stopping, kafka_client_options(rt.settings)))
        # Before a unit with inputs accepted since the last confirmation, the catalog confirms
        # it holds every definition written before them (SegmentCatalog.complete_through).
        self._end_confirmer = EndConfirmer(
            rt.catalog, rt.settings.bootstrap_servers, rt.topics.segment_definitions.name,
            kafka_client_options(rt.settings))
        rt.catalog.confirm = self._end_confirmer
        # Signed-out console sessions, followed the same way (app/sessions.py).
        self._revocations_task = asyncio.ensure_future(follow(
            rt.revoked, rt.settings.bootstrap_servers,  # type: ignore[arg-type]
            rt.topics.session_revocations.name, self._stopping,
            kafka_client_options(rt.settings)))
        # Agents (and readiness) wait for ``started``: only once every segment definition is
        # known can an input be evaluated against the segments it touches.
        self._started_task = asyncio.ensure_future(self._start_when_catalog_ready())
        self._loop_lag_task = asyncio.ensure_future(rt.watch_loop_lag())
        self._assignment_task = asyncio.ensure_future(watch_assignment(
            rt.assignment, rt.settings.app_id, rt.settings.bootstrap_servers))
        self._heap_task = asyncio.ensure_future(keep_trimmed(rt.heap))
        if rt.input_log is not None:
            self._input_log_task = asyncio.ensure_future(rt.input_log.run(
                rt.settings.bootstrap_servers, tansu=rt.settings.tansu))

    async def _start_when_catalog_ready(self) -> None:
        await self.runtime.catalog.caught_up.wait()
        self.runtime.started.set()

    async def on_shutdown(self) -> None:
        await super().on_shutdown()
        if self._stopping is not None:
            self._stopping.set()
        for task in (self._loop_lag_task, self._assignment_task, self._heap_task):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(task for task in (self._catalog_task, self._revocations_task,
                                                 self._loop_lag_task, self._assignment_task,
                                                 self._heap_task)
                               if task is not None), return_exceptions=True)
        if self._end_confirmer is not None:
            await self._end_confirmer.stop()
        await self.runtime.batcher.drain()
        if self._input_log_task is not None:
            # Every answered request is on disk already; what is still pending is not answered.
            self._input_log_task.cancel()
            await asyncio.gather(self._input_log_task, return_exceptions=True)
        if self.runtime.end_offsets is not None:
            await self.runtime.end_offsets.stop()
        await self.runtime.producer.stop()
        self.runtime.state.close()


def faust_options(settings: Settings) -> dict[str, Any]:
    options: dict[str, Any] = dict(
        broker=settings.broker_url,
        store="memory://",  # eventide's tables are its own (tables/); faust keeps none
        datadir=str(settings.state_dir / "faust"),
        topic_partitions=settings.partitions,
        topic_allow_declare=False,  # every topic is created up front with its partition count
        # faust's leader topic (`<app id>-__assignor-__leader`) only serves app.is_leader() and
        # on_leader timers, which eventide does not use. With declaring off and auto-create off
        # on a real cluster it would never exist, and every worker would log it missing.
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        web_enabled=True,
        web_bind=settings.http_host,
        web_port=settings.http_port,
        web_host=settings.http_host,
        # Advertised to the other workers with every assignment: where to forward reads.
        canonical_url=settings.advertised_url,
        producer_acks=-1,
        broker_commit_interval=1.0,
        stream_buffer_maxsize=256,
        # A fetch hands its records to the agents' inboxes in one go (app/bulk_fetch.py): bounded
        # here, so turning a fetch into messages never holds the loop or memory for a backlog.
        broker_max_poll_records=1_000,
    )
    credentials = faust_credentials(settings)
    if credentials is not None:
        # faust's own consumer, producer and admin client (EVENTIDE_KAFKA_*, app.kafka_clients).
        options["broker_credentials"] = credentials
    if settings.tansu:
        # Tansu holds a first JoinGroup for about session_timeout/2: keep that short.
        options.update(broker_session_timeout=6, broker_heartbeat_interval=1.5,
                       broker_rebalance_timeout=12)
    return options


def create_app(settings: Settings, clock: Clock | None = None,
               input_log: InputLog | None = None,
               listener: socket.socket | None = None) -> EventideApp:
    """The worker's app. ``listener``: its HTTP port, already bound (:mod:`app.listen`)."""
    topics = build_topics(settings)
    producer = Producer(settings)
    clock = clock or SystemClock()
    runtime = Runtime(
        settings=settings,
        topics=topics,
        clock=clock,
        producer=producer,
        state=StateManager(topics.tables, settings.state_dir / "tables", producer,
                           settings.bootstrap_servers, topics.groups(),
                           client_options=kafka_client_options(settings),
                           indexes={HISTORY: history_index(),
                                    MEMBERSHIP: membership_index()},
                           cached=CACHED_TABLES,
                           cache_bytes=settings.state_cache_mb * 1024 * 1024),
        batcher=IngestBatcher(producer, linger_s=settings.ingest_linger_ms / 1000,
                              max_items=settings.ingest_max_batch,
                              durable=durability_of(settings, topics, input_log)),
        input_log=input_log,
        heap=HeapTrimmer(glibc(), interval_s=int(
            os.environ.get("EVENTIDE_HEAP_TRIM_INTERVAL_MS") or HEAP_TRIM_INTERVAL_MS) / 1000),
        revoked=RevokedSessions(now=clock.now),
    )
    # Shown at 0, so an alert can be set on each: the crash-schedule sweep checks the first;
    # the others count inputs a worker nearly lost (docs/architecture.md, "Records reach the
    # agents a fetch at a time").
    for must_stay_0 in ("invariant_violations", "commits_held", "unit_failures", "fetch_gaps"):
        runtime.counters[must_stay_0] = 0
    if settings.tansu:
        torn_fetch.count_into(runtime.counters)  # the embedded broker's torn fetches, on /metrics
    app = EventideApp(settings.app_id, **faust_options(settings))
    app.runtime = runtime
    runtime.app = app
    runtime.applied.committed = _faust_committed(app)
    runtime.end_offsets = EndOffsets(settings.bootstrap_servers, kafka_client_options(settings))
    routing.register(app, runtime)
    people.register(app, runtime)
    segments.register(app, runtime)
    for agent in app.agents.values():
        fetch_in_bulk(app, agent.channel.topics)  # type: ignore[attr-defined]
    # /metrics reports the consumer lag of the partitions this worker is assigned.
    app.web_server(WebServer(runtime, lag_probe=faust_lag_probe(app), listener=listener))
    _track_assignment(app, runtime)
    return app


def _faust_committed(app: faust.App):  # type: ignore[no-untyped-def]
    """faust's record of the offset committed on an assigned partition (the next to read):
    set when the partition is assigned (from the group's commits) and at every commit."""

    def committed(topic: str, partition: int) -> int | None:
        offset = getattr(app.consumer, "_committed_offset", {}).get((topic, partition))
        return offset if isinstance(offset, int) and offset >= 0 else None

    return committed


def _raw_behind(app: faust.App, rt: Runtime):  # type: ignore[no-untyped-def]
    """Whether raw.events[p] holds records no unit here has taken: its high-watermark (from
    the consumer's last fetch) against what units took (prepared, or committed before)."""
    topic = rt.topics.raw_events.name

    def behind(partition: int) -> bool:
        try:
            end = app.consumer.highwater(TP(topic, partition))
        except Exception:  # not assigned here, or the consumer is being rebuilt
            return True
        if end is None:
            return True  # no fetch of it answered yet
        taken = max(rt.raw_handled.get(partition, 0),
                    rt.applied.next_offset(topic, partition) or 0)
        return bool(taken < end)

    return behind


def _track_assignment(app: faust.App, rt: Runtime) -> None:
    """Keep the runtime's view of owned partitions; recover newly assigned ones eagerly."""

    standby: dict[str, asyncio.Task] = {}

    async def stop_standby() -> None:
        task = standby.pop("task", None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    @app.on_partitions_revoked.connect
    async def on_revoked(sender: Any, revoked: set, **kwargs: Any) -> None:
        rt.assignment.revoked()
        await stop_standby()
        # A unit still being committed finishes before its partitions change hands, so the
        # next owner's recovery reads all of it (faust has waited for its streams already; this
        # covers a commit still retrying against the broker).
        if not await rt.state.wait_idle(rt.settings.revoke_wait_s):
            log.warning("a unit of work was still committing when partitions were revoked")
        by_topic: dict[str, list[int]] = {}
        rt.applied.forget((tp.topic, tp.partition) for tp in revoked)
        rt.raw_handled.clear()  # (a unit taken before this may never be committed)
        for tp in revoked:
            rt.assigned.discard((tp.topic, tp.partition))
            by_topic.setdefault(tp.topic, []).append(tp.partition)
        if by_topic:
            _log_partitions("revoked", by_topic, rt.settings)
        for topic, partitions in by_topic.items():
            rt.state.forget(topic, partitions)
            if topic == rt.topics.person_events.name:
                for partition in partitions:
                    rt.active_segments.pop(partition, None)
                    rt.deleted_segments.pop(partition, None)
                    rt.arrived_definitions.pop(partition, None)
                    rt.definitions_watch.pop(partition, None)

    @app.on_partitions_assigned.connect
    async def on_assigned(sender: Any, assigned: set, **kwargs: Any) -> None:
        by_topic: dict[str, list[int]] = {}
        rt.applied.forget((tp.topic, tp.partition) for tp in assigned
                          if (tp.topic, tp.partition) not in rt.assigned)
        rt.raw_handled.clear()
        if rt.raw_behind is None:
            # Set with the consumer's first assignment: a runtime driven without a consumer
            # (tests/agents) knows no raw backlog, and activates a definition on its item.
            rt.raw_behind = _raw_behind(app, rt)
        rt.assigned.clear()
        for tp in assigned:
            rt.assigned.add((tp.topic, tp.partition))
            by_topic.setdefault(tp.topic, []).append(tp.partition)
        rt.joined = True
        waited = rt.assignment.assigned()
        if waited is not None:
            log.warning("partitions assigned after %.0f s of waiting for the group", waited)
        # The epoch a new owner fences its changelog partitions with (tables/changelog.py).
        rt.state.generation = getattr(app, "consumer_generation_id", None)
        # One line a rebalance: a pause in processing (or a stalled test) reads off the log.
        _log_partitions("assigned", by_topic, rt.settings, generation=rt.state.generation)
        await stop_standby()
        for topic, partitions in by_topic.items():
            task = asyncio.ensure_future(rt.state.ensure_recovered(topic, partitions))
            task.add_done_callback(_log_failure)
        if rt.settings.standby_replicas > 0:
            groups = {rt.topics.person_events.name, rt.topics.raw_events.name,
                      rt.topics.raw_anonymous.name}
            others = {topic: [p for p in range(rt.settings.partitions)
                              if (topic, p) not in rt.assigned] for topic in groups}
            standby["task"] = asyncio.ensure_future(rt.state.follow_standbys(others))
            standby["task"].add_done_callback(_log_failure)


def _log_partitions(change: str, by_topic: dict[str, list[int]], settings: Settings,
                    **fields: Any) -> None:
    """"partitions assigned (generation 3): raw.events [0, 2]; v1.person.events [0, 2]" (the
    topic prefix left out of the text), the partitions by full topic name in the ``change``
    field of a JSON log, with ``fields``."""
    prefix = settings.topic_prefix + "."
    by_name = {topic: sorted(partitions) for topic, partitions in sorted(by_topic.items())}
    text = "; ".join(f"{topic.removeprefix(prefix)} {partitions}"
                     for topic, partitions in by_name.items()) or "none"
    label = "".join(f" ({name} {value})" for name, value in fields.items())
    log.info("partitions %s%s: %s", change, label, text, extra={change: by_name, **fields})


def _log_failure(task: asyncio.Future) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("recovery failed: %r", task.exception())
