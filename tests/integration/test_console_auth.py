"""Console and browser-endpoint access rules, over plain HTTP against a real worker."""

from __future__ import annotations

import json
from http.cookies import SimpleCookie

import aiohttp
import pytest

from app.console.feed import MAX_PER_VIEWER
from tests.support.harness import Deployment, Worker, eventually

pytestmark = pytest.mark.integration

PAGE_ORIGIN = "http://localhost:8123"
EVIL_ORIGIN = "http://evil.example"


@pytest.fixture
async def cors_worker(deployment: Deployment):
    started = Worker(deployment, EVENTIDE_CORS_ORIGINS=f"{PAGE_ORIGIN}, https://shop.example/"
                     ).start()
    try:
        await started.wait_ready()
        yield started
    finally:
        started.stop()


def session_cookie(response: aiohttp.ClientResponse) -> SimpleCookie:
    cookie = SimpleCookie()
    for header in response.headers.getall("Set-Cookie", []):
        cookie.load(header)
    return cookie


async def test_console_requires_the_app_key_by_bearer_or_session_cookie(
        deployment: Deployment, cors_worker: Worker) -> None:
    d = deployment
    jar = aiohttp.DummyCookieJar()  # cookies are handled by hand below
    async with aiohttp.ClientSession(cookie_jar=jar) as session:
        async def get(path: str, **kwargs) -> aiohttp.ClientResponse:
            async with session.get(d.url + path, allow_redirects=False, **kwargs) as response:
                await response.read()
                return response

        # Not signed in: pages redirect to the sign-in form, remembering where to return.
        for path in ("/console/", "/console/segments", "/console/people/u1",
                     "/console/events/x", "/console/people/u1/export"):
            response = await get(path)
            assert response.status == 303, path
            assert response.headers["Location"].startswith("/console/login?next=")
        # The live feed and actions answer 401 instead.
        response = await get("/console/segments/feed", headers={"Accept": "text/event-stream"})
        assert response.status == 401
        async with session.post(d.url + "/console/send", data={"customer_id": "u1",
                                                               "name": "x"}) as response:
            assert response.status == 401
        # Wrong keys, in any form, never get in (and never fall back to another credential).
        for headers in ({"Authorization": "Bearer wrong"}, {"Authorization": "Bearer "},
                        {"Authorization": "Basic " + "c2l0ZS10ZXN0OnRyYWNrLWtleQ=="},
                        {"Authorization": "Bearer " + d.settings.api_key},
                        {"Authorization": "Bearer " + d.settings.site_id}):
            assert (await get("/console/", headers=headers)).status == 401, headers
        # The app key as bearer token works.
        response = await get("/console/", headers=d.app_auth)
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/html")
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]

        # The sign-in form: a wrong key is refused and sets no cookie.
        async with session.post(d.url + "/console/login", allow_redirects=False,
                                data={"app_key": "nope", "next": "/console/"}) as response:
            assert response.status == 401
            assert "Set-Cookie" not in response.headers
        async with session.post(d.url + "/console/login", allow_redirects=False, data={
                "app_key": d.settings.app_key, "next": "https://evil.example/"}) as response:
            assert response.status == 303
            assert response.headers["Location"] == "/console/"  # never leaves the console
            raw = response.headers["Set-Cookie"]
            cookie = session_cookie(response)
        assert "HttpOnly" in raw and "SameSite=Strict" in raw and "Path=/console" in raw
        token = cookie["eventide_console"].value
        assert d.settings.app_key not in token
        signed_in = {"Cookie": f"eventide_console={token}"}
        assert (await get("/console/", headers=signed_in)).status == 200
        assert (await get("/console/segments", headers=signed_in)).status == 200
        # ... a forged or truncated cookie does not.
        forged = token.split(".")[0] + "." + "0" * 64
        for bad in (forged, token[:-1], "9999999999.x", ""):
            response = await get("/console/", headers={"Cookie": f"eventide_console={bad}"})
            assert response.status == 303, bad
        # The console cookie is not an API credential.
        async with session.get(d.url + "/api/v1/segments", headers=signed_in) as response:
            assert response.status == 401

        # Console actions refuse cross-site requests even with the cookie.
        async with session.post(d.url + "/console/send", headers={
                **signed_in, "Origin": EVIL_ORIGIN}, data={"customer_id": "u1", "name": "x",
                                                          "data": "{}"}) as response:
            assert response.status == 403
        async with session.post(d.url + "/console/send", allow_redirects=False, headers={
                **signed_in, "Origin": d.url}, data={"customer_id": "u1", "name": "from_console",
                                                     "data": '{"a": 1}'}) as response:
            assert response.status == 303
            assert "sent=" in response.headers["Location"]
        # Server-side validation, with the track API's messages.
        async with session.post(d.url + "/console/send", headers=d.app_auth, data={
                "customer_id": "u1", "name": "", "data": "[1]"}) as response:
            assert response.status == 400
            text = await response.text()
            assert "name: must not be blank" in text and "data: must be an object" in text
        async with session.post(d.url + "/console/send", headers=d.app_auth, data={
                "customer_id": "u1", "name": "x", "data": "{oops"}) as response:
            assert response.status == 400
            assert "data: not valid JSON" in await response.text()

        async def sent_event_stored() -> None:
            async with session.get(d.url + "/api/v1/customers/u1/activities",
                                   headers=d.app_auth) as response:
                assert response.status == 200
                body = await response.json()
                assert [a["name"] for a in body["activities"]] == ["from_console"]
                assert body["activities"][0]["data"] == {"a": 1}
        await eventually(sent_event_stored)

        # The export link of the person page is the export endpoint, with console auth.
        response = await get("/console/people/u1/export?format=jsonl", headers=signed_in)
        assert response.status == 200
        async with session.get(d.url + "/console/people/u1/export?format=jsonl",
                               headers=signed_in) as response:
            lines = [json.loads(line) for line in (await response.text()).splitlines()]
        assert [line["kind"] for line in lines] == ["profile", "event"]

        # Signing out clears the cookie.
        async with session.post(d.url + "/console/logout", allow_redirects=False,
                                headers={**signed_in, "Origin": d.url}) as response:
            assert response.status == 303
            assert 'eventide_console=""' in response.headers["Set-Cookie"]


