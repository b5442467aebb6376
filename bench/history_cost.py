"""What one event costs a worker for a person with a long history, against a new person.

    .venv/bin/python -m bench.history_cost [--stored 5000] [--events 400] [--rate 50]
                                           [--tree PATH ...]

For each code tree (default: this one; ``--tree`` runs another checkout the same way, e.g. an
older commit in a ``git worktree``, so both figures come from the same run), starts ``eventide up``
(its own embedded broker and data dir) with two segments over the event's name (one with a 30-day
window, one counting at least 3 with a ``where``), stores ``--stored`` events for one person (all
inside the window: the worst case for a windowed condition), then sends ``--events`` single events
one request at a time at ``--rate`` per second (paced: each is its own unit of work) to that
person, and as many to as many new people. Reported: the eventide process's CPU seconds for each
phase (from ``/proc/<pid>/stat``, broker excluded), per event, and their ratio. Issue 11's bar:
the long-history person costs at most 1.2x a new one. Saves ``bench/results/history-cost-*.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp

from app.testing.harness import basic_auth
from bench.instance import running_instance
from bench.measure import cpu_seconds

DAY_S = 86_400
AUTH = basic_auth("s", "k")
BEARER = {"Authorization": "Bearer a"}
SEGMENTS = {
    "viewed-recently": {"name": "viewed in 30 days",
                        "match": {"event": "viewed", "within": "30d"}},
    "viewed-pricing": {"name": "viewed pricing 3 times",
                       "match": {"event": "viewed", "count": {"gte": 3},
                                 "where": [{"path": "page", "op": "eq", "value": "pricing"}]}},
}
_NEW = re.compile(r'^eventide_verdict_total\{[^}]*"new"\} (\d+)', re.M)


async def processed(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(f"{url}/metrics", headers=BEARER) as response:
        match = _NEW.search(await response.text())
        return int(match.group(1)) if match else 0


async def wait_processed(session: aiohttp.ClientSession, url: str, count: int,
                         timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while await processed(session, url) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} events not processed in {timeout_s} s")
        await asyncio.sleep(0.2)


async def paced(session: aiohttp.ClientSession, url: str, people: list[str], rate: float,
                now_s: int) -> None:
    for n, person in enumerate(people):
        started = time.monotonic()
        body = {"name": "viewed", "data": {"page": "pricing" if n % 2 else "home"},
                "timestamp": now_s - n}
        async with session.post(f"{url}/api/v1/customers/{person}/events", json=body,
                                headers=AUTH) as response:
            assert response.status == 200, await response.text()
        await asyncio.sleep(max(0.0, 1 / rate - (time.monotonic() - started)))


async def one_tree(tree: Path | None, args: argparse.Namespace) -> dict[str, Any]:
    now_s = int(time.time())
    async with running_instance("history", tree=tree) as (url, pid), \
            aiohttp.ClientSession() as session:
        for segment_id, definition in SEGMENTS.items():
            async with session.put(f"{url}/api/v1/segments/{segment_id}", json=definition,
                                   headers=BEARER) as response:
                assert response.status in (200, 201), await response.text()
        # The long history: --stored events in batches, all inside the 30-day window.
        step = max(1, (29 * DAY_S) // args.stored)
        for first in range(0, args.stored, 500):
            batch = [{"type": "person", "identifiers": {"id": "heavy"}, "action": "event",
                      "name": "viewed", "timestamp": now_s - DAY_S - n * step,
                      "attributes": {"page": "pricing" if n % 3 == 0 else "docs"}}
                     for n in range(first, min(args.stored, first + 500))]
            async with session.post(f"{url}/api/v2/batch", json={"batch": batch},
                                    headers=AUTH) as response:
                assert response.status == 200, await response.text()
        await wait_processed(session, url, args.stored)
        await asyncio.sleep(2)
        phases = {}
        for phase, people in (("long_history", ["heavy"] * args.events),
                              ("new_people", [f"new-{n}" for n in range(args.events)])):
            done = await processed(session, url)
            cpu = cpu_seconds(pid)
            started = time.monotonic()
            await paced(session, url, people, args.rate, now_s)
            await wait_processed(session, url, done + args.events)
            spent = cpu_seconds(pid) - cpu
            phases[phase] = {"cpu_s": round(spent, 3),
                             "wall_s": round(time.monotonic() - started, 2),
                             "cpu_ms_per_event": round(1000 * spent / args.events, 3)}
            await asyncio.sleep(2)
    ratio = phases["long_history"]["cpu_s"] / max(phases["new_people"]["cpu_s"], 1e-9)
    return {"tree": str(tree or Path.cwd()), "phases": phases, "ratio": round(ratio, 2)}


def commit_of(tree: Path) -> str:
    return subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    runs = []
    for tree in [None, *args.tree]:
        result = await one_tree(tree, args)
        result["commit"] = commit_of(tree or Path.cwd())
        print(f"{result['commit']}: long history {result['phases']['long_history']}, "
              f"new people {result['phases']['new_people']}, ratio {result['ratio']}",
              flush=True)
        runs.append(result)
    return {"stored": args.stored, "events": args.events, "rate": args.rate,
            "segments": SEGMENTS, "runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.history_cost",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--stored", type=int, default=5_000)
    parser.add_argument("--events", type=int, default=400)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--tree", type=Path, action="append", default=[],
                        help="another checkout to measure the same way (repeatable)")
    args = parser.parse_args(argv)
    summary = asyncio.run(main_async(args))
    out = Path("bench/results") / f"history-cost-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
