"""tables.kafka_io against a fake consumer: the end is the fetch high-watermark, nothing else."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition

from tables.kafka_io import fetch_highwaters, fetch_to_end, read_highwaters

A, B = TopicPartition("t", 0), TopicPartition("t", 1)


class FakeConsumer:
    """Partitions of ``ends[tp]`` records; a fetch returns up to ``per_fetch`` records of each
    asked partition and only then makes its high-watermark known (as a real fetch does)."""

    def __init__(self, ends: dict[TopicPartition, int], per_fetch: int = 2) -> None:
        self.ends, self.per_fetch = ends, per_fetch
        self.positions = {tp: 0 for tp in ends}
        self.known: dict[TopicPartition, int] = {}
        self.fetches = 0

    async def getmany(self, *tps: TopicPartition, timeout_ms: int = 0,
                      max_records: int | None = None) -> dict[TopicPartition, list[int]]:
        self.fetches += 1
        out = {}
        for tp in tps:
            start = self.positions[tp]
            stop = min(self.ends[tp], start + self.per_fetch)
            self.positions[tp] = stop
            self.known[tp] = self.ends[tp]
            if stop > start:
                out[tp] = list(range(start, stop))
        return out

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.known.get(tp)

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]


async def test_reads_every_partition_to_its_high_watermark() -> None:
    consumer = FakeConsumer({A: 5, B: 0})
    pending = {A, B}
    seen: dict[TopicPartition, list[int]] = {A: [], B: []}
    async for fetched in fetch_to_end(consumer, pending, timeout_ms=10):
        for tp, records in fetched.items():
            seen[tp] += records
    assert seen == {A: [0, 1, 2, 3, 4], B: []}
    assert pending == set()


async def test_gives_up_after_timeout_s_naming_what_is_left() -> None:
    consumer = FakeConsumer({A: 10**9})
    with pytest.raises(TimeoutError, match="TopicPartition"):
        async for _ in fetch_to_end(consumer, {A}, timeout_ms=10, timeout_s=0.05):
            pass


async def test_highwaters_are_learned_from_a_fetch() -> None:
    consumer = FakeConsumer({A: 7, B: 3})
    assert await fetch_highwaters(consumer, [A, B], timeout_s=5) == {A: 7, B: 3}
    assert consumer.fetches == 1


def test_a_fetch_response_is_read_into_high_watermarks_and_refusals() -> None:
    """A refused partition (Kafka's OffsetOutOfRange for an offset past the end, say) carries no
    high-watermark: it is reported as refused, never as an end of -1."""
    answered, failed = read_highwaters([("t", [(0, 0, 17, 0, [], b""), (1, 1, -1, 0, [], b"")]),
                                        ("u", [(3, 0, 0, 0, [], None)])])
    assert answered == {A: 17, TopicPartition("u", 3): 0}
    assert failed == {B: 1}
