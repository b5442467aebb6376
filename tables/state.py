"""Tables over partitions, the unit of work that changes them, and recovery from changelogs.

The commit order is what keeps state exact under at-least-once delivery (``docs/architecture.md``):

1. the batch's *outputs* are produced and acknowledged;
2. then the *changelog* records of every changed key, acknowledged;
3. then the local RocksDB ``WriteBatch`` (values + the changelog offset they reach);
4. only then are the input records acknowledged to faust, which commits their offsets.

A crash anywhere leaves the inputs uncommitted, so Kafka redelivers them. Outputs always precede
the state that records them, so a redelivered input either finds its effects absent (and redoes
them, re-sending outputs with the same deterministic ids) or finds them present because its
outputs were all acknowledged already. A restarted worker first replays the changelog past its local
offset, so local RocksDB can never be *behind* what the changelog says — and never ahead of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from app.producer import OutRecord, Producer
from rocksdict import Rdict

from tables.store import PartitionStore, open_database, write_atomically

log = logging.getLogger(__name__)

_MISSING = object()


@dataclass(frozen=True)
class TableSpec:
    #: Short name, e.g. ``history``; also names the directory and the changelog topic.
    name: str
    #: The topic whose partitions this table follows (its keys hash like that topic's keys).
    source_topic: str
    #: The compacted changelog topic.
    changelog_topic: str


class Table:
    """One table: views of its partitions in the worker's database."""

    def __init__(self, spec: TableSpec, db: Rdict) -> None:
        self.spec = spec
        self._db = db
        self._stores: dict[int, PartitionStore] = {}

    def store(self, partition: int) -> PartitionStore:
        store = self._stores.get(partition)
        if store is None:
            store = self._stores[partition] = PartitionStore.view(self._db, self.spec.name,
                                                                  partition)
        return store

    def get(self, partition: int, key: str) -> Any | None:
        return self.store(partition).get(key)

    def open_partitions(self) -> list[int]:
        return sorted(self._stores)

    def close_partition(self, partition: int) -> None:
        store = self._stores.pop(partition, None)
        if store is not None:
            store.close()

    def close(self) -> None:
        for partition in list(self._stores):
            self.close_partition(partition)


class UnitOfWork:
    """Reads see this unit's own pending writes; nothing is durable until :meth:`StateManager.commit`."""

    def __init__(self, tables: dict[str, Table]) -> None:
        self._tables = tables
        self.changes: dict[tuple[str, int], dict[str, Any | None]] = defaultdict(dict)
        self.outputs: list[OutRecord] = []

    def get(self, table: str, partition: int, key: str) -> Any | None:
        pending = self.changes.get((table, partition))
        if pending is not None:
            value = pending.get(key, _MISSING)
            if value is not _MISSING:
                return value
        return self._tables[table].get(partition, key)

    def put(self, table: str, partition: int, key: str, value: Any) -> None:
        self.changes[(table, partition)][key] = value

    def delete(self, table: str, partition: int, key: str) -> None:
        self.changes[(table, partition)][key] = None

    def send(self, record: OutRecord) -> None:
        self.outputs.append(record)


