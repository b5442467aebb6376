"""The official ``customerio`` Python client works unchanged against eventide (base URL only).

The client only speaks HTTPS, so the worker serves TLS with a throwaway certificate that the
client trusts through ``REQUESTS_CA_BUNDLE`` — the client's code and calls are untouched.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import aiohttp
import pytest
from customerio import CustomerIO
from ulid import ULID

from app.broker import EmbeddedBroker
from tests.support.harness import Deployment, Worker, eventually

pytestmark = pytest.mark.integration


def self_signed(root: Path) -> tuple[str, str]:
    cert, key = root / "cert.pem", root / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return str(cert), str(key)


async def test_official_client_calls(broker: EmbeddedBroker, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    tls = self_signed(tmp_path)
    d = Deployment(broker.bootstrap_servers, tmp_path, tls=tls)
    await d.create_topics()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", tls[0])
    worker = Worker(d).start()
    try:
        await worker.wait_ready()
        cio = CustomerIO(d.settings.site_id, d.settings.api_key, host="127.0.0.1",
                         port=d.settings.http_port, retries=0)
        event_id = str(ULID())

        def calls() -> None:
            cio.track_anonymous(anonymous_id="anon-c", name="viewed_pricing", data={"plan": "pro"})
            cio.identify(id="c1", email="c1@example.com", first_name="Cy",
                         anonymous_id="anon-c")
            cio.track(customer_id="c1", name="purchased", data={"price": 23.45}, id=event_id)
            cio.track(customer_id="c1", name="purchased", data={"price": 23.45}, id=event_id)
            cio.pageview(customer_id="c1", page="https://example.com/pricing", ref="ad")
            cio.backfill(customer_id="c1", name="signed_up", timestamp=int(time.time()) - 3600)
            cio.identify(id="c2", email="c2@example.com", plan="free")
            cio.track(customer_id="c2", name="c2_event")
            cio.identify(id="gone", email="gone@example.com")
            cio.batch([
                {"type": "person", "identifiers": {"id": "c3"}, "action": "identify",
                 "attributes": {"plan": "team"}},
                {"type": "person", "identifiers": {"id": "c3"}, "action": "event",
                 "name": "from_batch", "attributes": {"n": 1}},
            ])

        await asyncio.to_thread(calls)
        connector = aiohttp.TCPConnector(ssl=False)
        async with aiohttp.ClientSession(connector=connector) as session:
            async def read(path: str) -> tuple[int, dict]:
                async with session.get(d.url + path, headers=d.app_auth,
                                       params={"days": "365"}) as response:
                    return response.status, await response.json()

            async def c2_known() -> None:
                assert (await read("/api/v1/customers/c2"))[0] == 200
                assert (await read("/api/v1/customers/gone"))[0] == 200
            await eventually(c2_known)
            await asyncio.to_thread(cio.merge_customers, "id", "c1", "email", "c2@example.com")
            await asyncio.to_thread(cio.delete, "gone")

            async def settled() -> dict:
                status, body = await read("/api/v1/customers/c1/activities")
                assert status == 200
                names = sorted(a["name"] for a in body["activities"])
                assert names == ["c2_event", "https://example.com/pricing", "purchased",
                                 "signed_up", "viewed_pricing"]
                assert (await read("/api/v1/customers/c2"))[0] == 404
                assert (await read("/api/v1/customers/gone"))[0] == 404
                status, body = await read("/api/v1/customers/c3/activities")
                assert status == 200, body
                assert [a["name"] for a in body["activities"]] == ["from_batch"]
                return body
            await eventually(settled)
            status, body = await read("/api/v1/customers/c1")
            assert body["customer"]["attributes"] == {
                "email": "c1@example.com", "first_name": "Cy", "plan": "free"}
            status, body = await read("/api/v1/customers/c1/activities")
            page = next(a for a in body["activities"] if a["type"] == "page")
            assert page["data"] == {"ref": "ad"}
    finally:
        worker.stop()


async def test_v2_batch_with_bad_items_answers_207(deployment: Deployment,
                                                  worker: Worker) -> None:
    d = deployment
    batch = {"batch": [
        {"type": "person", "identifiers": {"id": "v1"}, "action": "event", "name": "ok"},
        {"type": "person", "identifiers": {"id": "v1"}, "action": "event", "name": ""},
        {"type": "person", "identifiers": {"phone": "1"}, "action": "identify"},
        {"type": "person", "identifiers": {"id": "v1"}, "action": "teleport"},
        {"type": "person", "identifiers": {"id": "v1"}, "action": "event", "name": "big",
         "attributes": {"blob": "x" * 40_000}},
    ]}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{d.url}/api/v2/batch", json=batch,
                                headers=d.track_auth) as response:
            assert response.status == 207
            errors = (await response.json())["errors"]
        assert sorted({e["batch_index"] for e in errors}) == [1, 2, 3, 4]
        assert all({"batch_index", "reason", "field", "message"} <= set(e) for e in errors)
        assert next(e for e in errors if e["batch_index"] == 1)["field"] == "name"
        async with session.post(f"{d.url}/api/v2/entity", json={
                "type": "person", "identifiers": {"id": "v1"}, "action": "identify",
                "attributes": {"plan": "pro"}}, headers=d.track_auth) as response:
            assert response.status == 200
        async with session.post(f"{d.url}/api/v2/entity", json={
                "type": "person", "action": "event", "name": "x"},
                headers=d.track_auth) as response:
            assert response.status == 400
            assert (await response.json())["errors"][0]["field"] == "identifiers"

        async def stored() -> None:
            async with session.get(f"{d.url}/api/v1/customers/v1/activities",
                                   headers=d.app_auth) as response:
                assert response.status == 200, await response.text()
                body = await response.json()
            assert [a["name"] for a in body["activities"]] == ["ok"]
        await eventually(stored)
