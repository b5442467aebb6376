"""End-to-end benchmark of eventide on this machine.

    .venv/bin/python -m bench.run [--mode raw|http|both|segments] [--events N] [--http-events N]
        [--people P] [--concurrency C] [--single-records] [--rate R] [--segments N] [--quick]
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
  ``/api/v1/customers/{id}`` for the identifies, spread over the workers' APIs.
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
~1.7x apart), over the buckets summed across the workers; each worker's own is kept too. HTTP latency is
measured client-side. Peak RSS is each worker's ``VmHWM`` (see :func:`rss_bytes`); CPU comes
from ``/proc/<pid>/stat``. The bench client, the broker and the workers share the machine's
cores; the 1-minute load average is recorded before and after every run.

``--recovery``: after a run, every worker is stopped (SIGTERM) and worker 1 alone is restarted
with its data directory intact (time to ``/healthz`` 200: process start, group join, nothing to
recover in a 1-worker deployment) and stopped; the changelog topics are then read with a plain
consumer to their fetch high-watermarks (records counted), and worker 1 is restarted after its
data directory was deleted (every partition rebuilt from the changelogs). Recovery rate = changelog
records / time to ready; the net rate subtracts the intact restart's time. The records the
worker itself applied are read from its log ("recovered N changelog records"), and the segment
member counts after recovery are compared with those before the stop.

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
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from ulid import ULID

from app.broker import EmbeddedBroker
from app.metrics import histogram_quantile
from app.producer import partition_for
from app.topics import build_topics
from app.testing.harness import Deployment, Worker, free_port
from tables.kafka_io import drop_finished, fetch_to_end

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")

NAMES = ("purchase", "page_viewed", "added_to_cart", "signed_in", "checkout_started",
         "search", "email_clicked", "trial_started")
PLANS = ("free", "basic", "premium", "enterprise")
CAMPAIGNS = ("spring_sale", "newsletter_42", "retargeting", "organic", "partner_ref")
#: ``plan`` values identifies set: segment definitions test ``plan`` eq "pro", neq "enterprise",
#: exists; ``city`` exists.
IDENTIFY_PLANS = (*PLANS, "pro")
CITIES = ("Berlin", "Lisbon", "Oslo", "Lyon", "Turin", "Gdansk", "Porto", "Ghent")
DATA_BYTES = 200

M_NEW = 'eventide_verdict_total{kind="new"}'
M_DUP = 'eventide_verdict_total{kind="duplicate"}'
M_REDELIVERY = 'eventide_verdict_total{kind="redelivery"}'
M_DEADLETTERS = "eventide_deadletters_total"
M_LATENCY_COUNT = "eventide_processing_latency_seconds_count"
M_LATENCY_BUCKET = "eventide_processing_latency_seconds_bucket"
M_PEAK_RSS = "eventide_peak_rss_bytes"
M_ROCKSDB = "eventide_rocksdb_size_bytes"
M_LOOP_LAG_MAX = "eventide_event_loop_lag_max_seconds"
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
    #: (person id, item id, item) in send order; a resend is a copy of its original's item.
    #: Items are events and (``identify_ids``) identifies.
    events: list[tuple[str, str, dict[str, Any]]]
    resends: int
    identify_ids: set[str] = field(default_factory=set)

    @property
    def unique(self) -> int:
        """Unique items: what the dedup verdict ``new`` counts."""
        return len(self.events) - self.resends

    @property
    def identifies(self) -> int:
        return len(self.identify_ids)

    @property
    def unique_events(self) -> int:
        """Unique events: what the processing latency histogram observes."""
        return self.unique - self.identifies


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
             identify_ratio: float = 0.0, backdated_ratio: float = 0.10,
             backdate_max_s: int = 7_200) -> Workload:
    """n items; every (1/dup_ratio)-th one is an exact resend of a random earlier event.

    ``identify_ratio`` of the other items are identifies setting ``plan`` and ``city``.
    ``segments``: names from :data:`NAME_POOL`, data with ``items``/``total``, and a share of the
    events back-dated (so that ``within`` windows close while the bench runs).
    """
    rng = random.Random(seed)
    every = round(1 / dup_ratio) if dup_ratio > 0 else 0
    now_s = int(time.time())
    originals: list[tuple[str, str, dict[str, Any]]] = []
    events: list[tuple[str, str, dict[str, Any]]] = []
    identify_ids: set[str] = set()
    resends = 0
    for i in range(n):
        if every and i % every == every - 1 and originals:
            events.append(rng.choice(originals))
            resends += 1
            continue
        person = f"person-{rng.randrange(people):07d}"
        event_id = str(ULID())
        if identify_ratio and rng.random() < identify_ratio:
            item = {"op": "identify", "id": event_id, "customer": person,
                    "attributes": {"plan": rng.choice(IDENTIFY_PLANS),
                                   "city": rng.choice(CITIES)},
                    "anonymous_id": None, "timestamp": None, "update": False}
            identify_ids.add(event_id)
            events.append((person, event_id, item))  # never resent: resends copy events
            continue
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
    return Workload(events, resends, identify_ids)


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
                await drop_finished(self._consumer, pending)
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


async def fetch_metrics(session: aiohttp.ClientSession, deployment: Deployment,
                        url: str | None = None) -> dict[str, float]:
    """One worker's ``/metrics`` (``url``: that worker's API; default the first worker's)."""
    async with session.get((url or deployment.url) + "/metrics", headers=deployment.app_auth,
                           timeout=aiohttp.ClientTimeout(total=10)) as response:
        text = await response.text()
        if response.status != 200:
            raise BenchError(f"/metrics answered {response.status}: {text[:200]}")
    return parse_metrics(text)


