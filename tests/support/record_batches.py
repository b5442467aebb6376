"""Record batches as a fetch response carries them, read by aiokafka's own fetcher code, for
tests of what a consumer is handed (tables.torn_fetch, tables.decoded_records) without a broker."""

from __future__ import annotations

from typing import Any, Callable

from aiokafka import TopicPartition
from aiokafka.consumer import fetcher
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords

#: (key, value, headers) of one record
Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]


def record_batch(base: int, records: list[Record]) -> bytes:
    """A record batch as a broker stores it: consecutive offsets from ``base`` (its first 8
    bytes, which the broker writes and the CRC does not cover)."""
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0,
                                        producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                        batch_size=1 << 20)
    for delta, (key, value, headers) in enumerate(records):
        builder.append(delta, timestamp=1_700_000_000_000, key=key, value=value,
                       headers=headers)
    return base.to_bytes(8, "big") + bytes(builder.build())[8:]


def partition_records(tp: TopicPartition, fetch_offset: int, *batches: bytes,
                      key_deserializer: Callable[[Any], Any] | None = None) -> Any:
    """What the fetcher makes of one fetch's ``batches`` of ``tp``: whichever
    ``PartitionRecords`` class is installed now."""
    return fetcher.PartitionRecords(tp, MemoryRecords(b"".join(batches)), [], fetch_offset,
                                    key_deserializer, None, False, fetcher.READ_UNCOMMITTED)
