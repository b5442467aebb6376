"""An event costs a person with a long history no more reads than one with a short history: a
unit storing it, trimming the history at its cap, remembering its id, pruning expired ids and
reading the name's newest events for a segment, on real RocksDB tables through the unit of
work (compiled in the suite). Rows read are counted at the stores, whatever the history's size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.core.history import Retention
from app.person_store import PersonEvents, PruneSchedule
from app.topics import ACTIVITY_LOG, DEDUP, HISTORY, HISTORY_BY_NAME, HISTORY_SIZE
from tables.store import open_database
from tables.unit import Table, TableSpec, UnitOfWork
from tests.support.rows_read import RowsRead

NOW_S = 1_800_000_000
TABLES = (HISTORY, HISTORY_BY_NAME, ACTIVITY_LOG, DEDUP, HISTORY_SIZE)


def activity(n: int) -> dict[str, Any]:
    return {"id": f"e{n:06d}", "name": "viewed", "type": "event", "timestamp": NOW_S - 86_400 + n,
            "processed_at": NOW_S - 86_400 + n, "data": {"page": "pricing" if n % 3 else "home"}}


def commit(unit: UnitOfWork, tables: dict[str, Table]) -> None:
    for (table, partition), changes in unit.changes.items():
        tables[table].store(partition).write(changes, None)


def rows_read_for_one_event(tmp_path: Path, stored: int) -> int:
    db = open_database(tmp_path / f"db-{stored}")
    tables = {name: Table(TableSpec(name, "src", f"cl-{name}"), db) for name in TABLES}
    retention = Retention(max_age_s=0, max_events=stored)
    setup = UnitOfWork(tables, {})
    person = PersonEvents(setup, 0, "heavy")
    for n in range(stored):
        person.add(activity(n), now_s=NOW_S, retention=retention)
        person.remember(f"e{n:06d}", [NOW_S * 1000 + 3_600_000 + n, 0, n, 0], NOW_S * 1000)
    commit(setup, tables)

    read = RowsRead(*(table.store(0) for table in tables.values()))
    unit = UnitOfWork(tables, {})
    person = PersonEvents(unit, 0, "heavy", PruneSchedule())
    new = activity(stored)
    assert person.add(new, now_s=NOW_S, retention=retention)  # at the cap: the oldest goes
    person.remember(new["id"], [NOW_S * 1000 + 7_200_000, 0, stored, 0], NOW_S * 1000)
    newest = person.newest("viewed", NOW_S - 30 * 86_400)
    assert [next(newest)["id"] for _ in range(3)] == [f"e{n:06d}" for n in
                                                      (stored, stored - 1, stored - 2)]
    assert next(person.named("viewed", None))["id"] == "e000001"
    person.finish()
    assert person.size() == stored
    db.close()
    return read.count


@pytest.mark.parametrize("stored", [2_000, 5_000])
def test_an_event_reads_as_few_rows_for_a_long_history_as_for_a_short_one(
        tmp_path: Path, stored: int) -> None:
    short = rows_read_for_one_event(tmp_path, 40)
    assert short <= 12
    assert rows_read_for_one_event(tmp_path, stored) == short
