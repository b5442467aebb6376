"""The one Kafka producer of a process, and the partitioner every hop agrees on.

Records are grouped per (topic, partition) into aiokafka batches and sent with one future per
batch, so a processing batch of thousands of outputs costs a handful of awaits, not one per record.
"""

from __future__ import annotations

import asyncio
import functools
import struct
from collections import defaultdict
from typing import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import BrokerResponseError, KafkaTimeoutError

from app.kafka_clients import kafka_client_options
from app.settings import Settings, StartupError
from tables.records import OutRecord

__all__ = ["BrokerUnavailable", "IdempotenceRefused", "OutRecord", "Producer", "partition_for"]


@functools.lru_cache(maxsize=65_536)
def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2), as Java clients and faust compute it.

    murmur2 is pure Python; the same people recur, so results are cached.
    """
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@functools.lru_cache(maxsize=64)
def _words(count: int) -> struct.Struct:
    return struct.Struct(f"<{count}I")


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``), as aiokafka's
    ``murmur2`` computes it, at about half its cost (1.7 against 3.3 µs for a person id): the
    4-byte words unpacked in one call, each step masked once. Every new person's key meets it
    (the cache above holds the recent ones); tested against aiokafka's on random keys."""
    length = len(data)
    m = 0x5BD1E995
    h = 0x9747B28C ^ length
    for k in _words(length >> 2).unpack_from(data):
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        h = ((h * m) & 0xFFFFFFFF) ^ ((k * m) & 0xFFFFFFFF)
    rest = length & 3
    if rest:
        tail = length & ~3
        if rest == 3:
            h ^= data[tail + 2] << 16
        if rest >= 2:
            h ^= data[tail + 1] << 8
        h = ((h ^ data[tail]) * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    return h ^ (h >> 15)


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
        groups: dict[tuple[str, int], list[int]] = defaultdict(list)
        for index, record in enumerate(records):
            groups[(record.topic, record.partition)].append(index)
        offsets = [0] * len(records)
        pending: list[tuple[asyncio.Future, list[int]]] = []
        try:
            for (topic, partition), indexes in groups.items():
                batch = self._producer.create_batch()
                members: list[int] = []
                for index in indexes:
                    record = records[index]
                    headers = record.headers  # (aiokafka only iterates it)
                    if batch.append(key=record.key, value=record.value,
                                    timestamp=record.timestamp_ms, headers=headers) is None:
                        pending.append((await self._send_batch(batch, topic, partition), members))
                        batch, members = self._producer.create_batch(), []
                        batch.append(key=record.key, value=record.value,
                                     timestamp=record.timestamp_ms, headers=headers)
                    members.append(index)
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
