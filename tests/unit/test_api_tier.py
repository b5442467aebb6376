"""The ingest tier's HTTP app in-process, with a fake producer: routes, readiness gate, _update,
metrics. (End to end with a broker and a worker: tests/integration/test_operations.py.)"""

from __future__ import annotations

import base64
from collections import Counter

import orjson
from aiohttp.test_utils import TestClient, TestServer

from app.api import track, v2
from app.api_tier import TierRuntime, build_tier_app
from app.clock import ManualClock
from app.ingest.batcher import IngestBatcher
from app.model import decode_envelope
from app.settings import Settings
from app.topics import build_topics
from tests.support.prometheus import parse, samples

SETTINGS = Settings(site_id="site-x", api_key="track-key", app_key="app-key", partitions=4,
                    ingest_linger_ms=0)
TRACK = {"Authorization": "Basic " + base64.b64encode(b"site-x:track-key").decode()}
APP = {"Authorization": "Bearer app-key"}


class FakeProducer:
    def __init__(self) -> None:
        self.records: list = []

    async def send_all(self, records: list) -> list[int]:
        self.records.extend(records)
        return list(range(len(records)))


def tier_runtime() -> tuple[TierRuntime, FakeProducer]:
    producer = FakeProducer()
    rt = TierRuntime(settings=SETTINGS, topics=build_topics(SETTINGS), clock=ManualClock(),
                     producer=producer,  # type: ignore[arg-type]
                     batcher=IngestBatcher(producer, linger_s=0, max_items=500))  # type: ignore
    return rt, producer


