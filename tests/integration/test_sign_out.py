"""Signing out of the console ends the session on every worker (issue 14.9): the cookie of a
signed-out session is refused by the worker that signed it out at once, by the others as soon as
they have read the revocation, and by a worker started afterwards from its first request."""

from __future__ import annotations

import asyncio
import time
from http.cookies import SimpleCookie
from pathlib import Path

import aiohttp
import orjson
import pytest

from app.sessions import SESSION_S
from tests.integration.test_durable_embedded import Instance
from tests.support.harness import Deployment, Worker, eventually, free_port, read_topic

pytestmark = pytest.mark.integration

#: How soon another worker must refuse a signed-out cookie (it follows the revocations topic).
BOUND_S = 5.0


async def sign_in(http: aiohttp.ClientSession, url: str, app_key: str) -> str:
    async with http.post(url + "/console/login", allow_redirects=False,
                         data={"app_key": app_key, "next": "/console/"}) as response:
        assert response.status == 303
        cookie = SimpleCookie()
        cookie.load(response.headers["Set-Cookie"])
        return cookie["eventide_console"].value


async def page_status(http: aiohttp.ClientSession, url: str, token: str) -> int:
    async with http.get(url + "/console/segments", allow_redirects=False,
                        headers={"Cookie": f"eventide_console={token}"}) as response:
        await response.read()
        return response.status


async def sign_out(http: aiohttp.ClientSession, url: str, token: str) -> None:
    async with http.post(url + "/console/logout", allow_redirects=False, headers={
            "Cookie": f"eventide_console={token}", "Origin": url}) as response:
        assert response.status == 303
        assert 'eventide_console=""' in response.headers["Set-Cookie"]


def other_worker(d: Deployment, name: str) -> Worker:
    return Worker(d, name, EVENTIDE_HTTP_PORT=str(free_port()),
                  EVENTIDE_DATA_DIR=str(d.root / f"data-{name}"))


async def test_sign_out_on_one_worker_ends_the_session_on_every_worker(
        deployment: Deployment) -> None:
    d = deployment
    a, b = Worker(d, "a").start(), other_worker(d, "b").start()
    late: Worker | None = None
    try:
        await asyncio.gather(a.wait_ready(90), b.wait_ready(90))
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
            async def status(worker: Worker, token: str) -> int:
                return await page_status(http, worker.url, token)

            key = d.settings.app_key
            token, other = await sign_in(http, a.url, key), await sign_in(http, a.url, key)
            for worker in (a, b):
                assert await status(worker, token) == 200
                assert await status(worker, other) == 200

            # A live feed of the session on B is open while it signs out on A.
            feed = await http.get(b.url + "/console/segments/feed", headers={
                "Cookie": f"eventide_console={token}", "Accept": "text/event-stream"})
            assert feed.status == 200

            async def until_ready() -> None:
                while not (line := await feed.content.readline()).startswith(b"event: ready"):
                    assert line, "the feed ended before it was ready"
            await asyncio.wait_for(until_ready(), 10)

            await sign_out(http, a.url, token)
            signed_out_at = time.monotonic()
            # The worker that signed it out has applied the revocation before answering.
            assert await status(a, token) == 303
            # The other worker refuses it within the bound...
            async def refused_on_b() -> None:
                assert await status(b, token) == 303
            await eventually(refused_on_b, timeout_s=BOUND_S, interval_s=0.05)
            print(f"refused on the other worker {time.monotonic() - signed_out_at:.2f}s "
                  "after sign-out answered")
            # ... and the session's live feed there ends.
            await asyncio.wait_for(feed.read(), BOUND_S)
            feed.close()
            # Another session is not affected; signing out again is harmless.
            for worker in (a, b):
                assert await status(worker, other) == 200
            await sign_out(http, b.url, token)

            # One revocation on the topic: the session id, until the session's own expiry.
            records = await read_topic(d.bootstrap, d.topics.session_revocations.name,
                                       partitions=1)
            expiry_text, session_id, _ = token.split(".")
            assert [(r.key, orjson.loads(r.value)) for r in records] == [
                (session_id.encode(), {"expiry": int(expiry_text)})]
            assert int(expiry_text) <= time.time() + SESSION_S

            # A worker started after the sign-out refuses the cookie from its first request.
            b.stop()
            late = other_worker(d, "c").start()
            await late.wait_ready(90)
            assert await status(late, token) == 303
            assert await status(late, other) == 200
    finally:
        for worker in (a, b, late):
            if worker is not None:
                worker.stop()


async def test_a_sign_out_survives_a_restart_of_the_embedded_broker(tmp_path: Path) -> None:
    """The embedded broker keeps its log in memory; the input log keeps the revocations."""
    instance = Instance(tmp_path)
    await instance.up()
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
            token, other = (await sign_in(http, instance.url, "a"),
                            await sign_in(http, instance.url, "a"))
            await sign_out(http, instance.url, token)
            assert await page_status(http, instance.url, token) == 303
            instance.stop()
            await instance.up()
            assert await page_status(http, instance.url, other) == 200
            assert await page_status(http, instance.url, token) == 303
    finally:
        instance.stop()
