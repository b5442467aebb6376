"""Reading whole topics to their fetch high-watermark (never ListOffsets: see the embedded broker
notes in docs/architecture.md)."""

from __future__ import annotations

import time
from typing import AsyncIterator

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from tables.kafka_io import fetch_to_end


async def read_partitions(bootstrap: str, starts: dict[TopicPartition, int], *,
                          idle_timeout_s: float = 10.0, client_options: dict | None = None
                          ) -> AsyncIterator[list[ConsumerRecord]]:
    """Yield batches of records of each partition from its start offset to its current end.
    ``client_options``: the security options (``app.kafka_clients.kafka_client_options``)."""
    if not starts:
        return
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=8 * 1024 * 1024,
                                **(client_options or {}))
    await consumer.start()
    try:
        consumer.assign(list(starts))
        for tp, offset in starts.items():
            consumer.seek(tp, offset)
        pending = set(starts)
        last_progress = time.monotonic()
        async for fetched in fetch_to_end(consumer, pending, timeout_ms=300, max_records=10_000):
            for records in fetched.values():
                if records:
                    last_progress = time.monotonic()
                    yield records
            if time.monotonic() - last_progress > idle_timeout_s:
                raise TimeoutError(f"no progress reading {sorted(map(str, pending))}")
    finally:
        await consumer.stop()


async def read_topic(bootstrap: str, topic: str, partitions: int,
                     client_options: dict | None = None
                     ) -> AsyncIterator[list[ConsumerRecord]]:
    async for batch in read_partitions(bootstrap, {TopicPartition(topic, p): 0
                                                   for p in range(partitions)},
                                       client_options=client_options):
        yield batch
