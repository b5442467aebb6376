"""Tables in memory with the unit of work's interface, for pure tests of per-key logic."""

from __future__ import annotations

import copy
from typing import Any, Iterator


class MemoryTables:
    """Tables as sorted key → value maps (the UnitOfWork's interface, without RocksDB)."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, int], dict[str, Any]] = {}
        #: range reads so far (a test can tell a shared read from a repeated one)
        self.range_calls = 0

    def get(self, table: str, partition: int, key: str) -> Any | None:
        return self.data.get((table, partition), {}).get(key)

    def put(self, table: str, partition: int, key: str, value: Any) -> None:
        self.data.setdefault((table, partition), {})[key] = copy.deepcopy(value)

    def delete(self, table: str, partition: int, key: str) -> None:
        self.data.get((table, partition), {}).pop(key, None)

    def range(self, table: str, partition: int, start: str, stop: str, *,
              reverse: bool = False) -> Iterator[tuple[str, Any]]:
        self.range_calls += 1
        rows = self.data.get((table, partition), {})
        keys = sorted((k for k in rows if start.encode() <= k.encode() < stop.encode()),
                      key=str.encode, reverse=reverse)
        return iter([(k, rows[k]) for k in keys])


class _Store:
    """One table partition of :class:`MemoryTables`, as ``rt.state.tables[t].store(p)``."""

    def __init__(self, tables: MemoryTables, table: str, partition: int) -> None:
        self.tables, self.table, self.partition = tables, table, partition

    def range(self, start: str, stop: str, *, reverse: bool = False) -> Iterator[Any]:
        return self.tables.range(self.table, self.partition, start, stop, reverse=reverse)

    def get(self, key: str) -> Any:
        return self.tables.get(self.table, self.partition, key)

    def items(self) -> Iterator[Any]:
        rows = self.tables.data.get((self.table, self.partition), {})
        return iter(sorted(rows.items(), key=lambda kv: kv[0].encode()))

    def keys(self) -> Iterator[str]:
        return (key for key, _ in self.items())


class _Table:
    def __init__(self, tables: MemoryTables, name: str) -> None:
        self.tables, self.name = tables, name

    def store(self, partition: int) -> _Store:
        return _Store(self.tables, self.name, partition)

    def get(self, partition: int, key: str) -> Any:
        return self.tables.get(self.name, partition, key)


class StateTables(dict):
    """``rt.state.tables`` (table name → table of partition stores) over :class:`MemoryTables`."""

    def __init__(self) -> None:
        super().__init__()
        self.memory = MemoryTables()

    def __missing__(self, name: str) -> _Table:
        return _Table(self.memory, name)
