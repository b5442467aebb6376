"""Read-your-writes rests on "the end offset read now counts every acknowledged record". On the
embedded broker ListOffsets does not: it answers the base offset of a partition's last batch plus
one, so a request that read it right after a batched produce waited for too little and answered
from state missing that batch's tail (a CSV import called a person identified a moment before
"unknown", 1 in 1,000). These run on the real embedded broker."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.consumer import fetcher
from aiokafka.protocol.offset import OffsetRequest

from app.ops import replay
from app.progress import EndOffsets
from tests.support.harness import Deployment


async def produce_one_batch(bootstrap: str, topic: str, partition: int, count: int) -> int:
    """``count`` records in one batch of one produce request; the offset of the last."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        batch = producer.create_batch()
        for n in range(count):
            assert batch.append(key=b"k", value=b"%d" % n, timestamp=None) is not None
        metadata = await (await producer.send_batch(batch, topic, partition=partition))
        return int(metadata.offset) + count - 1
    finally:
        await producer.stop()


async def test_an_end_offset_counts_every_record_of_the_last_batch(
        deployment: Deployment) -> None:
    d = deployment
    topic = d.topics.raw_events.name
    ends = EndOffsets(d.bootstrap)
    try:
        assert await ends(topic, [0, 1]) == {0: 0, 1: 0}
        last = await produce_one_batch(d.bootstrap, topic, 0, 1)
        assert await ends(topic, [0]) == {0: last + 1}
        for count in (2, 5, 40):
            last = await produce_one_batch(d.bootstrap, topic, 0, count)
            # Read right after the acknowledgement, as a request arriving next would.
            assert await ends(topic, [0, 1]) == {0: last + 1, 1: 0}, count
    finally:
        await ends.stop()


async def test_a_reader_from_the_earliest_offset_starts_at_0(
        deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    """A new group reading "from the earliest" (a replay does, on every input partition) starts
    at offset 0 on the embedded broker, through aiokafka's own reset and ``beginning_offsets``,
    and the broker is never asked for it. Tansu answers "earliest" with the batch stored first,
    which its tail race made offset 1 once (a replay short of a partition's first record):
    every process reading it answers 0 itself (``tables.torn_fetch``). The race cannot be
    forced here; what reaches the broker shows the guard is on aiokafka's real paths."""
    d = deployment
    asked: list[int] = []  # the timestamps of every ListOffsets request sent to the broker
    send = AIOKafkaClient.send

    async def sending(self: AIOKafkaClient, node_id: int, request: Any, **kwargs: Any) -> Any:
        if isinstance(request, OffsetRequest):  # (aiokafka keeps its topics as it was given)
            asked.extend(at for _, parts in request._topics for _, at in parts)
        return await send(self, node_id, request, **kwargs)

    monkeypatch.setattr(AIOKafkaClient, "send", sending)
    topic = d.topics.raw_events.name
    for count in (3, 2):
        await produce_one_batch(d.bootstrap, topic, 1, count)
    consumer = AIOKafkaConsumer(bootstrap_servers=d.bootstrap, group_id=f"{topic}-earliest",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 1)
        assert await consumer.beginning_offsets([tp]) == {tp: 0}
        consumer.assign([tp])
        first = await asyncio.wait_for(consumer.getone(tp), 10)
        assert first.offset == 0
        assert await consumer.end_offsets([tp])  # (a latest offset is still asked)
    finally:
        await consumer.stop()
    assert fetcher.OffsetResetStrategy.EARLIEST not in asked
    assert fetcher.OffsetResetStrategy.LATEST in asked


async def test_a_replay_since_a_time_starts_at_the_first_record_timestamped_then(
        deployment: Deployment) -> None:
    """``eventide replay --since`` commits its group at each raw partition's first record
    timestamped at or after the time, and at the end of a partition with none. The embedded
    broker's own ListOffsets by time goes by when it stored each batch: every batch here was
    stored after the (1970) time asked, so it answers the first one stored, offset 0, which is
    what a replay after a restart got (the input log writes every record again, timestamps
    kept); and it answers 0 for a partition with nothing stored since."""
    d = deployment
    topic = d.topics.raw_events.name
    producer = AIOKafkaProducer(bootstrap_servers=d.bootstrap, acks="all")
    await producer.start()
    try:
        for partition, stamps in ((0, (1_000, 2_000, 3_000)), (1, (1_000,))):
            for at in stamps:
                await producer.send_and_wait(topic, b"%d" % at, key=b"k", partition=partition,
                                             timestamp_ms=at)
    finally:
        await producer.stop()
    settings = d.settings.replace(state_version="since")
    offsets = await replay.start_from_time(settings, 2_500)
    assert [offsets[f"{topic}[{p}]"] for p in range(3)] == [2, 1, 0]
    tps = [TopicPartition(topic, p) for p in range(3)]
    consumer = AIOKafkaConsumer(bootstrap_servers=d.bootstrap, group_id=settings.app_id,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        committed = {tp.partition: await consumer.committed(tp) for tp in tps}
        listed = await consumer.offsets_for_times({tp: 2_500 for tp in tps[:2]})
    finally:
        await consumer.stop()
    assert committed == {0: 2, 1: 1, 2: 0}
    assert [listed[tp].offset for tp in tps[:2]] == [0, 0]  # the broker's own answer
