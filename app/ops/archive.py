"""Durable restarts of the embedded mode: the input topics, copied to the data directory.

The embedded broker keeps its log in memory. ``eventide up`` copies the *input* topics (the raw
topics and segment definitions: the source of truth) to ``<data dir>/log/`` periodically and at a
graceful stop, and on start loads them into the fresh broker in the same partitions and order, with
the same timestamps. All derived state is then rebuilt from them by the worker, exactly as a
replay does. A hard kill of the whole instance loses at most the records since the last copy.

Format: per topic partition an append-only file of records
``<u32 total><i64 timestamp ms><i32 key length|-1><key><i32 value length|-1><value>`` and a
``.next`` file holding the next offset to copy.
"""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path
from typing import Callable, Iterator

from aiokafka import AIOKafkaProducer, TopicPartition

from app.ops.topics_io import read_partitions
from app.topics import TopicSpec

_HEADER = struct.Struct(">Iq")
_LENGTH = struct.Struct(">i")


def _encode(timestamp: int, key: bytes | None, value: bytes | None) -> bytes:
    body = b"".join(
        _LENGTH.pack(-1) if part is None else _LENGTH.pack(len(part)) + part
        for part in (key, value))
    return _HEADER.pack(8 + len(body), timestamp) + body


def _decode(blob: bytes) -> Iterator[tuple[int, bytes | None, bytes | None]]:
    at = 0
    while at + _HEADER.size <= len(blob):
        total, timestamp = _HEADER.unpack_from(blob, at)
        end = at + 4 + total
        if end > len(blob):
            return  # a torn tail from a hard kill mid-write: stop at the last whole record
        cursor = at + _HEADER.size
        parts: list[bytes | None] = []
        for _ in range(2):
            (length,) = _LENGTH.unpack_from(blob, cursor)
            cursor += 4
            if length < 0:
                parts.append(None)
            else:
                parts.append(blob[cursor:cursor + length])
                cursor += length
        yield timestamp, parts[0], parts[1]
        at = end


class LogArchive:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, topic: str, partition: int) -> Path:
        return self.root / topic / f"{partition}.log"

    def next_offset(self, topic: str, partition: int) -> int:
        marker = self._path(topic, partition).with_suffix(".next")
        return int(marker.read_text()) if marker.exists() else 0

    def records(self, topic: str, partition: int) -> Iterator[tuple[int, bytes | None,
                                                                   bytes | None]]:
        path = self._path(topic, partition)
        if path.exists():
            yield from _decode(path.read_bytes())

    def _rewrite(self, topic: str, partition: int,
                 records: list[tuple[int, bytes | None, bytes | None]]) -> None:
        """Keep only whole records (after a torn write) so offsets and the file agree again."""
        path = self._path(topic, partition)
        path.write_bytes(b"".join(_encode(*record) for record in records))
        path.with_suffix(".next").write_text(str(len(records)))

    def count(self, specs: list[TopicSpec]) -> int:
        return sum(self.next_offset(s.name, p) for s in specs for p in range(s.partitions))

    async def copy_from(self, bootstrap: str, specs: list[TopicSpec]) -> int:
        """Append every record past what was copied before; returns how many were added."""
        starts = {TopicPartition(s.name, p): self.next_offset(s.name, p)
                  for s in specs for p in range(s.partitions)}
        added = 0
        async for batch in read_partitions(bootstrap, starts):
            tp = TopicPartition(batch[0].topic, batch[0].partition)
            path = self._path(tp.topic, tp.partition)
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "ab") as out:
                out.write(b"".join(_encode(r.timestamp, r.key, r.value) for r in batch))
            # The offset marker moves only after the records are written: a crash between the
            # two re-copies them, and load() skips records beyond the marker.
            path.with_suffix(".next").write_text(str(batch[-1].offset + 1))
            added += len(batch)
        return added

    async def load_into(self, bootstrap: str, specs: list[TopicSpec],
                        progress: Callable[[int], None] | None = None) -> int:
        """Produce the archived records into a fresh broker: same partitions, order, times."""
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                    max_batch_size=1024 * 1024)
        await producer.start()
        loaded = 0
        try:
            for spec in specs:
                for partition in range(spec.partitions):
                    limit = self.next_offset(spec.name, partition)
                    records = list(self.records(spec.name, partition))[:limit]
                    if len(records) < limit:
                        self._rewrite(spec.name, partition, records)
                    pending = []
                    for timestamp, key, value in records:
                        pending.append(await producer.send(spec.name, value, key=key,
                                                           partition=partition,
                                                           timestamp_ms=timestamp))
                        if len(pending) >= 5_000:
                            await asyncio.gather(*pending)
                            loaded += len(pending)
                            if progress:
                                progress(loaded)
                            pending = []
                    await asyncio.gather(*pending)
                    loaded += len(pending)
                    if progress:
                        progress(loaded)
        finally:
            await producer.stop()
        return loaded