async def test_browser_endpoints_take_the_site_id_only_for_tracking_and_answer_listed_origins(
        deployment: Deployment, cors_worker: Worker) -> None:
    d = deployment
    site = d.settings.site_id
    base = f"{d.url}/api/v1/browser/{site}"
    async with aiohttp.ClientSession() as session:
        async def post(path: str, body: object, origin: str | None = PAGE_ORIGIN,
                       prefix: str = base, **kwargs) -> tuple[int, dict, aiohttp.ClientResponse]:
            headers = {"Origin": origin} if origin else {}
            async with session.post(prefix + path, json=body, headers=headers,
                                    **kwargs) as response:
                try:
                    answer = await response.json(content_type=None)
                except json.JSONDecodeError:
                    answer = {}
                return response.status, answer, response

        # Wrong or empty site id: 401 (with CORS headers, so the page can read why).
        status, body, response = await post("/events", {"name": "x", "anonymous_id": "a"},
                                            prefix=f"{d.url}/api/v1/browser/site-wrong")
        assert status == 401 and body["meta"]["errors"]
        assert response.headers["Access-Control-Allow-Origin"] == PAGE_ORIGIN
        status, _, _ = await post("/events", {"name": "x", "anonymous_id": "a"},
                                  prefix=f"{d.url}/api/v1/browser/{site}x")
        assert status == 401

        # Tracking works with the site id alone; the origin is echoed for listed origins only.
        status, body, response = await post("/events", {"name": "viewed", "anonymous_id": "b1",
                                                        "data": {"path": "/"}})
        assert (status, body) == (200, {})
        assert response.headers["Access-Control-Allow-Origin"] == PAGE_ORIGIN
        assert response.headers["Vary"] == "Origin"
        status, _, _ = await post("/page", {"url": "https://shop.example/p", "anonymous_id": "b1"},
                                  origin="https://shop.example")  # listed with a trailing slash
        assert status == 200
        status, _, response = await post("/events", {"name": "n", "anonymous_id": "b1"},
                                         origin=None)  # not from a browser page
        assert status == 200 and "Access-Control-Allow-Origin" not in response.headers

        # Unlisted origins are refused outright, preflight included, with no CORS headers.
        status, _, response = await post("/events", {"name": "evil", "anonymous_id": "b1"},
                                         origin=EVIL_ORIGIN)
        assert status == 403 and "Access-Control-Allow-Origin" not in response.headers
        for origin, method, expected in ((PAGE_ORIGIN, "POST", 204), (EVIL_ORIGIN, "POST", 403),
                                         (PAGE_ORIGIN, "DELETE", 403), ("null", "POST", 403)):
            async with session.options(base + "/events", headers={
                    "Origin": origin, "Access-Control-Request-Method": method,
                    "Access-Control-Request-Headers": "content-type"}) as response:
                assert response.status == expected, (origin, method)
                if expected == 204:
                    assert response.headers["Access-Control-Allow-Origin"] == PAGE_ORIGIN
                    assert response.headers["Access-Control-Allow-Methods"] == "POST"
                    assert "content-type" in response.headers[
                        "Access-Control-Allow-Headers"].lower()
                else:
                    assert "Access-Control-Allow-Origin" not in response.headers

        # The track API's validation and limits.
        status, body, _ = await post("/events", {"name": "", "anonymous_id": "b1",
                                                 "data": [1], "type": "nope"})
        assert status == 400
        assert {e.split(":")[0] for e in body["meta"]["errors"]} == {"name", "type", "data"}
        status, body, _ = await post("/events", {"name": "x"})
        assert status == 400 and "customer_id or anonymous_id" in body["meta"]["errors"][0]
        status, body, _ = await post("/page", {"anonymous_id": "b1"})
        assert status == 400 and body["meta"]["errors"][0].startswith("url:")
        status, body, _ = await post("/identify", {"email": "x@example.com"})
        assert status == 400 and body["meta"]["errors"] == ["id: is required"]
        status, body, _ = await post("/identify", {"id": "w1", "_update": True})
        assert status == 400  # would reveal whether w1 exists
        big = {"name": "big", "anonymous_id": "b1", "data": {"blob": "x" * (1024 * 1024)}}
        status, body, _ = await post("/events", big)
        assert status == 413
        async with session.post(base + "/events", data=b"<xml/>", headers={
                "Content-Type": "application/xml", "Origin": PAGE_ORIGIN}) as response:
            assert response.status == 415

        # Identify links the anonymous activity, as the track API's identify does.
        status, _, _ = await post("/identify", {"id": "w1", "anonymous_id": "b1",
                                                "email": "w1@example.com"})
        assert status == 200
        status, _, _ = await post("/events", {"name": "bought", "customer_id": "w1",
                                              "id": "01BX5ZZKBKACTAV9WEVGEMMVRY"})
        assert status == 200
        status, _, _ = await post("/events", {"name": "bought", "customer_id": "w1",
                                              "id": "01BX5ZZKBKACTAV9WEVGEMMVRY"})
        assert status == 200  # a retry: accepted, deduplicated

        async def linked() -> None:
            async with session.get(d.url + "/api/v1/customers/w1/activities",
                                   headers=d.app_auth) as response:
                assert response.status == 200
                body = await response.json()
            names = sorted(a["name"] for a in body["activities"])
            assert names == ["bought", "https://shop.example/p", "n", "viewed"], names
        await eventually(linked)

        # No reads, deletes or merges with the site id.
        async with session.get(base + "/events") as response:
            assert response.status == 405
        async with session.delete(base + "/identify") as response:
            assert response.status == 405
        async with session.post(base + "/merge_customers", json={}) as response:
            assert response.status == 404
        for headers in ({"Authorization": f"Bearer {site}"},
                        {"Authorization": "Basic " + _basic(site, "")}):
            async with session.get(d.url + "/api/v1/customers/w1", headers=headers) as response:
                assert response.status == 401
            async with session.get(d.url + "/api/v1/customers/w1/activities",
                                   headers=headers) as response:
                assert response.status == 401
            async with session.delete(d.url + "/api/v1/customers/w1",
                                      headers=headers) as response:
                assert response.status == 401

        # The snippet itself.
        async with session.get(d.url + "/js/track.js") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("application/javascript")
            assert "_cio" in await response.text()


