"""A unit built on the agent's previous unit while that one commits (``agents.batches.consume``):
on a real RocksDB, its reads (point, range both ways, a table partition's pending writes) see the
base's writes and deletes under its own, as they will be once the base is written; and the state
manager commits it only once its base was committed."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

import pytest

from app.producer import BrokerUnavailable
from tables.changelog import data_key
from tables.records import OutRecord
from tables.state import OwnershipChanged, StateManager
from tables.store import open_database
from tables.unit import Table, TableSpec, UnitOfWork
from tests.store.test_unit_ranges import write_at_random


def test_reads_see_the_base_under_the_unit_and_stored_state_under_both(tmp_path: Path) -> None:
    db = open_database(tmp_path / "db")
    table = Table(TableSpec("history", "src", "cl"), db)
    stored = {f"p\x1f{n:03d}": n for n in range(0, 40, 2)}
    stored["q\x1f000"] = -1
    table.store(0).write(stored, None)
    base = UnitOfWork({"history": table}, {})
    unit = UnitOfWork({"history": table}, {}, base)
    rng = random.Random(11)
    model = {k: v for k, v in stored.items() if k.startswith("p")}
    for step in range(120):
        writer = base if step < 60 else unit  # the base is finished before the unit begins
        write_at_random(writer, model, rng, "p")
        if writer is unit:
            start, stop = sorted(f"p\x1f{rng.randrange(46):03d}" for _ in range(2))
            expected = sorted((k, v) for k, v in model.items() if start <= k < stop)
            assert list(unit.range("history", 0, start, stop)) == expected
            assert list(unit.range("history", 0, start, stop, reverse=True)) == expected[::-1]
            probe = f"p\x1f{rng.randrange(45):03d}"
            assert unit.get("history", 0, probe) == model.get(probe)
    assert list(unit.range("history", 0, "p\x1f", "p\x20")) == sorted(model.items())
    pending = unit.pending_items("history", 0)
    assert {k: v for k, v in pending.items() if v is not None} == {
        k: v for k, v in model.items() if k in pending}
    assert all(k not in model for k, v in pending.items() if v is None)
    # another group is untouched, and nothing reached the store
    assert list(unit.range("history", 0, "q\x1f", "q\x20")) == [("q\x1f000", -1)]
    assert dict(table.store(0).items()) == stored
    db.close()


def test_a_deletion_in_the_base_hides_the_stored_key_until_the_base_is_written(
        tmp_path: Path) -> None:
    db = open_database(tmp_path / "db")
    table = Table(TableSpec("profiles", "src", "cl"), db)
    table.store(0).write({"ann": {"plan": "pro"}, "bob": {"plan": "free"}}, None)
    base = UnitOfWork({"profiles": table}, {})
    base.delete("profiles", 0, "ann")
    base.put("profiles", 0, "cy", {"plan": "pro"})
    unit = UnitOfWork({"profiles": table}, {}, base)
    unit.put("profiles", 0, "bob", {"plan": "pro"})
    assert unit.get("profiles", 0, "ann") is None
    assert unit.get("profiles", 0, "cy") == {"plan": "pro"}
    assert unit.pending_items("profiles", 0) == {"ann": None, "cy": {"plan": "pro"},
                                                 "bob": {"plan": "pro"}}
    db.close()


class Acknowledging:
    """The producer a state manager sends through: acknowledges everything, in order."""

    def __init__(self) -> None:
        self.sent: list[OutRecord] = []

    async def send_all(self, records: Sequence[OutRecord]) -> list[int]:
        offsets = list(range(len(self.sent), len(self.sent) + len(records)))
        self.sent.extend(records)
        return offsets


def manager(tmp_path: Path, producer: Any) -> StateManager:
    state = StateManager([TableSpec("profiles", "src", "cl")], tmp_path / "state", producer,
                         "127.0.0.1:1")
    state._recovered.add(("src", 0))
    state._epochs[("cl", 0)] = 1
    return state


async def test_a_unit_is_committed_only_after_its_base(tmp_path: Path) -> None:
    producer = Acknowledging()
    state = manager(tmp_path, producer)
    base = state.begin()
    base.put("profiles", 0, "ann", {"plan": "pro"})
    unit = state.begin(base)
    unit.put("profiles", 0, "bob", {"plan": "free"})
    assert unit.get("profiles", 0, "ann") == {"plan": "pro"}
    with pytest.raises(OwnershipChanged):
        await state.commit(unit)  # its base was never committed: built on writes that may vanish
    assert not producer.sent and state.tables["profiles"].get(0, "bob") is None
    await state.commit(base)
    assert base.committed
    retry = state.begin(base)  # (the agent drops a refused unit; its inputs are prepared again)
    retry.put("profiles", 0, "bob", {"plan": "free"})
    await state.commit(retry)
    assert retry.committed and retry.base is None, "the base is let go once it is written"
    profiles = state.tables["profiles"]
    assert (profiles.get(0, "ann"), profiles.get(0, "bob")) == ({"plan": "pro"}, {"plan": "free"})
    state.close()


class Gated(Acknowledging):
    """Acknowledges in order, except that a send to a topic in ``held`` waits (after it is
    written) until that topic's event is set, and the first send to a topic in ``failing`` is
    not acknowledged (nor written)."""

    def __init__(self, held: tuple[str, ...] = (), failing: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.release = {topic: asyncio.Event() for topic in held}
        self.failing = set(failing)

    async def send_all(self, records: Sequence[OutRecord]) -> list[int]:
        topic = records[0].topic
        if topic in self.failing:
            self.failing.discard(topic)
            raise BrokerUnavailable("not acknowledged")
        offsets = await super().send_all(records)
        if topic in self.release:
            await self.release[topic].wait()
        return offsets

    def values(self, topic: str) -> list[bytes | None]:
        return [r.value for r in self.sent if r.topic == topic]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def with_output(unit: UnitOfWork, person: str, plan: str, value: bytes) -> UnitOfWork:
    unit.put("profiles", 0, person, {"plan": plan})
    unit.send(OutRecord("out", 0, person.encode(), value))
    return unit


async def on_a_committing_base(state: StateManager) -> tuple[UnitOfWork, "asyncio.Future[None]"]:
    """ann's unit committing (as far as the producer lets it), and bob's unit on it, published:
    returns bob's unit and the base's commit."""
    base = with_output(state.begin(), "ann", "pro", b"base")
    committing = asyncio.ensure_future(state.commit(base))
    await settle()
    unit = with_output(state.begin(base), "bob", "free", b"unit")
    state.publish(unit)
    await settle()
    return unit, committing


async def test_a_units_outputs_go_out_while_its_base_commits_and_only_once(
        tmp_path: Path) -> None:
    producer = Gated(held=("cl",))
    state = manager(tmp_path, producer)
    base = with_output(state.begin(), "ann", "pro", b"base")
    committing = asyncio.ensure_future(state.commit(base))
    while not producer.values("cl"):
        await asyncio.sleep(0)  # the base's outputs are acknowledged; its changelog is held
    unit = with_output(state.begin(base), "bob", "free", b"unit")
    state.publish(unit)
    await settle()
    assert producer.values("out") == [b"base", b"unit"]
    assert not committing.done(), "the unit's outputs did not wait for the base's changelog"
    producer.release["cl"].set()
    await committing
    await state.commit(unit)
    # sent once (the commit waited for the publish), and before the unit's changelog records
    assert producer.values("out") == [b"base", b"unit"]
    keys = [r.key for r in producer.sent]
    assert keys.index(b"bob") < keys.index(data_key("profiles", "bob"))
    assert unit.committed and state.tables["profiles"].get(0, "bob") == {"plan": "free"}
    state.close()


async def test_a_units_outputs_wait_for_its_bases_outputs(tmp_path: Path) -> None:
    producer = Gated(held=("out",))
    state = manager(tmp_path, producer)
    unit, committing = await on_a_committing_base(state)
    assert producer.values("out") == [b"base"], "sent before the base's were acknowledged"
    producer.release["out"].set()
    await committing
    await state.commit(unit)
    assert producer.values("out") == [b"base", b"unit"]
    state.close()


async def commit_after_a_refusal(state: StateManager, unit: UnitOfWork,
                                 meanwhile: Callable[[], Awaitable[None]]) -> None:
    """The unit's first commit is refused; ``meanwhile`` runs; then what ``Runtime.commit``
    does after a failure: the same unit again."""
    with pytest.raises(BrokerUnavailable):
        await state.commit(unit)
    await meanwhile()
    await state.commit(unit)


async def test_a_retried_commit_does_not_send_acknowledged_outputs_again(
        tmp_path: Path) -> None:
    # The base's changelog is refused once; meanwhile the unit on it published. Sending the
    # base's outputs again would put a stale record after the unit's: in a compacted topic, the
    # last value of its key.
    producer = Gated(failing=("cl",))
    state = manager(tmp_path, producer)
    base = with_output(state.begin(), "ann", "pro", b"base")
    unit = with_output(state.begin(base), "ann", "free", b"unit")

    async def publish_the_unit() -> None:
        state.publish(unit)
        await settle()

    await commit_after_a_refusal(state, base, publish_the_unit)
    await state.commit(unit)
    assert producer.values("out") == [b"base", b"unit"]
    assert state.tables["profiles"].get(0, "ann") == {"plan": "free"}
    state.close()


async def test_a_failed_publish_fails_the_commit_and_its_retry_sends_the_outputs_again(
        tmp_path: Path) -> None:
    producer = Gated(failing=("out",))
    state = manager(tmp_path, producer)
    unit = with_output(state.begin(), "ann", "pro", b"unit")
    state.publish(unit)

    async def nothing_was_sent() -> None:
        assert not producer.sent and not unit.committed

    await commit_after_a_refusal(state, unit, nothing_was_sent)
    assert producer.values("out") == [b"unit"]
    assert unit.committed and state.tables["profiles"].get(0, "ann") == {"plan": "pro"}
    state.close()


async def test_a_dropped_unit_stops_waiting_to_publish(tmp_path: Path) -> None:
    producer = Gated()
    state = manager(tmp_path, producer)
    base = with_output(state.begin(state.begin()), "ann", "pro", b"base")
    with pytest.raises(OwnershipChanged):
        await state.commit(base)  # built on a unit never committed: its outputs never go out
    unit = with_output(state.begin(base), "bob", "free", b"unit")
    state.publish(unit)
    await settle()
    state.drop(unit)  # what the agent does with a unit built on a failed commit
    await settle()
    assert unit.publishing is not None and unit.publishing.cancelled()
    assert not producer.sent
    state.close()


async def test_a_read_waits_for_the_state_behind_outputs_already_out(tmp_path: Path) -> None:
    # The base's outputs are acknowledged (a consumer may see them) while its changelog is held;
    # the unit on it published too. A read then waits until both are written, and no longer.
    producer = Gated(held=("cl",))
    state = manager(tmp_path, producer)
    assert await state.written(0.01), "nothing out: nothing to wait for"
    unit, committing = await on_a_committing_base(state)
    assert producer.values("out") == [b"base", b"unit"]
    assert not await state.written(0.05), "the records are out, their state is not written"
    reading = asyncio.ensure_future(state.written(5))
    producer.release["cl"].set()
    await committing
    await settle()
    assert not reading.done(), "the unit's state is not written yet"
    await state.commit(unit)
    assert await reading
    profiles = state.tables["profiles"]
    assert (profiles.get(0, "ann"), profiles.get(0, "bob")) == ({"plan": "pro"}, {"plan": "free"})
    assert await state.written(0.01), "everything out is written"
    state.close()


async def test_a_read_does_not_wait_for_a_unit_that_will_never_be_written(
        tmp_path: Path) -> None:
    producer = Gated(held=("out",))
    state = manager(tmp_path, producer)
    unit, committing = await on_a_committing_base(state)
    reading = asyncio.ensure_future(state.written(5))
    state.drop(unit)  # its base failed: its inputs come again
    await settle()
    assert not reading.done(), "the base is still being written"
    producer.release["out"].set()
    await committing
    assert await reading
    state.close()
