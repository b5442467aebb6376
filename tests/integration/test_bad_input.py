"""Bad input gets a clear error in the API's shape, and nothing malformed reaches the topics."""

from __future__ import annotations

import base64
import time

import aiohttp
import pytest

from tests.support.harness import Deployment, Worker, items_on, read_topic

pytestmark = pytest.mark.integration


async def test_every_rejection_names_its_reason_and_writes_nothing(
        deployment: Deployment, worker: Worker) -> None:
    d = deployment
    url = f"{d.url}/api/v1/customers/c1/events"
    now = int(time.time())
    cases = [
        ({"data": {}}, "name: "),
        ({"name": "   "}, "name: "),
        ({"name": "x" * 101}, "name: "),
        ({"name": "ok", "data": [1, 2]}, "data: "),
        ({"name": "ok", "data": {"blob": "x" * 100_001}}, "data: "),
        ({"name": "ok", "id": "not-a-ulid"}, "id: "),
        ({"name": "ok", "timestamp": "soon"}, "timestamp: "),
        ({"name": "ok", "timestamp": 1.5}, "timestamp: "),
        ({"name": "ok", "timestamp": now * 1000}, "timestamp: "),
        ({"name": "ok", "timestamp": now + 2 * 86_400}, "timestamp: "),
        ({"name": "ok", "data": {"recipient": "not an email"}}, "data.recipient: "),
    ]
    async with aiohttp.ClientSession() as session:
        for body, field in cases:
            async with session.post(url, json=body, headers=d.track_auth) as response:
                assert response.status == 400, body
                errors = (await response.json())["meta"]["errors"]
                assert any(e.startswith(field) for e in errors), (body, errors)
        async with session.post(url, data=b'{"name": "ok"', headers={
                **d.track_auth, "Content-Type": "application/json"}) as response:
            assert response.status == 400
            assert (await response.json())["meta"]["errors"][0].startswith("body: malformed")
        for customer in (" ", "x" * 151):
            async with session.post(f"{d.url}/api/v1/customers/{customer}/events",
                                    json={"name": "ok"}, headers=d.track_auth) as response:
                assert response.status == 400
                assert (await response.json())["meta"]["errors"][0].startswith("customer_id: ")
        async with session.post(f"{d.url}/api/v1/events", json={"name": "ok"},
                                headers=d.track_auth) as response:
            assert response.status == 400
            assert (await response.json())["meta"]["errors"][0].startswith("anonymous_id: ")
        async with session.post(url, data=b"x" * (1024 * 1024 + 1), headers={
                **d.track_auth, "Content-Type": "application/json"}) as response:
            assert response.status == 413
            assert "meta" in await response.json()
        async with session.post(url, data="<xml/>", headers={
                **d.track_auth, "Content-Type": "application/xml"}) as response:
            assert response.status == 415
        # text/plain is another content type (README: 415), whether or not the text is JSON.
        for text in ("name=purchased", '{"name": "purchased"}'):
            async with session.post(url, data=text, headers={
                    **d.track_auth, "Content-Type": "text/plain"}) as response:
                assert response.status == 415
                [error] = (await response.json())["meta"]["errors"]
                assert "'text/plain'" in error and "application/json" in error, error
        async with session.get(url, headers=d.track_auth) as response:
            assert response.status == 405
            assert "errors" in (await response.json())["meta"]
        async with session.post(f"{d.url}/api/v1/nothing", json={},
                                headers=d.track_auth) as response:
            assert response.status == 404
            assert "errors" in (await response.json())["meta"]
        # A valid event last: once it is on the topic, nothing before it was written.
        async with session.post(url, json={"name": "valid"}, headers=d.track_auth) as response:
            assert response.status == 200
    items = items_on(await read_topic(d.bootstrap, d.topics.raw_events.name, partitions=4))
    assert [item["name"] for item in items] == ["valid"]


async def test_credentials_are_required_and_not_interchangeable(
        deployment: Deployment, worker: Worker) -> None:
    d = deployment
    wrong = "Basic " + base64.b64encode(f"{d.settings.site_id}:nope".encode()).decode()
    app_as_basic = "Basic " + base64.b64encode(
        f"{d.settings.site_id}:{d.settings.app_key}".encode()).decode()
    track_url = f"{d.url}/api/v1/customers/c1/events"
    read_url = f"{d.url}/api/v1/customers/c1/activities"
    async with aiohttp.ClientSession() as session:
        for headers in ({}, {"Authorization": wrong}, {"Authorization": app_as_basic},
                        d.app_auth, {"Authorization": "Basic !!!"}):
            async with session.post(track_url, json={"name": "x"}, headers=headers) as response:
                assert response.status == 401, headers
                assert (await response.json())["meta"]["errors"][0].startswith("unauthorized")
        for headers in ({}, d.track_auth, {"Authorization": "Bearer " + d.settings.api_key}):
            async with session.get(read_url, headers=headers) as response:
                assert response.status == 401, headers
        async with session.get(f"{d.url}/metrics", headers=d.track_auth) as response:
            assert response.status == 401
        async with session.get(f"{d.url}/metrics", headers=d.app_auth) as response:
            assert response.status == 200
            text = await response.text()
            assert "eventide_processing_latency_seconds_count" in text
            assert "# TYPE eventide_processing_latency_seconds histogram" in text
