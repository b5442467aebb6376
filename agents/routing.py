"""Route raw items to the partition of the person they belong to.

``route_customers`` reads the identifier-keyed topics (``raw.events``, ``raw.identifies`` and
``identity.commands``) on the identifier's own partition, where the ``aliases`` table says which
person an identifier names (an email, a ``cio_id``, or the id of someone merged away). Every item
is re-keyed by its canonical person id onto ``person.events``, one batch record per destination
partition. A merge resolves in two hops: the secondary's partition names the secondary person, the
primary's partition names the primary, and the pair goes to the secondary's person partition.

``route_anonymous`` reads ``raw.anonymous`` and ``anonymous.links``: activity of an anonymous id
is kept under that id until an identify links it to a person; then the stored events (of the last
30 days) move to the person and later ones follow them there.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Protocol, Sequence

import faust
from faust.types import EventT

from agents.batches import Decoded, deadletter_item, items_of, recover_for, run
from app.core import dedup, history
from app.core.items import normalize, reference
from app.core.person import activity_of
from app.model import encode_envelope
from app.producer import OutRecord, partition_for
from app.runtime import Runtime
from app.topics import ALIASES, ANONYMOUS_HISTORY, ANONYMOUS_LINKS
from tables.state import UnitOfWork

DAY_S = 86_400
#: Items per routed record (the HTTP tier's batches are at most this size too).
MAX_ITEMS_PER_RECORD = 500
#: Merges parked per unknown identifier, at most (the oldest beyond are dropped).
_MAX_PARKED = 100


class Router(Protocol):
    unit: UnitOfWork

    def flush(self) -> None: ...

    def on_raw(self, event: EventT, partition: int, offset: int, index: int,
               item: dict[str, Any]) -> None: ...

    def on_side(self, partition: int, item: dict[str, Any]) -> None: ...


class Outbox:
    """Items bound for a topic, grouped into one envelope per destination partition."""

    def __init__(self, topic: str, partitions: int) -> None:
        self.topic, self.partitions = topic, partitions
        self.items: dict[int, list[dict[str, Any]]] = defaultdict(list)
        self.keys: dict[int, bytes] = {}

    def add(self, key: str, item: dict[str, Any]) -> None:
        raw_key = key.encode()
        partition = partition_for(raw_key, self.partitions)
        self.items[partition].append(item)
        self.keys.setdefault(partition, raw_key)

    def flush(self, rt: Runtime, unit: UnitOfWork) -> None:
        for partition, items in self.items.items():
            # Bounded records keep the next stage's batches (and its memory) bounded.
            for start in range(0, len(items), MAX_ITEMS_PER_RECORD):
                unit.send(OutRecord(self.topic, partition, self.keys[partition],
                                    encode_envelope(items[start:start + MAX_ITEMS_PER_RECORD])))
                rt.counters[f"records_out:{self.topic}"] += 1


def resolve(rt: Runtime, unit: UnitOfWork, partition: int, kind: str, value: str) -> str | None:
    """The person an identifier names: an alias, else the identifier itself if it is the kind the
    workspace addresses people by (a new person), else nobody."""
    alias = unit.get(ALIASES, partition, f"{kind}:{value}")
    if alias is not None:
        return alias
    return value if kind == rt.settings.identify_by else None


class CustomerRouter:
    def __init__(self, rt: Runtime, unit: UnitOfWork) -> None:
        self.rt, self.unit = rt, unit
        topics = rt.topics
        self.people = Outbox(topics.person_events.name, topics.person_events.partitions)
        self.commands = Outbox(topics.identity_commands.name, topics.identity_commands.partitions)

    def flush(self) -> None:
        self.people.flush(self.rt, self.unit)
        self.commands.flush(self.rt, self.unit)

    def on_raw(self, event: EventT, partition: int, offset: int, index: int,
               item: dict[str, Any]) -> None:
        rt = self.rt
        item = normalize(item, topic=event.message.topic, partition=partition, offset=offset,
                         index=index, record_ts_ms=int((event.message.timestamp or 0) * 1000),
                         identifier_field="customer")
        op = item["op"]
        if op == "merge":
            self.merge(partition, item)
            return
        kind = item.get("customer_kind") or rt.settings.identify_by
        person = resolve(rt, self.unit, partition, kind, item["customer"])
        if person is None:  # an email never seen, with people addressed by id: nobody to act on
            rt.counters[f"unknown_identifier:{op}"] += 1
            return
        if op == "identify" and rt.settings.identify_by == "email":
            item["attributes"] = {"email": item["customer"], **item["attributes"]}
        self.people.add(person, {**item, "person": person})

    def merge(self, partition: int, item: dict[str, Any]) -> None:
        """First hop of a merge, on the secondary identifier's partition."""
        kind, value = reference(item["secondary"], "secondary")
        secondary = resolve(self.rt, self.unit, partition, kind, value)
        if secondary is None:
            self.wait_for(partition, f"{kind}:{value}", item)
            return
        primary_kind, primary_value = reference(item["primary"], "primary")
        self.commands.add(primary_value, {
            "op": "merge_resolve", "id": item["id"], "from": secondary,
            "primary": {primary_kind: primary_value}, "received_at": item["received_at"]})

    def wait_for(self, partition: int, identifier: str, item: dict[str, Any]) -> None:
        """Park a merge naming an identifier nobody has yet; the alias that names it resumes it.

        So a merge sent right after the identify that sets an email does not depend on which
        of the two reaches this partition first.
        """
        key = f"pending:{identifier}"
        waiting = self.unit.get(ALIASES, partition, key) or []
        if all(parked["id"] != item["id"] for parked in waiting):
            self.unit.put(ALIASES, partition, key, [*waiting, item][-_MAX_PARKED:])
        self.rt.counters["merges:parked"] += 1

    def on_side(self, partition: int, item: dict[str, Any]) -> None:
        op = item["op"]
        if op == "alias":
            self.unit.put(ALIASES, partition, item["identifier"], item["person"])
            parked = self.unit.get(ALIASES, partition, f"pending:{item['identifier']}")
            if parked:
                self.unit.delete(ALIASES, partition, f"pending:{item['identifier']}")
                for waiting in parked:
                    if waiting["op"] == "merge":
                        self.merge(partition, waiting)
                    else:
                        self.on_side(partition, waiting)
        elif op == "unalias":
            if self.unit.get(ALIASES, partition, item["identifier"]) in (
                    item["person"], *item.get("former", ())):
                self.unit.delete(ALIASES, partition, item["identifier"])
        elif op == "merge_resolve":
            [(kind, value)] = item["primary"].items()
            primary = resolve(self.rt, self.unit, partition, kind, value)
            if primary is None:
                self.wait_for(partition, f"{kind}:{value}", item)
            elif primary == item["from"]:
                self.rt.counters["merges:already_one"] += 1
            else:
                self.people.add(item["from"], {"op": "merge_from", "id": item["id"],
                                               "person": item["from"], "into": primary,
                                               "received_at": item["received_at"]})
        else:
            raise ValueError(f"op: unknown identity command {op!r}")


