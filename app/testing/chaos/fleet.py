"""The crash schedule's workers, the kills, and the consumer group's lag."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition

from app.testing.chaos.oracle import ApiUnavailable
from app.testing.harness import Deployment, Worker, free_port, wait_healthy
from tables.kafka_io import fetch_highwaters

Say = Callable[[str], None]


class Fleet:
    """Worker ``a`` (restarted after every kill, the one the reads go to) and worker ``b`` (in the
    group for part of the run: its own HTTP port and data directory)."""

    def __init__(self, d: Deployment, *, tick_s: float, say: Say) -> None:
        self.d = d
        self.say = say
        self.env = {"EVENTIDE_TICK_INTERVAL_S": str(tick_s)}
        self.ports = {"a": d.settings.http_port, "b": free_port()}
        self.workers: dict[str, Worker | None] = {"a": None, "b": None}
        self.starts = self.sigterms = self.sigkills = self.rebalances = 0
        self.t0 = time.monotonic()
        self.timeline: list[str] = []
        #: eventide_*_total counters summed over every worker incarnation (scraped before each
        #: signal and at the end: whatever a process counted after its last scrape is not here)
        self.metrics: Counter = Counter()
        #: fraction of the workload written so far, shown on the timeline
        self.progress: Callable[[], float] = lambda: 0.0

    def log_path(self, name: str) -> Path:
        return self.d.root / f"{name}.log"

    def alive(self, name: str) -> bool:
        worker = self.workers[name]
        return worker is not None and worker.process is not None and \
            worker.process.poll() is None

    def _note(self, text: str) -> None:
        line = f"{time.monotonic() - self.t0:7.1f}s [{self.progress():4.0%} written] {text}"
        self.timeline.append(line)
        self.say(line)
        for name in ("a", "b"):  # mark it in the logs too, so log lines can be placed
            if self.log_path(name).exists() or self.alive(name):
                with open(self.log_path(name), "a") as log:
                    log.write(f"===== chaos: {line}\n")

    def _other(self, name: str) -> str:
        return "b" if name == "a" else "a"

    def start(self, name: str) -> None:
        env = dict(self.env)
        if name == "b":
            env.update(EVENTIDE_HTTP_PORT=str(self.ports["b"]),
                       EVENTIDE_DATA_DIR=str(self.d.root / "data-b"))
        two = self.alive(self._other(name))
        self.rebalances += two
        self.starts += 1
        self._note(f"start {name}" + (" (joins the other: rebalance)" if two else ""))
        self.workers[name] = Worker(self.d, name, **env).start()

    async def scrape(self, name: str) -> None:
        """Add the worker's counters to :attr:`metrics` (best effort, quick)."""
        url = f"http://127.0.0.1:{self.ports[name]}/metrics"
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
                async with session.get(url, headers=self.d.app_auth) as response:
                    text = await response.text() if response.status == 200 else ""
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return
        for line in text.splitlines():
            metric, _, value = line.rpartition(" ")
            if metric.startswith("eventide_") and "_total" in metric:
                self.metrics[metric.removeprefix("eventide_")] += int(float(value))

    async def signal(self, name: str, sig: int) -> None:
        worker = self.workers[name]
        if worker is None or not self.alive(name):
            return
        await self.scrape(name)
        two = self.alive(self._other(name))
        self.rebalances += two
        if sig == signal.SIGKILL:
            self.sigkills += 1
        else:
            self.sigterms += 1
        self._note(f"{signal.Signals(sig).name} {name} pid {worker.process.pid}"  # type: ignore
                   + (" (the other takes over: rebalance)" if two else ""))
        # In a thread: a graceful stop can take seconds, and production goes on meanwhile.
        if sig == signal.SIGTERM:
            await asyncio.to_thread(worker.stop)  # graceful; SIGKILL if not done in 30 s
        else:
            await asyncio.to_thread(worker.kill, sig)

    async def ready(self, name: str, timeout_s: float = 90.0) -> None:
        worker, other = self.workers[name], self.workers[self._other(name)]
        assert worker is not None and worker.process is not None

        def logs() -> str:
            # The other worker's log too: a group that does not settle is about both.
            return worker.tail() + ("" if other is None else
                                    f"\n----- worker {self._other(name)}:\n" + other.tail())
        try:
            await wait_healthy(f"http://127.0.0.1:{self.ports[name]}", worker.process, logs,
                               timeout_s=timeout_s)
        except AssertionError as exc:
            raise AssertionError(f"worker {name} ({timeout_s} s): {exc}") from None

    async def stop_all(self) -> None:
        for name in ("a", "b"):
            if self.alive(name):
                await self.scrape(name)
        await asyncio.to_thread(self._stop_all)

    def _stop_all(self) -> None:
        for worker in self.workers.values():
            if worker is not None:
                worker.stop()


