"""Recover one changelog partition into a data dir with the product's recovery
(``StateManager.ensure_recovered``: replay, flush, fence), then die by SIGKILL: after
``--after-units`` units are applied, or (``-1``) once the recovery and its fence are done.

Run as a process by tests/integration/test_recovery_crash.py, configured by the deployment's
``EVENTIDE_*`` environment. Its RocksDB gets memtables of ``--write-buffer`` bytes, so that
recovery's writes reach SST files in many flushes before the kill, as a long recovery's do.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from pathlib import Path

from rocksdict import Options

import tables.store
from app.producer import Producer
from app.settings import Settings
from tables.changelog import Change, Position
from tables.state import StateManager
from tables.unit import ChangelogPartition, TableSpec


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


async def recover(data_dir: Path, source: str, changelog: str, names: list[str],
                  after_units: int) -> None:
    settings = Settings.from_env()
    producer = Producer(settings)
    await producer.start()
    state = StateManager([TableSpec(name, source, changelog) for name in names], data_dir,
                         producer, settings.bootstrap_servers)
    if after_units >= 0:
        apply, applied = state._apply_unlogged, [0]

        def apply_then_die(cp: ChangelogPartition, changes: list[Change],
                           position: Position) -> None:
            apply(cp, changes, position)
            applied[0] += 1
            if applied[0] == after_units:
                die()

        state._apply_unlogged = apply_then_die  # type: ignore[method-assign]
    await state.ensure_recovered(source, [0])
    die()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--changelog", required=True)
    parser.add_argument("--tables", required=True, help="comma-separated table names")
    parser.add_argument("--after-units", type=int, required=True)
    parser.add_argument("--write-buffer", type=int, default=64 * 1024)
    args = parser.parse_args()
    options = tables.store._options

    def small_memtables() -> Options:
        small = options()
        small.set_write_buffer_size(args.write_buffer)
        return small

    tables.store._options = small_memtables
    asyncio.run(recover(args.data_dir, args.source, args.changelog, args.tables.split(","),
                        args.after_units))


if __name__ == "__main__":
    main()
