"""What a worker pays a record between aiokafka's decoding and its acknowledgement, the way it
did before 2026-12-06 (faust's message made of aiokafka's ``ConsumerRecord``, wrapped for the
agent, tracked and acknowledged one by one) and the way it does now (``InRecord`` made in
compiled code, faust's books kept a unit at a time: ``app.bulk_fetch``), in one process.

    .venv/bin/python -m bench.record_path [--records 100000] [--rounds 7]

No broker: a real record batch of ``--records`` records (~300-byte values) is decoded by aiokafka
once, then each round runs one way over it: fetches of 500 records through the fetch loop's
bookkeeping (faust's read offset, the commit guard) into an inbox list, then units of 1,000
records tracked and acknowledged on a real ``BulkConsumer`` (not started). The collector runs as
in a worker, with the setup frozen. Reported: the least process CPU time a record over the
rounds, each way. This counts the path only; what it is of a worker's CPU an item is for
``bench.run`` beside it. Saves ``bench/results/record-path-*.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from typing import Any, Callable

import faust
from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from faust.types import TP

from app.bulk_fetch import BulkTransport
from app.commit_guard import CommitGuard
from bench.report import RESULTS_DIR
from tables import decoded_records
from tables.records import in_records

FETCH = 500
UNIT = 1_000


class _App(faust.App):
    def _new_transport(self) -> Any:
        return BulkTransport(self.conf.broker_consumer, self)


class _Wrapped:
    """What an inbox handed an agent before: faust's message under ``.message``."""

    __slots__ = ("message",)

    def __init__(self, message: Any) -> None:
        self.message = message


def decoded_batch(records: int) -> list[Any]:
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0,
                                        producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                        batch_size=1 << 28)
    for offset in range(records):
        builder.append(offset, timestamp=1_700_000_000_000 + offset, key=b"person-%d" % offset,
                       value=b"v" * 300, headers=[])
    return list(DefaultRecordBatch(bytes(builder.build())))


def ways(consumer: Any, decoded: list[Any]) -> dict[str, Callable[[TP], None]]:
    fetches = [decoded[i:i + FETCH] for i in range(0, len(decoded), FETCH)]
    consumer_record = decoded_records.consumer_record  # (aiokafka's own making of one)

    def before(tp: TP) -> None:
        guard, read_offsets, inbox = CommitGuard(), {}, []
        for fetch in fetches:
            for message in [consumer._to_message(tp, consumer_record(tp, r)) for r in fetch]:
                offset, read = message.offset, read_offsets.get(tp)
                if read is not None and offset < read:
                    continue
                guard.fetched(tp, offset)
                inbox.append(message)
                read_offsets[tp] = offset
        for start in range(0, len(inbox), UNIT):
            unit = [_Wrapped(m) for m in inbox[start:start + UNIT]]
            for event in unit:
                consumer.track_message(event.message)
            for event in unit:
                consumer.ack(event.message)

    def now(tp: TP) -> None:
        guard, read_offsets, inbox = CommitGuard(), {}, []
        for fetch in fetches:
            records = in_records(tp, 0, fetch)
            first, last = records[0].offset, records[-1].offset
            guard.fetched_run(tp, first, last)
            inbox.extend(records)
            read_offsets[tp] = last
        for start in range(0, len(inbox), UNIT):
            unit = inbox[start:start + UNIT]
            consumer.track_records(unit)
            consumer.ack_records(unit)

    return {"before": before, "now": now}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    app = _App("record-path", broker="kafka://127.0.0.1:1", store="memory://")
    consumer = app.consumer
    app.topics.acks_enabled_for = lambda topic: True  # type: ignore[method-assign]
    decoded = decoded_batch(args.records)
    paths = ways(consumer, decoded)
    gc.freeze()
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    for round_ in range(args.rounds):
        for name, way in paths.items():  # alternating, each round on partitions of its own
            started = time.process_time()
            way(TP(f"{name}-{round_}", 0))
            seconds[name].append(time.process_time() - started)
            acked = sum(len(offsets) for offsets in consumer._acked.values())
            assert acked == args.records * (round_ * len(paths) + list(paths).index(name) + 1)
    assert not consumer._unacked_messages, "every record tracked was acknowledged"
    per_record = {name: min(s) / args.records * 1e6 for name, s in seconds.items()}
    for name, micros in per_record.items():
        print(f"{name}: {micros:.2f} µs of CPU a record (least of {args.rounds} rounds of "
              f"{args.records:,})")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"record-path-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"records": args.records, "rounds": args.rounds,
                               "seconds": seconds, "us_per_record": per_record}, indent=2))
    print(f"results: {out.relative_to(RESULTS_DIR.parent.parent)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
