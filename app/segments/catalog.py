"""Segment definitions, followed by every worker from the definitions topic.

A global (not partitioned) table kept in memory: each worker reads the whole topic from the
beginning and keeps following it. Definitions are kept by version too, because each person
partition evaluates the version it has *activated* (when the definition's re-evaluation item
reached it), which keeps evaluation in step with that partition's own log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Any, Awaitable, Callable

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from app.core.activation import TOMBSTONE
from app.segments.definition import DefinitionError, Segment, parse_segment
from app.segments.evaluate import is_member
from tables.kafka_io import at_end, highwaters_at

log = logging.getLogger(__name__)


def deletion_value() -> dict[str, Any]:
    """A deletion's record value in the definitions topic. Not a tombstone: a partition that
    activated it keeps a marker of it (``app.core.activation.since_active``), and one that never
    did activates the versions before it and then it, in turn, live or replayed. (A compacted
    topic would drop a tombstone; the topic keeps every record, ``app.topics``.) Its ``version``
    is None, so a definition item made from it is a deletion."""
    return {"version": None, "deleted": True}


def is_deletion_value(value: dict[str, Any]) -> bool:
    return value.get("deleted") is True


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
        #: segment id → every valid record of it, in topic order: (version, None for a deletion
        #: or ``TOMBSTONE`` for one written as a tombstone, offset, record time in milliseconds
        #: or None). What a person partition
        #: activates from the catalog, each version in turn (app.core.activation.recorded_by),
        #: so an input accepted between two edits is evaluated against the first, live and
        #: replayed; the last is the segment's latest record.
        self.history: dict[str, list[tuple[str | None, int, int | None]]] = {}
        #: Wall time (ms) before which every record of the topic is known to be applied: any
        #: definition written before it is here (:meth:`complete_through`).
        self.complete_as_of_ms = 0.0
        #: Learns the topic's end as it stands now and waits until it is applied (set by the
        #: worker's wiring, :func:`confirm_end`); None where nothing follows the topic (a
        #: catalog filled by hand is complete by construction).
        self.confirm: Callable[[], Awaitable[None]] | None = None
        self._confirming: asyncio.Future[None] | None = None
        self.offset = -1
        self._advanced = asyncio.Condition()
        #: Set once the whole topic as it stood at start has been applied: no input may be
        #: evaluated before (a missing definition would silently skip its segment).
        self.caught_up = asyncio.Event()

    # -- applying the topic --------------------------------------------------------------------

    def apply(self, segment_id: str, value: dict[str, Any] | None, offset: int,
              at_ms: int | None = None) -> None:
        """The record at ``offset`` of the definitions topic, written at ``at_ms``: a definition,
        a deletion (:func:`deletion_value`) or a tombstone (a deletion as eventide wrote them
        until 2026-12-07, ``app.core.activation.TOMBSTONE``)."""
        self.offset = max(self.offset, offset)
        if value is None or is_deletion_value(value):
            self.latest[segment_id] = None
            self._record(segment_id, (TOMBSTONE if value is None else None, offset, at_ms))
            return
        try:
            segment = parse_segment(segment_id, value["definition"])
        except (DefinitionError, KeyError, TypeError) as exc:
            log.error("ignoring invalid definition of %s at offset %d: %s", segment_id, offset,
                      exc)
            return
        self.latest[segment_id] = value
        self._record(segment_id, (value["version"], offset, at_ms))
        self._by_version[(segment_id, value["version"])] = segment
        # Index every version's names: a partition may still evaluate an older version.
        for name in segment.event_names():
            self.by_event[name].add(segment_id)
        for root in segment.attribute_roots():
            self._by_attribute[root].add(segment_id)
        # With no data, no condition depends on time, so any evaluation time gives the answer.
        if is_member(segment, [], {}, 0):
            self._true_when_empty.add(segment_id)

    def _record(self, segment_id: str, entry: tuple[str | None, int, int | None]) -> None:
        entries = self.history.get(segment_id, [])
        if not entries or entries[-1][1] < entry[1]:
            self.history[segment_id] = [*entries, entry]   # (a new list: readers may hold one)

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

    async def complete_through(self, at_ms: int) -> bool:
        """Return once every definition written before ``at_ms`` (capped at now) is applied;
        whether that took a new confirmation.

        An input is evaluated against the definitions recorded by its accept time
        (``app.core.activation.recorded_by``), which a replay reads from the whole topic. Live,
        the follower may not have fetched a definition written a moment before an input was
        accepted on another worker: that input would be evaluated without it, and the
        definition's own item would enter the person later with another cause (a CI run of
        ``test_three_workers_live_and_one_replaying...`` caught it). So a unit holding inputs
        accepted after the last confirmation waits for one: a few milliseconds, once per unit
        at most, and never while draining a backlog accepted earlier."""
        if self.confirm is None or self.complete_as_of_ms >= at_ms:
            return False
        at_ms = min(at_ms, int(time.time() * 1000))
        delay = 0.1
        while self.complete_as_of_ms < at_ms:
            if self._confirming is None or self._confirming.done():
                self._confirming = asyncio.ensure_future(self._confirm_once())
            try:
                await asyncio.shield(self._confirming)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker away: the unit waits, as for its outputs
                log.warning("could not confirm the segment definitions are complete, retrying "
                            "in %.1fs: %r", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        return True

    async def _confirm_once(self) -> None:
        began_ms = time.time() * 1000
        assert self.confirm is not None
        await self.confirm()
        self.complete_as_of_ms = max(self.complete_as_of_ms, began_ms)

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
                              at_ms=message.timestamp)
            if fetched:
                await catalog.notify()
            if not catalog.caught_up.is_set() and await at_end(consumer, tp):
                catalog.caught_up.set()
    finally:
        await consumer.stop()


class EndConfirmer:
    """Learns the definitions topic's end as it stands now, then waits until the follower has
    applied everything before it (``SegmentCatalog.confirm``).

    The end is the high-watermark of one Fetch sent after the call began
    (:func:`tables.kafka_io.highwaters_at`), so it counts every definition written before the
    call. The Fetch asks for the last record applied, which is there to be read (the topic keeps
    every record, and the last record of one created compacted is never compacted away), so it is answered at once. It goes
    through the client of a consumer that is never assigned: a live worker confirms once per
    unit, and assigning and unassigning a consumer each time cost two metadata requests (the
    second for every topic), and an assigned consumer goes on fetching between calls (on the
    embedded broker, which holds an empty fetch for its whole wait, 100 fetches a second)."""

    def __init__(self, catalog: SegmentCatalog, bootstrap: str, topic: str,
                 client_options: dict[str, Any] | None = None, timeout_s: float = 30.0) -> None:
        self.catalog, self.bootstrap, self.topic = catalog, bootstrap, topic
        self.client_options, self.timeout_s = client_options or {}, timeout_s
        self._consumer: AIOKafkaConsumer | None = None

    async def __call__(self) -> None:
        consumer = self._consumer
        if consumer is None:
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                        enable_auto_commit=False, **self.client_options)
            await consumer.start()
            self._consumer = consumer
        catalog, tp = self.catalog, TopicPartition(self.topic, 0)
        try:
            found = await asyncio.wait_for(highwaters_at(consumer, {tp: max(catalog.offset, 0)}),
                                           self.timeout_s)
        except BaseException:
            await self.stop()  # (a new consumer next time)
            raise
        if tp not in found:
            raise TimeoutError(f"no fetch of {self.topic} answered with its end")
        end = found[tp]
        if end and not await catalog.wait_for(end - 1, self.timeout_s):
            raise TimeoutError(f"the follower of {self.topic} did not reach offset {end - 1}")

    async def stop(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                await consumer.stop()
            except Exception as exc:  # stopping anyway
                log.debug("stopping the definitions end confirmer: %r", exc)
