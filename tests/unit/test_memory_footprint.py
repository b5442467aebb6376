"""What a kept record costs in memory, and when a worker gives freed heap back."""

from __future__ import annotations

import tracemalloc

import orjson
import pytest

from app.core.membership import Change
from app.core.publishing import change_records
from app.heap import Glibc, HeapTrimmer, glibc
from tables.json_bytes import json_bytes
from app.model import decode_envelope, encode_envelope

CHANGE = Change("seg-1", "person-1", "entered", 1_764_000_000, "event:01JZ", 0)


def traced_bytes_per(make, n: int = 2_000) -> float:
    """Bytes the allocator holds per object ``make`` returns, with ``n`` of them kept."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [make(i) for i in range(n)]
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(kept) == n
    return held / n


def test_json_bytes_is_the_same_text_as_orjson():
    values = [{"a": 1, "b": [1, 2, None], "c": "é"}, [], "x" * 10_000, {"n": 2**40}, 0, "é"]
    for value in values:
        assert json_bytes(value) == orjson.dumps(value)
    assert json_bytes({"at": object()}, default=lambda o: "obj") == b'{"at":"obj"}'


def test_a_kept_record_holds_about_its_length_not_a_4_kib_buffer():
    # The records a unit keeps until it commits: a segment change and its membership record.
    assert len(change_records(CHANGE)[0]) < 200
    per_change = traced_bytes_per(lambda i: change_records(CHANGE)[0])
    per_membership = traced_bytes_per(lambda i: change_records(CHANGE)[2])
    assert per_change < 400, per_change
    assert per_membership < 400, per_membership
    # Against the encoder's own result, which is what a unit used to keep.
    if traced_bytes_per(lambda i: orjson.dumps(CHANGE.record())) > 1_000:
        assert per_change * 4 < traced_bytes_per(lambda i: orjson.dumps(CHANGE.record()))


def test_envelopes_round_trip_and_are_right_sized():
    items = [{"type": "event", "id": f"id-{i}", "name": "purchased"} for i in range(3)]
    assert decode_envelope(encode_envelope(items)) == items
    assert traced_bytes_per(lambda i: encode_envelope(items[:1])) < 400


class FakeLib:
    def __init__(self, free: int) -> None:
        self.free = free
        self.trimmed = 0

    def as_glibc(self) -> Glibc:
        return Glibc(free_bytes=lambda: self.free, trim=self._trim)

    def _trim(self) -> None:
        self.trimmed += 1
        self.free = self.free // 4  # what a trim cannot tell apart stays counted as free


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_trims_when_free_memory_grew_past_the_slack_at_most_once_per_interval():
    lib, clock = FakeLib(free=10 << 20), FakeClock()
    trimmer = HeapTrimmer(lib.as_glibc(), slack_bytes=64 << 20, interval_s=1.0, clock=clock)
    assert not trimmer.maybe_trim()  # 10 MiB free: under the slack
    lib.free = 400 << 20
    assert not trimmer.maybe_trim()  # looked less than a second ago
    clock.now += 1.0
    assert trimmer.maybe_trim()
    assert (lib.trimmed, trimmer.trims, trimmer.trimmed_bytes) == (1, 1, 400 << 20)
    # 100 MiB still counted free after the trim: given back already, so no trim for it.
    for _ in range(3):
        clock.now += 1.0
        assert not trimmer.maybe_trim()
    lib.free = (100 + 60) << 20  # grew, but by less than the slack
    clock.now += 1.0
    assert not trimmer.maybe_trim()
    lib.free = (100 + 80) << 20
    clock.now += 0.5
    assert not trimmer.maybe_trim()  # not a second since the last look
    clock.now += 0.5
    assert trimmer.maybe_trim()
    assert lib.trimmed == 2 and trimmer.trimmed_bytes == (400 + 80) << 20
    assert trimmer.trim_seconds >= 0


def test_free_memory_reused_since_a_trim_lowers_the_mark():
    lib, clock = FakeLib(free=400 << 20), FakeClock()
    trimmer = HeapTrimmer(lib.as_glibc(), slack_bytes=64 << 20, interval_s=1.0, clock=clock)
    assert trimmer.maybe_trim()  # leaves 100 MiB counted free
    lib.free = 10 << 20  # reused by new allocations
    clock.now += 1.0
    assert not trimmer.maybe_trim()
    lib.free = 80 << 20  # 70 MiB freed since: past the slack, though under the old mark
    clock.now += 1.0
    assert trimmer.maybe_trim()


@pytest.mark.parametrize("lib, interval_s", [(None, 1.0), (FakeLib(1 << 30).as_glibc(), 0.0)])
def test_off_without_glibc_or_with_a_zero_interval(lib, interval_s):
    trimmer = HeapTrimmer(lib, interval_s=interval_s, clock=FakeClock())
    assert not trimmer.enabled
    assert not trimmer.maybe_trim()
    assert trimmer.trims == 0


def test_glibc_sees_memory_freed_inside_the_heap():
    lib = glibc()
    if lib is None:
        pytest.skip("not glibc")
    # 20,000 blocks of 2,000 bytes (malloc's, not pymalloc's); every tenth stays, so what is
    # freed lies between live blocks, where the heap cannot shrink by itself. Measured from
    # after the allocation: the blocks may have reused memory a test before this one freed.
    blocks = [bytes(2_000) for _ in range(20_000)]
    allocated = lib.free_bytes()
    kept = blocks[::10]
    del blocks
    assert lib.free_bytes() - allocated > 20 << 20
    lib.trim()  # hands those pages back; must not fail
    assert len(kept) == 2_000
