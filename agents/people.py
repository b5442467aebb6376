"""``process_people``: everything keyed by person, in one agent so one writer owns each partition.

It reads ``person.events`` and, on the same partitions, the identifier-keyed topics
(``raw.events``, ``raw.identifies``, ``identity.commands``), which go to the customer router
(:class:`agents.routing.CustomerRouter`). An event, identify or delete whose identifier is its
person's own id, on that id's partition (the common case), is handled here at once, in the order
of its raw partition; the rest is routed through ``person.events`` as before. Skipping that hop
spares the item a second unit of work and its commit, a produce and a fetch: the paced latency
halved (docs/performance.md, issue 11).

Items on ``person.events``, and those taken in place (typed in :mod:`app.core.messages`):

* ``event`` / ``identify`` — dedup, history, profile, then the segments that mention the event's
  name or the identify's attributes are re-evaluated (:mod:`app.core.inputs`);
* ``merge_from`` / ``absorb`` / ``delete`` — a person's lifecycle (:mod:`app.core.lifecycle`);
* ``tick`` — time passed: people whose due time has come are re-evaluated (the timer index);
* ``segment`` — a definition was created, edited or deleted: everyone in the partition is
  re-evaluated against it (:mod:`app.core.activation`).

Every handler here loads, calls a pure decision, stores and sends what it decided
(:class:`agents.person_io.PersonIO`). Evaluation time is taken from the log (the item's accept
time, the tick's or the definition's time), so re-running the same log gives the same
transitions with the same change ids.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Iterable
from typing import Any, Sequence

import faust
from faust.types import EventT

from agents.batches import Prepared, process, recover_for, run
from agents.person_io import (PersonIO, active_map, deleted_map, load_person, policy_of,
                              save_person)
from agents.routing import CustomerRouter
from agents.unit_items import Decoded, Located, handle_items, newest_accept_ms
from app.core import activation, dedup, inputs, lifecycle, messages
from app.core.dedup import Verdict, raw_ref
from app.core.evaluation import catch_up
from app.core.messages import (Absorb, Definition, Delete, Event, ForPerson, Identify,
                               MergeFrom, Tick)
from app.runtime import Runtime
from app.segments.definition import Segment
from tables.unit import UnitOfWork

log = logging.getLogger(__name__)

__all__ = ["PeopleBatch", "load_person", "policy_of", "prepare_people_batch",
           "process_people_batch", "register", "save_person"]


class PeopleBatch(PersonIO):
    """The person stage of one unit of ``process_people``: person states loaded once, written
    once at the end."""

    def handle(self, partition: int, offset: int, index: int, item: dict[str, Any]
               ) -> Awaitable[None] | None:
        """An item of ``person.events``; what to await for it, if anything (a segment
        definition: :func:`agents.unit_items.handle_items`)."""
        self.at = self.ref = (partition, offset, index)
        message = messages.decode(item)
        if isinstance(message, Tick):
            self.on_tick(partition, message)
        elif isinstance(message, Definition):
            return self.on_definition(partition, message)
        else:
            self.on_person(partition, message)
        return None

    def handle_in_place(self, partition: int, offset: int, index: int,
                        item: dict[str, Any]) -> None:
        """An item the customer router took from ``raw.events[partition]`` for its own person
        (:func:`app.core.routes.in_place`), remembered at its raw position."""
        self.at, self.ref = (partition, offset, index), raw_ref(partition, offset, index)
        self.on_person(partition, messages.decode(item))  # type: ignore[arg-type]

    def on_person(self, partition: int, message: ForPerson) -> None:
        redirected = lifecycle.redirect(self.person(partition, message.person), message)
        if redirected is not None:
            self.emit(partition, message.person, redirected)
        elif isinstance(message, (Event, Identify)):
            self.on_input(partition, message)
        elif isinstance(message, MergeFrom):
            self.decided(partition, message.person, lifecycle.merge_away(
                self.person(partition, message.person), message,
                self.events(partition, message.person)))
        elif isinstance(message, Absorb):
            self.on_absorb(partition, message)
        else:
            self.on_delete(partition, message)

    def on_input(self, partition: int, message: Event | Identify) -> None:
        person, events = message.person, self.events(partition, message.person)
        seen = events.seen(message.id)
        if dedup.judge(seen, self.ref) is not Verdict.REDELIVERY:
            arrived = self.rt.arrived_definitions.get(partition)
            if arrived is not None and message.at_ms < arrived[0]:
                self.behind_a_definition(partition, message, arrived)
            self.activate_recorded(partition, message.at_ms)
        segments = self.segments(partition)
        before, stored, outputs, first_seen = inputs.receive(
            self.person(partition, person), message, self.ref, seen, events,
            segments, now_s=self.rt.clock.now(), policy=self.policy)
        self.current[(partition, person)] = before
        self.emit(partition, person, outputs)
        if stored is None:
            return
        if first_seen:
            events.first_unit()
        self.store(partition, message.id, person, stored)
        if stored.verdict is Verdict.NEW:
            if isinstance(message, Event):
                self.accepted_at_ms.append(message.received_at)
            self.decided(partition, person, inputs.react(before, stored.state, message, events,
                                                         segments, first_seen=first_seen))

    def on_absorb(self, partition: int, message: Absorb) -> None:
        person, events = message.person, self.events(partition, message.person)
        for activity, entry in lifecycle.absorbed_events(message, self.ref, events.seen,
                                                         policy=self.policy):
            if entry is not None:
                events.remember(activity["id"], entry, message.received_at)
            events.add(activity, now_s=self.rt.clock.now(), retention=self.policy.retention)
        self.decided(partition, person, lifecycle.absorb(
            self.person(partition, person), message, events, self.segments(partition)))

    def on_delete(self, partition: int, message: Delete) -> None:
        self.decided(partition, message.person, lifecycle.delete(
            self.person(partition, message.person), message,
            self.events(partition, message.person)))

    def on_tick(self, partition: int, tick: Tick) -> None:
        segments = self.segments(partition)
        for person in self.due_people(partition, tick.at):
            self.decided(partition, person, catch_up(
                self.person(partition, person), person, self.events(partition, person),
                segments, tick.at))

    def activate_recorded(self, partition: int, at_ms: int) -> None:
        """Activate, before an input accepted at ``at_ms``, the definitions recorded by then that
        this partition has not activated (:func:`app.core.activation.recorded_by`). Checked
        again only once the catalog has moved or the input time reaches the next recorded one."""
        if self.nothing_due(partition, at_ms):
            return
        rt = self.rt
        catalog = rt.catalog
        due, later = activation.recorded_by(catalog.history, active_map(rt, partition), at_ms,
                                            deleted_map(rt, partition))
        for definition in due:
            self.activate(partition, definition, self.catalog_segment(definition))
        rt.definitions_watch[partition] = (catalog.offset, later)

    def nothing_due(self, partition: int, at_ms: int) -> bool:
        """The partition's last activation left nothing recorded by ``at_ms`` to activate, and
        the catalog has not moved since."""
        watch = self.rt.definitions_watch.get(partition)
        return watch is not None and watch[0] == self.rt.catalog.offset and (
            watch[1] is None or at_ms < watch[1])

    async def on_definition(self, partition: int, definition: Definition) -> None:
        rt, segment_id = self.rt, definition.segment
        if activation.overtaken(definition, rt.catalog.history.get(segment_id, ()),
                                active_map(rt, partition).get(segment_id),
                                deleted_map(rt, partition).get(segment_id)):
            return
        segment = await self.segment_of(definition)
        # (read again: the catalog may have moved while the segment was awaited)
        catalog, active = rt.catalog, active_map(rt, partition).get(segment_id)
        deleted_at = deleted_map(rt, partition).get(segment_id)
        entries = catalog.history.get(segment_id, ())
        behind = rt.raw_behind
        if behind is not None:   # (None: no consumer, no raw inputs; activated on its item)
            latest = entries[-1] if entries else None
            settled_ms = self.settled_ms()
            if activation.left_to_inputs(definition, latest, behind(partition), settled_ms):
                rt.counters["definitions_left_to_inputs"] += 1
                recorded_ms = latest[2] if latest is not None else None
                if rt.tick_at is not None and recorded_ms is not None and recorded_ms > settled_ms:
                    # a grace still running (a replay's old definitions wait for inputs only)
                    rt.tick_at(recorded_ms / 1000 + rt.settings.definition_grace_s)
                return
        for due in activation.on_arrival(entries, active, definition, deleted_at):
            self.activate(partition, due,
                          segment if due == definition else self.catalog_segment(due))
            recorded_ms = activation.recorded_ms(entries, due.offset)
            arrived = rt.arrived_definitions.get(partition)
            if behind is not None and recorded_ms is not None and (
                    arrived is None or recorded_ms > arrived[0]):
                rt.arrived_definitions[partition] = (recorded_ms, segment_id)

    def behind_a_definition(self, partition: int, message: Event | Identify,
                            arrived: tuple[int, str]) -> None:
        """An input accepted before a definition that was activated here on its item's arrival
        (its grace had passed and the partition had taken every raw record it held): live, it
        is evaluated against the definition; a replay, which activates the definition after
        the inputs accepted before it, may not. It took longer than the grace to arrive.
        Counted, and logged at the 1st, 2nd, 4th, 8th... time: what a replay of it may differ
        in is its segment changes."""
        counters = self.rt.counters
        counters["inputs_behind_their_definitions"] += 1
        count = counters["inputs_behind_their_definitions"]
        if count & (count - 1) == 0:
            log.warning("input %s accepted at %d ms reached person.events[%d] after segment %s "
                        "recorded at %d ms was activated there (%d such inputs): a replay may "
                        "evaluate it differently. It took longer than EVENTIDE_DEFINITION_GRACE_S "
                        "(%.1f s) to reach its partition; a longer grace covers it",
                        message.id, message.at_ms, partition, arrived[1], arrived[0], count,
                        self.rt.settings.definition_grace_s)

    def settled_ms(self) -> int:
        """The time (ms) by which every input accepted is taken to be in ``raw.events``: now
        less ``EVENTIDE_DEFINITION_GRACE_S``."""
        return int((self.rt.clock.now() - self.rt.settings.definition_grace_s) * 1000)

    def took_raw(self, records: Sequence[EventT], raw_topic: str) -> None:
        """Raw records this unit took whole: what :meth:`activate_caught_up` measures against
        the partition's end."""
        handled = self.rt.raw_handled
        for event in records:
            message = event.message
            if message.topic == raw_topic:
                after = message.offset + 1
                if after > handled.get(message.partition, 0):
                    handled[message.partition] = after

    def activate_caught_up(self, partitions: Iterable[int]) -> None:
        """Activate the definitions recorded before the grace that a partition left to its
        inputs (:func:`app.core.activation.left_to_inputs`), once it has taken every raw record
        it holds. Checked at the end of each unit of the partition (a tick makes one at least
        every ``EVENTIDE_TICK_INTERVAL_S``, and one when a definition's grace ends)."""
        behind = self.rt.raw_behind
        if behind is None:
            return
        settled_ms = self.settled_ms()
        for partition in partitions:
            # (the high-watermark is read only when something is left to activate)
            if not self.nothing_due(partition, settled_ms) and not behind(partition):
                self.activate_recorded(partition, settled_ms)

    def activate(self, partition: int, definition: Definition, segment: Segment | None) -> None:
        """Everyone in the partition re-evaluated against ``definition`` (one that changes
        something here: :func:`app.core.activation.recorded_by`, ``on_arrival``)."""
        segments = self.segments(partition)
        for person in sorted(self.people_in(partition)):
            self.decided(partition, person, activation.activate(
                self.person(partition, person), person, self.events(partition, person),
                segments, definition, segment))
        self.activated(partition, definition)

    def catalog_segment(self, definition: Definition) -> Segment | None:
        """The definition's version as the catalog holds it (None: a deletion)."""
        if definition.version is None:
            return None
        return self.rt.catalog.get(definition.segment, definition.version)

    async def segment_of(self, definition: Definition) -> Segment | None:
        """The definition's version from the catalog (which may still be catching up)."""
        segment = self.catalog_segment(definition)
        if segment is not None or definition.version is None:
            return segment
        if definition.offset is None:
            raise KeyError("offset")
        if await self.rt.catalog.wait_for(definition.offset):
            segment = self.catalog_segment(definition)
        if segment is None:
            raise ValueError(f"segment {definition.segment} version {definition.version} is "
                             "not in the catalog")
        return segment