def parse_metrics(text: str) -> dict[str, float]:
    """Series name (with its labels, as written) → value, for every sample line of a scrape."""
    metrics = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = _METRIC_LINE.match(line.strip())
        if match:
            try:
                metrics[match[1]] = float(match[2])
            except ValueError:
                pass
    return metrics


def sum_metrics(per_worker: list[dict[str, float]]) -> dict[str, float]:
    """Counters, gauges and histogram buckets summed across workers (summed buckets are the
    histogram of all the workers' observations: see :func:`latency_quantile`)."""
    total: dict[str, float] = {}
    for metrics in per_worker:
        for name, value in metrics.items():
            total[name] = total.get(name, 0.0) + value
    return total


_LE = re.compile(r'\{le="([^"]+)"\}$')


def latency_quantile(metrics: dict[str, float], q: float,
                     histogram: str = M_LATENCY_BUCKET) -> float | None:
    """The q-quantile of a histogram in scraped (or summed) metrics, from its ``_bucket{le}``
    lines as Prometheus's ``histogram_quantile`` estimates it; None without observations."""
    buckets = []
    for name, value in metrics.items():
        if name.startswith(histogram + "{"):
            match = _LE.search(name)
            if match:
                buckets.append((float(match[1]), value))  # float("+Inf") is inf
    return histogram_quantile(q, buckets)


def metric_labels(name: str) -> dict[str, str]:
    """The labels of a scraped series name (``m{a="1",b="2"}``), in any order."""
    if "{" not in name:
        return {}
    return dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"',
                           name[name.index("{") + 1:name.rindex("}")]))


async def fetch_all_metrics(session: aiohttp.ClientSession, deployment: Deployment,
                            workers: list[Worker]) -> list[dict[str, float]]:
    return list(await asyncio.gather(*(fetch_metrics(session, deployment, w.url)
                                       for w in workers)))


def _check_alive(workers: list[Worker]) -> None:
    for worker in workers:
        assert worker.process is not None
        if worker.process.poll() is not None:
            raise BenchError(f"worker {worker.url} exited with {worker.process.returncode}")


async def wait_group_settled(deployment: Deployment, workers: list[Worker], *,
                             timeout_s: float = 90.0) -> float:
    """Wait until every worker is ready on three polls in a row (0.5 s apart) and every
    ``person.events`` partition is assigned to exactly one of them (per ``eventide_consumer_lag``
    labels). Returns the seconds waited; raises after ``timeout_s``."""
    start = time.perf_counter()
    person_topic = deployment.topics.person_events.name
    wanted = list(range(deployment.settings.partitions))
    streak, last = 0, ""
    async with aiohttp.ClientSession() as session:
        while time.perf_counter() - start < timeout_s:
            _check_alive(workers)
            ok = True
            try:
                statuses = []
                for worker in workers:
                    async with session.get(worker.url + "/healthz") as response:
                        statuses.append(response.status)
                owned: list[int] = []
                for metrics in await fetch_all_metrics(session, deployment, workers):
                    owned += [int(labels["partition"]) for labels in
                              (metric_labels(name) for name in metrics
                               if name.startswith("eventide_consumer_lag{"))
                              if labels.get("topic") == person_topic]
                if statuses != [200] * len(workers) or sorted(owned) != wanted:
                    ok = False
                    last = f"healthz {statuses}, {person_topic} partitions owned {sorted(owned)}"
            except (aiohttp.ClientError, asyncio.TimeoutError, BenchError) as exc:
                ok, last = False, repr(exc)
            streak = streak + 1 if ok else 0
            if streak >= 3:
                return time.perf_counter() - start
            await asyncio.sleep(0.5)
    raise BenchError(f"consumer group not settled after {timeout_s:g}s: {last}")


