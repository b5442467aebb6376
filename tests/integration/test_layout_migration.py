"""A worker started over a state version whose people tables were written in layout 1 (a value per
person: the whole history, every dedup id) converts them to layout 2 (a key per event) before it
reads them, says so, and carries on where the old state stopped: the old history is there, an
old event id is still a duplicate, new events join the history."""

from __future__ import annotations

import asyncio
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import aiohttp
import orjson
import pytest
from ulid import ULID

from app.broker import EmbeddedBroker, ensure_topics
from app.producer import OutRecord, Producer, partition_for
from app.topics import TopicSpec, people_changelog
from tables.changelog import UNIT_KEY, data_key, epoch_header
from tests.support.harness import EVENTIDE, REPO, Deployment, Worker, eventually

pytestmark = pytest.mark.integration


def _ulid(ms: int) -> str:
    return str(ULID.from_timestamp(ms / 1000))


async def write_layout_1(deployment: Deployment, person: str, now_s: int) -> list[dict]:
    settings = deployment.settings
    version = f"{settings.topic_prefix}.{settings.state_version}"
    old = TopicSpec(people_changelog(version, 1), settings.partitions, "<table>\x1f<key>",
                    compacted=True)
    await ensure_topics(deployment.bootstrap, [old])
    partition = partition_for(person.encode(), settings.partitions)
    history = [{"id": _ulid((now_s - 300 + n) * 1000), "name": "viewed", "type": "event",
                "data": {"n": n}, "timestamp": now_s - 300 + n, "processed_at": now_s - 290}
               for n in range(3)]
    # where each id was first delivered: offsets this test's person.events never reaches
    dedup = {a["id"]: [now_s * 1000 + 86_400_000, partition, 1_000_000 + n, 0]
             for n, a in enumerate(history)}
    profile = {"id": person, "attributes": {"plan": "pro"}, "stamps": {}, "anonymous_ids": [],
               "created_at": now_s - 300, "updated_at": now_s - 300}
    records = [OutRecord(old.name, partition, data_key(table, person), orjson.dumps(value),
                         headers=epoch_header(1))
               for table, value in (("dedup", dedup), ("history", history),
                                    ("profiles", profile))]
    producer = Producer(settings)
    await producer.start()
    try:
        await producer.send_all([*records, OutRecord(old.name, partition, UNIT_KEY, b"",
                                                     headers=epoch_header(1))])
    finally:
        await producer.stop()
    return history


async def test_a_layout_1_state_is_migrated_at_start_and_carries_on(
        deployment: Deployment) -> None:
    now_s = int(time.time())
    history = await write_layout_1(deployment, "p1", now_s)
    worker = Worker(deployment).start()
    try:
        await worker.wait_ready(timeout_s=90)
        assert "migrated 1 histories" in worker.tail(200)
        url = worker.url

        async with aiohttp.ClientSession() as session:
            async def activities() -> list[str]:
                async with session.get(f"{url}/api/v1/customers/p1/activities",
                                       headers=deployment.app_auth) as response:
                    assert response.status == 200, await response.text()
                    return [a["id"] for a in (await response.json())["activities"]]

            async def stored(expected: list[str]) -> None:
                assert sorted(await activities()) == sorted(expected)

            await eventually(lambda: stored([a["id"] for a in history]), timeout_s=60)
            # an id the old state remembered is still a duplicate; a new one joins the history
            fresh = _ulid(now_s * 1000)
            for event_id in (history[0]["id"], fresh):
                async with session.post(f"{url}/api/v1/customers/p1/events",
                                        json={"id": event_id, "name": "viewed",
                                              "timestamp": now_s},
                                        headers=deployment.track_auth) as response:
                    assert response.status == 200, await response.text()
            await eventually(lambda: stored([a["id"] for a in history] + [fresh]),
                             timeout_s=60)
            async with session.get(f"{url}/api/v1/customers/p1",
                                   headers=deployment.app_auth) as response:
                assert (await response.json())["customer"]["attributes"]["plan"] == "pro"
    finally:
        worker.stop()
    # a second start finds layout 2 written and converts nothing again
    again = Worker(deployment, name="again").start()
    try:
        await again.wait_ready(timeout_s=90)
        assert "migrated" not in again.tail(200)
    finally:
        again.stop()


async def test_a_definitions_topic_created_compacted_is_named_with_its_fix(
        broker: EmbeddedBroker, tmp_path: Path) -> None:
    """Segment definitions keep every record now (a replay activates each edit where the live
    run did); an earlier eventide created the topic compacted. eventide leaves an existing
    topic's configs alone, so starting over one says which topic differs and the command that
    changes it, and nothing about the topics that agree."""
    d = Deployment(broker.bootstrap_servers, tmp_path)
    definitions = d.topics.segment_definitions
    await ensure_topics(d.bootstrap, [replace(definitions, compacted=True)])  # the old layout
    result = await asyncio.to_thread(subprocess.run, [EVENTIDE, "topics"], env=d.env(),
                                     cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    warnings = [line for line in result.stderr.splitlines() if "cleanup.policy=" in line]
    assert len(warnings) == 1, result.stderr[-2000:]
    assert f"topic {definitions.name} has cleanup.policy=compact, not delete" in warnings[0]
    assert (f"--entity-name {definitions.name} --add-config cleanup.policy=delete,"
            "retention.ms=-1") in warnings[0]
    # a topic created now agrees: a second start says nothing of the others
    assert await ensure_topics(d.bootstrap, d.topics.all()) == warnings_of(definitions.name)


def warnings_of(name: str) -> list[str]:
    return [f"topic {name} has cleanup.policy=compact, not delete: eventide reads every record "
            f"of it (a replay needs them all). Change it with: kafka-configs.sh "
            f"--bootstrap-server <broker> --alter --entity-type topics --entity-name {name} "
            f"--add-config cleanup.policy=delete,retention.ms=-1"]
