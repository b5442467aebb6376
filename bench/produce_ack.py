"""How long the embedded broker takes to acknowledge one produce request, by its shape.

    python -m bench.produce_ack

A unit's commit is two such requests in a row (its outputs, then its changelog run). This says
how much of a commit's time is the broker's own work on an otherwise idle machine: each shape
(records over partitions, ~160-byte values, acks=all) is sent 15 times in one request and timed
from handing it over to the acknowledgement. Prints a line per shape and saves
``bench/results/produce-ack-<time>.json``.
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

from app.broker import EmbeddedBroker
from app.testing.harness import free_port
from bench.report import RESULTS_DIR

#: (records, partitions) per request: a paced unit's commit is about the third and fourth.
SHAPES = ((8, 8), (32, 32), (256, 8), (256, 32), (1024, 8), (1024, 32), (4096, 32))
VALUE = (b'{"change_id":"0123456789abcdef0123456789abcdef","segment_id":"seg-123",'
         b'"person_id":"person-000123","change":"entered","at":1764000000,'
         b'"cause":"01JABCDEFGHJKMNPQRSTVWXYZ01"}')


async def measure(rounds: int = 15) -> list[dict[str, Any]]:
    broker = EmbeddedBroker(free_port())
    broker.start()
    try:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
        await admin.start()
        await admin.create_topics([NewTopic(f"ack{i}", 8, 1) for i in range(4)])
        await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all",
                                    linger_ms=0, max_batch_size=1 << 20,
                                    max_request_size=4 << 20)
        await producer.start()
        try:
            return [await _shape(producer, records, partitions, rounds)
                    for records, partitions in SHAPES]
        finally:
            await producer.stop()
    finally:
        broker.stop()


async def _shape(producer: AIOKafkaProducer, records: int, partitions: int,
                 rounds: int) -> dict[str, Any]:
    seconds = []
    for _ in range(rounds):
        futures = []
        for k in range(partitions):
            batch = producer.create_batch()
            for i in range(records // partitions):
                batch.append(key=b"k%d" % i, value=VALUE, timestamp=None)
            futures.append(await producer.send_batch(batch, f"ack{k // 8}", partition=k % 8))
        start = time.perf_counter()
        await asyncio.gather(*futures)
        seconds.append(time.perf_counter() - start)
    return {"records": records, "partitions": partitions,
            "ack_p50_s": statistics.median(seconds), "ack_min_s": min(seconds)}


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(prog="bench.produce_ack",
                            description=__doc__.split("\n\n")[0]).parse_args(argv)
    shapes = asyncio.run(measure())
    for s in shapes:
        print(f"{s['records']:5d} records over {s['partitions']:2d} partitions: "
              f"acknowledged in {s['ack_p50_s'] * 1000:6.1f} ms p50, "
              f"{s['ack_min_s'] * 1000:6.1f} ms at best")
    out = RESULTS_DIR / f"produce-ack-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"shapes": shapes}, indent=1))
    print(f"results: {out.relative_to(RESULTS_DIR.parent.parent)}")


if __name__ == "__main__":
    main()
