"""Commits never pass a fetched record that no unit acknowledged (app/commit_guard.py, pure)."""

from __future__ import annotations

from app.commit_guard import RESEEK_AFTER_S, RESEEK_EVERY_S, CommitGuard

TP = ("raw.events", 0)


def no_gap(offset: int) -> bool:
    return False


def test_every_offset_a_fetch_went_past_is_a_gap_the_committed_one_included() -> None:
    guard = CommitGuard()
    guard.sought({TP: 10})
    assert guard.fetched(TP, 13) == (10, 12)  # faust's own gap would start at 11
    assert guard.fetched(TP, 14) is None
    assert guard.fetched(TP, 20) == (15, 19)


def test_a_run_of_offsets_is_kept_as_each_of_its_offsets_would_be() -> None:
    """``fetched_run`` (the fetch loop's path for a run without holes) against ``fetched``
    record by record, from a committed offset and from nothing committed."""
    for committed in (10, None):
        by_run, one_by_one = CommitGuard(), CommitGuard()
        for guard in (by_run, one_by_one):
            guard.sought({TP: committed})
        runs = [(13, 17), (18, 18), (25, 30)]
        assert [by_run.fetched_run(TP, first, last) for first, last in runs] == \
            [next((s for s in [one_by_one.fetched(TP, o) for o in range(first, last + 1)]
                   if s is not None), None) for first, last in runs]
        assert by_run.fetched(TP, 31) is None and one_by_one.fetched(TP, 31) is None
        assert by_run.start(TP, committed) == one_by_one.start(TP, committed)


def test_a_partition_with_nothing_committed_starts_where_its_first_record_is() -> None:
    guard = CommitGuard()
    guard.sought({TP: None})
    assert guard.fetched(TP, 3) is None  # records 0-2 gone by retention: no gap, the start is 3
    assert guard.start(TP, None) == 3
    assert guard.hold(TP, None, {3, 4}, no_gap, now=0.0) == (None, False)


def test_a_run_that_does_not_start_at_the_committed_offset_is_held() -> None:
    guard = CommitGuard()
    guard.sought({TP: 10})
    for offset in range(10, 16):
        guard.fetched(TP, offset)
    # 10 was dropped (never acknowledged); faust would commit 16 (its check allows one past)
    assert guard.hold(TP, 10, {11, 12, 13, 14, 15}, no_gap, now=0.0) == (10, False)
    assert guard.hold(TP, 10, {10, 11, 12, 13, 14, 15}, no_gap, now=0.5) == (None, False)


def test_with_nothing_committed_the_first_run_must_start_at_the_first_record() -> None:
    guard = CommitGuard()
    guard.sought({TP: None})
    for offset in range(0, 8):
        guard.fetched(TP, offset)
    # faust takes the first run wherever it starts: 4-7 would be committed past 0-3
    assert guard.hold(TP, None, {4, 5, 6, 7}, no_gap, now=0.0) == (0, False)


def test_an_offset_in_a_gap_needs_no_acknowledgement() -> None:
    guard = CommitGuard()
    guard.sought({TP: 10})
    assert guard.hold(TP, 10, {12}, lambda offset: offset in (10, 11), now=0.0) == (None, False)


def test_a_hold_that_lasts_asks_to_fetch_again_and_not_at_every_commit() -> None:
    guard = CommitGuard()
    guard.sought({TP: 10})
    acked = {11, 12}
    assert guard.hold(TP, 10, acked, no_gap, now=100.0) == (10, False)
    assert guard.hold(TP, 10, acked, no_gap, now=100.0 + RESEEK_AFTER_S) == (10, True)
    assert guard.hold(TP, 10, acked, no_gap, now=101.0 + RESEEK_AFTER_S) == (10, False)
    later = 100.0 + RESEEK_AFTER_S + RESEEK_EVERY_S
    assert guard.hold(TP, 10, acked, no_gap, now=later) == (10, True)


def test_a_seek_or_a_revocation_forgets_what_was_known() -> None:
    guard = CommitGuard()
    guard.sought({TP: None})
    guard.fetched(TP, 5)
    guard.forget([TP])
    assert guard.start(TP, None) is None
    assert guard.fetched(TP, 9) is None and guard.start(TP, None) == 9
    guard.sought({TP: 0})  # committed 0 is nothing committed (faust keeps it as None)
    assert guard.start(TP, 0) is None
