"""Standby copies (``EVENTIDE_STANDBY_REPLICAS``): a worker keeps warm copies of the partitions
it does not own by following their changelogs, so a takeover reads only what the standby has
not applied yet, and answers exactly as the worker it replaced."""

from __future__ import annotations

import asyncio
import signal

import aiohttp
import pytest

from tests.support.harness import Deployment, Worker, eventually, free_port
from tests.support.prometheus import samples

pytestmark = pytest.mark.integration

PEOPLE = [f"s{i}" for i in range(16)]
ROUNDS = 4


async def gauge(session: aiohttp.ClientSession, worker: Worker, d: Deployment,
                name: str) -> float:
    async with session.get(worker.url + "/metrics", headers=d.app_auth) as response:
        assert response.status == 200, await response.text()
        [sample] = samples(await response.text(), name)
        return float(sample.value)


async def test_a_standby_takes_over_from_its_warm_copy_and_answers_exactly(
        deployment: Deployment) -> None:
    d = deployment
    standby = {"EVENTIDE_STANDBY_REPLICAS": "1"}
    a = Worker(d, "a", **standby).start()
    b = Worker(d, "b", EVENTIDE_HTTP_PORT=str(free_port()),
               EVENTIDE_DATA_DIR=str(d.root / "data-b"), **standby).start()
    try:
        await asyncio.gather(a.wait_ready(90), b.wait_ready(90))
        async with aiohttp.ClientSession() as session:
            async with session.put(a.url + "/api/v1/segments/buyers", headers=d.app_auth,
                                   json={"name": "b", "match": {"event": "bought"}}) as response:
                assert response.status == 200
            for round_ in range(ROUNDS):
                for person in PEOPLE:
                    async with session.post(f"{a.url}/api/v1/customers/{person}/events",
                                            json={"name": "bought", "data": {"r": round_}},
                                            headers=d.track_auth) as response:
                        assert response.status == 200

            async def all_in(worker: Worker) -> None:
                for person in PEOPLE:
                    async with session.get(f"{worker.url}/api/v1/customers/{person}/activities",
                                           headers=d.app_auth, params={"limit": "100"}) as r:
                        assert r.status == 200, await r.text()
                        rounds = sorted(x["data"]["r"] for x in (await r.json())["activities"])
                    assert rounds == list(range(ROUNDS)), (worker.url, person, rounds)
                async with session.get(worker.url + "/api/v1/segments",
                                       headers=d.app_auth) as r:
                    assert (await r.json())["segments"][0]["members"] == len(PEOPLE)

            await eventually(lambda: all_in(b), timeout_s=60, interval_s=0.5)
            # Each worker owns some partitions and follows the other's: wait until b's copy of
            # a's has stopped growing (the follower fetches once a second).
            seen: list[float] = []

            async def standby_settled() -> None:
                seen.append(await gauge(session, b, d, "eventide_changelog_standby_records"))
                assert len(seen) >= 3 and seen[-1] == seen[-3] > 0, seen
            await eventually(standby_settled, timeout_s=60, interval_s=1.0)
            followed = seen[-1]
            recovered_before = await gauge(session, b, d, "eventide_changelog_recovered_records")

            a.kill(signal.SIGKILL)
            await eventually(lambda: all_in(b), timeout_s=120, interval_s=1.0)

            async def took_over() -> None:
                fences = await gauge(session, b, d, "eventide_changelog_fences")
                assert fences > 0
                # Every partition is b's now: it follows none, and reads nothing as a standby.
                async with session.get(b.url + "/metrics", headers=d.app_auth) as r:
                    lag = samples(await r.text(), "eventide_consumer_lag")
                owned = {s.label("partition") for s in lag
                         if s.label("topic") == d.topics.person_events.name}
                assert len(owned) == d.settings.partitions, owned
            await eventually(took_over, timeout_s=120, interval_s=1.0)
            recovered = (await gauge(session, b, d, "eventide_changelog_recovered_records")
                         - recovered_before)
            # The takeover read what the standby had not applied: a's fences at most, not the
            # changelog records of a's partitions that the standby applied already.
            assert recovered < followed / 4, (recovered, followed)
    finally:
        a.stop()
        b.stop()
