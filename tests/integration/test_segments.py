"""Live segments end to end: definitions over HTTP, changes read with a plain aiokafka consumer."""

from __future__ import annotations

import asyncio
import time

import aiohttp
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
import orjson
import pytest

from app.segments.catalog import EndConfirmer, SegmentCatalog, follow
from tests.integration.test_workers import extra_worker
from tests.support.harness import Deployment, Worker, eventually, read_topic

pytestmark = pytest.mark.integration

CART = {"name": "abandoned_cart", "data": {"total": 215, "items": [
    {"category": "computers", "type": "monitor", "price": 200},
    {"category": "cables", "type": "hdmi", "price": 15}]}}
HDMI_ONLY = {"name": "abandoned_cart", "data": {"items": [{"type": "hdmi"}]}}


def monitor_segment(within: str) -> dict:
    return {"name": "Monitor cart, no purchase", "match": {"all": [
        {"event": "abandoned_cart", "where": [{"path": "items[].type", "op": "eq",
                                               "value": "monitor"}],
         "count": {"gte": 1}, "within": within},
        {"not": {"event": "purchased", "within": "14d"}}]}}


async def changes(d: Deployment) -> list[dict]:
    records = await read_topic(d.bootstrap, d.topics.segment_changes.name, partitions=4)
    return [orjson.loads(r.value) for r in records]


def transitions(found: list[dict], person: str) -> list[str]:
    seen, out = set(), []
    for change in found:
        if change["person_id"] == person and change["change_id"] not in seen:
            seen.add(change["change_id"])
            out.append(change["change"])
    return out


@pytest.fixture
async def fast_ticks(deployment: Deployment):
    started = Worker(deployment, EVENTIDE_TICK_INTERVAL_S="1").start()
    try:
        await started.wait_ready()
        yield started
    finally:
        started.stop()


async def test_seed_example_enters_exits_with_time_and_rebuilds_on_edit(
        deployment: Deployment, fast_ticks: Worker) -> None:
    d = deployment
    now = int(time.time())
    async with aiohttp.ClientSession() as session:
        async def call(method: str, path: str, **kwargs) -> tuple[int, dict]:
            headers = kwargs.pop("headers", d.app_auth)
            async with session.request(method, d.url + path, headers=headers,
                                       **kwargs) as response:
                return response.status, await response.json()

        status, body = await call("PUT", "/api/v1/segments/monitor-cart",
                                  json=monitor_segment("1m"))
        assert status == 200, body
        # ann: a monitor cart stamped 50 s ago → in now, out ~10 s later when the 1m window passes.
        # bob: a monitor cart now, then a purchase → enters, then exits at the purchase.
        # cal: only an hdmi cart → never enters.
        for person, event in (("ann", {**CART, "timestamp": now - 50}), ("bob", CART),
                              ("cal", HDMI_ONLY)):
            status, _ = await call("POST", f"/api/v1/customers/{person}/events", json=event,
                                   headers=d.track_auth)
            assert status == 200
        await asyncio.sleep(1)
        status, _ = await call("POST", "/api/v1/customers/bob/events",
                               json={"name": "purchased"}, headers=d.track_auth)
        assert status == 200

        async def ann_and_bob_out() -> list[dict]:
            found = await changes(d)
            assert transitions(found, "ann") == ["entered", "exited"]
            assert transitions(found, "bob") == ["entered", "exited"]
            return found
        found = await eventually(ann_and_bob_out, timeout_s=40)
        assert transitions(found, "cal") == []
        ann = [c for c in found if c["person_id"] == "ann"]
        assert ann[1]["cause"] == f"timer:{now - 50 + 60}" and ann[1]["at"] == now + 10
        bob_exit = [c for c in found if c["person_id"] == "bob"][1]
        assert bob_exit["cause"] != bob_exit["change_id"]  # caused by the purchase event's id

        status, body = await call("GET", "/api/v1/customers/ann/segments")
        assert body == {"segments": []}

        # Editing to a 30-day window re-evaluates everyone from stored history: ann re-enters
        # (her cart is 50 s old), bob stays out (he purchased), cal stays out.
        status, body = await call("PUT", "/api/v1/segments/monitor-cart",
                                  json=monitor_segment("30d"))
        assert status == 200

        async def rebuilt() -> dict:
            status, body = await call("GET", "/api/v1/segments/monitor-cart")
            assert body["segment"]["state"] == "live" and body["segment"]["members"] == 1
            return body
        await eventually(rebuilt)
        found = await changes(d)
        assert transitions(found, "ann") == ["entered", "exited", "entered"]
        assert transitions(found, "bob") == ["entered", "exited"]
        reentry = [c for c in found if c["person_id"] == "ann"][2]
        assert reentry["cause"].startswith("definition:")

        status, body = await call("GET", "/api/v1/segments/monitor-cart/membership")
        assert body == {"people": ["ann"], "next": None}
        status, body = await call("GET", "/api/v1/segments")
        assert [(s["id"], s["members"]) for s in body["segments"]] == [("monitor-cart", 1)]
        status, body = await call("GET", "/api/v1/events/names", params={"q": "*cart+purch*"})
        assert {n["name"]: n["count"] for n in body["names"]} == {"abandoned_cart": 3,
                                                                    "purchased": 1}

        # Deleting the segment emits exits for its members.
        status, _ = await call("DELETE", "/api/v1/segments/monitor-cart")
        assert status == 200

        async def deleted() -> None:
            assert transitions(await changes(d), "ann") == ["entered", "exited", "entered",
                                                              "exited"]
        await eventually(deleted)
        status, _ = await call("GET", "/api/v1/segments/monitor-cart")
        assert status == 404

    membership = await read_topic(d.bootstrap, d.topics.segment_membership.name, partitions=4)
    last = {}
    for record in membership:
        last[record.key] = record.value
    assert last[b"monitor-cart:ann"] is None  # compacted view ends in a tombstone


