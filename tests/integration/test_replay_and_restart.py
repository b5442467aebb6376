"""Replay into a fresh state version gives the same state and the same changes; the embedded
mode survives a graceful restart; dead letters can be listed and re-submitted."""

from __future__ import annotations

import contextlib
import asyncio
import os
import signal
import subprocess
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

import aiohttp
from aiokafka import AIOKafkaProducer
import orjson
import pytest

from app.ops.digest import table_contents
from app.producer import partition_for
from app.topics import DEDUP, people_changelog
from tests.integration.test_workers import extra_worker
from tests.support.harness import (EVENTIDE, REPO, Deployment, Worker, basic_auth, eventually,
                                   free_port, read_topic, wait_healthy)

pytestmark = pytest.mark.integration


#: The log of the last run of each command (a failed comparison shows the replay's).
CLI_LOGS: dict[str, str] = {}


def run_cli(d: Deployment, *args: str, timeout: float = 240, **env: str) -> str:
    result = subprocess.run([EVENTIDE, *args], env=d.env(**env), cwd=REPO, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    CLI_LOGS[args[0]] = result.stderr
    return result.stdout


def digest_lines(output: str) -> dict[str, str]:
    return dict(line.split() for line in output.splitlines() if line and not
                line.startswith("done"))


async def changes_by_person(d: Deployment, version: str) -> dict[str, list[tuple]]:
    topic = f"{d.settings.topic_prefix}.{version}.segments.changes"
    by_person: dict[str, list[tuple]] = defaultdict(list)
    seen = set()
    for record in await read_topic(d.bootstrap, topic, partitions=4):
        change = orjson.loads(record.value)
        if change["change_id"] in seen:
            continue
        seen.add(change["change_id"])
        by_person[change["person_id"]].append(
            (change["change_id"], change["segment_id"], change["change"], change["at"]))
    return dict(by_person)


async def send_mix(d: Deployment) -> None:
    now = int(time.time())
    async with aiohttp.ClientSession() as session:
        async def call(method: str, path: str, body: dict, auth: dict) -> None:
            async with session.request(method, d.url + path, json=body,
                                       headers=auth) as response:
                assert response.status == 200, await response.text()
        await call("PUT", "/api/v1/segments/buyers", {"name": "buyers", "match": {"all": [
            {"event": "purchased", "count": {"gte": 2}}, {"attribute": "plan", "op": "eq",
                                                            "value": "pro"}]}}, d.app_auth)
        await call("PUT", "/api/v1/segments/recent", {"name": "recent", "match": {
            "event": "viewed", "within": "1m"}}, d.app_auth)
        for i in range(12):
            person = f"r{i % 4}"
            await call("POST", f"/api/v1/customers/{person}/events",
                       {"name": "purchased" if i % 3 else "viewed",
                        "timestamp": now - 50 if i % 5 == 0 else now, "data": {"i": i}},
                       d.track_auth)
            if i % 4 == 0:
                await call("PUT", f"/api/v1/customers/{person}",
                           {"plan": "pro", "email": f"{person}@x.io"}, d.track_auth)
        await call("POST", "/api/v1/events", {"name": "viewed", "anonymous_id": "anon-r"},
                   d.track_auth)
        await call("PUT", "/api/v1/customers/r1", {"anonymous_id": "anon-r"}, d.track_auth)
        await call("POST", "/api/v1/merge_customers", {"primary": {"id": "r0"},
                                                       "secondary": {"email": "r3@x.io"}},
                   d.track_auth)


async def test_replay_twice_gives_equal_digests_and_changes(deployment: Deployment,
                                                            worker: Worker) -> None:
    d = deployment
    await send_mix(d)

    async def settled() -> dict[str, str]:
        first = digest_lines(await asyncio.to_thread(run_cli, d, "digest"))
        await asyncio.sleep(2)
        second = digest_lines(await asyncio.to_thread(run_cli, d, "digest"))
        assert first == second and first["history"] != first["timers"]
        return first
    live = await eventually(settled, timeout_s=60)
    worker.stop()  # replays need no live worker; they must not depend on one either

    replayed = [digest_lines(await asyncio.to_thread(run_cli, d, "replay",
                                                     "--state-version", v))
                for v in ("v2", "v3")]
    for version, result in zip(("v2", "v3"), replayed):
        assert result == live, await state_differences(d, "v1", version, result, live)
    live_changes = await changes_by_person(d, "v1")
    assert live_changes and live_changes == await changes_by_person(d, "v2")
    assert await changes_by_person(d, "v3") == live_changes


async def test_concurrent_identify_and_event_pairs_replay_to_the_same_state_and_changes(
        deployment: Deployment, worker: Worker) -> None:
    """Issue 11.7: an identify and an event of the same person sent milliseconds apart meet in
    the person stage in the order of the input log, so live, v2 and v3 agree exactly."""
    d = deployment
    async with aiohttp.ClientSession() as session:
        async with session.put(d.url + "/api/v1/segments/pro-buyers", json={
                "name": "pro buyers", "match": {"all": [
                    {"attribute": "plan", "op": "eq", "value": "pro"},
                    {"event": "purchased"}]}}, headers=d.app_auth) as response:
            assert response.status == 200, await response.text()

        async def call(method: str, path: str, body: dict) -> None:
            async with session.request(method, d.url + path, json=body,
                                       headers=d.track_auth) as response:
                assert response.status == 200, await response.text()

        await asyncio.gather(*(
            coroutine for n in range(40) for coroutine in (
                call("PUT", f"/api/v1/customers/c{n}", {"plan": "pro"}),
                call("POST", f"/api/v1/customers/c{n}/events", {"name": "purchased"}))))

    live = await eventually(lambda: settled_with_one_change_each(d, 40, 80), timeout_s=60)
    worker.stop()
    for version in ("v2", "v3"):
        # --version: the option's earlier spelling, kept as a hidden alias of --state-version.
        replayed = digest_lines(await asyncio.to_thread(run_cli, d, "replay", "--version",
                                                        version))
        assert replayed == live, await state_differences(d, "v1", version, replayed, live)
    full = await changes_with_causes(d, "v1")
    assert full == await changes_with_causes(d, "v2") == await changes_with_causes(d, "v3")


async def test_three_workers_live_and_one_replaying_evaluate_against_the_same_definitions(
        deployment: Deployment) -> None:
    """A customer's own items are taken in place, not ordered with the definitions' ``segment``
    items: each input is evaluated against the definitions recorded by its accept time. Live on
    three workers (each following the catalog itself) and replayed by one, the change records are
    the same, causes included, and every entry is caused by an input, not by an activation."""
    d = deployment
    workers = [Worker(d, "a").start(), extra_worker(d, "b").start(), extra_worker(d, "c").start()]
    try:
        await asyncio.gather(*(w.wait_ready(90) for w in workers))
        async with aiohttp.ClientSession() as session:
            async with session.put(workers[1].url + "/api/v1/segments/pro-buyers", json={
                    "name": "pro buyers", "match": {"all": [
                        {"attribute": "plan", "op": "eq", "value": "pro"},
                        {"event": "purchased"}]}}, headers=d.app_auth) as response:
                assert response.status == 200, await response.text()

            async def call(n: int, method: str, path: str, body: dict) -> None:
                async with session.request(method, workers[n % 3].url + path, json=body,
                                           headers=d.track_auth) as response:
                    assert response.status == 200, await response.text()

            await asyncio.gather(*(
                coroutine for n in range(24) for coroutine in (
                    call(n, "PUT", f"/api/v1/customers/t{n}", {"plan": "pro"}),
                    call(n + 1, "POST", f"/api/v1/customers/t{n}/events",
                         {"name": "purchased"}))))

        live = await eventually(lambda: settled_with_one_change_each(d, 24, 48), timeout_s=90)
    finally:
        for w in workers:
            w.stop()
    replayed = digest_lines(await asyncio.to_thread(run_cli, d, "replay", "--state-version", "v2"))
    assert replayed == live, await state_differences(d, "v1", "v2", replayed, live)
    full = await changes_with_causes(d, "v1")
    assert full == await changes_with_causes(d, "v2")
    assert not [c for changes in full.values() for c in changes
                if c["cause"].startswith("definition:")]


async def test_a_segment_created_over_stored_events_replays_with_the_same_causes(
        deployment: Deployment, worker: Worker) -> None:
    """A replay sends every definition's item at its start, ahead of the backlog of inputs
    accepted before the definition was written: activating it on arrival evaluated those inputs
    against it (each entry caused by an event), where live they had been stored before it existed
    and it entered the people itself (caused by the definition). A definition's item that finds
    its partition's raw inputs not yet all applied is left to activate once they are."""
    d = deployment
    async with aiohttp.ClientSession() as session:
        await send_padded_events(session, d, [d.url])
        await eventually(lambda: stored(d, session, [f"s{n}" for n in range(360, 400)]),
                         timeout_s=90)
        async with session.put(d.url + "/api/v1/segments/buyers", json={
                "name": "buyers", "match": {"event": "purchased"}},
                headers=d.app_auth) as response:
            assert response.status == 200, await response.text()

    live = await eventually(lambda: settled_with_one_change_each(d, 40, 8_000), timeout_s=90)
    worker.stop()
    await replayed_with_every_entry_caused_by_the_definition(d, live)


async def test_an_input_accepted_before_a_segment_reaching_raw_events_after_it_replays_alike(
        deployment: Deployment) -> None:
    """An input accepted a moment before a segment was written, written to raw.events after the
    segment's item reached the partition (a producer's record held back, an ingest write slowed):
    live, a partition that had taken every raw record it saw activated the segment on its item,
    and the input then entered the person; a replay, which finds the input in its backlog, had
    the segment itself enter them (another cause). The item now waits out the grace
    (``EVENTIDE_DEFINITION_GRACE_S``) first, live on three workers as replayed by one, and each
    worker's partitions are activated when the grace ends, with no input to make a unit."""
    d = deployment
    workers = [Worker(d, "a").start(), extra_worker(d, "b").start(), extra_worker(d, "c").start()]
    partitions = d.settings.partitions   # two people on each, so every worker has some
    late = sorted(person for partition in range(partitions) for person in [
        f"late-{n}" for n in range(200)
        if partition_for(f"late-{n}".encode(), partitions) == partition][:2])
    try:
        await asyncio.gather(*(w.wait_ready(90) for w in workers))
        accepted_ms = int(time.time() * 1000)
        async with aiohttp.ClientSession() as session:
            async with session.put(workers[1].url + "/api/v1/segments/buyers", json={
                    "name": "buyers", "match": {"event": "purchased"}},
                    headers=d.app_auth) as response:
                assert response.status == 200, await response.text()
        await asyncio.sleep(1)   # the segment's item reaches every partition (tens of ms)
        producer = AIOKafkaProducer(bootstrap_servers=d.bootstrap, acks="all")
        await producer.start()
        try:
            for person in late:
                await producer.send_and_wait(d.topics.raw_events.name, key=person.encode(),
                                             value=orjson.dumps({
                                                 "op": "event", "customer": person,
                                                 "name": "purchased",
                                                 "received_at": accepted_ms}))
        finally:
            await producer.stop()

        async def entered() -> dict[str, list[dict]]:
            live = await changes_with_causes(d, "v1")
            assert sorted(live) == late, live
            return live
        live_changes, live = await changes_and_digest(d, entered, timeout_s=60)
    finally:
        for w in workers:
            w.stop()
    await replayed_alike(d, live, live_changes)
    assert all(c["cause"].startswith("definition:") for changes in live_changes.values()
               for c in changes), live_changes


async def test_a_segment_edited_between_inputs_replays_alike_on_three_workers(
        deployment: Deployment) -> None:
    """A segment defined, inputs, the segment edited, more inputs. Live, each partition
    activated the first version before the first inputs and the edit before the later ones; a
    replay's catalog holds both versions from its start, and must activate them at the same
    places (it once held the latest alone, evaluated the first inputs against no version, and
    left out their entries and the edit's exits). Live on three workers, replayed by one: equal
    digests and change records, causes included."""
    d = deployment
    workers = [Worker(d, "a").start(), extra_worker(d, "b").start(), extra_worker(d, "c").start()]
    people = [f"e{n}" for n in range(12)]
    try:
        await asyncio.gather(*(w.wait_ready(90) for w in workers))
        async with aiohttp.ClientSession() as session:
            async def define(n: int, match: dict) -> None:
                async with session.put(workers[n].url + "/api/v1/segments/buyers", json={
                        "name": "buyers", "match": match}, headers=d.app_auth) as response:
                    assert response.status == 200, await response.text()

            async def send(n: int, person: str, name: str) -> None:
                async with session.post(workers[n % 3].url + f"/api/v1/customers/{person}/events",
                                        json={"name": name}, headers=d.track_auth) as response:
                    assert response.status == 200, await response.text()

            await define(0, {"event": "purchased"})
            await asyncio.gather(*(send(n, person, "purchased")
                                   for n, person in enumerate(people)))
            await define(1, {"event": "viewed"})   # everyone exits, caused by the edit
            await asyncio.gather(*(send(n, person, "viewed")
                                   for n, person in enumerate(people[:4])))

        async def settled() -> dict[str, list[dict]]:
            live = await changes_with_causes(d, "v1")
            assert sum(map(len, live.values())) == 12 + 12 + 4, live
            return live
        live_changes, live = await changes_and_digest(d, settled, timeout_s=90)
    finally:
        for w in workers:
            w.stop()
    by_edit = [c for cs in live_changes.values() for c in cs
               if c["cause"].startswith("definition:")]
    assert len(by_edit) == 12 and {c["change"] for c in by_edit} == {"exited"}, live_changes
    await replayed_alike(d, live, live_changes)


async def test_a_segment_created_and_deleted_with_no_input_between_replays_alike_on_three_workers(
        deployment: Deployment) -> None:
    """A backlog of events stored, a segment created (each partition activates it once its
    grace has passed, with no input to wait for), then deleted, with no input between. A replay
    sends both items ahead of the backlog, so each partition leaves them to its inputs, and
    activates what was recorded once it has taken them all. With the deletion a tombstone, a
    partition with nothing active could not tell a segment deleted there from one it never
    activated: it started after the deletion, and the replay had no entries and no exits where
    the live run had 40 of each. Live on three workers, replayed by one: equal digests and
    change records, causes included."""
    d = deployment
    async with three_workers(d) as workers, aiohttp.ClientSession() as session:
        await send_padded_events(session, d, [w.url for w in workers])
        await eventually(lambda: settled_with_one_change_each(d, 0, 8_000), timeout_s=120)
        segment = workers[0].url + "/api/v1/segments/buyers"
        async with session.put(segment, json={"name": "buyers", "match": {"event": "purchased"}},
                               headers=d.app_auth) as response:
            assert response.status == 200, await response.text()

        async def entered() -> None:
            async with session.get(segment, headers=d.app_auth) as response:
                body = (await response.json())["segment"]
                assert (body["state"], body["members"]) == ("live", 40), body
        await eventually(entered, timeout_s=90)
        async with session.delete(workers[1].url + "/api/v1/segments/buyers",
                                  headers=d.app_auth) as response:
            assert response.status == 200, await response.text()

        async def settled() -> dict[str, list[dict]]:
            live = await changes_with_causes(d, "v1")
            assert sum(map(len, live.values())) == 40 + 40, live
            return live
        live_changes, live = await changes_and_digest(d, settled, timeout_s=90)
    assert {c["change"]: c["cause"].split(":")[1].startswith("deleted@")
            for cs in live_changes.values() for c in cs} == {"entered": False, "exited": True}
    await replayed_alike(d, live, live_changes)


async def test_three_workers_take_a_segment_created_behind_their_backlog_as_a_replay_does(
        deployment: Deployment) -> None:
    """The segment is written while three workers may still be draining the events written
    before it: every entry is caused by the definition, live on three workers and replayed by
    one. (Whether a definition's item overtakes a backlog depends on the order of fetches; this
    checks the agreement, tests/agents the mechanism.)"""
    d = deployment
    async with three_workers(d) as workers:
        async with aiohttp.ClientSession() as session:
            await send_padded_events(session, d, [w.url for w in workers])
            async with session.put(workers[1].url + "/api/v1/segments/buyers", json={
                    "name": "buyers", "match": {"event": "purchased"}},
                    headers=d.app_auth) as response:
                assert response.status == 200, await response.text()
        live = await eventually(lambda: settled_with_one_change_each(d, 40, 8_000), timeout_s=120)
    await replayed_with_every_entry_caused_by_the_definition(d, live)


async def replayed_with_every_entry_caused_by_the_definition(d: Deployment,
                                                             live: dict[str, str]) -> None:
    """A replay into state version v2 gives the live digests and change records, and every
    entry was caused by the segment's definition (the events were stored before it)."""
    replayed = digest_lines(await asyncio.to_thread(run_cli, d, "replay", "--state-version",
                                                    "v2"))
    assert replayed == live, await state_differences(d, "v1", "v2", replayed, live)
    full = await changes_with_causes(d, "v1")
    assert full == await changes_with_causes(d, "v2")
    assert all(c["cause"].startswith("definition:") for changes in full.values() for c in changes)


@contextlib.asynccontextmanager
async def three_workers(d: Deployment) -> AsyncIterator[list[Worker]]:
    """Three workers of the deployment, ready; stopped on leaving."""
    workers = [Worker(d, "a").start(), extra_worker(d, "b").start(), extra_worker(d, "c").start()]
    try:
        await asyncio.gather(*(w.wait_ready(90) for w in workers))
        yield workers
    finally:
        for w in workers:
            w.stop()


async def send_padded_events(session: aiohttp.ClientSession, d: Deployment,
                             urls: list[str]) -> None:
    """8,000 events of ~1 KB to 400 people (~2 MB of raw records a partition: more than one
    fetch brings at once), batches of 100 spread over ``urls``; the last 40 people's last event
    is ``purchased``, every other one ``viewed``."""
    pad = "x" * 1_000

    async def batch(first: int) -> None:
        items = [{"type": "person", "identifiers": {"id": f"s{n % 400}"}, "action": "event",
                  "name": "purchased" if n >= 7_960 else "viewed",
                  "attributes": {"pad": pad}} for n in range(first, first + 100)]
        async with session.post(urls[first // 100 % len(urls)] + "/api/v2/batch",
                                json={"batch": items}, headers=d.track_auth) as response:
            assert response.status == 200, await response.text()
    for start in range(0, 8_000, 1_000):
        await asyncio.gather(*(batch(first) for first in range(start, start + 1_000, 100)))


async def stored(d: Deployment, session: aiohttp.ClientSession, people: list[str]) -> None:
    """Each of ``people`` has its ``purchased`` event stored (the last of its inputs)."""
    for person in people:
        async with session.get(f"{d.url}/api/v1/customers/{person}/activities",
                               headers=d.app_auth) as response:
            assert response.status == 200
            assert any(a["name"] == "purchased" for a in (await response.json())["activities"])


async def settled_with_one_change_each(d: Deployment, people: int,
                                       inputs: int) -> dict[str, str]:
    """The live digest once every one of the ``inputs`` accepted items is applied (its id is in
    the dedup table) and the digest holds still, and each of ``people`` people has one change.
    (A digest holding still for two seconds alone is no proof: three workers rebalancing can
    pause longer than that with inputs left to apply.)"""
    applied = len(await table_contents(d.settings, DEDUP))
    assert applied == inputs, f"{applied} of {inputs} accepted inputs applied live"
    first = digest_lines(await asyncio.to_thread(run_cli, d, "digest"))
    await asyncio.sleep(2)
    assert digest_lines(await asyncio.to_thread(run_cli, d, "digest")) == first
    live = await changes_by_person(d, "v1")
    assert len(live) == people and all(len(c) == 1 for c in live.values())
    return first


async def state_differences(d: Deployment, live_version: str, replayed_version: str,
                            replayed: dict[str, str], live: dict[str, str]) -> str:
    """What a failed comparison needs to be understood (a digest says only *that* two states
    differ): the replay's output and its worker's warnings, each table whose digest differs
    with its differing keys and both values, and the people whose change records differ."""
    worker_log = replace(d.settings, state_version=replayed_version).state_dir / \
        "replay-worker.log"
    lines = ["the replay's output:", *CLI_LOGS.get("replay", "").splitlines()[-10:]]
    if worker_log.exists():  # its warnings and errors (a fetch jump taken, a retry)
        lines += ["the replay worker's warnings:", *[
            entry for entry in worker_log.read_text(errors="replace").splitlines()
            if "[WARNING]" in entry or "[ERROR]" in entry][-30:]]
    for table in sorted(t for t in live if t != "overall" and live[t] != replayed.get(t)):
        values = [await table_contents(replace(d.settings, state_version=version), table)
                  for version in (live_version, replayed_version)]
        keys = sorted(set(values[0]) | set(values[1]))
        differing = [key for key in keys if values[0].get(key) != values[1].get(key)]
        lines.append(f"{table}: {len(differing)} of {len(keys)} keys differ")
        lines += [f"  {key}: {live_version} {repr(values[0].get(key))[:300]} / "
                  f"{replayed_version} {repr(values[1].get(key))[:300]}"
                  for key in differing[:10]]
    changes = [await changes_with_causes(d, version) for version in (live_version,
                                                                    replayed_version)]
    for person in sorted(set(changes[0]) | set(changes[1])):
        if changes[0].get(person) != changes[1].get(person):
            lines.append(f"changes of {person}: {live_version} {changes[0].get(person)!r} / "
                         f"{replayed_version} {changes[1].get(person)!r}")
    return "\n".join(lines[:120])


async def changes_and_digest(d: Deployment, settled: Callable[[], Awaitable[dict]],
                             timeout_s: float) -> tuple[dict[str, list[dict]], dict[str, str]]:
    """The live change records once ``settled`` passes, and the live digest then."""
    changes = await eventually(settled, timeout_s=timeout_s)
    return changes, digest_lines(await asyncio.to_thread(run_cli, d, "digest"))


async def replayed_alike(d: Deployment, live: dict[str, str],
                         live_changes: dict[str, list[dict]]) -> None:
    """Replayed into v2 by one worker: the live digest and change records, causes included."""
    replayed = digest_lines(await asyncio.to_thread(run_cli, d, "replay", "--state-version",
                                                    "v2"))
    assert replayed == live, await state_differences(d, "v1", "v2", replayed, live)
    assert live_changes == await changes_with_causes(d, "v2")


async def changes_with_causes(d: Deployment, version: str) -> dict[str, list[dict]]:
    """Every change record per person, cause and on-enter data included (ids and times)."""
    topic = f"{d.settings.topic_prefix}.{version}.segments.changes"
    by_person: dict[str, list[dict]] = defaultdict(list)
    for record in await read_topic(d.bootstrap, topic, partitions=4):
        change = orjson.loads(record.value)
        if change not in by_person[change["person_id"]]:
            by_person[change["person_id"]].append(change)
    return dict(by_person)


async def test_embedded_mode_survives_a_graceful_restart(tmp_path: Path) -> None:
    env = dict(os.environ, EVENTIDE_EMBEDDED_BROKER_PORT=str(free_port()),
               EVENTIDE_HTTP_PORT=str(free_port()), EVENTIDE_SITE_ID="s", EVENTIDE_API_KEY="k",
               EVENTIDE_APP_KEY="a", EVENTIDE_DATA_DIR=str(tmp_path / "data"),
               EVENTIDE_PARTITIONS="2", EVENTIDE_ARCHIVE_INTERVAL_S="1")
    env.pop("EVENTIDE_BROKER", None)
    url = f"http://127.0.0.1:{env['EVENTIDE_HTTP_PORT']}"
    broker = f"kafka://127.0.0.1:{env['EVENTIDE_EMBEDDED_BROKER_PORT']}"

    def digest() -> dict[str, str]:
        result = subprocess.run([EVENTIDE, "digest"], env=dict(env, EVENTIDE_BROKER=broker,
                                                               EVENTIDE_BROKER_FLAVOR="tansu"),
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return digest_lines(result.stdout)

    async def up() -> subprocess.Popen:
        process = subprocess.Popen([EVENTIDE, "up"], env=env, cwd=tmp_path,
                                   stdout=open(tmp_path / "up.log", "ab"),
                                   stderr=subprocess.STDOUT)
        try:
            await wait_healthy(url, process, lambda: (tmp_path / "up.log").read_text()[-3000:])
        except AssertionError:
            process.kill()
            raise
        return process

    def down(process: subprocess.Popen) -> None:
        process.send_signal(signal.SIGINT)
        process.wait(60)

    async def reads(session: aiohttp.ClientSession) -> list:
        found = []
        for person in ("a", "b"):
            async with session.get(f"{url}/api/v1/customers/{person}/activities",
                                   headers={"Authorization": "Bearer a"}) as response:
                assert response.status == 200, await response.text()
                found.append(await response.json())
        return found

    first = await up()
    try:
        async with aiohttp.ClientSession() as session:
            auth = basic_auth("s", "k")
            for person, name in (("a", "x"), ("b", "y"), ("a", "z")):
                async with session.post(f"{url}/api/v1/customers/{person}/events",
                                        json={"name": name}, headers=auth) as response:
                    assert response.status == 200
            async with session.put(f"{url}/api/v1/customers/a", json={"plan": "pro"},
                                   headers=auth) as response:
                assert response.status == 200

            async def stored() -> list:
                found = await reads(session)
                assert [len(f["activities"]) for f in found] == [2, 1]
                return found
            before = await eventually(stored)
        before_digest = await asyncio.to_thread(digest)
    finally:
        down(first)
    assert (tmp_path / "data" / "log").exists()
    second = await up()
    try:
        async with aiohttp.ClientSession() as session:
            def without_processed_at(found: list) -> list:
                return [[{**a, "processed_at": None} for a in f["activities"]] for f in found]

            async def same() -> None:
                # Everything is as before, except when each event was processed: the restart
                # processed the input log again (digests leave processed_at out for this).
                after = await reads(session)
                assert without_processed_at(after) == without_processed_at(before)
                assert all(a["processed_at"] >= b["processed_at"]
                           for f, g in zip(after, before)
                           for a, b in zip(f["activities"], g["activities"]))
                assert await asyncio.to_thread(digest) == before_digest
            await eventually(same, timeout_s=60)
    finally:
        down(second)


async def test_deadletters_are_listed_and_resubmitted(deployment: Deployment,
                                                      worker: Worker) -> None:
    from tests.support.harness import produce_raw

    d = deployment
    await produce_raw(d.bootstrap, d.topics.raw_events.name,
                      [(b"dl", b'{"op": "event", "customer": "dl", "name": ""}')])

    async def listed() -> list[dict]:
        lines = (await asyncio.to_thread(run_cli, d, "deadletters")).splitlines()
        assert len(lines) == 1
        return [orjson.loads(line) for line in lines]
    [letter] = await eventually(listed)
    assert letter["origin_topic"] == d.topics.raw_events.name and "name" in letter["error"]
    fixed = d.root / "fixed.jsonl"
    letter["value"] = orjson.loads(letter["value"]) | {"name": "fixed_event"}
    fixed.write_bytes(orjson.dumps(letter) + b"\n")
    assert "re-submitted 1" in await asyncio.to_thread(run_cli, d, "deadletters", "--resubmit",
                                                       str(fixed))
    async with aiohttp.ClientSession() as session:
        async def stored() -> None:
            async with session.get(f"{d.url}/api/v1/customers/dl/activities",
                                   headers=d.app_auth) as response:
                assert response.status == 200, await response.text()
                body = await response.json()
            assert [a["name"] for a in body["activities"]] == ["fixed_event"]
        await eventually(stored)


async def test_replay_since_rebuilds_only_the_window(deployment: Deployment,
                                                     worker: Worker) -> None:
    d = deployment
    async with aiohttp.ClientSession() as session:
        async def send(name: str) -> None:
            async with session.post(f"{d.url}/api/v1/customers/win/events", json={"name": name},
                                    headers=d.track_auth) as response:
                assert response.status == 200
        await send("before")
        await asyncio.sleep(1.5)
        since = time.time()
        await asyncio.sleep(0.5)
        await send("after")

        async def both() -> None:
            async with session.get(f"{d.url}/api/v1/customers/win/activities",
                                   headers=d.app_auth) as response:
                assert response.status == 200
                assert len((await response.json())["activities"]) == 2
        await eventually(both)
    await asyncio.to_thread(run_cli, d, "replay", "--since", f"{since:.3f}",
                            "--state-version", "w2")
    changelog = await read_topic(d.bootstrap,
                                 people_changelog(f"{d.settings.topic_prefix}.w2"), partitions=4)
    history = [orjson.loads(r.value) for r in changelog
               if r.key.startswith(b"history\x1fwin\x1f") and r.value is not None]
    assert [a["name"] for a in history] == ["after"]  # the earlier state is not in the window
