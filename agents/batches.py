"""What every agent does around its pure step: batch, recover, decode, commit. A unit's items go
to the agent's handler through :mod:`agents.unit_items`, compiled."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from time import monotonic
from typing import Any, Sequence

from faust.types import EventT, StreamT

from agents.unit_items import Cut, Decoded, decode_one, rest_after
from app.bulk_fetch import Inbox, bulk_inbox
from app.runtime import Runtime
from tables.records import InRecord
from tables.state import OwnershipChanged, UnitOfWork

log = logging.getLogger(__name__)


class Prepared:
    """A unit of work processed and ready to commit; ``after`` runs once it is committed.
    ``cut``: where it stopped short of the records it was given (None: it took them all); the
    rest is left for the next unit (:func:`agents.unit_items.handle_items`)."""

    __slots__ = ("rt", "unit", "after", "cut")

    def __init__(self, rt: Runtime, unit: UnitOfWork,
                 after: Callable[[], None] | None = None, cut: Cut | None = None) -> None:
        self.rt, self.unit, self.after, self.cut = rt, unit, after, cut

    def publish(self) -> None:
        """Start sending the unit's outputs ahead of its commit (``StateManager.publish``)."""
        self.rt.state.publish(self.unit)

    def drop(self) -> None:
        """The unit will never be committed: stop sending its outputs (``StateManager.drop``)."""
        self.rt.state.drop(self.unit)

    async def commit(self) -> None:
        await self.rt.commit(self.unit)
        if self.after is not None:
            self.after()


#: Processes a unit's records into a :class:`Prepared` unit of work, built on the agent's
#: previous unit (``base``) while that one is still committing.
PrepareHandler = Callable[[Runtime, Sequence[EventT], Decoded | None, UnitOfWork | None],
                          Awaitable[Prepared]]


async def process(prepare: PrepareHandler, rt: Runtime, events: Sequence[EventT],
                  decoded: Decoded | None = None) -> None:
    """One unit, processed and committed, on its own (tests and tools); as many as it takes
    when a unit leaves records for the next (``unit_max_outputs``)."""
    while True:
        prepared = await prepare(rt, events, decoded, None)
        await prepared.commit()
        if prepared.cut is None:
            return
        events, decoded = rest_after(prepared.cut, events, decoded)


#: How long an agent waits after a failed unit before it fetches its records again, doubling
#: up to :data:`UNIT_RETRY_MAX_S` while units keep failing (a broker away).
UNIT_RETRY_S = 0.5
UNIT_RETRY_MAX_S = 10.0


class TakeLimit:
    """How many records the next ``take_events`` may buffer, changeable between takes.

    faust reads a take's limit at every buffered event (``buffer_size() >= max_``), so an object
    comparing as the current value adapts the take to the records' sizes: a producer writing one
    event per record gets units of ``unit_max_items`` items, not of ``batch_max`` (40) items each
    paying a whole commit; batch envelopes (up to 500 items each) keep takes of ``batch_max``
    records, so what a take holds stays bounded either way.
    """

    def __init__(self, records: int, *, floor: int, items: int) -> None:
        self.value = records
        self.floor = floor
        self.items = items

    def __le__(self, buffered: int) -> bool:  # ``buffered >= limit``, as faust writes it
        return self.value <= buffered

    def adapt(self, records: int, items: int) -> None:
        """After a take of ``records`` holding ``items`` items: aim the next at ``self.items``."""
        per_record = max(1.0, items / max(1, records))
        self.value = max(self.floor, min(self.items, int(self.items / per_record)))


