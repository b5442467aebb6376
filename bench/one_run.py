"""One measured run of the pipeline benchmark: a fresh deployment, its workers, the load, the
counts. ``bench/run.py`` plans the runs and writes the results; a :class:`Run` makes one, in the
order its phases are listed."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from app.metrics import STAGE_HISTOGRAMS, metric_name
from app.testing.harness import Worker, free_port
from bench.loaders import load_http, load_raw
from bench.measure import (M_DEADLETTERS, M_DUP, M_EVALUATIONS, M_HEAP_TRIM_S, M_HEAP_TRIMS,
                           M_LATENCY_COUNT, M_LOOP_LAG_MAX, M_NEW, M_PEAK_RSS, M_REDELIVERY,
                           M_ROCKSDB, BenchError, CpuSampler, cpu_seconds, dir_bytes,
                           fetch_all_metrics, host_steal_seconds, latency_quantile,
                           main_thread_times, new_deployment, percentile, rss_bytes,
                           self_cpu_seconds, sum_metrics, wait_group_settled, wait_processed)
from bench.profiling import print_profile, start_profile, summarize_profile
from bench.recovery import measure_recovery, scan_log
from bench.report import RESULTS_DIR, fmt_mb, fmt_ms, fmt_n
from bench.segments import ChangeWatcher, change_summary, put_segments, wait_segments_live
from bench.workload import Workload, generate, segment_definitions
from tables import native


@dataclass
class RunSpec:
    label: str
    mode: str                  # raw | http
    events: int
    single: bool = False


@dataclass
class Baseline:
    """What the workers had used and counted just before loading: a run's figures are the
    differences from it."""

    idle_rss: list[int]
    cpu: list[float]
    broker_cpu: float
    self_cpu: float
    steal: float
    #: Every summed metric then.
    metrics: dict[str, float]
    #: ``--ingest-tier``: the tier process's CPU seconds then.
    tier_cpu: float = 0.0
    #: Each worker's main thread's seconds on a core and waiting for one then.
    main_thread: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class Expected:
    """The verdicts a run must end with: items judged new, resends dropped, events made durable."""

    new: int
    duplicates: int
    durable: int


async def run_one(spec: RunSpec, args: argparse.Namespace, bootstrap: str, broker_pid: int | None,
                  root: Path, results: list[dict[str, Any]], stamp: str = "") -> None:
    """Run one measurement; its result dict is appended to ``results`` first, filled as it goes."""
    run = Run(spec, args, bootstrap, broker_pid, stamp)
    results.append(run.result)
    run.prepare(root / _slug(spec.label))
    try:
        await run.measure()
        run.result["ok"] = True
    except BaseException as exc:
        run.result["ok"] = False
        run.result["error"] = f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)):
            run.print_failure()
        raise
    finally:
        await run.close()


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-")


class Run:
    """One run's deployment, workers and watchers, and its ``result`` (the JSON's run entry)."""

    def __init__(self, spec: RunSpec, args: argparse.Namespace, bootstrap: str,
                 broker_pid: int | None, stamp: str) -> None:
        self.spec, self.args, self.bootstrap = spec, args, bootstrap
        self.broker_pid, self.stamp = broker_pid, stamp
        self.result: dict[str, Any] = {
            "label": spec.label, "mode": spec.mode, "single_records": spec.single,
            "people": args.people, "partitions": args.partitions, "segments": args.segments,
            "workers": args.workers, "identify_ratio": args.identify_ratio,
            # the tree's hot path compiled (tables/native.py), as the workers import it too
            "compiled": native.in_use(),
            "loadavg_before": list(os.getloadavg())}
        self.watcher: ChangeWatcher | None = None
        self.profiler: subprocess.Popen | None = None
        #: item id → accept time (ms), for accept -> change latencies (raw runs with segments)
        self.accepted_ms: dict[str, int] | None = None
        self.pids: list[int] = []
        self.log_offsets: list[int] = []

    def prepare(self, run_dir: Path) -> None:
        """The deployment and its worker processes (not started yet): the first on the
        deployment's port and data dir, every other one on its own."""
        args = self.args
        self.run_dir = run_dir
        self.deployment = new_deployment(self.bootstrap, run_dir, args.partitions)
        self.workers = [Worker(self.deployment, name="worker")]
        self.data_dirs = [self.deployment.settings.data_dir]
        for i in range(2, args.workers + 1):
            self.data_dirs.append(run_dir / f"data-worker{i}")
            self.workers.append(Worker(self.deployment, name=f"worker{i}",
                                       EVENTIDE_HTTP_PORT=str(free_port()),
                                       EVENTIDE_DATA_DIR=str(self.data_dirs[-1])))
        self.result["worker_logs"] = [str(w.log_path) for w in self.workers]
        #: ``--ingest-tier``: the HTTP load goes to an ``eventide api`` process instead.
        self.tier: Worker | None = None
        if args.ingest_tier and self.spec.mode == "http":
            self.tier = Worker(self.deployment, name="api", command="api",
                               EVENTIDE_HTTP_PORT=str(free_port()))
            self.result["ingest_tier"] = True
        print(f"\n== {self.spec.label}: {self.spec.events:,} items, {args.people:,} people, "
              f"{args.segments:,} segments, {args.partitions} partitions, {args.workers} worker(s) "
              f"(load avg {os.getloadavg()[0]:.2f})", flush=True)

    async def measure(self) -> None:
        args, result = self.args, self.result
        self.workload = workload = generate(
            self.spec.events, args.people, args.dup_ratio, args.seed,
            segments=args.segments > 0, identify_ratio=args.identify_ratio)
        result.update(events=len(workload.events), unique=workload.unique,
                      resends=workload.resends, identifies=workload.identifies)
        await self.start_workers()
        if args.segments:
            await self.define_segments()
        print("   loading", flush=True)
        baseline = await self.baseline()
        if args.profile:
            self.start_profiler()
        broker_load = CpuSampler(self.broker_pid)  # (the embedded broker's work grows with its log)
        broker_load.start()
        try:
            t_first, t_loaded, expected = await self.load(workload)
        finally:
            broker_load.stop()
        result["broker_cpu_share_first_last_fifth"] = broker_load.first_and_last_fifth()
        result["load_s"] = round(t_loaded - t_first, 3)
        print(f"   loaded in {t_loaded - t_first:.2f}s; waiting for the worker(s)", flush=True)
        metrics, elapsed, peaks = await self.wait_processed(expected, baseline, t_first)
        if self.watcher is not None:
            await self.count_changes(metrics, baseline)
        self.print_done(elapsed, peaks)
        if self.profiler is not None:
            self.finish_profile()
        if not result["exact"]:
            raise BenchError(f"counts not exact: new {result['processed_new']}/{expected.new}, "
                             f"duplicate {result['duplicates_dropped']}/{expected.duplicates}, "
                             f"durable {result['latency_count']}/{expected.durable}, "
                             f"deadletters {result['deadletters']}")
        if args.recovery:
            await measure_recovery(self.deployment, self.workers, self.data_dirs, self.bootstrap,
                                   result)

    async def start_workers(self) -> None:
        """Start every worker; return once all answer ``/healthz`` and the group has settled."""
        workers, result = self.workers, self.result
        await self.deployment.create_topics()
        t_start = time.perf_counter()
        for worker in workers:
            worker.start()
        await asyncio.gather(*(w.wait_ready(timeout_s=180) for w in workers))
        result["worker_ready_s"] = round(time.perf_counter() - t_start, 2)
        result["group_settle_s"] = round(await wait_group_settled(self.deployment, workers), 2)
        print(f"   {len(workers)} worker(s) ready in {result['worker_ready_s']:.1f}s, group "
              f"settled {result['group_settle_s']:.1f}s later", flush=True)
        self.pids = [w.process.pid for w in workers if w.process is not None]
        result["worker_pids"] = self.pids
        if self.tier is not None:
            self.tier.start()
            await self.tier.wait_ready(timeout_s=60)
            print(f"   ingest tier ready at {self.tier.url}", flush=True)
        self.log_offsets = [w.log_path.stat().st_size if w.log_path.exists() else 0
                            for w in workers]

    async def define_segments(self) -> None:
        """PUT the definitions, wait until all are live, start reading ``segments.changes``."""
        args, result = self.args, self.result
        definitions = segment_definitions(args.segments, args.seed)
        t_put = time.perf_counter()
        await put_segments(self.deployment, definitions)
        t_put_done = time.perf_counter()
        await wait_segments_live(self.deployment, len(definitions), timeout_s=300)
        result.update(segments_put_s=round(t_put_done - t_put, 2),
                      segments_live_s=round(time.perf_counter() - t_put, 2))
        print(f"   {len(definitions):,} segments PUT in {result['segments_put_s']:.1f}s, "
              f"all live after {result['segments_live_s']:.1f}s", flush=True)
        self.watcher = ChangeWatcher(self.bootstrap, self.deployment.topics.segment_changes.name,
                                     args.partitions)
        await self.watcher.start()
        # Only a raw run knows its items' accept times (the bench sets received_at).
        self.accepted_ms = {} if self.spec.mode == "raw" else None

    async def baseline(self) -> Baseline:
        pids = self.pids
        idle_rss = [rss_bytes(pid) for pid in pids]
        cpu0 = [cpu_seconds(pid) for pid in pids]
        broker_cpu0, self_cpu0 = cpu_seconds(self.broker_pid), self_cpu_seconds()
        async with aiohttp.ClientSession() as session:
            before = sum_metrics(await fetch_all_metrics(session, self.deployment, self.workers))
        return Baseline(idle_rss, cpu0, broker_cpu0, self_cpu0, host_steal_seconds(), before,
                        tier_cpu=cpu_seconds(self._tier_pid()) if self.tier else 0.0,
                        main_thread=[main_thread_times(pid) for pid in pids])

    def _tier_pid(self) -> int | None:
        return self.tier.process.pid if self.tier and self.tier.process else None

    def start_profiler(self) -> None:
        args = self.args
        profile_path = RESULTS_DIR / (f"{self.stamp}-profile-"
                                      + ("native-" if args.profile_native else "")
                                      + _slug(self.spec.label) + ".txt")
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        self.profiler = start_profile(self.pids[0], args.profile, profile_path,
                                      self.run_dir / "py-spy.log", native=args.profile_native)
        self.result["profile_file"] = str(profile_path.relative_to(RESULTS_DIR.parent.parent))
        print(f"   py-spy recording worker 1 (pid {self.pids[0]}) for {args.profile}s",
              flush=True)

    async def load(self, workload: Workload) -> tuple[float, float, Expected]:
        """Send the workload; (first send, last acknowledged) perf times and what to expect."""
        args, spec, result, topics = self.args, self.spec, self.result, self.deployment.topics
        if spec.mode == "raw":
            t_first, t_loaded, records = await load_raw(
                self.bootstrap, {"event": topics.raw_events.name,
                                 "identify": topics.raw_identifies.name},
                args.partitions, workload, per_record=args.per_record, single=spec.single,
                rate=args.rate, accepted_ms=self.accepted_ms)
            result.update(records=records, rate=args.rate,
                          items_per_record=1 if spec.single else args.per_record)
            return t_first, t_loaded, Expected(workload.unique, workload.resends,
                                               workload.unique_events)
        urls = [self.tier.url] if self.tier is not None else [w.url for w in self.workers]
        load = await load_http(self.deployment, urls, workload, args.concurrency,
                               batch=args.http_batch)
        # What to expect follows from the requests accepted, not from those sent.
        distinct = set(load.accepted_ids)
        latencies = sorted(load.latencies)
        result.update(concurrency=args.concurrency, accepted=len(load.accepted_ids),
                      statuses={str(k): v for k, v in load.statuses.items()},
                      accepted_per_s=round(len(load.accepted_ids) / (load.t_last - load.t_first),
                                           1),
                      http_p50_s=percentile(latencies, 0.5),
                      http_p99_s=percentile(latencies, 0.99))
        if len(load.accepted_ids) != len(workload.events):
            print(f"   !! {len(workload.events) - len(load.accepted_ids):,} requests not "
                  f"accepted: {dict(load.statuses)}", flush=True)
        return load.t_first, load.t_last, Expected(
            len(distinct), len(load.accepted_ids) - len(distinct),
            len(distinct - workload.identify_ids))

    async def wait_processed(self, expected: Expected, baseline: Baseline, t_first: float
                             ) -> tuple[dict[str, float], float, list[int]]:
        """Wait until every item is processed; record counts and resources. Returns the summed
        metrics, the end-to-end seconds and each worker's peak RSS."""
        args = self.args
        timeout_s = args.timeout or 120 + self.spec.events / 500
        t_counted, t_done, metrics, per_worker = await wait_processed(
            self.deployment, self.workers, new=expected.new, durable=expected.durable,
            duplicates=expected.duplicates, timeout_s=timeout_s, stall_s=args.stall_timeout)
        cpus = [cpu_seconds(pid) - c0 for pid, c0 in zip(self.pids, baseline.cpu)]
        main_now = [main_thread_times(pid) for pid in self.pids]
        main_ran = sum(now[0] - then[0] for now, then in zip(main_now, baseline.main_thread))
        main_waited = sum(now[1] - then[1] for now, then in zip(main_now, baseline.main_thread))
        elapsed = t_done - t_first
        peaks = [rss_bytes(pid, "VmHWM") for pid in self.pids]
        self.result.update(_counts(metrics, per_worker, expected, elapsed, t_counted - t_first,
                                   len(self.workload.events)))
        self.result.update(self.resources(metrics, per_worker, baseline, cpus, peaks))
        # The event loops' share of it (what one thread per worker bounds), and how long they
        # were ready but waited for a core.
        events = len(self.workload.events)
        self.result["worker_main_thread_us_per_event"] = round(main_ran / events * 1e6, 1)
        self.result["worker_main_thread_core_wait_us_per_event"] = round(
            main_waited / events * 1e6, 1)
        if self.tier is not None:
            tier_cpu = cpu_seconds(self._tier_pid()) - baseline.tier_cpu
            self.result.update(
                tier_cpu_s=round(tier_cpu, 2),
                tier_cpu_us_per_event=round(tier_cpu / len(self.workload.events) * 1e6, 1),
                tier_peak_rss_bytes=rss_bytes(self._tier_pid(), "VmHWM"))
        self.result["latency_stages"] = stage_quantiles(metrics, baseline.metrics)
        return metrics, elapsed, peaks

    def resources(self, metrics: dict[str, float], per_worker: list[dict[str, float]],
                  baseline: Baseline, cpus: list[float], peaks: list[int]) -> dict[str, Any]:
        """CPU, memory, disk, records in and the workers' log findings of a finished run."""
        topics, pids, cpu = self.deployment.topics, self.pids, sum(cpus)
        raw_in = f'eventide_records_in_total{{topic="{topics.raw_events.name}"}}'
        person_in = f'eventide_records_in_total{{topic="{topics.person_events.name}"}}'
        return dict(
            worker_cpu_s=round(cpu, 2),
            worker_cpu_s_per_worker=[round(c, 2) for c in cpus],
            worker_cpu_us_per_event=round(cpu / len(self.workload.events) * 1e6, 1),
            broker_cpu_s=round(cpu_seconds(self.broker_pid) - baseline.broker_cpu, 2),
            bench_cpu_s=round(self_cpu_seconds() - baseline.self_cpu, 2),
            host_steal_s=round(host_steal_seconds() - baseline.steal, 2),
            idle_rss_bytes=max(baseline.idle_rss),
            idle_rss_per_worker=baseline.idle_rss,
            peak_rss_bytes=max(peaks),
            peak_rss_per_worker=peaks,
            rss_end_bytes=max(rss_bytes(pid) for pid in pids),
            metric_peak_rss_per_worker=[int(m.get(M_PEAK_RSS, 0)) for m in per_worker],
            rocksdb_size_bytes=int(metrics.get(M_ROCKSDB, 0)),
            worst_stall_s=max((float(m.get(M_LOOP_LAG_MAX, 0)) for m in per_worker), default=0),
            heap_trims=sum(int(m.get(M_HEAP_TRIMS, 0)) for m in per_worker),
            heap_trim_s=round(sum(float(m.get(M_HEAP_TRIM_S, 0)) for m in per_worker), 3),
            broker_rss_bytes=rss_bytes(self.broker_pid),
            raw_records_in=int(metrics.get(raw_in, 0)),
            person_records_in=int(metrics.get(person_in, 0)),
            person_records_per_worker=[int(m.get(person_in, 0)) for m in per_worker],
            data_dir_bytes=sum(dir_bytes(d) for d in self.data_dirs if d.exists()),
            loadavg_after=list(os.getloadavg()),
            worker_log_findings=[scan_log(w.log_path, offset)
                                 for w, offset in zip(self.workers, self.log_offsets)],
            worker_metrics=per_worker,
        )

    async def count_changes(self, metrics: dict[str, float], baseline: Baseline) -> None:
        """Drain the ``segments.changes`` watcher and record the changes, their causes and
        latencies."""
        assert self.watcher is not None
        await self.watcher.stop()
        changes, self.watcher = self.watcher.changes, None
        self.result.update(change_summary(changes, self.accepted_ms, self.workload, metrics,
                                    baseline.metrics.get(M_EVALUATIONS, 0.0)))
        result = self.result
        print(f"   segments: {len(changes):,} change records "
              f"({fmt_n(result['event_caused_changes'])} caused by our items), "
              f"accept -> change p50/p99 "
              f"{fmt_ms(result['accept_to_change_p50_s'])} / "
              f"{fmt_ms(result['accept_to_change_p99_s'])}, "
              f"{result['evaluations_per_event']:.2f} evaluations per item", flush=True)

    def print_done(self, elapsed: float, peaks: list[int]) -> None:
        result = self.result
        findings = result["worker_log_findings"]
        if result["extra_duplicates"] or any(f["commit_retries"] for f in findings):
            print(f"   note: {result['extra_duplicates']:,} duplicates beyond the resends; commit "
                  f"retries per worker {[f['commit_retries'] for f in findings]}", flush=True)
        print(f"   event loop: longest timer drift per worker "
              f"{[f['max_timer_drift_s'] for f in findings]} s", flush=True)
        if self.tier is not None:
            print(f"   ingest tier: {result['tier_cpu_s']} s CPU "
                  f"({result['tier_cpu_us_per_event']} us per item), peak RSS "
                  f"{fmt_mb(result['tier_peak_rss_bytes'])}", flush=True)
        print(f"   done: {result['events_per_s']:,.0f} items/s end to end "
              f"({elapsed:.2f}s), exact={result['exact']}, peak RSS per worker "
              f"{', '.join(fmt_mb(b) for b in peaks)} (load avg {os.getloadavg()[0]:.2f})",
              flush=True)

    def finish_profile(self) -> None:
        assert self.profiler is not None
        try:
            self.profiler.wait(self.args.profile + 60)
        except subprocess.TimeoutExpired:
            self.profiler.kill()
            self.profiler.wait(10)
        self.profiler = None
        summary = summarize_profile(RESULTS_DIR.parent.parent / self.result["profile_file"])
        self.result["profile"] = summary
        print_profile(summary)

    def print_failure(self) -> None:
        for worker in self.workers:
            print(f"\n!! {self.spec.label} failed: {self.result['error']}\n   worker log: "
                  f"{worker.log_path}\n   --- last lines ---\n{worker.tail(40)}\n   ---",
                  file=sys.stderr, flush=True)

    async def close(self) -> None:
        if self.profiler is not None and self.profiler.poll() is None:
            self.profiler.terminate()
            self.profiler.wait(10)
        if self.watcher is not None:
            await asyncio.gather(self.watcher.stop(drain_timeout_s=0), return_exceptions=True)
        for worker in self.workers:
            worker.stop()
        if self.tier is not None:
            self.tier.stop()


