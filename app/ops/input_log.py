"""The embedded mode's input log: every input record on local disk before it is acknowledged.

The embedded broker keeps its log in memory. So that a ``200`` is a promise on one machine too,
``eventide up`` keeps the *input* topics (the raw topics and segment definitions: the source of
truth; everything else is rebuilt from them; and the console's session revocations) in one file,
``<data dir>/log/input.wal``:

* **the i-th record of a topic partition in the file is its offset i** — each partition's
  records are appended strictly in offset order (partitions interleave);
* a request is answered only once its records are written and ``fdatasync``'d (group commit: one
  write and one flush per round cover every record that arrived meanwhile). The flush runs on the
  event loop itself: it takes a fraction of a millisecond here, whereas a thread would wait for
  the busy loop's GIL before and after each system call (5 ms switch interval each: measured,
  it halved accepted requests/s);
* records produced in this process are handed over with the offsets the broker gave them (the
  fast path); records from anywhere else (a Kafka producer writing to the embedded broker,
  ``eventide deadletters --resubmit``, workers 2..N of ``up --workers N``) are fetched from the
  broker to fill the gaps. Other processes wait on the durable offsets this one publishes in a
  small shared file (:class:`DurableOffsets`);
* on start the file is checked (a torn last record — never acknowledged — is cut off; a corrupt
  record in the middle is reported with its position and left out, the rest kept) and produced
  into the fresh broker in order, exactly once;
* ``EVENTIDE_INPUT_LOG_MAX_BYTES`` bounds the disk it may use; past it (or on a full disk) appends
  fail, the waiting requests answer ``503``, and nothing acknowledged is lost.

The record format and reading a file back are in :mod:`app.ops.input_log_records`; the offsets
shared with workers 2..N in :mod:`app.ops.durable_offsets`.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from app.ops.durable_offsets import DurableOffsets
from app.ops.input_log_records import Stored, encode, fsync_path, legacy_records, scan
from app.producer import BrokerUnavailable, OutRecord

log = logging.getLogger(__name__)


class InputLog:
    """The input log of one instance (see the module doc)."""

    FILE = "input.wal"

    def __init__(self, root: Path, slots: Sequence[tuple[str, int]], *, max_bytes: int = 0,
                 wait_timeout_s: float = 10.0) -> None:
        self.root = root
        self.path = root / self.FILE
        self.slots = list(slots)
        self.max_bytes = max_bytes
        self.wait_timeout_s = wait_timeout_s
        #: Records on disk per slot (= the next offset to append).
        self.count: dict[tuple[str, int], int] = {slot: 0 for slot in self.slots}
        self._size = 0
        self._fd: int | None = None
        #: slot → {offset: record} handed over or fetched, not yet on disk.
        self._pending: dict[tuple[str, int], dict[int, Stored]] = defaultdict(dict)
        self._waiters: dict[tuple[str, int], list[tuple[int, asyncio.Future]]] = \
            defaultdict(list)
        self._wake: asyncio.Event | None = None
        self.durable: DurableOffsets | None = None
        #: The last append error (disk full, quota), until an append succeeds again.
        self.failing: OSError | None = None
        self.flushes = 0
        self.appended = 0

    # -- start: check, repair, restore -----------------------------------------------------------

    def open(self, say: Callable[[str], None] = log.warning) -> int:
        """Check the file (cut a torn tail, drop corrupt records, each reported) and count each
        partition's records; returns the total. The file is rewritten only when a record in the
        middle was corrupt."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.path.exists():
            return 0
        found = scan(self.path.read_bytes())
        for position, byte in found.corrupt:
            say(f"input log {self.path}: record {position} (byte {byte}) is corrupt and was left "
                "out; the records after it are restored")
        if found.torn_bytes:
            say(f"input log {self.path}: a torn last record ({found.torn_bytes} bytes, never "
                "acknowledged) was cut off")
        if found.corrupt:
            self.path.write_bytes(b"".join(encode(r) for r in found.records))
            fsync_path(self.path)
        elif found.torn_bytes:
            with open(self.path, "r+b") as f:
                f.truncate(found.good_bytes)
                os.fsync(f.fileno())
        for record in found.records:
            self.count[record.slot] = self.count.get(record.slot, 0) + 1
        self._size = self.path.stat().st_size
        return len(found.records)

    def records(self, topic: str | None = None, partition: int | None = None
                ) -> Iterator[Stored]:
        """The stored records in file order (of one topic partition, if named)."""
        if self.path.exists():
            for record in scan(self.path.read_bytes()).records:
                if topic is None or (record.topic, record.partition) == (topic, partition):
                    yield record

    async def restore_into(self, bootstrap: str,
                           progress: Callable[[int], None] | None = None) -> int:
        """Produce the file into a fresh broker: same partitions, order and timestamps. The
        broker is new (its log is in memory), so each record lands once, at its own offset."""
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                    max_batch_size=1024 * 1024, max_request_size=8 * 1024 * 1024)
        await producer.start()
        loaded = 0
        try:
            pending = []
            for record in self.records():
                pending.append(await producer.send(
                    record.topic, record.value, key=record.key, partition=record.partition,
                    timestamp_ms=record.timestamp, headers=record.headers or None))
                if len(pending) >= 5_000:
                    loaded += await _settle(pending)
                    pending = []
                    if progress:
                        progress(loaded)
            loaded += await _settle(pending)
            if progress:
                progress(loaded)
        finally:
            await producer.stop()
        return loaded

    # -- running: the writer ---------------------------------------------------------------------

    def publish_to(self, path: Path) -> None:
        self.durable = DurableOffsets(path, self.slots, writer=True)
        for slot in self.slots:
            self.durable.publish(*slot, self.count[slot])

    def offer(self, records: Sequence[OutRecord], offsets: Sequence[int]) -> None:
        """Records this process produced to input topics, with the offsets the broker gave."""
        for record, offset in zip(records, offsets):
            slot = (record.topic, record.partition)
            if slot in self.count and offset >= self.count[slot]:
                self._pending[slot][offset] = Stored(
                    record.topic, record.partition,
                    record.timestamp_ms or int(time.time() * 1000), record.key, record.value,
                    list(record.headers))
        if self._wake is not None:
            self._wake.set()

    async def wait(self, records: Sequence[OutRecord], offsets: Sequence[int]) -> None:
        """Return once every record is on disk; :class:`BrokerUnavailable` after the timeout."""
        self.offer(records, offsets)
        loop = asyncio.get_running_loop()
        futures = []
        for record, offset in zip(records, offsets):
            slot = (record.topic, record.partition)
            if slot in self.count and offset >= self.count[slot]:
                future = loop.create_future()
                self._waiters[slot].append((offset, future))
                futures.append(future)
        if not futures:
            return
        done, _ = await asyncio.wait(futures, timeout=self.wait_timeout_s)
        if len(done) < len(futures):
            reason = f": {self.failing.strerror or self.failing}" if self.failing else ""
            raise BrokerUnavailable(f"accepted records are not on local disk yet{reason}")

    async def run(self, bootstrap: str, *, tansu: bool) -> None:
        """Append what arrives, in offset order, until cancelled; fill gaps from the broker."""
        self._wake = asyncio.Event()
        follower = asyncio.ensure_future(self._follow(bootstrap, tansu))
        try:
            await self._flush_loop()
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    async def _flush_loop(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            ends: dict[tuple[str, int], int] = {}
            chunks = []
            for slot, pending in self._pending.items():
                start = n = self.count[slot]
                while n in pending:
                    chunks.append(encode(pending[n]))
                    n += 1
                if n > start:
                    ends[slot] = n
            if not ends:
                continue
            try:
                self._append(b"".join(chunks))
            except OSError as exc:
                if self.failing is None or self.failing.errno != exc.errno:
                    log.error("input log: appending failed (%s); requests wait and then answer "
                              "503 until it succeeds", exc)
                self.failing = exc
                await asyncio.sleep(0.5)
                self._wake.set()
                continue
            if self.failing is not None:
                log.warning("input log: appending works again")
                self.failing = None
            self.flushes += 1
            for slot, n in ends.items():
                pending = self._pending[slot]
                for offset in range(self.count[slot], n):
                    pending.pop(offset, None)
                self.appended += n - self.count[slot]
                self.count[slot] = n
                if self.durable is not None:
                    self.durable.publish(*slot, n)
                waiters = self._waiters[slot]
                if waiters:
                    keep = []
                    for offset, future in waiters:
                        if offset < n:
                            if not future.done():
                                future.set_result(None)
                        else:
                            keep.append((offset, future))
                    self._waiters[slot] = keep

    def _append(self, data: bytes) -> None:
        """Write and flush: all of ``data`` or, on an error, none of it."""
        if self.max_bytes and self._size + len(data) > self.max_bytes:
            raise OSError(errno.ENOSPC, f"input log would exceed EVENTIDE_INPUT_LOG_MAX_BYTES "
                                        f"({self.max_bytes} bytes)")
        if self._fd is None:
            created = not self.path.exists()
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            if created:
                fsync_path(self.root)
        try:
            written = os.write(self._fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, "short write to the input log")
            os.fdatasync(self._fd)
        except OSError:
            os.ftruncate(self._fd, self._size)  # a partial record must not precede later ones
            raise
        self._size += len(data)

    async def _follow(self, bootstrap: str, tansu: bool) -> None:
        """Fetch records not handed over in this process (other producers) from the broker.

        Records produced here reach the writer directly, so reading them back would only cost
        CPU: a partition is fetched when its pending records show a hole at the next offset to
        append, or when another process of the instance waits for an offset not appended yet
        (:meth:`DurableOffsets.wanted`), and every partition is probed twice a second for
        records from elsewhere."""
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    fetch_max_wait_ms=20 if tansu else 100,
                                    max_partition_fetch_bytes=8 * 1024 * 1024)
        await consumer.start()
        try:
            every = {TopicPartition(*slot): slot for slot in self.slots}
            consumer.assign(list(every))
            consumer.pause(*every)
            probed = 0.0
            while True:
                await asyncio.sleep(0.01)
                durable = self.durable
                holes = [tp for tp, slot in every.items()
                         if (self._pending.get(slot) and self.count[slot] not in self._pending[slot])
                         or (durable is not None and durable.wanted(*slot) > self.count[slot])]
                if time.monotonic() - probed > 0.5:
                    holes, probed = list(every), time.monotonic()
                if not holes:
                    continue
                for tp in holes:
                    consumer.seek(tp, self.count[every[tp]])
                consumer.resume(*holes)
                fetched = await consumer.getmany(*holes, timeout_ms=100, max_records=5_000)
                consumer.pause(*holes)
                added = False
                for tp, messages in fetched.items():
                    slot = every[tp]
                    pending = self._pending[slot]
                    for m in messages:
                        if m.offset >= self.count[slot] and m.offset not in pending:
                            pending[m.offset] = Stored(m.topic, m.partition, m.timestamp,
                                                       m.key, m.value,
                                                       [(k, v) for k, v in m.headers or ()])
                            added = True
                    if len(pending) > 50_000:  # appends failing: what is dropped is refetched
                        pending.clear()
                if added and self._wake is not None:
                    self._wake.set()
        finally:
            await consumer.stop()


