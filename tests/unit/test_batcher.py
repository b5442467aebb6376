"""Unit tests for app.ingest.batcher.IngestBatcher against a fake producer (no broker)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any, Sequence

import orjson
import pytest

from app.ingest.batcher import IngestBatcher
from app.model import decode_envelope
from app.producer import BrokerUnavailable, OutRecord, partition_for

TOPIC = "eventide.raw.events"
PARTITIONS = 4


class FakeProducer:
    """Records what would be produced; fails the partitions listed in ``fail_partitions``."""

    def __init__(self, *, fail_partitions: set[int] | None = None, delay_s: float = 0.0) -> None:
        self.records: list[OutRecord] = []
        self.calls = 0
        self.fail_partitions = fail_partitions or set()
        self.delay_s = delay_s

    async def send_all(self, records: Sequence[OutRecord]) -> list[int]:
        self.calls += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if any(r.partition in self.fail_partitions for r in records):
            raise BrokerUnavailable("no acks")
        start = len(self.records)
        self.records.extend(records)
        return list(range(start, start + len(records)))


def keys_on(partition: int, count: int) -> list[str]:
    found = []
    for n in itertools.count():
        key = f"cust-{n}"
        if partition_for(key.encode(), PARTITIONS) == partition:
            found.append(key)
            if len(found) == count:
                return found
    raise AssertionError("unreachable")


def item(n: int, key: str) -> dict[str, Any]:
    return {"op": "event", "id": f"ID{n:03d}", "customer": key, "name": "e", "received_at": n}


def batcher(producer: FakeProducer, linger_s: float = 0.05, max_items: int = 100) -> IngestBatcher:
    return IngestBatcher(producer, linger_s=linger_s, max_items=max_items)  # type: ignore[arg-type]


async def test_concurrent_submits_to_one_partition_become_one_record_in_submit_order() -> None:
    producer = FakeProducer()
    b = batcher(producer)
    keys = keys_on(1, 3)
    items = [item(i, keys[i % 3]) for i in range(7)]
    await asyncio.wait_for(
        asyncio.gather(*(b.submit(TOPIC, PARTITIONS, it["customer"], it) for it in items)), 2)
    assert len(producer.records) == 1
    [record] = producer.records
    assert (record.topic, record.partition) == (TOPIC, 1)
    assert record.key == keys[0].encode()
    assert decode_envelope(record.value) == items
    assert producer.calls == 1


async def test_submit_returns_only_after_the_record_is_acknowledged() -> None:
    producer = FakeProducer(delay_s=0.05)
    b = batcher(producer, linger_s=0.01)
    [key] = keys_on(0, 1)
    task = asyncio.ensure_future(b.submit(TOPIC, PARTITIONS, key, item(1, key)))
    await asyncio.sleep(0.03)            # linger passed, the send is in flight
    assert not task.done()
    await asyncio.wait_for(task, 2)
    assert len(producer.records) == 1


async def test_different_partitions_get_different_records() -> None:
    producer = FakeProducer()
    b = batcher(producer)
    [k0] = keys_on(0, 1)
    k2a, k2b = keys_on(2, 2)
    items = [item(1, k0), item(2, k2a), item(3, k2b), item(4, k0)]
    await asyncio.wait_for(
        asyncio.gather(*(b.submit(TOPIC, PARTITIONS, it["customer"], it) for it in items)), 2)
    by_partition = {r.partition: decode_envelope(r.value) for r in producer.records}
    assert len(producer.records) == 2
    assert by_partition == {0: [items[0], items[3]], 2: [items[1], items[2]]}


async def test_different_topics_are_different_batches() -> None:
    producer = FakeProducer()
    b = batcher(producer)
    [key] = keys_on(3, 1)
    await asyncio.wait_for(asyncio.gather(
        b.submit(TOPIC, PARTITIONS, key, item(1, key)),
        b.submit("eventide.raw.identifies", PARTITIONS, key, item(2, key))), 2)
    assert sorted((r.topic, r.partition) for r in producer.records) == [
        ("eventide.raw.events", 3), ("eventide.raw.identifies", 3)]


async def test_max_items_forces_a_flush_before_the_linger() -> None:
    producer = FakeProducer()
    b = batcher(producer, linger_s=30.0, max_items=3)
    keys = keys_on(1, 4)
    items = [item(i, keys[i]) for i in range(4)]
    first_three = asyncio.gather(*(b.submit(TOPIC, PARTITIONS, it["customer"], it)
                                   for it in items[:3]))
    await asyncio.wait_for(first_three, 1)          # no 30 s linger needed
    assert [decode_envelope(r.value) for r in producer.records] == [items[:3]]
    fourth = asyncio.ensure_future(b.submit(TOPIC, PARTITIONS, items[3]["customer"], items[3]))
    await asyncio.sleep(0.05)
    assert not fourth.done(), "the fourth item opens a new batch that waits for its linger"
    await b.drain()
    await asyncio.wait_for(fourth, 1)
    assert [decode_envelope(r.value) for r in producer.records] == [items[:3], items[3:]]


async def test_submit_many_splits_into_full_batches() -> None:
    producer = FakeProducer()
    b = batcher(producer, linger_s=0.01, max_items=2)
    keys = keys_on(2, 5)
    items = [(k, item(i, k)) for i, k in enumerate(keys)]
    await asyncio.wait_for(b.submit_many(TOPIC, PARTITIONS, items), 2)
    assert [len(decode_envelope(r.value)) for r in producer.records] == [2, 2, 1]
    assert [it for r in producer.records for it in decode_envelope(r.value)] == [
        it for _, it in items]


async def test_a_producer_failure_reaches_every_waiter_of_that_batch_only() -> None:
    producer = FakeProducer(fail_partitions={1})
    b = batcher(producer)
    failing = keys_on(1, 3)
    fine = keys_on(0, 2)
    bad_tasks = [asyncio.ensure_future(b.submit(TOPIC, PARTITIONS, k, item(i, k)))
                 for i, k in enumerate(failing)]
    good_tasks = [asyncio.ensure_future(b.submit(TOPIC, PARTITIONS, k, item(10 + i, k)))
                  for i, k in enumerate(fine)]
    results = await asyncio.wait_for(
        asyncio.gather(*bad_tasks, *good_tasks, return_exceptions=True), 2)
    assert all(isinstance(r, BrokerUnavailable) for r in results[:3]), results
    assert results[3:] == [None, None]
    assert [r.partition for r in producer.records] == [0]


async def test_a_failed_batch_does_not_poison_the_next_one() -> None:
    producer = FakeProducer(fail_partitions={1})
    b = batcher(producer, linger_s=0.01)
    [key] = keys_on(1, 1)
    with pytest.raises(BrokerUnavailable):
        await asyncio.wait_for(b.submit(TOPIC, PARTITIONS, key, item(1, key)), 2)
    producer.fail_partitions.clear()
    await asyncio.wait_for(b.submit(TOPIC, PARTITIONS, key, item(2, key)), 2)
    assert [decode_envelope(r.value) for r in producer.records] == [[item(2, key)]]


async def test_drain_flushes_open_batches_and_waits_for_them() -> None:
    producer = FakeProducer(delay_s=0.02)
    b = batcher(producer, linger_s=30.0)
    [k0] = keys_on(0, 1)
    [k3] = keys_on(3, 1)
    tasks = [asyncio.ensure_future(b.submit(TOPIC, PARTITIONS, k, item(i, k)))
             for i, k in enumerate([k0, k3, k0])]
    await asyncio.sleep(0)                  # let the submits join their batches
    assert producer.records == []
    await asyncio.wait_for(b.drain(), 1)
    assert sorted((r.partition, len(decode_envelope(r.value))) for r in producer.records) == [
        (0, 2), (3, 1)]
    await asyncio.wait_for(asyncio.gather(*tasks), 1)


async def test_drain_with_nothing_open_is_a_no_op() -> None:
    producer = FakeProducer()
    b = batcher(producer)
    await asyncio.wait_for(b.drain(), 1)
    assert producer.records == [] and producer.calls == 0


async def test_the_envelope_is_plain_json_with_items() -> None:
    producer = FakeProducer()
    b = batcher(producer, linger_s=0.0)
    [key] = keys_on(2, 1)
    await asyncio.wait_for(b.submit(TOPIC, PARTITIONS, key, item(1, key)), 2)
    assert orjson.loads(producer.records[0].value) == {"items": [item(1, key)]}


async def test_waiting_counts_submitted_items_until_answered_and_stop_lingering_sends_now() -> None:
    producer = FakeProducer()
    b = batcher(producer, linger_s=30.0)  # a linger no test waits for
    keys = keys_on(1, 2) + keys_on(3, 1)
    tasks = [asyncio.ensure_future(b.submit(TOPIC, PARTITIONS, key, item(n, key)))
             for n, key in enumerate(keys)]
    await asyncio.sleep(0)
    assert b.waiting == 3 and producer.records == []
    b.stop_lingering()
    await asyncio.wait_for(asyncio.gather(*tasks), 2)
    assert b.waiting == 0
    assert sorted(r.partition for r in producer.records) == [1, 3]
    # After the stop began, a late request is sent at the next loop turn, not after the linger.
    [late_key] = keys_on(0, 1)
    await asyncio.wait_for(b.submit(TOPIC, PARTITIONS, late_key, item(9, late_key)), 2)
    assert len(producer.records) == 3
