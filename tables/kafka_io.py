"""Reading partitions to their end, the one way every reader here does it.

The end of a partition is its *fetch high-watermark* (``consumer.highwater(tp)``, learned from a
fetch), never ListOffsets: the embedded broker (Tansu) can under-report ListOffsets after batched
produces (docs/architecture.md). This module sits in ``tables/`` because the state layer needs it
and ``tables/`` imports nothing from ``app/``; app/ and bench/ use it from here.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any, AsyncIterator, Iterable, Mapping, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError, OffsetOutOfRangeError
from aiokafka.protocol.fetch import FetchRequest

#: The wait a high-watermark fetch allows (it asks for 0 bytes, so it is answered at once).
FETCH_WAIT_MS = 10
#: What ``AIOKafkaConsumer.getmany`` returns: records per partition.
Fetched = dict[TopicPartition, list[Any]]


async def at_end(consumer: AIOKafkaConsumer, tp: TopicPartition) -> bool:
    """Whether ``consumer`` has read ``tp`` up to its fetch high-watermark (False until a fetch
    has told it the high-watermark)."""
    highwater = consumer.highwater(tp)
    return highwater is not None and bool(await consumer.position(tp) >= highwater)


async def drop_finished(consumer: AIOKafkaConsumer, pending: set[TopicPartition]) -> None:
    """Remove from ``pending`` every partition read to its fetch high-watermark."""
    for tp in list(pending):
        if await at_end(consumer, tp):
            pending.discard(tp)


async def fetch_to_end(consumer: AIOKafkaConsumer, pending: set[TopicPartition], *,
                       timeout_ms: int, max_records: int | None = None,
                       timeout_s: float | None = None) -> AsyncIterator[Fetched]:
    """Yield each fetch of the ``pending`` partitions (from wherever ``consumer`` stands) until
    every one has reached its fetch high-watermark. A partition leaves ``pending`` as it reaches
    its end, so a caller that gives up (no progress, say) can tell which are left.

    ``timeout_ms``: how long one fetch waits for records; ``timeout_s``: raise TimeoutError when
    partitions are still pending after that long (checked before each fetch)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while pending:
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"not read to the end in {timeout_s:g}s: "
                               f"{sorted(map(str, pending))}")
        yield await consumer.getmany(*pending, timeout_ms=timeout_ms, max_records=max_records)
        await drop_finished(consumer, pending)


async def fetch_highwaters(consumer: AIOKafkaConsumer, tps: Iterable[TopicPartition], *,
                           timeout_s: float) -> dict[TopicPartition, int]:
    """The fetch high-watermark of each of ``tps`` (assigned and positioned by the caller), found
    by fetching one record at a time until each is known; the partitions still unknown after
    ``timeout_s`` are left out."""
    wanted = list(tps)
    found: dict[TopicPartition, int] = {}
    deadline = time.monotonic() + timeout_s
    while len(found) < len(wanted) and time.monotonic() < deadline:
        await consumer.getmany(*[tp for tp in wanted if tp not in found], timeout_ms=200,
                               max_records=1)
        for tp in wanted:
            highwater = consumer.highwater(tp)
            if highwater is not None:
                found[tp] = highwater
    return found


async def first_offsets_at_or_after(consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition],
                                    since_ms: int, *, timeout_s: float
                                    ) -> dict[TopicPartition, int]:
    """For each of ``tps``, the offset of its first record timestamped at or after ``since_ms``,
    or its end when it has none: what Kafka answers a ListOffsets by time, found by reading each
    partition from offset 0 (``consumer`` is assigned them here); TimeoutError after
    ``timeout_s``.

    For the embedded broker, whose ListOffsets by time answers by when it *stored* each batch,
    not by the records' timestamps (Tansu 0.6.0's ``list_offsets``): the batch stored first
    after the time, which after a restart (every record written again from the input log) is
    offset 0, and under its tail race may be a later batch than the first; and 0 for a partition
    with no batch stored since. Reading costs the records up to the answer, once per replay."""
    consumer.assign(list(tps))
    for tp in tps:
        consumer.seek(tp, 0)
    found: dict[TopicPartition, int] = {}
    pending = set(tps)
    async for fetched in fetch_to_end(consumer, pending, timeout_ms=200, timeout_s=timeout_s):
        for tp, records in fetched.items():
            first = next((r.offset for r in records if r.timestamp >= since_ms), None)
            if first is not None:
                found[tp] = first
                pending.discard(tp)  # (the rest of it is not needed)
    # The others were read to their high-watermark: fetch_to_end ends a partition only there.
    return {tp: found[tp] if tp in found else int(consumer.highwater(tp)) for tp in tps}