async def _settle(pending: list[asyncio.Future]) -> int:
    for future in pending:
        await future
    return len(pending)


def migrate_archive(root: Path, slots: Iterable[tuple[str, int]],
                    say: Callable[[str], None] = log.warning) -> int:
    """Convert the periodic archive of earlier versions (``<topic>/<partition>.log``, valid up to
    the count in ``<partition>.next``) into the input log, once. Returns the records converted."""
    target = root / InputLog.FILE
    if target.exists():
        return 0
    converted: list[bytes] = []
    olds = []
    for topic, partition in slots:
        old = root / topic / f"{partition}.log"
        if not old.exists():
            continue
        marker = old.with_suffix(".next")
        limit = int(marker.read_text()) if marker.exists() else 0
        for timestamp, key, value in list(legacy_records(old.read_bytes()))[:limit]:
            converted.append(encode(Stored(topic, partition, timestamp, key, value)))
        olds.append(old)
    if not olds:
        return 0
    target.write_bytes(b"".join(converted))
    fsync_path(target)
    for old in olds:
        old.rename(old.with_suffix(".log.migrated"))
    say(f"input log: converted {len(converted)} records of the earlier periodic archive")
    return len(converted)


def slots_of(specs: Iterable[object]) -> list[tuple[str, int]]:
    """(topic, partition) of every input topic spec, in a fixed order."""
    return [(spec.name, p) for spec in specs for p in range(spec.partitions)]  # type: ignore


