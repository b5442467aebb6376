"""The crash schedule over many seeds: run it before any change to state, commits or recovery lands.

    .venv/bin/python -m bench.sweep [--seeds 1-20] [--events 100000] [--big-seeds 101,102,103]
        [--big-events 1000000] [--out bench/results/sweep-<stamp>.json]

Each seed is one ``bench.chaos`` run (its own embedded broker, fresh topics and data dirs: kills,
rebalances, reconciliation against the oracle) in a subprocess; its output is kept in
``<out>.d/seed-<N>.log``. One line a seed is printed as it finishes, then a table; the results
file holds every seed's figures. Exit status 1 if any seed had a difference or an invariant
violation (a segment change withheld as a repeat of the person's last one).

Why a sweep: issue 17. A single seed reconciled at 0 differences while seeds nobody had run
diverged; a divergence that depends on where a kill lands needs many landings to show.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

_FIGURES = {
    "differences": re.compile(r"^differences: (\d+)", re.M),
    "invariant_violations": re.compile(r"invariant violations logged by any worker: (\d+)"),
    "fenced_units": re.compile(r"unfinished units fenced off in changelogs: (\d+)"),
    "sigterms": re.compile(r"kills: (\d+) SIGTERM"),
    "sigkills": re.compile(r"\+ (\d+) SIGKILL"),
    "rebalances": re.compile(r"rebalances with two in the group (\d+)"),
    "duration_s": re.compile(r"total ([\d.]+) s"),
    "change_records": re.compile(r"segments.changes: (\d+) records"),
}


def seeds_of(text: str) -> list[int]:
    """``1-20`` or ``3,5,8`` (or both: ``1-5,9``)."""
    seeds: list[int] = []
    for part in filter(None, text.split(",")):
        low, _, high = part.partition("-")
        seeds += range(int(low), int(high or low) + 1)
    return seeds


def run_seed(seed: int, events: int, log_path: Path) -> dict[str, object]:
    started = time.monotonic()
    with open(log_path, "w") as log:
        rc = subprocess.call([sys.executable, "-m", "bench.chaos", "--events", str(events),
                              "--seed", str(seed)], stdout=log, stderr=subprocess.STDOUT)
    text = log_path.read_text(errors="replace")
    row: dict[str, object] = {"seed": seed, "events": events, "rc": rc,
                              "wall_s": round(time.monotonic() - started, 1), "log": str(log_path)}
    for name, pattern in _FIGURES.items():
        match = pattern.search(text)
        row[name] = None if match is None else float(match.group(1)) if "." in match.group(1) \
            else int(match.group(1))
    row["exact"] = rc == 0 and row["differences"] == 0 and row["invariant_violations"] == 0
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="1-20", help="seeds at --events (default 1-20)")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--big-seeds", default="", help="seeds at --big-events (e.g. 101,102)")
    parser.add_argument("--big-events", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out or Path("bench/results") / f"sweep-{stamp}.json"
    logs = out.with_suffix(".d")
    logs.mkdir(parents=True, exist_ok=True)
    plan = [(s, args.events) for s in seeds_of(args.seeds)] + \
        [(s, args.big_events) for s in seeds_of(args.big_seeds)]
    rows = []
    for seed, events in plan:
        row = run_seed(seed, events, logs / f"seed-{seed}-{events}.log")
        rows.append(row)
        print(f"seed {seed:>6} x {events:>9,}: {'exact' if row['exact'] else 'DIVERGED'}  "
              f"differences {row['differences']}  invariant violations "
              f"{row['invariant_violations']}  fenced units {row['fenced_units']}  kills "
              f"{row['sigterms']}+{row['sigkills']}  rebalances {row['rebalances']}  "
              f"{row['wall_s']} s", flush=True)
        out.write_text(json.dumps({"started": stamp, "runs": rows}, indent=1))
    exact = sum(1 for row in rows if row["exact"])
    print(f"\n{exact} of {len(rows)} seeds exact; results: {out}")
    return 0 if exact == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
