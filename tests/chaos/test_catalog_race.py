"""A restarted worker processes person events before its segment catalog has caught up.

Found while building the crash schedule (by reading ``agents/people.py`` and
``app/segments/catalog.py``), reproduced here: ``EventideApp.on_start`` starts following the
definitions topic and sets ``rt.started`` at once; agents wait only for ``rt.started``. After a restart, a partition's
``segment_state`` already names the active versions, so ``PeopleBatch.active`` looks each one up in
the catalog, finds nothing yet (``catalog.get`` is None) and silently evaluates no segment. The
events are stored, the membership is never computed: people who qualify stay out until their next
matching input (and a batch re-run after a crash can emit a different change than its first run).

To make the window visible on the embedded broker, the definitions topic is first padded with
big definitions (each takes ~20 ms to parse), so the catalog needs seconds more than the group
join. On Kafka the topic is small (definitions and their edits), but nothing orders catch-up before
processing: a slow fetch of that topic has the same effect.
"""

from __future__ import annotations

import time

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from ulid import ULID

from app.model import encode_envelope
from app.producer import partition_for
from app.segments.definition import parse_segment
from app.segments.evaluate import is_member
from tests.support.harness import Deployment, Worker, eventually, produce_raw

pytestmark = pytest.mark.integration

SEGMENT = {"name": "did e1", "match": {"event": "e1"}}
PADDING_RECORDS = 600
PADDING = {"name": "padding", "match": {"any": [
    {"event": "padding", "where": [{"path": "a.b[].c", "op": "eq", "value": i}],
     "count": {"gte": 1}, "within": "30d"} for i in range(1000)]}}


async def pad_definitions(d: Deployment) -> None:
    value = orjson.dumps({"definition": PADDING, "version": str(ULID()), "updated_at": 1})
    producer = AIOKafkaProducer(bootstrap_servers=d.bootstrap, acks="all", linger_ms=20,
                                max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(d.topics.segment_definitions.name, value,
                                       key=b"padding", partition=0)
                   for _ in range(PADDING_RECORDS)]
        for future in futures:
            await future
    finally:
        await producer.stop()


def e1(person: str) -> dict:
    now_ms = int(time.time() * 1000)
    return {"op": "event", "id": str(ULID()), "customer": person, "name": "e1", "type": "event",
            "data": {}, "timestamp": now_ms // 1000, "received_at": now_ms}


async def send_e1(d: Deployment, people: list[str]) -> None:
    for person in people:
        await produce_raw(d.bootstrap, d.topics.raw_events.name,
                          [(person.encode(), encode_envelope([e1(person)]))],
                          partition=partition_for(person.encode(), d.settings.partitions))


@pytest.mark.timeout(300)
async def test_events_processed_while_the_catalog_loads_still_count(
        deployment: Deployment) -> None:
    d = deployment
    await pad_definitions(d)
    worker = Worker(d, "first").start()
    after = [f"after-{i}" for i in range(8)]
    async with aiohttp.ClientSession() as session:
        async def get(path: str) -> tuple[int, dict]:
            async with session.get(d.url + path, headers=d.app_auth) as response:
                return response.status, await response.json()

        async def segments_of(person: str) -> list[str]:
            status, body = await get(f"/api/v1/customers/{person}/segments")
            assert status == 200, body
            return [s["id"] for s in body["segments"]]

        try:
            await worker.wait_ready()
            async with session.put(d.url + "/api/v1/segments/did-e1", json=SEGMENT,
                                   headers=d.app_auth) as response:
                assert response.status == 200

            async def live() -> None:
                status, body = await get("/api/v1/segments/did-e1")
                assert status == 200 and body["segment"]["state"] == "live", body
            await eventually(live, timeout_s=90)
            # With the catalog loaded, an e1 puts a person in.
            await send_e1(d, ["before"])

            async def before_in() -> None:
                assert await segments_of("before") == ["did-e1"]
            await eventually(before_in, timeout_s=60)
        finally:
            worker.stop()

        # Events written while the worker is down, processed as soon as it has rejoined.
        await send_e1(d, after)
        worker = Worker(d, "second").start()
        try:
            await worker.wait_ready()

            async def processed() -> None:
                for person in after:
                    status, body = await get(f"/api/v1/customers/{person}/activities")
                    assert status == 200 and len(body["activities"]) == 1, (person, body)
            await eventually(processed, timeout_s=60)
            # The fix: a worker processes nothing before its catalog has read the whole
            # definitions topic, so by the time these events are stored the segment is known.
            assert (await get("/api/v1/segments/did-e1"))[0] == 200

            async def catalog_loaded() -> None:
                assert (await get("/api/v1/segments/did-e1"))[0] == 200
            await eventually(catalog_loaded, timeout_s=90)
            segment = parse_segment("did-e1", SEGMENT)
            stored = {person: (await get(f"/api/v1/customers/{person}/activities"))[1]
                      ["activities"] for person in after}
            expected = {person: ["did-e1"] if is_member(segment, stored[person], {},
                                                        int(time.time())) else []
                        for person in after}
            assert all(expected.values())

            async def members() -> None:
                found = {person: await segments_of(person) for person in after}
                assert found == expected
            await eventually(members, timeout_s=20)
        finally:
            worker.stop()
