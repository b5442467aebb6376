"""``--recovery``: restart a worker with its data intact and with it deleted, and time both."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from app.testing.harness import Deployment, Worker
from tables.kafka_io import fetch_to_end
from bench.measure import BenchError, dir_bytes, rss_bytes
from bench.report import fmt_mb, fmt_n


async def read_all(bootstrap: str, topics: list[tuple[str, int]],
                   on_records: Callable[[str, list[Any]], None],
                   timeout_s: float = 600.0) -> None:
    """Every record of each ``(topic, partitions)`` to ``on_records(topic, records)``, read with
    a plain consumer from the beginning to the fetch high-watermark (ListOffsets is not trusted
    on the embedded broker)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_wait_ms=50)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for topic, partitions in topics for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        try:
            async for fetched in fetch_to_end(consumer, set(tps), timeout_ms=200,
                                              max_records=50_000, timeout_s=timeout_s):
                for tp, records in fetched.items():
                    on_records(tp.topic, records)
        except TimeoutError:
            raise BenchError(f"{len(topics)} topic(s) not read to their end in {timeout_s:g}s"
                             ) from None
    finally:
        await consumer.stop()


async def count_records(bootstrap: str, topics: list[tuple[str, int]]) -> dict[str, int]:
    """Records on each ``(topic, partitions)``."""
    counts: Counter = Counter({topic: 0 for topic, _ in topics})

    def count(topic: str, records: list[Any]) -> None:
        counts[topic] += len(records)

    await read_all(bootstrap, topics, count)
    return dict(counts)


async def members_by_changes(bootstrap: str, topic: str, partitions: int) -> dict[str, int]:
    """Member count per segment as ``segments.changes`` tells it: entered minus exited, each
    change once (a re-published change has the same ``change_id``)."""
    seen: set[str] = set()
    members: Counter = Counter()

    def tally(_: str, records: list[Any]) -> None:
        for record in records:
            change = orjson.loads(record.value)
            if change["change_id"] not in seen:
                seen.add(change["change_id"])
                members[change["segment_id"]] += 1 if change["change"] == "entered" else -1

    await read_all(bootstrap, [(topic, partitions)], tally)
    return {segment: n for segment, n in members.items() if n}


async def segment_members(deployment: Deployment, url: str) -> dict[str, int]:
    """``GET /api/v1/segments``: member count per segment id (empty without segments)."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        async with session.get(url + "/api/v1/segments", headers=deployment.app_auth) as response:
            if response.status != 200:
                raise BenchError(f"GET /api/v1/segments: {response.status}")
            return {s["id"]: s["members"] for s in (await response.json())["segments"]}


_RECOVERED_LINE = re.compile(rb"recovered (\d+) changelog records .*? in ([0-9.]+)s")
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


async def _restart_intact(worker: Worker, recovery: dict[str, Any]) -> None:
    """Time worker 1's restart with its data dir intact (nothing to recover), then stop it."""
    t0 = time.perf_counter()
    worker.start()
    await worker.wait_ready(timeout_s=600)
    recovery["intact_ready_s"] = round(time.perf_counter() - t0, 2)
    worker.stop()
    print(f"   recovery: restart with data dir intact ready in {recovery['intact_ready_s']:.1f}s",
          flush=True)


async def _count_changelogs(deployment: Deployment, bootstrap: str,
                            recovery: dict[str, Any]) -> int:
    """Count the records on every changelog topic (what a rebuild must read); their total."""
    partitions = deployment.settings.partitions
    changelogs = [(t.name, partitions) for t in deployment.topics.all() if ".changelog." in t.name]
    t0 = time.perf_counter()
    counts = await count_records(bootstrap, changelogs)
    total = sum(counts.values())
    recovery.update(changelog_records=total, changelog_records_by_topic=counts,
                    count_s=round(time.perf_counter() - t0, 2))
    print(f"   recovery: {total:,} changelog records on {len(changelogs)} changelog topics "
          f"(counted in {recovery['count_s']:.1f}s)", flush=True)
    return total


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
    await _restart_intact(worker, recovery)
    # Counted after the intact restart: its ticks may have written more changelog records.
    total = await _count_changelogs(deployment, bootstrap, recovery)
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
        recoveries = [(int(m[1]), float(m[2])) for m in _RECOVERED_LINE.finditer(log.read())]
    applied = sum(records for records, _ in recoveries)
    # The worker's recoveries (one per source topic) run at once from its first assignment:
    # the longest is the time its state took to read, without the process's start and join.
    reading_s = max((seconds for _, seconds in recoveries), default=0.0)
    members_after = await segment_members(deployment, worker.url)
    differing = sorted(k for k in set(members_before) | set(members_after)
                       if members_before.get(k) != members_after.get(k))
    # Between the two reads, the restarts' ticks may have moved people out of windows that
    # closed (the workload back-dates events for that): the change records account for it.
    told = await members_by_changes(bootstrap, deployment.topics.segment_changes.name,
                                    deployment.settings.partitions)
    # ... and so may the ticks while the change records are read: a segment's count by the
    # change records must lie between its counts read before and after them.
    members_later = await segment_members(deployment, worker.url)
    disagreeing = sorted(
        k for k in set(told) | set(members_after) | set(members_later)
        if not (min(members_after.get(k, 0), members_later.get(k, 0)) <= told.get(k, 0)
                <= max(members_after.get(k, 0), members_later.get(k, 0))))
    net_s = ready_s - recovery["intact_ready_s"]
    recovery.update(
        ready_s=round(ready_s, 2), recovered_records_logged=applied,
        reading_s=round(reading_s, 2),
        reading_records_per_s=round(applied / reading_s, 1) if reading_s else None,
        records_per_s=round(total / ready_s, 1),
        net_s=round(net_s, 2),
        net_records_per_s=round(total / net_s, 1) if net_s > 0 else None,
        peak_rss_bytes=rss_bytes(worker.process.pid, "VmHWM"),
        data_dir_bytes=dir_bytes(data_dirs[0]),
        members_before=sum(members_before.values()), members_after=sum(members_after.values()),
        members_after_change_records=sum(members_later.values()),
        segments_changed_while_reading=sum(members_after.get(k, 0) != members_later.get(k, 0)
                                           for k in set(members_after) | set(members_later)),
        segments_with_other_member_count=len(differing),
        members_by_change_records=sum(told.values()),
        segments_where_change_records_disagree=len(disagreeing))
    worker.stop()
    print(f"   recovery: data dir deleted -> ready in {ready_s:.1f}s, "
          f"{applied:,} changelog records applied (worker log); "
          f"{recovery['records_per_s']:,.0f} records/s "
          f"({fmt_n(recovery['net_records_per_s'])} records/s net of the "
          f"{recovery['intact_ready_s']:.1f}s intact restart; "
          f"{fmt_n(recovery['reading_records_per_s'])} records/s while the worker read them, "
          f"{reading_s:.1f}s); peak RSS "
          f"{fmt_mb(recovery['peak_rss_bytes'])}; segment members "
          f"{recovery['members_before']:,} before / {recovery['members_after']:,} after / "
          f"{recovery['members_by_change_records']:,} by the change records / "
          f"{recovery['members_after_change_records']:,} after reading them, "
          f"{len(disagreeing)} segment(s) disagreeing (load avg "
          f"{recovery['loadavg_after'][0]:.2f})", flush=True)
