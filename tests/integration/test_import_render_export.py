"""CSV import, liquid rendering and export/import round trip, end to end on the embedded broker."""

from __future__ import annotations

import asyncio
import csv
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from ulid import ULID

from app.broker import EmbeddedBroker
from tests.support.harness import (EVENTIDE, REPO, Deployment, Worker, eventually, items_on,
                                   read_topic)

pytestmark = pytest.mark.integration

# The seed document's layout: reserved columns, then data columns (a dotted flat key, blanks).
SEED_CSV = (
    "_cio_name,_cio_customer_id,_cio_timestamp,total,property.subproperty,note\n"
    "purchase,1,1700000000,23.45,blue,\n"            # row 1
    "signup,2,2024-01-31T10:00:00Z,,,hello\n"        # row 2: ISO timestamp, empty cells
    "purchase,nobody,1700000000,1,red,\n"            # row 3: unknown customer
    "purchase,1,yesterday,2,,\n"                     # row 4: bad timestamp
    "viewed,2,,3,,\n"                                # row 5: no timestamp -> now
)


async def put_person(session: aiohttp.ClientSession, d: Deployment, person: str,
                     **attributes: Any) -> None:
    async with session.put(f"{d.url}/api/v1/customers/{person}", headers=d.track_auth,
                           json=attributes) as response:
        assert response.status == 200, await response.text()


async def track(session: aiohttp.ClientSession, d: Deployment, person: str,
                **body: Any) -> None:
    async with session.post(f"{d.url}/api/v1/customers/{person}/events", headers=d.track_auth,
                            json=body) as response:
        assert response.status == 200, await response.text()


async def profile(session: aiohttp.ClientSession, d: Deployment, person: str) -> dict:
    async with session.get(f"{d.url}/api/v1/customers/{person}", headers=d.app_auth) as response:
        assert response.status == 200, await response.text()
        return (await response.json())["customer"]


async def activities(session: aiohttp.ClientSession, d: Deployment, person: str) -> list[dict]:
    """Every stored activity of a person, newest first (all pages)."""
    found: list[dict] = []
    cursor = None
    while True:
        params = {"days": "36500", "limit": "500"} | ({"cursor": cursor} if cursor else {})
        async with session.get(f"{d.url}/api/v1/customers/{person}/activities",
                               headers=d.app_auth, params=params) as response:
            assert response.status == 200, await response.text()
            page = await response.json()
        found.extend(page["activities"])
        cursor = page["next"]
        if cursor is None:
            return found


async def people_exist(session: aiohttp.ClientSession, d: Deployment, *people: str) -> None:
    async def check() -> None:
        for person in people:
            await profile(session, d, person)
    await eventually(check)


async def import_csv(session: aiohttp.ClientSession, d: Deployment, text: str,
                     status: int = 200) -> dict:
    async with session.post(f"{d.url}/api/v1/imports/events", data=text.encode(),
                            headers={**d.app_auth, "Content-Type": "text/csv"}) as response:
        assert response.status == status, await response.text()
        return await response.json()


async def settled(session: aiohttp.ClientSession, d: Deployment, person: str) -> list[dict]:
    """The person's history once a sentinel sent after everything else has been processed."""
    await track(session, d, person, name="sentinel")

    async def check() -> list[dict]:
        found = await activities(session, d, person)
        assert "sentinel" in [a["name"] for a in found]
        return [a for a in found if a["name"] != "sentinel"]
    return await eventually(check)