async def run(stream: StreamT, rt: Runtime, prepare: PrepareHandler) -> None:
    """The body of every agent: consume in batches, hand each to ``prepare`` in units of at most
    ``unit_max_items`` items (this bound never splits a record; ``unit_max_outputs`` may), so a
    unit's memory and the time it holds the event loop are bounded by configuration, whatever
    the backlog.

    A worker's agents take their records from the inbox the fetch loop fills in bulk
    (:mod:`app.bulk_fetch`); an agent driven through faust's ``test_context`` reads its stream."""
    await rt.started.wait()
    settings = rt.settings
    limit = TakeLimit(settings.batch_max, floor=settings.batch_max,
                      items=settings.unit_max_items)
    inbox = bulk_inbox(stream.app, stream)
    if inbox is None:  # (faust's own stream: tests and tools, where a failure is the test's)
        await consume(StreamTakes(stream, limit, settings.batch_within_s), rt, prepare, limit)
        return
    takes = InboxTakes(inbox, stream.app, limit, stream.channel.topics)
    delay, failed_at = UNIT_RETRY_S, 0.0
    while True:
        try:
            await consume(takes, rt, prepare, limit)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if monotonic() - failed_at > UNIT_RETRY_MAX_S * 6:
                delay = UNIT_RETRY_S  # (not failing over and over: start the backoff again)
            failed_at = monotonic()
            # Not an item's failure (those are dead-lettered one by one) but the unit's own: its
            # recovery or its commit, as a broker timeout makes them fail. faust would end the
            # agent for good (a worker that no longer processes anything); going on with the
            # records after the unit would get them acknowledged and the unit's committed past
            # (faust commits the first run of acknowledged offsets of a partition that has
            # nothing committed). So every record is fetched again from the committed offsets.
            rt.counters["unit_failures"] += 1
            log.error("a unit of work failed (%r); its records and the rest are fetched again "
                      "from the committed offsets, and taken again in %.1fs", exc, delay,
                      exc_info=(type(exc), exc, exc.__traceback__))
            rt.discard_prepared()
            await takes.refetch()
            await asyncio.sleep(delay)
            delay = min(delay * 2, UNIT_RETRY_MAX_S)


async def consume(takes: "InboxTakes | StreamTakes", rt: Runtime, prepare: PrepareHandler,
                  limit: TakeLimit) -> None:
    """Prepare every take unit by unit, each unit while the one before it commits; acknowledge
    what was committed in the generation it was fetched in, and nothing else.

    A commit mostly waits for the broker's acknowledgements (outputs, then changelog): the next
    unit is processed meanwhile, reading the committing unit's writes as its base, and committed
    only after it; only its outputs go out at once (``StateManager.publish``), so they do not
    wait for the base's changelog. If that commit fails, the unit built on it is dropped
    unacknowledged too, and its outputs are sent again when its inputs are processed again.
    """
    settings = rt.settings
    committing: Committing | None = None
    try:
        async for events in takes:
            units = DecodedUnits(events, settings.unit_max_items)
            try:
                for unit, decoded, begun in units:
                    # A unit given up here is untracked: the rest of a cut unit was tracked with
                    # it (untracking what was never tracked does nothing).
                    if not takes.flowing():
                        takes.drop(unit)
                        break  # a rebalance began: the rest comes again from the committed offsets
                    if not takes.current(unit):
                        takes.drop(unit)  # fetched before the last rebalance (faust skips these too)
                        continue
                    if committing is not None and committing.task.done():
                        finished, committing = committing, None
                        if not await finished.result():
                            takes.drop(unit)
                            break  # the rest comes again after the rebalance's seek
                    if not begun:
                        takes.begin(unit)
                    prepared = await prepare(rt, unit, decoded,
                                             None if committing is None else committing.unit)
                    cut = prepared.cut
                    if cut is not None:
                        # Its outputs filled up: the rest makes the next unit, and a record it
                        # took part of is acknowledged with the unit that takes its last item
                        # (after a crash between the two, its first items come again and are
                        # judged redeliveries).
                        rt.counters["units_cut_short"] += 1
                        units.push_back(*rest_after(cut, unit, decoded))
                        unit = unit[:cut.records]
                    if committing is not None:
                        prepared.publish()  # its outputs need not wait for the commit under it
                        finished, committing = committing, None
                        if not await finished.result():
                            takes.drop(unit)  # built on writes that never became state
                            prepared.drop()
                            rt.discard_prepared()
                            break
                    committing = Committing(takes, rt, unit, prepared)
            finally:
                units.release_pushed_back(takes.drop)  # (tracked, never to be acknowledged)
            limit.adapt(units.records, units.items)  # (read when the next take is asked for)
            if committing is not None and not takes.commits_across_takes:
                finished, committing = committing, None
                await finished.result()
        if committing is not None:
            await committing.result()
    except asyncio.CancelledError:
        if committing is not None:
            committing.task.cancel()  # stopped: ``Runtime.commit`` exits so it is redelivered
        raise
    except BaseException:
        if committing is not None:  # the unit before the failure is committed all the same
            await asyncio.gather(committing.task, return_exceptions=True)
        raise


