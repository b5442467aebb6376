"""Fetches that skip records the broker has acknowledged: the embedded broker's tail race.

Measured here (Tansu, memory storage; ``docs/architecture.md``, "The embedded broker"):
a consumer at the tail of a partition that several producers write at once is now and then served
a batch past one that is not visible yet. Offsets 4310-4312 were missing between 4309 and 4313,
and a fetch from 4310 straight after returned them. aiokafka takes such a jump for compaction and
moves its position past it, so every reader loses those records for good: a worker lost writes
it had answered 200 for (faust commits the jump as a gap), and a recovery would lose changelog
records.

Kafka never serves such a jump below the high-watermark of a topic without compaction, and in a
compacted topic a jump *is* compaction; so this guard is installed for Tansu only. There a batch
that starts past the fetch position ends the fetch's records for that partition: the position
stays where the missing records start, and the next fetch asks for them again. A jump still
there after :data:`ACCEPT_AFTER_S` and :data:`ACCEPT_AFTER_FETCHES` (records really gone, or
compacted away) is taken as it is, with a warning, so a reader can never stall on one.

The same race misleads Tansu's ListOffsets for the earliest offset: it answers the offset of the
batch *stored* first (the oldest object's modification time), not of the lowest offset. When a
partition's first batch was stored a moment after its second, a reader starting "from the
earliest" started at offset 1 and never read offset 0: a replay (a new group, every partition
from the earliest) came out short of a partition's first record, and its count of the input log,
read the same way, agreed it was complete (found 2026-12-06: 60 of 8,000 events missing, all of
``raw.events[2]``'s offset 0; Tansu 0.6.0 ``dynostore.rs``, ``list_offsets``). Tansu's memory
storage never deletes a record, so its earliest offset is always 0: the guard answers that
without asking.
"""

from __future__ import annotations

import logging
import time
from typing import Any, MutableMapping

from aiokafka.consumer import fetcher

from tables.decoded_records import DecodedRecords

log = logging.getLogger(__name__)

#: A jump is taken as real once it has been seen this long, and this many times.
ACCEPT_AFTER_S = 2.0
ACCEPT_AFTER_FETCHES = 3

#: (topic, partition, expected offset) → (first seen, times seen) of a jump not taken yet.
_suspected: dict[tuple[str, int, int], tuple[float, int]] = {}
#: Fetches cut short at a jump, and jumps taken as real (this process): a worker counts them in
#: its runtime's counters (:func:`count_into`), so /metrics shows them.
COUNTERS = ("torn_fetches", "fetch_jumps_accepted")
stats: MutableMapping[str, int] = dict.fromkeys(COUNTERS, 0)


def _take_jump(tp: Any, expected: int, base: int) -> bool:
    """Whether the jump from ``expected`` to a batch at ``base`` is taken now (else: fetch
    again from ``expected``)."""
    key = (tp.topic, tp.partition, expected)
    now = time.monotonic()
    first, seen = _suspected.get(key, (now, 0))
    seen += 1
    if now - first >= ACCEPT_AFTER_S and seen >= ACCEPT_AFTER_FETCHES:
        _suspected.pop(key, None)
        stats["fetch_jumps_accepted"] += 1
        log.warning("%s[%d]: offsets %d-%d were still missing after %d fetches in %.1f s; "
                    "reading on from %d", tp.topic, tp.partition, expected, base - 1, seen,
                    now - first, base)
        return True
    if len(_suspected) > 10_000:  # bounded: a jump is normally gone on the next fetch
        _suspected.clear()
    _suspected[key] = (first, seen)
    stats["torn_fetches"] += 1
    return False


class _UntilAJump:
    """The fetched batches of one partition, ending before a batch that starts past the offset
    the reader expects next (``PartitionRecords.next_fetch_offset``)."""

    def __init__(self, owner: "WholePartitionRecords", records: Any) -> None:
        self._owner, self._records = owner, records
        self._peeked: Any = None
        self._ended = False

    def has_next(self) -> bool:
        """Whether a next batch is to be read: judged once per batch (a batch let through stays
        so until :meth:`next_batch` takes it)."""
        if self._peeked is not None:
            return True
        if self._ended or not self._records.has_next():
            return False
        batch = self._records.next_batch()
        if batch is None:
            return False
        owner = self._owner
        expected = owner.next_fetch_offset
        if batch.base_offset > expected and not _take_jump(owner._tp, expected,
                                                           batch.base_offset):
            self._ended = True
            return False
        self._peeked = batch
        return True

    def next_batch(self) -> Any:
        if not self.has_next():
            return None
        batch, self._peeked = self._peeked, None
        return batch


class WholePartitionRecords(DecodedRecords):
    """aiokafka's records of one partition from one fetch, cut at a jump (see the module).
    Decoded records stay on offer (:mod:`tables.decoded_records`)."""

    def __init__(self, tp: Any, records: Any, *args: Any) -> None:
        super().__init__(tp, _UntilAJump(self, records), *args)


#: A ListOffsets request's timestamp asking for the earliest offset (aiokafka's
#: ``OffsetResetStrategy.EARLIEST``).
EARLIEST = fetcher.OffsetResetStrategy.EARLIEST
_list_offsets = fetcher.Fetcher._proc_offset_request


async def _offsets_from_the_start(self: Any, node_id: int, topic_data: Any) -> dict[Any, Any]:
    """aiokafka's ListOffsets to one broker, with every request for the earliest offset answered
    0 (offset, no timestamp) instead of asked (see the module)."""
    asked: dict[str, list[tuple[int, int]]] = {}
    earliest: dict[Any, Any] = {}
    for topic, parts in topic_data.items():
        for partition, at in parts:
            if at == EARLIEST:
                earliest[fetcher.TopicPartition(topic, partition)] = (0, None)
            else:
                asked.setdefault(topic, []).append((partition, at))
    found: dict[Any, Any] = await _list_offsets(self, node_id, asked) if asked else {}
    return {**found, **earliest}


def install() -> None:
    """Guard every aiokafka consumer of this process (idempotent). For Tansu only."""
    fetcher.PartitionRecords = WholePartitionRecords
    fetcher.Fetcher._proc_offset_request = _offsets_from_the_start


def count_into(counters: MutableMapping[str, int]) -> None:
    """Count into ``counters`` from now on (a worker's ``rt.counters``)."""
    global stats
    for name in COUNTERS:  # only these: ``stats`` may be another runtime's counters by now
        counters[name] = counters.get(name, 0) + stats.get(name, 0)
    stats = counters

