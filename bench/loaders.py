"""Loading a deployment: raw envelopes straight to Kafka, or HTTP requests to the track API."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer

from app.producer import partition_for
from app.testing.harness import Deployment
from bench.workload import Workload


async def load_raw(bootstrap: str, topics: dict[str, str], partitions: int, workload: Workload,
                   *, per_record: int, single: bool, rate: float | None = None,
                   tick_s: float = 0.05, accepted_ms: dict[str, int] | None = None
                   ) -> tuple[float, float, int]:
    """Produce the workload; returns (first send, all acked) perf times, records produced.

    ``topics`` maps an item's ``op`` to its raw topic (events to ``raw.events``, identifies to
    ``raw.identifies``, both keyed by customer id). Without ``rate`` everything is written as
    fast as the producer goes (the workers then drain a backlog). With ``rate`` (items/s) the
    items due are written every ``tick_s``, each tick's items grouped into one envelope per topic
    partition, like the HTTP tier's linger does. ``accepted_ms`` receives each item id's (first)
    ``received_at``.
    """
    # Pre-encode every item without its closing brace; received_at is appended at produce time.
    encoded = [(person.encode(), (topics[item["op"]], partition_for(person.encode(), partitions)),
                orjson.dumps(item)[:-1]) for person, _, item in workload.events]
    ids = {prefix: event_id for (_, event_id, _), (_, _, prefix)
           in zip(workload.events, encoded)} if accepted_ms is not None else {}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                max_batch_size=1024 * 1024, max_request_size=8 * 1024 * 1024,
                                request_timeout_ms=30_000)
    await producer.start()
    sender = _RawSender(producer, per_record=per_record, single=single, ids=ids,
                        accepted_ms=accepted_ms)
    try:
        t_first = time.perf_counter()
        if rate is None:
            await sender.send(encoded)
        else:
            sent, ticks = 0, 0
            while sent < len(encoded):
                due = min(len(encoded), int(rate * (time.perf_counter() - t_first)) + 1)
                if due > sent:
                    await sender.send(encoded[sent:due])
                    sent = due
                ticks += 1
                await asyncio.sleep(max(0.0, t_first + ticks * tick_s - time.perf_counter()))
        await asyncio.gather(*sender.futures)
        return t_first, time.perf_counter(), len(sender.futures)
    finally:
        await producer.stop()


#: (key, (topic, partition), item encoded without its closing brace)
Encoded = tuple[bytes, tuple[str, int], bytes]


class _RawSender:
    """Writes pre-encoded items as envelopes (or one bare item per record), stamping each with
    its ``received_at`` as it goes out."""

    def __init__(self, producer: AIOKafkaProducer, *, per_record: int, single: bool,
                 ids: dict[bytes, str], accepted_ms: dict[str, int] | None) -> None:
        self.producer, self.per_record, self.single = producer, per_record, single
        self.ids, self.accepted_ms = ids, accepted_ms
        #: one per record sent: all must be acknowledged before the load is done
        self.futures: list[asyncio.Future] = []
        self.buffers: dict[tuple[str, int], tuple[bytes, list[bytes]]] = {}

    def accept(self, prefix: bytes, at_ms: int) -> None:
        if self.accepted_ms is not None:
            self.accepted_ms.setdefault(self.ids[prefix], at_ms)

    async def send_envelope(self, destination: tuple[str, int]) -> None:
        key, parts = self.buffers.pop(destination)
        at_ms = int(time.time() * 1000)
        suffix = b',"received_at":%d}' % at_ms
        value = b'{"items":[' + b",".join(p + suffix for p in parts) + b"]}"
        for part in parts:
            self.accept(part, at_ms)
        topic, partition = destination
        self.futures.append(await self.producer.send(topic, value, key=key, partition=partition))

    async def send(self, chunk: list[Encoded]) -> None:
        if self.single:
            for key, (topic, partition), prefix in chunk:
                at_ms = int(time.time() * 1000)
                self.accept(prefix, at_ms)
                value = prefix + b',"received_at":%d}' % at_ms
                self.futures.append(await self.producer.send(topic, value, key=key,
                                                             partition=partition))
            return
        for key, destination, prefix in chunk:
            buffer = self.buffers.setdefault(destination, (key, []))
            buffer[1].append(prefix)
            if len(buffer[1]) >= self.per_record:
                await self.send_envelope(destination)
        for destination in list(self.buffers):
            await self.send_envelope(destination)


def v2_entity(person: str, item: dict[str, Any]) -> dict[str, Any]:
    """One workload item as a ``/api/v2/batch`` entity."""
    if item["op"] == "identify":
        return {"type": "person", "identifiers": {"id": person}, "action": "identify",
                "attributes": item["attributes"]}
    return {"type": "person", "identifiers": {"id": person}, "action": "event", "id": item["id"],
            "name": item["name"], "timestamp": item["timestamp"], "attributes": item["data"]}


@dataclass
class HttpLoad:
    t_first: float
    t_last: float
    latencies: list[float]
    statuses: Counter
    accepted_ids: list[str]


async def load_http(deployment: Deployment, urls: list[str], workload: Workload,
                    concurrency: int, batch: int = 0) -> HttpLoad:
    """Send the workload through the track API of the workers at ``urls`` (round robin by
    request).

    Events are POSTed with their id; identifies are PUT (the server gives them an id: the
    workload's id stands for it in ``accepted_ids``, identifies are never resent). With ``batch``,
    every ``batch`` items go as one ``POST /api/v2/batch`` (events with their id, identifies as
    the ``identify`` action)."""
    requests: list[tuple[str, str, list[str], bytes]] = []
    if batch:
        entities = [v2_entity(person, item) for person, _, item in workload.events]
        ids = [event_id for _, event_id, _ in workload.events]
        for n, first in enumerate(range(0, len(entities), batch)):
            requests.append(("POST", f"{urls[n % len(urls)]}/api/v2/batch",
                             ids[first:first + batch],
                             orjson.dumps({"batch": entities[first:first + batch]})))
    for i, (person, event_id, item) in enumerate([] if batch else workload.events):
        base = urls[i % len(urls)]
        if item["op"] == "identify":
            requests.append(("PUT", f"{base}/api/v1/customers/{person}", [event_id],
                             orjson.dumps(item["attributes"])))
        else:
            requests.append(("POST", f"{base}/api/v1/customers/{person}/events", [event_id],
                             orjson.dumps({k: item[k] for k in
                                           ("id", "name", "type", "data", "timestamp")})))
    headers = {**deployment.track_auth, "Content-Type": "application/json"}
    latencies: list[float] = []
    statuses: Counter = Counter()
    accepted: list[str] = []
    pending = iter(requests)

    async def client(session: aiohttp.ClientSession) -> None:
        for method, url, event_ids, body in pending:  # one shared iterator: each takes the next
            start = time.perf_counter()
            try:
                async with session.request(method, url, data=body,
                                           headers=headers) as response:
                    await response.read()
                    status: int | str = response.status
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                status = type(exc).__name__
            latencies.append(time.perf_counter() - start)
            statuses[status] += 1
            if status == 200:
                accepted.extend(event_ids)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        t_first = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        t_last = time.perf_counter()
    return HttpLoad(t_first, t_last, latencies, statuses, accepted)
