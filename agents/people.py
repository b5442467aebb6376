"""``process_people``: dedup, history and profile for items already keyed by person."""

from __future__ import annotations

from typing import Sequence

import faust
from faust.types import EventT

from agents.batches import deadletter_item, items_of, recover_for, run
from app.core import history
from app.core.dedup import Verdict
from app.core.person import PersonState, Policy, step
from app.runtime import Runtime
from app.topics import DEDUP, HISTORY, PROFILES
from tables.state import UnitOfWork


def policy_of(rt: Runtime) -> Policy:
    settings = rt.settings
    return Policy(dedup_horizon_s=settings.dedup_horizon_s,
                  retention=history.Retention(settings.history_retention_s,
                                              settings.history_max_events))


def load_person(unit: UnitOfWork, partition: int, person: str) -> PersonState:
    return PersonState(
        seen=unit.get(DEDUP, partition, person) or {},
        history=unit.get(HISTORY, partition, person) or [],
        profile=unit.get(PROFILES, partition, person),
    )


def save_person(unit: UnitOfWork, partition: int, person: str, before: PersonState,
                after: PersonState) -> None:
    """Write only the tables whose value changed (steps return the same object when unchanged)."""
    if after.seen is not before.seen:
        unit.put(DEDUP, partition, person, after.seen)
    if after.history is not before.history:
        unit.put(HISTORY, partition, person, after.history)
    if after.profile is not before.profile:
        unit.put(PROFILES, partition, person, after.profile)


async def process_people_batch(rt: Runtime, events: Sequence[EventT]) -> None:
    await recover_for(rt, events)
    unit = rt.state.begin()
    policy = policy_of(rt)
    now_s = rt.clock.now()
    accepted_at_ms: list[int] = []
    loaded: dict[tuple[int, str], PersonState] = {}
    current: dict[tuple[int, str], PersonState] = {}
    for located in items_of(rt, unit, events):
        _, partition, offset, index, item = located
        try:
            person = item["person"]
            slot = (partition, person)
            if slot not in current:
                loaded[slot] = current[slot] = load_person(unit, partition, person)
            current[slot], verdict = step(current[slot], person, item, (partition, offset, index),
                                          now_s=now_s, policy=policy)
            rt.counters[f"verdict:{verdict.value}"] += 1
            if verdict is Verdict.NEW and item["op"] == "event":
                accepted_at_ms.append(item["received_at"])
        except Exception as exc:
            deadletter_item(rt, unit, located, exc)
    for slot, after in current.items():
        save_person(unit, slot[0], slot[1], loaded[slot], after)
    await rt.commit(unit)
    done_ms = rt.clock.now() * 1000
    rt.latency.observe_many((done_ms - at) / 1000 for at in accepted_at_ms)


def register(app: faust.App, rt: Runtime) -> None:
    person_events = app.topic(rt.topics.person_events.name, key_type=bytes, value_type=bytes,
                              key_serializer="raw", value_serializer="raw")

    @app.agent(person_events, name="process_people")
    async def process_people(stream):  # type: ignore[no-untyped-def]
        await run(stream, rt, process_people_batch)
