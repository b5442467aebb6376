"""Tables over partitions, and the unit of work that changes them.

A :class:`UnitOfWork` collects a batch's writes and outputs; :class:`tables.state.StateManager`
makes them durable in the commit order that keeps state exact under redelivery.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Collection, Iterator

import orjson
from rocksdict import Rdict

from tables.records import OutRecord
from tables.store import PartitionStore
from tables.value_cache import MISSING, ValueCache

#: (changelog topic, partition): the unit of ownership, fencing and recovery.
ChangelogPartition = tuple[str, int]


@dataclass(frozen=True)
class TableSpec:
    #: Short name, e.g. ``history``; also the key prefix of its records in the changelog.
    name: str
    #: The topic whose partitions this table follows (its keys hash like that topic's keys).
    source_topic: str
    #: The compacted changelog topic, shared by every table that follows ``source_topic``.
    changelog_topic: str


class Table:
    """One table: views of its partitions in the worker's database, and for the tables a unit
    point-reads per person (a profile, a membership, a history size), a bounded cache of what
    the database holds under the keys units read or wrote lately.

    The cache is written through: every write to the database under a cached key (a unit's
    commit, a changelog applied by recovery or a standby) updates or drops its entry in the same
    synchronous step, so an entry is always what a read of the database would give. A revoked
    partition's entries go with it (what they hold would still be right: recovery drops each key
    it applies; they would only take room). Only units read through it (:meth:`read`); the HTTP API's
    reads (:meth:`get`) decode their own copy, so no caller outside a unit can change a cached
    value, and a unit never changes a value in place (it writes a new one).
    """

    def __init__(self, spec: TableSpec, db: Rdict, cache: ValueCache | None = None) -> None:
        self.spec = spec
        self._db = db
        self._stores: dict[int, PartitionStore] = {}
        #: partition → what its keys start with in the database: a unit's reads go to the
        #: database from here, compiled, not through the Python of :class:`PartitionStore`.
        self._prefixes: dict[int, bytes] = {}
        #: Shared by the worker's cached tables; None: this table is not cached.
        self.cache = cache

    def store(self, partition: int) -> PartitionStore:
        store = self._stores.get(partition)
        if store is None:
            store = self._stores[partition] = PartitionStore.view(self._db, self.spec.name,
                                                                  partition)
        return store

    def get(self, partition: int, key: str) -> Any | None:
        """A fresh copy of the stored value (the caller may change it)."""
        return self.store(partition).get(key)

    def read(self, partition: int, key: str) -> Any | None:
        """The stored value, from the cache when it holds the key: never change it in place."""
        cache = self.cache
        if cache is None:
            raw = self._read_raw(partition, key)
            return None if raw is None else orjson.loads(raw)
        slot = (self.spec.name, partition, key)
        value = cache.get(slot)
        if value is MISSING:
            raw = self._read_raw(partition, key)
            value = None if raw is None else orjson.loads(raw)
            cache.keep(slot, value, 0 if raw is None else len(raw))
        return value

    def raw_prefix(self, partition: int) -> bytes:
        """What the keys of ``partition`` start with in the database."""
        prefix = self._prefixes.get(partition)
        if prefix is None:
            prefix = self._prefixes[partition] = self.store(partition).raw_prefix
        return prefix

    def raw_key(self, partition: int, key: str) -> bytes:
        """``key`` of ``partition`` as the database holds it."""
        return self.raw_prefix(partition) + key.encode()

    def _read_raw(self, partition: int, key: str) -> bytes | None:
        raw: bytes | None = self._db.get(self.raw_key(partition, key))
        return raw

    def written(self, partition: int, key: str, value: Any | None, raw: bytes | None) -> None:
        """``value`` (``raw`` encoded; None: deleted) is in the database now."""
        if self.cache is not None:
            self.cache.keep((self.spec.name, partition, key), value,
                            0 if raw is None else len(raw))

    def overwritten(self, partition: int, key: str) -> None:
        """The database's value under ``key`` was replaced by a changelog's."""
        if self.cache is not None:
            self.cache.drop((self.spec.name, partition, key))

    def open_partitions(self) -> list[int]:
        return sorted(self._stores)

    def close_partition(self, partition: int) -> None:
        self._prefixes.pop(partition, None)
        store = self._stores.pop(partition, None)
        if store is not None:
            store.close()
        if self.cache is not None:
            self.cache.drop_partition(self.spec.name, partition)

    def close(self) -> None:
        for partition in list(self._stores):
            self.close_partition(partition)


#: Keys of range-read tables are ``<group>\x1f<rest>`` (a person's events): a range read stays
#: inside one group, so pending writes are indexed by group and a read merges only its own.
GROUP_SEPARATOR = "\x1f"


class UnitOfWork:
    """Reads see this unit's own pending writes; nothing is durable until :meth:`StateManager.commit`.

    A unit may be built on a ``base``: the agent's previous unit, whose commit is still waiting
    for its acknowledgements (``agents.batches.consume`` prepares the next unit meanwhile). Reads
    then see the base's writes under this unit's own, as they will be once the base is written;
    the unit may only be committed once its base was (``StateManager.commit`` refuses it
    otherwise), and it is dropped with its inputs when the base's commit fails.
    """

    def __init__(self, tables: dict[str, Table], tenures: dict[ChangelogPartition, int],
                 base: "UnitOfWork | None" = None) -> None:
        self._tables = tables
        self.changes: dict[tuple[str, int], dict[str, Any | None]] = defaultdict(dict)
        #: (table, partition) → group → its pending keys, for :meth:`range`. Built at a table
        #: partition's first range read, then kept up to date: most tables are never read by
        #: range through a unit, and their writes skip it (a few % of a unit's time).
        self._groups: dict[tuple[str, int], dict[str, set[str]]] = {}
        self.outputs: list[OutRecord] = []
        #: The ownership tenure of every changelog partition when the unit began.
        self.tenures = tenures
        self.base = base
        #: The outputs' produce, when :meth:`tables.state.StateManager.publish` started it ahead
        #: of the commit.
        self.publishing: "asyncio.Future[list[int]] | None" = None
        #: Set once the outputs are acknowledged: a retried commit does not send them again, and
        #: the unit built on this one sends its own only after them.
        self.outputs_acknowledged = asyncio.Event()
        #: Set by :meth:`tables.state.StateManager.commit` once the unit is durable everywhere.
        self.committed = False
        #: Set once the unit's state is written or the unit will never be: a read that may
        #: already see its outputs waits for it (:meth:`tables.state.StateManager.written`).
        self.settled = asyncio.Event()

    def _pending(self, table: str, partition: int, key: str) -> Any:
        """The value this unit (or the base under it) writes for ``key``, else :data:`MISSING`."""
        unit: UnitOfWork | None = self
        while unit is not None:
            pending = unit.changes.get((table, partition))
            if pending is not None:
                value = pending.get(key, MISSING)
                if value is not MISSING:
                    return value
            unit = unit.base
        return MISSING

    def get(self, table: str, partition: int, key: str) -> Any | None:
        value = self._pending(table, partition, key)
        if value is not MISSING:
            return value
        return self._tables[table].read(partition, key)

    def _chain(self) -> list["UnitOfWork"]:
        """This unit, then its base, and so on."""
        chain: list[UnitOfWork] = []
        unit: UnitOfWork | None = self
        while unit is not None:
            chain.append(unit)
            unit = unit.base
        return chain

    def pending_items(self, table: str, partition: int) -> dict[str, Any | None]:
        """Every write pending for the table partition (``None``: deleted), the base's included
        (this unit's own win)."""
        merged: dict[str, Any | None] = {}
        for unit in reversed(self._chain()):
            merged.update(unit.changes.get((table, partition), {}))
        return merged

    def _groups_of(self, slot: tuple[str, int]) -> dict[str, set[str]]:
        groups = self._groups.get(slot)
        if groups is None:
            groups = self._groups[slot] = {}
            for key in self.changes.get(slot, ()):
                _add_to_group(groups, key)
        return groups

    def _pending_group(self, slot: tuple[str, int], group: str) -> Collection[str]:
        if self.base is None:
            return self._groups_of(slot).get(group, ())
        return set().union(*(unit._groups_of(slot).get(group, ()) for unit in self._chain()))

    def put(self, table: str, partition: int, key: str, value: Any) -> None:
        slot = (table, partition)
        self.changes[slot][key] = value
        groups = self._groups.get(slot)
        if groups is not None:
            _add_to_group(groups, key)

    def delete(self, table: str, partition: int, key: str) -> None:
        self.put(table, partition, key, None)

    def range(self, table: str, partition: int, start: str, stop: str, *,
              reverse: bool = False) -> Iterator[tuple[str, Any]]:
        """Items with ``start <= key < stop`` in key order (descending with ``reverse``), this
        unit's pending writes included. ``start`` and ``stop`` lie in one key group."""
        grouped = self._pending_group((table, partition), start.partition(GROUP_SEPARATOR)[0])
        pending_keys = sorted((key for key in grouped if start <= key < stop), reverse=reverse)
        stored = self._tables[table].store(partition).range(start, stop, reverse=reverse)
        if not pending_keys:
            yield from stored
            return
        pending = self._pending
        yield from _merged(stored, [(key, pending(table, partition, key)) for key in pending_keys],
                           reverse)

    def send(self, record: OutRecord) -> None:
        self.outputs.append(record)


def _merged(stored: Iterator[tuple[str, Any]], pending: list[tuple[str, Any | None]],
            reverse: bool) -> Iterator[tuple[str, Any]]:
    """``stored`` (read lazily) and ``pending`` (both in the range's order) as one run: a key
    in both comes out once, with its pending value, and a pending ``None`` (a delete) hides it.

    A generator function, not ``heapq.merge`` over generator expressions: mypyc compiles a
    generator expression as a list, so that merge read a person's whole stored range (their
    history, 5,000 events) whenever the unit had written one key of it, to yield its first few.
    """
    index, size = 0, len(pending)
    for key, value in stored:
        while index < size:
            pending_key, pending_value = pending[index]
            if pending_key == key or (pending_key < key) == reverse:
                break
            index += 1
            if pending_value is not None:
                yield pending_key, pending_value
        if index < size and pending[index][0] == key:
            pending_value = pending[index][1]
            index += 1
            if pending_value is not None:
                yield key, pending_value
            continue
        yield key, value
    for pending_key, pending_value in pending[index:]:
        if pending_value is not None:
            yield pending_key, pending_value


def _add_to_group(groups: dict[str, set[str]], key: str) -> None:
    group, separator, _ = key.partition(GROUP_SEPARATOR)
    if separator:
        found = groups.get(group)
        if found is None:
            groups[group] = {key}
        else:
            found.add(key)
