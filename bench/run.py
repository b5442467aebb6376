"""End-to-end benchmark of eventide on this machine.

    .venv/bin/python -m bench.run [--mode raw|http|both] [--events N] [--http-events N]
        [--people P] [--concurrency C] [--single-records] [--rate R] [--quick]

Starts its own embedded broker (Tansu, memory storage) on a free port and, for every run, a
fresh deployment (own topic prefix, consumer group, data dir, 8 partitions) with ONE
``eventide worker`` process. Then:

* **raw**: pre-generates N events for P people (every 10th is an exact resend of a random
  earlier event of the same person, which the worker must drop) and writes them straight to
  ``raw.events`` as batch envelopes (<= 500 items per record, grouped per partition;
  ``--single-records``: one bare item per record). By default everything is written at once and
  the worker drains a backlog; ``--rate R`` writes R events/s instead (steady state).
* **http**: C concurrent clients POST ``/api/v1/customers/{id}/events`` (Basic auth).

Both then poll the worker's ``/metrics`` every 100 ms until every unique event is processed and
committed and every resend dropped. End to end = events sent (resends included) / (first
produce or request -> all committed). Verdicts are counted before a batch commits, the latency
histogram after it, so "committed" waits for ``eventide_processing_latency_seconds_count`` to
reach the unique events. Processing latency (accept -> durable in history) is that histogram's
p50/p99 (bucket upper bounds, ~20% apart); HTTP latency is measured client-side. Peak RSS is the
worker's ``VmHWM`` (see :func:`rss_bytes`); CPU comes from ``/proc/<pid>/stat``. The bench
client, the broker and the worker share the machine's cores.

Prints a table and writes ``bench/results/<timestamp>.json``. Exit status 1 if a run failed or a
count was not exact; the work dir (worker and broker logs) is then kept and its path printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import re
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer
from ulid import ULID

from app.broker import EmbeddedBroker
from app.producer import partition_for
from app.topics import build_topics
from tests.support.harness import Deployment, Worker, free_port

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")

NAMES = ("purchase", "page_viewed", "added_to_cart", "signed_in", "checkout_started",
         "search", "email_clicked", "trial_started")
PLANS = ("free", "basic", "premium", "enterprise")
CAMPAIGNS = ("spring_sale", "newsletter_42", "retargeting", "organic", "partner_ref")
DATA_BYTES = 200

M_NEW = 'eventide_verdict_total{kind="new"}'
M_DUP = 'eventide_verdict_total{kind="duplicate"}'
M_REDELIVERY = 'eventide_verdict_total{kind="redelivery"}'
M_DEADLETTERS = "eventide_deadletters_total"
M_LATENCY_COUNT = "eventide_processing_latency_seconds_count"
M_P50 = 'eventide_processing_latency_seconds{quantile="0.5"}'
M_P99 = 'eventide_processing_latency_seconds{quantile="0.99"}'
M_PEAK_RSS = "eventide_peak_rss_bytes"
M_ROCKSDB = "eventide_rocksdb_size_bytes"


class BenchError(RuntimeError):
    """A run could not complete (worker died, timeout, wrong counts)."""


# --- workload ------------------------------------------------------------------------------------


@dataclass
class Workload:
    #: (person id, event id, item) in send order; a resend is a copy of its original's item.
    events: list[tuple[str, str, dict[str, Any]]]
    resends: int

    @property
    def unique(self) -> int:
        return len(self.events) - self.resends


def _data(rng: random.Random) -> dict[str, Any]:
    data = {"plan": rng.choice(PLANS), "amount": round(rng.uniform(1, 500), 2), "currency": "EUR",
            "sku": f"sku-{rng.randrange(10**6):06d}", "page": f"/products/{rng.randrange(10**4)}",
            "campaign": rng.choice(CAMPAIGNS), "quantity": rng.randrange(1, 10)}
    pad = DATA_BYTES - len(orjson.dumps(data)) - len(',"note":""')
    data["note"] = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(max(pad, 0)))
    return data


def generate(n: int, people: int, dup_ratio: float, seed: int) -> Workload:
    """n events; every (1/dup_ratio)-th one is an exact resend of a random earlier event."""
    rng = random.Random(seed)
    every = round(1 / dup_ratio) if dup_ratio > 0 else 0
    now_s = int(time.time())
    originals: list[tuple[str, str, dict[str, Any]]] = []
    events: list[tuple[str, str, dict[str, Any]]] = []
    resends = 0
    for i in range(n):
        if every and i % every == every - 1 and originals:
            events.append(rng.choice(originals))
            resends += 1
            continue
        person = f"person-{rng.randrange(people):07d}"
        event_id = str(ULID())
        item = {"op": "event", "id": event_id, "name": rng.choice(NAMES), "type": "event",
                "data": _data(rng), "timestamp": now_s, "customer": person}
        originals.append((person, event_id, item))
        events.append(originals[-1])
    return Workload(events, resends)


# --- processes -----------------------------------------------------------------------------------


def cpu_seconds(pid: int | None) -> float:
    """utime + stime of a process (0.0 if it is gone)."""
    if pid is None:
        return 0.0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int | None, field: str = "VmRSS") -> int:
    """Resident set size (``VmRSS``) or its high-water mark (``VmHWM``) of a process, in bytes.

    The worker's own ``eventide_peak_rss_bytes`` is ``ru_maxrss``, which Linux carries over from
    the process that spawned it (fork + exec keeps the parent's peak): spawned from this bench,
    which holds the whole workload, it would report the bench's peak. ``VmHWM`` belongs to the
    worker's own address space.
    """
    if pid is None:
        return 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def new_deployment(bootstrap: str, root: Path, partitions: int) -> Deployment:
    """The test harness's deployment (fresh names, credentials, port), with our partition count."""
    root.mkdir(parents=True, exist_ok=True)
    deployment = Deployment(bootstrap, root)
    deployment.settings = deployment.settings.replace(partitions=partitions)
    deployment.topics = build_topics(deployment.settings)
    return deployment


_METRIC_LINE = re.compile(r"^(\S+)\s+(\S+)$")


async def fetch_metrics(session: aiohttp.ClientSession, deployment: Deployment) -> dict[str, float]:
    async with session.get(deployment.url + "/metrics", headers=deployment.app_auth,
                           timeout=aiohttp.ClientTimeout(total=10)) as response:
        text = await response.text()
        if response.status != 200:
            raise BenchError(f"/metrics answered {response.status}: {text[:200]}")
    metrics = {}
    for line in text.splitlines():
        match = _METRIC_LINE.match(line.strip())
        if match:
            try:
                metrics[match[1]] = float(match[2])
            except ValueError:
                pass
    return metrics


async def wait_processed(deployment: Deployment, worker: Worker, *, new: int, duplicates: int,
                         timeout_s: float, stall_s: float) -> tuple[float, float, dict[str, float]]:
    """Poll /metrics until ``new`` events are durably processed and ``duplicates`` dropped.

    Returns the perf_counter times at which all verdicts were counted and at which all new events
    were committed (latency observed), and the last metrics.
    """
    counted_at: float | None = None
    start = last_progress = last_report = time.perf_counter()
    seen = -1.0
    async with aiohttp.ClientSession() as session:
        while True:
            assert worker.process is not None
            if worker.process.poll() is not None:
                raise BenchError(f"worker exited with {worker.process.returncode}")
            try:
                metrics = await fetch_metrics(session, deployment)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                metrics = None
            now = time.perf_counter()
            if metrics is not None:
                n_new, n_dup = metrics.get(M_NEW, 0), metrics.get(M_DUP, 0)
                durable = metrics.get(M_LATENCY_COUNT, 0)
                if n_new >= new and n_dup >= duplicates:
                    # Verdicts are counted before the batch commits; the latency histogram is
                    # fed after the commit, one observation per new event: that is "durable".
                    counted_at = counted_at or now
                    if durable >= new:
                        return counted_at, now, metrics
                progress = n_new + n_dup + durable + metrics.get(M_REDELIVERY, 0) \
                    + metrics.get(M_DEADLETTERS, 0)
                if progress != seen:
                    seen, last_progress = progress, now
                status = (f"new {n_new:,.0f}/{new:,} ({durable:,.0f} durable), "
                          f"duplicate {n_dup:,.0f}/{duplicates:,}, "
                          f"redelivery {metrics.get(M_REDELIVERY, 0):,.0f}, "
                          f"deadletters {metrics.get(M_DEADLETTERS, 0):,.0f}")
                if now - last_report >= 5:
                    last_report = now
                    print(f"    ... {now - start:5.1f}s  {status}", file=sys.stderr, flush=True)
            else:
                status = "/metrics not answering"
            if now - last_progress > stall_s:
                raise BenchError(f"no progress for {stall_s:.0f}s: {status}")
            if now - start > timeout_s:
                raise BenchError(f"not done after {timeout_s:g}s: {status}")
            await asyncio.sleep(0.1)


# --- loaders -------------------------------------------------------------------------------------


async def load_raw(bootstrap: str, topic: str, partitions: int, workload: Workload, *,
                   per_record: int, single: bool, rate: float | None = None,
                   tick_s: float = 0.05) -> tuple[float, float, int]:
    """Produce the workload to ``topic``; returns (first send, all acked) perf times, records.

    Without ``rate`` everything is written as fast as the producer goes (the worker then drains a
    backlog). With ``rate`` (events/s) the events due are written every ``tick_s``, each tick's
    items grouped into one envelope per partition, like the HTTP tier's linger does.
    """
    # Pre-encode every item without its closing brace; received_at is appended at produce time.
    encoded = [(person.encode(), partition_for(person.encode(), partitions),
                orjson.dumps(item)[:-1]) for person, _, item in workload.events]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                max_batch_size=1024 * 1024, max_request_size=8 * 1024 * 1024,
                                request_timeout_ms=30_000)
    await producer.start()
    futures: list[asyncio.Future] = []
    buffers: dict[int, tuple[bytes, list[bytes]]] = {}

    async def send_envelope(partition: int) -> None:
        key, parts = buffers.pop(partition)
        suffix = b',"received_at":%d}' % int(time.time() * 1000)
        value = b'{"items":[' + b",".join(p + suffix for p in parts) + b"]}"
        futures.append(await producer.send(topic, value, key=key, partition=partition))

    async def send(chunk: list[tuple[bytes, int, bytes]]) -> None:
        if single:
            for key, partition, prefix in chunk:
                value = prefix + b',"received_at":%d}' % int(time.time() * 1000)
                futures.append(await producer.send(topic, value, key=key, partition=partition))
            return
        for key, partition, prefix in chunk:
            buffer = buffers.setdefault(partition, (key, []))
            buffer[1].append(prefix)
            if len(buffer[1]) >= per_record:
                await send_envelope(partition)
        for partition in list(buffers):
            await send_envelope(partition)

    try:
        t_first = time.perf_counter()
        if rate is None:
            await send(encoded)
        else:
            sent, ticks = 0, 0
            while sent < len(encoded):
                due = min(len(encoded), int(rate * (time.perf_counter() - t_first)) + 1)
                if due > sent:
                    await send(encoded[sent:due])
                    sent = due
                ticks += 1
                await asyncio.sleep(max(0.0, t_first + ticks * tick_s - time.perf_counter()))
        await asyncio.gather(*futures)
        return t_first, time.perf_counter(), len(futures)
    finally:
        await producer.stop()


