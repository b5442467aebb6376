"""Segment definitions, followed by every worker from the compacted definitions topic.

A global (not partitioned) table kept in memory: each worker reads the whole topic from the
beginning and keeps following it. Definitions are kept by version too, because each person
partition evaluates the version it has *activated* (when the definition's re-evaluation item
reached it), which keeps evaluation in step with that partition's own log.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from app.segments.definition import DefinitionError, Segment, parse_segment
from app.segments.evaluate import is_member
from tables.kafka_io import at_end

log = logging.getLogger(__name__)


class SegmentCatalog:
    def __init__(self) -> None:
        #: segment id → the latest record value (``None`` once deleted)
        self.latest: dict[str, dict[str, Any] | None] = {}
        self._by_version: dict[tuple[str, str], Segment] = {}
        #: event name → the ids of segments (any version) whose conditions name it. Read per
        #: item by the person stage (``agents.person_io.ActiveHere``); never replaced.
        self.by_event: dict[str, set[str]] = defaultdict(set)
        self._by_attribute: dict[str, set[str]] = defaultdict(set)
        #: Segments someone with no events and no attributes is in (e.g. "has not purchased").
        self._true_when_empty: set[str] = set()
        #: segment id → (version or None once deleted, offset, record time in seconds or None)
        #: of its latest valid record: what a person partition activates from the catalog
        #: (app.core.activation.recorded_by)
        self.recorded: dict[str, tuple[str | None, int, int | None]] = {}
        self.offset = -1
        self._advanced = asyncio.Condition()
        #: Set once the whole topic as it stood at start has been applied: no input may be
        #: evaluated before (a missing definition would silently skip its segment).
        self.caught_up = asyncio.Event()

    # -- applying the topic --------------------------------------------------------------------

    def apply(self, segment_id: str, value: dict[str, Any] | None, offset: int,
              at_s: int | None = None) -> None:
        """The record at ``offset`` of the definitions topic, written at ``at_s``."""
        self.offset = max(self.offset, offset)
        if value is None:
            self.latest[segment_id] = None
            self.recorded[segment_id] = (None, offset, at_s)
            return
        try:
            segment = parse_segment(segment_id, value["definition"])
        except (DefinitionError, KeyError, TypeError) as exc:
            log.error("ignoring invalid definition of %s at offset %d: %s", segment_id, offset,
                      exc)
            return
        self.latest[segment_id] = value
        self.recorded[segment_id] = (value["version"], offset, at_s)
        self._by_version[(segment_id, value["version"])] = segment
        # Index every version's names: a partition may still evaluate an older version.
        for name in segment.event_names():
            self.by_event[name].add(segment_id)
        for root in segment.attribute_roots():
            self._by_attribute[root].add(segment_id)
        # With no data, no condition depends on time, so any evaluation time gives the answer.
        if is_member(segment, [], {}, 0):
            self._true_when_empty.add(segment_id)

    async def notify(self) -> None:
        async with self._advanced:
            self._advanced.notify_all()

    async def wait_for(self, offset: int, timeout_s: float = 30.0) -> bool:
        """Wait until the catalog has applied ``offset``; False on timeout."""
        async def reached() -> None:
            async with self._advanced:
                await self._advanced.wait_for(lambda: self.offset >= offset)
        try:
            await asyncio.wait_for(reached(), timeout_s)
            return True
        except asyncio.TimeoutError:
            return False

    # -- reading -------------------------------------------------------------------------------

    def get(self, segment_id: str, version: str) -> Segment | None:
        return self._by_version.get((segment_id, version))

    def segments_for_attributes(self, roots: set[str]) -> set[str]:
        found: set[str] = set()
        for root in roots:
            found |= self._by_attribute.get(root, set())
        return found

    def segments_true_when_empty(self) -> set[str]:
        return self._true_when_empty

    def live(self) -> dict[str, dict[str, Any]]:
        return {sid: value for sid, value in self.latest.items() if value is not None}


async def follow(catalog: SegmentCatalog, bootstrap: str, topic: str,
                 stopping: asyncio.Event, client_options: dict[str, Any] | None = None) -> None:
    """Apply the definitions topic to ``catalog`` from the beginning, for as long as the worker
    runs (or another single-partition compacted topic to anything with the catalog's ``apply``,
    ``notify``, ``offset`` and ``caught_up``: the console's revoked sessions, app/sessions.py);
    a failure (the broker away) restarts the follower after a pause. ``client_options``:
    the consumer's security options (app.kafka_clients)."""
    delay = 0.5
    while not stopping.is_set():
        try:
            await _follow_once(catalog, bootstrap, topic, stopping, client_options or {})
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("following %s failed, retrying in %.1fs: %r", topic, delay, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


async def _follow_once(catalog: SegmentCatalog, bootstrap: str, topic: str,
                       stopping: asyncio.Event, client_options: dict[str, Any]) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                **client_options)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, catalog.offset + 1)
        while not stopping.is_set():
            fetched = await consumer.getmany(tp, timeout_ms=250)
            for message in fetched.get(tp, []):
                value = None if message.value is None else orjson.loads(message.value)
                catalog.apply(message.key.decode(), value, message.offset,
                              at_s=message.timestamp // 1000)
            if fetched:
                await catalog.notify()
            if not catalog.caught_up.is_set() and await at_end(consumer, tp):
                catalog.caught_up.set()
    finally:
        await consumer.stop()
