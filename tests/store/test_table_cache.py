"""The decoded values a worker keeps of the tables a unit point-reads per person
(``tables.unit.Table``, ``tables.value_cache``): on a real RocksDB, whatever writes the database
(a unit's commit, a changelog applied by recovery or a standby, a revocation, a unit whose
partition changed hands), a unit's read gives what the database holds, the cache stays within
its byte budget, and a returning person's values are read without the database."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from tables.changelog import Position
from tables.state import OwnershipChanged, StateManager
from tables.unit import TableSpec
from tables.value_cache import DECODED_PER_JSON_BYTE, ENTRY_BYTES
from tests.store.test_unit_on_a_base import Acknowledging

SPECS = [TableSpec("profiles", "src", "cl"), TableSpec("history", "src", "cl")]
#: Room for about six of the test's values: fewer than the keys written, so entries are evicted.
BUDGET = 6 * (ENTRY_BYTES + DECODED_PER_JSON_BYTE * 16)


def cached_manager(tmp_path: Path, budget: int = BUDGET) -> StateManager:
    state = StateManager(SPECS, tmp_path / "state", Acknowledging(), "127.0.0.1:1",
                         cached=["profiles"], cache_bytes=budget)
    for partition in (0, 1):
        state._recovered.add(("src", partition))
        state._epochs[("cl", partition)] = 1
    return state


def stored(state: StateManager, partition: int, key: str) -> Any:
    """What the database holds, read past the cache."""
    return state.tables["profiles"].store(partition).get(key)


async def test_reads_agree_with_the_database_whatever_writes_it(tmp_path: Path) -> None:
    state = cached_manager(tmp_path)
    cache = state.cache
    rng = random.Random(7)
    keys = [f"p{n}" for n in range(12)]  # twice the cache's bound: entries are evicted
    position = 100
    most = 0  # the most entries held at once
    for step in range(400):
        partition = rng.randrange(2)
        action = rng.random()
        if action < 0.45:  # a unit commits
            unit = state.begin()
            for key in rng.sample(keys, 3):
                unit.get("profiles", partition, key)  # reads fill the cache too
                if rng.random() < 0.2:
                    unit.delete("profiles", partition, key)
                else:
                    unit.put("profiles", partition, key, {"step": step})
            await state.commit(unit)
        elif action < 0.75:  # a changelog unit applied (recovery, or a standby following)
            position += 1
            changes = [("profiles", key, None if rng.random() < 0.2
                        else orjson.dumps({"changelog": step}))
                       for key in rng.sample(keys, 3)]
            state.apply_changes(("cl", partition), changes, Position(position, 1))
        elif action < 0.85:  # revoked, and assigned back
            state.forget("src", [partition])
            assert all(p != partition for (_, p, _), _ in cache.items()), "no memory held for it"
            state._epochs[("cl", partition)] = 1
        else:  # a unit whose partition changed hands while it committed
            unit = state.begin()
            unit.put("profiles", partition, rng.choice(keys), {"lost": step})
            state.forget("src", [partition])
            state._epochs[("cl", partition)] = 1
            with pytest.raises(OwnershipChanged):
                await state.commit(unit)
        for (_, p, key), value in cache.items():  # what the next reads would give
            assert value == stored(state, p, key), (step, p, key)
        assert cache.size_bytes <= BUDGET
        most = max(most, len(cache))
        assert cache.size_bytes == sum(
            ENTRY_BYTES + (0 if v is None else DECODED_PER_JSON_BYTE * len(orjson.dumps(v)))
            for _, v in cache.items())
        reader = state.begin()
        for p, key in [(rng.randrange(2), rng.choice(keys)) for _ in range(4)]:
            assert reader.get("profiles", p, key) == stored(state, p, key), (step, p, key)
    assert most >= 5, "the budget is used"
    state.close()


async def test_a_returning_person_is_read_without_the_database(tmp_path: Path) -> None:
    state = cached_manager(tmp_path)
    first = state.begin()
    first.put("profiles", 0, "ann", {"plan": "pro"})
    first.put("history", 0, "ann\x1f1", {"name": "signed_up"})
    await state.commit(first)
    later = state.begin()
    assert later.get("profiles", 0, "nobody") is None  # read once, then known absent
    # Values written under the cache's feet, straight into RocksDB (nothing in the product
    # does this): a read that still gives the old value did not go to the database.
    for table, key, value in [("profiles", "ann", {"plan": "changed"}),
                              ("profiles", "nobody", {"plan": "changed"}),
                              ("history", "ann\x1f1", {"name": "changed"})]:
        state.tables[table].store(0).write({key: value}, None)
    assert later.get("profiles", 0, "ann") == {"plan": "pro"}
    assert later.get("profiles", 0, "nobody") is None
    assert later.get("history", 0, "ann\x1f1") == {"name": "changed"}  # not a cached table
    assert (state.cache.hits, state.cache.misses) == (2, 1)  # (for /metrics)
    state.close()


async def test_only_a_units_reads_share_the_cached_value(tmp_path: Path) -> None:
    """The HTTP API's reads (``Table.get``) decode their own copy: nothing outside a unit can
    change a value the next unit reads."""
    state = cached_manager(tmp_path)
    unit = state.begin()
    unit.put("profiles", 0, "ann", {"plan": "pro"})
    await state.commit(unit)
    copy = state.tables["profiles"].get(0, "ann")
    copy["plan"] = "changed by a caller"
    assert state.begin().get("profiles", 0, "ann") == {"plan": "pro"}
    state.close()


async def test_without_a_budget_nothing_is_kept(tmp_path: Path) -> None:
    state = cached_manager(tmp_path, budget=0)
    unit = state.begin()
    unit.put("profiles", 0, "ann", {"plan": "pro"})
    await state.commit(unit)
    assert state.begin().get("profiles", 0, "ann") == {"plan": "pro"}
    assert not len(state.cache) and state.tables["profiles"].cache is None
    state.close()
