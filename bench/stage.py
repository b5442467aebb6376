"""The person stage in process: what eventide's own code costs per item, without Kafka.

    python -m bench.stage --job peers                 # the peers' job (bench.run --mode raw)
    python -m bench.stage --job segments              # 1,000 segments, 100k people, 5% identifies
    python -m bench.stage --job segments --identify-ratio 0

The workload's records go, a unit of work at a time, through ``process_people`` (prepare and
commit, on a real RocksDB) by way of the test suite's pipeline simulator
(``tests/agents/pipeline_sim.py``). Its producer acknowledges every record at once, and this
bench drops the records no stage reads back, so no broker, Kafka client or other process takes
any CPU: the figure is the person stage's and the commit's own cost per item, on one core.

What it is for: comparing two versions back to back without a broker's noise (alternate them,
several rounds each; ``--tree`` runs another checkout's code), and telling how much of a worker's
cost per item the Kafka client could be at most (``bench.run`` measures the whole worker). Each
run writes its figures to ``bench/results/stage-<time>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: Items per unit of work: what a worker's take holds when it drains a backlog of single-record
#: events (a fetch, up to EVENTIDE_UNIT_MAX_ITEMS), spread over the partitions.
UNIT_ITEMS = 1_000
PARTITIONS = 8


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.stage", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--job", choices=("peers", "segments"), default="peers")
    parser.add_argument("--events", type=int, default=50_000, help="items per round")
    parser.add_argument("--people", type=int, help="default: 20,000 (peers), 100,000 (segments)")
    parser.add_argument("--segments", type=int, default=1_000, help="definitions (segments job)")
    parser.add_argument("--identify-ratio", type=float,
                        help="default: 0 (peers), 0.05 (segments)")
    parser.add_argument("--dup-ratio", type=float, default=0.05)
    parser.add_argument("--unit-items", type=int, default=UNIT_ITEMS,
                        help="items per unit of work (a worker's EVENTIDE_UNIT_MAX_ITEMS)")
    parser.add_argument("--items-per-record", type=int, default=1,
                        help="raw records of this many items, each partition's in workload order "
                             "(1: a producer's record per event, as the peers' job; 100: as "
                             "the ingest tier writes a /api/v2/batch of 100)")
    parser.add_argument("--rounds", type=int, default=3, help="each on a fresh RocksDB")
    parser.add_argument("--tree", help="a checkout whose code to run (its compiled modules too)")
    parser.add_argument("--out", help="results file (default bench/results/stage-<time>.json)")
    args = parser.parse_args(argv)
    if args.people is None:
        args.people = 20_000 if args.job == "peers" else 100_000
    if args.identify_ratio is None:
        args.identify_ratio = 0.0 if args.job == "peers" else 0.05
    return args


async def _define(sim: Any, count: int, at_s: int) -> None:
    """The bench's definitions in the catalog and active in every partition."""
    from app.model import encode_envelope
    from bench.workload import segment_definitions

    definitions = segment_definitions(count, 1)
    for offset, (segment_id, doc) in enumerate(definitions):
        sim.rt.catalog.apply(segment_id, {"definition": doc, "version": f"{segment_id}@1",
                                          "updated_at": at_s}, offset)
    ops = [{"op": "segment", "segment": segment_id, "version": f"{segment_id}@1",
            "offset": offset, "at": at_s} for offset, (segment_id, _) in enumerate(definitions)]
    for partition in range(PARTITIONS):
        sim.append(sim.rt.topics.person_events.name, partition, None, encode_envelope(ops))
    await _drain(sim, 10)


async def _drain(sim: Any, per_partition: int) -> None:
    while not sim.idle():
        await sim.process("people", [(queue, per_partition) for queue in sim.pending_queues()])