async def test_csv_import_reports_accepted_and_rejected_rows(deployment: Deployment,
                                                             worker: Worker) -> None:
    d = deployment
    async with aiohttp.ClientSession() as session:
        await put_person(session, d, "1", email="one@example.com")
        await put_person(session, d, "2", email="two@example.com")
        await people_exist(session, d, "1", "2")
        before = time.time()
        report = await import_csv(session, d, SEED_CSV)
        assert report["accepted"] == 3 and report["rejected"] == 2
        assert report["rejected_by_reason"] == {"bad_timestamp": 1, "unknown_customer": 1}
        assert [r["row"] for r in report["rejects"]] == [3, 4]
        assert report["rejects"][0]["reason"].startswith("unknown_customer: ")
        assert "'nobody'" in report["rejects"][0]["reason"]
        assert report["rejects"][1]["reason"].startswith("bad_timestamp: ")

        async def imported() -> tuple[list[dict], list[dict]]:
            one, two = await activities(session, d, "1"), await activities(session, d, "2")
            assert len(one) == 1 and len(two) == 2
            return one, two
        [purchase], two = await eventually(imported)
    assert purchase["name"] == "purchase" and purchase["type"] == "event"
    assert purchase["timestamp"] == 1700000000
    assert purchase["data"] == {"total": "23.45", "property.subproperty": "blue"}
    by_name = {a["name"]: a for a in two}
    assert by_name["signup"]["timestamp"] == 1706695200
    assert by_name["signup"]["data"] == {"note": "hello"}
    assert by_name["viewed"]["data"] == {"total": "3"}
    assert before - 5 <= by_name["viewed"]["timestamp"] <= time.time() + 5

    # raw.events carries every operation of a customer: the identifies of put_person too
    raw = [item for item in items_on(await read_topic(d.bootstrap, d.topics.raw_events.name,
                                                      partitions=4)) if item["op"] == "event"]
    assert len(raw) == 3
    for item in raw:
        assert item["op"] == "event" and item["source"] == "import"
        assert item["customer"] in ("1", "2") and item["type"] == "event"
        ULID.from_str(item["id"])
        assert isinstance(item["received_at"], int) and isinstance(item["timestamp"], int)


async def test_mixed_file_is_refused_and_reimport_is_deduplicated(deployment: Deployment,
                                                                  worker: Worker) -> None:
    d = deployment
    async with aiohttp.ClientSession() as session:
        mixed = ("_cio_name,_cio_customer_id\n"
                 "purchase,1\n"
                 "purchase,ann@example.com\n")
        refused = await import_csv(session, d, mixed, status=400)
        [message] = refused["meta"]["errors"]
        assert "row 1" in message and "row 2" in message and "nothing was imported" in message
        no_header = await import_csv(session, d, "name,customer\nx,1\n", status=400)
        assert "_cio_name" in no_header["meta"]["errors"][0]
        async with session.post(f"{d.url}/api/v1/imports/events", data=b"x",
                                headers={"Content-Type": "text/csv"}) as response:
            assert response.status == 401
        async with session.post(f"{d.url}/api/v1/imports/events", data=b"<x/>",
                                headers={**d.app_auth, "Content-Type": "text/xml"}) as response:
            assert response.status == 415
        assert await read_topic(d.bootstrap, d.topics.raw_events.name, partitions=4) == []

        await put_person(session, d, "1", first_name="Ann")
        await people_exist(session, d, "1")
        # Enough rows to span several 500-row chunks; one id written in lower case.
        ids = [str(ULID()) for _ in range(1201)]
        rows = [f"step,1,{1700000000 + i},{event_id.lower() if i == 7 else event_id},pro"
                for i, event_id in enumerate(ids)]
        with_ids = "_cio_name,_cio_customer_id,_cio_timestamp,_cio_id,plan\n" + \
            "\n".join(rows) + "\n"
        for _ in range(2):
            report = await import_csv(session, d, with_ids)
            assert (report["accepted"], report["rejected"]) == (1201, 0)
        history = await settled(session, d, "1")
    assert sorted(a["id"] for a in history) == sorted(ids)
    # raw.events carries every operation of a customer: the identifies of put_person too
    raw = [item for item in items_on(await read_topic(d.bootstrap, d.topics.raw_events.name,
                                                      partitions=4)) if item["op"] == "event"]
    assert sum(1 for item in raw if item["id"] == ids[7]) == 2  # sent twice, stored once
    assert sum(1 for item in raw if item["name"] == "step") == 2 * 1201


