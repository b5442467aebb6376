"""Recovery writes local state without RocksDB's write-ahead log (``StateManager._replay``).
A worker killed part-way through a recovery keeps some whole number of units, never a part of
one, and its next start recovers the rest; a worker killed right after a recovery has it all,
though only the fence that followed it was written with the log.

Real broker, real RocksDB, real processes killed by SIGKILL (tests/support/recover_and_die.py).
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from app.broker import ensure_topics
from app.producer import OutRecord, Producer
from app.topics import TopicSpec
from tables.changelog import UNIT_KEY, data_key, epoch_header
from tables.state import StateManager
from tables.unit import TableSpec
from tests.support.harness import REPO, Deployment

pytestmark = pytest.mark.integration

TABLES = ("history", "membership")
UNITS = 200
#: Where the first run dies: past many memtable flushes (~12 KB a unit, 64 KiB memtables).
KILLED_AFTER = 150

State = dict[tuple[str, str], Any]


async def write_changelog(deployment: Deployment, changelog: str) -> tuple[list[int], list[State]]:
    """``UNITS`` units of puts and deletes over a few hundred keys (so later units overwrite
    and delete what earlier ones wrote). Returns each unit's end offset and the state after it."""
    await ensure_topics(deployment.bootstrap, [TopicSpec(changelog, 1, "<table>\x1f<key>",
                                                         compacted=True)])
    rng = random.Random(7)
    state: State = {}
    after: list[State] = []
    records: list[OutRecord] = []
    header = epoch_header(1)
    for unit in range(UNITS):
        for n in range(50):
            table, key = rng.choice(TABLES), f"person-{rng.randrange(300)}"
            if (table, key) in state and rng.random() < 0.15:
                value = None
                del state[(table, key)]
            else:
                value = {"unit": unit, "n": n, "pad": "x" * 160}
                state[(table, key)] = value
            records.append(OutRecord(changelog, 0, data_key(table, key),
                                     None if value is None else orjson.dumps(value), header))
        records.append(OutRecord(changelog, 0, UNIT_KEY, b"", header))
        after.append(dict(state))
    producer = Producer(deployment.settings)
    await producer.start()
    try:
        offsets = await producer.send_all(records)
    finally:
        await producer.stop()
    ends = [offset for record, offset in zip(records, offsets) if record.key == UNIT_KEY]
    return ends, after


def recover_and_die(deployment: Deployment, data_dir: Path, source: str, changelog: str,
                    after_units: int) -> None:
    process = subprocess.run(
        [sys.executable, "-m", "tests.support.recover_and_die", "--data-dir", str(data_dir),
         "--source", source, "--changelog", changelog, "--tables", ",".join(TABLES),
         "--after-units", str(after_units)],
        cwd=REPO, env=deployment.env(), capture_output=True, text=True, timeout=120)
    assert process.returncode == -9, process.stderr[-3000:]


def local_state(deployment: Deployment, data_dir: Path, source: str,
                changelog: str) -> tuple[int, State]:
    """The position the local copy has applied the changelog to, and what it holds."""
    state = StateManager([TableSpec(name, source, changelog) for name in TABLES], data_dir,
                         None, deployment.bootstrap)  # type: ignore[arg-type]  # (reads only)
    try:
        held = {(name, key): value for name in TABLES
                for key, value in state.tables[name].store(0).items()}
        return state.position((changelog, 0)).applied_to, held
    finally:
        state.close()


async def test_a_recovery_killed_midway_keeps_whole_units_and_the_next_start_has_them_all(
        deployment: Deployment, tmp_path: Path) -> None:
    source = f"{deployment.settings.topic_prefix}.crash-source"
    changelog = f"{deployment.settings.topic_prefix}.crash-changelog"
    ends, after = await write_changelog(deployment, changelog)
    data_dir = tmp_path / "state"

    recover_and_die(deployment, data_dir, source, changelog, after_units=KILLED_AFTER)
    applied_to, held = local_state(deployment, data_dir, source, changelog)
    assert applied_to in ends, f"position {applied_to} is not the end of a unit"
    kept = ends.index(applied_to) + 1
    # Memtables reached SST files before the kill, and what was written after the last
    # flush (the log skipped) is gone: the state after some earlier whole unit.
    assert 0 < kept < KILLED_AFTER, kept
    assert held == after[kept - 1]

    # The next start recovers the rest, fences, and dies at once: the fence's position went
    # through the log, recovery's writes did not, so they must have been flushed before it.
    recover_and_die(deployment, data_dir, source, changelog, after_units=-1)
    applied_to, held = local_state(deployment, data_dir, source, changelog)
    assert applied_to > ends[-1], "the fence after the recovery is the position"
    assert held == after[-1]
