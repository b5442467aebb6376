"""Moving a state version's people tables from layout 1 (a value per person) to layout 2 (a key per
event), at start, before any worker reads them.

Layout 1 kept a person's whole history and every dedup id in one value each, so each event
re-wrote and re-shipped them (issue #11). Layout 2 (:mod:`app.person_store`) is written to a
changelog of its own (:func:`app.topics.people_changelog`). A worker starting where the layout-1
changelog has data and the layout-2 one has none converts it: every complete unit of the old
changelog is read (as recovery would), each person's history and dedup map become their
per-event keys, every other table is copied as it is, and the result is written to the new
changelog as units (with their unit-end records). Consumer offsets are untouched, so processing
resumes exactly where it stopped, on the same state. Local RocksDB copies built from the old
changelog are dropped and rebuilt (:func:`tables.store.open_database`).

Memory: one partition's latest values at a time. Two workers starting at once both convert and
write the same values; readers apply either copy alike.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from contextlib import aclosing
from typing import Any, Iterator

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from app.kafka_clients import kafka_client_options
from app.ops.topics_io import read_partitions
from app.person_store import time_key
from app.producer import OutRecord, Producer
from app.settings import Settings
from app.topics import DEDUP, HISTORY, HISTORY_SIZE, build_topics, people_changelog
from tables.changelog import UNIT_KEY, Replayer, data_key, epoch_header, epoch_of

log = logging.getLogger(__name__)

#: Records per unit written to the new changelog (each unit is applied whole by readers).
UNIT_RECORDS = 5_000


def convert(table: str, key: str, value: Any) -> Iterator[tuple[str, str, Any]]:
    """One layout-1 value as its layout-2 ``(table, key, value)`` records."""
    if table == HISTORY:
        for activity in value:  # (history_by_name is derived from these as they are applied)
            yield HISTORY, time_key(key, activity), activity
        if value:
            yield HISTORY_SIZE, key, len(value)
    elif table == DEDUP:
        for event_id, entry in sorted(value.items()):
            yield DEDUP, f"{key}\x1f{event_id}", entry
    else:
        yield table, key, value


async def _topics(bootstrap: str, options: dict[str, Any]) -> set[str]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, **options)
    await consumer.start()
    try:
        return set(await consumer.topics())
    finally:
        await consumer.stop()


async def _latest(bootstrap: str, topic: str, partition: int, options: dict[str, Any]
                  ) -> dict[tuple[str, str], bytes]:
    """The partition's latest value per (table, key), complete units only."""
    replayer = Replayer()
    latest: dict[tuple[str, str], bytes] = {}
    async for batch in read_partitions(bootstrap, {TopicPartition(topic, partition): 0},
                                       client_options=options):
        for record in batch:
            for table, key, value in replayer.feed(record.offset, record.key, record.value,
                                                   epoch_of(record.headers)) or ():
                if value is None:
                    latest.pop((table, key), None)
                else:
                    latest[(table, key)] = value
    return latest


async def _has_records(bootstrap: str, topic: str, partitions: int,
                       options: dict[str, Any]) -> bool:
    starts = {TopicPartition(topic, p): 0 for p in range(partitions)}
    # Stops at the first record: the reader (and its consumer) is closed right away.
    async with aclosing(read_partitions(bootstrap, starts, client_options=options)) as batches:
        async for batch in batches:
            if batch:
                return True
    return False


async def migrate_people(settings: Settings) -> dict[str, int] | None:
    """Convert the layout-1 people changelog if this state version has one and layout 2 has
    nothing yet; returns what was converted, or None when there was nothing to do."""
    topics = build_topics(settings)
    version = f"{settings.topic_prefix}.{settings.state_version}"
    old, new = people_changelog(version, 1), people_changelog(version)
    partitions = topics.person_events.partitions
    bootstrap, options = settings.bootstrap_servers, kafka_client_options(settings)
    if old not in await _topics(bootstrap, options) or \
            not await _has_records(bootstrap, old, partitions, options):
        return None
    if await _has_records(bootstrap, new, partitions, options):
        return None  # converted already (or written by this layout since): never twice
    counts: dict[str, int] = defaultdict(int)
    producer = Producer(settings)
    await producer.start()
    try:
        for partition in range(partitions):
            unit: list[OutRecord] = []
            latest = await _latest(bootstrap, old, partition, options)
            for (table, key), raw in sorted(latest.items()):
                if table == HISTORY:
                    counts["people"] += 1
                for new_table, new_key, value in convert(table, key, orjson.loads(raw)):
                    unit.append(OutRecord(new, partition, data_key(new_table, new_key),
                                          orjson.dumps(value), headers=epoch_header(0)))
                    counts["records"] += 1
                if len(unit) >= UNIT_RECORDS:
                    await _write_unit(producer, new, partition, unit)
                    unit = []
            if unit:
                await _write_unit(producer, new, partition, unit)
            counts["partitions"] += 1
    finally:
        await producer.stop()
    log.warning("migrated the people tables of %s from layout 1 (%s) to layout 2 (%s): "
                "%d histories, %d records, %d partitions", version, old, new, counts["people"],
                counts["records"], counts["partitions"])
    return dict(counts)


async def _write_unit(producer: Producer, topic: str, partition: int,
                      records: list[OutRecord]) -> None:
    end = OutRecord(topic, partition, UNIT_KEY, b"", headers=epoch_header(0))
    await producer.send_all([*records, end])
