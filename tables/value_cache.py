"""Decoded values of the keys a worker's units read or wrote lately, bounded by their memory.

:class:`tables.unit.Table` reads through it and :class:`tables.state.StateManager` writes it
through, so an entry is always what a read of RocksDB would give (docs/architecture.md, "A
returning person's values are kept decoded").
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

#: What an entry takes beyond its value (its slot, key and bookkeeping), and what a decoded value
#: takes per byte of its JSON: a profile measured 4.8x decoded, a membership 3.5x, and most
#: entries are smaller values. An entry's cost approximates its memory; /metrics shows the sum.
ENTRY_BYTES = 300
DECODED_PER_JSON_BYTE = 3

#: No value known: a key the cache does not hold, or a unit does not write (``None`` is a
#: known "absent").
MISSING: Any = object()

#: (table, partition, key)
Slot = tuple[str, int, str]


class ValueCache:
    """Entries costing at most ``budget_bytes`` (:data:`ENTRY_BYTES`, and
    :data:`DECODED_PER_JSON_BYTE` per encoded byte); the least recently written (or first read)
    go first."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        #: slot → (value, None if absent; what it counts for).
        self._entries: OrderedDict[Slot, tuple[Any, int]] = OrderedDict()
        self.size_bytes = 0
        #: Reads answered from the cache, and reads that went to RocksDB (for /metrics).
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, slot: Slot) -> Any:
        """The value cached for ``slot``, or :data:`MISSING`."""
        found = self._entries.get(slot)
        if found is None:
            self.misses += 1
            return MISSING
        self.hits += 1
        return found[0]

    def keep(self, slot: Slot, value: Any, encoded_bytes: int) -> None:
        entries = self._entries
        cost = ENTRY_BYTES + DECODED_PER_JSON_BYTE * encoded_bytes
        old = entries.get(slot)
        if old is not None:
            self.size_bytes -= old[1]
        entries[slot] = (value, cost)
        entries.move_to_end(slot)
        self.size_bytes += cost
        while self.size_bytes > self.budget_bytes and entries:
            _, (_, freed) = entries.popitem(last=False)
            self.size_bytes -= freed

    def drop(self, slot: Slot) -> None:
        found = self._entries.pop(slot, None)
        if found is not None:
            self.size_bytes -= found[1]

    def drop_partition(self, table: str, partition: int) -> None:
        """Every entry of one table partition (revoked: its keys are another worker's now)."""
        for slot in [slot for slot in self._entries
                     if slot[1] == partition and slot[0] == table]:
            self.drop(slot)

    def items(self) -> list[tuple[Slot, Any]]:
        return [(slot, value) for slot, (value, _) in self._entries.items()]
