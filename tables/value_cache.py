"""Decoded values of the keys a worker's units read or wrote lately, bounded by their memory.

:class:`tables.unit.Table` reads through it and :class:`tables.state.StateManager` writes it
through, so an entry is always what a read of RocksDB would give (docs/architecture.md, "A
returning person's values are kept decoded").
"""

from __future__ import annotations

from typing import Any

#: What an entry takes beyond its value (its slot, key and bookkeeping), and what a decoded value
#: takes per byte of its JSON: a profile measured 4.8x decoded, a membership 3.5x, and most
#: entries are smaller values. An entry's cost approximates its memory; /metrics shows the sum.
ENTRY_BYTES = 300
DECODED_PER_JSON_BYTE = 3

#: Past its budget, the cache evicts down to this share of it in one pass (see :meth:`keep`).
EVICT_TO = 0.9

#: No value known: a key the cache does not hold, or a unit does not write (``None`` is a
#: known "absent").
MISSING: Any = object()

#: (table, partition, key)
Slot = tuple[str, int, str]


class ValueCache:
    """Entries costing at most ``budget_bytes`` (:data:`ENTRY_BYTES`, and
    :data:`DECODED_PER_JSON_BYTE` per encoded byte); the least recently written (or first read)
    go first.

    A plain dict in insertion order, not an ``OrderedDict``: compiled code reaches a dict's own
    methods directly, but an ``OrderedDict``'s item assignment through Python's slot wrappers,
    ~1,000 instructions each (``bench.instructions``: 5% of an item with 1,000 segments). An entry
    written again is taken out and put back at the end. Evicting the first entry one at a time
    would rescan the holes earlier evictions left at the front (a dict compacts only as it
    grows), so it evicts a tenth of the budget at a time, in one pass."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        #: slot → (value, None if absent; what it counts for), least recently written first.
        self._entries: dict[Slot, tuple[Any, int]] = {}
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
        old = entries.pop(slot, None)
        if old is not None:
            self.size_bytes -= old[1]
        entries[slot] = (value, cost)
        self.size_bytes += cost
        if self.size_bytes > self.budget_bytes:
            self._evict()

    def _evict(self) -> None:
        """The oldest entries, until the cache is back under :data:`EVICT_TO` of its budget."""
        entries, target = self._entries, int(self.budget_bytes * EVICT_TO)
        size, oldest = self.size_bytes, []
        for slot, (_, cost) in entries.items():
            if size <= target:
                break
            size -= cost
            oldest.append(slot)
        for slot in oldest:
            del entries[slot]
        self.size_bytes = size

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