class Committing:
    """A prepared unit's commit, running while the agent prepares the next unit. It
    acknowledges the unit's records itself as soon as it is committed: an acknowledgement never
    waits for the agent's next take (a rebalance waits for them)."""

    def __init__(self, takes: "InboxTakes | StreamTakes", rt: Runtime,
                 events: Sequence[EventT], prepared: Prepared) -> None:
        self.unit = prepared.unit
        self.task = asyncio.ensure_future(self._commit(takes, rt, events, prepared))

    async def result(self) -> bool:
        """Whether the unit was committed and acknowledged."""
        return await self.task

    @staticmethod
    async def _commit(takes: "InboxTakes | StreamTakes", rt: Runtime,
                      events: Sequence[EventT], prepared: Prepared) -> bool:
        try:
            await prepared.commit()
        except OwnershipChanged as exc:
            log.warning("%s: its inputs are left unacknowledged, to be processed again "
                        "from the committed offsets", exc)
            takes.drop(events)
            return False
        if not takes.done(events):
            return False  # committed across a rebalance: they come again, as redeliveries
        # Committed: requests waiting to read their writes may now see these records.
        rt.applied.advance(events)
        count_committed(rt.counters, events)
        return True


def count_committed(counters: Any, events: Sequence[EventT]) -> None:
    """``records_committed:<topic>``: input records whose unit of work is committed (each
    once, a cut record with the unit that took its last item). A replay checks that its worker
    committed every record of the input log (:mod:`app.ops.replay_tally`)."""
    for topic, n in Counter(event.message.topic for event in events).items():
        counters["records_committed:" + topic] += n


class StreamTakes:
    """Takes of a faust stream (an agent under ``test_context``): faust acknowledges a take's
    events when the next one is asked for."""

    #: faust acknowledges a take when the next one is asked for: each take's last unit is
    #: committed before that.
    commits_across_takes = False

    def __init__(self, stream: StreamT, limit: TakeLimit, within_s: float) -> None:
        self._takes = stream.take_events(limit, within=within_s)  # type: ignore[arg-type]

    def __aiter__(self) -> "StreamTakes":
        return self

    async def __anext__(self) -> Sequence[EventT]:
        return await self._takes.__anext__()

    def flowing(self) -> bool:
        return True

    def current(self, unit: Sequence[EventT]) -> bool:
        return True

    def drop(self, unit: Sequence[EventT]) -> None:
        pass

    def begin(self, unit: Sequence[EventT]) -> None:
        pass

    def done(self, unit: Sequence[EventT]) -> bool:
        return True


