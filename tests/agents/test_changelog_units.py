"""Regression tests for the rebalance divergence (issue 17): a unit of work reaches a recovering
worker whole or not at all.

The bug: every people table had a changelog topic of its own, so a worker killed (SIGTERM while a
batch was committing exits hard; SIGKILL) while producing a unit's changelog records left some
tables with the unit's writes and others without. The next owner recovered that mix; the
redelivered input found its dedup id, was taken for done (no evaluation), and the membership the
same unit had decided was lost — its next event published a second ``entered`` with another
``change_id``. The crash schedule showed exactly that around its SIGTERM/SIGKILL bursts.

Here the whole path runs without a broker and without timing: two or three workers built with
``create_app`` (real RocksDB each), a shared in-memory changelog standing in for the broker's, and
the product's own recovery (``StateManager.ensure_recovered``: replay, then fence) reading it
through a fake consumer. A crash is injected after every possible number of acknowledged
changelog records of a unit, and the redelivered log is processed by a worker that recovers from
the changelog: a new owner with empty local state, or the same worker restarted over its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

import orjson
import pytest
from aiokafka import TopicPartition

from agents import people
from app.clock import ManualClock
from app.model import encode_envelope
from app.person_store import PersonEvents, StoredTables
from app.producer import OutRecord
from app.settings import Settings
from app.topics import ACTIVITY_LOG, DEDUP, HISTORY, MEMBERSHIP, SEGMENT_MEMBERS
from app.wiring import create_app
from tables.changelog import Position
from tables.state import OwnershipChanged
from tests.agents.agent_harness import person_table
from tests.agents.pipeline_sim import Event, Message

T0 = 1_700_000_000
SEGMENT = "did-e1"
DEFINITION = {"name": "did e1", "match": {"event": "e1"}}


class Crash(Exception):
    """The worker died while its unit's changelog records were being acknowledged."""


@dataclass
class Rec:
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


@dataclass
class Broker:
    """The changelog partitions (and the change records published), shared by every worker."""

    changelogs: dict[tuple[str, int], list[Rec]] = field(default_factory=dict)
    changes: list[dict[str, Any]] = field(default_factory=list)

    def append(self, record: OutRecord) -> int:
        log = self.changelogs.setdefault((record.topic, record.partition), [])
        log.append(Rec(len(log), record.key, record.value, list(record.headers)))
        return len(log) - 1


class FakeChangelogConsumer:
    """What ``StateManager`` uses of an AIOKafkaConsumer, over :class:`Broker`'s changelogs."""

    def __init__(self, broker: Broker, positions: dict[tuple[str, int], Position]) -> None:
        self.broker = broker
        self.next = {TopicPartition(*cp): p.applied_to + 1 for cp, p in positions.items()}

    async def getmany(self, *tps: TopicPartition, timeout_ms: int = 0,
                      max_records: int = 0) -> dict[TopicPartition, list[Rec]]:
        out = {}
        for tp in tps or list(self.next):
            log = self.broker.changelogs.get((tp.topic, tp.partition), [])
            out[tp] = log[self.next[tp]:]
            self.next[tp] = len(log)
        return out

    def highwater(self, tp: TopicPartition) -> int:
        return len(self.broker.changelogs.get((tp.topic, tp.partition), []))

    async def position(self, tp: TopicPartition) -> int:
        return self.next[tp]

    async def stop(self) -> None:
        pass


class Worker:
    def __init__(self, root: Path, broker: Broker) -> None:
        self.broker = broker
        self.clock = ManualClock(T0)
        settings = Settings(data_dir=root, partitions=1, app_key="a", site_id="s", api_key="k")
        self.app = create_app(settings, clock=self.clock)
        self.rt = rt = self.app.runtime
        rt.producer.send_all = self._send_all  # type: ignore[method-assign]

        async def consumer(positions: dict[tuple[str, int], Position]) -> FakeChangelogConsumer:
            return FakeChangelogConsumer(broker, positions)
        rt.state._changelog_consumer = consumer  # type: ignore[method-assign]
        rt.catalog.apply(SEGMENT, {"definition": DEFINITION, "version": "v1",
                                   "updated_at": T0}, 0)
        rt.started.set()
        #: Changelog records still acknowledged before the crash (None: no crash).
        self.crash_after: int | None = None
        self.changelog_records = 0
        #: Runs once, "before" or "after" a unit's changelog records are sent (a rebalance).
        self.on_changelog: tuple[str, Callable[[], Awaitable[None]]] | None = None

    async def _send_all(self, records: Sequence[OutRecord]) -> list[int]:
        hook = None
        if self.on_changelog is not None and any(".changelog." in r.topic for r in records):
            (when, hook), self.on_changelog = self.on_changelog, None
            if when == "before":
                await hook()
                hook = None
        offsets = await self._append(records)
        if hook is not None:
            await hook()
        return offsets

    async def _append(self, records: Sequence[OutRecord]) -> list[int]:
        offsets = []
        for record in records:
            if ".changelog." in record.topic:
                if self.crash_after is not None:
                    if self.crash_after == 0:
                        raise Crash
                    self.crash_after -= 1
                self.changelog_records += 1
                offsets.append(self.broker.append(record))
                continue
            if record.topic == self.rt.topics.segment_changes.name:
                self.broker.changes.append(orjson.loads(record.value))  # type: ignore[arg-type]
            offsets.append(0)
        return offsets

    async def deliver(self, offset: int, items: list[dict[str, Any]]) -> None:
        message = Message(self.rt.topics.person_events.name, 0, offset, b"k",
                          encode_envelope(items), float(T0))
        await people.process_people_batch(self.rt, [Event(message)])  # type: ignore[list-item]

    def table(self, name: str, key: str) -> Any:
        return person_table(self.rt.state.tables, name, 0, key)

    def close(self) -> None:
        self.rt.state.close()


