"""Unit tests for app.core.dedup: NEW / REDELIVERY / DUPLICATE, remembering and forgetting ids."""

from __future__ import annotations

import copy

from hypothesis import given
from hypothesis import strategies as st
from ulid import ULID

from app.core import dedup
from app.core.dedup import Verdict, classify, prune, remember, ulid_ms

DAY_MS = 86_400_000
HORIZON_MS = 30 * DAY_MS
NOW_MS = 1_700_000_000_000
#: A ULID minted in 2017 (the seed document's example id).
OLD_ID = "01BX5ZZKBKACTAV9WEVGEMMVRY"
OLD_ID_MS = 1_508_808_576_371


def ulid_at(ms: int, tail: int = 0) -> str:
    return str(ULID.from_bytes(ms.to_bytes(6, "big") + tail.to_bytes(10, "big")))


RECENT_ID = ulid_at(NOW_MS - 1_000)
FUTURE_ID = ulid_at(NOW_MS + DAY_MS)


# --- classify ------------------------------------------------------------------------------------


def test_unseen_id_is_new() -> None:
    assert classify({}, RECENT_ID, (0, 5, 0)) is Verdict.NEW
    seen = remember({}, RECENT_ID, (0, 5, 0), now_ms=NOW_MS, horizon_ms=HORIZON_MS)
    assert classify(seen, OLD_ID, (0, 5, 0)) is Verdict.NEW


def test_same_partition_offset_and_index_is_a_redelivery() -> None:
    seen = remember({}, RECENT_ID, (3, 17, 2), now_ms=NOW_MS, horizon_ms=HORIZON_MS)
    assert classify(seen, RECENT_ID, (3, 17, 2)) is Verdict.REDELIVERY


def test_redelivery_is_recognised_after_a_json_round_trip() -> None:
    """Stored entries come back from RocksDB as JSON lists, not tuples."""
    import orjson

    seen = remember({}, RECENT_ID, (3, 17, 2), now_ms=NOW_MS, horizon_ms=HORIZON_MS)
    stored = orjson.loads(orjson.dumps(seen))
    assert classify(stored, RECENT_ID, (3, 17, 2)) is Verdict.REDELIVERY
    assert classify(stored, RECENT_ID, (3, 17, 3)) is Verdict.DUPLICATE


def test_any_difference_in_position_is_a_duplicate() -> None:
    seen = remember({}, RECENT_ID, (3, 17, 2), now_ms=NOW_MS, horizon_ms=HORIZON_MS)
    assert classify(seen, RECENT_ID, (4, 17, 2)) is Verdict.DUPLICATE   # other partition
    assert classify(seen, RECENT_ID, (3, 18, 2)) is Verdict.DUPLICATE   # other offset
    assert classify(seen, RECENT_ID, (3, 17, 0)) is Verdict.DUPLICATE   # other index in record
    assert classify(seen, RECENT_ID, (0, 0, 0)) is Verdict.DUPLICATE


@given(
    first=st.tuples(st.integers(0, 63), st.integers(0, 10**9), st.integers(0, 499)),
    second=st.tuples(st.integers(0, 63), st.integers(0, 10**9), st.integers(0, 499)),
)
def test_classify_is_redelivery_exactly_when_the_position_matches(
    first: tuple[int, int, int], second: tuple[int, int, int]
) -> None:
    seen = remember({}, RECENT_ID, first, now_ms=NOW_MS, horizon_ms=HORIZON_MS)
    expected = Verdict.REDELIVERY if first == second else Verdict.DUPLICATE
    assert classify(seen, RECENT_ID, second) is expected


# --- remember ------------------------------------------------------------------------------------


def test_remember_returns_a_new_dict_and_leaves_its_input_untouched() -> None:
    seen = remember({}, RECENT_ID, (1, 2, 3), now_ms=NOW_MS, horizon_ms=HORIZON_MS)
    before = copy.deepcopy(seen)
    after = remember(seen, FUTURE_ID, (1, 9, 0), now_ms=NOW_MS, horizon_ms=HORIZON_MS)
    assert after is not seen
    assert seen == before
    assert set(after) == {RECENT_ID, FUTURE_ID}
    assert after[RECENT_ID] == before[RECENT_ID]


def test_remember_records_expiry_and_position() -> None:
    seen = remember({}, RECENT_ID, (1, 2, 3), now_ms=NOW_MS, horizon_ms=HORIZON_MS)
    # the ULID time is before now: the horizon runs from now
    assert seen[RECENT_ID] == [NOW_MS + HORIZON_MS, 1, 2, 3]