async def wait_processed(deployment: Deployment, workers: list[Worker], *, new: int, durable: int,
                         duplicates: int, timeout_s: float, stall_s: float
                         ) -> tuple[float, float, dict[str, float], list[dict[str, float]]]:
    """Poll every worker's /metrics until, summed over the workers, ``new`` items are judged new,
    ``duplicates`` dropped, and ``durable`` events durably processed (latency observed).

    Returns the perf_counter times at which all verdicts were counted and at which all new events
    were committed, the summed metrics and each worker's.
    """
    counted_at: float | None = None
    start = last_progress = last_report = time.perf_counter()
    seen = -1.0
    async with aiohttp.ClientSession() as session:
        while True:
            _check_alive(workers)
            try:
                per_worker: list[dict[str, float]] | None = await fetch_all_metrics(
                    session, deployment, workers)
            except (aiohttp.ClientError, asyncio.TimeoutError, BenchError):
                per_worker = None
            now = time.perf_counter()
            if per_worker is not None:
                metrics = sum_metrics(per_worker)
                n_new, n_dup = metrics.get(M_NEW, 0), metrics.get(M_DUP, 0)
                n_durable = metrics.get(M_LATENCY_COUNT, 0)
                if n_new >= new and n_dup >= duplicates:
                    # Verdicts are counted before the batch commits; the latency histogram is
                    # fed after the commit, one observation per new event: that is "durable".
                    counted_at = counted_at or now
                    if n_durable >= durable:
                        return counted_at, now, metrics, per_worker
                progress = n_new + n_dup + n_durable + metrics.get(M_REDELIVERY, 0) \
                    + metrics.get(M_DEADLETTERS, 0)
                if progress != seen:
                    seen, last_progress = progress, now
                status = (f"new {n_new:,.0f}/{new:,} ({n_durable:,.0f}/{durable:,} durable), "
                          f"duplicate {n_dup:,.0f}/{duplicates:,}, "
                          f"redelivery {metrics.get(M_REDELIVERY, 0):,.0f}, "
                          f"deadletters {metrics.get(M_DEADLETTERS, 0):,.0f}")
                if now - last_report >= 5:
                    last_report = now
                    print(f"    ... {now - start:5.1f}s  {status}  "
                          f"(load avg {os.getloadavg()[0]:.2f})", file=sys.stderr, flush=True)
            else:
                status = "/metrics not answering"
            if now - last_progress > stall_s:
                raise BenchError(f"no progress for {stall_s:.0f}s: {status}")
            if now - start > timeout_s:
                raise BenchError(f"not done after {timeout_s:g}s: {status}")
            await asyncio.sleep(0.1)


# --- loaders -------------------------------------------------------------------------------------


