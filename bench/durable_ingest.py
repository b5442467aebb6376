"""What the embedded mode's on-disk promise costs: HTTP ingest with the input log's flush awaited
(the default) against answering on the broker's acknowledgement alone, in the same run.

    .venv/bin/python -m bench.durable_ingest [--requests 20000] [--concurrency 64] [--rounds 3]

Each round starts ``eventide up`` (its own embedded broker and data dir) twice, once with
``EVENTIDE_ACK_ON_DISK=1`` and once with ``0`` (alternating which goes first), sends
``--requests`` single-event track requests from ``--concurrency`` clients, and records accepted
requests per second and latency percentiles. Prints the medians and the ratio; saves everything
to ``bench/results/durable-<stamp>.json``. Issue 12's bar: the flush costs at most 20% of
accepted requests/s at 64 concurrent clients.

``--tier``: compares, the same way, the worker's own track API of ``eventide up`` with the
ingest tier of ``eventide up --ingest-port`` (a process of its own whose ``200`` waits for the
same input log), both with the flush awaited.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

import aiohttp

from app.testing.harness import basic_auth, free_port
from bench.instance import running_instance


async def load(url: str, requests: int, concurrency: int) -> dict[str, float]:
    auth = basic_auth("s", "k")
    latencies: list[float] = []
    failed = 0
    remaining = iter(range(requests))

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal failed
        for n in remaining:
            started = time.perf_counter()
            async with session.post(f"{url}/api/v1/customers/p{n % 1000}/events",
                                    json={"name": "bench", "data": {"n": n}},
                                    headers=auth) as response:
                await response.read()
                if response.status == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    failed += 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {"accepted": len(latencies), "failed": failed, "seconds": round(elapsed, 2),
            "requests_per_s": round(len(latencies) / elapsed, 1),
            "p50_ms": round(1000 * latencies[len(latencies) // 2], 2),
            "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 2)}


async def one_run(ack_on_disk: bool, requests: int, concurrency: int) -> dict[str, object]:
    env = {"EVENTIDE_ACK_ON_DISK": "1" if ack_on_disk else "0"}
    async with running_instance("durable", env) as (url, _):
        await load(url, 500, concurrency)  # warm-up
        result = await load(url, requests, concurrency)
    return {"ack_on_disk": ack_on_disk, **result}


async def one_tier_run(tier: bool, requests: int, concurrency: int) -> dict[str, object]:
    tier_url = f"http://127.0.0.1:{free_port()}"
    args = ("--ingest-port", tier_url.rsplit(":", 1)[1]) if tier else ()
    async with running_instance("tier", args=args, also_ready=(tier_url,) if tier else ()
                                ) as (worker_url, _):
        url = tier_url if tier else worker_url
        await load(url, 500, concurrency)  # warm-up
        result = await load(url, requests, concurrency)
    return {"through": "ingest tier" if tier else "worker", **result}


async def tier_async(args: argparse.Namespace) -> dict[str, object]:
    runs = []
    for round_ in range(args.rounds):
        for tier in ((True, False) if round_ % 2 == 0 else (False, True)):
            run = await one_tier_run(tier, args.requests, args.concurrency)
            print(f"round {round_ + 1} through the {run['through']}: "
                  f"{run['requests_per_s']} requests/s, p50 {run['p50_ms']} ms, "
                  f"p99 {run['p99_ms']} ms, failed {run['failed']}", flush=True)
            runs.append(run)
    tier_rate = statistics.median(r["requests_per_s"] for r in runs
                                  if r["through"] == "ingest tier")
    worker_rate = statistics.median(r["requests_per_s"] for r in runs
                                    if r["through"] == "worker")
    return {"requests": args.requests, "concurrency": args.concurrency, "runs": runs,
            "median_requests_per_s": {"ingest_tier": tier_rate, "worker": worker_rate},
            "ratio_tier_over_worker": round(tier_rate / worker_rate, 3)}


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    runs = []
    for round_ in range(args.rounds):
        order = (True, False) if round_ % 2 == 0 else (False, True)
        for ack_on_disk in order:
            run = await one_run(ack_on_disk, args.requests, args.concurrency)
            print(f"round {round_ + 1} ack_on_disk={int(ack_on_disk)}: "
                  f"{run['requests_per_s']} requests/s, p50 {run['p50_ms']} ms, "
                  f"p99 {run['p99_ms']} ms, failed {run['failed']}", flush=True)
            runs.append(run)
    on = statistics.median(r["requests_per_s"] for r in runs if r["ack_on_disk"])
    off = statistics.median(r["requests_per_s"] for r in runs if not r["ack_on_disk"])
    return {"requests": args.requests, "concurrency": args.concurrency, "runs": runs,
            "median_requests_per_s": {"on_disk": on, "broker_ack_only": off},
            "ratio_on_over_off": round(on / off, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.durable_ingest",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tier", action="store_true",
                        help="the worker's track API against up --ingest-port's tier")
    args = parser.parse_args(argv)
    summary = asyncio.run(tier_async(args) if args.tier else main_async(args))
    out = Path("bench/results") / (f"{'ingest-tier' if args.tier else 'durable'}-"
                                   f"{time.strftime('%Y%m%d-%H%M%S')}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1))
    medians = summary["median_requests_per_s"]
    if args.tier:
        print(f"median accepted requests/s: ingest tier {medians['ingest_tier']}, worker "
              f"{medians['worker']}; ratio {summary['ratio_tier_over_worker']}; results: {out}")
    else:
        print(f"median accepted requests/s: on disk {medians['on_disk']}, broker ack only "
              f"{medians['broker_ack_only']}; ratio {summary['ratio_on_over_off']}; "
              f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