class InboxTakes:
    """Takes of an agent's inbox. A unit's records are tracked by faust's consumer as its streams
    track what they process (a rebalance waits for them) and acknowledged once the unit is
    committed (faust commits the offsets acknowledged). What a rebalance stops a take short of
    is neither: faust fetches it again from the committed offsets."""

    commits_across_takes = True

    def __init__(self, inbox: Inbox, app: Any, limit: TakeLimit,
                 topics: Iterable[str] = ()) -> None:
        self._inbox, self._app, self._limit = inbox, app, limit
        self._topics = frozenset(topics)

    def __aiter__(self) -> "InboxTakes":
        return self

    async def __anext__(self) -> list[InRecord]:
        while True:
            await self._app.flow_control.acquire()
            records = await self._inbox.take(self._limit.value)
            if self.flowing():
                return records

    def flowing(self) -> bool:
        return bool(self._app.consumer.flowing())

    def current(self, unit: Sequence[InRecord]) -> bool:
        """The unit's records were fetched in the group generation now running. A take
        outlives a rebalance that begins and ends while one of its units commits; its other
        records are the previous generation's, which faust's own streams skip too (their
        partitions may be another worker's now, and they are fetched again where they are
        owned)."""
        generation = self._app.consumer_generation_id
        return all(record.generation_id == generation for record in unit)

    def begin(self, unit: Sequence[InRecord]) -> None:
        self._app.consumer.track_records(unit)

    def drop(self, unit: Sequence[InRecord]) -> None:
        """Neither acknowledge nor keep tracking: a later rebalance must not wait for these."""
        self._app.consumer.untrack_records(unit)

    async def refetch(self) -> None:
        """After a failed unit: untrack this agent's records, drop what its inbox holds, and
        seek every partition back to its committed offset (``BulkConsumer.seek_again``), so
        the failed unit's records and everything after them come again. (Other agents' records
        come again too: as redeliveries, which are idempotent.)"""
        consumer = self._app.consumer
        consumer.untrack_topics(self._topics)
        self._inbox.clear()
        await consumer.seek_again()

    def done(self, unit: Sequence[InRecord]) -> bool:
        """Acknowledge a committed unit, unless a rebalance ran while it was committed: faust
        has then forgotten its offsets and sought back before them, so the records come again
        (redeliveries) and an acknowledgement now would be counted against the new ones."""
        if not self.current(unit):
            self.drop(unit)
            return False
        self._app.consumer.ack_records(unit)
        return True


class DecodedUnits:
    """A take's records as consecutive units of at most ``max_items`` items (at least one
    record), each with its records decoded (:data:`Decoded`), and whether its records are
    tracked already (``begun``: the rest of a unit, :meth:`push_back`).

    Records are decoded as their unit is formed, not a take at a time: a take of 40 envelopes
    holds 20,000 items, and decoding them all up front kept them all in memory while the take's
    first units were processed. What is decoded at once is a unit, and the record after it.
    ``records`` and ``items`` count what was formed so far (for :meth:`TakeLimit.adapt`)."""

    def __init__(self, events: Sequence[EventT], max_items: int) -> None:
        self._events, self._max_items = events, max_items
        self.records = 0
        self.items = 0
        #: The records a unit left for the next (tracked already), ahead of what follows.
        self._rest: tuple[list[EventT], Decoded] | None = None

    def push_back(self, rest: list[EventT], decoded: Decoded) -> None:
        """The records a unit did not take (its outputs filled up), the first maybe from an item
        on (:class:`Resumed`): they are the next unit."""
        self._rest = (rest, decoded)

    def release_pushed_back(self, drop: Callable[[list[EventT]], None]) -> None:
        """Iteration stopped with a unit's rest still waiting: untrack it (it comes again)."""
        if self._rest is not None:
            drop(self._rest[0])
            self._rest = None

    def _pushed_back(self) -> Iterator[tuple[list[EventT], Decoded, bool]]:
        while self._rest is not None:
            (rest, decoded), self._rest = self._rest, None
            yield rest, decoded, True

    def __iter__(self) -> Iterator[tuple[list[EventT], Decoded, bool]]:
        unit: list[EventT] = []
        decoded: Decoded = {}
        count = 0
        for event in self._events:
            items = decode_one(event)
            size = len(items) if isinstance(items, list) else 1
            self.records += 1
            self.items += size
            if unit and count + size > self._max_items:
                yield unit, decoded, False
                yield from self._pushed_back()
                unit, decoded, count = [], {}, 0
            unit.append(event)
            decoded[id(event)] = items
            count += size
        if unit:
            yield unit, decoded, False
            yield from self._pushed_back()


async def recover_for(rt: Runtime, events: Sequence[EventT]) -> None:
    """Make sure the tables of every partition in the batch are caught up before use."""
    by_topic: dict[str, set[int]] = {}
    for event in events:
        by_topic.setdefault(event.message.topic, set()).add(event.message.partition)
    for topic, partitions in by_topic.items():
        await rt.state.ensure_recovered(topic, partitions)
