"""How a page of the workspace Activity Log costs as the stored events grow (issue 13).

    .venv/bin/python -m bench.activity_log [--events 10000000] [--people 200000] [--partitions 8]

Writes ``--events`` events straight into a real RocksDB the way a worker stores them (``history``
plus its local ``activity_log`` index, derived as a worker's recovery derives it), in
steps (100k, 1M, then ``--events``), and after each step times the pages a user asks for: the
newest 50, the 50 after a cursor in the middle of the log, the newest 50 of one event name, and
the newest 50 of a type that is 1% of the events (a filtered scan, capped per request). Each page
is read from every partition, as one worker owning them all would (``identified_share``). Saves
``bench/results/activity-log-*.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from rocksdict import WriteBatch

from app.queries.activity_log import LogQuery, identified_share
from app.person_store import log_entries, time_key
from app.topics import ACTIVITY_LOG, HISTORY
from tables.unit import Table, TableSpec
from tables.store import open_database

NAMES = [f"event_{n}" for n in range(20)]


def activity(n: int, people: int) -> tuple[str, dict[str, Any]]:
    person = f"person-{n % people}"
    return person, {"id": f"01J{n:023d}", "name": NAMES[n % len(NAMES)],
                    "type": "page" if n % 100 == 0 else "event", "data": {"n": n},
                    "timestamp": 1_700_000_000 + n // 10, "processed_at": 1_700_000_000 + n // 5}


def fill(tables: dict[str, Table], start: int, stop: int, people: int, partitions: int) -> None:
    db = tables[HISTORY]._db
    for first in range(start, stop, 50_000):
        batch = WriteBatch(raw_mode=True)
        for n in range(first, min(stop, first + 50_000)):
            person, event = activity(n, people)
            partition = n % partitions
            key = time_key(person, event)
            raw = orjson.dumps(event)
            tables[HISTORY].store(partition).stage_raw(batch, key, raw)
            for index_key, pointer in log_entries(person, event):
                tables[ACTIVITY_LOG].store(partition).stage_raw(batch, index_key,
                                                               orjson.dumps(pointer))
        db.write(batch)


def timed(tables: dict[str, Table], partitions: list[int], query: LogQuery,
          rounds: int = 5) -> dict[str, float]:
    times, rows = [], 0
    for _ in range(rounds):
        started = time.perf_counter()
        share = identified_share(tables, partitions, query)
        times.append(time.perf_counter() - started)
        rows = len(share.entries)
    return {"median_ms": round(1000 * statistics.median(times), 2), "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.activity_log",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--people", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=8)
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="eventide-activity-log-bench-"))
    db = open_database(root / "tables")
    tables = {name: Table(TableSpec(name, "src", "cl"), db) for name in (HISTORY, ACTIVITY_LOG)}
    partitions = list(range(args.partitions))
    steps = sorted({s for s in (100_000, 1_000_000, args.events) if s <= args.events})
    results, stored = [], 0
    try:
        for step in steps:
            started = time.perf_counter()
            fill(tables, stored, step, args.people, args.partitions)
            stored = step
            middle = activity(step // 2, args.people)
            cursor = f"{middle[1]['processed_at']:012d}\x1f{middle[0]}\x1f{middle[1]['id']}"
            pages = {
                "newest_50": timed(tables, partitions, LogQuery(limit=50)),
                "after_a_cursor_mid_log": timed(tables, partitions,
                                                LogQuery(limit=50, before=cursor)),
                "one_name": timed(tables, partitions, LogQuery(limit=50, name="event_7")),
                "type_1_percent": timed(tables, partitions, LogQuery(limit=50, type="page")),
            }
            result = {"events": step, "fill_s": round(time.perf_counter() - started, 1),
                      "pages": pages}
            print(json.dumps(result), flush=True)
            results.append(result)
    finally:
        db.close()
        shutil.rmtree(root, ignore_errors=True)
    out = Path("bench/results") / f"activity-log-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"people": args.people, "partitions": args.partitions,
                               "steps": results}, indent=1))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