async def load_raw(bootstrap: str, topics: dict[str, str], partitions: int, workload: Workload,
                   *, per_record: int, single: bool, rate: float | None = None,
                   tick_s: float = 0.05, accepted_ms: dict[str, int] | None = None
                   ) -> tuple[float, float, int]:
    """Produce the workload; returns (first send, all acked) perf times, records produced.

    ``topics`` maps an item's ``op`` to its raw topic (events to ``raw.events``, identifies to
    ``raw.identifies``, both keyed by customer id). Without ``rate`` everything is written as
    fast as the producer goes (the workers then drain a backlog). With ``rate`` (items/s) the
    items due are written every ``tick_s``, each tick's items grouped into one envelope per topic
    partition, like the HTTP tier's linger does. ``accepted_ms`` receives each item id's (first)
    ``received_at``.
    """
    # Pre-encode every item without its closing brace; received_at is appended at produce time.
    encoded = [(person.encode(), (topics[item["op"]], partition_for(person.encode(), partitions)),
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
    buffers: dict[tuple[str, int], tuple[bytes, list[bytes]]] = {}

    async def send_envelope(destination: tuple[str, int]) -> None:
        key, parts = buffers.pop(destination)
        at_ms = int(time.time() * 1000)
        suffix = b',"received_at":%d}' % at_ms
        value = b'{"items":[' + b",".join(p + suffix for p in parts) + b"]}"
        for part in parts:
            accept(part, at_ms)
        topic, partition = destination
        futures.append(await producer.send(topic, value, key=key, partition=partition))

    async def send(chunk: list[tuple[bytes, tuple[str, int], bytes]]) -> None:
        if single:
            for key, (topic, partition), prefix in chunk:
                at_ms = int(time.time() * 1000)
                accept(prefix, at_ms)
                value = prefix + b',"received_at":%d}' % at_ms
                futures.append(await producer.send(topic, value, key=key, partition=partition))
            return
        for key, destination, prefix in chunk:
            buffer = buffers.setdefault(destination, (key, []))
            buffer[1].append(prefix)
            if len(buffer[1]) >= per_record:
                await send_envelope(destination)
        for destination in list(buffers):
            await send_envelope(destination)

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


async def load_http(deployment: Deployment, urls: list[str], workload: Workload,
                    concurrency: int) -> HttpLoad:
    """Send the workload through the track API of the workers at ``urls`` (round robin by item).

    Events are POSTed with their id; identifies are PUT (the server gives them an id: the
    workload's id stands for it in ``accepted_ids``, identifies are never resent)."""
    requests = []
    for i, (person, event_id, item) in enumerate(workload.events):
        base = urls[i % len(urls)]
        if item["op"] == "identify":
            requests.append(("PUT", f"{base}/api/v1/customers/{person}", event_id,
                             orjson.dumps(item["attributes"])))
        else:
            requests.append(("POST", f"{base}/api/v1/customers/{person}/events", event_id,
                             orjson.dumps({k: item[k] for k in
                                           ("id", "name", "type", "data", "timestamp")})))
    headers = {**deployment.track_auth, "Content-Type": "application/json"}
    latencies: list[float] = []
    statuses: Counter = Counter()
    accepted: list[str] = []
    pending = iter(requests)

    async def client(session: aiohttp.ClientSession) -> None:
        for method, url, event_id, body in pending:  # one shared iterator: each takes the next
            start = time.perf_counter()
            try:
                async with session.request(method, url, data=body,
                                           headers=headers) as response:
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


# --- recovery ------------------------------------------------------------------------------------


async def count_records(bootstrap: str, topics: list[tuple[str, int]],
                        timeout_s: float = 600.0) -> dict[str, int]:
    """Records on each ``(topic, partitions)``, read with a plain consumer from the beginning to
    the fetch high-watermark (ListOffsets is not trusted on the embedded broker)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_wait_ms=50)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for topic, partitions in topics for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        counts: Counter = Counter({topic: 0 for topic, _ in topics})
        try:
            async for fetched in fetch_to_end(consumer, set(tps), timeout_ms=200,
                                              max_records=50_000, timeout_s=timeout_s):
                for tp, records in fetched.items():
                    counts[tp.topic] += len(records)
        except TimeoutError:
            raise BenchError(f"changelogs not read to their end in {timeout_s:g}s") from None
        return dict(counts)
    finally:
        await consumer.stop()


async def segment_members(deployment: Deployment, url: str) -> dict[str, int]:
    """``GET /api/v1/segments``: member count per segment id (empty without segments)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        async with session.get(url + "/api/v1/segments", headers=deployment.app_auth) as response:
            if response.status != 200:
                raise BenchError(f"GET /api/v1/segments: {response.status}")
            return {s["id"]: s["members"] for s in (await response.json())["segments"]}


_RECOVERED_LINE = re.compile(rb"recovered (\d+) changelog records")
_DRIFT_LINE = re.compile(rb"woke up too late, with a drift of \+([0-9.]+)")


def scan_log(path: Path, offset: int) -> dict[str, Any]:
    """What a worker's log says past ``offset``: the longest event-loop stall seen by mode's
    timers (drift of a timer that woke up late: the loop was busy that long) and how many commits
    were retried."""
    try:
        with open(path, "rb") as log:
            log.seek(offset)
            text = log.read()
    except OSError:
        return {"max_timer_drift_s": None, "commit_retries": None, "errors": None}
    drifts = [float(m[1]) for m in _DRIFT_LINE.finditer(text)]
    return {"max_timer_drift_s": round(max(drifts), 2) if drifts else 0.0,
            "commit_retries": text.count(b"commit failed, retrying"),
            "errors": text.count(b"[ERROR]")}


async def measure_recovery(deployment: Deployment, workers: list[Worker],
                           data_dirs: list[Path], bootstrap: str, result: dict[str, Any]) -> None:
    """Stop every worker, restart worker 1 alone with its data dir intact, stop it, count the
    changelogs, then restart it after deleting its data dir; fills ``result["recovery"]``."""
    recovery: dict[str, Any] = {"loadavg_before": list(os.getloadavg())}
    result["recovery"] = recovery
    members_before = await segment_members(deployment, workers[0].url)
    for worker in workers:
        worker.stop()
    worker = workers[0]

    t0 = time.perf_counter()
    worker.start()
    await worker.wait_ready(timeout_s=600)
    recovery["intact_ready_s"] = round(time.perf_counter() - t0, 2)
    worker.stop()
    print(f"   recovery: restart with data dir intact ready in {recovery['intact_ready_s']:.1f}s",
          flush=True)

    # Counted after the intact restart: its ticks may have written more changelog records.
    partitions = deployment.settings.partitions
    changelogs = [(t.name, partitions) for t in deployment.topics.all() if ".changelog." in t.name]
    t0 = time.perf_counter()
    counts = await count_records(bootstrap, changelogs)
    total = sum(counts.values())
    recovery.update(changelog_records=total, changelog_records_by_topic=counts,
                    count_s=round(time.perf_counter() - t0, 2))
    print(f"   recovery: {total:,} changelog records on {len(changelogs)} changelog topics "
          f"(counted in {recovery['count_s']:.1f}s)", flush=True)
    log_offset = worker.log_path.stat().st_size if worker.log_path.exists() else 0
    shutil.rmtree(data_dirs[0])
    recovery["loadavg_at_restart"] = list(os.getloadavg())
    t0 = time.perf_counter()
    worker.start()
    assert worker.process is not None
    await worker.wait_ready(timeout_s=1800)
    ready_s = time.perf_counter() - t0
    recovery["loadavg_after"] = list(os.getloadavg())
    with open(worker.log_path, "rb") as log:
        log.seek(log_offset)
        applied = sum(int(m[1]) for m in _RECOVERED_LINE.finditer(log.read()))
    members_after = await segment_members(deployment, worker.url)
    differing = sorted(k for k in set(members_before) | set(members_after)
                       if members_before.get(k) != members_after.get(k))
    net_s = ready_s - recovery["intact_ready_s"]
    recovery.update(
        ready_s=round(ready_s, 2), recovered_records_logged=applied,
        records_per_s=round(total / ready_s, 1),
        net_s=round(net_s, 2),
        net_records_per_s=round(total / net_s, 1) if net_s > 0 else None,
        peak_rss_bytes=rss_bytes(worker.process.pid, "VmHWM"),
        data_dir_bytes=dir_bytes(data_dirs[0]),
        members_before=sum(members_before.values()), members_after=sum(members_after.values()),
        segments_with_other_member_count=len(differing))
    worker.stop()
    print(f"   recovery: data dir deleted -> ready in {ready_s:.1f}s, "
          f"{applied:,} changelog records applied (worker log); "
          f"{recovery['records_per_s']:,.0f} records/s "
          f"({_n(recovery['net_records_per_s'])} records/s net of the "
          f"{recovery['intact_ready_s']:.1f}s intact restart); peak RSS "
          f"{_mb(recovery['peak_rss_bytes'])}; segment members {recovery['members_before']:,} "
          f"before / {recovery['members_after']:,} after (load avg "
          f"{recovery['loadavg_after'][0]:.2f})", flush=True)


# --- profile -------------------------------------------------------------------------------------


def start_profile(pid: int, seconds: int, out: Path, log: Path, *,
                  native: bool = False) -> subprocess.Popen:
    """``py-spy record -p PID -d S -f raw -o OUT [--native]`` in the background."""
    pyspy = Path(sys.executable).with_name("py-spy")
    with open(log, "ab") as log_file:
        return subprocess.Popen([str(pyspy), "record", "-p", str(pid), "-d", str(seconds),
                                 "-f", "raw", "-o", str(out), *(["--native"] if native else [])],
                                stdout=log_file, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)


_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]+)(?::(?P<line>\d+))?\)$")
EVENTIDE_PACKAGES = ("app/", "agents/", "tables/", "bench/")