@dataclass
class HttpLoad:
    t_first: float
    t_last: float
    latencies: list[float]
    statuses: Counter
    accepted_ids: list[str]


async def load_http(deployment: Deployment, workload: Workload, concurrency: int) -> HttpLoad:
    requests = [(f"{deployment.url}/api/v1/customers/{person}/events", event_id,
                 orjson.dumps({k: item[k] for k in ("id", "name", "type", "data", "timestamp")}))
                for person, event_id, item in workload.events]
    headers = {**deployment.track_auth, "Content-Type": "application/json"}
    latencies: list[float] = []
    statuses: Counter = Counter()
    accepted: list[str] = []
    pending = iter(requests)

    async def client(session: aiohttp.ClientSession) -> None:
        for url, event_id, body in pending:  # one shared iterator: each client takes the next
            start = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    status: int | str = response.status
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                status = type(exc).__name__
            latencies.append(time.perf_counter() - start)
            statuses[status] += 1
            if status == 200:
                accepted.append(event_id)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        t_first = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        t_last = time.perf_counter()
    return HttpLoad(t_first, t_last, latencies, statuses, accepted)


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    rank = max(1, int(round(q * len(sorted_values) + 0.5)))  # nearest rank
    return sorted_values[min(rank, len(sorted_values)) - 1]


