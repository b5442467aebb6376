"""SIGKILL mid-stream, restart: every accepted event is in history exactly once, nothing lost.

Also: a worker whose data directory is deleted rebuilds the same state from the changelogs.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import signal
import time

import aiohttp
import pytest
from ulid import ULID

from app.model import encode_envelope
from app.producer import partition_for
from tests.support.harness import Deployment, Worker, eventually, produce_raw

pytestmark = pytest.mark.integration

PEOPLE = [f"person-{i}" for i in range(40)]


def make_load(n: int, seed: int) -> tuple[list[tuple[bytes, bytes, int]], dict[str, set[str]]]:
    """Envelopes of events (10% exact resends of an earlier id) and the expected histories."""
    rng = random.Random(seed)
    now_ms = int(time.time() * 1000)
    expected: dict[str, set[str]] = {p: set() for p in PEOPLE}
    sent: list[dict] = []
    for i in range(n):
        if sent and rng.random() < 0.1:
            item = dict(rng.choice(sent))  # the same id again: must be dropped
        else:
            person = rng.choice(PEOPLE)
            item = {"op": "event", "id": str(ULID()), "name": f"e{i % 7}", "type": "event",
                    "data": {"i": i}, "timestamp": now_ms // 1000, "customer": person,
                    "received_at": now_ms}
            expected[person].add(item["id"])
        sent.append(item)
    by_partition: dict[int, list[dict]] = {}
    records: list[tuple[bytes, bytes, int]] = []
    for item in sent:
        partition = partition_for(item["customer"].encode(), 4)
        batch = by_partition.setdefault(partition, [])
        batch.append(item)
        if len(batch) == 50:
            records.append((item["customer"].encode(), encode_envelope(batch), partition))
            by_partition[partition] = []
    for partition, batch in by_partition.items():
        if batch:
            records.append((batch[0]["customer"].encode(), encode_envelope(batch), partition))
    return records, expected


async def histories(d: Deployment) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    async with aiohttp.ClientSession() as session:
        for person in PEOPLE:
            ids: list[str] = []
            cursor = None
            while True:
                params = {"days": "3650", "limit": "500"} | ({"cursor": cursor} if cursor else {})
                async with session.get(f"{d.url}/api/v1/customers/{person}/activities",
                                       headers=d.app_auth, params=params) as response:
                    if response.status == 404:
                        break
                    page = await response.json()
                ids.extend(a["id"] for a in page["activities"])
                cursor = page["next"]
                if cursor is None:
                    break
            found[person] = ids
    return found


async def produce(d: Deployment, records: list[tuple[bytes, bytes, int]]) -> None:
    for key, value, partition in records:
        await produce_raw(d.bootstrap, d.topics.raw_events.name, [(key, value)],
                          partition=partition)


async def assert_exactly(d: Deployment, expected: dict[str, set[str]]) -> dict[str, list[str]]:
    async def complete() -> dict[str, list[str]]:
        found = await histories(d)
        for person, ids in expected.items():
            assert len(found[person]) == len(set(found[person])), f"{person} has a double"
            assert set(found[person]) == ids, f"{person}: {len(found[person])}/{len(ids)}"
        return found
    return await eventually(complete, timeout_s=90, interval_s=1.0)


async def test_sigkill_mid_stream_loses_and_doubles_nothing(deployment: Deployment) -> None:
    d = deployment
    records, expected = make_load(6000, seed=7)
    worker = Worker(d, "first").start()
    await worker.wait_ready()
    producing = asyncio.ensure_future(produce(d, records))
    await asyncio.sleep(1.0)  # mid-stream: part processed, part buffered, part not yet sent
    worker.kill(signal.SIGKILL)
    restarted = Worker(d, "second").start()
    try:
        await restarted.wait_ready()
        await asyncio.wait_for(producing, 120)
        await assert_exactly(d, expected)
    finally:
        restarted.stop()


async def test_deleted_data_dir_is_rebuilt_from_changelogs(deployment: Deployment) -> None:
    d = deployment
    records, expected = make_load(1500, seed=11)
    worker = Worker(d, "first").start()
    try:
        await worker.wait_ready()
        await produce(d, records)
        before = await assert_exactly(d, expected)
    finally:
        worker.stop()
    shutil.rmtree(d.settings.data_dir)
    rebuilt = Worker(d, "rebuilt").start()
    try:
        await rebuilt.wait_ready()
        after = await histories(d)
        assert after == before  # same events, same order, nothing reprocessed twice
        # And the rebuilt dedup table still drops a resend of an already-stored id.
        some_person = next(p for p in PEOPLE if expected[p])
        known_id = before[some_person][0]
        resend = {"op": "event", "id": known_id, "name": "again", "customer": some_person,
                  "data": {}}
        partition = partition_for(some_person.encode(), 4)
        await produce_raw(d.bootstrap, d.topics.raw_events.name,
                          [(some_person.encode(), encode_envelope([resend]))], partition=partition)
        marker = {"op": "event", "name": "marker", "customer": some_person, "data": {}}
        await produce_raw(d.bootstrap, d.topics.raw_events.name,
                          [(some_person.encode(), encode_envelope([marker]))], partition=partition)

        async def marker_in() -> list[str]:
            found = await histories(d)
            assert len(found[some_person]) == len(before[some_person]) + 1
            return found[some_person]
        ids = await eventually(marker_in)
        assert ids.count(known_id) == 1
    finally:
        rebuilt.stop()
