"""Tables over partitions, the unit of work that changes them, and recovery from changelogs.

The commit order is what keeps state exact under at-least-once delivery (``docs/architecture.md``):

1. the unit's *outputs* are produced and acknowledged;
2. then its *changelog* records — every changed key of every table, then a unit-end record — one
   ordered run per changelog partition (:mod:`tables.changelog`), acknowledged;
3. then the local RocksDB ``WriteBatch`` (values + how far the changelog is applied);
4. only then are the input records acknowledged to faust, which commits their offsets.

A crash anywhere leaves the inputs uncommitted, so Kafka redelivers them. Readers of a changelog
apply a unit only once its end is there, and every new owner of a partition *fences* it (a record
that voids the unfinished unit a killed writer left, and whatever a deposed owner still writes), so
what any worker recovers is the state after some whole number of units — never a part of one.
A redelivered input therefore either finds its unit's effects absent (and redoes them, re-sending
outputs with the same deterministic ids) or present in full, its outputs all acknowledged first.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable, cast

from aiokafka import AIOKafkaConsumer, TopicPartition
from rocksdict import WriteBatch, WriteOptions

from tables import apply_rows, commit_rows, decoded_records
from tables.apply_rows import Indexer
from tables.changelog import (UNIT_KEY, Change, Position, Replayer, data_key, epoch_header,
                              fence_key, fence_value, next_epoch)
from tables.kafka_io import fetch_to_end
from tables.records import OutRecord, Sender
from tables.store import open_database
from tables.unit import ChangelogPartition, Table, TableSpec, UnitOfWork
from tables.value_cache import ValueCache

#: The unit of work and table types live in :mod:`tables.unit`; importable from here too.
__all__ = ["Index", "Indexer", "OwnershipChanged", "StateManager", "Table", "TableSpec", "UnitOfWork"]

log = logging.getLogger(__name__)

@functools.lru_cache(maxsize=None)
def _changelog_prefix(table: str) -> bytes:
    """What :func:`tables.changelog.data_key` puts before a key of ``table``."""
    return data_key(table, "")


#: Local key of a changelog partition's :class:`Position` (0xFF never starts a caller key).
_POSITION_PREFIX = b"\xff\xffposition\x1f"


#: A logged table's local indexes: the index tables, and how to derive their writes.
Index = tuple[tuple[str, ...], Indexer]


class OwnershipChanged(RuntimeError):
    """A partition was revoked while a unit of it was being committed: the unit's writes are
    in its changelog (or voided there by the next owner's fence), not in local state, and its
    inputs must not be acknowledged."""


class StateManager:
    def __init__(self, specs: Iterable[TableSpec], root: Path, producer: Sender,
                 bootstrap_servers: str, groups: dict[str, str] | None = None,
                 client_options: dict[str, Any] | None = None,
                 indexes: dict[str, Index] | None = None,
                 cached: Iterable[str] = (), cache_bytes: int = 0) -> None:
        """``cached``: the tables whose values are kept decoded, in about ``cache_bytes`` of
        memory (:class:`Table`, :class:`tables.value_cache.ValueCache`)."""
        specs = list(specs)
        #: logged table → its local indexes.
        self._indexes = {table: derive for table, (_, derive) in (indexes or {}).items()}
        self._index_tables = {index for index_tables, _ in (indexes or {}).values()
                              for index in index_tables}
        # Local state is derived from exactly these changelogs (and has these local indexes):
        # built from others, or without an index added since, it goes and is rebuilt.
        layout = ",".join(sorted({s.changelog_topic for s in specs}))
        if self._index_tables:
            layout += ";indexes=" + ",".join(sorted(self._index_tables))
        self._db = open_database(root, layout=layout)
        self._cached_tables = set(cached) if cache_bytes > 0 else set()
        self.cache = ValueCache(cache_bytes)
        self.tables = {spec.name: Table(spec, self._db, self.cache if spec.name in
                                        self._cached_tables else None) for spec in specs}
        #: Co-partitioned inputs share their group's tables (and its recovery).
        self._groups = groups or {}
        self._producer = producer
        self._bootstrap = bootstrap_servers
        #: Security options for the changelog consumers (app.kafka_clients).
        self._client_options = client_options or {}
        #: (source topic, partition) pairs whose tables are caught up with their changelogs.
        self._recovered: set[tuple[str, int]] = set()
        self._recovering: dict[tuple[str, int], asyncio.Task[None]] = {}
        #: Epoch this worker writes each owned changelog partition with (set when it fenced it).
        self._epochs: dict[ChangelogPartition, int] = {}
        #: Bumped whenever ownership of a changelog partition starts or ends, so a unit that
        #: straddles a change of hands can tell (:meth:`commit`).
        self._tenures: dict[ChangelogPartition, int] = defaultdict(int)
        #: The consumer group generation, when known: the epoch a new owner fences with.
        self.generation: int | None = None
        self._in_flight = 0
        #: Units whose outputs may be out (their produce has begun) while their state is not
        #: written yet: the commit order sends outputs first, and a unit's publish runs ahead
        #: of its commit. A read waits for them (:meth:`written`).
        self._outputs_out: set[UnitOfWork] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        #: Recovery's writes skip the write-ahead log (:meth:`_replay`).
        self._unlogged = WriteOptions()
        # (a property; rocksdict's stubs call it a method)
        self._unlogged.disable_wal = True  # type: ignore[method-assign,assignment]
        self.recovered_records = 0
        self.standby_records = 0
        self.void_records = 0
        self.fences = 0
        self.skipped_local_writes = 0

    # -- units of work -------------------------------------------------------------------------

    def begin(self, base: UnitOfWork | None = None) -> UnitOfWork:
        """A new unit; on ``base``, the agent's previous unit while its commit is under way."""
        return UnitOfWork(self.tables, dict(self._tenures), base)

    def changelog_of(self, table: str, partition: int) -> ChangelogPartition:
        return self.tables[table].spec.changelog_topic, partition

    def position(self, cp: ChangelogPartition) -> Position:
        return Position.decode(self._db.get(_position_key(cp)))

    def publish(self, unit: UnitOfWork) -> None:
        """Start producing the unit's outputs now, while the unit under it still commits: as
        soon as the base's outputs are acknowledged, not after the base's changelog.

        The unit's commit then waits for these acknowledgements instead of sending them itself.
        Outputs ahead of their base's state are safe for the reason outputs ahead of their own
        are (the commit order, step 1): a unit's inputs are acknowledged only once it is
        committed, and a unit whose base fails is dropped unacknowledged with it, so the failure
        brings both units' inputs again, to be processed on the state before both and re-sent
        with the same deterministic ids, which consumers drop as repeats. Outputs keep their
        units' order in every partition: they follow the base's acknowledged outputs, and a
        retried commit never sends acknowledged outputs again (a stale repeat after a newer
        record would be the last value of its key in a compacted topic).
        """
        if unit.outputs and unit.publishing is None:
            self._outputs_out.add(unit)
            unit.publishing = asyncio.ensure_future(self._publish(unit.outputs, unit.base))
            # A unit dropped with its failed base never awaits this: its failure is not news.
            unit.publishing.add_done_callback(_retrieve)

    async def _publish(self, outputs: list[OutRecord], base: UnitOfWork | None) -> list[int]:
        # (``base`` as it was when the publish began: the unit lets go of it once it is written)
        if base is not None:
            await base.outputs_acknowledged.wait()
        return await self._producer.send_all(outputs)

    def drop(self, unit: UnitOfWork) -> None:
        """A prepared unit will never be committed (its base's commit failed): stop its publish,
        which may be waiting for outputs that will never be acknowledged. Its inputs come again
        and their outputs with them."""
        if unit.publishing is not None:
            unit.publishing.cancel()
        self._settle(unit)

    def _settle(self, unit: UnitOfWork) -> None:
        self._outputs_out.discard(unit)
        unit.settled.set()

    async def written(self, timeout_s: float) -> bool:
        """Wait until every unit whose outputs may be visible now has its state written (or
        will never have: dropped, or its partition changed hands); False on timeout.

        A reader who saw a unit's record on an output topic (a segment change) and then reads
        the person's state here sees the state that record came from, not the one before."""
        waiting = [unit.settled.wait() for unit in self._outputs_out]
        if not waiting:
            return True
        try:
            await asyncio.wait_for(asyncio.gather(*waiting), timeout_s)
            return True
        except asyncio.TimeoutError:
            return False

    async def commit(self, unit: UnitOfWork) -> None:
        """Commit a unit (:meth:`_commit`). A failure other than a change of hands leaves it
        to be retried (``Runtime.commit``) or dropped (:meth:`drop`)."""
        self._in_flight += 1
        self._idle.clear()
        try:
            await self._commit(unit)
            self._settle(unit)
        except OwnershipChanged:
            self._settle(unit)
            raise
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    async def _commit(self, unit: UnitOfWork) -> None:
        if unit.base is not None:
            if not unit.base.committed:
                # Computed on writes that never became state: its inputs come again.
                raise OwnershipChanged("a unit was built on one that was not committed")
            unit.base = None  # those writes are in local state now
        if not unit.outputs_acknowledged.is_set():
            if unit.outputs:
                self._outputs_out.add(unit)
            publishing, unit.publishing = unit.publishing, None
            if publishing is not None:
                await publishing  # (failed: the retry of this commit sends them again)
            else:
                await self._producer.send_all(unit.outputs)
            unit.outputs_acknowledged.set()
        rows = commit_rows.encode(unit.changes, self.tables, self._index_tables,
                                  self._cached_tables, _changelog_prefix)
        if not rows.logged:
            unit.committed = True
            return  # (index writes come with their logged table's writes, never alone)
        epochs: dict[ChangelogPartition, int] = {}
        headers: dict[ChangelogPartition, list[tuple[str, bytes]]] = {}
        for cp in rows.logged:
            epochs[cp] = epoch = self._epochs.get(cp) or self.position(cp).epoch
            headers[cp] = epoch_header(epoch)
        records = commit_rows.changelog_records(rows.logged, headers, UNIT_KEY)
        offsets = await self._producer.send_all(records)
        unit_end = commit_rows.unit_ends(records, offsets, UNIT_KEY)
        batch = WriteBatch(raw_mode=True)
        put, delete = batch.put, batch.delete
        changed_hands: list[ChangelogPartition] = []
        for cp, runs in rows.logged.items():
            if self._tenures[cp] != unit.tenures.get(cp, 0):
                # Revoked while in flight (and maybe assigned back and fenced: the fence may
                # have voided this unit). Local state must not run ahead of what the changelog
                # holds for a recovery here; the changelog has the unit or voids it.
                self.skipped_local_writes += 1
                changed_hands.append(cp)
                continue
            commit_rows.stage(put, delete, runs)
            commit_rows.stage(put, delete, rows.local.get(cp, []))
            put(_position_key(cp), Position(unit_end[cp], epochs[cp]).encode())
        self._db.write(batch)
        commit_rows.keep_cached(rows.cache_writes, self.tables, changed_hands)
        if changed_hands:
            # The unit's inputs must not be acknowledged: the rebalance's seek went back to
            # before them, and they are processed again by whoever owns them now.
            raise OwnershipChanged(", ".join(f"{t}[{p}]" for t, p in changed_hands)
                                   + " changed hands during a unit")
        unit.committed = True

    def committing(self) -> bool:
        """Whether a unit is being committed now."""
        return self._in_flight > 0

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no unit is being committed (partitions are about to change hands)."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
            return True
        except asyncio.TimeoutError:
            return False

    # -- recovery ------------------------------------------------------------------------------

    def group(self, topic: str) -> str:
        return self._groups.get(topic, topic)

    def is_recovered(self, topic: str, partition: int) -> bool:
        return (self.group(topic), partition) in self._recovered

    def all_recovered(self, assigned: Iterable[tuple[str, int]]) -> bool:
        return all((self.group(t), p) in self._recovered for t, p in assigned
                   if self._tables_of(self.group(t)))

    async def ensure_recovered(self, topic: str, partitions: Iterable[int]) -> None:
        """Bring every table that follows ``topic`` up to its changelog's end for ``partitions``,
        and fence those changelog partitions for this worker."""
        topic = self.group(topic)
        waiting: list[asyncio.Future[None]] = []
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
            for changelog in self._changelogs_of(topic):
                cp = (changelog, partition)
                self._epochs.pop(cp, None)
                self._tenures[cp] += 1
            for table in self._tables_of(topic):
                table.close_partition(partition)

    def _tables_of(self, topic: str) -> list[Table]:
        return [t for t in self.tables.values() if t.spec.source_topic == topic]

    def _changelogs_of(self, topic: str) -> list[str]:
        return sorted({t.spec.changelog_topic for t in self._tables_of(topic)})

    async def _recover(self, topic: str, partitions: list[int]) -> None:
        try:
            cps = [(changelog, p) for changelog in self._changelogs_of(topic) for p in partitions]
            if cps:
                replayers = await self._replay(cps)
                await self._fence(replayers)
            self._recovered.update((topic, partition) for partition in partitions)
        finally:
            for partition in partitions:
                self._recovering.pop((topic, partition), None)

    async def _fence(self, replayers: dict[ChangelogPartition, Replayer]) -> None:
        """Claim each changelog partition for this worker: a fence record with a new epoch, which
        voids the unfinished unit past the last complete one (a writer killed mid-unit) and
        anything a deposed owner writes from now on."""
        records, epochs = [], {}
        for (topic, partition), replayer in replayers.items():
            position = replayer.position
            epoch = epochs[(topic, partition)] = next_epoch(position.epoch, self.generation)
            if replayer.unfinished:
                log.warning("%s[%d]: %d changelog records past offset %d belong to an "
                            "unfinished unit; fenced off (epoch %d)", topic, partition,
                            replayer.unfinished, position.applied_to, epoch)
            records.append(OutRecord(topic, partition, fence_key(epoch),
                                     fence_value(epoch, position.applied_to),
                                     epoch_header(epoch)))
        offsets = await self._producer.send_all(records)
        batch = WriteBatch(raw_mode=True)
        for record, offset in zip(records, offsets):
            cp = (record.topic, record.partition)
            batch.put(_position_key(cp), Position(offset, epochs[cp]).encode())
        self._db.write(batch)
        for record in records:
            cp = (record.topic, record.partition)
            self._epochs[cp] = epochs[cp]
            self._tenures[cp] += 1
        self.fences += len(records)

    def apply_changes(self, cp: ChangelogPartition, changes: list[Change],
                      position: Position) -> None:
        """Apply one complete unit read from a changelog, with the position it reaches."""
        self._db.write(self._unit_batch(cp, changes, position))

    def _apply_unlogged(self, cp: ChangelogPartition, changes: list[Change],
                        position: Position) -> None:
        """:meth:`apply_changes` without RocksDB's write-ahead log, for recovery, which flushes
        the memtables at its end (:meth:`_replay`)."""
        self._db.write(self._unit_batch(cp, changes, position), self._unlogged)

    def _unit_batch(self, cp: ChangelogPartition, changes: list[Change],
                    position: Position) -> WriteBatch:
        batch = WriteBatch(raw_mode=True)
        # An indexed key's value before this change: read for the whole unit at once, then
        # what the unit's earlier changes of the key wrote.
        apply_rows.stage_unit(batch.put, batch.delete, cp[1], changes, self.tables,
                              self._indexes, self._cached_tables,
                              self._stored_values(cp[1], changes))
        batch.put(_position_key(cp), position.encode())
        return batch

    def _stored_values(self, partition: int, changes: list[Change]
                       ) -> dict[tuple[str, str], bytes | None]:
        """The stored values of the indexed keys ``changes`` touch, read in one multi-get."""
        wanted: dict[tuple[str, str], bytes] = {}
        for table, key, _ in changes:
            if table in self._indexes and table in self.tables and (table, key) not in wanted:
                wanted[(table, key)] = self.tables[table].raw_key(partition, key)
        if not wanted:
            return {}
        found = cast("list[bytes | None]", self._db.get(list(wanted.values())))  # a multi-get
        return dict(zip(wanted, found))

    async def _changelog_consumer(self, positions: dict[ChangelogPartition, Position]
                                  ) -> AIOKafkaConsumer:
        """A consumer positioned just after what each local copy already reflects, handing
        out records as aiokafka decodes them (:mod:`tables.decoded_records`)."""
        decoded_records.install()
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, group_id=None, enable_auto_commit=False,
            auto_offset_reset="earliest", max_partition_fetch_bytes=8 * 1024 * 1024,
            key_deserializer=decoded_records.AS_DECODED, **self._client_options)
        await consumer.start()
        consumer.assign([TopicPartition(*cp) for cp in positions])
        for cp, position in positions.items():
            consumer.seek(TopicPartition(*cp), position.applied_to + 1)
        return consumer

    async def follow_standbys(self, partitions: dict[str, list[int]]) -> None:
        """Keep warm copies of partitions this worker does not own, by tailing their changelogs,
        so a failover only has to catch up the last few records. Runs until cancelled; cancel it
        before recovering newly assigned partitions (applying is synchronous, so a cancel never
        lands half-way through a unit)."""
        cps = [(changelog, p) for topic, parts in partitions.items()
               for changelog in self._changelogs_of(topic) for p in parts]
        if not cps:
            return
        replayers = {cp: Replayer(self.position(cp)) for cp in cps}
        consumer = await self._changelog_consumer({cp: r.position for cp, r in replayers.items()})
        try:
            while True:
                fetched = await consumer.getmany(timeout_ms=1000, max_records=20_000)
                for tp, messages in fetched.items():
                    cp = (tp.topic, tp.partition)
                    apply_rows.feed_records(self.apply_changes, cp, replayers[cp], messages)
                    self.standby_records += len(messages)
        finally:
            await consumer.stop()

    async def _replay(self, cps: list[ChangelogPartition]) -> dict[ChangelogPartition, Replayer]:
        """Apply every complete unit past each local copy's position, up to the fetch
        high-watermark.

        The fetch high-watermark is the end to reach: the embedded broker's ListOffsets can
        under-report it after batched produces, so ListOffsets is never used here.

        Its writes skip RocksDB's write-ahead log, and the memtables are flushed before it
        returns, so before this worker fences the partitions and writes them with the log on.
        A crash before that flush loses some of recovery's writes, never a part of a unit:
        a unit is one batch, RocksDB flushes memtables whole and in order, and each unit's
        batch carries its partition's position, so what survives is this worker's state
        after some earlier unit, partition by partition, and the next start recovers from
        there. (The other partitions' writes in the same memtables keep their log.) A
        recovery that fails part-way flushes what it applied too.
        """
        started = time.perf_counter()
        replayers = {cp: Replayer(self.position(cp)) for cp in cps}
        consumer = await self._changelog_consumer({cp: r.position for cp, r in replayers.items()})
        try:
            pending = {TopicPartition(*cp) for cp in cps}
            read = applied = 0
            try:
                async for fetched in fetch_to_end(consumer, pending, timeout_ms=500,
                                                  max_records=20_000):
                    for tp, messages in fetched.items():
                        cp = (tp.topic, tp.partition)
                        applied += apply_rows.feed_records(self._apply_unlogged, cp,
                                                           replayers[cp], messages)
                        read += len(messages)
            finally:
                flush_s = self._flush() if read else 0.0
            self.recovered_records += read
            self.void_records += sum(r.void for r in replayers.values())
            if read:
                took_s = time.perf_counter() - started
                log.info("recovered %d changelog records (%d changes) for %d partitions in "
                         "%.2fs (%.0f records/s); flushed in %.2fs", read, applied, len(cps),
                         took_s, read / took_s, flush_s)
        finally:
            await consumer.stop()
        return replayers

    def _flush(self) -> float:
        """Write the memtables to SST files (recovery's writes had no log); returns the time."""
        started = time.perf_counter()
        self._db.flush(True)
        return time.perf_counter() - started

    def approximate_size_bytes(self) -> int:
        return self._db.property_int_value("rocksdb.total-sst-files-size") or 0

    def close(self) -> None:
        for table in self.tables.values():
            table.close()
        self._db.close()


def _retrieve(future: "asyncio.Future[Any]") -> None:
    if not future.cancelled():
        future.exception()


def _position_key(cp: ChangelogPartition) -> bytes:
    return _POSITION_PREFIX + f"{cp[0]}\x1f{cp[1]}".encode()
