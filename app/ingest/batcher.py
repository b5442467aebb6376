"""Coalesce concurrently accepted items into one batch record per topic partition.

A request's item joins the open batch of its partition; the batch is produced after
``linger_s`` or when full, and every request in it is answered once the broker acknowledged that
one record and, in embedded mode, once it is flushed to the local input log
(:mod:`app.ops.input_log`): a 200 means "durably in the log" in every mode. Under load this turns thousands of
requests into tens of records; a lone request waits only the linger.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Sequence

from app.model import encode_envelope
from app.producer import OutRecord, Producer, partition_for


@dataclass
class _OpenBatch:
    items: list[dict[str, Any]] = field(default_factory=list)
    key: bytes = b""
    done: asyncio.Future | None = None
    timer: asyncio.TimerHandle | None = None


#: Waits until produced records are on stable storage (the embedded mode's input log).
Durability = Callable[[Sequence[OutRecord], Sequence[int]], Awaitable[None]]


class IngestBatcher:
    def __init__(self, producer: Producer, *, linger_s: float, max_items: int,
                 durable: Durability | None = None) -> None:
        self._producer = producer
        self.durable = durable
        self._linger_s = linger_s
        self._max_items = max_items
        self._open: dict[tuple[str, int], _OpenBatch] = {}
        self._in_flight: set[asyncio.Task] = set()
        #: Items submitted and not yet answered: what a stop would now have to drain.
        self.waiting = 0

    async def submit(self, topic: str, partitions: int, key: str, item: dict[str, Any]) -> None:
        """Return once ``item`` is acknowledged by the broker; raise ``BrokerUnavailable`` if not."""
        await self.submit_many(topic, partitions, [(key, item)])

    async def submit_many(self, topic: str, partitions: int,
                          keyed_items: list[tuple[str, dict[str, Any]]]) -> None:
        waits = []
        loop = asyncio.get_running_loop()
        for key, item in keyed_items:
            raw_key = key.encode()
            slot = (topic, partition_for(raw_key, partitions))
            batch = self._open.get(slot)
            if batch is None:
                batch = self._open[slot] = _OpenBatch(key=raw_key, done=loop.create_future())
                batch.timer = loop.call_later(self._linger_s, self._flush, slot)
            batch.items.append(item)
            waits.append(batch.done)
            if len(batch.items) >= self._max_items:
                self._flush(slot)
        self.waiting += len(keyed_items)
        try:
            for done in set(waits):
                await asyncio.shield(done)  # type: ignore[arg-type]
        finally:
            self.waiting -= len(keyed_items)

    def _flush(self, slot: tuple[str, int]) -> None:
        batch = self._open.pop(slot, None)
        if batch is None:
            return
        if batch.timer is not None:
            batch.timer.cancel()
        try:
            record = OutRecord(slot[0], slot[1], batch.key, encode_envelope(batch.items),
                               timestamp_ms=int(time.time() * 1000))
        except Exception as exc:  # never leave the batch's requests waiting forever
            if batch.done is not None and not batch.done.done():
                batch.done.set_exception(exc)
            return
        task = asyncio.ensure_future(self._send(record, batch.done))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _send(self, record: OutRecord, done: asyncio.Future | None) -> None:
        assert done is not None
        try:
            offsets = await self._producer.send_all([record])
            if self.durable is not None:
                await self.durable([record], offsets)
        except Exception as exc:
            if not done.done():
                done.set_exception(exc)
            return
        if not done.done():
            done.set_result(None)

    def stop_lingering(self) -> None:
        """Send every open batch now, and from now on each batch at the next loop turn: a stop
        waits for the broker, never for the linger."""
        self._linger_s = 0.0
        for slot in list(self._open):
            self._flush(slot)

    async def drain(self) -> None:
        """Send every open batch and wait for all in-flight sends (used at shutdown)."""
        for slot in list(self._open):
            self._flush(slot)
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