async def test_invalid_definition_is_400_naming_the_part(deployment: Deployment,
                                                         worker: Worker) -> None:
    d = deployment
    bad = {"name": "x", "match": {"all": [{"event": "a", "within": "30 days"}]}}
    async with aiohttp.ClientSession() as session:
        async with session.put(f"{d.url}/api/v1/segments/s1", json=bad,
                               headers=d.app_auth) as response:
            assert response.status == 400
            errors = (await response.json())["meta"]["errors"]
        assert errors[0].startswith("match.all[0].within:")
        # Several mistakes: every one is named, in the API's error shape.
        worse = {"name": "", "match": {"all": [{"event": "a", "within": "30 days"},
                                                {"attribute": "plan", "op": "near"}]}}
        async with session.put(f"{d.url}/api/v1/segments/s1", json=worse,
                               headers=d.app_auth) as response:
            assert response.status == 400
            errors = (await response.json())["meta"]["errors"]
        assert [e.split(":")[0] for e in errors] == [
            "name", "match.all[0].within", "match.all[1].op"], errors
        async with session.get(f"{d.url}/api/v1/segments/s1", headers=d.app_auth) as response:
            assert response.status == 404  # nothing changed
        async with session.put(f"{d.url}/api/v1/segments/s1", json={"name": "x"},
                               headers=d.track_auth) as response:
            assert response.status == 401


async def test_members_are_listed_in_natural_order(deployment: Deployment,
                                                   worker: Worker) -> None:
    d = deployment
    async with aiohttp.ClientSession() as session:
        async with session.put(f"{d.url}/api/v1/segments/planned", headers=d.app_auth, json={
                "name": "Has a plan", "match": {"attribute": "plan", "op": "exists"}}) as r:
            assert r.status == 200, await r.text()
        for person in ("10", "5", "ann", "11"):
            async with session.put(f"{d.url}/api/v1/customers/{person}", json={"plan": "pro"},
                                   headers=d.track_auth) as r:
                assert r.status == 200, await r.text()

        async def members(**params: str) -> dict:
            async with session.get(f"{d.url}/api/v1/segments/planned/membership",
                                   params=params, headers=d.app_auth) as r:
                assert r.status == 200, await r.text()
                return await r.json()

        async def all_in() -> None:
            assert (await members())["people"] == ["5", "10", "11", "ann"]
        await eventually(all_in)
        first = await members(limit="2")
        assert first == {"people": ["5", "10"], "next": "10"}
        assert await members(limit="2", cursor="10") == {"people": ["11", "ann"], "next": None}


