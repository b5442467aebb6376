"""Several workers in one group: partitions spread, reads answer right on every worker (keyed
reads forwarded to the owner, lists gathered from all), and a worker killed under load loses and
doubles nothing."""

from __future__ import annotations

import asyncio
import signal
import time

import aiohttp
import pytest

from app.producer import partition_for
from tests.support.harness import Deployment, Worker, eventually, free_port

pytestmark = pytest.mark.integration

PEOPLE = [f"w{i}" for i in range(12)]


def extra_worker(d: Deployment, name: str) -> Worker:
    return Worker(d, name, EVENTIDE_HTTP_PORT=str(free_port()),
                  EVENTIDE_DATA_DIR=str(d.root / f"data-{name}"))


async def get(session: aiohttp.ClientSession, worker: Worker, d: Deployment, path: str,
              **params: str) -> dict:
    async with session.get(worker.url + path, headers=d.app_auth, params=params) as response:
        assert response.status == 200, (worker.url, path, await response.text())
        return await response.json()


async def test_reads_are_right_on_every_worker_and_a_kill_loses_nothing(
        deployment: Deployment) -> None:
    d = deployment
    workers = [Worker(d, "a").start(), extra_worker(d, "b").start(), extra_worker(d, "c").start()]
    try:
        await asyncio.gather(*(w.wait_ready(90) for w in workers))
        async with aiohttp.ClientSession() as session:
            async with session.put(workers[0].url + "/api/v1/segments/buyers", headers=d.app_auth,
                                   json={"name": "b", "match": {"event": "bought"}}) as response:
                assert response.status == 200
            sent: dict[str, int] = {p: 0 for p in PEOPLE}

            async def send(round_: int) -> None:
                for index, person in enumerate(PEOPLE):
                    target = workers[(index + round_) % len(workers)]
                    if target.process is None or target.process.poll() is not None:
                        target = workers[0]
                    async with session.post(f"{target.url}/api/v1/customers/{person}/events",
                                            json={"name": "bought", "data": {"r": round_}},
                                            headers=d.track_auth) as response:
                        assert response.status == 200
                    sent[person] += 1

            for round_ in range(3):
                await send(round_)
            workers[1].kill(signal.SIGKILL)  # under load: more rounds while the group rebalances
            for round_ in range(3, 6):
                await send(round_)
            survivors = [workers[0], workers[2]]

            async def all_in() -> None:
                for worker in survivors:
                    for person in PEOPLE:
                        body = await get(session, worker, d,
                                         f"/api/v1/customers/{person}/activities", limit="100")
                        rounds = sorted(a["data"]["r"] for a in body["activities"])
                        assert rounds == list(range(sent[person])), (worker.url, person, rounds)
                    segments = await get(session, worker, d, "/api/v1/segments")
                    assert segments["segments"][0]["members"] == len(PEOPLE)
                    assert segments["segments"][0]["state"] == "live"
                    names = await get(session, worker, d, "/api/v1/events/names")
                    assert names["names"] == [{"name": "bought", "count": 6 * len(PEOPLE),
                                               "last_seen": names["names"][0]["last_seen"]}]
                    members = await get(session, worker, d, "/api/v1/segments/buyers/membership",
                                        limit="5")
                    assert members["people"] == sorted(PEOPLE)[:5] and members["next"]
            await eventually(all_in, timeout_s=120, interval_s=1.0)
            # Both survivors processed part of the person partitions: the work was spread.
            for worker in survivors:
                async with session.get(worker.url + "/metrics", headers=d.app_auth) as response:
                    metrics = await response.text()
                assert f'eventide_records_in_total{{topic="{d.topics.person_events.name}"}}' \
                    in metrics, worker.url
    finally:
        for worker in workers:
            worker.stop()


