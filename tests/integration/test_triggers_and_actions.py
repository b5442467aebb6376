"""Campaign triggers follow the 72-hour rule with reserved-field overrides; a segment's send-event
action emits its event once per transition, through the normal pipeline."""

from __future__ import annotations

import time

import aiohttp
import orjson
import pytest

from tests.support.harness import Deployment, Worker, eventually, read_topic

pytestmark = pytest.mark.integration


async def test_fresh_events_trigger_with_overrides_and_stale_ones_do_not(
        deployment: Deployment, worker: Worker) -> None:
    d = deployment
    now = int(time.time())
    events = [
        ("fresh", {"name": "invite", "data": {"recipient": "to@example.com",
                                              "from_address": "from@example.com",
                                              "reply_to": "Boss <boss@example.com>", "n": 1}}),
        ("edge", {"name": "invite", "timestamp": now - 72 * 3600 + 60}),
        ("stale", {"name": "invite", "timestamp": now - 72 * 3600 - 60}),
    ]
    async with aiohttp.ClientSession() as session:
        for label, body in events:
            async with session.post(f"{d.url}/api/v1/customers/t-{label}/events", json=body,
                                    headers=d.track_auth) as response:
                assert response.status == 200
        async with session.post(f"{d.url}/api/v1/customers/t-x/events", headers=d.track_auth,
                                json={"name": "invite", "data": {"recipient": "nope"}}
                                ) as response:
            assert response.status == 400  # a bad reserved address is refused at the API
        # Anonymous activity triggers only once linked, and only if still fresh then.
        async with session.post(f"{d.url}/api/v1/events", headers=d.track_auth,
                                json={"name": "browsed", "anonymous_id": "t-anon"}) as response:
            assert response.status == 200
        async with session.put(f"{d.url}/api/v1/customers/t-linked", headers=d.track_auth,
                               json={"anonymous_id": "t-anon"}) as response:
            assert response.status == 200

        async def triggered() -> dict[str, dict]:
            records = await read_topic(d.bootstrap, d.topics.campaign_triggers.name,
                                       partitions=4)
            found = {orjson.loads(r.value)["person_id"]: orjson.loads(r.value) for r in records}
            assert set(found) == {"t-fresh", "t-edge", "t-linked"}, found.keys()
            return found
        found = await eventually(triggered)
    fresh = found["t-fresh"]
    assert fresh["overrides"] == {"to": "to@example.com", "from": "from@example.com",
                                  "reply_to": "Boss <boss@example.com>"}
    assert fresh["name"] == "invite" and fresh["data"]["n"] == 1
    assert fresh["trigger_id"] == fresh["event_id"]
    assert found["t-linked"]["name"] == "browsed"


async def test_send_event_action_fires_once_per_transition(deployment: Deployment,
                                                           worker: Worker) -> None:
    d = deployment
    segment = {"name": "pro", "match": {"attribute": "plan", "op": "eq", "value": "pro"},
               "on_enter": {"send_event": {"name": "welcome_pro", "data": {"tier": "pro"}}},
               "on_exit": {"send_event": {"name": "left_pro", "data": {}}}}
    async with aiohttp.ClientSession() as session:
        async with session.put(f"{d.url}/api/v1/segments/pro", json=segment,
                               headers=d.app_auth) as response:
            assert response.status == 200

        async def live() -> None:  # activated in every partition: inputs are evaluated now
            async with session.get(f"{d.url}/api/v1/segments/pro",
                                   headers=d.app_auth) as response:
                assert (await response.json())["segment"]["state"] == "live"
        await eventually(live)
        for plan in ("pro", "pro", "free", "pro"):
            async with session.put(f"{d.url}/api/v1/customers/a1", json={"plan": plan},
                                   headers=d.track_auth) as response:
                assert response.status == 200

        async def actions() -> list[str]:
            async with session.get(f"{d.url}/api/v1/customers/a1/activities",
                                   headers=d.app_auth) as response:
                assert response.status == 200
                body = await response.json()
            names = sorted(a["name"] for a in body["activities"])
            assert names == ["left_pro", "welcome_pro", "welcome_pro"], names
            return names
        await eventually(actions)
    changes = [orjson.loads(r.value) for r in await read_topic(
        d.bootstrap, d.topics.segment_changes.name, partitions=4)]
    assert [c["change"] for c in changes if c["person_id"] == "a1"] == [
        "entered", "exited", "entered"]