def _basic(user: str, password: str) -> str:
    import base64

    return base64.b64encode(f"{user}:{password}".encode()).decode()


async def read_sse(response: aiohttp.ClientResponse, wanted: str,
                   timeout_s: float = 20.0) -> tuple[str | None, dict]:
    """The next server-sent event named ``wanted``: (its id, its data)."""
    import asyncio

    async def read() -> tuple[str | None, dict]:
        event_id, event, data = None, None, ""
        while True:
            line = (await response.content.readline()).decode()
            if not line:
                raise AssertionError("stream ended")
            line = line.rstrip("\n")
            if line == "":
                if event == wanted:
                    return event_id, json.loads(data)
                event_id, event, data = None, None, ""
            elif line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data += line[6:]
    return await asyncio.wait_for(read(), timeout_s)


async def test_live_feed_streams_changes_resumes_and_closes_with_the_client(
        deployment: Deployment, cors_worker: Worker) -> None:
    d = deployment
    feed_url = d.url + "/console/segments/feed?segment=likers"
    sse_headers = {**d.app_auth, "Accept": "text/event-stream"}
    async with aiohttp.ClientSession() as session:
        async with session.put(d.url + "/api/v1/segments/likers", headers=d.app_auth, json={
                "name": "Likers", "match": {"event": "liked", "within": "30d"}}) as response:
            assert response.status == 200
        async with session.get(feed_url, headers=sse_headers) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            ready_id, ready = await read_sse(response, "ready")
            assert ready == {"segment": "likers"} and ready_id
            async with session.post(d.url + "/api/v1/customers/p1/events", json={
                    "name": "liked"}, headers=d.track_auth) as posted:
                assert posted.status == 200
            change_id, change = await read_sse(response, "change")
            assert (change["person_id"], change["segment_id"], change["change"]) == (
                "p1", "likers", "entered")

        async def closed() -> None:  # the client went: its consumer is closed
            assert "console live feed closed (0 open)" in cors_worker.tail(200)
        await eventually(closed, timeout_s=10)

        # EventSource reconnects with the last id it saw: the stream resumes right after it.
        async with session.get(feed_url, headers={**sse_headers,
                                                  "Last-Event-ID": ready_id}) as response:
            _, again = await read_sse(response, "change")
            assert again == change
        async with session.get(feed_url, headers={**sse_headers,
                                                  "Last-Event-ID": change_id}) as response:
            resumed_id, _ = await read_sse(response, "ready")
            assert resumed_id == change_id


