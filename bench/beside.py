"""eventide beside Quix Streams, in the same quarter hour on the same machine: the ratios the
performance bars are stated in.

    .venv/bin/python -m bench.beside [--sequences 2] [--jobs peers,http,segments]
        [--peers ../shared/peers] [--out bench/results/beside-<stamp>.json]

A sequence is Quix Streams on the peers' 200k-event job (the peers' own ``run.sh``, one round of
implementation A, a fresh broker), then each of eventide's jobs (``bench.run``, a fresh broker
each), and a last Quix run after the final sequence: ``Q E Q E Q``. Each eventide rate is quoted
as a ratio to the Quix runs just before and just after it, because this machine's speed drifts
within the hour and Quix's more than eventide's (its CPU per item doubled between two days with
no steal reported, docs/performance.md): only neighbours are comparable.

The jobs (``JOBS``) are the bars' own: the peers' job one event per Kafka record, the same events
through HTTP ``/api/v2/batch`` and the ingest tier, and 1,000 segments (bar: 12,000 items/s, not
a ratio). The results file holds every run's figures, the Quix lines as the peers' ``bench.py``
printed them and eventide's results files by name; a table is printed at the end. Quix's first
run creates its venv (``/tmp/peers-venv``) from the peers' requirements if it is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.history_cost import commit_of
from bench.measure import host_steal_seconds

REPO = Path(__file__).resolve().parent.parent
PEERS = REPO.parent / "shared" / "peers"

#: eventide's jobs: ``bench.run`` arguments, the same workload as the peers' job where a ratio is
#: quoted (200,000 events, 20,000 people, 5% exact resends).
JOBS: dict[str, list[str]] = {
    "peers": ["--mode", "raw", "--single-records", "--events", "200000", "--people", "20000",
              "--identify-ratio", "0", "--dup-ratio", "0.05"],
    "http": ["--mode", "http", "--events", "200000", "--http-events", "200000",
             "--http-batch", "100", "--people", "20000", "--identify-ratio", "0",
             "--dup-ratio", "0.05", "--ingest-tier"],
    "segments": ["--mode", "segments", "--events", "200000", "--people", "100000",
                 "--segments", "1000", "--identify-ratio", "0.05"],
}
#: Jobs whose bar is a rate of their own, not a ratio to Quix.
RATE_BARS = {"segments": 12_000}

_RESULTS = re.compile(r"^results: (\S+\.json)$", re.M)


def results_path(output: str) -> str | None:
    """The results file ``bench.run`` names on its last line."""
    found = _RESULTS.findall(output)
    return found[-1] if found else None


def quix_line(results_jsonl: str) -> dict[str, Any] | None:
    """The newest line of implementation A in the peers' ``results.jsonl``."""
    for line in reversed(results_jsonl.splitlines()):
        if line.startswith("{"):
            row = json.loads(line)
            if row.get("impl") == "A":
                return dict(row)
    return None


def eventide_figures(results: dict[str, Any]) -> dict[str, Any]:
    """What a ``bench.run`` results file says about its (single) run."""
    run = results["runs"][0]
    return {"items_per_s": run.get("events_per_s"), "cpu_us_per_item":
            run.get("worker_cpu_us_per_event"), "loop_cpu_us_per_item":
            run.get("worker_main_thread_us_per_event"), "peak_rss_mb":
            round((run.get("peak_rss_bytes") or 0) / 2**20), "worst_stall_s":
            run.get("worst_stall_s"), "exact": run.get("exact"), "client_p99_s":
            run.get("http_p99_s"), "host_steal_s": run.get("host_steal_s")}


def ratios(job: str, rate: float | None, quix_before: dict[str, Any] | None,
           quix_after: dict[str, Any] | None) -> list[float]:
    """eventide's rate over each neighbouring Quix run's that finished exact, low first; none
    for a job with a rate bar of its own (its workload is not the peers' job)."""
    if job in RATE_BARS:
        return []
    found = [round(rate / quix["events_per_s"], 2) for quix in (quix_before, quix_after)
             if rate and quix and quix.get("exact") and quix.get("events_per_s")]
    return sorted(found)


