"""The workspace Activity Log, person search and segment preview with two workers in one group:
every worker answers for everyone (each worker's share gathered and merged), and the console's
pages and helpers built on them work from either worker."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.support.harness import Deployment, Worker, eventually, two_workers

pytestmark = pytest.mark.integration

PEOPLE = [f"c{i}" for i in range(12)]
CLICKERS = PEOPLE[::3]  # c0, c3, c6, c9
DEFINITION = {"match": {"all": [{"event": "clicked", "within": "30d"}]}}


def events_of(person: str) -> list[dict[str, Any]]:
    n = int(person[1:])
    events = [{"name": "viewed", "type": "page", "data": {"who": person}},
              {"name": "signed_up", "data": {"who": person}}]
    if person in CLICKERS:
        events.append({"name": "clicked", "data": {"n": n}})
    return events


async def test_activity_log_preview_and_search_answer_for_everyone_on_every_worker(
        deployment: Deployment) -> None:
    d = deployment
    workers = await two_workers(d)
    try:
        async with aiohttp.ClientSession() as session:
            async def get(url: str) -> Any:
                async with session.get(url, headers=d.app_auth) as response:
                    assert response.status == 200, (url, await response.text())
                    return await response.json()

            sent = 0
            for person in PEOPLE:
                async with session.put(f"{workers[0].url}/api/v1/customers/{person}",
                                       json={"email": f"{person}@example.com"},
                                       headers=d.track_auth) as response:
                    assert response.status == 200
                for event in events_of(person):
                    async with session.post(f"{workers[1].url}/api/v1/customers/{person}/events",
                                            json=event, headers=d.track_auth) as response:
                        assert response.status == 200
                    sent += 1
            for n in range(3):
                async with session.post(f"{workers[0].url}/api/v1/events",
                                        json={"name": "browsed", "anonymous_id": f"anon-{n}"},
                                        headers=d.track_auth) as response:
                    assert response.status == 200

            async def whole_log(worker: Worker, query: str, limit: int) -> list[dict]:
                found, before = [], ""
                for _ in range(100):
                    page = await get(f"{worker.url}/api/v1/activities?limit={limit}{query}"
                                     f"{'&before=' + before if before else ''}")
                    assert len(page["activities"]) <= limit
                    found += page["activities"]
                    if page["next"] is None:
                        return found
                    before = page["next"]
                raise AssertionError("paging did not end")

            async def complete_everywhere() -> None:
                for worker in workers:
                    log = await whole_log(worker, "", 7)
                    assert len(log) == sent, (worker.url, len(log))
                    assert len({a["id"] for a in log}) == sent
                    keys = [(a["processed_at"], a["customer_id"], a["id"]) for a in log]
                    assert keys == sorted(keys, reverse=True)  # newest processed first
                    anonymous = await get(f"{worker.url}/api/v1/activities?anonymous=true")
                    assert {a["anonymous_id"] for a in anonymous["activities"]} == \
                        {"anon-0", "anon-1", "anon-2"}
                    assert anonymous["complete"] is True
            await eventually(complete_everywhere, timeout_s=90, interval_s=1.0)

            for worker in workers:
                pages = await whole_log(worker, "&type=page", 5)
                assert sorted(a["customer_id"] for a in pages) == sorted(PEOPLE)
                assert {a["name"] for a in pages} == {"viewed"}
                clicks = await whole_log(worker, "&name=clicked", 2)
                assert sorted(a["customer_id"] for a in clicks) == sorted(CLICKERS)
                mine = await whole_log(worker, "&customer=c3", 50)
                assert sorted(a["name"] for a in mine) == ["clicked", "signed_up", "viewed"]
                assert all(a["customer_id"] == "c3" for a in mine)
                async with session.get(f"{worker.url}/api/v1/activities?before=nonsense",
                                       headers=d.app_auth) as response:
                    assert response.status == 400
                async with session.get(f"{worker.url}/api/v1/activities") as response:
                    assert response.status == 401

                # Person search: ids and emails by prefix, from both workers' partitions.
                found = await get(f"{worker.url}/api/v1/search/customers?q=c1")
                assert [p["id"] for p in found["customers"]] == ["c1", "c10", "c11"]
                assert found["customers"][0]["email"] == "c1@example.com"
                by_email = await get(f"{worker.url}/api/v1/search/customers?q=c2%40ex")
                assert [p["id"] for p in by_email["customers"]] == ["c2"]

                # Segment preview: counted on both workers, nothing published.
                async with session.post(f"{worker.url}/api/v1/segments/preview",
                                        json=DEFINITION, headers=d.app_auth) as response:
                    assert response.status == 200, await response.text()
                    preview = await response.json()
                assert preview["count"] == len(CLICKERS)
                assert preview["sample"] == CLICKERS
                assert preview["complete"] is True
                assert preview["scanned"] == len(PEOPLE)
                async with session.post(f"{worker.url}/api/v1/segments/preview",
                                        json={"match": {"all": [{"event": ""}]}},
                                        headers=d.app_auth) as response:
                    assert response.status == 400
            assert (await get(f"{workers[0].url}/api/v1/segments"))["segments"] == []

            # The console, signed in with a cookie, on either worker.
            async with session.post(workers[0].url + "/console/login", allow_redirects=False,
                                    data={"app_key": d.settings.app_key}) as response:
                token = response.cookies["eventide_console"].value
            for worker in workers:
                cookie = {"Cookie": f"eventide_console={token}", "Origin": worker.url}
                async with session.get(f"{worker.url}/console/activity?type=page",
                                       headers=cookie) as response:
                    text = await response.text()
                    assert response.status == 200, text[:500]
                    assert all(f"/console/people/{p}" in text for p in PEOPLE)
                async with session.get(f"{worker.url}/console/activity?tab=anonymous",
                                       headers=cookie) as response:
                    assert "anon-2" in await response.text()
                async with session.get(f"{worker.url}/console/search/people?q=c1",
                                       headers=cookie) as response:
                    answer = await response.json()
                    assert [p["id"] for p in answer["customers"]] == ["c1", "c10", "c11"]
                async with session.post(f"{worker.url}/console/segments/preview",
                                        json=DEFINITION, headers=cookie) as response:
                    assert (await response.json())["count"] == len(CLICKERS)
    finally:
        for worker in workers:
            worker.stop()