async def test_workers_trust_only_signed_forwards_and_never_pass_the_caller_s_key(
        deployment: Deployment) -> None:
    """Issue 14.1: the caller is checked before anything is forwarded; a request claiming to be
    forwarded needs a valid worker signature; errors name no internal address; a bad parameter is
    a 400 on every worker."""
    d = deployment
    workers = [Worker(d, "a").start(), extra_worker(d, "b").start()]
    try:
        await asyncio.gather(*(w.wait_ready(90) for w in workers))
        async with aiohttp.ClientSession() as session:
            async def owned_elsewhere() -> str:
                # A person whose partition worker a does not own: a's reads of it are forwarded.
                for person in (f"t{i}" for i in range(64)):
                    async with session.get(f"{workers[0].url}/api/v1/customers/{person}/"
                                           "activities", headers=d.app_auth) as response:
                        assert response.status in (200, 404)
                    partition = partition_for(person.encode(), d.settings.partitions)
                    if (d.topics.person_events.name, partition) not in await assigned(workers[0]):
                        return person
                raise AssertionError("worker a owns every partition")
            person = await eventually(owned_elsewhere, timeout_s=60)
            path = f"/api/v1/customers/{person}/activities"
            async with session.get(workers[0].url + path) as response:
                assert response.status == 401, "checked here before any forwarding"
            for forged in ({"X-Eventide-Forwarded": "1"},
                           {"X-Eventide-Forwarded": "1", "X-Eventide-Signature": "t=1,s=00"}):
                for worker in workers:
                    async with session.get(worker.url + path, headers=forged) as response:
                        assert response.status == 401, (worker.url, forged)
                        assert "signature" in await response.text()
            async with session.get(workers[0].url + path, headers=d.app_auth) as response:
                assert response.status in (200, 404)  # forwarded, signed, answered by b
            for worker in workers:
                async with session.get(worker.url + "/api/v1/events/names?limit=-1",
                                       headers=d.app_auth) as response:
                    text = await response.text()
                    assert response.status == 400, (worker.url, text)
                    assert "127.0.0.1" not in text and "http" not in text
    finally:
        for worker in workers:
            worker.stop()


async def assigned(worker: Worker) -> set[tuple[str, int]]:
    """The person.events partitions a worker reports owning (from its lag gauge)."""
    async with aiohttp.ClientSession() as session:
        async with session.get(worker.url + "/metrics",
                               headers=worker.deployment.app_auth
                               ) as response:
            text = await response.text()
    found = set()
    for line in text.splitlines():
        if line.startswith("eventide_consumer_lag{"):
            labels = dict(part.split("=", 1) for part in line[line.index("{") + 1:
                                                               line.index("}")].split(","))
            found.add((labels["topic"].strip('"'), int(labels["partition"].strip('"'))))
    return found


async def test_a_worker_on_a_port_in_use_stops_before_it_joins_the_group(
        deployment: Deployment) -> None:
    """It says so in one line and takes no partition: the group's workers see no rebalance (it
    used to join, take partitions and crash, two rebalances for the others)."""
    d = deployment
    first = Worker(d, "a").start()
    try:
        await first.wait_ready(90)
        second = Worker(d, "b", EVENTIDE_DATA_DIR=str(d.root / "data-b")).start()  # a's port
        assert second.process is not None
        assert await asyncio.to_thread(second.process.wait, 60) == 1
        said = second.log_path.read_text()
        assert f"error: cannot listen on 127.0.0.1:{d.settings.http_port}: " in said, said
        assert "set EVENTIDE_HTTP_PORT (or --port) to a free port" in said, said
        assert "Traceback" not in said and "partitions assigned" not in said, said
        assert "partitions revoked" not in first.tail(200)
        async with aiohttp.ClientSession() as session:
            async with session.get(first.url + "/healthz") as response:
                assert response.status == 200
    finally:
        first.stop()


async def test_of_two_workers_started_together_on_one_port_one_stops_before_joining(
        deployment: Deployment) -> None:
    """The port is held from the moment it is taken (bound and listening). Bound alone, Linux
    let both workers bind it (SO_REUSEADDR), both joined the group, and the loser crashed when
    its HTTP API started."""
    d = deployment
    pair = [Worker(d, "a"), Worker(d, "b", EVENTIDE_DATA_DIR=str(d.root / "data-b"))]
    for worker in pair:
        worker.start()
    try:
        deadline = time.monotonic() + 60
        while all(worker.running() for worker in pair) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        stopped = [worker for worker in pair if not worker.running()]
        assert len(stopped) == 1, [worker.tail() for worker in pair]
        loser, = stopped
        winner, = (worker for worker in pair if worker is not loser)
        assert loser.exited_on_its_own == 1
        said = loser.log_path.read_text()
        assert f"error: cannot listen on 127.0.0.1:{d.settings.http_port}: " in said, said
        assert "Traceback" not in said and "partitions assigned" not in said, said
        await winner.wait_ready(90)
        assert "partitions revoked" not in winner.tail(200)
    finally:
        for worker in pair:
            worker.stop()