async def test_render_templates(deployment: Deployment, worker: Worker) -> None:
    d = deployment
    event_id = str(ULID())
    data = {"total": 215, "items": [{"type": "monitor", "price": 200}],
            "sign up date": "2024-01-31"}

    async def render(session: aiohttp.ClientSession, status: int = 200, **body: Any) -> dict:
        async with session.post(f"{d.url}/api/v1/render", json=body,
                                headers=d.app_auth) as response:
            assert response.status == status, await response.text()
            return await response.json()

    async with aiohttp.ClientSession() as session:
        await put_person(session, d, "r1", email="r1@example.com")
        await put_person(session, d, "r2", email="r2@example.com", first_name="Ann")
        await track(session, d, "r1", name="abandoned_cart", id=event_id, data=data)

        async def stored() -> None:
            assert [a["id"] for a in await activities(session, d, "r1")] == [event_id]
            await profile(session, d, "r2")
        await eventually(stored)

        for template, expected in [
            ("{{event.total}}", "215"),
            ("{{event.items[0].type}}", "monitor"),
            ('{{event["sign up date"]}}', "2024-01-31"),
            ('Hi {{customer.first_name | default: "there"}}', "Hi there"),
            ("{{customer.id}} {{customer.email}}", "r1 r1@example.com"),
        ]:
            found = await render(session, template=template, customer_id="r1", event_id=event_id)
            assert found == {"output": expected}, template
        ann = await render(session, template='Hi {{customer.first_name | default: "there"}}',
                           customer_id="r2", event={"total": 3})
        assert ann == {"output": "Hi Ann"}
        inline = await render(session, template="{{event.items[0].type}}", customer_id="r2",
                              event={"items": [{"type": "hdmi"}]}, strict=True)
        assert inline == {"output": "hdmi"}

        broken = await render(session, 400, template="Hello\n{{ event.total | }}",
                              customer_id="r1", event_id=event_id)
        [message] = broken["meta"]["errors"]
        assert message.startswith("template: line 2: "), message
        undefined = await render(session, 400, template="a\nb\n{{ event.nope }}",
                                 customer_id="r1", event_id=event_id, strict=True)
        assert undefined["meta"]["errors"][0].startswith("template: line 3: ")
        assert await render(session, template="{{ event.nope }}!", customer_id="r1",
                            event_id=event_id) == {"output": "!"}

        missing_event = await render(session, 404, template="x", customer_id="r1",
                                     event_id=str(ULID()))
        assert "not found" in missing_event["meta"]["errors"][0]
        await render(session, 404, template="x", customer_id="nobody", event={})
        await render(session, 400, template="x", customer_id="r1", event_id=event_id, event={})
        async with session.post(f"{d.url}/api/v1/render", json={"template": "x"}) as response:
            assert response.status == 401


async def test_export_of_a_person_as_jsonl_and_csv(deployment: Deployment,
                                                   worker: Worker) -> None:
    d = deployment
    async with aiohttp.ClientSession() as session:
        await put_person(session, d, "5", email="ann@example.com", plan="pro")
        await track(session, d, "5", name="purchased", timestamp=1359389415,
                    data={"price": "23.45", "note": 'a, "quoted"\nline'})
        await track(session, d, "5", name="viewed", type="page", data={"url": "/x"})
        await settled(session, d, "5")
        oldest_first = sorted(await activities(session, d, "5"),
                              key=lambda a: (a["timestamp"], a["id"]))

        async with session.get(f"{d.url}/api/v1/customers/5/export",
                               headers=d.app_auth) as response:
            assert response.status == 200
            assert response.content_type == "application/x-ndjson"
            lines = [orjson.loads(line) for line in (await response.read()).splitlines()]
        async with session.get(f"{d.url}/api/v1/customers/5/export", headers=d.app_auth,
                               params={"format": "csv"}) as response:
            assert response.status == 200 and response.content_type == "text/csv"
            rows = list(csv.reader((await response.text()).splitlines(keepends=True)))
        for params, status in [({"format": "xml"}, 400), ({}, 404)]:
            path = "5" if params else "nobody"
            async with session.get(f"{d.url}/api/v1/customers/{path}/export",
                                   headers=d.app_auth, params=params) as response:
                assert response.status == status
        async with session.get(f"{d.url}/api/v1/customers/5/export") as response:
            assert response.status == 401

    kinds = [line["kind"] for line in lines]
    assert kinds[0] == "profile" and kinds.count("profile") == 1
    assert set(kinds[1:]) <= {"attribute_change", "event"}
    assert lines[0]["id"] == "5"
    assert lines[0]["attributes"] == {"email": "ann@example.com", "plan": "pro"}
    events = [line for line in lines if line["kind"] == "event"]
    assert events == [{"kind": "event", **a} for a in oldest_first]
    assert [e["name"] for e in events] == ["purchased", "viewed", "sentinel"]
    assert rows[0] == ["id", "name", "type", "timestamp", "processed_at", "data"]
    assert [r[1] for r in rows[1:]] == ["purchased", "viewed", "sentinel"]
    purchased = rows[1]
    assert purchased[0] == oldest_first[0]["id"] and purchased[2] == "event"
    assert purchased[3] == "1359389415" and int(purchased[4]) == oldest_first[0]["processed_at"]
    assert orjson.loads(purchased[5]) == {"price": "23.45", "note": 'a, "quoted"\nline'}