async def end_offsets_now(consumer: AIOKafkaConsumer, tps: Sequence[TopicPartition]
                          ) -> dict[TopicPartition, int]:
    """The end offset of each of ``tps`` now: every record acknowledged before this call is below
    it. ``consumer`` needs no assignment.

    ListOffsets alone is not enough: Tansu answers the base offset of a partition's last batch
    plus one, so the rest of a batch produced in one request is not counted until the next one
    arrives (measured: 3 records at offsets 3–5, ListOffsets said 4). It is a lower bound, and a
    valid offset to fetch at: one Fetch there, which returns at once, reports the partition's
    fetch high-watermark, which counts every record."""
    listed = {tp: int(offset) for tp, offset in (await consumer.end_offsets(list(tps))).items()}
    found = await highwaters_at(consumer, listed)
    return {tp: max(offset, found.get(tp, offset)) for tp, offset in listed.items()}


async def highwaters_at(consumer: AIOKafkaConsumer, offsets: Mapping[TopicPartition, int]
                        ) -> dict[TopicPartition, int]:
    """The fetch high-watermark of each partition, as the broker reports it to one Fetch per
    leader sent now at the given offsets: every record acknowledged before the call is below it.
    A partition the response leaves out is left out.

    The Fetch goes through ``consumer``'s client without an assignment. An assignment costs a
    metadata request each time it changes (two for assign-then-unassign, the second one for
    every topic), and an assigned consumer keeps fetching between calls. An offset with a record
    at it (or past it) answers at once; at the end, the broker holds the Fetch for
    ``FETCH_WAIT_MS``. (Tansu answers a Fetch that may wait 0 ms with no partitions at all.)"""
    client = consumer._client
    by_leader: dict[int, list[TopicPartition]] = defaultdict(list)
    for tp in offsets:
        leader = client.cluster.leader_for_partition(tp)
        if leader is None:  # a topic this client has not looked up yet
            await client.add_topic(tp.topic)
            leader = client.cluster.leader_for_partition(tp)
        if leader is None or leader < 0:
            client.force_metadata_update()  # (the retry looks it up again)
            raise KafkaError(f"no leader known for {tp.topic}[{tp.partition}]")
        by_leader[leader].append(tp)
    found: dict[TopicPartition, int] = {}
    out_of_range: list[TopicPartition] = []

    async def fetch(leader: int, wanted: list[TopicPartition]) -> None:
        topics: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
        for tp in wanted:
            topics[tp.topic].append((tp.partition, offsets[tp], 1))
        # At least 0 bytes, so answered without waiting for records; at most one batch per
        # partition.
        response = await client.send(leader, FetchRequest(FETCH_WAIT_MS, 0, 1, 0,
                                                          list(topics.items())))
        answered, failed = read_highwaters(response.topics)
        found.update(answered)
        out_of_range.extend(tp for tp, code in failed.items()
                            if code == OffsetOutOfRangeError.errno)
        if any(code != OffsetOutOfRangeError.errno for code in failed.values()):
            client.force_metadata_update()  # (a moved leader: the retry asks the new one)
            raise KafkaError(f"fetching high-watermarks failed: {failed}")

    await asyncio.gather(*(fetch(leader, wanted) for leader, wanted in by_leader.items()))
    if out_of_range:
        # Kafka refuses an offset past the end (or below the start) and reports no
        # high-watermark with the refusal; its ListOffsets is exact (only Tansu's is not, and
        # Tansu answers such a Fetch with its high-watermark).
        ends = await consumer.end_offsets(out_of_range)
        found.update({tp: int(offset) for tp, offset in ends.items()})
    return found


def read_highwaters(topics: Iterable[tuple[str, Iterable[tuple[Any, ...]]]]
                    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """A Fetch response's partitions: the high-watermark of each one answered, and the error
    code of each one refused."""
    answered: dict[TopicPartition, int] = {}
    failed: dict[TopicPartition, int] = {}
    for topic, partitions in topics:
        for partition, error_code, highwater, *_ in partitions:
            if error_code:
                failed[TopicPartition(topic, partition)] = error_code
            else:
                answered[TopicPartition(topic, partition)] = int(highwater)
    return answered, failed
