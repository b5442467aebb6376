"""Route raw items to the partition of the person they belong to.

``route_customers`` reads the identifier-keyed raw topics and re-keys every item by its canonical
person id onto ``person.events`` (one batch record per destination partition). Until identity
resolution lands, a customer identifier *is* the person id; the hop exists so that aliases,
email addressing and merges resolve here, on the identifier's own partition (DATAFLOW rule 1).

``route_anonymous`` keeps anonymous activity under its anonymous id, deduplicated, without
``processed_at``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

import faust
from faust.types import EventT

from agents.batches import deadletter_item, items_of, recover_for, run
from app.core import dedup, history
from app.core.items import normalize
from app.core.person import activity_of
from app.model import encode_envelope
from app.producer import OutRecord, partition_for
from app.runtime import Runtime
from app.topics import ANONYMOUS_HISTORY


async def route_customer_batch(rt: Runtime, events: Sequence[EventT]) -> None:
    unit = rt.state.begin()
    target = rt.topics.person_events
    outgoing: dict[int, list[dict[str, Any]]] = defaultdict(list)
    keys: dict[int, bytes] = {}
    for located in items_of(rt, unit, events):
        event, partition, offset, index, item = located
        try:
            routed = normalize(item, topic=event.message.topic, partition=partition,
                               offset=offset, index=index,
                               record_ts_ms=int((event.message.timestamp or 0) * 1000),
                               identifier_field="customer")
        except Exception as exc:
            deadletter_item(rt, unit, located, exc)
            continue
        person = routed["person"] = routed["customer"]
        destination = partition_for(person.encode(), target.partitions)
        outgoing[destination].append(routed)
        keys.setdefault(destination, person.encode())
    for destination, items in outgoing.items():
        unit.send(OutRecord(target.name, destination, keys[destination], encode_envelope(items)))
        rt.counters[f"records_out:{target.name}"] += 1
    await rt.commit(unit)


async def route_anonymous_batch(rt: Runtime, events: Sequence[EventT]) -> None:
    await recover_for(rt, events)
    unit = rt.state.begin()
    settings = rt.settings
    now_s = rt.clock.now()
    retention = history.Retention(settings.anonymous_horizon_s, settings.history_max_events)
    for located in items_of(rt, unit, events):
        event, partition, offset, index, item = located
        try:
            item = normalize(item, topic=event.message.topic, partition=partition, offset=offset,
                             index=index, record_ts_ms=int((event.message.timestamp or 0) * 1000),
                             identifier_field="anonymous_id")
            if item["op"] != "event":
                raise ValueError("only events can be anonymous")
            anonymous_id = item["anonymous_id"]
            state = unit.get(ANONYMOUS_HISTORY, partition, anonymous_id) or {"seen": {},
                                                                           "events": []}
            ref = (partition, offset, index)
            verdict = dedup.classify(state["seen"], item["id"], ref)
            if verdict is dedup.Verdict.DUPLICATE:
                rt.counters["duplicates"] += 1
                continue
            now_ms = int(now_s * 1000)
            seen = state["seen"]
            if verdict is dedup.Verdict.NEW:
                seen = dedup.remember(dedup.prune(seen, now_ms), item["id"], ref, now_ms=now_ms,
                                      horizon_ms=settings.dedup_horizon_s * 1000)
            events_ = history.append(state["events"], activity_of(item, None), now_s=now_s,
                                     retention=retention)
            unit.put(ANONYMOUS_HISTORY, partition, anonymous_id, {"seen": seen,
                                                                  "events": events_})
            rt.counters["anonymous_events"] += 1
        except Exception as exc:
            deadletter_item(rt, unit, located, exc)
    await rt.commit(unit)


def register(app: faust.App, rt: Runtime) -> None:
    topics = rt.topics
    customers = app.topic(topics.raw_events.name, topics.raw_identifies.name,
                          key_type=bytes, value_type=bytes,
                          key_serializer="raw", value_serializer="raw")
    anonymous = app.topic(topics.raw_anonymous.name, key_type=bytes, value_type=bytes,
                          key_serializer="raw", value_serializer="raw")

    @app.agent(customers, name="route_customers")
    async def route_customers(stream):  # type: ignore[no-untyped-def]
        await run(stream, rt, route_customer_batch)

    @app.agent(anonymous, name="route_anonymous")
    async def route_anonymous(stream):  # type: ignore[no-untyped-def]
        await run(stream, rt, route_anonymous_batch)
