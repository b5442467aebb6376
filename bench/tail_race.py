"""How often the embedded broker serves a fetch that skips records, and whether the guard refetches
them (tables/torn_fetch.py).

Several producers append to a topic's partitions at once while one consumer reads at their tail;
every offset the consumer sees must follow the one before. Run once without the guard and once
with it, each on a fresh broker, and saved to ``bench/results/tail-race-<time>.json``::

    .venv/bin/python -m bench.tail_race --seconds 90 --writers 8
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.consumer import fetcher

from app.broker import EmbeddedBroker
from app.testing.harness import free_port
from bench.report import RESULTS_DIR
from tables import torn_fetch

PARTITIONS = 4


async def one_run(seconds: float, writers: int, guarded: bool, log_dir: Path) -> dict[str, Any]:
    broker = EmbeddedBroker(free_port(), log_path=log_dir / f"tansu-{int(guarded)}.log")
    broker.start()  # installs the guard ...
    if not guarded:
        fetcher.PartitionRecords = torn_fetch._Original  # ... taken away again for this run
    before = dict(torn_fetch.stats)
    try:
        servers = broker.bootstrap_servers
        admin = AIOKafkaAdminClient(bootstrap_servers=servers)
        await admin.start()
        await admin.create_topics([NewTopic("tail", PARTITIONS, 1)])
        await admin.close()
        producers = [AIOKafkaProducer(bootstrap_servers=servers, acks="all", linger_ms=1)
                     for _ in range(3)]
        for producer in producers:
            await producer.start()
        consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False,
                                    fetch_max_wait_ms=5, auto_offset_reset="earliest")
        await consumer.start()
        tps = [TopicPartition("tail", p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        last = {tp: -1 for tp in tps}
        skips: list[dict[str, int]] = []
        read = 0
        stop = time.monotonic() + seconds

        async def write(k: int) -> None:
            producer = producers[k % len(producers)]
            while time.monotonic() < stop:
                await (await producer.send("tail", b"v" * random.randint(10, 2000),
                                           partition=random.randrange(PARTITIONS)))

        async def tail() -> None:
            nonlocal read
            while time.monotonic() < stop + 2:
                for tp, messages in (await consumer.getmany(timeout_ms=50)).items():
                    for message in messages:
                        if message.offset != last[tp] + 1:
                            skips.append({"partition": tp.partition, "after": last[tp],
                                          "to": message.offset})
                        last[tp] = message.offset
                        read += 1

        await asyncio.gather(tail(), *(write(k) for k in range(writers)))
        await consumer.stop()
        for producer in producers:
            await producer.stop()
    finally:
        broker.stop()
        torn_fetch.install()
    return {"guarded": guarded, "records_read": read, "skips": len(skips),
            "skipped": skips[:20],
            "torn_fetches_refetched": torn_fetch.stats["torn_fetches"] - before["torn_fetches"],
            "jumps_accepted": (torn_fetch.stats["fetch_jumps_accepted"]
                               - before["fetch_jumps_accepted"])}


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    log_dir = Path(args.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    runs = [await one_run(args.seconds, args.writers, guarded, log_dir)
            for guarded in (False, True)]
    return {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "seconds": args.seconds,
            "writers": args.writers, "partitions": PARTITIONS, "runs": runs}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.tail_race",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--log-dir", default="/tmp/eventide-tail-race")
    args = parser.parse_args(argv)
    result = asyncio.run(main_async(args))
    for run in result["runs"]:
        print(f"guard {'on ' if run['guarded'] else 'off'}: {run['records_read']:,} records "
              f"read, {run['skips']} skips seen by the reader, "
              f"{run['torn_fetches_refetched']} torn fetches refetched")
    path = RESULTS_DIR / f"tail-race-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.json"
    path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
