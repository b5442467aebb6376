"""Segment definitions fan out to every person partition; time passing becomes ``tick`` items.

``apply_definitions`` reads the definitions topic (one partition, so one worker at a
time) and sends a ``segment`` item to every ``person.events`` partition: each partition then
re-evaluates its people against the new version, or emits exits for a deleted segment.

``tick`` runs on every worker and sends a ``tick`` item to each ``person.events`` partition the
worker owns, so the timer index is read inside the same single-writer agent that updates it.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Callable, Sequence

import faust
import orjson
from faust.types import EventT

from agents.batches import Prepared, run
from app.model import encode_envelope
from app.producer import BrokerUnavailable, OutRecord
from app.runtime import Runtime
from tables.unit import UnitOfWork


async def fan_out_definitions(rt: Runtime, events: Sequence[EventT],
                              decoded: object = None, base: UnitOfWork | None = None) -> Prepared:
    unit = rt.state.begin(base)
    target = rt.topics.person_events
    for event in events:
        message = event.message
        segment_id = message.key.decode() if message.key else ""
        try:
            value = None if message.value is None else orjson.loads(message.value)
            version = None if value is None else value["version"]
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            rt.deadletter(unit, topic=message.topic, partition=message.partition,
                          offset=message.offset, key=message.key, value=message.value,
                          error=f"bad definition record: {exc}")
            continue
        item = {"op": "segment", "segment": segment_id, "version": version,
                "offset": message.offset, "at": int(message.timestamp or time.time())}
        for partition in range(target.partitions):
            unit.send(OutRecord(target.name, partition, message.key, encode_envelope([item])))
    return Prepared(rt, unit)


async def send_ticks(rt: Runtime) -> None:
    topic = rt.topics.person_events.name
    at = int(rt.clock.now())
    item = encode_envelope([{"op": "tick", "at": at}])
    records = [OutRecord(topic, partition, b"tick", item)
               for (name, partition) in sorted(rt.assigned) if name == topic]
    try:
        await rt.producer.send_all(records)
    except BrokerUnavailable:
        pass  # the next tick covers this one: due work is found by time, not by tick count


def register(app: faust.App, rt: Runtime) -> None:
    definitions = app.topic(rt.topics.segment_definitions.name, key_type=bytes,
                            value_type=bytes, key_serializer="raw", value_serializer="raw")

    @app.agent(definitions, name="apply_definitions")
    async def apply_definitions(stream):  # type: ignore[no-untyped-def]
        await run(stream, rt, fan_out_definitions)

    @app.timer(interval=rt.settings.tick_interval_s, name="tick")
    async def tick() -> None:
        if rt.started.is_set():
            await send_ticks(rt)

    rt.tick_at = ticks_at(rt)


def ticks_at(rt: Runtime) -> Callable[[float], None]:
    """Ticks of this worker's partitions at given times, one per tenth of a second however many
    are asked for: a definition left to the inputs accepted before it (its grace) is activated
    at the end of the next unit of its partition, and a quiet partition has none for up to
    ``EVENTIDE_TICK_INTERVAL_S``."""
    planned: dict[int, asyncio.Future[None]] = {}   # tenths of a second since the epoch

    async def tick_then(tenth: int) -> None:
        # (a little past it: the tick's unit must find the clock past the grace)
        await asyncio.sleep(max(tenth / 10 - rt.clock.now(), 0.0) + 0.02)
        if rt.started.is_set():
            await send_ticks(rt)

    def tick_at(at_s: float) -> None:
        tenth = math.ceil(at_s * 10)
        if tenth not in planned:
            planned[tenth] = asyncio.ensure_future(tick_then(tenth))
            planned[tenth].add_done_callback(lambda _: planned.pop(tenth, None))

    return tick_at
