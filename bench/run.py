"""End-to-end benchmark of eventide on this machine.

    .venv/bin/python -m bench.run [--mode raw|http|both|segments] [--events N] [--http-events N]
        [--people P] [--concurrency C] [--ingest-tier] [--single-records] [--rate R]
        [--segments N] [--quick]
        [--workers N] [--identify-ratio F] [--recovery] [--profile SECONDS [--profile-native]]

Starts its own embedded broker (Tansu, memory storage) on a free port and, for every run, a
fresh deployment (own topic prefix, consumer group, data dir, 8 partitions) with ``--workers N``
``eventide worker`` processes (default 1) in one consumer group: the first on the deployment's
port and data dir, every other one with its own (``EVENTIDE_HTTP_PORT``/``EVENTIDE_DATA_DIR``).
The run starts once every worker answers ``/healthz`` 200 and the group is settled (every worker
ready on three polls in a row, every ``person.events`` partition assigned to exactly one worker).
Then:

* **raw**: pre-generates N items for P people and writes them straight to the raw topics as
  batch envelopes (<= 500 items per record, grouped per partition; ``--single-records``: one bare
  item per record). ``--identify-ratio`` (default 0.05) of the items are identifies
  (``raw.identifies``) setting ``plan`` (one of the plans, ``pro`` included) and ``city``: the
  attributes the segments workload's attribute conditions look at, so identity (routing via the
  aliases table, profile folding, attribute-triggered evaluation) is in the path. The rest are
  events (``raw.events``); every 10th item is an exact resend of a random earlier *event* of the
  same person, which the worker must drop. By default everything is written at once and the
  workers drain a backlog; ``--rate R`` writes R items/s instead (steady state).
* **http**: C concurrent clients POST ``/api/v1/customers/{id}/events`` (Basic auth), and PUT
  ``/api/v1/customers/{id}`` for the identifies, spread over the workers' APIs
  (``--http-batch N``: ``/api/v2/batch`` of N). ``--ingest-tier``: to one ``eventide api``
  process instead (the stateless ingest tier, the shape ``docker-compose.yml`` deploys), whose
  CPU and peak RSS are reported apart from the workers'.
* **segments** (``--segments N``, any mode; ``--mode segments`` is a raw run preset to 1,000
  definitions and 100,000 people, ``--quick``: 100 definitions): before loading, N segment
  definitions are PUT to ``/api/v1/segments/{id}`` (bearer app key) and the run waits until
  ``GET /api/v1/segments`` shows every one ``live``. Event names are then drawn from a pool of
  ``e0..e999`` that most definitions mention one or two of (so an event touches a few segments);
  definitions vary: plain, ``within`` windows, ``where`` on ``items[].type``/``total``, ``not``,
  ``count``, attribute conditions (``plan``, ``city``, ``age``); 10% of events are back-dated by
  up to 2 h so that windows close during the run. A plain aiokafka consumer reads
  ``segments.changes`` throughout; for every change record whose ``cause`` is an item the bench
  sent (event or identify), accept -> change is the record's timestamp (CreateTime: set by the
  worker's producer when it produced the change) minus that item's ``received_at`` (raw mode
  only: the bench sets it; in http mode the server does). Also reported: the change records read
  (by kind and cause) and ``eventide_segment_evaluations_total`` per unique item.

Both then poll every worker's ``/metrics`` every 100 ms and sum the counters across workers until
every unique item is processed and committed and every resend dropped. End to end = items sent
(resends included) / (first produce or request -> all committed). Verdicts are counted before a
batch commits, the latency histogram after it (one observation per new *event*; identifies are
not observed), so "committed" waits for ``eventide_processing_latency_seconds_count`` to reach
the unique events. Processing latency (accept -> durable in history) is that histogram's p50/p99,
interpolated inside its buckets the way Prometheus's ``histogram_quantile`` does (buckets at most
~1.7x apart), over the buckets summed across the workers; each worker's own is kept too. HTTP
latency is measured client-side. Peak RSS is each worker's ``VmHWM`` (see
:func:`bench.measure.rss_bytes`); CPU comes from ``/proc/<pid>/stat``. The bench client, the broker and the workers share the machine's
cores; the 1-minute load average is recorded before and after every run.

``--recovery``: after a run, every worker is stopped (SIGTERM) and worker 1 alone is restarted
with its data directory intact (time to ``/healthz`` 200: process start, group join, nothing to
recover in a 1-worker deployment) and stopped; the changelog topics are then read with a plain
consumer to their fetch high-watermarks (records counted), and worker 1 is restarted after its
data directory was deleted (every partition rebuilt from the changelogs). Recovery rate = changelog
records / time to ready; the net rate subtracts the intact restart's time. The records the
worker itself applied, and how long its recoveries took, are read from its log ("recovered N
changelog records ... in S s"): records / the longest recovery is the rate while it read them,
free of the restart's jitter. The segment member counts after recovery are compared with those
before the stop.

``--profile S``: ``py-spy record -d S -f raw`` of worker 1 from the moment loading starts; the
collapsed stacks go to ``bench/results/<timestamp>-profile-<run>.txt`` and the top self-time and
inclusive frames are printed and stored in the results JSON. ``--profile-native`` adds
``--native`` (C frames: the share of samples inside CPython's cyclic GC is reported).

A run is exact when every unique item is judged ``new`` once, every unique event is made durable
once and nothing is dead-lettered. Duplicates may exceed the resends: a commit retried after a
produce timeout re-sends its routed records, which dedup drops (the worker logs' commit retries
and longest event-loop stall, from mode's "woke up too late" timer warnings, are reported).

Prints a table and writes ``bench/results/<timestamp>.json``. Exit status 1 if a run failed or a
count was not exact; the work dir (worker and broker logs) is then kept and its path printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from app.broker import EmbeddedBroker
from app.settings import Settings
from app.testing.harness import free_port
from bench.one_run import RunSpec, run_one
from bench.report import RESULTS_DIR, print_table


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("raw", "http", "both", "segments"), default="both",
                        help="segments: a raw run with --segments 1,000 and --people 100,000 "
                             "unless given (--quick: 100 segments)")
    parser.add_argument("--events", type=int, help="raw-mode events (default 200,000)")
    parser.add_argument("--http-events", type=int, help="http-mode events (default 50,000)")
    parser.add_argument("--http-batch", type=int, default=0, metavar="N",
                        help="http mode: N items per POST /api/v2/batch instead of one request "
                             "per item")
    parser.add_argument("--people", type=int,
                        help="default 10,000 (100,000 in --mode segments)")
    parser.add_argument("--segments", type=int,
                        help="segment definitions PUT before loading (default 0; 1,000 in --mode "
                             "segments, 100 with --quick)")
    parser.add_argument("--concurrency", type=int, default=64, help="HTTP clients (default 64)")
    parser.add_argument("--ingest-tier", action="store_true",
                        help="http mode: send to an `eventide api` process (the stateless ingest "
                             "tier, as docker-compose.yml deploys it) instead of the workers' "
                             "own track API")
    parser.add_argument("--single-records", action="store_true",
                        help="raw mode: one bare item per Kafka record instead of envelopes")
    parser.add_argument("--per-record", type=int, default=500, help="items per raw envelope")
    parser.add_argument("--rate", type=float,
                        help="raw mode: write at this many events/s (default: all at once, so "
                             "the worker drains a backlog); each 50 ms tick's events go out as "
                             "one envelope per partition")
    parser.add_argument("--dup-ratio", type=float, default=0.10,
                        help="share of events that are exact resends (default 0.10)")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1,
                        help="eventide worker processes in the deployment's consumer group "
                             "(default 1)")
    parser.add_argument("--identify-ratio", type=float, default=0.05,
                        help="share of (non-resend) items that are identifies setting plan and "
                             "city (default 0.05)")
    parser.add_argument("--recovery", action="store_true",
                        help="after each run: stop the workers, delete worker 1's data dir, "
                             "restart it and measure changelog records recovered per second")
    parser.add_argument("--profile", type=int, metavar="SECONDS",
                        help="py-spy record -f raw worker 1 for SECONDS from the start of loading")
    parser.add_argument("--profile-native", action="store_true",
                        help="with --profile: py-spy --native (C frames too: shows the time "
                             "spent in CPython's garbage collector)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true",
                        help="tiny run (5,000 raw / 2,000 http events) for CI")
    parser.add_argument("--timeout", type=float, help="max wait for processing per run, seconds")
    parser.add_argument("--stall-timeout", type=float, default=60.0,
                        help="fail when nothing is processed for this long (default 60 s)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, RocksDB)")
    parser.add_argument("--no-json", action="store_true", help="do not write bench/results/")
    args = parser.parse_args(argv)
    if args.events is None:
        args.events = 5_000 if args.quick else 200_000
    if args.http_events is None:
        args.http_events = 2_000 if args.quick else 50_000
    if args.segments is None:
        args.segments = 0 if args.mode != "segments" else 100 if args.quick else 1_000
    if args.people is None:
        args.people = 100_000 if args.mode == "segments" and not args.quick else 10_000
    return args


def plan(args: argparse.Namespace) -> list[RunSpec]:
    runs = []
    extra = f" + {args.segments:,} segments" if args.segments else ""
    if args.workers > 1:
        extra += f" x{args.workers} workers"
    if args.mode in ("raw", "both"):
        label = "raw (1 item/record)" if args.single_records else "raw"
        if args.rate:
            label += f" @ {args.rate:,.0f}/s"
        runs.append(RunSpec(label + extra, "raw", args.events, single=args.single_records))
    if args.mode in ("http", "both"):
        label = f"http (/api/v2/batch of {args.http_batch})" if args.http_batch else "http"
        runs.append(RunSpec(label + extra, "http", args.http_events))
    if args.mode == "segments":
        label = f"raw + {args.segments:,} segments"
        if args.rate:
            label += f" @ {args.rate:,.0f}/s"
        if args.workers > 1:
            label += f" x{args.workers} workers"
        runs.append(RunSpec(label, "raw", args.events, single=args.single_records))
    return runs


async def run_all(args: argparse.Namespace, bootstrap: str, broker_pid: int | None, root: Path,
                  results: list[dict[str, Any]], stamp: str = "") -> None:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    for spec in plan(args):
        await run_one(spec, args, bootstrap, broker_pid, root, results, stamp)


def machine() -> dict[str, Any]:
    import aiokafka
    import faust

    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "faust": faust.__version__,
            "aiokafka": aiokafka.__version__, "loadavg": list(os.getloadavg()),
            # Workers inherit it: a sitecustomize there can change them (e.g. GC experiments).
            "pythonpath": os.environ.get("PYTHONPATH"),
            # Workers inherit the environment too: the event loop they ran on, read as they
            # read it (app/event_loop.py).
            "event_loop": Settings.from_env().event_loop}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root = Path(tempfile.mkdtemp(prefix=f"eventide-bench-{stamp}-"))
    broker = EmbeddedBroker(free_port(), log_path=root / "broker.log")
    results: list[dict[str, Any]] = []
    failed = True
    error: str | None = None
    print(f"eventide bench: mode {args.mode}, {args.workers} worker(s), work dir {root} "
          f"(load avg {os.getloadavg()[0]:.2f})", flush=True)
    try:
        broker.start()
        broker_pid = broker._process.pid if broker._process is not None else None
        asyncio.run(run_all(args, broker.bootstrap_servers, broker_pid, root, results, stamp))
        failed = not results or not all(r.get("ok") for r in results)
    except KeyboardInterrupt:
        error = "interrupted"
        print("\ninterrupted", file=sys.stderr)
    except asyncio.CancelledError:
        error = "terminated"
        print("\nterminated", file=sys.stderr)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        print(f"\nbench failed: {error}", file=sys.stderr)
    finally:
        broker.stop()
    # Partial results of a run that failed are not worth a column; keep them in the JSON only.
    print_table([r for r in results if r.get("ok")])
    if not args.no_json and results:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        out = RESULTS_DIR / f"{stamp}.json"
        document = {"started_at": stamp, "ok": not failed, "error": error, "machine": machine(),
                    "args": vars(args), "runs": results}
        out.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
        shown = out.relative_to(Path.cwd()) if out.is_relative_to(Path.cwd()) else out
        print(f"\nresults: {shown}")
    if failed:
        print(f"work dir kept: {root} (worker logs: {root}/*/worker.log, broker: "
              f"{root}/broker.log)", file=sys.stderr)
        return 1
    if args.keep:
        print(f"work dir kept: {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
