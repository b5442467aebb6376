"""tables.changelog.Replayer: whole units only, fences void what a killed or deposed writer left."""

from __future__ import annotations

from tables.changelog import (UNIT_KEY, Position, Replayer, data_key, fence_key, fence_value,
                              next_epoch)


def put(table: str, key: str, value: str) -> tuple[bytes, bytes]:
    return data_key(table, key), value.encode()


def feed_all(replayer: Replayer, log: list[tuple[int, bytes, bytes | None, int]]
             ) -> list[tuple[str, str, bytes | None]]:
    applied = []
    for offset, key, value, epoch in log:
        applied += replayer.feed(offset, key, value, epoch) or []
    return applied


def test_a_unit_is_applied_when_its_end_arrives_and_not_before() -> None:
    r = Replayer()
    assert r.feed(0, *put("history", "p", "h1"), 1) is None
    assert r.feed(1, *put("membership", "p", "m1"), 1) is None
    assert r.unfinished == 2
    assert r.feed(2, UNIT_KEY, b"", 1) == [("history", "p", b"h1"), ("membership", "p", b"m1")]
    assert r.position == Position(2, 0)
    assert r.unfinished == 0


def test_a_unit_without_its_end_is_never_applied_and_a_fence_voids_it() -> None:
    r = Replayer(Position(-1, 1))
    log = [(0, *put("dedup", "p", "d1"), 1), (1, UNIT_KEY, b"", 1),
           (2, *put("dedup", "p", "d2"), 1),          # killed here: no unit end
           (3, fence_key(2), fence_value(2, 1), 2),    # the next owner fences after offset 1
           (4, *put("dedup", "p", "d3"), 2), (5, UNIT_KEY, b"", 2)]
    assert feed_all(r, log) == [("dedup", "p", b"d1"), ("dedup", "p", b"d3")]
    assert r.void == 1
    assert r.position == Position(5, 2)


def test_a_deposed_owner_s_records_after_the_fence_are_skipped() -> None:
    r = Replayer()
    log = [(0, fence_key(1), fence_value(1, -1), 1),
           (1, *put("dedup", "p", "a1"), 1), (2, UNIT_KEY, b"", 1),
           (3, fence_key(2), fence_value(2, 2), 2),     # b takes over
           (4, *put("dedup", "p", "a2"), 1), (5, UNIT_KEY, b"", 1),   # a still writes
           (6, *put("dedup", "p", "b1"), 2), (7, UNIT_KEY, b"", 2)]
    assert feed_all(r, log) == [("dedup", "p", b"a1"), ("dedup", "p", b"b1")]
    assert r.void == 2


def test_valid_until_survives_compaction_of_an_older_unit_end() -> None:
    # Compaction removed the unit end at offset 2 (a later unit end has the same key); the
    # fence's valid_until (2) still says the records before it form complete units.
    r = Replayer()
    compacted = [(1, *put("history", "p", "h1"), 1),
                 (3, *put("history", "q", "partial"), 1),   # the unfinished unit
                 (4, fence_key(2), fence_value(2, 2), 2),
                 (5, *put("history", "p", "h2"), 2), (6, UNIT_KEY, b"", 2)]
    assert feed_all(r, compacted) == [("history", "p", b"h1"), ("history", "p", b"h2")]


def test_same_epoch_units_whose_end_was_compacted_are_applied_at_the_next_end() -> None:
    r = Replayer()
    compacted = [(0, *put("history", "p", "h1"), 1),        # its unit end (1) compacted away
                 (2, *put("history", "q", "h2"), 1), (3, UNIT_KEY, b"", 1)]
    assert feed_all(r, compacted) == [("history", "p", b"h1"), ("history", "q", b"h2")]


def test_a_stale_fence_of_a_deposed_would_be_owner_is_ignored() -> None:
    r = Replayer(Position(10, 5))
    assert r.feed(11, fence_key(4), fence_value(4, 3), 4) is None
    assert r.position == Position(10, 5)


def test_a_replayer_resumes_from_a_stored_position_with_its_epoch() -> None:
    first = Replayer()
    feed_all(first, [(0, fence_key(3), fence_value(3, -1), 3)])
    again = Replayer(Position.decode(first.position.encode()))
    assert again.position == Position(0, 3)
    assert again.feed(1, *put("dedup", "p", "old"), 2) is None and again.void == 1


def test_the_next_epoch_is_the_group_generation_or_one_past_the_newest_seen() -> None:
    assert next_epoch(0, None) == 1
    assert next_epoch(4, 9) == 9
    assert next_epoch(9, 9) == 10
    assert next_epoch(12, 3) == 13