def verdict(job: str, figures: dict[str, Any], found: list[float]) -> str:
    """Whether the run met its bar: a rate of its own, or at least Quix's rate beside it."""
    if not figures.get("exact"):
        return "not exact"
    bar = RATE_BARS.get(job)
    if bar is not None:
        return "met" if (figures.get("items_per_s") or 0) >= bar else f"missed (bar {bar:,}/s)"
    if not found:
        return "no Quix run to compare"
    if min(found) >= 1:
        return "met"
    return "met beside one Quix run" if max(found) >= 1 else "missed"


def run_quix(peers: Path, work: Path) -> dict[str, Any] | None:
    env = {**os.environ, "IMPLS": "A", "WORK": str(work)}
    subprocess.run(["bash", "run.sh", "1"], cwd=peers, env=env, stdout=subprocess.DEVNULL,
                   stderr=subprocess.STDOUT, check=False)
    results = work / "results.jsonl"
    return quix_line(results.read_text()) if results.exists() else None


def run_eventide(job: str, log: Path) -> dict[str, Any]:
    steal_before = host_steal_seconds()
    with open(log, "w") as out:
        subprocess.run([sys.executable, "-m", "bench.run", *JOBS[job]], cwd=REPO, stdout=out,
                       stderr=subprocess.STDOUT, check=False)
    path = results_path(log.read_text(errors="replace"))
    row: dict[str, Any] = {"job": job, "log": str(log), "results": path,
                           "host_steal_s": round(host_steal_seconds() - steal_before, 2)}
    if path is not None:
        row.update(eventide_figures(json.loads((REPO / path).read_text())))
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.beside", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequences", type=int, default=2)
    parser.add_argument("--jobs", default="peers,http,segments",
                        help=f"some of {', '.join(JOBS)}")
    parser.add_argument("--peers", type=Path, default=PEERS, help="the peers' harness")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    jobs = [job for job in args.jobs.split(",") if job]
    unknown = [job for job in jobs if job not in JOBS]
    if unknown:
        parser.error(f"unknown jobs: {', '.join(unknown)}")
    if not (args.peers / "run.sh").exists():
        parser.error(f"no peers' harness at {args.peers}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or REPO / "bench" / "results" / f"beside-{stamp}.json"
    logs = out.with_suffix(".d")
    logs.mkdir(parents=True, exist_ok=True)
    work = Path(f"/tmp/eventide-beside-{stamp}")

    quix: list[dict[str, Any] | None] = []
    runs: list[dict[str, Any]] = []

    def save() -> None:
        out.write_text(json.dumps({"started": stamp, "code": commit_of(REPO), "quix": quix,
                                   "runs": runs}, indent=1))

    for sequence in range(args.sequences + 1):
        quix.append(run_quix(args.peers, work))
        rate = quix[-1]["events_per_s"] if quix[-1] else None
        print(f"Quix Streams: {rate or 'failed'} items/s", flush=True)
        if sequence > 0:  # the runs of the sequence before now have their second neighbour
            for row in runs:
                if row["sequence"] == sequence - 1:
                    row["ratios"] = ratios(row["job"], row.get("items_per_s"), quix[-2],
                                           quix[-1])
                    row["verdict"] = verdict(row["job"], row, row["ratios"])
        save()
        if sequence == args.sequences:
            break
        for job in jobs:
            row = run_eventide(job, logs / f"{sequence + 1}-{job}.log")
            row["sequence"] = sequence
            runs.append(row)
            print(f"eventide {job}: {row.get('items_per_s')} items/s, "
                  f"{row.get('cpu_us_per_item')} µs CPU an item ({row['results']})", flush=True)
            save()
    print()
    print(f"{'job':<10} {'items/s':>9} {'× Quix':>11} {'CPU µs':>7} {'RSS MB':>7} "
          f"{'stall s':>8}  verdict")
    for row in runs:
        found = row.get("ratios") or []
        span = (f"{found[0]:.2f}–{found[-1]:.2f}" if len(found) > 1 else
                f"{found[0]:.2f}" if found else "—")
        print(f"{row['job']:<10} {row.get('items_per_s') or 0:>9,.0f} {span:>11} "
              f"{row.get('cpu_us_per_item') or 0:>7} {row.get('peak_rss_mb') or 0:>7} "
              f"{row.get('worst_stall_s') or 0:>8.2f}  {row.get('verdict')}")
    print(f"\nresults: {out}")
    return 0 if all(row.get("exact") for row in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
