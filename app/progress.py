"""How far this worker's agents have applied their input partitions, and waiting for a point.

Read-your-writes (issue 13.2): a request that decides something about a person (a CSV import's
"people must already exist", a render) must see every write accepted before it. An accepted
write is a record below the end offset of its raw partition; the person stage has seen it once

1. ``process_people`` has applied (and committed) ``raw.events[p]`` up to that end offset — a
   customer's own items are applied then, in place; the outputs of the routed ones on
   ``person.events`` are acknowledged before that unit is committed — and
2. the person stage has applied ``person.events[p]`` up to that topic's end offset read after 1.

:class:`Applied` records, per input partition, the next offset after the last record an agent
of this worker handled and committed (``agents.batches.run``), with faust's committed offset as
the floor for a partition nothing was handled on since it was assigned (everything below it was
applied by someone and is in the recovered state). :class:`EndOffsets` reads end offsets that
count every acknowledged record (:func:`tables.kafka_io.end_offsets_now`: ListOffsets alone
misses the tail of a batch on the embedded broker).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Iterable, Mapping, Sequence

from tables.kafka_io import end_offsets_now

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]
#: (topic, partition) → faust's committed offset there (the next offset to read), or None.
Committed = Callable[[str, int], "int | None"]


class Applied:
    """Per input partition: the offset up to which (exclusive) this worker has applied it."""

    def __init__(self, committed: Committed | None = None) -> None:
        self._next: dict[TopicPartition, int] = {}
        self.committed = committed
        self._wake: asyncio.Future | None = None
        #: raw.events partition → the highest raw target whose whole chain (router, then person
        #: stage) was confirmed applied here; later requests below it need no wait at all.
        self.confirmed: dict[int, int] = {}

    def next_offset(self, topic: str, partition: int) -> int | None:
        """Offsets below this are applied here (None: nothing known)."""
        handled = self._next.get((topic, partition))
        floor = None
        if self.committed is not None:
            try:
                floor = self.committed(topic, partition)
            except Exception:  # the consumer is not started, or is being rebuilt
                floor = None
        if handled is None:
            return floor
        return handled if floor is None else max(handled, floor)

    def advance(self, events: Iterable[Any]) -> None:
        """Records (faust events) whose unit was just committed."""
        moved = False
        for event in events:
            message = event.message
            slot = (message.topic, message.partition)
            after = message.offset + 1
            if after > self._next.get(slot, -1):
                self._next[slot] = after
                moved = True
        if moved and self._wake is not None:
            wake, self._wake = self._wake, None
            if not wake.done():
                wake.set_result(None)

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Partitions that changed hands: what was applied here says nothing any more."""
        for slot in partitions:
            self._next.pop(slot, None)
        self.confirmed.clear()

    async def wait(self, topic: str, targets: Mapping[int, int], deadline: float) -> dict[int, int]:
        """Wait until every partition of ``topic`` in ``targets`` is applied up to its target;
        returns the partitions still short (partition → records short) at ``deadline`` (loop
        time), empty when all are there."""
        loop = asyncio.get_running_loop()
        while True:
            short = {p: target - (self.next_offset(topic, p) or 0)
                     for p, target in targets.items()
                     if (self.next_offset(topic, p) or 0) < target}
            remaining = deadline - loop.time()
            if not short or remaining <= 0:
                return short
            if self._wake is None or self._wake.done():
                self._wake = loop.create_future()
            try:
                # Woken by every advance; the committed floor moves without one, so look again
                # at least every 100 ms.
                await asyncio.wait_for(asyncio.shield(self._wake), min(remaining, 0.1))
            except asyncio.TimeoutError:
                pass


class EndOffsets:
    """End offsets of topic partitions, with a consumer of no group started on first use."""

    def __init__(self, bootstrap_servers: str, client_options: dict[str, Any] | None = None
                 ) -> None:
        self._bootstrap = bootstrap_servers
        self._options = client_options or {}
        self._consumer: Any = None
        self._lock = asyncio.Lock()

    async def __call__(self, topic: str, partitions: Sequence[int]) -> dict[int, int]:
        from aiokafka import TopicPartition as KafkaTP

        consumer = await self._started()
        found = await end_offsets_now(consumer, [KafkaTP(topic, p) for p in partitions])
        return {tp.partition: offset for tp, offset in found.items()}

    async def _started(self) -> Any:
        async with self._lock:
            if self._consumer is None:
                from aiokafka import AIOKafkaConsumer

                consumer = AIOKafkaConsumer(bootstrap_servers=self._bootstrap,
                                            enable_auto_commit=False, **self._options)
                await consumer.start()
                self._consumer = consumer
            return self._consumer

    async def stop(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()
