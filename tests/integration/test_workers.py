"""Several workers in one group: partitions spread, reads answer right on every worker (keyed
reads forwarded to the owner, lists gathered from all), and a worker killed under load loses and
doubles nothing."""

from __future__ import annotations

import asyncio
import signal

import aiohttp
import pytest

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
