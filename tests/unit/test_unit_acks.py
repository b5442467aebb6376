"""What an agent acknowledges (agents.batches.consume over InboxTakes): a unit committed in the
generation its records were fetched in, and nothing else. A rebalance that runs while a unit
commits leaves that unit, and the rest of its take, unacknowledged and untracked: faust has
forgotten their offsets and sought back before them, so they come again. A unit whose partition
changed hands during its commit (``OwnershipChanged``) is abandoned the same way, and the agent
carries on with the next take. No broker: the consumer is a stand-in that records acks."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Sequence

import pytest

from agents.batches import InboxTakes, TakeLimit, consume
from agents.unit_items import Cut, Resumed
from app.bulk_fetch import Inbox
from app.model import encode_envelope
from tables.state import OwnershipChanged


@dataclass(eq=False)
class Msg:
    offset: int
    generation_id: int
    topic: str = "person.events"
    partition: int = 0
    key: bytes = b"k"
    value: bytes = encode_envelope([{"op": "event"}])

    @property
    def tp(self) -> tuple[str, int]:
        return (self.topic, self.partition)

    @property
    def message(self) -> "Msg":  # (an inbox's record is its own message, as InRecord is)
        return self


@dataclass
class Consumer:
    acked: list[int] = field(default_factory=list)
    tracked: list[int] = field(default_factory=list)
    _unacked_messages: set[Msg] = field(default_factory=set)

    def flowing(self) -> bool:
        return True

    def track_records(self, records: Sequence[Msg]) -> None:
        self._unacked_messages.update(records)
        self.tracked.extend(record.offset for record in records)

    def untrack_records(self, records: Sequence[Msg]) -> None:
        self._unacked_messages.difference_update(records)

    def untrack_topics(self, topics: frozenset[str]) -> None:
        self._unacked_messages = {m for m in self._unacked_messages if m.topic not in topics}

    def ack_records(self, records: Sequence[Msg]) -> None:
        self._unacked_messages.difference_update(records)
        self.acked.extend(record.offset for record in records)


class FlowControl:
    async def acquire(self) -> None:
        pass


class App:
    def __init__(self) -> None:
        self.consumer = Consumer()
        self.consumer_generation_id = 1
        self.flow_control = FlowControl()
        self.monitor = SimpleNamespace(stream_inbound_time={})


class Applied:
    def __init__(self) -> None:
        self.offsets: list[int] = []

    def advance(self, events: Sequence[Any]) -> None:
        self.offsets.extend(e.message.offset for e in events)


class Committed:
    """A prepared unit whose commit runs ``body`` (the stand-in for ``Runtime.commit``)."""

    def __init__(self, body: Any, unit: Sequence[Any], cut: Cut | None = None) -> None:
        self.body, self.events, self.unit = body, unit, object()
        self.dropped = False
        self.cut = cut  # (where it stopped short of its records; None: it took them all)

    def publish(self) -> None:
        pass  # these units have no outputs: what they commit is what the tests look at

    def drop(self) -> None:
        self.dropped = True

    async def commit(self) -> None:
        await self.body(None, self.events, None)


def preparing(commit: Any, made: list[Committed] | None = None, taking: int | None = None
              ) -> Any:
    """A prepare handler whose units commit with ``commit(rt, unit, decoded)`` (each kept in
    ``made``); with ``taking``, each processes that many of its records (its outputs filled up)
    and leaves the rest for the next unit."""
    async def prepare(rt: Any, unit: Sequence[Any], decoded: Any, base: Any) -> Committed:
        cut = None if taking is None or taking >= len(unit) else Cut(taking, 0)
        prepared = Committed(commit, unit if cut is None else unit[:cut.records], cut)
        if made is not None:
            made.append(prepared)
        return prepared
    return prepare


async def run_until(app: App, inbox: Inbox, handle: Any, handled: list[list[int]],
                    units: int, made: list[Committed] | None = None, *, unit_items: int = 1,
                    taking: int | None = None, prepare: Any = None) -> Applied:
    """Run the agent loop (units of ``unit_items`` records, each taking ``taking`` of them, or
    prepared by ``prepare``) until ``units`` units were handed over."""
    applied = Applied()
    rt = SimpleNamespace(settings=SimpleNamespace(unit_max_items=unit_items), applied=applied,
                         discarded=[], discard_prepared=lambda: rt.discarded.append(1),
                         counters=Counter())
    limit = TakeLimit(100, floor=100, items=unit_items)
    task = asyncio.ensure_future(consume(InboxTakes(inbox, app, limit), rt,  # type: ignore[arg-type]
                                         prepare or preparing(handle, made, taking), limit))
    try:
        for _ in range(200):
            if len(handled) >= units:
                break
            await asyncio.sleep(0.005)
        assert len(handled) >= units, handled
        await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    applied.discarded = rt.discarded  # type: ignore[attr-defined]
    applied.counters = rt.counters  # type: ignore[attr-defined]
    return applied


async def test_a_unit_committed_in_its_generation_is_acknowledged() -> None:
    app, inbox = App(), Inbox()
    handled: list[list[int]] = []

    async def handle(rt: Any, unit: Sequence[Any], decoded: Any) -> None:
        handled.append([e.message.offset for e in unit])

    await inbox.put_many([Msg(0, 1), Msg(1, 1)], lambda: True)
    applied = await run_until(app, inbox, handle, handled, 2)
    assert handled == [[0], [1]]
    assert app.consumer.acked == [0, 1] and applied.offsets == [0, 1]
    assert not app.consumer._unacked_messages


async def test_a_rebalance_during_a_commit_leaves_the_unit_and_the_rest_of_its_take() -> None:
    app, inbox = App(), Inbox()
    handled: list[list[int]] = []

    async def handle(rt: Any, unit: Sequence[Any], decoded: Any) -> None:
        handled.append([e.message.offset for e in unit])
        if unit[0].message.offset == 1 and unit[0].message.generation_id == 1:
            app.consumer_generation_id = 2  # a rebalance ran while this unit committed
            # ...and the seek back to the committed offset fetches 1 and 2 again
            await inbox.put_many([Msg(1, 2), Msg(2, 2)], lambda: True)

    await inbox.put_many([Msg(0, 1), Msg(1, 1), Msg(2, 1)], lambda: True)
    applied = await run_until(app, inbox, handle, handled, 4)
    # offset 2 of the old take is never handled; 1 and 2 come again in generation 2
    assert handled == [[0], [1], [1], [2]]
    assert app.consumer.acked == [0, 1, 2]
    assert applied.offsets == [0, 1, 2]
    assert not app.consumer._unacked_messages, "a later rebalance must not wait for them"


async def test_a_unit_whose_partition_changed_hands_is_abandoned_and_the_agent_goes_on() -> None:
    app, inbox = App(), Inbox()
    handled: list[list[int]] = []

    async def handle(rt: Any, unit: Sequence[Any], decoded: Any) -> None:
        offset = unit[0].message.offset
        handled.append([offset])
        if offset == 1 and unit[0].message.generation_id == 1:
            app.consumer_generation_id = 2
            await inbox.put_many([Msg(1, 2)], lambda: True)
            raise OwnershipChanged("person.events.changelog[0] changed hands during a unit")

    await inbox.put_many([Msg(0, 1), Msg(1, 1), Msg(2, 1)], lambda: True)
    applied = await run_until(app, inbox, handle, handled, 3)
    assert handled == [[0], [1], [1]]
    assert app.consumer.acked == [0, 1] and applied.offsets == [0, 1]
    assert not app.consumer._unacked_messages


async def test_records_of_an_older_generation_are_never_handled() -> None:
    app, inbox = App(), Inbox()
    app.consumer_generation_id = 3
    handled: list[list[int]] = []

    async def handle(rt: Any, unit: Sequence[Any], decoded: Any) -> None:
        handled.append([e.message.offset for e in unit])

    # taken after a rebalance that did not clear them (its records were already in the take)
    await inbox.put_many([Msg(5, 2), Msg(6, 2)], lambda: True)
    await inbox.put_many([Msg(5, 3)], lambda: True)
    await run_until(app, inbox, handle, handled, 1)
    assert handled == [[5]] and app.consumer.acked == [5]


async def test_the_next_unit_is_prepared_on_the_one_committing_and_acknowledged_after_it(
        ) -> None:
    app, inbox = App(), Inbox()
    handled: list[list[int]] = []
    log: list[str] = []
    bases: list[Any] = []
    release = asyncio.Event()

    class Slow:
        cut = None

        def __init__(self, unit: Sequence[Any]) -> None:
            self.offset, self.unit = unit[0].message.offset, object()

        def publish(self) -> None:
            log.append(f"publish {self.offset}")

        async def commit(self) -> None:
            log.append(f"commit {self.offset} begins")
            if self.offset == 0:
                await release.wait()  # the broker is slow to acknowledge unit 0
            log.append(f"commit {self.offset} ends")
            handled.append([self.offset])

    prepared: list[Slow] = []

    async def prepare(rt: Any, unit: Sequence[Any], decoded: Any, base: Any) -> Slow:
        log.append(f"prepare {unit[0].message.offset}")
        bases.append(base)
        if unit[0].message.offset == 1:
            release.set()
        prepared.append(Slow(unit))
        return prepared[-1]

    await inbox.put_many([Msg(0, 1), Msg(1, 1)], lambda: True)
    applied = Applied()
    rt = SimpleNamespace(settings=SimpleNamespace(unit_max_items=1), applied=applied,
                         counters=Counter())
    limit = TakeLimit(100, floor=100, items=1)
    task = asyncio.ensure_future(consume(InboxTakes(inbox, app, limit), rt,  # type: ignore[arg-type]
                                         prepare, limit))
    try:
        for _ in range(200):
            if len(handled) >= 2:
                break
            await asyncio.sleep(0.005)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # unit 1 was prepared while unit 0 was committing, on unit 0's writes, and committed after;
    # its outputs were on their way before unit 0's commit ended (unit 0, with no commit ahead
    # of it, sends its outputs in its own commit)
    assert log.index("prepare 1") < log.index("commit 0 ends") < log.index("commit 1 begins")
    assert log.index("prepare 1") < log.index("publish 1") < log.index("commit 0 ends")
    assert "publish 0" not in log
    assert bases == [None, prepared[0].unit]
    assert app.consumer.acked == [0, 1] and applied.offsets == [0, 1]


async def test_a_unit_built_on_a_commit_that_failed_is_dropped_with_it() -> None:
    app, inbox = App(), Inbox()
    handled: list[list[int]] = []
    committed: list[tuple[int, int]] = []

    async def handle(rt: Any, unit: Sequence[Any], decoded: Any) -> None:
        message = unit[0].message
        handled.append([message.offset])
        if message.offset == 1 and message.generation_id == 1:
            app.consumer_generation_id = 2
            await inbox.put_many([Msg(1, 2), Msg(2, 2)], lambda: True)
            raise OwnershipChanged("person.events.changelog[0] changed hands during a unit")
        committed.append((message.offset, message.generation_id))

    await inbox.put_many([Msg(0, 1), Msg(1, 1), Msg(2, 1)], lambda: True)
    made: list[Committed] = []
    applied = await run_until(app, inbox, handle, handled, 4, made)
    # offset 2 of generation 1 was prepared on unit 1, whose commit failed: never committed,
    # its publish stopped, and what the runtime's caches learned from it is forgotten
    assert committed == [(0, 1), (1, 2), (2, 2)]
    assert [(c.events[0].message.offset, c.events[0].message.generation_id)
            for c in made if c.dropped] == [(2, 1)]
    assert len(applied.discarded) == 1  # type: ignore[attr-defined]
    assert app.consumer.acked == [0, 1, 2] and applied.offsets == [0, 1, 2]
    assert not app.consumer._unacked_messages


async def test_a_unit_that_fails_to_prepare_leaves_the_one_committing_to_finish() -> None:
    app, inbox = App(), Inbox()
    committed: list[int] = []
    release = asyncio.Event()

    class Slow:
        unit = cut = None

        async def commit(self) -> None:
            await release.wait()
            committed.append(0)

    async def prepare(rt: Any, unit: Sequence[Any], decoded: Any, base: Any) -> Slow:
        if unit[0].message.offset == 1:
            asyncio.get_running_loop().call_later(0.01, release.set)
            raise RuntimeError("the table partition could not be recovered")
        return Slow()

    await inbox.put_many([Msg(0, 1), Msg(1, 1)], lambda: True)
    rt = SimpleNamespace(settings=SimpleNamespace(unit_max_items=1), applied=Applied(),
                         counters=Counter())
    limit = TakeLimit(100, floor=100, items=1)
    with pytest.raises(RuntimeError):
        await asyncio.wait_for(consume(InboxTakes(inbox, app, limit), rt,  # type: ignore[arg-type]
                                       prepare, limit), 5)
    # consume fails (agents.batches.run fetches again from the committed offsets), but not
    # before unit 0 is committed and acknowledged
    assert committed == [0] and app.consumer.acked == [0]


async def test_a_unit_that_takes_part_of_its_records_leaves_the_rest_to_the_next_unit() -> None:
    # Each unit's outputs fill up after one record (unit_max_outputs): the rest of its records
    # come next, in order, before anything after them; each is tracked once and acknowledged
    # once, by the unit that processed it.
    app, inbox = App(), Inbox()
    handled: list[list[int]] = []

    async def handle(rt: Any, unit: Sequence[Any], decoded: Any) -> None:
        handled.append([e.message.offset for e in unit])

    await inbox.put_many([Msg(offset, 1) for offset in range(5)], lambda: True)
    applied = await run_until(app, inbox, handle, handled, 5, unit_items=3, taking=1)
    assert handled == [[0], [1], [2], [3], [4]]
    assert app.consumer.acked == [0, 1, 2, 3, 4] and applied.offsets == [0, 1, 2, 3, 4]
    assert sorted(app.consumer.tracked) == [0, 1, 2, 3, 4], "tracked once each"
    assert applied.counters["units_cut_short"] == 3  # type: ignore[attr-defined]
    assert not app.consumer._unacked_messages


async def test_the_rest_of_a_unit_is_untracked_when_a_rebalance_overtakes_it() -> None:
    # The rest a unit left is tracked already: when a rebalance makes it stale, it is untracked
    # (a later rebalance must not wait for it), never acknowledged, and comes again.
    app, inbox = App(), Inbox()
    handled: list[list[int]] = []

    async def handle(rt: Any, unit: Sequence[Any], decoded: Any) -> None:
        message = unit[0].message
        handled.append([message.offset])
        if message.offset == 0 and message.generation_id == 1:
            app.consumer_generation_id = 2  # a rebalance ran while unit 0 committed
            await inbox.put_many([Msg(1, 2), Msg(2, 2)], lambda: True)

    await inbox.put_many([Msg(0, 1), Msg(1, 1), Msg(2, 1)], lambda: True)
    applied = await run_until(app, inbox, handle, handled, 3, unit_items=3, taking=1)
    assert handled == [[0], [1], [2]]
    assert app.consumer.acked == [1, 2] and applied.offsets == [1, 2]
    assert not app.consumer._unacked_messages, "a later rebalance must not wait for them"


async def test_a_record_a_unit_took_part_of_is_acknowledged_by_the_unit_that_takes_its_last_item(
        ) -> None:
    # One unit of two records, the first of three items. The unit's outputs fill up after its
    # first item and the next unit's after the second: the third unit resumes the record at
    # its third item, and it acknowledges both records; the first two acknowledge nothing.
    app, inbox = App(), Inbox()
    handled: list[list[int]] = []
    starts: list[int] = []
    acked_before: list[list[int]] = []
    cuts: list[Cut | None] = [Cut(0, 1), Cut(0, 2), None]

    async def commit(rt: Any, unit: Sequence[Any], decoded: Any) -> None:
        acked_before.append(list(app.consumer.acked))
        handled.append([e.message.offset for e in unit])

    async def prepare(rt: Any, unit: Sequence[Any], decoded: Any, base: Any) -> Committed:
        found = decoded.get(id(unit[0]))
        starts.append(found.start if isinstance(found, Resumed) else 0)
        return Committed(commit, unit, cuts.pop(0))

    three = encode_envelope([{"op": "event"}] * 3)
    await inbox.put_many([Msg(0, 1, value=three), Msg(1, 1)], lambda: True)
    applied = await run_until(app, inbox, commit, handled, 3, unit_items=10, prepare=prepare)
    assert handled == [[0, 1], [0, 1], [0, 1]] and starts == [0, 1, 2]
    assert acked_before == [[], [], []], "the units that took part of record 0 acknowledge nothing"
    assert app.consumer.acked == [0, 1] and applied.offsets == [0, 1]
    assert sorted(app.consumer.tracked) == [0, 1], "tracked once each"
    assert applied.counters["units_cut_short"] == 2  # type: ignore[attr-defined]
    assert not app.consumer._unacked_messages
