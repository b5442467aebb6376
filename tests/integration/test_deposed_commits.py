"""The broker refuses an offset commit from a deposed group member.

The changelog's fences (docs/architecture.md, "Units in the changelog, and fences") void what a
deposed owner still writes; that its offset commit is refused too is the broker's part: were it
accepted, the group's offset could move past inputs whose unit a fence voided, and the owner after
next would skip them. Kafka refuses it; this pins that the embedded broker does as well.
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalGenerationError, UnknownMemberIdError, for_code
from aiokafka.protocol.commit import OffsetCommitRequest

from tests.support.harness import Deployment, eventually, produce_raw

pytestmark = pytest.mark.integration


async def test_a_deposed_members_commit_is_refused_and_moves_no_offset(
        deployment: Deployment) -> None:
    d = deployment
    topic = d.topics.raw_events.name
    group = f"{d.settings.topic_prefix}-deposed"
    tp = TopicPartition(topic, 0)
    await produce_raw(d.bootstrap, topic, [(b"k", b"v")] * 10, partition=0)

    def member() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(topic, bootstrap_servers=d.bootstrap, group_id=group,
                                enable_auto_commit=False, auto_offset_reset="earliest")

    first = member()
    await first.start()
    second = member()
    try:
        await eventually(lambda: _assigned(first), timeout_s=30)
        coordinator = first._coordinator
        deposed = (coordinator.generation, coordinator.member_id)
        await first.commit({tp: 3})

        # A second member joins: the group moves to a new generation, the first member's old
        # one is what an owner kicked out of the group (without knowing it yet) commits under.
        await second.start()

        async def rebalanced() -> None:
            await asyncio.gather(_assigned(first), _assigned(second))
            assert first._coordinator.generation != deposed[0]
        await eventually(rebalanced, timeout_s=60)

        async def commit_as(generation: int, member_id: str, offset: int) -> int:
            request = OffsetCommitRequest(group, generation, member_id, -1,
                                          [(topic, [(0, offset, "")])])
            response = await first._client.send(coordinator.coordinator_id, request)
            [(_, [(_, error)])] = response.topics
            return int(error)

        assert for_code(await commit_as(*deposed, 7)) is IllegalGenerationError
        assert for_code(await commit_as(deposed[0], "a-member-it-never-had", 8)) in (
            IllegalGenerationError, UnknownMemberIdError)
        assert await first.committed(tp) == 3
        # The same request under the generation now running is taken: the refusals above were
        # about the generation and the member, not the request.
        assert await commit_as(first._coordinator.generation, first._coordinator.member_id,
                               5) == 0
        assert await first.committed(tp) == 5
    finally:
        await asyncio.gather(first.stop(), second.stop())


async def _assigned(consumer: AIOKafkaConsumer) -> None:
    await consumer.getmany(timeout_ms=200)
    assert consumer.assignment(), "no partitions assigned yet"