async def test_an_input_accepted_just_after_a_definition_is_written_is_evaluated_with_it(
        deployment: Deployment) -> None:
    """A definition written to the topic by another worker's API, then at once an event
    accepted by this worker: this worker's follower has not fetched the definition yet when
    the event reaches the person stage, yet the event is evaluated against it — it was recorded
    before the event was accepted, as a replay of the log would see it. The person enters with
    the event as the cause, never later through the definition's own activation (a CI run of
    the three-worker replay test caught the live and replayed causes differing)."""
    d = deployment
    worker = Worker(d).start()
    rounds = 6
    try:
        await worker.wait_ready(90)
        producer = AIOKafkaProducer(bootstrap_servers=d.bootstrap, acks="all")
        await producer.start()
        try:
            async with aiohttp.ClientSession() as session:
                for n in range(rounds):
                    written_ms = int(time.time() * 1000)
                    await producer.send_and_wait(
                        d.topics.segment_definitions.name, partition=0,
                        key=f"bought-{n}".encode(), timestamp_ms=written_ms,
                        value=orjson.dumps({"definition": {"name": f"bought {n}", "match": {
                            "event": f"purchased-{n}"}}, "version": f"v{n}",
                            "updated_at": written_ms // 1000}))
                    async with session.post(d.url + f"/api/v1/customers/late-{n}/events",
                                            json={"name": f"purchased-{n}"},
                                            headers=d.track_auth) as response:
                        assert response.status == 200, await response.text()
        finally:
            await producer.stop()

        async def entered() -> list[dict]:
            found = [c for c in await changes(d) if c["person_id"].startswith("late-")]
            assert len({c["person_id"] for c in found}) == rounds
            return found
        found = await eventually(entered, timeout_s=60)
    finally:
        worker.stop()
    assert {(c["person_id"], c["segment_id"], c["change"]) for c in found} == {
        (f"late-{n}", f"bought-{n}", "entered") for n in range(rounds)}
    assert not [c for c in found if c["cause"].startswith("definition:")], found


async def test_the_end_confirmer_waits_for_what_was_written_and_then_stops_fetching(
        deployment: Deployment) -> None:
    """``EndConfirmer`` returns once the follower has applied every definition written before
    the call, and leaves its consumer unassigned: assigned, aiokafka would fetch the partition
    about a hundred times a second on the embedded broker between calls. A live worker confirms
    once per unit, so a confirmation asks for no metadata once the topic is known (assigning and
    unassigning a consumer asked for it twice)."""
    d = deployment
    await d.create_topics()
    topic = d.topics.segment_definitions.name
    catalog, stopping = SegmentCatalog(), asyncio.Event()
    follower = asyncio.ensure_future(follow(catalog, d.bootstrap, topic, stopping))
    confirmer = EndConfirmer(catalog, d.bootstrap, topic)
    producer = AIOKafkaProducer(bootstrap_servers=d.bootstrap, acks="all")
    await producer.start()
    try:
        await asyncio.wait_for(catalog.caught_up.wait(), 30)
        await asyncio.wait_for(confirmer(), 30)  # an empty topic
        for n in range(3):
            await producer.send_and_wait(topic, partition=0, key=f"s{n}".encode(),
                                         value=orjson.dumps({"definition": {
                                             "name": "s", "match": {"event": "e"}},
                                             "version": f"v{n}", "updated_at": 0}))
        await asyncio.wait_for(confirmer(), 30)
        assert catalog.offset == 2 and set(catalog.history) == {"s0", "s1", "s2"}
        assert confirmer._consumer is not None and not confirmer._consumer.assignment()
        client = confirmer._consumer._client
        metadata_updates = []
        update = client.force_metadata_update
        client.force_metadata_update = lambda: metadata_updates.append(1) or update()
        for _ in range(3):
            await asyncio.wait_for(confirmer(), 30)
        assert metadata_updates == [] and not confirmer._consumer.assignment()
    finally:
        await producer.stop()
        await confirmer.stop()
        stopping.set()
        await asyncio.wait_for(follower, 30)


@pytest.mark.parametrize("workers", [1, 3])
async def test_a_person_read_right_after_their_change_record_reflects_it(
        deployment: Deployment, workers: int) -> None:
    """A consumer of ``segments.changes`` that reads a person's segments as soon as it sees
    them enter is answered from the state that change came from: a unit's records go out before
    its state is written, so without the wait (``StateManager.written``) such a read could list
    the person's segments from before (a CI run saw a timer exit's person still listed). With
    three workers the reads go to each in turn, so most are forwarded to the person's owner."""
    d = deployment
    people = [f"rr-{n}" for n in range(600)]
    started = [Worker(d, "a").start(),
               *(extra_worker(d, name).start() for name in "bc"[:workers - 1])]
    urls = [w.url for w in started]
    try:
        await asyncio.gather(*(w.wait_ready(120) for w in started))
        if workers > 1:
            await asyncio.sleep(1.0)  # every worker knows who owns what
        await read_right_after_entering(d, people, urls)
    finally:
        for w in started:
            w.stop()


async def read_right_after_entering(d: Deployment, people: list[str], urls: list[str]) -> None:
    """Identify ``people`` (plan=pro) through ``urls``; read each one's segments, through the
    ``urls`` in turn, as soon as their entry into "planned" is on ``segments.changes``; none may
    be answered without it."""
    async with aiohttp.ClientSession() as session:
        async with session.put(f"{urls[0]}/api/v1/segments/planned", headers=d.app_auth, json={
                "name": "Has a plan", "match": {"attribute": "plan", "op": "exists"}}) as r:
            assert r.status == 200, await r.text()
        consumer = AIOKafkaConsumer(d.topics.segment_changes.name, bootstrap_servers=d.bootstrap,
                                    auto_offset_reset="earliest", fetch_max_wait_ms=5)
        await consumer.start()
        stale: list[str] = []
        seen: set[str] = set()

        async def read(person: str) -> None:
            url = urls[len(seen) % len(urls)]
            seen.add(person)
            async with session.get(f"{url}/api/v1/customers/{person}/segments",
                                   headers=d.app_auth) as response:
                assert response.status == 200, await response.text()
                listed = [s["id"] for s in (await response.json())["segments"]]
            if "planned" not in listed:
                stale.append(person)

        async def read_each_as_it_enters() -> None:
            while len(seen) < len(people):
                batches = await consumer.getmany(timeout_ms=100)
                entered = [change["person_id"] for change in (
                    orjson.loads(r.value) for records in batches.values() for r in records)
                    if change["segment_id"] == "planned" and change["change"] == "entered"]
                await asyncio.gather(*(read(person) for person in entered))

        async def identify(first: int) -> None:
            items = [{"type": "person", "identifiers": {"id": person}, "action": "identify",
                      "attributes": {"plan": "pro"}} for person in people[first:first + 20]]
            async with session.post(f"{urls[first // 20 % len(urls)]}/api/v2/batch",
                                    json={"batch": items},
                                    headers=d.track_auth) as response:
                assert response.status == 200, await response.text()

        reading = asyncio.ensure_future(read_each_as_it_enters())
        try:
            for start in range(0, len(people), 100):
                await asyncio.gather(*(identify(first)
                                       for first in range(start, start + 100, 20)))
            await asyncio.wait_for(asyncio.shield(reading), 60)
        finally:
            reading.cancel()
            await consumer.stop()
    assert seen == set(people)
    assert stale == [], f"{len(stale)} people read without the segment they had entered"
