"""The chaos workload and its oracle, without a broker: deterministic, and order-independent by
construction (the properties the crash-schedule reconciliation relies on)."""

from __future__ import annotations

from collections import Counter, defaultdict

from app.testing.chaos.oracle import oracle
from app.testing.chaos.workload import SHARED_ATTRIBUTES, generate

BASE_MS = 1_750_000_000_000


def test_same_seed_same_items() -> None:
    first, again = generate(2000, 3, base_ms=BASE_MS), generate(2000, 3, base_ms=BASE_MS)
    assert [s.item for s in first.sent] == [s.item for s in again.sent]
    assert [s.item for s in generate(2000, 4, base_ms=BASE_MS).sent] != \
        [s.item for s in first.sent]


def test_shape_of_the_workload() -> None:
    w = generate(5000, 11, base_ms=BASE_MS)
    counts = w.counts()
    assert counts["items"] == 5000
    assert 0.08 < counts["resends"] / 5000 < 0.12
    assert counts["merge"] == len(w.primary_of) and counts["anonymous"] > 0
    # Resends are exact copies (same id, same key) of an earlier item.
    first: dict[str, tuple] = {}
    for s in w.sent:
        if s.resend:
            assert first[s.item["id"]] == (s.topic, s.key, s.item)
        else:
            assert s.item["id"] not in first
            first[s.item["id"]] = (s.topic, s.key, s.item)
    # Each anonymous id is linked by at most one identify.
    links = Counter(s.item["anonymous_id"] for s in w.sent
                    if s.item["op"] == "identify" and not s.resend and "anonymous_id" in s.item)
    assert set(links) == set(w.linked_by) and set(links.values()) == {1}


def test_merges_never_chain_and_follow_the_secondarys_identify_by_a_chunk() -> None:
    w = generate(5000, 12, base_ms=BASE_MS)
    assert not set(w.primary_of) & set(w.primary_of.values())
    first_identify: dict[str, int] = {}
    for index, s in enumerate(w.sent):
        if s.item["op"] == "identify":
            first_identify.setdefault(s.key, index)
        if s.item["op"] == "merge" and not s.resend:
            assert s.key == s.item["secondary"]["id"]
            assert first_identify[s.key] // w.chunk_items < index // w.chunk_items


def test_no_shared_attribute_is_written_by_two_members_of_a_merge_group() -> None:
    w = generate(5000, 13, base_ms=BASE_MS)
    writers: dict[tuple[str, str], set[str]] = defaultdict(set)
    for s in w.sent:
        if s.item["op"] == "identify":
            for name in s.item["attributes"]:
                writers[(w.root(s.key), name)].add(s.key)
    assert all(len(people) == 1 for people in writers.values())
    assert {name for _, name in writers} >= set(SHARED_ATTRIBUTES)


def test_oracle_places_every_distinct_event_once() -> None:
    w = generate(5000, 14, base_ms=BASE_MS)
    expected = oracle(w, at_s=BASE_MS // 1000 + 3600)
    distinct = {s.item["id"] for s in w.sent if s.item["op"] == "event"}
    placed = [i for h in expected.histories.values() for i in h] + \
        [i for h in expected.anonymous.values() for i in h]
    assert len(placed) == len(set(placed)) == len(distinct)
    assert set(expected.histories) == set(w.survivors)
    assert any(expected.membership.values()) and not all(
        len(m) == 3 for m in expected.membership.values())