@dataclass(frozen=True)
class Schedule:
    """The kill schedule; phases end at fractions of the production (so kills land mid-stream)."""

    sigterms: tuple[int, int] = (2, 6)          # phase 1: at least / at most
    sigterm_sleep_s: tuple[float, float] = (1.0, 4.0)
    phase1_until: float = 0.30
    two_worker_sigterms: tuple[int, int] = (1, 3)
    phase2_until: float = 0.65
    burst_at: float = 0.75
    burst: tuple[int, int] = (3, 5)
    burst_sleep_s: tuple[float, float] = (0.1, 1.0)


async def run_schedule(fleet: Fleet, schedule: Schedule, rng: random.Random,
                       progress: Callable[[], float], release: asyncio.Event) -> None:
    # Phase 1: SIGTERM at random intervals; restarted each time (alone in the group).
    done = 0
    while done < schedule.sigterms[0] or (progress() < schedule.phase1_until
                                          and done < schedule.sigterms[1]):
        await asyncio.sleep(rng.uniform(*schedule.sigterm_sleep_s))
        await fleet.signal("a", signal.SIGTERM)
        fleet.start("a")
        done += 1
        await fleet.ready("a")
    # Phase 2: a second worker in the group; A is SIGTERMed while both are in; then B leaves.
    fleet.start("b")
    await fleet.ready("b")
    done = 0
    while done < schedule.two_worker_sigterms[0] or (
            progress() < schedule.phase2_until and done < schedule.two_worker_sigterms[1]):
        await asyncio.sleep(rng.uniform(*schedule.sigterm_sleep_s))
        await fleet.signal("a", signal.SIGTERM)
        fleet.start("a")
        done += 1
        await fleet.ready("a")
        await fleet.ready("b")
    await asyncio.sleep(rng.uniform(*schedule.sigterm_sleep_s))
    await fleet.signal("b", signal.SIGTERM)
    await fleet.ready("a")
    # Phase 3: a burst of SIGKILL 0.1-1 s apart (the OOM killer), a restart right after each.
    # Production holds its last part back until now; once A alone consumes everything written
    # so far (the rebalance after B left is over), the rest is written at full speed, so the
    # first SIGKILL lands while the pipeline is busy with it.
    while progress() < schedule.burst_at and not release.is_set():
        await asyncio.sleep(0.2)
    lag = await wait_for_lag(fleet.d, consumed_topics(fleet.d, raw_only=True), at_most=0,
                             timeout_s=60)
    fleet._note(f"raw lag {lag}: releasing the held-back {1 - progress():.0%} at full speed")
    release.set()
    for _ in range(rng.randint(*schedule.burst)):
        await asyncio.sleep(rng.uniform(*schedule.burst_sleep_s))
        await fleet.signal("a", signal.SIGKILL)
        fleet.start("a")


# --------------------------------------------------------------------------------------------------
# Consumer-group lag (committed offsets against fetch high-watermarks: ListOffsets is not trusted
# on the embedded broker)


def consumed_topics(d: Deployment, *, raw_only: bool = False) -> list[str]:
    t = d.topics
    raw = [t.raw_events.name, t.raw_identifies.name, t.raw_anonymous.name]
    return raw if raw_only else [*raw, t.identity_commands.name, t.anonymous_links.name,
                                 t.person_events.name]


async def group_lag(d: Deployment, topics: list[str], timeout_s: float = 10.0) -> int:
    """Records on ``topics`` not yet committed by the workers' consumer group."""
    tps = [TopicPartition(topic, p) for topic in topics for p in range(d.settings.partitions)]
    group = AIOKafkaConsumer(bootstrap_servers=d.bootstrap, group_id=d.settings.app_id,
                             enable_auto_commit=False)
    await group.start()
    try:
        committed = {tp: (await group.committed(tp)) or 0 for tp in tps}
    finally:
        await group.stop()
    reader = AIOKafkaConsumer(bootstrap_servers=d.bootstrap, group_id=None,
                              enable_auto_commit=False)
    await reader.start()
    try:
        reader.assign(tps)
        for tp in tps:
            reader.seek(tp, committed[tp])
        highwater = await fetch_highwaters(reader, tps, timeout_s=timeout_s)
        if len(highwater) < len(tps):
            raise ApiUnavailable("no high-watermark for every partition in time")
        return sum(max(0, highwater[tp] - committed[tp]) for tp in tps)
    finally:
        await reader.stop()


async def wait_for_lag(d: Deployment, topics: list[str], *, at_most: int, timeout_s: float,
                       say: Say | None = None) -> int:
    """Poll the group's lag until it is at most ``at_most`` (bounded); the last lag seen."""
    deadline = time.monotonic() + timeout_s
    last_said = 0.0
    while True:
        try:
            lag = await group_lag(d, topics)
        except Exception as exc:  # broker busy or worker restarting: look again
            lag = -1
            if say:
                say(f"lag unknown: {exc!r}")
        if 0 <= lag <= at_most or time.monotonic() > deadline:
            return lag
        if say and time.monotonic() - last_said > 10:
            say(f"lag {lag} records")
            last_said = time.monotonic()
        await asyncio.sleep(1.0)
