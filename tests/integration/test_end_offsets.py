"""Read-your-writes rests on "the end offset read now counts every acknowledged record". On the
embedded broker ListOffsets does not: it answers the base offset of a partition's last batch plus
one, so a request that read it right after a batched produce waited for too little and answered
from state missing that batch's tail (a CSV import called a person identified a moment before
"unknown", 1 in 1,000). These run on the real embedded broker."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer

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