# --- one run -------------------------------------------------------------------------------------


@dataclass
class RunSpec:
    label: str
    mode: str                  # raw | http
    events: int
    single: bool = False


async def run_one(spec: RunSpec, args: argparse.Namespace, bootstrap: str, broker_pid: int | None,
                  root: Path, results: list[dict[str, Any]]) -> None:
    """Run one measurement; its result dict is appended to ``results`` first, filled as it goes."""
    result: dict[str, Any] = {"label": spec.label, "mode": spec.mode, "single_records": spec.single,
                              "people": args.people, "partitions": args.partitions,
                              "loadavg_before": list(os.getloadavg())}
    results.append(result)
    run_dir = root / re.sub(r"[^A-Za-z0-9]+", "-", spec.label).strip("-")
    deployment = new_deployment(bootstrap, run_dir, args.partitions)
    worker = Worker(deployment, name="worker")
    result["worker_log"] = str(worker.log_path)
    print(f"\n== {spec.label}: {spec.events:,} events, {args.people:,} people, "
          f"{args.partitions} partitions (load avg {os.getloadavg()[0]:.2f})", flush=True)
    try:
        workload = generate(spec.events, args.people, args.dup_ratio, args.seed)
        result.update(events=len(workload.events), unique=workload.unique,
                      resends=workload.resends)
        await deployment.create_topics()
        t_start = time.perf_counter()
        worker.start()
        await worker.wait_ready(timeout_s=120)
        result["worker_ready_s"] = round(time.perf_counter() - t_start, 2)
        print(f"   worker ready in {result['worker_ready_s']:.1f}s; loading", flush=True)
        assert worker.process is not None
        pid = worker.process.pid
        idle_rss = rss_bytes(pid)
        cpu0, broker_cpu0, self_cpu0 = cpu_seconds(pid), cpu_seconds(broker_pid), self_cpu_seconds()

        expected_new, expected_dup = workload.unique, workload.resends
        if spec.mode == "raw":
            t_first, t_loaded, records = await load_raw(
                bootstrap, deployment.topics.raw_events.name, args.partitions, workload,
                per_record=args.per_record, single=spec.single, rate=args.rate)
            result.update(records=records, rate=args.rate,
                          items_per_record=1 if spec.single else args.per_record)
        else:
            load = await load_http(deployment, workload, args.concurrency)
            t_first, t_loaded = load.t_first, load.t_last
            distinct = len(set(load.accepted_ids))
            expected_new, expected_dup = distinct, len(load.accepted_ids) - distinct
            latencies = sorted(load.latencies)
            result.update(concurrency=args.concurrency, accepted=len(load.accepted_ids),
                          statuses={str(k): v for k, v in load.statuses.items()},
                          accepted_per_s=round(len(load.accepted_ids) / (t_loaded - t_first), 1),
                          http_p50_s=percentile(latencies, 0.5),
                          http_p99_s=percentile(latencies, 0.99))
            if len(load.accepted_ids) != len(workload.events):
                print(f"   !! {len(workload.events) - len(load.accepted_ids):,} requests not "
                      f"accepted: {dict(load.statuses)}", flush=True)
        result["load_s"] = round(t_loaded - t_first, 3)
        print(f"   loaded in {t_loaded - t_first:.2f}s; waiting for the worker", flush=True)

        timeout_s = args.timeout or 120 + spec.events / 500
        t_counted, t_done, metrics = await wait_processed(deployment, worker, new=expected_new,
                                               duplicates=expected_dup, timeout_s=timeout_s,
                                               stall_s=args.stall_timeout)
        cpu = cpu_seconds(pid) - cpu0
        elapsed = t_done - t_first
        n_new, n_dup = int(metrics.get(M_NEW, 0)), int(metrics.get(M_DUP, 0))
        deadletters = int(metrics.get(M_DEADLETTERS, 0))
        result.update(
            e2e_s=round(elapsed, 3),
            verdicts_counted_s=round(t_counted - t_first, 3),
            events_per_s=round(len(workload.events) / elapsed, 1),
            expected_new=expected_new, expected_duplicates=expected_dup,
            processed_new=n_new, duplicates_dropped=n_dup,
            redeliveries=int(metrics.get(M_REDELIVERY, 0)), deadletters=deadletters,
            latency_count=int(metrics.get(M_LATENCY_COUNT, 0)),
            exact=(n_new == expected_new and n_dup == expected_dup and deadletters == 0
                   and int(metrics.get(M_LATENCY_COUNT, 0)) == expected_new),
            latency_p50_s=metrics.get(M_P50), latency_p99_s=metrics.get(M_P99),
            worker_cpu_s=round(cpu, 2),
            worker_cpu_us_per_event=round(cpu / len(workload.events) * 1e6, 1),
            broker_cpu_s=round(cpu_seconds(broker_pid) - broker_cpu0, 2),
            bench_cpu_s=round(self_cpu_seconds() - self_cpu0, 2),
            idle_rss_bytes=idle_rss,
            peak_rss_bytes=rss_bytes(pid, "VmHWM"),
            rss_end_bytes=rss_bytes(pid),
            metric_peak_rss_bytes=int(metrics.get(M_PEAK_RSS, 0)),
            rocksdb_size_bytes=int(metrics.get(M_ROCKSDB, 0)),
            broker_rss_bytes=rss_bytes(broker_pid),
            raw_records_in=int(metrics.get(
                f'eventide_records_in_total{{topic="{deployment.topics.raw_events.name}"}}', 0)),
            person_records_in=int(metrics.get(
                f'eventide_records_in_total{{topic="{deployment.topics.person_events.name}"}}',
                0)),
            data_dir_bytes=dir_bytes(deployment.settings.data_dir),
            worker_metrics=metrics,
        )
        print(f"   done: {result['events_per_s']:,.0f} events/s end to end "
              f"({elapsed:.2f}s), exact={result['exact']}", flush=True)
        if not result["exact"]:
            raise BenchError(f"counts not exact: new {n_new}/{expected_new}, duplicate "
                             f"{n_dup}/{expected_dup}, deadletters {deadletters}")
        result["ok"] = True
    except BaseException as exc:
        result["ok"] = False
        result["error"] = f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)):
            print(f"\n!! {spec.label} failed: {result['error']}\n   worker log: {worker.log_path}"
                  f"\n   --- last lines ---\n{worker.tail(40)}\n   ---", file=sys.stderr,
                  flush=True)
        raise
    finally:
        worker.stop()


