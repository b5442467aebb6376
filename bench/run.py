"""End-to-end benchmark of eventide on this machine.

    .venv/bin/python -m bench.run [--mode raw|http|both|segments] [--events N] [--http-events N]
        [--people P] [--concurrency C] [--single-records] [--rate R] [--segments N] [--quick]

Starts its own embedded broker (Tansu, memory storage) on a free port and, for every run, a
fresh deployment (own topic prefix, consumer group, data dir, 8 partitions) with ONE
``eventide worker`` process. Then:

* **raw**: pre-generates N events for P people (every 10th is an exact resend of a random
  earlier event of the same person, which the worker must drop) and writes them straight to
  ``raw.events`` as batch envelopes (<= 500 items per record, grouped per partition;
  ``--single-records``: one bare item per record). By default everything is written at once and
  the worker drains a backlog; ``--rate R`` writes R events/s instead (steady state).
* **http**: C concurrent clients POST ``/api/v1/customers/{id}/events`` (Basic auth).
* **segments** (``--segments N``, any mode; ``--mode segments`` is a raw run preset to 1,000
  definitions and 100,000 people, ``--quick``: 100 definitions): before loading, N segment
  definitions are PUT to ``/api/v1/segments/{id}`` (bearer app key) and the run waits until
  ``GET /api/v1/segments`` shows every one ``live``. Event names are then drawn from a pool of
  ``e0..e999`` that most definitions mention one or two of (so an event touches a few segments);
  definitions vary: plain, ``within`` windows, ``where`` on ``items[].type``/``total``, ``not``,
  ``count``, attribute conditions; 10% of events are back-dated by up to 2 h so that windows
  close during the run. A plain aiokafka consumer reads ``segments.changes`` throughout; for every
  change record whose ``cause`` is an event id the bench sent, accept -> change is the record's
  timestamp (CreateTime: set by the worker's producer when it produced the change) minus that
  event's ``received_at`` (raw mode only: the bench sets it; in http mode the server does). Also
  reported: the change records read (by kind and cause) and ``eventide_segment_evaluations_total``
  per unique event. Identifies are not sent, so attribute conditions see empty profiles.

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
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
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
M_EVALUATIONS = "eventide_segment_evaluations_total"
M_ENTERED = 'eventide_segment_changes_total{kind="entered"}'
M_EXITED = 'eventide_segment_changes_total{kind="exited"}'

#: Event names of the segments workload: definitions mention one or two of these each.
NAME_POOL = tuple(f"e{i}" for i in range(1000))
ITEM_TYPES = ("monitor", "hdmi", "desk", "chair", "lamp")


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


def _segment_data(rng: random.Random) -> dict[str, Any]:
    """Event data for the segments workload: what ``where`` clauses look at, padded like _data."""
    data: dict[str, Any] = {
        "items": [{"type": rng.choice(ITEM_TYPES), "price": rng.randrange(5, 400)}
                  for _ in range(rng.randrange(0, 3))],
        "total": rng.randrange(0, 500), "plan": rng.choice(PLANS)}
    pad = DATA_BYTES - len(orjson.dumps(data)) - len(',"note":""')
    data["note"] = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(max(pad, 0)))
    return data


def generate(n: int, people: int, dup_ratio: float, seed: int, *, segments: bool = False,
             backdated_ratio: float = 0.10, backdate_max_s: int = 7_200) -> Workload:
    """n events; every (1/dup_ratio)-th one is an exact resend of a random earlier event.

    ``segments``: names from :data:`NAME_POOL`, data with ``items``/``total``, and a share of the
    events back-dated (so that ``within`` windows close while the bench runs).
    """
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
        if segments:
            backdate = rng.randrange(backdate_max_s) if rng.random() < backdated_ratio else 0
            item = {"op": "event", "id": event_id, "name": rng.choice(NAME_POOL),
                    "type": "event", "data": _segment_data(rng), "timestamp": now_s - backdate,
                    "customer": person}
        else:
            item = {"op": "event", "id": event_id, "name": rng.choice(NAMES), "type": "event",
                    "data": _data(rng), "timestamp": now_s, "customer": person}
        originals.append((person, event_id, item))
        events.append(originals[-1])
    return Workload(events, resends)


# --- segments ------------------------------------------------------------------------------------


def segment_definitions(n: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """n varied definitions over :data:`NAME_POOL` (deterministic for a seed).

    Shares: 35% plain ``event``; 20% ``event`` + ``within``; 15% ``where`` on ``items[].type``;
    10% ``all`` [event within, ``not`` other event within]; 10% ``count`` >= 2 with an attribute
    condition; 5% ``any`` [attribute, event ``where total``]; 5% attribute only (never touched by
    events: evaluated only when the definition is activated).
    """
    rng = random.Random(seed * 7919 + n)
    definitions = []
    for i in range(n):
        a, b = rng.sample(NAME_POOL, 2)
        window = rng.choice(("30m", "1h", "2h", "1d", "7d"))
        kind = rng.random()
        if kind < 0.35:
            match: dict[str, Any] = {"event": a}
        elif kind < 0.55:
            match = {"event": a, "within": window}
        elif kind < 0.70:
            match = {"event": a, "where": [{"path": "items[].type", "op": "eq",
                                            "value": rng.choice(ITEM_TYPES)}],
                     "count": {"gte": 1}, "within": window}
        elif kind < 0.80:
            match = {"all": [{"event": a, "within": window},
                             {"not": {"event": b, "within": window}}]}
        elif kind < 0.90:
            match = {"all": [{"event": a, "count": {"gte": 2}},
                             {"attribute": "plan", "op": "neq", "value": "enterprise"}]}
        elif kind < 0.95:
            match = {"any": [{"attribute": "plan", "op": "eq", "value": "pro"},
                             {"event": a, "where": [{"path": "total", "op": "gt",
                                                     "value": rng.randrange(100, 450)}]}]}
        else:
            match = {"attribute": rng.choice(("plan", "city", "age")), "op": "exists"}
        definitions.append((f"seg-{i:05d}", {"name": f"bench segment {i}", "match": match}))
    return definitions


async def put_segments(deployment: Deployment, definitions: list[tuple[str, dict[str, Any]]],
                       concurrency: int = 32) -> None:
    """PUT every definition (``concurrency`` at a time: each PUT waits for the catalog)."""
    pending = iter(definitions)
    headers = {**deployment.app_auth, "Content-Type": "application/json"}

    async def client(session: aiohttp.ClientSession) -> None:
        for segment_id, doc in pending:
            async with session.put(f"{deployment.url}/api/v1/segments/{segment_id}",
                                   data=orjson.dumps(doc), headers=headers) as response:
                body = await response.read()
                if response.status != 200:
                    raise BenchError(f"PUT segment {segment_id}: {response.status} "
                                     f"{body[:200]!r}")

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)))


async def wait_segments_live(deployment: Deployment, n: int, timeout_s: float) -> None:
    """Poll ``GET /api/v1/segments`` until it lists ``n`` segments, every one ``live``."""
    deadline = time.perf_counter() + timeout_s
    last = ""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        while time.perf_counter() < deadline:
            async with session.get(deployment.url + "/api/v1/segments",
                                   headers=deployment.app_auth) as response:
                if response.status == 200:
                    segments = (await response.json())["segments"]
                    live = sum(1 for s in segments if s["state"] == "live")
                    if len(segments) == n and live == n:
                        return
                    last = f"{live:,} live of {len(segments):,} listed"
                else:
                    last = f"status {response.status}"
            await asyncio.sleep(0.5)
    raise BenchError(f"segments not live after {timeout_s:g}s: {last}")


class ChangeWatcher:
    """Reads ``segments.changes`` (every partition, from the start) while the bench runs."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                          enable_auto_commit=False,
                                          auto_offset_reset="earliest",
                                          fetch_max_wait_ms=50)  # see app.wiring: Tansu
        self._tps = [TopicPartition(topic, p) for p in range(partitions)]
        self._task: asyncio.Task | None = None
        self._stop = asyncio.Event()
        #: (cause, change, record timestamp ms, timestamp type) per change record read
        self.changes: list[tuple[str, str, int, int]] = []

    async def start(self) -> None:
        await self._consumer.start()
        self._consumer.assign(self._tps)
        await self._consumer.seek_to_beginning(*self._tps)
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while not self._stop.is_set():
            await self._fetch()

    async def _fetch(self) -> None:
        fetched = await self._consumer.getmany(timeout_ms=100, max_records=10_000)
        for records in fetched.values():
            for record in records:
                value = orjson.loads(record.value)
                self.changes.append((value["cause"], value["change"], record.timestamp,
                                     record.timestamp_type))

    async def stop(self, drain_timeout_s: float = 30.0) -> None:
        """Read up to the current end of every partition, then stop."""
        self._stop.set()
        try:
            if self._task is not None:
                await self._task
            deadline = time.perf_counter() + drain_timeout_s
            pending = set(self._tps)
            while pending and time.perf_counter() < deadline:
                await self._fetch()
                for tp in list(pending):
                    highwater = self._consumer.highwater(tp)
                    if highwater is not None and await self._consumer.position(tp) >= highwater:
                        pending.discard(tp)
        finally:
            await self._consumer.stop()


