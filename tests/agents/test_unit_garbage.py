"""A unit of work is freed when it ends, not by the cyclic garbage collector.

A reference cycle through a unit (the person stage's ``ActiveHere`` pointed back at its
``PersonIO``) kept every unit's person states, decoded items and changelog records alive until
CPython's full collection ran, which comes less and less often as the heap grows: draining a
200k backlog, 138k–217k such objects were waiting at a time and the worker's RSS grew with the
length of the backlog (docs/performance.md). These run a unit of each stage with the collector
stopped and look at what only the collector could free."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import pytest
from faust.types import TP

from agents.people import process_people_batch
from app.model import encode_envelope
from tables.records import InRecord
from tests.agents.agent_harness import AgentHarness, agent_harness
from tests.agents.test_people_agent import NOW_S, event, identify

OURS = ("agents.", "app.", "tables.")


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[AgentHarness]:
    async for h in agent_harness(tmp_path, NOW_S):
        yield h


def record(topic: str, offset: int, items: list[dict[str, Any]], key: str) -> InRecord:
    """A record as an inbox hands it to an agent."""
    return InRecord(topic, 0, TP(topic, 0), 0, offset, int(NOW_S * 1000), key.encode(),
                    encode_envelope(items))


@pytest.fixture
def collector_stopped() -> Iterator[None]:
    """The cyclic collector off, keeping what it would free in ``gc.garbage`` for a look."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield
    finally:
        gc.set_debug(0)
        gc.enable()
        gc.garbage.clear()


def cyclic_garbage_of_ours() -> list[str]:
    gc.collect()
    names = sorted({f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage
                    if type(o).__module__.startswith(OURS)})
    gc.garbage.clear()
    return names


async def test_a_person_stage_unit_leaves_no_cycles(harness: AgentHarness,
                                                    collector_stopped: None) -> None:
    rt = harness.rt
    topic = rt.topics.person_events.name
    items = [event(n, person=f"p{n % 7}") for n in range(40)]
    items += [identify(100 + n, {"plan": "pro"}, person=f"p{n}") for n in range(7)]
    await process_people_batch(rt, [record(topic, 0, items, "p0")])
    assert rt.counters["verdict:new"] == 47
    assert cyclic_garbage_of_ours() == []


async def test_a_routing_unit_leaves_no_cycles(harness: AgentHarness,
                                               collector_stopped: None) -> None:
    rt = harness.rt
    topic = rt.topics.raw_events.name
    raw = [{k: v for k, v in event(n, person=f"p{n % 5}").items() if k != "person"}
           for n in range(30)]
    await process_people_batch(rt, [record(topic, n, [item], item["customer"])
                                    for n, item in enumerate(raw)])
    # On partition 0 of 4: some people are at home here (taken in place), the rest are routed.
    assert rt.counters["routed_in_place"] >= 1
    assert len(harness.sent_to(rt.topics.person_events.name)) >= 1
    assert cyclic_garbage_of_ours() == []
