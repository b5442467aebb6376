"""Durable offsets shared between the processes of one embedded instance.

The writer (``eventide up``'s first worker, which owns the input log) publishes, per input topic
partition, the next offset not yet on disk in a small file every process maps; workers 2..N of
``up --workers N`` and an ingest tier (``up --ingest-port``) wait on it before they acknowledge
(:class:`DurableFollower`).

The file has a second row: per partition, the offset a follower is waiting to see on disk.
The writer fetches a partition from the broker as soon as that row is ahead of what it has
appended, so a follower's request waits for one fetch and one flush (tens of milliseconds),
not for the writer's twice-a-second probe of every partition.
"""

from __future__ import annotations

import asyncio
import mmap
import struct
import time
from pathlib import Path
from typing import Sequence

from app.producer import BrokerUnavailable, OutRecord

#: The shared file of durable offsets, in the input log's directory.
DURABLE_OFFSETS = "durable.offsets"

_I64 = struct.Struct(">q")


class DurableOffsets:
    """Per input topic partition, the next offset not yet on disk, and the next offset a follower
    waits for, in a file every process of the instance maps: the writer publishes the first and
    reads the second; followers the other way round."""

    def __init__(self, path: Path, slots: Sequence[tuple[str, int]], *, writer: bool) -> None:
        self.slots = {slot: index for index, slot in enumerate(slots)}
        #: Where the second row (the offsets followers wait for) starts.
        self._wanted_at = 8 * max(1, len(slots))
        size = 2 * self._wanted_at
        if writer:
            path.write_bytes(b"\0" * size)
        self._file = open(path, "r+b")
        self._map = mmap.mmap(self._file.fileno(), size, access=mmap.ACCESS_WRITE)

    def get(self, topic: str, partition: int) -> int:
        return _I64.unpack_from(self._map, 8 * self.slots[(topic, partition)])[0]

    def publish(self, topic: str, partition: int, next_offset: int) -> None:
        _I64.pack_into(self._map, 8 * self.slots[(topic, partition)], next_offset)

    def wanted(self, topic: str, partition: int) -> int:
        """The next offset some follower waits to see on disk (0: none)."""
        return _I64.unpack_from(self._map, self._wanted_at + 8 * self.slots[(topic, partition)])[0]

    def want(self, topic: str, partition: int, next_offset: int) -> None:
        """A follower waits until ``next_offset`` is published. (Followers may race here: the
        row is a hint, a lost raise only costs the wait for the writer's probe.)"""
        if next_offset > self.wanted(topic, partition):
            _I64.pack_into(self._map, self._wanted_at + 8 * self.slots[(topic, partition)],
                           next_offset)

    def close(self) -> None:
        self._map.close()
        self._file.close()


class DurableFollower:
    """Workers 2..N of an embedded instance: wait until the writer has the records on disk."""

    def __init__(self, path: Path, slots: Sequence[tuple[str, int]],
                 wait_timeout_s: float = 10.0) -> None:
        self.offsets = DurableOffsets(path, slots, writer=False)
        self.wait_timeout_s = wait_timeout_s

    async def wait(self, records: Sequence[OutRecord], offsets: Sequence[int]) -> None:
        deadline = time.monotonic() + self.wait_timeout_s
        for record, offset in zip(records, offsets):
            slot = (record.topic, record.partition)
            if slot in self.offsets.slots:
                self.offsets.want(*slot, offset + 1)
        for record, offset in zip(records, offsets):
            slot = (record.topic, record.partition)
            if slot not in self.offsets.slots:
                continue
            while self.offsets.get(*slot) <= offset:
                if time.monotonic() > deadline:
                    raise BrokerUnavailable("accepted records are not on local disk yet")
                await asyncio.sleep(0.002)
