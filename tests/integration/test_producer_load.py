"""The producer under many concurrent writers to one partition (the HTTP tier under load): every
write is acknowledged, in order, none refused for a queue it waited in.

aiokafka's accumulator lets a batch wait for the partition's previous batch to drain, but counts
that wait against its timeout cumulatively (each wait subtracts the time since the first), so a
batch queued behind a few dozen others was refused after well under its 15 s: 64 clients posting
batches of 100 events got 8-18% 503s (bench/results/20261130-201157.json)."""

from __future__ import annotations

import asyncio

import pytest

from app.producer import Producer
from tables.records import OutRecord
from tests.support.harness import Deployment, read_topic

pytestmark = pytest.mark.integration

WRITERS = 300
RECORDS_EACH = 20


async def test_hundreds_of_concurrent_writes_to_one_partition_are_all_acknowledged_in_order(
        deployment: Deployment) -> None:
    topic = deployment.topics.raw_events.name
    producer = Producer(deployment.settings)
    await producer.start()
    try:
        async def write(writer: int) -> list[int]:
            return await producer.send_all([
                OutRecord(topic, 0, f"w{writer}".encode(), f"{writer}:{n}:{'x' * 2000}".encode())
                for n in range(RECORDS_EACH)])

        offsets = await asyncio.wait_for(
            asyncio.gather(*(write(writer) for writer in range(WRITERS))), 120)
    finally:
        await producer.stop()
    for each in offsets:
        assert each == list(range(each[0], each[0] + RECORDS_EACH)), "a write's records adjoin"
    stored = [r for r in await read_topic(deployment.settings.bootstrap_servers, topic,
                                          partitions=deployment.settings.partitions)
              if r.partition == 0]
    assert len(stored) == WRITERS * RECORDS_EACH
    for writer, each in enumerate(offsets):
        values = [stored[offset].value.split(b":")[:2] for offset in each]
        assert values == [[str(writer).encode(), str(n).encode()] for n in range(RECORDS_EACH)]
