"""The track API end to end on the real embedded broker: HTTP → raw topic → history → read API."""

from __future__ import annotations

import time

import aiohttp
import pytest
from ulid import ULID

from tests.support.harness import Deployment, Worker, eventually, items_on, read_topic

pytestmark = pytest.mark.integration


async def activities(session: aiohttp.ClientSession, d: Deployment, path: str,
                     **params: str) -> dict:
    async with session.get(f"{d.url}/api/v1/{path}/activities", headers=d.app_auth,
                           params={"days": "36500", **params}) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def test_seed_curl_lines_reach_history(deployment: Deployment, worker: Worker) -> None:
    d = deployment
    async with aiohttp.ClientSession() as session:
        # The seed document's JSON example, then its form-encoded one.
        async with session.post(f"{d.url}/api/v1/customers/5/events", headers=d.track_auth,
                                json={"name": "likes_pizza", "data": {
                                    "favorite_topping": "pepperoni",
                                    "dislikes": ["anchovies", "onions"]}}) as response:
            assert response.status == 200 and await response.json() == {}
        async with session.post(f"{d.url}/api/v1/customers/5/events", headers=d.track_auth,
                                data={"name": " purchased ", "data[price]": "23.45",
                                      "timestamp": "1359389415"}) as response:
            assert response.status == 200, await response.text()

        async def both_stored() -> list[dict]:
            found = (await activities(session, d, "customers/5"))["activities"]
            assert [a["name"] for a in found] == ["likes_pizza", "purchased"]
            return found

        pizza, purchased = await eventually(both_stored)
    assert purchased["data"] == {"price": "23.45"}
    assert purchased["timestamp"] == 1359389415
    assert purchased["type"] == "event"
    assert abs(purchased["processed_at"] - time.time()) < 120
    assert pizza["data"]["dislikes"] == ["anchovies", "onions"]
    # no timestamp sent: the accept time; processed at: when the person stage processed it
    assert 0 <= pizza["processed_at"] - pizza["timestamp"] < 60
    ULID.from_str(pizza["id"])  # every stored event has an id


async def test_default_window_filters_and_pagination(deployment: Deployment,
                                                     worker: Worker) -> None:
    d = deployment
    now = int(time.time())
    async with aiohttp.ClientSession() as session:
        for i in range(7):
            body = {"name": "viewed" if i % 2 else "clicked", "timestamp": now - i * 60,
                    "type": "page" if i == 3 else "event"}
            async with session.post(f"{d.url}/api/v1/customers/p1/events", json=body,
                                    headers=d.track_auth) as response:
                assert response.status == 200
        old = {"name": "ancient", "timestamp": now - 40 * 86_400}
        async with session.post(f"{d.url}/api/v1/customers/p1/events", json=old,
                                headers=d.track_auth) as response:
            assert response.status == 200

        async def stored() -> None:
            all_ = await activities(session, d, "customers/p1")
            assert len(all_["activities"]) == 8
        await eventually(stored)

        async with session.get(f"{d.url}/api/v1/customers/p1/activities",
                               headers=d.app_auth) as response:
            default = await response.json()
        names = [a["name"] for a in default["activities"]]
        assert "ancient" not in names and len(names) == 7  # last 30 days by default
        timestamps = [a["timestamp"] for a in default["activities"]]
        assert timestamps == sorted(timestamps, reverse=True)  # newest first

        pages, cursor = [], None
        while True:
            params = {"limit": "3"} | ({"cursor": cursor} if cursor else {})
            page = await activities(session, d, "customers/p1", **params)
            pages.append([a["id"] for a in page["activities"]])
            cursor = page["next"]
            if cursor is None:
                break
        flat = [i for p in pages for i in p]
        assert [len(p) for p in pages] == [3, 3, 2] and len(set(flat)) == 8

        clicked = await activities(session, d, "customers/p1", name="clicked")
        assert {a["name"] for a in clicked["activities"]} == {"clicked"}
        pages_only = await activities(session, d, "customers/p1", type="page")
        assert [a["type"] for a in pages_only["activities"]] == ["page"]


async def test_anonymous_events_have_no_processed_at(deployment: Deployment,
                                                     worker: Worker) -> None:
    d = deployment
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{d.url}/api/v1/events", headers=d.track_auth,
                                json={"name": "viewed_pricing", "anonymous_id": "anon-7",
                                      "data": {"plan": "pro"}}) as response:
            assert response.status == 200

        async def stored() -> dict:
            found = await activities(session, d, "anonymous/anon-7")
            assert len(found["activities"]) == 1
            return found["activities"][0]
        event = await eventually(stored)
        assert event["processed_at"] is None and event["data"] == {"plan": "pro"}
        async with session.get(f"{d.url}/api/v1/anonymous/nobody/activities",
                               headers=d.app_auth) as response:
            assert response.status == 404


async def test_identify_keeps_attributes_and_anonymous_id(deployment: Deployment,
                                                          worker: Worker) -> None:
    d = deployment
    async with aiohttp.ClientSession() as session:
        async with session.put(f"{d.url}/api/v1/customers/42", headers=d.track_auth,
                               json={"email": "ann@example.com", "plan": "pro",
                                     "anonymous_id": "anon-1"}) as response:
            assert response.status == 200

        async def profile() -> dict:
            async with session.get(f"{d.url}/api/v1/customers/42",
                                   headers=d.app_auth) as response:
                assert response.status == 200
                return (await response.json())["customer"]
        found = await eventually(profile)
    assert found["attributes"] == {"email": "ann@example.com", "plan": "pro"}
    assert found["anonymous_ids"] == ["anon-1"]


async def test_duplicate_ids_are_processed_once(deployment: Deployment, worker: Worker) -> None:
    d = deployment
    event_id = str(ULID())
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            async with session.post(f"{d.url}/api/v1/customers/dup/events", headers=d.track_auth,
                                    json={"name": "paid", "id": event_id}) as response:
                assert response.status == 200
        async with session.post(f"{d.url}/api/v1/customers/dup/events", headers=d.track_auth,
                                json={"name": "sentinel"}) as response:
            assert response.status == 200

        async def settled() -> list[str]:
            found = await activities(session, d, "customers/dup")
            names = sorted(a["name"] for a in found["activities"])
            assert "sentinel" in names
            return names
        assert await eventually(settled) == ["paid", "sentinel"]
    raw = items_on(await read_topic(d.bootstrap, d.topics.raw_events.name, partitions=4))
    assert sum(1 for item in raw if item["id"] == event_id) == 3  # all three were accepted