async def prepare_people_batch(rt: Runtime, events: Sequence[EventT],
                               decoded: Decoded | None = None,
                               base: UnitOfWork | None = None) -> Prepared:
    """One unit of ``process_people``: ``person.events`` items to the person stage, raw items and
    identity commands to the customer router, which hands the person stage those it can take in
    place. The customer tables and the people tables of a partition are both this worker's (the
    topics are co-partitioned), and one unit writes both."""
    topics = rt.topics
    began_s, began_ms = time.perf_counter(), rt.clock.now() * 1000
    await recover_for(rt, events)
    partitions = {event.message.partition for event in events}
    await rt.state.ensure_recovered(topics.person_events.name, partitions)
    catalog = rt.catalog
    if catalog.confirm is not None and await catalog.complete_through(
            newest_accept_ms(events, decoded)):
        rt.counters["definition_confirmations"] += 1
    batch = PeopleBatch(rt, rt.state.begin(base))
    router = CustomerRouter(rt, batch.unit, in_place=batch.handle_in_place)
    person_events, commands = topics.person_events.name, topics.identity_commands.name

    def handle(located: Located) -> Awaitable[None] | None:
        event, partition, offset, index, item = located
        topic = event.message.topic
        if topic == person_events:
            return batch.handle(partition, offset, index, item)
        if topic == commands:
            router.on_side(partition, item)
        else:
            router.on_raw(event, partition, offset, index, item)
        return None

    cut = await handle_items(rt, batch.unit, events, decoded, handle,
                             max_outputs=rt.settings.unit_max_outputs)
    batch.took_raw(events if cut is None else events[:cut.records], topics.raw_events.name)
    batch.activate_caught_up(partitions)
    router.flush()
    batch.flush()
    accepted_at_ms = batch.accepted_at_ms
    prepared_s = time.perf_counter()

    def observe_latency() -> None:
        done_ms = rt.clock.now() * 1000
        rt.latency.observe_many((done_ms - at) / 1000 for at in accepted_at_ms)
        stages = rt.stages
        stages["processing_wait_seconds"].observe_many(
            (began_ms - at) / 1000 for at in accepted_at_ms)
        stages["unit_prepare_seconds"].observe(prepared_s - began_s)
        stages["unit_commit_seconds"].observe(time.perf_counter() - prepared_s)
    return Prepared(rt, batch.unit, observe_latency, cut)


async def process_people_batch(rt: Runtime, events: Sequence[EventT],
                               decoded: Decoded | None = None) -> None:
    """One unit of ``process_people``, processed and committed on its own."""
    await process(prepare_people_batch, rt, events, decoded)


def register(app: faust.App, rt: Runtime) -> None:
    topics = rt.topics
    inputs = app.topic(topics.person_events.name, topics.raw_events.name,
                       topics.raw_identifies.name, topics.identity_commands.name,
                       key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw")

    @app.agent(inputs, name="process_people")
    async def process_people(stream):  # type: ignore[no-untyped-def]
        await run(stream, rt, prepare_people_batch)