async def run_cli(d: Deployment, *args: str, timeout_s: float = 120) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        EVENTIDE, *args, env=d.env(), cwd=REPO, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL)
    out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    return process.returncode or 0, out.decode(), err.decode()


async def test_export_then_import_into_a_fresh_deployment(
        broker: EmbeddedBroker, deployment: Deployment, worker: Worker, tmp_path: Path) -> None:
    source = deployment
    async with aiohttp.ClientSession() as session:
        await put_person(session, source, "5", email="ann@example.com", first_name="Ann")
        await put_person(session, source, "6", email="bob@example.com")
        await track(session, source, "5", name="purchased", timestamp=1359389415,
                    data={"price": "23.45", "items": [{"type": "monitor"}]})
        await track(session, source, "5", name="viewed", type="page", data={"url": "/pricing"})
        await track(session, source, "7", name="no_profile", data={"n": 1})  # events only
        originals = {person: await settled(session, source, person) for person in "567"}
        profiles = {p: (await profile(session, source, p))["attributes"] for p in "56"}

        # Whole-instance export over HTTP, one partition at a time.
        async with session.get(f"{source.url}/api/v1/export/partitions",
                               headers=source.app_auth) as response:
            listing = await response.json()
        assert listing == {"partitions": 4, "owned": [0, 1, 2, 3]}
        parts = []
        for p in range(4):
            async with session.get(f"{source.url}/api/v1/export/partitions/{p}",
                                   headers=source.app_auth) as response:
                assert response.status == 200
                parts.append(await response.read())
        async with session.get(f"{source.url}/api/v1/export/partitions/4",
                               headers=source.app_auth) as response:
            assert response.status == 404
        dump = b"".join(parts)
        people = [orjson.loads(line)["id"] for line in dump.splitlines()
                  if orjson.loads(line)["kind"] == "profile"]
        assert sorted(people) == ["5", "6", "7"]

        # The CLI writes the same files.
        out_dir = tmp_path / "export"
        code, out, err = await run_cli(source, "export", "--all", "--out", str(out_dir))
        assert code == 0, err
        assert "exported 3 people in 4 partitions" in out
        assert sorted(f.name for f in out_dir.iterdir()) == [f"part-{p}.jsonl" for p in range(4)]
        assert [(out_dir / f"part-{p}.jsonl").read_bytes() for p in range(4)] == parts

        (tmp_path / "second").mkdir()
        target = Deployment(broker.bootstrap_servers, tmp_path / "second")
        await target.create_topics()
        second = Worker(target, name="second").start()
        try:
            await second.wait_ready()
            bad = b'{"kind":"event","id":"x"}\n'
            async with session.post(f"{target.url}/api/v1/imports/export", data=bad,
                                    headers={**target.app_auth,
                                             "Content-Type": "application/x-ndjson"}) as response:
                assert response.status == 400
                assert "line 1" in (await response.json())["meta"]["errors"][0]
            async with session.post(f"{target.url}/api/v1/imports/export", data=dump,
                                    headers={**target.app_auth,
                                             "Content-Type": "application/x-ndjson"}) as response:
                assert response.status == 200, await response.text()
                summary = await response.json()
            assert summary["people"] == 3 and summary["identifies"] == 2
            assert summary["events"] == sum(len(h) + 1 for h in originals.values())

            async def recreated() -> None:
                for person, history in originals.items():
                    copy = await activities(session, target, person)
                    assert [a for a in copy if a["name"] != "sentinel"] == history
                for person, attributes in profiles.items():
                    assert (await profile(session, target, person))["attributes"] == attributes
            await eventually(recreated)
            async with session.get(f"{target.url}/api/v1/customers/7",
                                   headers=target.app_auth) as response:
                assert response.status == 404  # had no profile, still has none

            # Importing the same export again changes nothing (ids deduplicate).
            code, out, err = await run_cli(target, "import", "export",
                                           str(out_dir / "part-0.jsonl"))
            assert code == 0, err
            assert "events:" in out
            for person, history in originals.items():
                again = await settled(session, target, person)
                assert [a for a in again if a["name"] != "sentinel"] == history
        finally:
            second.stop()


