"""What a changelog reader pays for aiokafka's ``ConsumerRecord``: the same records read from
the embedded broker and fed to recovery's loop, as ``ConsumerRecord`` and as aiokafka decoded
them (``tables.decoded_records``), alternating.

    .venv/bin/python -m bench.decoded_records [--records 400000] [--rounds 3]

``--records`` changelog-like records (a table key, a ~130-byte value, the epoch header; a unit
marker every 50) are written to 4 partitions in large batches, as a worker's commits write
them. Each round reads them all with a fresh consumer (``tables.kafka_io.fetch_to_end``, as
recovery does) and feeds each fetch to ``tables.apply_rows.feed_records`` with a replayer per
partition and an apply that keeps nothing, so what differs is the record objects. Reported per
way: this process's CPU seconds (the broker's are its own) and wall seconds, each round. Saves
``bench/results/decoded-records-*.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from app.broker import EmbeddedBroker, ensure_topics
from app.testing.harness import free_port
from app.topics import TopicSpec
from bench.report import RESULTS_DIR
from tables import apply_rows, decoded_records, torn_fetch
from tables.changelog import UNIT_KEY, Replayer, data_key, epoch_header
from tables.kafka_io import fetch_to_end

TOPIC = "decoded-records"
PARTITIONS = 4
UNIT = 50
VALUE = (b'{"id":"01JABCDEFGHJKMNPQRSTVWXYZ0","name":"viewed","type":"event","data":{"n":1},'
         b'"timestamp":1700000000,"processed_at":1700000001.5}')


async def write(bootstrap: str, records: int) -> None:
    await ensure_topics(bootstrap, [TopicSpec(TOPIC, PARTITIONS, "<table>\x1f<table key>")])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20,
                                max_batch_size=1024 * 1024)
    await producer.start()
    try:
        header = epoch_header(1)
        futures = []
        for n in range(records):
            last = n % UNIT == UNIT - 1
            key = UNIT_KEY if last else data_key("history", f"person-{n % 9973}:{n}")
            futures.append(await producer.send(TOPIC, b"" if last else VALUE, key=key,
                                               partition=(n // UNIT) % PARTITIONS,
                                               headers=header))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read(bootstrap: str, as_decoded: bool) -> dict[str, Any]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest", max_partition_fetch_bytes=8 * 1024 * 1024,
        key_deserializer=decoded_records.AS_DECODED if as_decoded else None)
    await consumer.start()
    tps = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    replayers = {(TOPIC, p): Replayer() for p in range(PARTITIONS)}
    applied = {"units": 0}

    def apply(cp: Any, changes: Any, position: Any) -> None:
        applied["units"] += 1

    try:
        cpu, wall, records = time.process_time(), time.perf_counter(), 0
        async for fetched in fetch_to_end(consumer, set(tps), timeout_ms=500,
                                          max_records=20_000):
            for tp, messages in fetched.items():
                cp = (tp.topic, tp.partition)
                apply_rows.feed_records(apply, cp, replayers[cp], messages)
                records += len(messages)
        cpu_s, wall_s = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await consumer.stop()
    return {"records": records, "units": applied["units"], "cpu_s": round(cpu_s, 3),
            "wall_s": round(wall_s, 3), "cpu_us_per_record": round(cpu_s / records * 1e6, 3)}


async def measure(records: int, rounds: int) -> list[dict[str, Any]]:
    broker = EmbeddedBroker(free_port())
    broker.start()
    torn_fetch.install()  # as every process reading the embedded broker does
    decoded_records.install()
    try:
        await write(broker.bootstrap_servers, records)
        rows = []
        for n in range(rounds):
            for as_decoded in (False, True):
                row = {"round": n + 1, "records_as": "decoded" if as_decoded
                       else "ConsumerRecord", **await read(broker.bootstrap_servers, as_decoded)}
                rows.append(row)
                print(f"round {n + 1}, {row['records_as']:>14}: {row['records']:,} records, "
                      f"CPU {row['cpu_s']:.2f} s ({row['cpu_us_per_record']:.2f} µs a record), "
                      f"wall {row['wall_s']:.2f} s", flush=True)
        return rows
    finally:
        broker.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=400_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    rows = asyncio.run(measure(args.records, args.rounds))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / time.strftime("decoded-records-%Y%m%d-%H%M%S.json")
    out.write_text(json.dumps({"records": args.records, "partitions": PARTITIONS,
                               "unit": UNIT, "rounds": rows}, indent=1) + "\n")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
