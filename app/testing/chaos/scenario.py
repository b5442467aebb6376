"""The crash schedule's whole run: produce under the kill schedule, drain, reconcile."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiokafka import AIOKafkaProducer

from app.testing.chaos.fleet import (Fleet, Say, Schedule, consumed_topics, run_schedule,
                                     wait_for_lag)
from app.testing.chaos.oracle import (ApiUnavailable, ChangeCheck, Expected, check_changes,
                                      compare, observe, oracle)
from app.testing.chaos.workload import SEGMENTS, Workload, envelopes, generate
from app.testing.harness import Deployment, read_topic

# Producing


async def produce(d: Deployment, w: Workload, rate: float, produced: list[int], *,
                  hold_at: float = 1.0, release: asyncio.Event | None = None) -> None:
    """Write the workload chunk by chunk (each acknowledged before the next), at ``rate`` items/s.

    At ``hold_at`` of the items, wait for ``release``, then write the rest at full speed. A chunk
    whose write fails is written again whole: the same items, the same ids.
    """
    names = {"events": d.topics.raw_events.name, "identifies": d.topics.raw_identifies.name,
             "anonymous": d.topics.raw_anonymous.name}
    partitions = d.settings.partitions
    producer = AIOKafkaProducer(bootstrap_servers=d.bootstrap, acks="all", linger_ms=5,
                                max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        start = time.monotonic()
        held = False
        for chunk in w.chunks():
            if release is not None and not held and produced[0] >= hold_at * len(w.sent):
                await release.wait()
                held = True
            records = envelopes(chunk, partitions)
            for attempt in range(6):
                try:
                    futures = [await producer.send(names[topic], value, key=key,
                                                   partition=partition)
                               for topic, partition, key, value in records]
                    await asyncio.gather(*futures)
                    break
                except Exception:
                    if attempt == 5:
                        raise
                    await asyncio.sleep(1.0)
            produced[0] += len(chunk)
            ahead = start + produced[0] / rate - time.monotonic()
            if ahead > 0 and not held:
                await asyncio.sleep(ahead)
    finally:
        await producer.stop()


async def define_segments(d: Deployment) -> None:
    async with aiohttp.ClientSession() as session:
        for sid, doc in SEGMENTS.items():
            async with session.put(f"{d.url}/api/v1/segments/{sid}", json=doc,
                                   headers=d.app_auth) as response:
                assert response.status == 200, await response.text()
        deadline = time.monotonic() + 60
        while True:
            async with session.get(f"{d.url}/api/v1/segments", headers=d.app_auth) as response:
                states = {s["id"]: s["state"] for s in (await response.json())["segments"]}
            if states == {sid: "live" for sid in SEGMENTS}:
                return
            assert time.monotonic() < deadline, f"segments not live: {states}"
            await asyncio.sleep(0.2)


# --------------------------------------------------------------------------------------------------
# The whole run


@dataclass
class Config:
    events: int
    seed: int
    #: items produced per second (the run's length is about events / rate)
    rate: float
    tick_s: float = 2.0
    drain_timeout_s: float = 120.0
    http_concurrency: int = 16
    schedule: Schedule = field(default_factory=Schedule)


@dataclass
class Result:
    seed: int
    counts: dict[str, int]
    people: int
    survivors: int
    expected_events: int
    sigterms: int
    sigkills: int
    starts: int
    rebalances: int
    produce_s: float
    drain_s: float
    duration_s: float
    changes: int
    change_repeats: int
    deadletters: int
    differences: list[str]
    timeline: list[str]
    work_dir: Path
    metrics: Counter = field(default_factory=Counter)
    #: Segment changes a worker withheld as a repeat of the last one (logged "invariant:").
    invariant_violations: int = 0
    #: Unfinished units a new owner fenced off in a changelog (a writer killed mid-unit).
    fenced_units: int = 0

    @property
    def kinds(self) -> Counter:
        return Counter(line.split(":", 1)[0] for line in self.differences)

    def summary(self) -> str:
        c = self.counts
        return "\n".join([
            f"seed {self.seed}: {c['items']} items written ({c.get('event', 0)} identified events, "
            f"{c.get('anonymous', 0)} anonymous events, {c.get('identify', 0)} identifies, "
            f"{c.get('merge', 0)} merges, {c.get('resends', 0)} exact resends); "
            f"{self.expected_events} distinct events expected",
            f"people {self.people} ({self.survivors} after merges)",
            f"kills: {self.sigterms} SIGTERM + {self.sigkills} SIGKILL; worker starts "
            f"{self.starts}; rebalances with two in the group {self.rebalances}",
            f"produce {self.produce_s:.1f} s, drain after production {self.drain_s:.1f} s, "
            f"total {self.duration_s:.1f} s",
            f"segments.changes: {self.changes} records, {self.change_repeats} repeats of a "
            f"change_id (redelivery) dropped; dead letters {self.deadletters}",
            "worker counters (summed over incarnations, as scraped): "
            + ", ".join(f"{k} {self.metrics[k]}" for k in (
                'verdict_total{kind="new"}', 'verdict_total{kind="duplicate"}',
                'verdict_total{kind="redelivery"}', 'merges_total{kind="done"}',
                'anonymous_links_total{kind="linked"}', "forwarded_to_survivor_total",
                "units_cut_short_total")
                if k in self.metrics),
            f"invariant violations logged by any worker: {self.invariant_violations}; "
            f"unfinished units fenced off in changelogs: {self.fenced_units}",
            f"differences: {len(self.differences)}"
            + (f" {dict(self.kinds)}" if self.differences else ""),
        ])


def log_excerpts(result: Result, *, lines: int = 40) -> str:
    """Error lines of the worker logs (and their chaos markers), for a report."""
    out = []
    for name in ("a", "b"):
        path = result.work_dir / f"{name}.log"
        if not path.exists():
            continue
        picked = [line for line in path.read_text(errors="replace").splitlines()
                  if "ERROR" in line or "Traceback" in line or "Error" in line
                  or "===== chaos" in line or "WARNING" in line]
        out.append(f"--- {path} ({len(picked)} lines of interest, last {lines}) ---")
        out.extend(picked[-lines:])
    return "\n".join(out)


async def run_scenario(d: Deployment, cfg: Config, say: Say = print) -> Result:
    t0 = time.monotonic()
    w = generate(cfg.events, cfg.seed)
    counts = w.counts()
    say(f"workload: {counts}")
    fleet = Fleet(d, tick_s=cfg.tick_s, say=say)
    rng = random.Random(cfg.seed * 7919 + 1)
    produced = [0]
    differences: list[str] = []
    changes = ChangeCheck([], 0, 0)
    deadletters: list[Any] = []
    produce_s = drain_s = 0.0
    try:
        fleet.start("a")
        await fleet.ready("a")
        await define_segments(d)
        started = time.monotonic()
        fleet.progress = lambda: produced[0] / len(w.sent)
        release = asyncio.Event()
        producing = asyncio.ensure_future(produce(d, w, cfg.rate, produced,
                                                  hold_at=cfg.schedule.burst_at, release=release))
        producing.add_done_callback(lambda _: fleet._note("production done"))
        try:
            await run_schedule(fleet, cfg.schedule, rng, lambda: produced[0] / len(w.sent),
                               release)
        except BaseException:
            producing.cancel()
            raise
        await producing
        produce_s = time.monotonic() - started
        drained_from = time.monotonic()
        await fleet.ready("a", timeout_s=180)
        lag = await wait_for_lag(d, consumed_topics(d), at_most=2 * d.settings.partitions,
                                 timeout_s=cfg.drain_timeout_s, say=say)
        fleet._note(f"a owns every partition and has recovered them; lag {lag}; reconciling")
        expected = oracle(w)
        differences = await reconcile(d, w, expected, cfg, say)
        drain_s = time.monotonic() - drained_from
        records = await read_topic(d.bootstrap, d.topics.segment_changes.name,
                                   partitions=d.settings.partitions, timeout_s=60)
        changes = check_changes(records, expected)
        differences += changes.differences
        deadletters = await read_topic(d.bootstrap, d.topics.deadletter.name,
                                       partitions=d.settings.partitions, timeout_s=10)
        differences += [_deadletter_line(record) for record in deadletters[:20]]
    finally:
        await fleet.stop_all()
    violations = worker_log_lines(d.root, "invariant:")
    differences += [f"invariant: {line}" for line in violations[:20]]
    return Result(
        seed=cfg.seed, counts=counts, people=len(w.people), survivors=len(w.survivors),
        expected_events=expected.events, sigterms=fleet.sigterms, sigkills=fleet.sigkills,
        starts=fleet.starts, rebalances=fleet.rebalances, produce_s=produce_s, drain_s=drain_s,
        duration_s=time.monotonic() - t0, changes=changes.records,
        change_repeats=changes.repeats, deadletters=len(deadletters), differences=differences,
        timeline=fleet.timeline, work_dir=d.root, metrics=fleet.metrics,
        invariant_violations=len(violations),
        fenced_units=len(worker_log_lines(d.root, "belong to an unfinished unit")))


def _deadletter_line(record: Any) -> str:
    headers = {k: v.decode(errors="replace") for k, v in record.headers}
    return (f"deadletter: {headers.get('error')} from "
            f"{headers.get('origin.topic')}/{headers.get('origin.partition')}"
            f"@{headers.get('origin.offset')}")


def worker_log_lines(root: Path, marker: str) -> list[str]:
    """Lines of every worker's log (all incarnations append to one file) that hold ``marker``."""
    found = []
    for name in ("a", "b"):
        path = root / f"{name}.log"
        if path.exists():
            found += [line for line in path.read_text(errors="replace").splitlines()
                      if marker in line]
    return found


async def reconcile(d: Deployment, w: Workload, expected: Expected, cfg: Config,
                    say: Say) -> list[str]:
    """Poll the read API until it matches the oracle twice in a row (bounded); the differences of
    the last look."""
    deadline = time.monotonic() + cfg.drain_timeout_s
    clean = 0
    passes = 0
    differences: list[str] = ["never looked"]
    while True:
        passes += 1
        try:
            differences = compare(expected, await observe(d, w, concurrency=cfg.http_concurrency))
        except ApiUnavailable as exc:
            differences = [f"api: {exc}"]
        clean = clean + 1 if not differences else 0
        if passes == 1 or clean or passes % 5 == 0:
            say(f"reconcile pass {passes}: {len(differences)} differences"
                + (f", e.g. {differences[0]}" if differences else ""))
        if clean >= 2:
            return []
        if time.monotonic() > deadline:
            return differences
        await asyncio.sleep(3.0 if clean else 2.0)