def test_the_tier_serves_the_track_api_and_ops_endpoints_only() -> None:
    rt, _ = tier_runtime()
    app = build_tier_app(rt)
    registered = {(r.method, r.resource.canonical) for r in app.router.routes()
                  if r.method != "HEAD"}
    shared = {(r.method, r.path) for r in [*track.ROUTES, *v2.ROUTES]}  # type: ignore
    assert registered == shared | {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")}


async def test_not_ready_until_connected_then_accepts_and_counts() -> None:
    rt, producer = tier_runtime()
    async with TestClient(TestServer(build_tier_app(rt))) as client:
        for path in ("/healthz", "/readyz"):
            assert (await client.get(path)).status == 503
        refused = await client.post("/api/v1/customers/5/events", json={"name": "x"},
                                    headers=TRACK)
        assert refused.status == 503
        assert (await refused.json())["meta"]["errors"][0].startswith("not ready")
        assert producer.records == []

        rt.connected.set()
        for path in ("/healthz", "/readyz"):
            assert (await client.get(path)).status == 200
        ok = await client.post("/api/v1/customers/5/events", json={"name": "bought"},
                               headers=TRACK)
        assert ok.status == 200, await ok.text()
        update = await client.put("/api/v1/customers/nobody", json={"_update": True, "a": 1},
                                  headers=TRACK)
        assert update.status == 200, await update.text()
        bad = await client.post("/api/v1/customers/5/events", json={}, headers=TRACK)
        assert bad.status == 400
        assert (await client.get("/metrics")).status == 401
        metrics = await client.get("/metrics", headers=APP)
        assert metrics.status == 200
        assert metrics.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = await metrics.text()

    items = [item for record in producer.records for item in decode_envelope(record.value)]
    assert [(i["op"], i.get("update")) for i in items] == [("event", None), ("identify", True)]
    # events and identifies share one raw topic: the log alone orders a customer's operations
    assert {r.topic for r in producer.records} == {rt.topics.raw_events.name}
    parse(text)
    assert {s.label("kind"): s.value for s in samples(text, "eventide_accepted_total")} == {
        "event": 1, "identify": 1}
    assert {s.label("status"): s.value for s in samples(text, "eventide_http_responses_total")
            } == {"503": 1, "200": 2, "400": 1}
    assert samples(text, "eventide_http_request_duration_seconds_count")[0].value == 4
    assert rt.counters == Counter({"accepted:event": 1, "accepted:identify": 1,
                                   "http_responses:503": 1, "http_responses:200": 2,
                                   "http_responses:400": 1})
    assert orjson.loads(producer.records[0].value)  # a decodable envelope


async def test_browser_identify_can_be_turned_off() -> None:
    """Issue 14.13: with EVENTIDE_BROWSER_IDENTIFY=0 the public site id cannot identify anyone;
    browser events still work."""
    from aiohttp import web

    from app.api import browser
    from app.api.context import RT
    from app.api.server import error_shape

    for allowed in (True, False):
        settings = SETTINGS.replace(browser_identify=allowed)
        producer = FakeProducer()
        rt = TierRuntime(settings=settings, topics=build_topics(settings), clock=ManualClock(),
                         producer=producer,  # type: ignore[arg-type]
                         batcher=IngestBatcher(producer, linger_s=0, max_items=500))  # type: ignore
        app = web.Application(middlewares=[error_shape])
        app[RT] = rt  # type: ignore[misc]
        app.add_routes(browser.ROUTES)
        async with TestClient(TestServer(app)) as client:
            identify = await client.post("/api/v1/browser/site-x/identify",
                                         json={"id": "5", "email": "x@example.com"})
            event = await client.post("/api/v1/browser/site-x/events",
                                      json={"name": "viewed", "anonymous_id": "a1"})
            assert event.status == 200, await event.text()
            if allowed:
                assert identify.status == 200, await identify.text()
            else:
                assert identify.status == 403
                assert "EVENTIDE_BROWSER_IDENTIFY" in await identify.text()
                ops = [i["op"] for r in producer.records for i in orjson.loads(r.value)["items"]]
                assert ops == ["event"], "nothing but the event was accepted"


async def test_failed_authentications_are_limited_per_address() -> None:
    rt, _ = tier_runtime()
    rt.connected.set()
    async with TestClient(TestServer(build_tier_app(rt))) as client:
        wrong = {"Authorization": "Basic " + base64.b64encode(b"site-x:nope").decode()}
        statuses = [(await client.post("/api/v1/customers/5/events", json={"name": "e"},
                                       headers=wrong)).status for _ in range(31)]
        assert statuses[:30] == [401] * 30 and statuses[30] == 429
        held = await client.post("/api/v1/customers/5/events", json={"name": "e"},
                                 headers=TRACK)
        assert held.status == 429 and "Retry-After" in held.headers


async def test_beside_an_embedded_instance_a_200_waits_for_its_input_log(tmp_path) -> None:
    """`eventide api` with EVENTIDE_INPUT_LOG_DIR answers once the instance's input log has the
    record on disk (the durable offsets its owner publishes), like workers 2..N of `up`."""
    import asyncio

    from app.ingest.durability import durability_of
    from app.ops import replay
    from app.ops.durable_offsets import DURABLE_OFFSETS, DurableOffsets
    from app.ops.input_log import slots_of

    settings = SETTINGS.replace(input_log_dir=tmp_path)
    topics = build_topics(settings)
    published = DurableOffsets(tmp_path / DURABLE_OFFSETS, slots_of(replay.inputs(topics)),
                               writer=True)
    assert TierRuntime.create(settings).batcher.durable is not None
    assert TierRuntime.create(SETTINGS).batcher.durable is None  # Kafka: acks=all is the promise
    assert TierRuntime.create(settings.replace(ack_on_disk=False)).batcher.durable is None
    producer = FakeProducer()
    batcher = IngestBatcher(producer, linger_s=0, max_items=500,  # type: ignore[arg-type]
                            durable=durability_of(settings, topics))
    topic = topics.raw_events
    item = {"op": "event", "id": "01J0000000000000000000000A", "customer": "5", "name": "x"}
    answered = asyncio.ensure_future(batcher.submit(topic.name, topic.partitions, "5", item))
    await asyncio.sleep(0.05)
    [record] = producer.records
    assert not answered.done()  # acknowledged by the broker, not on disk yet
    published.publish(record.topic, record.partition, 1)  # offset 0 is on disk
    await asyncio.wait_for(answered, 2)
    published.close()