def _counts(metrics: dict[str, float], per_worker: list[dict[str, float]], expected: Expected,
            elapsed: float, counted_s: float, sent: int) -> dict[str, Any]:
    """The verdict counts of a finished run against what it expected, and its latencies."""
    n_new, n_dup = int(metrics.get(M_NEW, 0)), int(metrics.get(M_DUP, 0))
    deadletters = int(metrics.get(M_DEADLETTERS, 0))
    return dict(
        e2e_s=round(elapsed, 3),
        verdicts_counted_s=round(counted_s, 3),
        events_per_s=round(sent / elapsed, 1),
        expected_new=expected.new, expected_duplicates=expected.duplicates,
        expected_durable=expected.durable,
        processed_new=n_new, duplicates_dropped=n_dup,
        redeliveries=int(metrics.get(M_REDELIVERY, 0)), deadletters=deadletters,
        latency_count=int(metrics.get(M_LATENCY_COUNT, 0)),
        # Every unique item judged new once and made durable once, nothing dead-lettered.
        # More duplicates than resent can be right: a commit retried after a produce timeout
        # re-sends its routed records, which dedup then drops (see worker_log_findings).
        exact=(n_new == expected.new and n_dup >= expected.duplicates and deadletters == 0
               and int(metrics.get(M_LATENCY_COUNT, 0)) == expected.durable),
        extra_duplicates=n_dup - expected.duplicates,
        latency_p50_s=latency_quantile(metrics, 0.5),
        latency_p99_s=latency_quantile(metrics, 0.99),
        latency_per_worker=[(latency_quantile(m, 0.5), latency_quantile(m, 0.99))
                            for m in per_worker],
    )


def stage_quantiles(metrics: dict[str, float], before: dict[str, float]
                    ) -> dict[str, list[float | None]]:
    """Where the processing latency went during the load (app/metrics.STAGE_HISTOGRAMS): p50
    and p99 of each stage, from its buckets' growth since ``before`` (the unit stages count
    units from the worker's start: a segment definition's units before the load too)."""
    stages = {}
    for name in STAGE_HISTOGRAMS:
        prefix = metric_name(f"{name}_bucket")
        grown = {key: value - before.get(key, 0.0) for key, value in metrics.items()
                 if key.startswith(prefix)}
        stages[name] = [latency_quantile(grown, q, prefix) for q in (0.5, 0.99)]
    return stages

