"""Route raw items to the partition of the person they belong to.

:class:`CustomerRouter` handles the identifier-keyed topics (``raw.events``, ``raw.identifies``
and ``identity.commands``) on the identifier's own partition, where the ``aliases`` table says
which person an identifier names (an email, a ``cio_id``, or the id of someone merged away). It
runs inside ``process_people`` (:mod:`agents.people`), which reads those topics beside
``person.events``: an item whose identifier is its person's own id, on that id's partition, is
handed to the person stage of the same unit; every other item is re-keyed by its canonical person
id onto ``person.events``, one batch record per destination partition. A merge resolves in two
hops: the secondary's partition names the secondary person, the primary's partition names the
primary, and the pair goes to the secondary's person partition. Anything whose identifier names
nobody yet (an email whose alias is still on its way from the identify that set it) waits under
``pending:`` until it does, for a day of input time at most (:func:`app.core.routes.route_input`).

``route_anonymous`` reads ``raw.anonymous`` and ``anonymous.links``: activity of an anonymous id
is kept under that id until an identify links it to a person; then the stored events (of the last
30 days) move to the person and later ones follow them there.
"""

from __future__ import annotations

from collections import defaultdict
from itertools import islice
from typing import Any, Callable, Iterable, Sequence

import faust
from faust.types import EventT

from agents.batches import Prepared, process, recover_for, run
from agents.unit_items import Decoded, Located, handle_items
from app.core import anonymous, history, routes
from app.core.commands import (MergeResolve, Unalias, Unlink, decode_identity_command,
                               decode_link)
from app.core.items import normalize, reference
from app.core.outputs import Count
from app.model import encode_envelope
from app.producer import OutRecord, partition_for
from app.runtime import Runtime
from app.topics import ALIASES, ANONYMOUS_HISTORY, ANONYMOUS_LINKS
from tables.state import UnitOfWork

#: Items per routed record (the HTTP tier's batches are at most this size too).
MAX_ITEMS_PER_RECORD = 500

#: Parked index keys a unit expires at most (a unit stays bounded after a long quiet spell).
EXPIRED_PER_UNIT = 1000


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


#: Hands an item to the person stage of the same unit: (partition, offset, index, item).
InPlace = Callable[[int, int, int, dict[str, Any]], None]