# --- report --------------------------------------------------------------------------------------


def _mb(value: Any) -> str:
    return "-" if value is None else f"{value / 1e6:,.0f} MB"


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value * 1000:,.1f} ms"


def _n(value: Any, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


ROWS: list[tuple[str, Any]] = [
    ("events sent (incl. resends)", lambda r: _n(r.get("events"))),
    ("people", lambda r: _n(r.get("people"))),
    ("raw write rate", lambda r: "-" if r["mode"] != "raw"
        else "as fast as possible" if not r.get("rate") else f"{r['rate']:,.0f} events/s"),
    ("raw / person records consumed", lambda r: f"{_n(r.get('raw_records_in'))} / "
                                                f"{_n(r.get('person_records_in'))}"),
    ("HTTP clients", lambda r: _n(r.get("concurrency"))),
    ("load time", lambda r: _n(r.get("load_s"), 2) + " s"),
    ("accepted requests/s", lambda r: _n(r.get("accepted_per_s"))),
    ("HTTP latency p50 / p99 (client)",
     lambda r: "-" if r["mode"] != "http" else f"{_ms(r.get('http_p50_s'))} / "
                                                f"{_ms(r.get('http_p99_s'))}"),
    ("first send -> all verdicts counted", lambda r: _n(r.get("verdicts_counted_s"), 2) + " s"),
    ("first send -> all committed", lambda r: _n(r.get("e2e_s"), 2) + " s"),
    ("END-TO-END events/s", lambda r: _n(r.get("events_per_s"))),
    ("unique events processed", lambda r: f"{_n(r.get('processed_new'))} / "
                                          f"{_n(r.get('expected_new'))}"),
    ("duplicates dropped", lambda r: f"{_n(r.get('duplicates_dropped'))} / "
                                     f"{_n(r.get('expected_duplicates'))}"),
    ("dead letters", lambda r: _n(r.get("deadletters"))),
    ("counts exact", lambda r: "yes" if r.get("exact") else "NO"),
    ("processing latency p50 / p99", lambda r: f"{_ms(r.get('latency_p50_s'))} / "
                                               f"{_ms(r.get('latency_p99_s'))}"),
    ("worker CPU per event", lambda r: _n(r.get("worker_cpu_us_per_event"), 1) + " µs"),
    ("CPU s worker / broker / bench", lambda r: f"{_n(r.get('worker_cpu_s'), 1)} / "
                                                f"{_n(r.get('broker_cpu_s'), 1)} / "
                                                f"{_n(r.get('bench_cpu_s'), 1)}"),
    ("worker RSS ready / end", lambda r: f"{_mb(r.get('idle_rss_bytes'))} / "
                                         f"{_mb(r.get('rss_end_bytes'))}"),
    ("WORKER PEAK RSS (VmHWM)", lambda r: _mb(r.get("peak_rss_bytes"))),
    ("RocksDB dir at end (incl. WAL)", lambda r: _mb(r.get("data_dir_bytes"))),
    ("broker RSS (whole bench so far)", lambda r: _mb(r.get("broker_rss_bytes"))),
    ("load avg before run", lambda r: _n(r["loadavg_before"][0], 2)),
]


def print_table(runs: list[dict[str, Any]]) -> None:
    done = [r for r in runs if "events_per_s" in r]
    if not done:
        return
    headers = ["", *(r["label"] for r in done)]
    body = [[name, *(render(r) for r in done)] for name, render in ROWS]
    widths = [max(len(row[i]) for row in [headers, *body]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    print()
    print(line(headers))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in body:
        print(line(row))


# --- main ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=("raw", "http", "both"), default="both")
    parser.add_argument("--events", type=int, help="raw-mode events (default 200,000)")
    parser.add_argument("--http-events", type=int, help="http-mode events (default 50,000)")
    parser.add_argument("--people", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64, help="HTTP clients (default 64)")
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
    return args


def plan(args: argparse.Namespace) -> list[RunSpec]:
    runs = []
    if args.mode in ("raw", "both"):
        label = "raw (1 item/record)" if args.single_records else "raw"
        if args.rate:
            label += f" @ {args.rate:,.0f}/s"
        runs.append(RunSpec(label, "raw", args.events, single=args.single_records))
    if args.mode in ("http", "both"):
        runs.append(RunSpec("http", "http", args.http_events))
    return runs


async def run_all(args: argparse.Namespace, bootstrap: str, broker_pid: int | None, root: Path,
                  results: list[dict[str, Any]]) -> None:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    for spec in plan(args):
        await run_one(spec, args, bootstrap, broker_pid, root, results)


def machine() -> dict[str, Any]:
    import aiokafka
    import faust

    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "faust": faust.__version__,
            "aiokafka": aiokafka.__version__, "loadavg": list(os.getloadavg())}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root = Path(tempfile.mkdtemp(prefix=f"eventide-bench-{stamp}-"))
    broker = EmbeddedBroker(free_port(), log_path=root / "broker.log")
    results: list[dict[str, Any]] = []
    failed = True
    error: str | None = None
    print(f"eventide bench: mode {args.mode}, work dir {root}", flush=True)
    try:
        broker.start()
        broker_pid = broker._process.pid if broker._process is not None else None
        asyncio.run(run_all(args, broker.bootstrap_servers, broker_pid, root, results))
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