def _function(frame: str) -> tuple[str, str]:
    """(``file:function``, file) of a py-spy frame ``function (file:line)``."""
    match = _FRAME.match(frame)
    if not match:
        return frame, ""
    return f"{match['file']}:{match['func']}", match["file"]


def summarize_profile(path: Path, top: int = 15) -> dict[str, Any]:
    """Top self-time functions and top inclusive eventide functions of py-spy raw output (one
    ``frame;frame;... count`` line per distinct stack; active samples only). With native frames
    (``--profile-native``) also the share of samples inside CPython's cyclic garbage collector
    (``gc_collect*``) and the Python frames whose allocation triggered it."""
    self_time: Counter = Counter()
    inclusive: Counter = Counter()
    gc_triggers: Counter = Counter()
    gc_samples = 0
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        raw_frames = stack.split(";")
        frames = [_function(f) for f in raw_frames]
        self_time[frames[-1][0]] += n
        if any(f.startswith("gc_collect") for f in raw_frames):
            gc_samples += n
            python = [name for name, file in frames if file.endswith(".py")]
            gc_triggers[python[-1] if python else "?"] += n
        # app/cli.py is the process's entry (main -> cmd_worker -> the event loop): on every
        # stack, so it says nothing.
        for name in {name for name, file in frames
                     if file.startswith(EVENTIDE_PACKAGES) and file != "app/cli.py"}:
            inclusive[name] += n

    def rows(counter: Counter) -> list[dict[str, Any]]:
        return [{"frame": name, "samples": n, "share": round(n / total, 4)}
                for name, n in counter.most_common(top)]

    return {"samples": total, "top_self": rows(self_time), "top_inclusive_eventide":
            rows(inclusive), "gc_samples": gc_samples,
            "gc_share": round(gc_samples / total, 4) if total else None,
            "gc_triggered_from": rows(gc_triggers) if gc_samples else []}


def print_profile(summary: dict[str, Any]) -> None:
    print(f"\n   py-spy: {summary['samples']:,} active samples")
    if summary.get("gc_samples"):
        print(f"   in the cyclic GC (gc_collect*): {summary['gc_samples']:,} samples "
              f"({summary['gc_share'] * 100:.1f}%)")
    for title, key in (("top self time", "top_self"),
                       ("top inclusive (eventide frames)", "top_inclusive_eventide"),
                       ("Python frame whose allocation ran the GC", "gc_triggered_from")):
        print(f"   {title}:")
        for row in summary[key]:
            print(f"     {row['share'] * 100:5.1f}%  {row['samples']:6,}  {row['frame']}")


# --- one run -------------------------------------------------------------------------------------


@dataclass
class RunSpec:
    label: str
    mode: str                  # raw | http
    events: int
    single: bool = False


