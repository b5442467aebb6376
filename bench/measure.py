"""What a benchmark measures of its workers: process CPU and memory, scraped ``/metrics``,
and the waits for a settled group and for every item processed."""

from __future__ import annotations

import asyncio
import os
import re
import resource
import sys
import time
from pathlib import Path

import aiohttp

from app.broker_load import process_cpu_seconds
from app.metrics import histogram_quantile
from app.testing.harness import POLL_TIMEOUT
from app.topics import build_topics
from app.testing.harness import Deployment, Worker




CLK_TCK = os.sysconf("SC_CLK_TCK")


M_NEW = 'eventide_verdict_total{kind="new"}'
M_DUP = 'eventide_verdict_total{kind="duplicate"}'
M_REDELIVERY = 'eventide_verdict_total{kind="redelivery"}'
M_DEADLETTERS = "eventide_deadletters_total"
M_LATENCY_COUNT = "eventide_processing_latency_seconds_count"
M_LATENCY_BUCKET = "eventide_processing_latency_seconds_bucket"
M_PEAK_RSS = "eventide_peak_rss_bytes"
M_ROCKSDB = "eventide_rocksdb_size_bytes"
M_LOOP_LAG_MAX = "eventide_event_loop_lag_max_seconds"
M_HEAP_TRIMS = "eventide_heap_trims"
M_HEAP_TRIM_S = "eventide_heap_trim_seconds"
M_EVALUATIONS = "eventide_segment_evaluations_total"
M_ENTERED = 'eventide_segment_changes_total{kind="entered"}'
M_EXITED = 'eventide_segment_changes_total{kind="exited"}'


class BenchError(RuntimeError):
    """A run could not complete (worker died, timeout, wrong counts)."""


def cpu_seconds(pid: int | None) -> float:
    """utime + stime of a process (0.0 if it is gone)."""
    if pid is None:
        return 0.0
    return process_cpu_seconds(pid) or 0.0


def main_thread_times(pid: int | None) -> tuple[float, float]:
    """How long a process's main thread (a worker's event loop) ran on a core, and how long it
    was ready to run but waited for one, in seconds, from ``/proc/<pid>/task/<pid>/schedstat``
    ((0.0, 0.0) if it is gone). Work moved to other threads (the Kafka client's, RocksDB's)
    leaves the first, so it tells the loop's load apart from the process's; the rest of the
    wall time the thread slept: waiting for the GIL, or with nothing to do."""
    if pid is None:
        return 0.0, 0.0
    try:
        fields = Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()
        return int(fields[0]) / 1e9, int(fields[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0, 0.0


class CpuSampler:
    """A process's share of one core, sampled every ``every_s`` seconds between ``start`` and
    ``stop``: how its load moves during a run (the embedded broker's grows with its log,
    ``bench.broker_fetch_cost``)."""

    def __init__(self, pid: int | None, every_s: float = 1.0) -> None:
        self.pid, self.every_s = pid, every_s
        #: The share of each interval, in order.
        self.shares: list[float] = []
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._sample())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _sample(self) -> None:
        if self.pid is None:
            return
        cpu, at = cpu_seconds(self.pid), time.perf_counter()
        while True:
            await asyncio.sleep(self.every_s)
            cpu_now, now = cpu_seconds(self.pid), time.perf_counter()
            self.shares.append(round((cpu_now - cpu) / (now - at), 3))
            cpu, at = cpu_now, now

    def first_and_last_fifth(self) -> list[float] | None:
        """The mean share over the first and over the last fifth of the samples (None with fewer
        than five)."""
        n = len(self.shares) // 5
        if n == 0:
            return None
        return [round(sum(self.shares[:n]) / n, 3), round(sum(self.shares[-n:]) / n, 3)]


def host_steal_seconds() -> float:
    """CPU time the hypervisor gave other guests instead of this machine, all CPUs, since boot
    (``steal`` in /proc/stat; 0.0 where there is none). Runs of the same code spread by several
    times on this machine in the same hour; the steal during a run says whether it had the
    cores it asked for."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return 0.0
    return int(fields[8]) / CLK_TCK if len(fields) > 8 else 0.0


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
    async with aiohttp.ClientSession(timeout=POLL_TIMEOUT) as session:
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


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    rank = max(1, int(round(q * len(sorted_values) + 0.5)))  # nearest rank
    return sorted_values[min(rank, len(sorted_values)) - 1]