def test_expiry_runs_from_the_ulid_time_when_it_is_later_than_now() -> None:
    seen = remember({}, FUTURE_ID, (0, 0, 0), now_ms=NOW_MS, horizon_ms=HORIZON_MS)
    assert seen[FUTURE_ID][0] == NOW_MS + DAY_MS + HORIZON_MS


def test_an_old_ulid_is_still_remembered_a_full_horizon_after_now() -> None:
    assert ulid_ms(OLD_ID) == OLD_ID_MS
    seen = remember({}, OLD_ID, (0, 7, 0), now_ms=NOW_MS, horizon_ms=HORIZON_MS)
    assert seen[OLD_ID][0] == NOW_MS + HORIZON_MS
    # one millisecond before the horizon ends it is still there, and still told apart
    kept = prune(seen, NOW_MS + HORIZON_MS - 1)
    assert OLD_ID in kept
    assert classify(kept, OLD_ID, (0, 8, 0)) is Verdict.DUPLICATE
    assert classify(kept, OLD_ID, (0, 7, 0)) is Verdict.REDELIVERY
    assert OLD_ID not in prune(seen, NOW_MS + HORIZON_MS)


@given(
    id_ms=st.integers(0, 2**47),
    now_ms=st.integers(0, 2**47),
    horizon_ms=st.integers(1, 365 * DAY_MS),
)
def test_expiry_is_the_later_of_ulid_time_and_now_plus_the_horizon(
    id_ms: int, now_ms: int, horizon_ms: int
) -> None:
    event_id = ulid_at(id_ms, tail=12345)
    seen = remember({}, event_id, (0, 0, 0), now_ms=now_ms, horizon_ms=horizon_ms)
    assert seen[event_id][0] == max(id_ms, now_ms) + horizon_ms
    assert seen[event_id][0] >= now_ms + horizon_ms


# --- prune ---------------------------------------------------------------------------------------


def test_prune_drops_an_entry_expiring_exactly_now_and_keeps_one_expiring_a_ms_later() -> None:
    seen = {"A": [NOW_MS, 0, 1, 0], "B": [NOW_MS + 1, 0, 2, 0], "C": [NOW_MS - 1, 0, 3, 0]}
    before = copy.deepcopy(seen)
    pruned = prune(seen, NOW_MS)
    assert pruned == {"B": [NOW_MS + 1, 0, 2, 0]}
    assert seen == before, "prune must not mutate its input"


def test_prune_returns_the_same_object_when_nothing_expired() -> None:
    seen = {"A": [NOW_MS + 1, 0, 1, 0], "B": [NOW_MS + DAY_MS, 0, 2, 0]}
    assert prune(seen, NOW_MS) is seen
    empty: dict[str, list[int]] = {}
    assert prune(empty, NOW_MS) is empty


def test_prune_returns_a_new_dict_when_something_expired() -> None:
    seen = {"A": [NOW_MS, 0, 1, 0]}
    pruned = prune(seen, NOW_MS)
    assert pruned is not seen
    assert pruned == {}
    assert seen == {"A": [NOW_MS, 0, 1, 0]}


def test_remembered_id_lives_exactly_one_horizon() -> None:
    seen = remember({}, RECENT_ID, (0, 1, 0), now_ms=NOW_MS, horizon_ms=HORIZON_MS)
    assert prune(seen, NOW_MS + HORIZON_MS - 1) is seen
    assert prune(seen, NOW_MS + HORIZON_MS) == {}
    # once forgotten, the id is new again
    assert classify(prune(seen, NOW_MS + HORIZON_MS), RECENT_ID, (0, 2, 0)) is Verdict.NEW


def test_a_raw_position_is_never_a_person_events_position() -> None:
    """Items taken in place from raw.events are remembered at their raw position: the same
    numbers in person.events are another record (a duplicate), the raw record again a
    redelivery."""
    remembered = dedup.entry(RECENT_ID, dedup.raw_ref(0, 5, 1), now_ms=0, horizon_ms=1)
    assert dedup.judge(remembered, dedup.raw_ref(0, 5, 1)) is Verdict.REDELIVERY
    assert dedup.judge(remembered, (0, 5, 1)) is Verdict.DUPLICATE
    assert dedup.judge(remembered, dedup.raw_ref(1, 5, 1)) is Verdict.DUPLICATE
