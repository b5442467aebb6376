"""A table group's changelog: written in units that every reader applies whole or not at all.

All tables that follow one source topic (the people tables follow ``person.events``) share one
compacted changelog topic, so the writes of one unit of work land in one ordered log per
partition. Why this matters (``docs/architecture.md``, "Units in the changelog"): a unit changes
several tables at once — dedup ids, history, membership, the members index. With a changelog
topic per table, a worker killed while producing them left some tables with the unit's writes
and others without; the next owner recovered that mix, took the redelivered input for done
because its dedup id was there, and had lost the membership the same unit decided. Its next
evaluation then published a second ``entered``.

Records of one changelog partition:

* **data** — key ``<table>\\x1f<key>``, value JSON (``None``: delete);
* **unit end** — key :data:`UNIT_KEY`: the data records since the previous boundary form a
  complete unit;
* **fence** — key ``\\x00fence:<epoch>`` (one per epoch, so compaction never removes one), value
  ``{"epoch", "valid_until"}``: written by every new owner of the partition before it processes
  anything. Records of earlier epochs after ``valid_until`` are void: the unfinished unit of a
  writer that was killed, and anything a deposed owner still writes.

Every record carries its writer's epoch in the :data:`EPOCH_HEADER` header. A reader
(:class:`Replayer`) holds back the records of the unit it is reading until the unit's end (or a
later boundary) shows it complete, and skips every record of an epoch older than the newest fence
it has passed. Compaction keeps offsets, so ``valid_until`` still separates complete units from the
void tail after an older unit-end record was compacted away.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Iterable

import orjson

UNIT_KEY = b"\x00unit"
FENCE_PREFIX = b"\x00fence:"
EPOCH_HEADER = "e"
SEPARATOR = "\x1f"

#: A record to apply to local state: (table, key, JSON value or None to delete).
Change = tuple[str, str, bytes | None]


def data_key(table: str, key: str) -> bytes:
    return f"{table}{SEPARATOR}{key}".encode()


def split_key(raw: bytes) -> tuple[str, str]:
    table, _, key = raw.decode().partition(SEPARATOR)
    return table, key


def fence_key(epoch: int) -> bytes:
    return FENCE_PREFIX + str(epoch).encode()


def fence_value(epoch: int, valid_until: int) -> bytes:
    return orjson.dumps({"epoch": epoch, "valid_until": valid_until})


def epoch_header(epoch: int) -> list[tuple[str, bytes]]:
    return [(EPOCH_HEADER, str(epoch).encode())]


def epoch_of(headers: Iterable[tuple[str, bytes]] | None) -> int:
    for name, value in headers or ():
        if name == EPOCH_HEADER:
            return _epoch(value)
    return 0


@functools.lru_cache(maxsize=256)
def _epoch(value: bytes) -> int:
    """(Every record of a changelog carries one of a handful of epochs: parsed once each.)"""
    return int(value)


@dataclass(frozen=True)
class Position:
    """How far a local copy of one changelog partition has applied it."""

    #: Offset of the last boundary (unit end or fence) whose unit is applied; -1 for none.
    applied_to: int = -1
    #: Epoch of the newest fence passed: records of older epochs after it are void.
    epoch: int = 0

    def encode(self) -> bytes:
        return orjson.dumps([self.applied_to, self.epoch])

    @classmethod
    def decode(cls, raw: bytes | None) -> "Position":
        if raw is None:
            return cls()
        applied_to, epoch = orjson.loads(raw)
        return cls(applied_to, epoch)


@dataclass
class Replayer:
    """Reads one changelog partition in offset order; hands out complete units only."""

    position: Position = field(default_factory=Position)
    #: Data records of the unit being read: (offset, table, key, value).
    pending: list[tuple[int, str, str, bytes | None]] = field(default_factory=list)
    #: Records skipped as void (older epoch than a fence already passed).
    void: int = 0

    def feed(self, offset: int, key: bytes | None, value: bytes | None,
             epoch: int) -> list[Change] | None:
        """One record; returns the changes to apply now when it closes a unit, else None."""
        if epoch < self.position.epoch:
            self.void += 1
            return None
        if key is None:
            return None
        if key == UNIT_KEY:
            changes = [(t, k, v) for _, t, k, v in self.pending]
            self.pending = []
            self.position = Position(offset, self.position.epoch)
            return changes
        if key.startswith(FENCE_PREFIX):
            fence = orjson.loads(value) if value is not None else None
            if fence is None or fence["epoch"] <= self.position.epoch:
                self.void += 1  # a fence of a would-be owner already deposed
                return None
            valid_until = fence["valid_until"]
            changes = [(t, k, v) for o, t, k, v in self.pending if o <= valid_until]
            self.void += len(self.pending) - len(changes)
            self.pending = []
            self.position = Position(offset, fence["epoch"])
            return changes
        table, table_key = split_key(key)
        self.pending.append((offset, table, table_key, value))
        return None

    @property
    def unfinished(self) -> int:
        """Data records read past the last boundary: a unit still being written, or void."""
        return len(self.pending)


def next_epoch(seen: int, generation: int | None) -> int:
    """The epoch a new owner fences with: its consumer-group generation, which no other owner of
    the partition shares (one owner per generation), or one past the newest seen when the group's
    generations started over."""
    if generation is not None and generation > seen:
        return generation
    return seen + 1