class StateManager:
    def __init__(self, specs: Iterable[TableSpec], root: Path, producer: Producer,
                 bootstrap_servers: str, groups: dict[str, str] | None = None) -> None:
        self._db = open_database(root)
        self.tables = {spec.name: Table(spec, self._db) for spec in specs}
        #: Co-partitioned inputs share their group's tables (and its recovery).
        self._groups = groups or {}
        self._producer = producer
        self._bootstrap = bootstrap_servers
        #: (source topic, partition) pairs whose tables are caught up with their changelogs.
        self._recovered: set[tuple[str, int]] = set()
        self._recovering: dict[tuple[str, int], asyncio.Task] = {}
        self.recovered_records = 0
        self.standby_records = 0

    # -- units of work -------------------------------------------------------------------------

    def begin(self) -> UnitOfWork:
        return UnitOfWork(self.tables)

    async def commit(self, unit: UnitOfWork) -> None:
        await self._producer.send_all(unit.outputs)
        changed = [(name, partition, changes) for (name, partition), changes
                   in unit.changes.items() if changes]
        records = [
            OutRecord(self.tables[name].spec.changelog_topic, partition, key.encode(),
                      None if value is None else orjson.dumps(value))
            for name, partition, changes in changed for key, value in changes.items()
        ]
        offsets = await self._producer.send_all(records)
        parts = []
        position = 0
        for name, partition, changes in changed:
            position += len(changes)
            parts.append((self.tables[name].store(partition), changes, offsets[position - 1]))
        write_atomically(self._db, parts)

    # -- recovery ------------------------------------------------------------------------------

    def group(self, topic: str) -> str:
        return self._groups.get(topic, topic)

    def is_recovered(self, topic: str, partition: int) -> bool:
        return (self.group(topic), partition) in self._recovered

    def all_recovered(self, assigned: Iterable[tuple[str, int]]) -> bool:
        return all((self.group(t), p) in self._recovered for t, p in assigned
                   if self._tables_of(self.group(t)))

    async def ensure_recovered(self, topic: str, partitions: Iterable[int]) -> None:
        """Bring every table that follows ``topic`` up to its changelog's end for ``partitions``."""
        topic = self.group(topic)
        waiting: list[asyncio.Future] = []
        missing: list[int] = []
        for partition in partitions:
            key = (topic, partition)
            if key in self._recovered:
                continue
            task = self._recovering.get(key)
            if task is None:
                missing.append(partition)
            else:
                waiting.append(task)
        if missing:
            task = asyncio.ensure_future(self._recover(topic, missing))
            for partition in missing:
                self._recovering[(topic, partition)] = task
            waiting.append(task)
        if waiting:
            await asyncio.gather(*waiting)

    def forget(self, topic: str, partitions: Iterable[int]) -> None:
        """Partitions were revoked: another worker may write them; catch up before reusing."""
        topic = self.group(topic)
        for partition in partitions:
            self._recovered.discard((topic, partition))
            for table in self._tables_of(topic):
                table.close_partition(partition)

    def _tables_of(self, topic: str) -> list[Table]:
        return [t for t in self.tables.values() if t.spec.source_topic == topic]

    async def _recover(self, topic: str, partitions: list[int]) -> None:
        try:
            stores = {TopicPartition(table.spec.changelog_topic, partition): table.store(partition)
                      for table in self._tables_of(topic) for partition in partitions}
            if stores:
                await self._replay_changelogs(stores)
            self._recovered.update((topic, partition) for partition in partitions)
        finally:
            for partition in partitions:
                self._recovering.pop((topic, partition), None)

    async def _changelog_consumer(self, stores: dict[TopicPartition, PartitionStore]
                                  ) -> AIOKafkaConsumer:
        """A consumer positioned just after what each store already reflects."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", max_partition_fetch_bytes=8 * 1024 * 1024)
        await consumer.start()
        consumer.assign(list(stores))
        for tp, store in stores.items():
            consumer.seek(tp, store.changelog_offset + 1)
        return consumer

    async def follow_standbys(self, partitions: dict[str, list[int]]) -> None:
        """Keep warm copies of partitions this worker does not own, by tailing their changelogs,
        so a failover only has to catch up the last few records. Runs until cancelled; cancel it
        before recovering newly assigned partitions (applying is synchronous, so a cancel never
        lands half-way through a batch)."""
        stores = {TopicPartition(table.spec.changelog_topic, partition): table.store(partition)
                  for topic, parts in partitions.items() for table in self._tables_of(topic)
                  for partition in parts}
        if not stores:
            return
        consumer = await self._changelog_consumer(stores)
        try:
            while True:
                fetched = await consumer.getmany(timeout_ms=1000, max_records=20_000)
                for tp, messages in fetched.items():
                    if messages:
                        stores[tp].apply_changelog([(m.key, m.value) for m in messages],
                                                   messages[-1].offset)
                        self.standby_records += len(messages)
        finally:
            await consumer.stop()

    async def _replay_changelogs(self, stores: dict[TopicPartition, PartitionStore]) -> None:
        """Apply every changelog record past each store's own offset, up to the fetch high-water.

        The fetch high-watermark is the end to reach: the embedded broker's ListOffsets can
        under-report it after batched produces, so ListOffsets is never used here.
        """
        consumer = await self._changelog_consumer(stores)
        try:
            pending = set(stores)
            applied = 0
            while pending:
                fetched = await consumer.getmany(*pending, timeout_ms=500, max_records=20_000)
                for tp, messages in fetched.items():
                    if messages:
                        stores[tp].apply_changelog([(m.key, m.value) for m in messages],
                                                   messages[-1].offset)
                        applied += len(messages)
                for tp in list(pending):
                    highwater = consumer.highwater(tp)
                    if highwater is not None and await consumer.position(tp) >= highwater:
                        pending.discard(tp)
            self.recovered_records += applied
            if applied:
                log.info("recovered %d changelog records for %d table partitions", applied,
                         len(stores))
        finally:
            await consumer.stop()

    def approximate_size_bytes(self) -> int:
        return self._db.property_int_value("rocksdb.total-sst-files-size") or 0

    def close(self) -> None:
        for table in self.tables.values():
            table.close()
        self._db.close()
