"""app.ops.input_log on real files: format, torn tails, corrupt records, group commit, quota."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

import pytest

from app.ops.durable_offsets import DURABLE_OFFSETS, DurableFollower, DurableOffsets
from app.ops.input_log import InputLog, migrate_archive
from app.ops.input_log_records import Stored, encode, scan
from app.producer import BrokerUnavailable, OutRecord

SLOTS = [("raw.events", 0), ("raw.events", 1)]


def records(n: int, start: int = 0, partition: int = 0) -> list[Stored]:
    return [Stored("raw.events", partition, 1_700_000_000_000 + i, f"k{i}".encode(),
                   f"v{i}".encode(), [("h", b"x")] if i % 2 else [])
            for i in range(start, start + n)]


def test_records_round_trip_with_keys_values_and_headers() -> None:
    original = records(5) + [Stored("t", 3, 1, None, None), Stored("t", 0, 2, b"", b"")]
    found = scan(b"".join(encode(r) for r in original))
    assert found.records == original
    assert found.torn_bytes == 0 and found.corrupt == []


@pytest.mark.parametrize("cut", [1, 5, 9, 20])
def test_a_torn_last_record_is_detected_and_the_rest_kept(cut: int) -> None:
    whole = b"".join(encode(r) for r in records(3))
    last = encode(records(1, start=3)[0])
    found = scan(whole + last[:len(last) - cut])
    assert found.records == records(3)
    assert found.good_bytes == len(whole)
    assert found.torn_bytes == len(last) - cut


def test_a_corrupt_record_in_the_middle_is_reported_and_the_rest_kept() -> None:
    blobs = [bytearray(encode(r)) for r in records(4)]
    blobs[1][-1] ^= 0xFF  # a flipped bit in record 1's body
    found = scan(b"".join(bytes(b) for b in blobs))
    assert found.corrupt == [(1, len(blobs[0]))]
    assert found.records == [records(4)[i] for i in (0, 2, 3)]


def test_open_cuts_a_torn_tail_and_repairs_corrupt_records(tmp_path: Path) -> None:
    log = InputLog(tmp_path, SLOTS)
    blobs = [bytearray(encode(r)) for r in records(4) + records(2, partition=1)]
    blobs[1][-1] ^= 0xFF
    log.path.write_bytes(b"".join(bytes(b) for b in blobs) + encode(records(1, 9)[0])[:7])
    said: list[str] = []
    assert log.open(say=said.append) == 5
    assert any("record 1" in line and "corrupt" in line for line in said)
    assert any("torn last record" in line for line in said)
    assert log.count[SLOTS[0]] == 3 and log.count[SLOTS[1]] == 2
    # repaired on disk: record i of the file is offset i again, and a second open is quiet
    said.clear()
    assert InputLog(tmp_path, SLOTS).open(say=said.append) == 5 and said == []


def out(partition: int, n: int) -> OutRecord:
    return OutRecord("raw.events", partition, f"k{n}".encode(), f"v{n}".encode(),
                     timestamp_ms=1_700_000_000_000 + n)


async def run_writer(log: InputLog) -> asyncio.Task:
    """The flush loop alone (no broker to fill gaps from)."""
    log._wake = asyncio.Event()
    return asyncio.ensure_future(log._flush_loop())


async def test_records_are_appended_in_offset_order_and_waiters_released_once_on_disk(
        tmp_path: Path) -> None:
    log = InputLog(tmp_path, SLOTS)
    log.open()
    log.publish_to(tmp_path / DURABLE_OFFSETS)
    task = await run_writer(log)
    try:
        # offsets 1 and 2 arrive before 0: nothing can be appended until 0 is there
        waiting = asyncio.ensure_future(log.wait([out(0, 1), out(0, 2)], [1, 2]))
        await asyncio.sleep(0.05)
        assert not waiting.done() and log.count[SLOTS[0]] == 0
        await log.wait([out(0, 0)], [0])
        await asyncio.wait_for(waiting, 2)
        assert log.count[SLOTS[0]] == 3
        assert [r.value for r in log.records(*SLOTS[0])] == [b"v0", b"v1", b"v2"]
        # another process sees the durable offset through the shared file
        follower = DurableFollower(tmp_path / DURABLE_OFFSETS, SLOTS, wait_timeout_s=0.2)
        await follower.wait([out(0, 2)], [2])
        with pytest.raises(BrokerUnavailable):
            await follower.wait([out(0, 3)], [3])
    finally:
        task.cancel()


async def test_concurrent_requests_share_one_flush(tmp_path: Path) -> None:
    log = InputLog(tmp_path, SLOTS)
    log.open()
    task = await run_writer(log)
    try:
        await asyncio.gather(*(log.wait([out(i % 2, i)], [i // 2]) for i in range(200)))
        assert log.count == {SLOTS[0]: 100, SLOTS[1]: 100}
        assert log.flushes < 20, "group commit: far fewer flushes than requests"
    finally:
        task.cancel()


async def test_past_the_quota_requests_fail_and_nothing_partial_is_left(tmp_path: Path) -> None:
    one = len(encode(Stored("raw.events", 0, 1_700_000_000_000, b"k0", b"v0")))
    log = InputLog(tmp_path, SLOTS, max_bytes=3 * one, wait_timeout_s=0.5)
    log.open()
    task = await run_writer(log)
    try:
        await log.wait([out(0, 0), out(0, 1)], [0, 1])
        with pytest.raises(BrokerUnavailable, match="not on local disk"):
            await log.wait([out(0, 2), out(0, 3)], [2, 3])
        assert log.failing is not None
        assert log.count[SLOTS[0]] == 2
        assert scan(log.path.read_bytes()).torn_bytes == 0
        # room again (the operator raised the bound): the pending records go to disk
        log.max_bytes = 0
        await log.wait([out(0, 2), out(0, 3)], [2, 3])
        assert [r.value for r in log.records(*SLOTS[0])] == [b"v0", b"v1", b"v2", b"v3"]
    finally:
        task.cancel()


def encode_archive(timestamp: int, key: bytes, value: bytes) -> bytes:
    """The earlier periodic archive's record format, written here as those versions did."""
    body = b"".join(struct.pack(">i", len(part)) + part for part in (key, value))
    return struct.pack(">Iq", 8 + len(body), timestamp) + body