async def test_cli_import_events(deployment: Deployment, worker: Worker, tmp_path: Path) -> None:
    d = deployment
    async with aiohttp.ClientSession() as session:
        await put_person(session, d, "1", email="one@example.com")
        await put_person(session, d, "2", email="two@example.com")
        await people_exist(session, d, "1", "2")

        mixed = tmp_path / "mixed.csv"
        mixed.write_text("_cio_name,_cio_customer_id\nx,1\ny,a@example.com\n")
        code, out, err = await run_cli(d, "import", "events", str(mixed))
        assert code == 1 and "row 1" in err and "row 2" in err and "nothing was sent" in err

        seed = tmp_path / "seed.csv"
        seed.write_text(SEED_CSV)
        rejects = tmp_path / "rejects.csv"
        code, out, err = await run_cli(d, "import", "events", str(seed), "--rejects",
                                       str(rejects))
        assert code == 0, err
        assert "accepted: 3" in out
        assert "rejected: 2 (bad_timestamp: 1, unknown_customer: 1)" in out
        with open(rejects, newline="") as handle:
            rows = list(csv.reader(handle))
        assert rows[0] == ["row", "reason"]
        assert [r[0] for r in rows[1:]] == ["3", "4"]
        assert rows[1][1].startswith("unknown_customer: ")
        assert rows[2][1].startswith("bad_timestamp: ")

        async def imported() -> None:
            assert len(await activities(session, d, "1")) == 1
            assert len(await activities(session, d, "2")) == 2
        await eventually(imported)

        event_id = (await activities(session, d, "1"))[0]["id"]
        template = tmp_path / "t.liquid"
        template.write_text("{{event.total}} {{customer.email}}")
        code, out, err = await run_cli(d, "render", "--template", str(template), "--customer",
                                       "1", "--event-id", event_id)
        assert (code, out) == (0, "23.45 one@example.com"), err
        code, out, err = await run_cli(d, "render", "--template", str(template), "--customer",
                                       "1", "--event-json", '{"total": 7}')
        assert (code, out) == (0, "7 one@example.com"), err

        out_csv = tmp_path / "one.csv"
        code, out, err = await run_cli(d, "export", "--customer", "1", "--format", "csv",
                                       "--out", str(out_csv))
        assert code == 0, err
        assert out_csv.read_text().splitlines()[1].startswith(f"{event_id},purchase,event,")
        wrong_key = tmp_path / "wrong.key"
        wrong_key.write_text("wrong\n")
        code, out, err = await run_cli(d, "import", "events", str(seed), "--app-key-file",
                                       str(wrong_key))
        assert code == 1 and "401" in err
