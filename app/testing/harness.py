"""Run real eventide workers against an embedded broker, and read its topics: the tests' harness
(tests/support/harness.py re-exports it) and the benchmarks' (bench/ imports nothing from tests/).

Every test gets fresh topic names (its own prefix), its own consumer group, data dir and HTTP
port, so tests never see each other's records even on one broker. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from app.broker import ensure_topics
from app.settings import Settings
from app.topics import Topics, build_topics
from tables.kafka_io import fetch_to_end

REPO = Path(__file__).resolve().parents[2]
EVENTIDE = str(Path(sys.executable).with_name("eventide"))
_counter = itertools.count()


#: A readiness poll's request: a process takes its port (listening) before it serves, so a
#: request sent meanwhile waits in the queue; it is asked again, not waited on.
POLL_TIMEOUT = aiohttp.ClientTimeout(total=2)


async def wait_healthy(url: str, process: subprocess.Popen, tail: Callable[[], str], *,
                       timeout_s: float = 60.0) -> None:
    """Until ``url``/healthz answers 200; fails with ``tail()`` if the process exits or time
    runs out."""
    deadline = time.monotonic() + timeout_s
    # The health check does not verify a test certificate; the tests that use TLS do.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False),
                                     timeout=POLL_TIMEOUT) as session:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"process exited with {process.returncode}:\n" + tail())
            try:
                async with session.get(url + "/healthz") as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("not ready in time:\n" + tail())


def basic_auth(site_id: str, api_key: str) -> dict[str, str]:
    """The track API's credentials as a header (aiohttp's ``BasicAuth`` is deprecated)."""
    token = base64.b64encode(f"{site_id}:{api_key}".encode())
    return {"Authorization": "Basic " + token.decode()}


#: Every port :func:`free_port` handed out in this process.
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free now and never handed out before in this process. The kernel may give the
    same free port to two ``bind(0)``s in a row (~1 in 13,000 pairs here): a deployment's
    port and its second worker's were once the same, and that worker's readiness check was
    answered by the first (bench/results/sweep-on-arrival-20261207.d/seed-219-20000.log)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


@dataclass
class Deployment:
    """One test's namespace on the shared broker: settings, topics, credentials."""

    bootstrap: str
    root: Path
    #: (certificate, key) PEM paths: the worker serves HTTPS.
    tls: tuple[str, str] | None = None
    settings: Settings = field(init=False)
    topics: Topics = field(init=False)

    def __post_init__(self) -> None:
        run = f"t{os.getpid()}x{next(_counter)}x{uuid.uuid4().hex[:6]}"
        self.settings = Settings(
            broker=f"kafka://{self.bootstrap}", http_port=free_port(),
            data_dir=self.root / "data", site_id="site-test", api_key="track-key",
            app_key="app-key", topic_prefix=run, partitions=4, broker_flavor="tansu",
            tls_cert=self.tls[0] if self.tls else None, tls_key=self.tls[1] if self.tls else None)
        self.topics = build_topics(self.settings)

    async def create_topics(self) -> None:
        await ensure_topics(self.bootstrap, self.topics.all())

    def env(self, **extra: str) -> dict[str, str]:
        s = self.settings
        env = dict(os.environ)
        env.update(
            EVENTIDE_BROKER=s.broker or "", EVENTIDE_HTTP_PORT=str(s.http_port),
            EVENTIDE_DATA_DIR=str(s.data_dir), EVENTIDE_SITE_ID=s.site_id,
            EVENTIDE_API_KEY=s.api_key, EVENTIDE_APP_KEY=s.app_key,
            EVENTIDE_STATE_VERSION=s.state_version, EVENTIDE_TOPIC_PREFIX=s.topic_prefix,
            EVENTIDE_PARTITIONS=str(s.partitions), EVENTIDE_LOG_LEVEL="info",
            EVENTIDE_BROKER_FLAVOR="tansu",
            # The security tests send hundreds of wrong credentials on purpose from one address;
            # the limit itself is tested with its default bound (test_security.py).
            EVENTIDE_AUTH_FAILURES_PER_MINUTE="100000")
        if s.tls_cert and s.tls_key:
            env.update(EVENTIDE_TLS_CERT=s.tls_cert, EVENTIDE_TLS_KEY=s.tls_key)
        env.update(extra)
        return env

    @property
    def url(self) -> str:
        return self.settings.http_url

    @property
    def track_auth(self) -> dict[str, str]:
        return basic_auth(self.settings.site_id, self.settings.api_key)

    @property
    def app_auth(self) -> dict[str, str]:
        return {"Authorization": "Bearer " + self.settings.app_key}