class CollectorTime:
    """Time in the cyclic garbage collector (a ``gc.callbacks`` entry). With segments it costs
    several times more here than in a worker (docs/performance.md, 2026-12-03, "The person stage
    in process"), for reasons not established: ``cpu_net_of_gc_us_per_item`` is the figure to
    compare."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections: collections.Counter[int] = collections.Counter()
        self._began = 0.0

    def observe(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.process_time()
        else:
            self.seconds += time.process_time() - self._began
            self.collections[info["generation"]] += 1


async def one_round(args: argparse.Namespace) -> dict[str, Any]:
    """One round on a fresh RocksDB, removed afterwards."""
    from tests.agents.pipeline_sim import Sim

    with tempfile.TemporaryDirectory(prefix="bench-stage-") as root:
        return await _measure(args, Sim(Path(root), partitions=PARTITIONS))


async def _measure(args: argparse.Namespace, sim: Any) -> dict[str, Any]:
    import orjson

    from app.producer import partition_for
    from app.wiring import tune_garbage_collector
    from bench.workload import generate

    sim.clock.set(time.time())
    if args.job == "segments":
        await _define(sim, args.segments, int(time.time()))
    sent: collections.Counter[str] = collections.Counter()
    acknowledge = sim._send_all

    async def send_all(records: list[Any]) -> list[int]:
        for record in records:
            sent["changelog" if ".changelog." in record.topic
                 else record.topic.rsplit(".", 1)[-1]] += 1
        offsets = await acknowledge(records)
        # The simulator keeps every output for its tests; kept here, they would make the
        # garbage collector's young generation grow without end (a worker's die each commit).
        sim.other.clear()
        return offsets

    sim.rt.producer.send_all = send_all
    workload = generate(args.events, args.people, args.dup_ratio, 1,
                        segments=args.job == "segments", identify_ratio=args.identify_ratio)
    raw = sim.rt.topics.raw_events.name
    received_ms = int(time.time() * 1000)
    by_partition: dict[int, list[tuple[bytes, dict[str, Any]]]] = collections.defaultdict(list)
    for person, _, item in workload.events:
        key = person.encode()
        by_partition[partition_for(key, PARTITIONS)].append(
            (key, {**item, "received_at": received_ms}))
    per_record = max(1, args.items_per_record)
    for partition, items in sorted(by_partition.items()):
        for start in range(0, len(items), per_record):
            chunk = items[start:start + per_record]
            if per_record == 1:
                sim.append(raw, partition, chunk[0][0], orjson.dumps(chunk[0][1]))
            else:
                sim.append(raw, partition, chunk[0][0],
                           orjson.dumps({"items": [item for _, item in chunk]}))
    state, commit_s = sim.rt.state, [0.0]
    commit = state.commit

    async def timed_commit(unit: Any) -> None:
        began = time.process_time()
        try:
            await commit(unit)
        finally:
            commit_s[0] += time.process_time() - began

    state.commit = timed_commit
    tune_garbage_collector()
    collecting = CollectorTime()
    gc.callbacks.append(collecting.observe)
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        # (Units of ~unit_items items whatever a record holds.)
        await _drain(sim, max(1, args.unit_items // PARTITIONS // per_record))
    finally:
        gc.callbacks.remove(collecting.observe)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    n = len(workload.events)
    new = sim.rt.counters["verdict:new"]
    sim.close()
    if new != workload.unique:
        raise SystemExit(f"bench.stage: {new} items judged new, expected {workload.unique}")
    return {"items": n, "items_per_s": round(n / wall), "wall_us_per_item": wall / n * 1e6,
            "cpu_us_per_item": cpu / n * 1e6, "commit_cpu_us_per_item": commit_s[0] / n * 1e6,
            "gc_us_per_item": collecting.seconds / n * 1e6,
            "cpu_net_of_gc_us_per_item": (cpu - collecting.seconds) / n * 1e6,
            "gc_collections": dict(collecting.collections),
            "records_per_item": {kind: round(count / n, 3)
                                 for kind, count in sent.most_common()}}


def _commit_of(tree: Path) -> str | None:
    found = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                           capture_output=True, text=True, check=False)
    return found.stdout.strip() or None


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    if args.tree:
        sys.path.insert(0, str(Path(args.tree).resolve()))
    import app

    tree = Path(app.__file__).resolve().parent.parent
    rounds = []
    for number in range(1, args.rounds + 1):
        found = asyncio.run(one_round(args))
        rounds.append(found)
        print(f"round {number}: {found['items_per_s']:,} items/s, "
              f"{found['cpu_us_per_item']:.1f} µs CPU per item, "
              f"{found['cpu_net_of_gc_us_per_item']:.1f} net of the garbage collector "
              f"(commit {found['commit_cpu_us_per_item']:.1f})", flush=True)
    cpu = [r["cpu_net_of_gc_us_per_item"] for r in rounds]
    result = {
        "bench": "stage", "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "code": str(tree), "commit": _commit_of(tree),
        "args": {k: v for k, v in vars(args).items() if k != "out"},
        "load_1min": os.getloadavg()[0],
        "cpu_net_of_gc_us_per_item_min": min(cpu),
        "cpu_net_of_gc_us_per_item_median": statistics.median(cpu),
        "rounds": rounds,
    }
    out = Path(args.out) if args.out else (
        Path(__file__).parent / "results" / f"stage-{time.strftime('%Y%m%d-%H%M%S')}.json")
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"CPU per item net of the collector: min {min(cpu):.1f} µs, "
          f"median {statistics.median(cpu):.1f} µs "
          f"over {len(cpu)} rounds; records per item {rounds[-1]['records_per_item']}")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
