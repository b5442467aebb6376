"""Rebuild every derived table and stream of a fresh state version from the input topics.

A state version is a consumer group and a namespace of derived topics and changelogs (see
app/topics.py). Replaying is running a worker of a new version: its group has no committed
offsets, so it reads the input topics from the beginning (or, with ``--since``, from the first
offset at or after a time), and everything it derives lands in the new namespace beside the live
version, which is untouched. Progress is the new group's committed offsets against the end of
each input topic, then of its own internal hops.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import AsyncIterator

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from app.kafka_clients import kafka_client_options
from app.settings import Settings
from app.topics import Topics, build_topics
from tables.kafka_io import fetch_highwaters, first_offsets_at_or_after


def inputs(topics: Topics) -> list:
    """The topics that are the source of truth (kept in the input log, replayed), and the
    console's session revocations (kept in the input log too, so that a restart of the embedded
    broker, whose log is in memory, does not bring signed-out sessions back)."""
    return [*topics.raw, topics.segment_definitions, topics.session_revocations]


def internal_hops(topics: Topics) -> list:
    return [topics.person_events, topics.identity_commands, topics.anonymous_links]


async def next_version(settings: Settings) -> str:
    """The first ``vN`` whose topics do not exist yet."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers,
                                **kafka_client_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    number = 1
    while f"{settings.topic_prefix}.v{number}.person.events" in existing:
        number += 1
    return f"v{number}"


async def start_from_time(settings: Settings, since_ms: int) -> dict[str, int]:
    """Commit the version's group at the first offsets at or after ``since_ms`` on raw topics.

    Segment definitions are read from the beginning anyway: a window is evaluated against every
    current definition. On the embedded broker the offsets are found by reading the raw topics,
    since its ListOffsets by time does not go by the records' timestamps
    (``tables.kafka_io.first_offsets_at_or_after``).
    """
    topics = build_topics(settings)
    tps = [TopicPartition(spec.name, p) for spec in topics.raw for p in range(spec.partitions)]
    offsets = (await read_first_offsets(settings, tps, since_ms) if settings.tansu
               else await listed_first_offsets(settings, tps, since_ms))
    async with consumer_of(settings, group_id=settings.app_id) as consumer:
        consumer.assign(tps)  # aiokafka commits only for assigned partitions
        await consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in
                               offsets.items()})
    return {f"{tp.topic}[{tp.partition}]": offset for tp, offset in offsets.items()}


@contextlib.asynccontextmanager
async def consumer_of(settings: Settings, group_id: str | None = None
                      ) -> AsyncIterator[AIOKafkaConsumer]:
    """A started consumer that commits nothing by itself, stopped on the way out."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=group_id,
                                enable_auto_commit=False, **kafka_client_options(settings))
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


async def listed_first_offsets(settings: Settings, tps: list[TopicPartition], since_ms: int
                               ) -> dict[TopicPartition, int]:
    """Kafka's ListOffsets by time; a partition with no record since starts at its end."""
    async with consumer_of(settings) as consumer:
        found = await consumer.offsets_for_times({tp: since_ms for tp in tps})
    unfound = [tp for tp in tps if not found.get(tp)]
    ends = await end_offsets(settings, unfound) if unfound else {}
    unknown = [f"{tp.topic}[{tp.partition}]" for tp in unfound if tp not in ends]
    if unknown:
        raise TimeoutError(f"the ends of {', '.join(unknown)} could not be read")
    return {tp: (found[tp].offset if found.get(tp) else ends[tp]) for tp in tps}


async def read_first_offsets(settings: Settings, tps: list[TopicPartition], since_ms: int
                             ) -> dict[TopicPartition, int]:
    """The same, read from the records themselves (for the embedded broker)."""
    async with consumer_of(settings) as consumer:
        return await first_offsets_at_or_after(consumer, tps, since_ms, timeout_s=600)


async def end_offsets(settings: Settings, tps: list[TopicPartition]
                      ) -> dict[TopicPartition, int]:
    """End offsets from fetch high-watermarks (the embedded broker's ListOffsets under-reports);
    a partition whose end is not known within the timeout is left out (not taken for 0: a
    partition counted as ended at 0 would count as caught up)."""
    async with consumer_of(settings) as consumer:
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        return await fetch_highwaters(consumer, tps, timeout_s=10)


@dataclass
class Progress:
    done: int
    total: int
    caught_up: bool


async def progress(settings: Settings) -> Progress:
    """How far the version's group is through the inputs and its own internal hops."""
    topics = build_topics(settings)
    tps = [TopicPartition(spec.name, p) for spec in [*topics.raw, *internal_hops(topics)]
           for p in range(spec.partitions)]
    ends = await end_offsets(settings, tps)
    async with consumer_of(settings, group_id=settings.app_id) as consumer:
        committed = {tp: await consumer.committed(tp) or 0 for tp in tps}
    done = sum(min(committed[tp], ends.get(tp, committed[tp])) for tp in tps)
    total = sum(ends.get(tp, committed[tp]) for tp in tps)
    return Progress(done, total, all(tp in ends and committed[tp] >= ends[tp] for tp in tps))


async def wait_caught_up(settings: Settings, on_progress, *, stable_polls: int = 3,
                         timeout_s: float = 3600.0) -> None:
    """Poll until the version has processed everything (and it stays so for a few polls)."""
    deadline = time.monotonic() + timeout_s
    stable = 0
    while stable < stable_polls:
        if time.monotonic() > deadline:
            raise TimeoutError("replay did not catch up in time")
        state = await progress(settings)
        on_progress(state)
        stable = stable + 1 if state.caught_up else 0
        await asyncio.sleep(1.0)
