"""The producer's batches are the ones aiokafka's own ``BatchBuilder.append`` builds, byte for
byte: the producer writes records to the batch's C builder directly (``app.producer.
record_batches``), so a change of aiokafka's internals must fail here, not on the wire."""

from __future__ import annotations

import random

import pytest
from aiokafka.producer.message_accumulator import BatchBuilder

from app.producer import record_batches
from tables.records import OutRecord, by_partition

BATCH_BYTES = 700


def _records(count: int, seed: int) -> list[OutRecord]:
    rng = random.Random(seed)
    records = []
    for n in range(count):
        value = None if n % 17 == 5 else bytes(rng.randrange(256) for _ in range(rng.randrange(300)))
        key = None if n % 23 == 7 else f"person-{rng.randrange(50)}".encode()
        headers = [("eventide-epoch", n.to_bytes(4, "big"))] if n % 3 else []
        records.append(OutRecord(f"t{n % 2}", rng.randrange(3), key, value, headers,
                                 1_700_000_000_000 + n))
    return records


def _as_aiokafka_builds(records: list[OutRecord]) -> list[tuple[str, int, bytes, int, list[int]]]:
    """What the producer did before, with ``BatchBuilder.append``."""
    out = []
    for (topic, partition), indexes in by_partition(records).items():
        batch, members = BatchBuilder(BATCH_BYTES, 0), []
        for index in indexes:
            r = records[index]
            if batch.append(key=r.key, value=r.value, timestamp=r.timestamp_ms,
                            headers=r.headers) is None:
                out.append((topic, partition, bytes(batch._build()), batch.record_count(),
                            members))
                batch, members = BatchBuilder(BATCH_BYTES, 0), []
                batch.append(key=r.key, value=r.value, timestamp=r.timestamp_ms,
                             headers=r.headers)
            members.append(index)
        out.append((topic, partition, bytes(batch._build()), batch.record_count(), members))
    return out


def test_batches_are_byte_for_byte_aiokafkas() -> None:
    for seed in range(5):
        records = _records(400, seed)
        ours = [(topic, partition, bytes(batch._build()), batch.record_count(), members)
                for topic, partition, batch, members in record_batches(
                    records, lambda: BatchBuilder(BATCH_BYTES, 0))]
        assert len(ours) > 12  # several batches per partition: the boundaries are exercised
        assert ours == _as_aiokafka_builds(records)
        # Every record once, each partition's in order.
        assert sorted(i for *_, members in ours for i in members) == list(range(len(records)))


def test_a_record_larger_than_a_batch_is_a_batch_of_its_own() -> None:
    big = OutRecord("t", 0, b"k", b"x" * (3 * BATCH_BYTES), [], 1)
    small = OutRecord("t", 0, b"k", b"y", [], 2)
    built = [(members, batch.record_count()) for *_, batch, members in record_batches(
        [small, big, small], lambda: BatchBuilder(BATCH_BYTES, 0))]
    assert built == [([0], 1), ([1], 1), ([2], 1)]


def test_a_record_without_a_timestamp_takes_the_append_time() -> None:
    [(_, _, batch, members)] = list(record_batches(
        [OutRecord("t", 0, b"k", b"v")], lambda: BatchBuilder(BATCH_BYTES, 0)))
    assert members == [0] and batch.record_count() == 1 and batch._builder.size() > 0


def test_a_builder_that_refuses_a_first_record_is_an_error_not_a_loop() -> None:
    from app.producer import BrokerUnavailable

    class Refusing(BatchBuilder):
        def __init__(self) -> None:
            super().__init__(BATCH_BYTES, 0)
            self._builder = type("Full", (), {"append": lambda *args: None})()

    with pytest.raises(BrokerUnavailable, match="refused a record"):
        list(record_batches([OutRecord("t", 0, b"k", b"v", [], 1)], Refusing))
