"""What RocksDB's write-ahead log costs recovery's writes: the same units written to the
worker's database (``tables.store.open_database``'s options) with the log and without it (then
flushed, as ``StateManager._replay`` does), alternating.

    .venv/bin/python -m bench.unlogged_writes [--records 800000] [--unit 5000] [--rounds 3]

Each unit is one ``WriteBatch`` of ``--unit`` puts of history-like keys and ~130-byte values:
about what a recovery after the 200,000-item segments run writes (~840,000 changelog records).
Reported per configuration: the process's CPU seconds and wall seconds, each round. Saves
``bench/results/unlogged-writes-*.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from rocksdict import WriteBatch, WriteOptions

from tables.store import open_database

VALUE = (b'{"id":"01JABCDEFGHJKMNPQRSTVWXYZ0","name":"viewed","type":"event","data":{"n":1},'
         b'"timestamp":1700000000,"processed_at":1700000001.5}')


def write_units(path: Path, keys: list[bytes], unit: int, unlogged: bool) -> dict[str, float]:
    db = open_database(path)
    options = WriteOptions()
    options.disable_wal = unlogged
    cpu, wall = time.process_time(), time.perf_counter()
    for start in range(0, len(keys), unit):
        batch = WriteBatch(raw_mode=True)
        for key in keys[start:start + unit]:
            batch.put(key, VALUE)
        db.write(batch, options)
    if unlogged:
        db.flush(True)
    measured = {"cpu_s": round(time.process_time() - cpu, 3),
                "wall_s": round(time.perf_counter() - wall, 3)}
    db.close()
    return measured


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=800_000)
    parser.add_argument("--unit", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    rng = random.Random(1)
    keys = [f"history\x1fperson-{rng.randrange(100_000)}\x1f{rng.random()}".encode()
            for _ in range(args.records)]
    rounds: list[dict[str, Any]] = []
    for n in range(args.rounds):
        for unlogged in (False, True):
            with tempfile.TemporaryDirectory(prefix="eventide-wal-") as tmp:
                measured = write_units(Path(tmp) / "db", keys, args.unit, unlogged)
            rounds.append({"round": n + 1, "log": "off, flushed at the end" if unlogged
                           else "on", **measured})
            print(f"round {n + 1}, log {rounds[-1]['log']}: CPU {measured['cpu_s']:.2f} s, "
                  f"wall {measured['wall_s']:.2f} s", flush=True)
    out = args.out or Path("bench/results") / time.strftime("unlogged-writes-%Y%m%d-%H%M%S.json")
    out.write_text(json.dumps({"records": args.records, "unit": args.unit, "rounds": rounds},
                              indent=1) + "\n")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