async def test_a_viewers_feed_limit_counts_only_connected_browsers(
        deployment: Deployment, cors_worker: Worker) -> None:
    """A console page that reloads (after every save) leaves a feed its server has not noticed
    closing yet; the viewer's next tab must still get one. Feeds still connected are limited."""
    d = deployment
    feed_url = d.url + "/console/segments/feed"
    sse_headers = {**d.app_auth, "Accept": "text/event-stream"}
    async with aiohttp.ClientSession() as session:
        open_feeds = []
        for _ in range(MAX_PER_VIEWER):
            response = await session.get(feed_url, headers=sse_headers)
            assert response.status == 200
            await read_sse(response, "ready")
            open_feeds.append(response)
        async with session.get(feed_url, headers=sse_headers) as refused:
            assert refused.status == 429
            assert f"at most {MAX_PER_VIEWER} live feeds" in await refused.text()
            assert refused.headers["Retry-After"] == "5"
        # The browser leaves one page (and opens another at once, as a reload does; this session
        # even reuses the refused request's connection): its feed has not polled since, yet
        # no longer counts.
        open_feeds.pop().close()
        async with session.get(feed_url, headers=sse_headers) as response:
            assert response.status == 200
            await read_sse(response, "ready")
        for response in open_feeds:
            response.close()

        async def all_closed() -> None:
            assert "console live feed closed (0 open)" in cors_worker.tail(200)
        await eventually(all_closed, timeout_s=10)