class CustomerRouter:
    """Routes the identifier-keyed topics. An item whose identifier is its person's own id on that
    id's partition is handed to ``in_place`` (the person stage of the same unit) instead of taking
    a hop through ``person.events`` (:func:`app.core.routes.in_place`)."""

    def __init__(self, rt: Runtime, unit: UnitOfWork, in_place: InPlace) -> None:
        self.rt, self.unit = rt, unit
        topics = rt.topics
        self.people = Outbox(topics.person_events.name, topics.person_events.partitions)
        self.commands = Outbox(topics.identity_commands.name, topics.identity_commands.partitions)
        self.in_place = in_place
        self.partitions = topics.person_events.partitions
        #: The newest accept time of a raw item read per partition: the clock parked inputs
        #: expire by (in input time, so a replay expires what live did).
        self.newest: dict[int, int] = {}

    def flush(self) -> None:
        for partition, newest_ms in self.newest.items():
            self.expire(partition, newest_ms)
        self.people.flush(self.rt, self.unit)
        self.commands.flush(self.rt, self.unit)

    def resolve(self, partition: int, kind: str, value: str) -> str | None:
        alias = self.unit.get(ALIASES, partition, f"{kind}:{value}")
        return routes.resolve(alias, kind, value, self.rt.settings.identify_by)

    def resolve_at(self, partition: int, kind: str, value: str, received_at: int) -> str | None:
        """Whom the identifier named when an input was accepted: if a merge has moved it since,
        the person merged away, whose marker forwards the input saying when they were merged
        (``routes.named_at``; app.core.profiles: the level its writes land on)."""
        return routes.named_at(self.resolve(partition, kind, value),
                               self.unit.get(ALIASES, partition, f"held:{kind}:{value}"),
                               received_at)

    def on_raw(self, event: EventT, partition: int, offset: int, index: int,
               item: dict[str, Any]) -> None:
        item = normalize(item, topic=event.message.topic, partition=partition, offset=offset,
                         index=index, record_ts_ms=int((event.message.timestamp or 0) * 1000),
                         identifier_field="customer")
        if item["received_at"] > self.newest.get(partition, 0):
            self.newest[partition] = item["received_at"]
        if item["op"] == "merge":
            self.merge(partition, item)
            return
        identify_by = self.rt.settings.identify_by
        if routes.in_place(item, identify_by, partition_for(item["customer"].encode(),
                                                            self.partitions) == partition):
            item["person"] = item["customer"]  # (normalize's own copy: nobody else holds it)
            self.in_place(partition, offset, index, item)
            self.rt.counters["routed_in_place"] += 1
            return
        self.route(partition, item)

    def route(self, partition: int, item: dict[str, Any]) -> None:
        """An event, identify or delete to the person its identifier names, through
        ``person.events``; it waits if the identifier names nobody yet."""
        identify_by = self.rt.settings.identify_by
        kind, value = item.get("customer_kind") or identify_by, item["customer"]
        # (identifies only: their writes land on a level by it; events and deletes follow the
        # alias as it stands, docs/architecture.md)
        person = (self.resolve_at(partition, kind, value, item["received_at"])
                  if item["op"] == "identify" else self.resolve(partition, kind, value))
        self.emit(partition, [routes.route_input(item, person, identify_by, f"{kind}:{value}")])

    def merge(self, partition: int, item: dict[str, Any]) -> None:
        """First hop of a merge, on the secondary identifier's partition."""
        secondary = reference(item["secondary"], "secondary")
        self.emit(partition, [routes.first_hop(item, self.resolve(partition, *secondary),
                                               secondary, reference(item["primary"], "primary"))])

    def on_side(self, partition: int, item: dict[str, Any]) -> None:
        command = decode_identity_command(item)
        if isinstance(command, MergeResolve):
            primary = self.resolve_at(partition, command.primary_kind, command.primary_value,
                                      command.received_at)
            self.emit(partition, [routes.second_hop(command, primary)])
        elif isinstance(command, Unalias):
            if routes.names_one_of(self.unit.get(ALIASES, partition, command.identifier),
                                command.person, command.former):
                self.unit.delete(ALIASES, partition, command.identifier)
                self.unit.delete(ALIASES, partition, f"held:{command.identifier}")
        else:
            self.unit.put(ALIASES, partition, command.identifier, command.person)
            if command.moved_from is not None and command.moved_at is not None:
                key = f"held:{command.identifier}"
                history = routes.held(self.unit.get(ALIASES, partition, key),
                                      command.moved_from, command.moved_at)
                if history is not None:
                    self.unit.put(ALIASES, partition, key, history)
            self.resume(partition, command.identifier)

    def resume(self, partition: int, identifier: str) -> None:
        """The inputs parked on ``identifier``, now that it names someone, in the order they
        were parked. Nothing of their wait stays (a replay in which the alias came first has
        none)."""
        parked = self.unit.get(ALIASES, partition, f"pending:{identifier}")
        if parked:
            self.unit.delete(ALIASES, partition, f"pending:{identifier}")
            for waiting in parked:
                self.unit.delete(ALIASES, partition,
                                 routes.parked_key(int(waiting["received_at"]), identifier))
                if waiting["op"] == "merge":
                    self.merge(partition, waiting)
                elif waiting["op"] == "merge_resolve":
                    self.on_side(partition, waiting)
                else:
                    self.route(partition, waiting)

    def emit(self, partition: int, outputs: Iterable[routes.RouteOutput]) -> None:
        for output in outputs:
            if isinstance(output, routes.Route):
                self.people.add(output.person, output.item)
            elif isinstance(output, routes.Command):
                self.commands.add(output.key, output.item)
            elif isinstance(output, routes.Park):
                self.park(partition, output)
            else:
                self.rt.counters[output.name] += output.n

    def park(self, partition: int, park: routes.Park) -> None:
        """Until the alias that names its identifier arrives (:meth:`resume`), or the horizon
        passes (:meth:`expire`)."""
        key, item = f"pending:{park.identifier}", park.item
        before = self.unit.get(ALIASES, partition, key)
        waiting = routes.parked(before, item)
        if waiting is not None:
            self.unit.put(ALIASES, partition, key, waiting)
            self.unit.put(ALIASES, partition,
                          routes.parked_key(int(item["received_at"]), park.identifier), 1)
            if before and len(before) >= routes.MAX_PARKED:  # the oldest made room
                oldest = before[0]
                self.unit.delete(ALIASES, partition,
                                 routes.parked_key(int(oldest["received_at"]), park.identifier))
                self.rt.counters[f"unknown_identifier:{oldest['op']}"] += 1
        op = item["op"]
        self.rt.counters["merges:parked" if op in ("merge", "merge_resolve")
                         else f"parked:{op}"] += 1

    def expire(self, partition: int, newest_ms: int) -> None:
        """Parked inputs that waited past the horizon: their identifier names nobody (counted
        ``unknown_identifier``). At most :data:`EXPIRED_PER_UNIT` index keys a unit."""
        due = [key for key, _ in islice(self.unit.range(
            ALIASES, partition, routes.PARKED_PREFIX, routes.due_stop(newest_ms)),
            EXPIRED_PER_UNIT)]
        for key in due:
            self.unit.delete(ALIASES, partition, key)
            pending = f"pending:{routes.identifier_of(key)}"
            kept, gone = routes.expired(self.unit.get(ALIASES, partition, pending), newest_ms)
            if gone:
                if kept:
                    self.unit.put(ALIASES, partition, pending, kept)
                else:
                    self.unit.delete(ALIASES, partition, pending)
                for item in gone:
                    self.rt.counters[f"unknown_identifier:{item['op']}"] += 1


