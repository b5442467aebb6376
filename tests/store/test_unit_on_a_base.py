"""A unit built on the agent's previous unit while that one commits (``agents.batches.consume``):
on a real RocksDB, its reads (point, range both ways, a table partition's pending writes) see the
base's writes and deletes under its own, as they will be once the base is written; and the state
manager commits it only once its base was committed."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any, Sequence

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
    """Acknowledges in order, but holds a send of changelog records until ``release`` is set,
    and fails the first send of outputs when ``fail_outputs`` says so."""

    def __init__(self, fail_outputs: bool = False) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.fail_outputs = fail_outputs

    async def send_all(self, records: Sequence[OutRecord]) -> list[int]:
        if self.fail_outputs and records[0].topic == "out":
            self.fail_outputs = False
            raise BrokerUnavailable("not acknowledged")
        offsets = await super().send_all(records)
        if records[0].topic == "cl":
            await self.release.wait()
        return offsets


async def test_a_units_outputs_go_out_while_its_base_commits_and_only_once(
        tmp_path: Path) -> None:
    producer = Gated()
    state = manager(tmp_path, producer)
    base = state.begin()
    base.put("profiles", 0, "ann", {"plan": "pro"})
    base.send(OutRecord("out", 0, b"ann", b"base"))
    committing = asyncio.ensure_future(state.commit(base))
    while not any(r.topic == "cl" for r in producer.sent):
        await asyncio.sleep(0)  # the base's outputs are acknowledged; its changelog is held
    unit = state.begin(base)
    unit.put("profiles", 0, "bob", {"plan": "free"})
    unit.send(OutRecord("out", 0, b"bob", b"unit"))
    state.publish(unit)
    for _ in range(3):
        await asyncio.sleep(0)
    assert [r.value for r in producer.sent if r.topic == "out"] == [b"base", b"unit"]
    assert not committing.done(), "the unit's outputs did not wait for the base's changelog"
    producer.release.set()
    await committing
    await state.commit(unit)
    # sent once (the commit waited for the publish), and before the unit's changelog records
    topics = [(r.topic, r.value) for r in producer.sent]
    assert topics.count(("out", b"unit")) == 1
    keys = [r.key for r in producer.sent]
    assert topics.index(("out", b"unit")) < keys.index(data_key("profiles", "bob"))
    assert unit.committed and state.tables["profiles"].get(0, "bob") == {"plan": "free"}
    state.close()


async def test_a_failed_publish_fails_the_commit_and_its_retry_sends_the_outputs_again(
        tmp_path: Path) -> None:
    producer = Gated(fail_outputs=True)
    producer.release.set()
    state = manager(tmp_path, producer)
    unit = state.begin()
    unit.put("profiles", 0, "ann", {"plan": "pro"})
    unit.send(OutRecord("out", 0, b"ann", b"unit"))
    state.publish(unit)
    with pytest.raises(BrokerUnavailable):
        await state.commit(unit)
    assert not producer.sent and not unit.committed
    await state.commit(unit)  # what Runtime.commit does after a failure: the same unit again
    assert [r.value for r in producer.sent if r.topic == "out"] == [b"unit"]
    assert unit.committed and state.tables["profiles"].get(0, "ann") == {"plan": "pro"}
    state.close()
