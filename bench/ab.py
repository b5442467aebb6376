"""This checkout against another, in alternating runs of one ``bench.beside`` job: what a change
did to a worker's rate and CPU, on a host whose speed drifts within the hour.

    .venv/bin/python -m bench.ab --tree /tmp/base [--job peers] [--pairs 3]
        [--out bench/results/ab-<stamp>.json]

Each pair runs both checkouts' ``bench.run`` (each with its own venv and compiled modules), the
other first in odd pairs and this one first in even ones, so a host slowing or speeding through
the sequence favours neither. Only neighbours compare: the summary gives each pair's difference,
this minus the other, in items/s, in the worker's CPU an item and in its event loop's
(``worker_main_thread_us_per_event``: what one thread per worker bounds; a checkout whose
``bench.run`` predates it gives none). Each run's results file is copied next to the summary.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.beside import JOBS, eventide_figures, results_path
from bench.history_cost import commit_of

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"


def code_of(tree: Path) -> str:
    """The checkout's commit, marked when its work tree holds changes beyond it."""
    changed = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
                             capture_output=True, text=True).stdout.strip()
    return commit_of(tree) + (" + uncommitted changes" if changed else "")


def run_in(tree: Path, job: str, log: Path) -> dict[str, Any]:
    """One ``bench.run`` of ``job`` in ``tree``; its figures and its results file, copied here."""
    with open(log, "w") as out:
        subprocess.run([str(tree / ".venv" / "bin" / "python"), "-m", "bench.run", *JOBS[job]],
                       cwd=tree, stdout=out, stderr=subprocess.STDOUT, check=False)
    found = results_path(log.read_text(errors="replace"))
    row: dict[str, Any] = {"code": str(tree), "commit": code_of(tree), "log": str(log)}
    if found is None:
        return row
    results = json.loads((tree / found).read_text())
    kept = RESULTS / Path(found).name
    if tree.resolve() != REPO:
        kept = RESULTS / f"{Path(found).stem}-other.json"
        shutil.copyfile(tree / found, kept)
    row.update(eventide_figures(results), results=str(kept.relative_to(REPO)),
               loop_cpu_us_per_item=results["runs"][0].get("worker_main_thread_us_per_event"))
    return row


def differences(pairs: list[dict[str, dict[str, Any]]], key: str) -> list[float]:
    """Each pair's ``key``, this checkout's minus the other's (pairs missing it left out)."""
    return [round(pair["this"][key] - pair["other"][key], 1) for pair in pairs
            if pair["this"].get(key) is not None and pair["other"].get(key) is not None]


def summary(pairs: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key in ("items_per_s", "cpu_us_per_item", "loop_cpu_us_per_item"):
        diffs = differences(pairs, key)
        found[key] = {"this_minus_other_by_pair": diffs,
                      "median": statistics.median(diffs) if diffs else None}
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.ab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, required=True,
                        help="the other checkout (its .venv, with `make native` run)")
    parser.add_argument("--job", choices=sorted(JOBS), default="peers")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or RESULTS / f"ab-{stamp}.json"
    logs = Path(f"/tmp/eventide-ab-{stamp}")
    logs.mkdir(parents=True, exist_ok=True)
    trees = {"this": REPO, "other": args.tree.resolve()}
    pairs: list[dict[str, dict[str, Any]]] = []
    for number in range(1, args.pairs + 1):
        order = ["other", "this"] if number % 2 else ["this", "other"]
        pair = {side: run_in(trees[side], args.job, logs / f"{number}-{side}.log")
                for side in order}
        pairs.append(pair)
        print(f"pair {number} ({order[0]} first): " + "; ".join(
            f"{side} {pair[side].get('items_per_s')} items/s, {pair[side].get('cpu_us_per_item')} "
            f"µs an item, loop {pair[side].get('loop_cpu_us_per_item')} µs"
            for side in ("other", "this")), flush=True)
    doc = {"bench": "ab", "job": args.job, "args": JOBS[args.job],
           "this": {"code": str(REPO), "commit": code_of(REPO)},
           "other": {"code": str(trees["other"]), "commit": code_of(trees["other"])},
           "pairs": pairs, "summary": summary(pairs)}
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(doc["summary"], indent=1))
    print(f"results: {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
