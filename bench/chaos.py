"""The crash schedule at scale: a million items through kills and rebalances, reconciled exactly.

    .venv/bin/python -m bench.chaos [--events N] [--seed S] [--rate R] [--partitions P]
        [--drain-timeout SECONDS] [--keep]

Starts its own embedded broker (Tansu, memory storage) on a free port and one fresh deployment
(own topic prefix, consumer group, data dirs), then runs ``app/testing/chaos``: a seeded
workload of N items (identified events, identifies, anonymous events, links, merges; 10% exact
resends) written to the raw topics at R items/s while worker A is SIGTERMed at random intervals,
worker B joins the group for a while (rebalances) and leaves, and a burst of SIGKILLs 0.1-1 s apart
hits A; then A's read API and ``segments.changes`` are reconciled against the offline oracle.

Prints the events, kills, rebalances, duration and the number of differences, which must be 0
(exit status 1 otherwise, with the differences, the kill timeline and worker log excerpts; the
work dir is then kept). The same scenario runs in CI at 3,000 items:
``tests/chaos/test_crash_schedule.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

from app.broker import EmbeddedBroker
from app.topics import build_topics
from app.testing.chaos.scenario import Config, Result, log_excerpts, run_scenario
from app.testing.harness import Deployment, free_port


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000,
                        help="items written, resends included (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=None,
                        help="items written per second (default: events/90, at least 70)")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--drain-timeout", type=float, default=None,
                        help="seconds allowed to drain and reconcile after the last kill "
                             "(default: events/2000, at least 120)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir when all is exact")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace, bootstrap: str, root: Path) -> Result:
    deployment = Deployment(bootstrap, root)
    if args.partitions != deployment.settings.partitions:
        deployment.settings = deployment.settings.replace(partitions=args.partitions)
        deployment.topics = build_topics(deployment.settings)
    await deployment.create_topics()
    config = Config(
        events=args.events, seed=args.seed,
        rate=args.rate or max(70.0, args.events / 90),
        drain_timeout_s=args.drain_timeout or max(120.0, args.events / 2000),
        http_concurrency=32)
    return await run_scenario(deployment, config,
                              say=lambda line: print(line, flush=True))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root = Path(tempfile.mkdtemp(prefix=f"eventide-chaos-{stamp}-"))
    broker = EmbeddedBroker(free_port(), log_path=root / "broker.log")
    print(f"eventide chaos: {args.events} items, seed {args.seed}, {args.partitions} partitions, "
          f"work dir {root}", flush=True)
    result: Result | None = None
    try:
        broker.start()
        result = asyncio.run(run(args, broker.bootstrap_servers, root))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
    except Exception as exc:
        print(f"\nchaos run failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        broker.stop()
    if result is None:
        print(f"work dir kept: {root}", file=sys.stderr)
        return 1
    print()
    print(result.summary())
    if result.differences:
        print("\n".join(["", "differences (first 60):", *result.differences[:60], "",
                         "timeline:", *result.timeline, "", log_excerpts(result)]))
        print(f"work dir kept: {root}", file=sys.stderr)
        return 1
    if args.keep:
        print(f"work dir kept: {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