class AnonymousRouter:
    def __init__(self, rt: Runtime, unit: UnitOfWork, now_s: float) -> None:
        self.rt, self.unit, self.now_s = rt, unit, now_s
        self.people = Outbox(rt.topics.person_events.name, rt.topics.person_events.partitions)
        settings = rt.settings
        self.policy = anonymous.Policy(
            settings.anonymous_horizon_s, settings.dedup_horizon_s,
            history.Retention(settings.anonymous_horizon_s, settings.history_max_events))

    def flush(self) -> None:
        self.people.flush(self.rt, self.unit)

    def on_raw(self, event: EventT, partition: int, offset: int, index: int,
               item: dict[str, Any]) -> None:
        item = normalize(item, topic=event.message.topic, partition=partition, offset=offset,
                         index=index, record_ts_ms=int((event.message.timestamp or 0) * 1000),
                         identifier_field="anonymous_id")
        if item["op"] != "event":
            raise ValueError("only events can be anonymous")
        if anonymous.too_old(item, self.policy.horizon_s):
            self.rt.counters["anonymous_events:too_old"] += 1
            return
        anonymous_id = item["anonymous_id"]
        person = self.unit.get(ANONYMOUS_LINKS, partition, anonymous_id)
        if person is not None:  # identified already: straight to the person
            self.emit(anonymous.forward(item, person))
            return
        stored, outcome = anonymous.store(
            self.unit.get(ANONYMOUS_HISTORY, partition, anonymous_id), item,
            (partition, offset, index), now_s=self.now_s, policy=self.policy)
        if stored is not None:
            self.unit.put(ANONYMOUS_HISTORY, partition, anonymous_id, stored)
        self.emit([outcome])

    def on_side(self, partition: int, item: dict[str, Any]) -> None:
        link = decode_link(item)
        current = self.unit.get(ANONYMOUS_LINKS, partition, link.anonymous_id)
        if isinstance(link, Unlink):
            if routes.names_one_of(current, link.person, link.former):
                self.unit.delete(ANONYMOUS_LINKS, partition, link.anonymous_id)
        elif not anonymous.links(current, link):
            self.rt.counters["anonymous_links:already_linked"] += 1  # the first link wins
        else:
            self.unit.put(ANONYMOUS_LINKS, partition, link.anonymous_id, link.person)
            stored = self.unit.get(ANONYMOUS_HISTORY, partition, link.anonymous_id)
            if stored is not None:
                self.emit(anonymous.moved(stored, link, self.policy.horizon_s))
                self.unit.delete(ANONYMOUS_HISTORY, partition, link.anonymous_id)

    def emit(self, outputs: Iterable[routes.Route | Count]) -> None:
        for output in outputs:
            if isinstance(output, routes.Route):
                self.people.add(output.person, output.item)
            else:
                self.rt.counters[output.name] += output.n


async def prepare_anonymous_batch(rt: Runtime, events: Sequence[EventT],
                                  decoded: Decoded | None = None,
                                  base: UnitOfWork | None = None) -> Prepared:
    """One unit of ``route_anonymous``: raw items to ``on_raw``, links to ``on_side``.

    The unit begins once the batch's partitions are recovered (and fenced): a unit knows which
    ownership of each partition it was computed under (``StateManager.commit``)."""
    now_s = rt.clock.now()
    await recover_for(rt, events)
    router = AnonymousRouter(rt, rt.state.begin(base), now_s)
    links = rt.topics.anonymous_links.name

    def handle(located: Located) -> None:
        event, partition, offset, index, item = located
        if event.message.topic == links:
            router.on_side(partition, item)
        else:
            router.on_raw(event, partition, offset, index, item)

    await handle_items(rt, router.unit, events, decoded, handle)
    router.flush()
    return Prepared(rt, router.unit)


async def route_anonymous_batch(rt: Runtime, events: Sequence[EventT],
                                decoded: Decoded | None = None) -> None:
    """One unit of ``route_anonymous``, processed and committed on its own."""
    await process(prepare_anonymous_batch, rt, events, decoded)


def register(app: faust.App, rt: Runtime) -> None:
    """The anonymous router's agent. The customer router runs inside ``process_people``
    (:mod:`agents.people`), which reads the identifier-keyed topics too."""
    topics = rt.topics
    anonymous = app.topic(topics.raw_anonymous.name, topics.anonymous_links.name,
                          key_type=bytes, value_type=bytes,
                          key_serializer="raw", value_serializer="raw")

    @app.agent(anonymous, name="route_anonymous")
    async def route_anonymous(stream):  # type: ignore[no-untyped-def]
        await run(stream, rt, prepare_anonymous_batch)
