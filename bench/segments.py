"""Segment definitions through the API, and the ``segments.changes`` records they produce."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from app.testing.harness import Deployment
from tables.kafka_io import drop_finished
from bench.measure import (M_ENTERED, M_EVALUATIONS, M_EXITED, M_NEW, BenchError,
                           percentile)
from bench.workload import Workload


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


def change_summary(changes: list[tuple[str, str, int, int]], accepted_ms: dict[str, int] | None,
             workload: Workload, metrics: dict[str, float], evaluations0: float
             ) -> dict[str, Any]:
    """The change records read during a run: by kind and cause, accept -> change latencies,
    evaluations per item."""
    evaluations = metrics.get(M_EVALUATIONS, 0.0) - evaluations0
    kinds = Counter(change for _, change, _, _ in changes)
    # An item's id has no colon; other causes are "timer:<due>", "definition:<v>", ...
    causes = Counter("identify" if cause in workload.identify_ids else
                     cause.split(":", 1)[0] if ":" in cause else "event"
                     for cause, _, _, _ in changes)
    lags = change_latencies(changes, accepted_ms) if accepted_ms is not None else []
    return dict(
        change_records=len(changes),
        change_records_by_kind=dict(kinds),
        change_records_by_cause=dict(causes),
        change_timestamp_types=sorted({t for _, _, _, t in changes}),
        changes_counted_by_worker=int(metrics.get(M_ENTERED, 0) + metrics.get(M_EXITED, 0)),
        event_caused_changes=len(lags) if accepted_ms is not None else None,
        accept_to_change_p50_s=percentile(lags, 0.5),
        accept_to_change_p99_s=percentile(lags, 0.99),
        accept_to_change_max_s=lags[-1] if lags else None,
        segment_evaluations=int(evaluations),
        evaluations_per_event=round(evaluations / max(int(metrics.get(M_NEW, 0)), 1), 3),
    )
