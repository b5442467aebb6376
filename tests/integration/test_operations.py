"""Operating eventide: the stateless ingest tier (`eventide api`) beside a worker, graceful drain,
/readyz, /metrics (valid Prometheus text, consumer lag draining to 0) and JSON logs."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
from pathlib import Path

import aiohttp
import orjson
import pytest
from ulid import ULID

from app.api_tier import ApiTier
from tests.support.harness import (EVENTIDE, POLL_TIMEOUT, REPO, Deployment, Worker, dumps,
                                   eventually, free_port, items_on, produce_raw, read_topic,
                                   wait_healthy)
from tests.support.prometheus import parse, samples

pytestmark = pytest.mark.integration


class TierProcess:
    """An ``eventide api`` process on its own port, on a test deployment."""

    def __init__(self, deployment: Deployment, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = deployment.root / f"api-{self.port}.log"
        self._env = deployment.env(EVENTIDE_HTTP_PORT=str(self.port), **env)
        self.process: subprocess.Popen | None = None

    def start(self) -> "TierProcess":
        self.process = subprocess.Popen([EVENTIDE, "api"], env=self._env, cwd=REPO,
                                        stdout=open(self.log_path, "ab"),
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self

    async def wait_ready(self, timeout_s: float = 30.0) -> None:
        assert self.process is not None
        await wait_healthy(self.url, self.process, self.tail, timeout_s=timeout_s)

    def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def tail(self) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-40:])
        except FileNotFoundError:
            return "(no log)"


def json_log_lines(path: Path) -> list[dict]:
    """Every line of a JSON-format log, parsed (fails on any line that is not one object)."""
    docs = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise AssertionError(f"not a JSON log line in {path.name}: {line!r}") from None
        assert isinstance(doc, dict) and {"time", "level", "logger", "message"} <= set(doc), line
        docs.append(doc)
    return docs


async def metrics_text(session: aiohttp.ClientSession, url: str, d: Deployment) -> str:
    async with session.get(url + "/metrics", headers=d.app_auth) as response:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return await response.text()


async def test_events_posted_to_the_tier_reach_the_worker(deployment: Deployment,
                                                          worker: Worker) -> None:
    d = deployment
    tier = TierProcess(d, EVENTIDE_LOG_FORMAT="json").start()
    try:
        await tier.wait_ready()
        async with aiohttp.ClientSession() as session:
            async with session.get(tier.url + "/readyz") as response:
                assert response.status == 200
            track = {"headers": d.track_auth}
            async with session.post(f"{tier.url}/api/v1/customers/c-tier/events",
                                    json={"name": "tier_v1", "data": {"n": 1}}, **track) as r:
                assert r.status == 200, await r.text()
            async with session.put(f"{tier.url}/api/v1/customers/c-tier",
                                   json={"email": "tier@example.com", "plan": "pro"}, **track) as r:
                assert r.status == 200, await r.text()
            async with session.post(f"{tier.url}/api/v1/events",
                                    json={"name": "tier_anon", "anonymous_id": "anon-tier"},
                                    **track) as r:
                assert r.status == 200, await r.text()
            batch = {"batch": [
                {"type": "person", "action": "event", "identifiers": {"id": "c-tier"},
                 "name": "tier_v2_a"},
                {"type": "person", "action": "event", "identifiers": {"id": "c-tier"},
                 "name": "tier_v2_b"},
                {"type": "person", "action": "event", "identifiers": {"id": "c-tier"}},  # no name
            ]}
            async with session.post(f"{tier.url}/api/v2/batch", json=batch, **track) as r:
                assert r.status == 207, await r.text()
                assert [e["batch_index"] for e in (await r.json())["errors"]] == [2]
            # _update: true for a person nobody created: the tier cannot look, so it accepts...
            async with session.put(f"{tier.url}/api/v1/customers/ghost-tier",
                                   json={"_update": True, "plan": "x"}, **track) as r:
                assert r.status == 200, await r.text()
            # ... and bad input is still refused at the tier, as at a worker.
            async with session.post(f"{tier.url}/api/v1/customers/c-tier/events", json={},
                                    **track) as r:
                assert r.status == 400
            async with session.post(f"{tier.url}/api/v1/customers/c-tier/events",
                                    json={"name": "x"}) as r:
                assert r.status == 401

            async def arrived() -> None:
                async with session.get(f"{d.url}/api/v1/customers/c-tier/activities",
                                       headers=d.app_auth, params={"days": "36500"}) as r:
                    assert r.status == 200
                    names = sorted(a["name"] for a in (await r.json())["activities"])
                assert names == ["tier_v1", "tier_v2_a", "tier_v2_b"], names
                async with session.get(f"{d.url}/api/v1/customers/c-tier",
                                       headers=d.app_auth) as r:
                    assert r.status == 200
                    assert "tier@example.com" in (await r.text())
                async with session.get(f"{d.url}/api/v1/anonymous/anon-tier/activities",
                                       headers=d.app_auth) as r:
                    assert [a["name"] for a in (await r.json())["activities"]] == ["tier_anon"]
                text = await metrics_text(session, d.url, d)
                unknown = [s for s in samples(text, "eventide_identify_total")
                           if s.label("kind") == "update_of_unknown_person"]
                assert unknown and unknown[0].value == 1, "the worker saw the _update identify"

            await eventually(arrived, timeout_s=60)
            # The worker left "ghost-tier" uncreated: update-only is enforced where state is.
            async with session.get(f"{d.url}/api/v1/customers/ghost-tier",
                                   headers=d.app_auth) as r:
                assert r.status == 404

            async with session.get(tier.url + "/metrics", headers=d.track_auth) as r:
                assert r.status == 401
            text = await metrics_text(session, tier.url, d)
            families = parse(text)
            accepted = {s.label("kind"): s.value for s in families["eventide_accepted_total"].samples}
            assert accepted == {"event": 4, "identify": 2}
            statuses = {s.label("status"): s.value
                        for s in families["eventide_http_responses_total"].samples}
            assert statuses == {"200": 4, "207": 1, "400": 1, "401": 1}
            [count] = samples(text, "eventide_http_request_duration_seconds_count")
            assert count.value == 7
            assert families["eventide_http_request_duration_seconds"].type == "histogram"
            [inf] = [s for s in samples(text, "eventide_http_request_duration_seconds_bucket")
                     if s.label("le") == "+Inf"]
            assert inf.value == 7
            assert samples(text, "process_resident_memory_bytes")[0].value > 0
            assert samples(text, "eventide_ready")[0].value == 1
    finally:
        status = tier.stop()
    assert status == 0, tier.tail()
    docs = json_log_lines(tier.log_path)
    messages = [doc["message"] for doc in docs]
    assert any(m.startswith("ingest tier ready") for m in messages), messages
    assert any(m.startswith("ingest tier stopped (6 items accepted)") for m in messages), messages


async def test_tier_exits_on_a_partition_mismatch(
        deployment: Deployment) -> None:
    d = deployment
    # Topics with another partition count than the tier's: it must not produce (wrong keys).
    tier = TierProcess(d, EVENTIDE_PARTITIONS=str(d.settings.partitions * 2)).start()
    assert tier.process is not None
    await asyncio.to_thread(tier.process.wait, 30)
    assert tier.process.returncode == 2, tier.tail()
    assert "EVENTIDE_PARTITIONS" in tier.tail()


async def test_tier_drains_open_batches_on_stop(deployment: Deployment) -> None:
    """Requests in flight when the tier is told to stop are answered, and every 200 is on the
    raw topic: stop = stop accepting, finish handlers, flush open batches, then close."""
    d = deployment
    # A long linger keeps batches open when the stop begins.
    settings = d.settings.replace(http_port=free_port(), ingest_linger_ms=5000,
                                  broker_flavor="tansu")
    tier = ApiTier(settings)
    await tier.start()
    url = settings.http_url
    try:
        await asyncio.wait_for(tier.rt.connected.wait(), 30)
        ids = [str(ULID()) for _ in range(60)]
        async with aiohttp.ClientSession() as session:

            async def post(index: int) -> int:
                async with session.post(f"{url}/api/v1/customers/drain-{index % 7}/events",
                                        json={"name": "drained", "id": ids[index]},
                                        headers=d.track_auth) as response:
                    return response.status

            requests = [asyncio.ensure_future(post(i)) for i in range(len(ids))]
            # Stop only once every request waits in an open batch: a request the tier has not
            # read yet when it stops listening is refused, which is not what this test is about.
            async def all_waiting() -> None:
                assert tier.rt.batcher.waiting == len(ids), tier.rt.batcher.waiting

            await eventually(all_waiting, timeout_s=4.0, interval_s=0.02)
            stop_began = time.monotonic()
            stopping = asyncio.ensure_future(tier.stop())
            statuses = await asyncio.gather(*requests, return_exceptions=True)
            await asyncio.wait_for(stopping, 30)
            # The stop sent the open batches itself: it did not wait for their linger.
            assert time.monotonic() - stop_began < 4.0
    finally:
        if tier.rt.producer._started:  # the test failed before its stop
            await tier.stop()
    assert statuses == [200] * len(ids), statuses
    records = await read_topic(d.bootstrap, d.topics.raw_events.name,
                               partitions=d.topics.raw_events.partitions)
    assert sorted(item["id"] for item in items_on(records)) == sorted(ids)
    # And it is stopped: nothing listens any more.
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            async with session.get(url + "/healthz"):
                pass


async def test_worker_readyz_metrics_lag_and_json_logs(deployment: Deployment) -> None:
    d = deployment
    worker = Worker(d, "json-worker", EVENTIDE_LOG_FORMAT="json").start()
    try:
        # /readyz and /healthz agree: 503 until joined and recovered, then 200.
        seen: list[tuple[int, int]] = []
        async with aiohttp.ClientSession(timeout=POLL_TIMEOUT) as session:

            async def ready() -> None:
                try:
                    async with session.get(d.url + "/readyz") as r:
                        readyz = r.status
                        body = await r.json()
                    async with session.get(d.url + "/healthz") as r:
                        healthz = r.status
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    raise AssertionError("not serving yet") from None
                seen.append((readyz, healthz))
                assert readyz in (200, 503) and healthz in (200, 503)
                if readyz == 503:
                    assert body["meta"]["errors"][0].startswith("not ready")
                assert readyz == 200 and healthz == 200

            await eventually(ready, timeout_s=60, interval_s=0.1)
            assert all(healthz == 200 for readyz, healthz in seen if readyz == 200), seen

            # A backlog written while the worker is down (so it must show as lag when the worker
            # is back, whatever the machine's speed): 1,500 events of 30 people, one per record.
            worker.stop()
            total = 1500
            records = [(f"lag-{i % 30}".encode(),
                        dumps({"op": "event", "customer": f"lag-{i % 30}", "name": "loaded",
                               "id": str(ULID())})) for i in range(total)]
            await produce_raw(d.bootstrap, d.topics.raw_events.name, records)
            producing = asyncio.ensure_future(asyncio.sleep(0))
            # One record per take and one item per unit: takes grow with small records up to
            # EVENTIDE_UNIT_MAX_ITEMS items (agents.batches.TakeLimit), so both are held down.
            worker = Worker(d, "json-worker-2", EVENTIDE_LOG_FORMAT="json",
                            EVENTIDE_BATCH_MAX="1", EVENTIDE_UNIT_MAX_ITEMS="1").start()
            await eventually(ready, timeout_s=60, interval_s=0.05)
            max_lag = 0.0
            raw = d.topics.raw_events.name

            async def drained() -> None:
                nonlocal max_lag
                text = await metrics_text(session, d.url, d)
                parse(text)  # valid exposition, every scrape
                lags = {(s.label("topic"), s.label("partition")): s.value
                        for s in samples(text, "eventide_consumer_lag")}
                assert {(raw, str(p)) for p in range(d.topics.raw_events.partitions)} <= set(lags)
                max_lag = max([max_lag, *lags.values()])
                new = [s.value for s in samples(text, "eventide_verdict_total")
                       if s.label("kind") == "new"]
                assert producing.done() and new == [total], new
                assert all(value == 0 for value in lags.values()), lags

            await eventually(drained, timeout_s=120, interval_s=0.1)
            await producing
            assert max_lag > 0, "the load never showed as lag"
            text = await metrics_text(session, d.url, d)
        families = parse(text)
        for name in ("eventide_records_in_total", "eventide_verdict_total",
                     "eventide_processing_latency_seconds", "eventide_rocksdb_size_bytes",
                     "eventide_consumer_lag", "eventide_ready", "process_cpu_seconds_total"):
            assert families[name].help and families[name].type != "untyped", name
        assert families["eventide_processing_latency_seconds"].type == "histogram"
        # Counters that must stay 0 are shown at 0 (an alert can be set on each), and stayed so.
        for name in ("invariant_violations", "commits_held", "unit_failures", "fetch_gaps"):
            assert [s.value for s in samples(text, f"eventide_{name}_total")] == [0], name
        # Every raw record the producer wrote is in a committed unit (one event a record).
        committed = {s.label("topic"): s.value
                     for s in samples(text, "eventide_records_committed_total")}
        assert committed[d.topics.raw_events.name] >= total
        [count] = samples(text, "eventide_processing_latency_seconds_count")
        [inf] = [s for s in samples(text, "eventide_processing_latency_seconds_bucket")
                 if s.label("le") == "+Inf"]
        assert count.value == inf.value > 0
        # The worker runs on uvloop, the default EVENTIDE_EVENT_LOOP (app/event_loop.py).
        [loop] = samples(text, "eventide_event_loop_info")
        assert loop.label("implementation") == "uvloop" and loop.value == 1
        # Its stages (one item per unit here): each new event waited once, each unit was
        # prepared and committed once, and the wait is a part of the whole latency.
        for name in ("eventide_processing_wait_seconds", "eventide_unit_prepare_seconds",
                     "eventide_unit_commit_seconds"):
            assert families[name].type == "histogram" and families[name].help, name
        [waits] = samples(text, "eventide_processing_wait_seconds_count")
        assert waits.value == count.value
        for unit_stage in ("eventide_unit_prepare_seconds", "eventide_unit_commit_seconds"):
            [units] = samples(text, unit_stage + "_count")
            assert units.value >= count.value, unit_stage
        [waited] = samples(text, "eventide_processing_wait_seconds_sum")
        [total_s] = samples(text, "eventide_processing_latency_seconds_sum")
        assert 0 <= waited.value <= total_s.value
        lag_topics = {s.label("topic") for s in families["eventide_consumer_lag"].samples}
        assert d.topics.person_events.name in lag_topics
    finally:
        worker.stop()
    docs = json_log_lines(worker.log_path)
    assert docs, "the worker logged nothing"
    # Quiet by default (#15.5): faust's and the Kafka client's routine lines are off below debug;
    # whatever they do log (warnings) is JSON like the rest (json_log_lines parsed every line).
    assert not [doc for doc in docs if doc["logger"].startswith(("faust", "aiokafka", "mode"))
                and doc["level"].lower() in ("info", "debug")]
    assert any("HTTP API listening" in doc["message"] for doc in docs)
    assert not any("producer buffer full" in doc["message"] for doc in docs)
    # A rebalance is one line, its partitions as fields: every partition of the worker's groups.
    [assigned] = [doc for doc in docs if doc["message"].startswith("partitions assigned")]
    assert set(assigned["assigned"][d.topics.raw_events.name]) == set(
        range(d.topics.raw_events.partitions)), assigned
    assert isinstance(assigned["generation"], int), assigned


async def run_to_its_end(d: Deployment, command: str, name: str, **env: str) -> tuple[int, str]:
    """Run ``eventide <command>`` on the deployment until it exits: its status and output."""
    log_path = d.root / f"{command}-{name}.log"
    process = subprocess.Popen(
        [EVENTIDE, command], cwd=REPO, stdin=subprocess.DEVNULL, stdout=open(log_path, "ab"),
        stderr=subprocess.STDOUT, env=d.env(**env))
    try:
        await asyncio.to_thread(process.wait, 60)
    finally:
        if process.poll() is None:
            process.kill()
    return process.wait(), log_path.read_text()


@pytest.mark.parametrize("command", ["worker", "api"])
async def test_a_broker_refusing_idempotence_is_one_line(deployment: Deployment,
                                                         command: str) -> None:
    """Tansu (like some managed services) refuses idempotent producers: the worker and the tier
    stop at once with one line naming the setting to change, and no traceback."""
    status, output = await run_to_its_end(deployment, command, "idempotent",
                                          EVENTIDE_IDEMPOTENT_PRODUCER="1",
                                          EVENTIDE_HTTP_PORT=str(free_port()))
    assert status == 2, output
    assert "Traceback" not in output, output
    [line] = [line for line in output.splitlines() if "refused an idempotent producer" in line]
    assert "EVENTIDE_IDEMPOTENT_PRODUCER=0" in line, line


@pytest.mark.parametrize("command", ["worker", "api"])
async def test_a_port_in_use_is_one_line(deployment: Deployment, command: str) -> None:
    """The worker and the tier take their port before anything else: one in use stops them at
    once with one line naming the setting, no traceback (the worker's group is untouched:
    ``test_workers.py``)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        status, output = await run_to_its_end(deployment, command, "port-in-use",
                                              EVENTIDE_HTTP_PORT=str(port))
    assert status == 1, output
    assert output.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use; set "
        "EVENTIDE_HTTP_PORT (or --port) to a free port"], output