def event(n: int, person: str, name: str) -> dict[str, Any]:
    return {"op": "event", "id": f"01HZZZZZZZZZZZZZZZZZZZZ{n:03d}", "name": name, "type": "event",
            "data": {}, "timestamp": T0 - 60 + n, "person": person, "received_at": (T0 + n) * 1000}


def identify(n: int, person: str, attributes: dict[str, Any]) -> dict[str, Any]:
    return {"op": "identify", "id": f"01HZZZZZZZZZZZZZZZZZZZZ{n:03d}", "customer": person,
            "person": person, "attributes": attributes, "anonymous_id": None, "timestamp": None,
            "update": False, "received_at": (T0 + n) * 1000}


#: person.events offset → the record's items. Offset 1 is the unit the crash cuts short.
LOG: dict[int, list[dict[str, Any]]] = {
    0: [{"op": "segment", "segment": SEGMENT, "version": "v1", "offset": 0, "at": T0}],
    1: [identify(1, "p1", {"plan": "pro"}), event(2, "p0", "e1"), event(3, "p1", "e3")],
    2: [event(4, "p0", "e1"), event(5, "p1", "e1")],
    3: [event(6, "p0", "e2")],
}


def check_changes(changes: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """What a consumer dropping repeated change ids sees: per (person, segment), entered and
    exited alternate, starting with entered. Returns the last kind of each."""
    seen: set[str] = set()
    last: dict[tuple[str, str], str] = {}
    for change in changes:
        if change["change_id"] in seen:
            continue
        seen.add(change["change_id"])
        key = (change["person_id"], change["segment_id"])
        expected = "exited" if last.get(key) == "entered" else "entered"
        assert change["change"] == expected, f"{key}: {change['change']} twice in a row"
        last[key] = change["change"]
    return last


def check_final(worker: Worker) -> None:
    assert worker.rt.counters["invariant_violations"] == 0
    for person, ids in (("p0", {2, 4, 6}), ("p1", {3, 5})):
        history = worker.table(HISTORY, person)
        assert sorted(a["id"] for a in history) == sorted(event(n, "", "")["id"] for n in ids)
        assert {a["id"] for a in history} <= set(worker.table(DEDUP, person))
        # the by-name index is not in the changelog: recovery derived it from the history
        stored = PersonEvents(StoredTables(worker.rt.state.tables), 0, person)
        by_name = [a for name in sorted({a["name"] for a in history})
                   for a in stored.named(name, None)]
        assert sorted(a["id"] for a in by_name) == sorted(a["id"] for a in history)
        # so was the activity log's index (by processed time), one key of each kind per event
        log = [key for key, _ in worker.rt.state.tables[ACTIVITY_LOG].store(0).items()
               if key.split("\x1f")[-2] == person]
        assert len(log) == 2 * len(history)
        assert sorted(k.rsplit("\x1f", 1)[1] for k in log if k.startswith("a\x1f")) == \
            sorted(a["id"] for a in history)
        assert SEGMENT in worker.table(MEMBERSHIP, person)["in"]
        assert worker.table(SEGMENT_MEMBERS, f"{SEGMENT}\x00{person}") is not None


async def records_of_the_unit(root: Path) -> int:
    broker = Broker()
    worker = Worker(root, broker)
    try:
        await worker.deliver(0, LOG[0])
        before = worker.changelog_records
        await worker.deliver(1, LOG[1])
        return worker.changelog_records - before
    finally:
        worker.close()


@pytest.mark.parametrize("restart", ["new owner", "same worker"])
async def test_a_unit_cut_short_in_the_changelog_is_never_half_recovered(
    tmp_path: Path, restart: str
) -> None:
    total = await records_of_the_unit(tmp_path / "dry")
    assert total >= 8, "the unit writes several tables (dedup, history, profile, membership...)"
    for acknowledged in range(total):
        broker = Broker()
        a = Worker(tmp_path / f"{restart}-{acknowledged}-a", broker)
        await a.deliver(0, LOG[0])
        a.crash_after = acknowledged
        with pytest.raises(Crash):
            await a.deliver(1, LOG[1])
        assert [c["person_id"] for c in broker.changes] == ["p0"], "published before the crash"
        a.close()
        root = a.rt.settings.data_dir if restart == "same worker" else tmp_path / f"b{acknowledged}"
        b = Worker(root, broker)
        try:
            for offset in (1, 2, 3):  # offset 1 is redelivered: it was never committed
                await b.deliver(offset, LOG[offset])
            last = check_changes(broker.changes)
            assert last == {("p0", SEGMENT): "entered", ("p1", SEGMENT): "entered"}, acknowledged
            check_final(b)
        finally:
            b.close()


async def test_a_deposed_owner_s_writes_after_the_fence_are_void(tmp_path: Path) -> None:
    broker = Broker()
    a = Worker(tmp_path / "a", broker)
    b = Worker(tmp_path / "b", broker)
    c = Worker(tmp_path / "c", broker)
    try:
        await a.deliver(0, LOG[0])
        await a.deliver(1, LOG[1])
        # b takes the partition over (a missed the rebalance): it recovers a's units and fences.
        await b.deliver(2, LOG[2])
        await b.deliver(3, LOG[3])
        # a, deposed without knowing it, still commits a unit, on its own stale state (it never
        # saw offset 2): its records come last in the changelog.
        await a.deliver(3, LOG[3])
        assert a.table(HISTORY, "p0") != b.table(HISTORY, "p0")
        # c recovers from scratch: a's last unit was written under an older epoch after b's
        # fence, so c's state is b's exactly.
        await c.rt.state.ensure_recovered(c.rt.topics.person_events.name, [0])
        assert c.rt.state.void_records > 0
        for table in (HISTORY, DEDUP, MEMBERSHIP):
            for person in ("p0", "p1"):
                assert c.table(table, person) == b.table(table, person), (table, person)
        check_final(c)
        check_changes(broker.changes)
    finally:
        for worker in (a, b, c):
            worker.close()


@pytest.mark.parametrize("fenced", ["before the unit's records", "after them"])
async def test_a_unit_whose_partition_changes_hands_and_comes_back_is_processed_again(
        tmp_path: Path, fenced: str) -> None:
    """A rebalance runs while a unit commits, and gives its partition back to the same worker,
    which recovers it and fences it. The unit is abandoned, not fatal: it writes nothing
    locally and its commit raises, so the agent leaves its inputs unacknowledged; the
    redelivered inputs (the rebalance sought back before them) are processed once, whichever
    side of the fence the unit's records fell on. (The worker used to exit here.)"""
    broker = Broker()
    a = Worker(tmp_path / "a", broker)
    topic = a.rt.topics.person_events.name
    try:
        await a.deliver(0, LOG[0])

        async def rebalance() -> None:
            a.rt.state.forget(topic, [0])
            a.rt.state.generation = 7
            await a.rt.state.ensure_recovered(topic, [0])

        voided = fenced == "before the unit's records"
        a.on_changelog = ("before" if voided else "after", rebalance)
        with pytest.raises(OwnershipChanged, match="changed hands during a unit"):
            await a.deliver(1, LOG[1])
        assert a.rt.state.skipped_local_writes == 1
        before = a.table(DEDUP, "p0") or {}
        if voided:
            assert event(2, "", "")["id"] not in before, "nothing of the void unit is local"
        else:
            assert event(2, "", "")["id"] in before, "recovery applied the unit it read whole"
        for offset in (1, 2, 3):  # offset 1 comes again: it was never acknowledged
            await a.deliver(offset, LOG[offset])
        last = check_changes(broker.changes)
        assert last == {("p0", SEGMENT): "entered", ("p1", SEGMENT): "entered"}
        check_final(a)
        # what the changelog holds is what this worker holds: a new owner recovers the same
        c = Worker(tmp_path / "c", broker)
        try:
            await c.rt.state.ensure_recovered(topic, [0])
            # the abandoned unit's records past the fence are dropped by every reader
            assert (c.rt.state.void_records > 0) == voided
            for table in (HISTORY, DEDUP, MEMBERSHIP):
                for person in ("p0", "p1"):
                    assert c.table(table, person) == a.table(table, person), (table, person)
        finally:
            c.close()
    finally:
        a.close()
