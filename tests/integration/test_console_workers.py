"""The console with two workers in one group: every page answers for every person on either
worker (person pages forwarded to the owner with the viewer's authority, lists from the API)."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from tests.support.harness import Deployment, Worker, eventually, free_port

pytestmark = pytest.mark.integration

PEOPLE = [f"c{i}" for i in range(8)]


async def test_console_pages_and_actions_work_for_every_person_on_every_worker(
        deployment: Deployment) -> None:
    d = deployment
    workers = [Worker(d, "a").start(),
               Worker(d, "b", EVENTIDE_HTTP_PORT=str(free_port()),
                      EVENTIDE_DATA_DIR=str(d.root / "data-b")).start()]
    try:
        await asyncio.gather(*(w.wait_ready(90) for w in workers))
        jar = aiohttp.DummyCookieJar()
        async with aiohttp.ClientSession(cookie_jar=jar) as session:
            # Signed in with the session cookie (which the API's own forwarding would not carry).
            async with session.post(workers[0].url + "/console/login", allow_redirects=False,
                                    data={"app_key": d.settings.app_key}) as response:
                assert response.status == 303
                token = response.cookies["eventide_console"].value
            cookie = {"Cookie": f"eventide_console={token}"}
            for person in PEOPLE:
                async with session.post(f"{workers[0].url}/api/v1/customers/{person}/events",
                                        json={"name": "clicked", "data": {"who": person}},
                                        headers=d.track_auth) as response:
                    assert response.status == 200

            async def every_page_everywhere() -> None:
                for worker in workers:
                    for person in PEOPLE:
                        async with session.get(f"{worker.url}/console/people/{person}",
                                               headers=cookie,
                                               allow_redirects=False) as response:
                            text = await response.text()
                            assert response.status == 200, (worker.url, person, text[:300])
                            assert response.headers["Content-Type"].startswith("text/html")
                            assert "Content-Security-Policy" in response.headers
                            assert f"{{&quot;who&quot;: &quot;{person}&quot;}}" in text
                    async with session.get(worker.url + "/console/?q=click",
                                           headers=cookie) as response:
                        text = await response.text()
                        assert response.status == 200
                        assert '<td class="num">8</td>' in text, text  # counted on both workers
            await eventually(every_page_everywhere, timeout_s=90, interval_s=1.0)

            for worker in workers:
                for person in PEOPLE[:3]:
                    async with session.get(f"{worker.url}/console/people/{person}/export",
                                           headers=cookie) as response:
                        assert response.status == 200
                        lines = [json.loads(x) for x in (await response.text()).splitlines()]
                        assert [x["kind"] for x in lines] == ["profile", "event"]

            # Resend from either worker, for people of both: the redirect reaches the browser.
            for index, person in enumerate(PEOPLE):
                worker = workers[index % 2]
                async with session.get(f"{worker.url}/api/v1/customers/{person}/activities",
                                       headers=d.app_auth) as response:
                    event_id = (await response.json())["activities"][0]["id"]
                async with session.post(worker.url + "/console/resend", allow_redirects=False,
                                        headers={**cookie, "Origin": worker.url}, data={
                                            "kind": "person", "who": person,
                                            "event_id": event_id,
                                            "return_to": f"/console/people/{person}"}) as response:
                    assert response.status == 303, await response.text()
                    assert response.headers["Location"].startswith(
                        f"/console/people/{person}?sent=")

            async def resent() -> None:
                for person in PEOPLE:
                    async with session.get(f"{workers[1].url}/api/v1/customers/{person}/"
                                           "activities", headers=d.app_auth) as response:
                        body = await response.json()
                    assert [a["data"] for a in body["activities"]] == [{"who": person}] * 2
            await eventually(resent, timeout_s=60)
    finally:
        for worker in workers:
            worker.stop()