async def run_one(spec: RunSpec, args: argparse.Namespace, bootstrap: str, broker_pid: int | None,
                  root: Path, results: list[dict[str, Any]], stamp: str = "") -> None:
    """Run one measurement; its result dict is appended to ``results`` first, filled as it goes."""
    n_workers = args.workers
    result: dict[str, Any] = {"label": spec.label, "mode": spec.mode, "single_records": spec.single,
                              "people": args.people, "partitions": args.partitions,
                              "segments": args.segments, "workers": n_workers,
                              "identify_ratio": args.identify_ratio,
                              "loadavg_before": list(os.getloadavg())}
    results.append(result)
    run_dir = root / re.sub(r"[^A-Za-z0-9]+", "-", spec.label).strip("-")
    deployment = new_deployment(bootstrap, run_dir, args.partitions)
    workers = [Worker(deployment, name="worker")]
    data_dirs = [deployment.settings.data_dir]
    for i in range(2, n_workers + 1):
        data_dirs.append(run_dir / f"data-worker{i}")
        workers.append(Worker(deployment, name=f"worker{i}", EVENTIDE_HTTP_PORT=str(free_port()),
                              EVENTIDE_DATA_DIR=str(data_dirs[-1])))
    result["worker_logs"] = [str(w.log_path) for w in workers]
    print(f"\n== {spec.label}: {spec.events:,} items, {args.people:,} people, "
          f"{args.segments:,} segments, {args.partitions} partitions, {n_workers} worker(s) "
          f"(load avg {os.getloadavg()[0]:.2f})", flush=True)
    watcher: ChangeWatcher | None = None
    profiler: subprocess.Popen | None = None
    try:
        workload = generate(spec.events, args.people, args.dup_ratio, args.seed,
                            segments=args.segments > 0, identify_ratio=args.identify_ratio)
        result.update(events=len(workload.events), unique=workload.unique,
                      resends=workload.resends, identifies=workload.identifies)
        await deployment.create_topics()
        t_start = time.perf_counter()
        for worker in workers:
            worker.start()
        await asyncio.gather(*(w.wait_ready(timeout_s=180) for w in workers))
        result["worker_ready_s"] = round(time.perf_counter() - t_start, 2)
        result["group_settle_s"] = round(await wait_group_settled(deployment, workers), 2)
        print(f"   {n_workers} worker(s) ready in {result['worker_ready_s']:.1f}s, group settled "
              f"{result['group_settle_s']:.1f}s later", flush=True)
        pids = [w.process.pid for w in workers if w.process is not None]
        result["worker_pids"] = pids
        log_offsets = [w.log_path.stat().st_size if w.log_path.exists() else 0 for w in workers]
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
        idle_rss = [rss_bytes(pid) for pid in pids]
        cpu0 = [cpu_seconds(pid) for pid in pids]
        broker_cpu0, self_cpu0 = cpu_seconds(broker_pid), self_cpu_seconds()
        evaluations0 = 0.0
        async with aiohttp.ClientSession() as session:
            before = sum_metrics(await fetch_all_metrics(session, deployment, workers))
            evaluations0 = before.get(M_EVALUATIONS, 0.0)
        if args.profile:
            profile_path = RESULTS_DIR / (f"{stamp}-profile-"
                                          + ("native-" if args.profile_native else "")
                                          + re.sub(r"[^A-Za-z0-9]+", "-", spec.label).strip("-")
                                          + ".txt")
            RESULTS_DIR.mkdir(parents=True, exist_ok=True)
            profiler = start_profile(pids[0], args.profile, profile_path, run_dir / "py-spy.log",
                                     native=args.profile_native)
            result["profile_file"] = str(profile_path.relative_to(RESULTS_DIR.parent.parent))
            print(f"   py-spy recording worker 1 (pid {pids[0]}) for {args.profile}s", flush=True)

        expected_new, expected_dup = workload.unique, workload.resends
        expected_durable = workload.unique_events
        if spec.mode == "raw":
            topics = {"event": deployment.topics.raw_events.name,
                      "identify": deployment.topics.raw_identifies.name}
            t_first, t_loaded, records = await load_raw(
                bootstrap, topics, args.partitions, workload,
                per_record=args.per_record, single=spec.single, rate=args.rate,
                accepted_ms=accepted_ms)
            result.update(records=records, rate=args.rate,
                          items_per_record=1 if spec.single else args.per_record)
        else:
            load = await load_http(deployment, [w.url for w in workers], workload,
                                   args.concurrency)
            t_first, t_loaded = load.t_first, load.t_last
            distinct = set(load.accepted_ids)
            expected_new, expected_dup = len(distinct), len(load.accepted_ids) - len(distinct)
            expected_durable = len(distinct - workload.identify_ids)
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
        print(f"   loaded in {t_loaded - t_first:.2f}s; waiting for the worker(s)", flush=True)

        timeout_s = args.timeout or 120 + spec.events / 500
        t_counted, t_done, metrics, per_worker = await wait_processed(
            deployment, workers, new=expected_new, durable=expected_durable,
            duplicates=expected_dup, timeout_s=timeout_s, stall_s=args.stall_timeout)
        cpus = [cpu_seconds(pid) - c0 for pid, c0 in zip(pids, cpu0)]
        cpu = sum(cpus)
        elapsed = t_done - t_first
        n_new, n_dup = int(metrics.get(M_NEW, 0)), int(metrics.get(M_DUP, 0))
        deadletters = int(metrics.get(M_DEADLETTERS, 0))
        peaks = [rss_bytes(pid, "VmHWM") for pid in pids]
        raw_in = f'eventide_records_in_total{{topic="{deployment.topics.raw_events.name}"}}'
        person_in = f'eventide_records_in_total{{topic="{deployment.topics.person_events.name}"}}'
        result.update(
            e2e_s=round(elapsed, 3),
            verdicts_counted_s=round(t_counted - t_first, 3),
            events_per_s=round(len(workload.events) / elapsed, 1),
            expected_new=expected_new, expected_duplicates=expected_dup,
            expected_durable=expected_durable,
            processed_new=n_new, duplicates_dropped=n_dup,
            redeliveries=int(metrics.get(M_REDELIVERY, 0)), deadletters=deadletters,
            latency_count=int(metrics.get(M_LATENCY_COUNT, 0)),
            # Every unique item judged new once and made durable once, nothing dead-lettered.
            # More duplicates than resent can be right: a commit retried after a produce timeout
            # re-sends its routed records, which dedup then drops (see worker_log_findings).
            exact=(n_new == expected_new and n_dup >= expected_dup and deadletters == 0
                   and int(metrics.get(M_LATENCY_COUNT, 0)) == expected_durable),
            extra_duplicates=n_dup - expected_dup,
            latency_p50_s=latency_quantile(metrics, 0.5),
            latency_p99_s=latency_quantile(metrics, 0.99),
            latency_per_worker=[(latency_quantile(m, 0.5), latency_quantile(m, 0.99))
                                for m in per_worker],
            worker_cpu_s=round(cpu, 2),
            worker_cpu_s_per_worker=[round(c, 2) for c in cpus],
            worker_cpu_us_per_event=round(cpu / len(workload.events) * 1e6, 1),
            broker_cpu_s=round(cpu_seconds(broker_pid) - broker_cpu0, 2),
            bench_cpu_s=round(self_cpu_seconds() - self_cpu0, 2),
            idle_rss_bytes=max(idle_rss),
            idle_rss_per_worker=idle_rss,
            peak_rss_bytes=max(peaks),
            peak_rss_per_worker=peaks,
            rss_end_bytes=max(rss_bytes(pid) for pid in pids),
            metric_peak_rss_per_worker=[int(m.get(M_PEAK_RSS, 0)) for m in per_worker],
            rocksdb_size_bytes=int(metrics.get(M_ROCKSDB, 0)),
            worst_stall_s=max((float(m.get(M_LOOP_LAG_MAX, 0)) for m in per_worker), default=0),
            broker_rss_bytes=rss_bytes(broker_pid),
            raw_records_in=int(metrics.get(raw_in, 0)),
            person_records_in=int(metrics.get(person_in, 0)),
            person_records_per_worker=[int(m.get(person_in, 0)) for m in per_worker],
            data_dir_bytes=sum(dir_bytes(d) for d in data_dirs if d.exists()),
            loadavg_after=list(os.getloadavg()),
            worker_log_findings=[scan_log(w.log_path, offset)
                                 for w, offset in zip(workers, log_offsets)],
            worker_metrics=per_worker,
        )
        if watcher is not None:
            await watcher.stop()
            changes, watcher = watcher.changes, None
            evaluations = metrics.get(M_EVALUATIONS, 0.0) - evaluations0
            kinds = Counter(change for _, change, _, _ in changes)
            # An item's id has no colon; other causes are "timer:<due>", "definition:<v>", ...
            causes = Counter("identify" if cause in workload.identify_ids else
                             cause.split(":", 1)[0] if ":" in cause else "event"
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
                  f"({_n(result['event_caused_changes'])} caused by our items), "
                  f"accept -> change p50/p99 "
                  f"{_ms(result['accept_to_change_p50_s'])} / "
                  f"{_ms(result['accept_to_change_p99_s'])}, "
                  f"{result['evaluations_per_event']:.2f} evaluations per item", flush=True)
        findings = result["worker_log_findings"]
        if result["extra_duplicates"] or any(f["commit_retries"] for f in findings):
            print(f"   note: {result['extra_duplicates']:,} duplicates beyond the resends; commit "
                  f"retries per worker {[f['commit_retries'] for f in findings]}", flush=True)
        print(f"   event loop: longest timer drift per worker "
              f"{[f['max_timer_drift_s'] for f in findings]} s", flush=True)
        print(f"   done: {result['events_per_s']:,.0f} items/s end to end "
              f"({elapsed:.2f}s), exact={result['exact']}, peak RSS per worker "
              f"{', '.join(_mb(b) for b in peaks)} (load avg {os.getloadavg()[0]:.2f})",
              flush=True)
        if profiler is not None:
            try:
                profiler.wait(args.profile + 60)
            except subprocess.TimeoutExpired:
                profiler.kill()
                profiler.wait(10)
            profiler = None
            summary = summarize_profile(RESULTS_DIR.parent.parent / result["profile_file"])
            result["profile"] = summary
            print_profile(summary)
        if not result["exact"]:
            raise BenchError(f"counts not exact: new {n_new}/{expected_new}, duplicate "
                             f"{n_dup}/{expected_dup}, durable "
                             f"{result['latency_count']}/{expected_durable}, "
                             f"deadletters {deadletters}")
        if args.recovery:
            await measure_recovery(deployment, workers, data_dirs, bootstrap, result)
        result["ok"] = True
    except BaseException as exc:
        result["ok"] = False
        result["error"] = f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)):
            for worker in workers:
                print(f"\n!! {spec.label} failed: {result['error']}\n   worker log: "
                      f"{worker.log_path}\n   --- last lines ---\n{worker.tail(40)}\n   ---",
                      file=sys.stderr, flush=True)
        raise
    finally:
        if profiler is not None and profiler.poll() is None:
            profiler.terminate()
            profiler.wait(10)
        if watcher is not None:
            await asyncio.gather(watcher.stop(drain_timeout_s=0), return_exceptions=True)
        for worker in workers:
            worker.stop()