def change_latencies(changes: list[tuple[str, str, int, int]],
                     accepted_ms: dict[str, int]) -> list[float]:
    """Seconds from accept to change record, for the changes caused by an event we sent."""
    return sorted((stamp - accepted_ms[cause]) / 1000 for cause, _, stamp, _ in changes
                  if cause in accepted_ms)


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
                   tick_s: float = 0.05, accepted_ms: dict[str, int] | None = None
                   ) -> tuple[float, float, int]:
    """Produce the workload to ``topic``; returns (first send, all acked) perf times, records.

    Without ``rate`` everything is written as fast as the producer goes (the worker then drains a
    backlog). With ``rate`` (events/s) the events due are written every ``tick_s``, each tick's
    items grouped into one envelope per partition, like the HTTP tier's linger does.
    ``accepted_ms`` receives each event id's (first) ``received_at``.
    """
    # Pre-encode every item without its closing brace; received_at is appended at produce time.
    encoded = [(person.encode(), partition_for(person.encode(), partitions),
                orjson.dumps(item)[:-1]) for person, _, item in workload.events]
    ids = {prefix: event_id for (_, event_id, _), (_, _, prefix)
           in zip(workload.events, encoded)} if accepted_ms is not None else {}

    def accept(prefix: bytes, at_ms: int) -> None:
        if accepted_ms is not None:
            accepted_ms.setdefault(ids[prefix], at_ms)

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                max_batch_size=1024 * 1024, max_request_size=8 * 1024 * 1024,
                                request_timeout_ms=30_000)
    await producer.start()
    futures: list[asyncio.Future] = []
    buffers: dict[int, tuple[bytes, list[bytes]]] = {}

    async def send_envelope(partition: int) -> None:
        key, parts = buffers.pop(partition)
        at_ms = int(time.time() * 1000)
        suffix = b',"received_at":%d}' % at_ms
        value = b'{"items":[' + b",".join(p + suffix for p in parts) + b"]}"
        for part in parts:
            accept(part, at_ms)
        futures.append(await producer.send(topic, value, key=key, partition=partition))

    async def send(chunk: list[tuple[bytes, int, bytes]]) -> None:
        if single:
            for key, partition, prefix in chunk:
                at_ms = int(time.time() * 1000)
                accept(prefix, at_ms)
                value = prefix + b',"received_at":%d}' % at_ms
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
                              "segments": args.segments,
                              "loadavg_before": list(os.getloadavg())}
    results.append(result)
    run_dir = root / re.sub(r"[^A-Za-z0-9]+", "-", spec.label).strip("-")
    deployment = new_deployment(bootstrap, run_dir, args.partitions)
    worker = Worker(deployment, name="worker")
    result["worker_log"] = str(worker.log_path)
    print(f"\n== {spec.label}: {spec.events:,} events, {args.people:,} people, "
          f"{args.segments:,} segments, {args.partitions} partitions "
          f"(load avg {os.getloadavg()[0]:.2f})", flush=True)
    watcher: ChangeWatcher | None = None
    try:
        workload = generate(spec.events, args.people, args.dup_ratio, args.seed,
                            segments=args.segments > 0)
        result.update(events=len(workload.events), unique=workload.unique,
                      resends=workload.resends)
        await deployment.create_topics()
        t_start = time.perf_counter()
        worker.start()
        await worker.wait_ready(timeout_s=120)
        result["worker_ready_s"] = round(time.perf_counter() - t_start, 2)
        print(f"   worker ready in {result['worker_ready_s']:.1f}s", flush=True)
        assert worker.process is not None
        pid = worker.process.pid
        accepted_ms: dict[str, int] | None = None
        if args.segments:
            definitions = segment_definitions(args.segments, args.seed)
            t_put = time.perf_counter()
            await put_segments(deployment, definitions)
            t_put_done = time.perf_counter()
            await wait_segments_live(deployment, len(definitions), timeout_s=300)
            result.update(segments_put_s=round(t_put_done - t_put, 2),
                          segments_live_s=round(time.perf_counter() - t_put, 2))
            print(f"   {len(definitions):,} segments PUT in {result['segments_put_s']:.1f}s, "
                  f"all live after {result['segments_live_s']:.1f}s", flush=True)
            watcher = ChangeWatcher(bootstrap, deployment.topics.segment_changes.name,
                                    args.partitions)
            await watcher.start()
            accepted_ms = {} if spec.mode == "raw" else None
        print("   loading", flush=True)
        idle_rss = rss_bytes(pid)
        cpu0, broker_cpu0, self_cpu0 = cpu_seconds(pid), cpu_seconds(broker_pid), self_cpu_seconds()
        evaluations0 = 0.0
        if args.segments:
            async with aiohttp.ClientSession() as session:
                evaluations0 = (await fetch_metrics(session, deployment)).get(M_EVALUATIONS, 0.0)

        expected_new, expected_dup = workload.unique, workload.resends
        if spec.mode == "raw":
            t_first, t_loaded, records = await load_raw(
                bootstrap, deployment.topics.raw_events.name, args.partitions, workload,
                per_record=args.per_record, single=spec.single, rate=args.rate,
                accepted_ms=accepted_ms)
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
        if watcher is not None:
            await watcher.stop()
            changes, watcher = watcher.changes, None
            evaluations = metrics.get(M_EVALUATIONS, 0.0) - evaluations0
            kinds = Counter(change for _, change, _, _ in changes)
            # An event's id has no colon; other causes are "timer:<due>", "definition:<v>", ...
            causes = Counter(cause.split(":", 1)[0] if ":" in cause else "event"
                             for cause, _, _, _ in changes)
            lags = change_latencies(changes, accepted_ms) if accepted_ms is not None else []
            result.update(
                change_records=len(changes),
                change_records_by_kind=dict(kinds),
                change_records_by_cause=dict(causes),
                change_timestamp_types=sorted({t for _, _, _, t in changes}),
                changes_counted_by_worker=int(metrics.get(M_ENTERED, 0)
                                              + metrics.get(M_EXITED, 0)),
                event_caused_changes=len(lags) if accepted_ms is not None else None,
                accept_to_change_p50_s=percentile(lags, 0.5),
                accept_to_change_p99_s=percentile(lags, 0.99),
                accept_to_change_max_s=lags[-1] if lags else None,
                segment_evaluations=int(evaluations),
                evaluations_per_event=round(evaluations / max(n_new, 1), 3),
            )
            print(f"   segments: {len(changes):,} change records "
                  f"({_n(result['event_caused_changes'])} caused by our events), "
                  f"accept -> change p50/p99 "
                  f"{_ms(result['accept_to_change_p50_s'])} / "
                  f"{_ms(result['accept_to_change_p99_s'])}, "
                  f"{result['evaluations_per_event']:.2f} evaluations per event", flush=True)
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
        if watcher is not None:
            await asyncio.gather(watcher.stop(drain_timeout_s=0), return_exceptions=True)
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
    ("segment definitions (PUT / all live)",
     lambda r: "-" if not r.get("segments") else
     f"{_n(r['segments'])} ({_n(r.get('segments_put_s'), 1)} s / "
     f"{_n(r.get('segments_live_s'), 1)} s)"),
    ("change records (entered / exited)",
     lambda r: "-" if not r.get("segments") else
     f"{_n(r.get('change_records'))} ({_n(r.get('change_records_by_kind', {}).get('entered'))}"
     f" / {_n(r.get('change_records_by_kind', {}).get('exited', 0))})"),
    ("change records caused by our events", lambda r: "-" if not r.get("segments")
        else _n(r.get("event_caused_changes"))),
    ("ACCEPT -> CHANGE RECORD p50 / p99",
     lambda r: "-" if not r.get("segments") else
     f"{_ms(r.get('accept_to_change_p50_s'))} / {_ms(r.get('accept_to_change_p99_s'))}"),
    ("segment evaluations (per event)",
     lambda r: "-" if not r.get("segments") else
     f"{_n(r.get('segment_evaluations'))} ({_n(r.get('evaluations_per_event'), 2)})"),
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
    parser.add_argument("--mode", choices=("raw", "http", "both", "segments"), default="both",
                        help="segments: a raw run with --segments 1,000 and --people 100,000 "
                             "unless given (--quick: 100 segments)")
    parser.add_argument("--events", type=int, help="raw-mode events (default 200,000)")
    parser.add_argument("--http-events", type=int, help="http-mode events (default 50,000)")
    parser.add_argument("--people", type=int,
                        help="default 10,000 (100,000 in --mode segments)")
    parser.add_argument("--segments", type=int,
                        help="segment definitions PUT before loading (default 0; 1,000 in --mode "
                             "segments, 100 with --quick)")
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
    if args.segments is None:
        args.segments = 0 if args.mode != "segments" else 100 if args.quick else 1_000
    if args.people is None:
        args.people = 100_000 if args.mode == "segments" and not args.quick else 10_000
    return args


def plan(args: argparse.Namespace) -> list[RunSpec]:
    runs = []
    extra = f" + {args.segments:,} segments" if args.segments else ""
    if args.mode in ("raw", "both"):
        label = "raw (1 item/record)" if args.single_records else "raw"
        if args.rate:
            label += f" @ {args.rate:,.0f}/s"
        runs.append(RunSpec(label + extra, "raw", args.events, single=args.single_records))
    if args.mode in ("http", "both"):
        runs.append(RunSpec("http" + extra, "http", args.http_events))
    if args.mode == "segments":
        label = f"raw + {args.segments:,} segments"
        if args.rate:
            label += f" @ {args.rate:,.0f}/s"
        runs.append(RunSpec(label, "raw", args.events, single=args.single_records))
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
