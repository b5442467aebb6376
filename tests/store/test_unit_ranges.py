"""UnitOfWork.range on a real RocksDB: stored keys and the unit's pending writes, merged in key
order (both directions), pending writes and deletes winning, other key groups never mixed in."""

from __future__ import annotations

import random
from pathlib import Path

from tables.unit import Table, TableSpec, UnitOfWork
from tables.store import open_database
from tests.support.rows_read import RowsRead


def write_at_random(unit: UnitOfWork, model: dict[str, int], rng: random.Random,
                    group: str) -> None:
    """One put (70%) or delete of a random key of ``group`` in ``history``, and in ``model``."""
    key = f"{group}\x1f{rng.randrange(45):03d}"
    if rng.random() < 0.3:
        unit.delete("history", 0, key)
        model.pop(key, None)
    else:
        value = rng.randrange(1000)
        unit.put("history", 0, key, value)
        model[key] = value


def test_range_merges_pending_writes_with_stored_keys(tmp_path: Path) -> None:
    db = open_database(tmp_path / "db")
    table = Table(TableSpec("history", "src", "cl"), db)
    stored = {f"p1\x1f{n:03d}": n for n in range(0, 40, 2)}
    stored.update({f"p2\x1f{n:03d}": -n for n in range(10)})
    table.store(0).write(stored, None)
    unit = UnitOfWork({"history": table}, {})
    rng = random.Random(7)
    model = {k: v for k, v in stored.items() if k.startswith("p1")}
    for _ in range(60):
        write_at_random(unit, model, rng, "p1")
        start, stop = sorted(f"p1\x1f{rng.randrange(46):03d}" for _ in range(2))
        expected = sorted((k, v) for k, v in model.items() if start <= k < stop)
        assert list(unit.range("history", 0, start, stop)) == expected
        assert list(unit.range("history", 0, start, stop, reverse=True)) == expected[::-1]
    whole = list(unit.range("history", 0, "p1\x1f", "p1\x20"))
    assert whole == sorted(model.items())
    # another person's keys are neither read nor changed
    assert list(unit.range("history", 0, "p2\x1f", "p2\x20")) == sorted(
        (k, v) for k, v in stored.items() if k.startswith("p2"))
    # nothing reached the store before a commit
    assert dict(table.store(0).items()) == stored
    db.close()


def test_reverse_range_stops_at_the_partition_and_group_edges(tmp_path: Path) -> None:
    db = open_database(tmp_path / "db")
    table = Table(TableSpec("history", "src", "cl"), db)
    table.store(0).write({"a\x1f1": 1, "a\x1f2": 2, "b\x1f1": 3}, None)
    table.store(1).write({"a\x1f0": 9}, None)
    assert list(table.store(0).range("a\x1f", "a\x20", reverse=True)) == [("a\x1f2", 2),
                                                                          ("a\x1f1", 1)]
    assert list(table.store(0).range("b\x1f", "b\x20", reverse=True)) == [("b\x1f1", 3)]
    assert list(table.store(1).range("b\x1f", "b\x20", reverse=True)) == []
    db.close()


def test_a_range_with_a_pending_write_reads_the_store_only_as_far_as_it_is_read(
        tmp_path: Path) -> None:
    """A person's whole history is one range; the unit that stores an event has a pending key
    in it. Taking the first items must not read the rest of the stored range (under mypyc a
    generator expression is a list: a merge over one read 5,000 events per stored event)."""
    db = open_database(tmp_path / "db")
    table = Table(TableSpec("history", "src", "cl"), db)
    store = table.store(0)
    store.write({f"p\x1f{n:05d}": n for n in range(0, 10_000, 2)}, None)
    read = RowsRead(store)
    unit = UnitOfWork({"history": table}, {})
    unit.put("history", 0, "p\x1f00003", "new")
    unit.delete("history", 0, "p\x1f00000")
    first = unit.range("history", 0, "p\x1f", "p\x20")
    assert [next(first) for _ in range(3)] == [("p\x1f00002", 2), ("p\x1f00003", "new"),
                                               ("p\x1f00004", 4)]
    assert read.count <= 4
    read.count = 0
    newest = unit.range("history", 0, "p\x1f", "p\x20", reverse=True)
    assert [next(newest) for _ in range(2)] == [("p\x1f09998", 9998), ("p\x1f09996", 9996)]
    assert read.count <= 3
    db.close()