# --- report --------------------------------------------------------------------------------------


def _mb(value: Any) -> str:
    return "-" if value is None else f"{value / 1e6:,.0f} MB"


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value * 1000:,.1f} ms"


def _n(value: Any, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _recovery(r: dict[str, Any], key: str, render: Any) -> str:
    recovery = r.get("recovery")
    return "-" if not recovery or recovery.get(key) is None else render(recovery[key])


ROWS: list[tuple[str, Any]] = [
    ("workers", lambda r: _n(r.get("workers", 1))),
    ("items sent (incl. resends)", lambda r: _n(r.get("events"))),
    ("of which identifies", lambda r: _n(r.get("identifies"))),
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
    ("END-TO-END items/s", lambda r: _n(r.get("events_per_s"))),
    ("unique items processed", lambda r: f"{_n(r.get('processed_new'))} / "
                                         f"{_n(r.get('expected_new'))}"),
    ("duplicates dropped / resent", lambda r: f"{_n(r.get('duplicates_dropped'))} / "
                                              f"{_n(r.get('expected_duplicates'))}"),
    ("commit retries, per worker",
     lambda r: ", ".join(_n(f["commit_retries"]) for f in r.get("worker_log_findings") or [])),
    ("longest event-loop stall (timer drift)",
     lambda r: ", ".join(_n(f["max_timer_drift_s"], 1) + " s"
                         for f in r.get("worker_log_findings") or [])),
    ("dead letters", lambda r: _n(r.get("deadletters"))),
    ("each item processed exactly once", lambda r: "yes" if r.get("exact") else "NO"),
    ("processing latency p50 / p99 (all workers, histogram)",
     lambda r: f"{_ms(r.get('latency_p50_s'))} / {_ms(r.get('latency_p99_s'))}"),
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
    ("worker CPU per item (all workers)",
     lambda r: _n(r.get("worker_cpu_us_per_event"), 1) + " µs"),
    ("CPU s worker / broker / bench", lambda r: f"{_n(r.get('worker_cpu_s'), 1)} / "
                                                f"{_n(r.get('broker_cpu_s'), 1)} / "
                                                f"{_n(r.get('bench_cpu_s'), 1)}"),
    ("worker RSS ready / end", lambda r: f"{_mb(r.get('idle_rss_bytes'))} / "
                                         f"{_mb(r.get('rss_end_bytes'))}"),
    ("WORKER PEAK RSS (VmHWM), per worker",
     lambda r: ", ".join(_mb(b) for b in
                         r.get("peak_rss_per_worker") or [r.get("peak_rss_bytes")])),
    ("WORST EVENT-LOOP STALL (any worker)", lambda r: _ms(r.get("worst_stall_s"))),
    ("RocksDB dir at end (incl. WAL)", lambda r: _mb(r.get("data_dir_bytes"))),
    ("broker RSS (whole bench so far)", lambda r: _mb(r.get("broker_rss_bytes"))),
    ("RECOVERY: changelog records", lambda r: _recovery(r, "changelog_records", _n)),
    ("recovery: ready after (intact dir / deleted)",
     lambda r: "-" if not r.get("recovery") else
     f"{_n(r['recovery'].get('intact_ready_s'), 1)} s / {_n(r['recovery'].get('ready_s'), 1)} s"),
    ("RECOVERY records/s (net of intact restart)",
     lambda r: "-" if not r.get("recovery") else
     f"{_n(r['recovery'].get('records_per_s'))} ({_n(r['recovery'].get('net_records_per_s'))})"),
    ("recovery: worker peak RSS", lambda r: _recovery(r, "peak_rss_bytes", _mb)),
    ("load avg (1 min) before / after run",
     lambda r: f"{_n(r['loadavg_before'][0], 2)} / "
               f"{_n((r.get('loadavg_after') or [None])[0], 2)}"),
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
        runs.append(RunSpec("http" + extra, "http", args.http_events))
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
            "pythonpath": os.environ.get("PYTHONPATH")}


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