def test_the_periodic_archive_of_earlier_versions_is_converted_once(tmp_path: Path) -> None:
    folder = tmp_path / "raw.events"
    folder.mkdir()
    (folder / "0.log").write_bytes(b"".join(encode_archive(i, b"k", b"v%d" % i)
                                            for i in range(3)))
    (folder / "0.next").write_text("2")  # the third was written after the last marker
    assert migrate_archive(tmp_path, SLOTS) == 2
    log = InputLog(tmp_path, SLOTS)
    assert log.open() == 2 and log.count == {SLOTS[0]: 2, SLOTS[1]: 0}
    assert [r.value for r in log.records(*SLOTS[0])] == [b"v0", b"v1"]
    assert migrate_archive(tmp_path, SLOTS) == 0


def test_followers_say_which_offset_they_wait_for_and_the_writer_sees_it(tmp_path: Path) -> None:
    """The second row of the shared file: the writer fetches a partition as soon as a follower
    waits for an offset beyond what it appended (InputLog._follow)."""
    writer = DurableOffsets(tmp_path / DURABLE_OFFSETS, SLOTS, writer=True)
    a = DurableOffsets(tmp_path / DURABLE_OFFSETS, SLOTS, writer=False)
    b = DurableOffsets(tmp_path / DURABLE_OFFSETS, SLOTS, writer=False)
    assert writer.wanted(*SLOTS[0]) == 0
    a.want(*SLOTS[0], 5)
    b.want(*SLOTS[0], 3)  # behind what another follower waits for: the row keeps the furthest
    assert writer.wanted(*SLOTS[0]) == 5 and writer.wanted(*SLOTS[1]) == 0
    writer.publish(*SLOTS[0], 5)
    assert a.get(*SLOTS[0]) == 5 and b.get(*SLOTS[0]) == 5
    for offsets in (writer, a, b):
        offsets.close()
