"""Waiting for earlier writes (app.progress, app.api.consistency.settle), without a broker: how
far a partition is applied, the two-stage wait (router, then person stage), the memo, and the
503s (behind past the bound, or a partition not owned here)."""

from __future__ import annotations

import asyncio
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest

from app.api.consistency import settle, timeout_s
from app.api.responses import ApiError
from app.progress import Applied
from app.settings import Settings
from app.topics import build_topics


def record(topic: str, partition: int, offset: int) -> Any:
    return SimpleNamespace(message=SimpleNamespace(topic=topic, partition=partition,
                                                   offset=offset))


class Ends:
    """Stand-in for app.progress.EndOffsets: fixed end offsets, calls counted."""

    def __init__(self, ends: dict[str, dict[int, int]]) -> None:
        self.ends, self.calls = ends, 0

    async def __call__(self, topic: str, partitions: list[int]) -> dict[int, int]:
        self.calls += 1
        return {p: self.ends[topic][p] for p in partitions}


def runtime(ends: Ends, owned: set[int] = frozenset({0, 1})) -> Any:  # type: ignore[assignment]
    topics = build_topics(Settings(site_id="s", api_key="k", app_key="a", partitions=2))
    assigned = {(t, p) for t in (topics.raw_events.name, topics.person_events.name)
                for p in owned}
    return SimpleNamespace(topics=topics, applied=Applied(), end_offsets=ends, assigned=assigned,
                           state=SimpleNamespace(is_recovered=lambda topic, p: True),
                           counters=Counter(), app=None)


def test_applied_takes_the_highest_handled_offset_with_the_committed_floor() -> None:
    floor: dict[tuple[str, int], int] = {}
    applied = Applied(committed=lambda topic, p: floor.get((topic, p)))
    assert applied.next_offset("raw", 0) is None
    floor[("raw", 0)] = 7  # assigned here with 7 committed: nothing handled since
    assert applied.next_offset("raw", 0) == 7
    applied.advance([record("raw", 0, 9), record("raw", 0, 8), record("raw", 1, 0)])
    assert (applied.next_offset("raw", 0), applied.next_offset("raw", 1)) == (10, 1)
    applied.confirmed[0] = 10
    applied.forget([("raw", 0)])  # changed hands: only the floor says anything now
    assert applied.next_offset("raw", 0) == 7 and applied.confirmed == {}


async def test_settle_waits_for_the_router_then_the_person_stage() -> None:
    ends = Ends({"": {}})
    rt = runtime(ends)
    raw, people = rt.topics.raw_events.name, rt.topics.person_events.name
    ends.ends = {people: {0: 3}}
    task = asyncio.ensure_future(settle(rt, {0: 5}, wait_s=5))
    await asyncio.sleep(0.05)
    assert not task.done() and ends.calls == 0, "the router has not applied raw[0] up to 5"
    rt.applied.advance([record(raw, 0, 4)])
    await asyncio.sleep(0.05)
    assert not task.done() and ends.calls == 1, "now the person stage is waited for"
    rt.applied.advance([record(people, 0, 2)])
    await asyncio.wait_for(task, 1)
    # Confirmed: a later request with a position at or below needs no wait and no broker call.
    await settle(rt, {0: 5}, wait_s=0.01)
    assert ends.calls == 1


async def test_settle_is_a_503_when_behind_past_the_bound_or_not_the_owner() -> None:
    ends = Ends({})
    rt = runtime(ends, owned={0})
    with pytest.raises(ApiError) as behind:
        await settle(rt, {0: 3}, wait_s=0.05)
    assert behind.value.status == 503
    assert "partition 0: 3 records behind" in behind.value.messages[0]
    assert rt.counters["read_your_writes:timeout"] == 1
    with pytest.raises(ApiError) as elsewhere:
        await settle(rt, {1: 1}, wait_s=1)
    assert elsewhere.value.status == 503 and "rebalancing" in elsewhere.value.messages[0]
    await settle(rt, {1: 0, 0: 0}, wait_s=1)  # nothing written there: nothing to wait for


def test_timeout_setting() -> None:
    assert timeout_s({}) == 10.0
    assert timeout_s({"EVENTIDE_READ_YOUR_WRITES_TIMEOUT_S": "2.5"}) == 2.5
    assert timeout_s({"EVENTIDE_READ_YOUR_WRITES_TIMEOUT_S": "abc"}) == 10.0
