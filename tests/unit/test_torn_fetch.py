"""The guard against fetches that skip records (tables.torn_fetch): aiokafka's own records of a
partition, built from record batches at chosen offsets as a fetch response carries them. No
broker: the tail race it guards against is shown on the real one in docs/architecture.md."""

from __future__ import annotations

from typing import Iterator

import pytest
from aiokafka import TopicPartition
from aiokafka.consumer import fetcher

from tables import decoded_records, torn_fetch
from tests.support.record_batches import partition_records, record_batch

TP = TopicPartition("t-torn", 0)


def batch(*offsets: int) -> bytes:
    """A record batch at consecutive ``offsets``."""
    assert list(offsets) == list(range(offsets[0], offsets[0] + len(offsets)))
    return record_batch(offsets[0], [(b"k", b"v", [])] * len(offsets))


def fetched(fetch_offset: int, *batches: bytes) -> tuple[list[int], int]:
    """(offsets read, the offset the next fetch starts from) of one fetch's records."""
    records = partition_records(TP, fetch_offset, *batches)
    return [record.offset for record in records], records.next_fetch_offset


@pytest.fixture
def guarded(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, float]]:
    clock = {"now": 1000.0}
    monkeypatch.setattr(fetcher, "PartitionRecords", fetcher.PartitionRecords)
    monkeypatch.setattr(fetcher.Fetcher, "_proc_offset_request",
                        fetcher.Fetcher._proc_offset_request)
    monkeypatch.setattr(torn_fetch.time, "monotonic", lambda: clock["now"])
    torn_fetch._suspected.clear()
    torn_fetch.install()
    yield clock


def test_a_fetch_that_skips_a_batch_ends_before_it_and_is_fetched_again(
        guarded: dict[str, float]) -> None:
    """Offsets 3-5 not served yet, 6-7 served: the fetch gives 0-2, and the next one starts at
    3, where the batch turns up (what was measured on the embedded broker)."""
    assert fetched(0, batch(0, 1, 2), batch(6, 7)) == ([0, 1, 2], 3)
    assert fetched(3, batch(3, 4, 5), batch(6, 7)) == ([3, 4, 5, 6, 7], 8)


def test_a_fetch_whose_first_batch_is_past_the_position_gives_nothing(
        guarded: dict[str, float]) -> None:
    assert fetched(3, batch(6, 7)) == ([], 3)


def test_a_fetch_from_inside_a_batch_is_no_jump(guarded: dict[str, float]) -> None:
    assert fetched(1, batch(0, 1, 2), batch(3)) == ([1, 2, 3], 4)


def test_a_jump_still_there_after_a_while_is_taken(guarded: dict[str, float]) -> None:
    """Records really gone: the reader is held back a few fetches, never stalled for good."""
    for _ in range(torn_fetch.ACCEPT_AFTER_FETCHES):
        assert fetched(3, batch(6, 7)) == ([], 3)
    guarded["now"] += torn_fetch.ACCEPT_AFTER_S
    assert fetched(3, batch(6, 7)) == ([6, 7], 8)


def test_unguarded_aiokafka_takes_the_jump_and_loses_the_records(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Why the guard exists: without it the position moves past 3-5."""
    monkeypatch.setattr(fetcher, "PartitionRecords", decoded_records.DecodedRecords.__base__)
    assert fetched(0, batch(0, 1, 2), batch(6, 7)) == ([0, 1, 2, 6, 7], 8)


def test_a_runtime_counts_torn_fetches_and_nothing_else_of_another_runtime(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process apps (agent tests) are built one after another: each new runtime's counters
    take over the two counts, never the previous runtime's own counters."""
    monkeypatch.setattr(torn_fetch, "stats", dict.fromkeys(torn_fetch.COUNTERS, 0))
    first: dict[str, int] = {"verdict:new": 5}
    torn_fetch.count_into(first)
    torn_fetch.stats["torn_fetches"] += 1
    second: dict[str, int] = {}
    torn_fetch.count_into(second)
    torn_fetch.stats["torn_fetches"] += 1
    assert first == {"verdict:new": 5, "torn_fetches": 1, "fetch_jumps_accepted": 0}
    assert second == {"torn_fetches": 2, "fetch_jumps_accepted": 0}


async def test_the_earliest_offset_is_0_and_the_broker_is_asked_the_rest(
        guarded: dict[str, float], monkeypatch: pytest.MonkeyPatch) -> None:
    """Tansu answers "earliest" with the batch stored first, which the tail race can make offset
    1: the guard answers 0 itself, and asks the broker only what else was asked (here, the
    latest offset of another partition), as aiokafka would have."""
    asked: list[dict[str, list[tuple[int, int]]]] = []

    async def broker(self: object, node_id: int, topic_data: dict) -> dict:
        asked.append({topic: list(parts) for topic, parts in topic_data.items()})
        return {TopicPartition(topic, partition): (1, 1234)
                for topic, parts in topic_data.items() for partition, _ in parts}

    monkeypatch.setattr(torn_fetch, "_list_offsets", broker)
    offsets = await fetcher.Fetcher._proc_offset_request(
        None, 0, {"t": [(0, fetcher.OffsetResetStrategy.EARLIEST),
                        (1, fetcher.OffsetResetStrategy.LATEST)]})
    assert offsets == {TopicPartition("t", 0): (0, None), TopicPartition("t", 1): (1, 1234)}
    assert asked == [{"t": [(1, fetcher.OffsetResetStrategy.LATEST)]}]
    asked.clear()
    assert await fetcher.Fetcher._proc_offset_request(
        None, 0, {"t": [(2, fetcher.OffsetResetStrategy.EARLIEST)]}) == {
            TopicPartition("t", 2): (0, None)}
    assert asked == []  # nothing left to ask
