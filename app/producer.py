"""The one Kafka producer of a process, and the partitioner every hop agrees on.

Records are grouped per (topic, partition) into aiokafka batches and sent with one future per
batch, so a processing batch of thousands of outputs costs a handful of awaits, not one per record.
"""

from __future__ import annotations

import asyncio
import functools
from collections import defaultdict
from typing import Callable, Iterator, Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import BrokerResponseError, KafkaTimeoutError
from aiokafka.producer.message_accumulator import BatchBuilder

from app.kafka_clients import kafka_client_options
from app.settings import Settings, StartupError
from tables.records import OutRecord, by_partition, fill_batch, murmur2

__all__ = ["BrokerUnavailable", "IdempotenceRefused", "OutRecord", "Producer", "murmur2",
           "partition_for"]


@functools.lru_cache(maxsize=65_536)
def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2), as Java clients and faust compute it.

    The same people recur, so results are cached; a new key meets murmur2, compiled
    (:func:`tables.records.murmur2`).
    """
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def record_batches(records: Sequence[OutRecord], create_batch: Callable[[], BatchBuilder]
                   ) -> Iterator[tuple[str, int, BatchBuilder, list[int]]]:
    """``records`` as aiokafka batches: (topic, partition, batch, the positions in ``records`` of
    its records), each partition's records in order, a new batch where one is full.

    Records go to a batch's C builder directly (:func:`tables.records.fill_batch`, compiled),
    and the batch's count is set as its own ``append`` keeps it: aiokafka reads it for an
    idempotent producer's sequence numbers. Checked against aiokafka's ``append``, byte for
    byte (tests/unit/test_producer_batches.py)."""
    for (topic, partition), indexes in by_partition(records).items():
        start = 0
        while start < len(indexes):
            batch = create_batch()
            end = fill_batch(batch._builder, records, indexes, start)
            if end == start:  # (aiokafka's builder always takes a first record; never loop)
                raise BrokerUnavailable("aiokafka's batch builder refused a record to an empty "
                                        "batch")
            batch._relative_offset = end - start
            yield topic, partition, batch, indexes[start:end]
            start = end


class BrokerUnavailable(RuntimeError):
    """The broker did not acknowledge a write."""


class IdempotenceRefused(StartupError):
    """The broker refuses idempotent producers (EVENTIDE_IDEMPOTENT_PRODUCER=0 turns it off)."""


class Producer:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        options: dict = {
            "bootstrap_servers": settings.bootstrap_servers,
            "acks": "all",
            "linger_ms": 1,
            "max_batch_size": 1024 * 1024,
            "max_request_size": 4 * 1024 * 1024,
            "request_timeout_ms": 15_000,
            **kafka_client_options(settings),
        }
        if settings.idempotent:
            # Idempotence removes broker-side duplicates on retries; Tansu does not implement it.
            options["enable_idempotence"] = True
        self._options = options
        # aiokafka binds to the running loop at construction, so it is built in start().
        self._producer: AIOKafkaProducer = None  # type: ignore[assignment]
        self._started = False
        #: (topic, partition) → held while a batch is handed to aiokafka for it (see _send_batch).
        self._queues: dict[tuple[str, int], asyncio.Lock] = defaultdict(asyncio.Lock)

    async def start(self) -> None:
        """Connect. Raises :class:`IdempotenceRefused` when the broker answers the idempotent
        producer's first request (InitProducerId) with an error."""
        if not self._started:
            self._producer = AIOKafkaProducer(**self._options)
            try:
                await self._producer.start()
            except BrokerResponseError as exc:
                # Bootstrap failures are connection errors; a broker *answering* with an error
                # at start is refusing the producer id an idempotent producer asks for.
                await self._close_unstarted()
                if not self._settings.idempotent:
                    raise
                raise IdempotenceRefused(
                    f"the broker at {self._settings.bootstrap_servers} refused an idempotent "
                    f"producer ({type(exc).__name__}: {exc.description}); it does not "
                    "support idempotence (Tansu and some managed Kafka services do not): set "
                    "EVENTIDE_IDEMPOTENT_PRODUCER=0 (or EVENTIDE_BROKER_FLAVOR=tansu for "
                    "Tansu)") from exc
            except BaseException:
                await self._close_unstarted()
                raise
            self._started = True

    async def _close_unstarted(self) -> None:
        try:
            await self._producer.stop()
        except Exception:  # noqa: S110 - best effort: it never started
            pass

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self._producer.stop()

    async def send_one(self, record: OutRecord) -> int:
        """Send one record and return its offset once acknowledged."""
        [offset] = await self.send_all([record])
        return offset

    async def send_all(self, records: Sequence[OutRecord]) -> list[int]:
        """Send records and wait until all are acknowledged; returns each record's offset.

        Raises :class:`BrokerUnavailable` if any write is not acknowledged.
        """
        if not records:
            return []
        offsets = [0] * len(records)
        pending: list[tuple[asyncio.Future, list[int]]] = []
        try:
            for topic, partition, batch, members in record_batches(
                    records, self._producer.create_batch):
                pending.append((await self._send_batch(batch, topic, partition), members))
            for future, members in pending:
                metadata = await future
                for position, index in enumerate(members):
                    offsets[index] = metadata.offset + position
        except BaseException as exc:
            for future, _ in pending:  # the caller hears of one failure; the others are handled
                future.add_done_callback(_retrieve)
            if not isinstance(exc, Exception) or isinstance(exc, BrokerUnavailable):
                raise  # a cancellation, or already the caller's error
            # aiokafka raises a family of errors; the caller needs one
            raise BrokerUnavailable(f"broker did not acknowledge the write: {exc!r}") from exc
        return offsets

    async def _send_batch(self, batch, topic: str, partition: int) -> asyncio.Future:
        """Hand ``batch`` to aiokafka, one writer per partition at a time (in arrival order).
        aiokafka's accumulator makes a batch wait for the partition's previous one to drain, but
        counts each wait from the first, so behind a few dozen others a batch was refused long
        before its timeout (503s under load: tests/integration/test_producer_load.py). Here the
        queue is ours, and its wait counts once against the producer's request timeout."""
        queue = self._queues[(topic, partition)]
        if queue.locked():
            try:
                await asyncio.wait_for(queue.acquire(),
                                       self._options["request_timeout_ms"] / 1000)
            except asyncio.TimeoutError:
                raise KafkaTimeoutError("waited a request timeout to hand the batch over") \
                    from None
        else:
            await queue.acquire()  # free: taken at once (wait_for would cost a turn of the loop)
        try:
            return await self._producer.send_batch(batch, topic, partition=partition)
        finally:
            queue.release()


def _retrieve(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()