#: Every worker a test started, for the report of a failed test (tests/conftest.py).
STARTED: list["Worker"] = []


class Worker:
    """An ``eventide worker`` process (or, with ``command="api"``, the stateless ingest tier)."""

    def __init__(self, deployment: Deployment, name: str = "worker", *,
                 command: str = "worker", **env: str) -> None:
        self.deployment = deployment
        self.name = name
        self.command = command
        #: The exit status of a worker that stopped before the test stopped it.
        self.exited_on_its_own: int | None = None
        self.log_path = deployment.root / f"{name}.log"
        self._env = deployment.env(**env)
        self.process: subprocess.Popen | None = None
        port = env.get("EVENTIDE_HTTP_PORT")
        self.url = (deployment.url if port is None else
                    deployment.url.rsplit(":", 1)[0] + f":{port}")

    def start(self) -> "Worker":
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen([EVENTIDE, self.command], env=self._env, cwd=REPO,
                                        stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
        STARTED.append(self)
        return self

    def running(self) -> bool:
        """Whether the process still runs; the status of one that exited before the test
        stopped it is kept in :attr:`exited_on_its_own` for the report of a failed test."""
        if self.process is None:
            return False
        status = self.process.poll()
        if status is not None and self.exited_on_its_own is None:
            self.exited_on_its_own = status
        return status is None

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        assert self.process is not None
        await wait_healthy(self.url, self.process, self.tail, timeout_s=timeout_s)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.running():
            assert self.process is not None
            self.process.send_signal(sig)
            self.process.wait(30)

    def stop(self) -> None:
        """Graceful stop (SIGTERM), hard kill if it does not finish in time."""
        if not self.running():
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


async def two_workers(deployment: Deployment) -> list[Worker]:
    """Two workers of one group (the second on its own port and data directory), ready."""
    workers = [Worker(deployment, "a").start(),
               Worker(deployment, "b", EVENTIDE_HTTP_PORT=str(free_port()),
                      EVENTIDE_DATA_DIR=str(deployment.root / "data-b")).start()]
    try:
        await asyncio.gather(*(w.wait_ready(90) for w in workers))
    except BaseException:
        for worker in workers:
            worker.stop()
        raise
    return workers


async def eventually(check: Callable[[], Awaitable[Any]], *, timeout_s: float = 30.0,
                     interval_s: float = 0.2) -> Any:
    """Retry ``check`` until it returns without AssertionError; re-raise the last one."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(interval_s)


async def read_topic(bootstrap: str, topic: str, *, partitions: int,
                     timeout_s: float = 5.0) -> list[Any]:
    """Every record now on ``topic`` (all partitions), read to the fetch high-watermark."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        try:
            async for fetched in fetch_to_end(consumer, set(tps), timeout_ms=200,
                                              timeout_s=timeout_s):
                for batch in fetched.values():
                    records.extend(batch)
        except TimeoutError:
            pass  # what is there by then: a test's assertions say what is missing
        return records
    finally:
        await consumer.stop()


async def produce_raw(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]],
                      partition: int | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key, partition=partition)
                   for key, value in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def items_on(records: list[Any]) -> list[dict[str, Any]]:
    from app.model import decode_envelope

    return [item for record in records for item in decode_envelope(record.value)]


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)