async def route_batch(rt: Runtime, events: Sequence[EventT],
                      make_router: Callable[[UnitOfWork], "Router"], side_topic: str,
                      decoded: Decoded | None = None) -> None:
    """One batch of a routing agent: raw items to ``router.on_raw``, items of the stage's own
    side topic (identity commands, anonymous links) to ``router.on_side``.

    The unit begins once the batch's partitions are recovered (and fenced): a unit knows which
    ownership of each partition it was computed under (``StateManager.commit``)."""
    await recover_for(rt, events)
    router = make_router(rt.state.begin())
    for located in items_of(rt, router.unit, events, decoded):
        event, partition, offset, index, item = located
        try:
            if event.message.topic == side_topic:
                router.on_side(partition, item)
            else:
                router.on_raw(event, partition, offset, index, item)
        except Exception as exc:
            deadletter_item(rt, router.unit, located, exc)
    router.flush()
    await rt.commit(router.unit)


async def route_customer_batch(rt: Runtime, events: Sequence[EventT],
                               decoded: Decoded | None = None) -> None:
    await route_batch(rt, events, lambda unit: CustomerRouter(rt, unit),
                      rt.topics.identity_commands.name, decoded)


class AnonymousRouter:
    def __init__(self, rt: Runtime, unit: UnitOfWork, now_s: float) -> None:
        self.rt, self.unit, self.now_s = rt, unit, now_s
        self.people = Outbox(rt.topics.person_events.name, rt.topics.person_events.partitions)
        settings = rt.settings
        self.retention = history.Retention(settings.anonymous_horizon_s,
                                           settings.history_max_events)

    def flush(self) -> None:
        self.people.flush(self.rt, self.unit)

    def on_raw(self, event: EventT, partition: int, offset: int, index: int,
               item: dict[str, Any]) -> None:
        rt = self.rt
        item = normalize(item, topic=event.message.topic, partition=partition, offset=offset,
                         index=index, record_ts_ms=int((event.message.timestamp or 0) * 1000),
                         identifier_field="anonymous_id")
        if item["op"] != "event":
            raise ValueError("only events can be anonymous")
        if item["timestamp"] <= item["received_at"] // 1000 - rt.settings.anonymous_horizon_s:
            # Older than the anonymous horizon when it arrived: never kept, whether or not its
            # anonymous id is linked yet, so the outcome does not depend on that order.
            rt.counters["anonymous_events:too_old"] += 1
            return
        anonymous_id = item["anonymous_id"]
        person = self.unit.get(ANONYMOUS_LINKS, partition, anonymous_id)
        if person is not None:  # identified already: straight to the person
            self.people.add(person, {**item, "person": person})
            rt.counters["anonymous_events:forwarded"] += 1
            return
        state = self.unit.get(ANONYMOUS_HISTORY, partition, anonymous_id) or {"seen": {},
                                                                            "events": []}
        ref = (partition, offset, index)
        verdict = dedup.classify(state["seen"], item["id"], ref)
        if verdict is dedup.Verdict.DUPLICATE:
            rt.counters["verdict:duplicate"] += 1
            return
        now_ms = int(self.now_s * 1000)
        seen = state["seen"]
        if verdict is dedup.Verdict.NEW:
            seen = dedup.remember(dedup.prune(seen, now_ms), item["id"], ref, now_ms=now_ms,
                                  horizon_ms=rt.settings.dedup_horizon_s * 1000)
        activity = {**activity_of(item, None), "received_at": item["received_at"]}
        events = history.append(state["events"], activity, now_s=self.now_s,
                                retention=self.retention)
        self.unit.put(ANONYMOUS_HISTORY, partition, anonymous_id, {"seen": seen,
                                                                   "events": events})
        rt.counters["anonymous_events:stored"] += 1

    def on_side(self, partition: int, item: dict[str, Any]) -> None:
        anonymous_id, person = item["anonymous_id"], item["person"]
        current = self.unit.get(ANONYMOUS_LINKS, partition, anonymous_id)
        if item["op"] == "unlink":
            if current is not None and current in (person, *item.get("former", ())):
                self.unit.delete(ANONYMOUS_LINKS, partition, anonymous_id)
            return
        if current not in (None, person, item.get("relink_from")):
            self.rt.counters["anonymous_links:already_linked"] += 1  # the first link wins
            return
        self.unit.put(ANONYMOUS_LINKS, partition, anonymous_id, person)
        state = self.unit.get(ANONYMOUS_HISTORY, partition, anonymous_id)
        if state is None:
            return
        at = int(item["at"])
        horizon = at - self.rt.settings.anonymous_horizon_s
        for stored in state["events"]:
            if stored["timestamp"] > horizon:
                self.people.add(person, {
                    "op": "event", "id": stored["id"], "name": stored["name"],
                    "type": stored["type"], "data": stored["data"],
                    "timestamp": stored["timestamp"], "person": person,
                    "received_at": stored.get("received_at", at * 1000), "processed_at": at,
                    "source": "anonymous"})
        self.unit.delete(ANONYMOUS_HISTORY, partition, anonymous_id)
        self.rt.counters["anonymous_links:linked"] += 1


async def route_anonymous_batch(rt: Runtime, events: Sequence[EventT],
                                decoded: Decoded | None = None) -> None:
    now_s = rt.clock.now()
    await route_batch(rt, events, lambda unit: AnonymousRouter(rt, unit, now_s),
                      rt.topics.anonymous_links.name, decoded)


def register(app: faust.App, rt: Runtime) -> None:
    topics = rt.topics
    customers = app.topic(topics.raw_events.name, topics.raw_identifies.name,
                          topics.identity_commands.name, key_type=bytes, value_type=bytes,
                          key_serializer="raw", value_serializer="raw")
    anonymous = app.topic(topics.raw_anonymous.name, topics.anonymous_links.name,
                          key_type=bytes, value_type=bytes,
                          key_serializer="raw", value_serializer="raw")

    @app.agent(customers, name="route_customers")
    async def route_customers(stream):  # type: ignore[no-untyped-def]
        await run(stream, rt, route_customer_batch)

    @app.agent(anonymous, name="route_anonymous")
    async def route_anonymous(stream):  # type: ignore[no-untyped-def]
        await run(stream, rt, route_anonymous_batch)
