"""Tables in memory with the unit of work's interface, for pure tests of per-key logic."""

from __future__ import annotations

import copy
from typing import Any, Iterator


class MemoryTables:
    """Tables as sorted key → value maps (the UnitOfWork's interface, without RocksDB)."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, int], dict[str, Any]] = {}

    def get(self, table: str, partition: int, key: str) -> Any | None:
        return self.data.get((table, partition), {}).get(key)

    def put(self, table: str, partition: int, key: str, value: Any) -> None:
        self.data.setdefault((table, partition), {})[key] = copy.deepcopy(value)

    def delete(self, table: str, partition: int, key: str) -> None:
        self.data.get((table, partition), {}).pop(key, None)

    def range(self, table: str, partition: int, start: str, stop: str, *,
              reverse: bool = False) -> Iterator[tuple[str, Any]]:
        rows = self.data.get((table, partition), {})
        keys = sorted((k for k in rows if start.encode() <= k.encode() < stop.encode()),
                      key=str.encode, reverse=reverse)
        return iter([(k, rows[k]) for k in keys])
