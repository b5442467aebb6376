"""What a unit of work produces: records for Kafka, the partitioner's hash, and the one thing
``tables`` needs of a producer. The application's producer (``app.producer.Producer``) is passed
in; ``tables`` knows nothing of it."""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Sequence

if TYPE_CHECKING:  # (annotations only: the image's runtime has no mypy)
    from mypy_extensions import i64


@dataclass(init=False, slots=True)
class OutRecord:
    """Made per output and per changelog write (tens of thousands per unit of work): ``__init__``
    written out, ``tables.native`` "Made per item"."""

    topic: str
    partition: int
    key: bytes | None
    value: bytes | None
    #: A list: aiokafka's record builder takes no other sequence.
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    #: The record's timestamp (ms); None: the producer's clock when it is appended.
    timestamp_ms: int | None = None

    def __init__(self, topic: str, partition: int, key: bytes | None, value: bytes | None,
                 headers: list[tuple[str, bytes]] | None = None,
                 timestamp_ms: int | None = None) -> None:
        self.topic = topic
        self.partition = partition
        self.key = key
        self.value = value
        self.headers = [] if headers is None else headers
        self.timestamp_ms = timestamp_ms


class InRecord:
    """A fetched record of an agent's own topics, as the agents read it: faust's
    ``ConsumerMessage`` made of aiokafka's ``ConsumerRecord`` carried thirteen fields, two
    Python ``__init__`` calls (~2.7 µs a record on this machine) and a weak reference while it
    was tracked, for every event a producer writes as a record of its own; this is made from
    aiokafka's decoded record directly (:func:`in_records`). It is its own ``message``, so the
    handlers read it as they read a faust event (``event.message.value``)."""

    topic: str
    partition: int
    offset: int
    #: The record's timestamp in seconds, as faust's messages give it (None: none set).
    timestamp: float | None
    key: bytes | None
    value: bytes | None
    #: faust's ``TP`` of the record's partition.
    tp: Any
    #: The consumer group generation the record was fetched in.
    generation_id: int

    def __init__(self, topic: str, partition: int, tp: Any, generation_id: int, offset: int,
                 timestamp_ms: int | None, key: bytes | None, value: bytes | None) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.timestamp = None if timestamp_ms is None else timestamp_ms / 1000.0
        self.key = key
        self.value = value
        self.tp = tp
        self.generation_id = generation_id

    @property
    def message(self) -> "InRecord":
        return self

    def __repr__(self) -> str:
        return f"<InRecord {self.topic}[{self.partition}]@{self.offset}>"


def in_records(tp: Any, generation_id: int, decoded: Sequence[Any]) -> list[InRecord]:
    """aiokafka's decoded records of one partition (its C ``DefaultRecord``:
    :mod:`tables.decoded_records`) as :class:`InRecord`."""
    topic: str = tp.topic
    partition: int = tp.partition
    made: list[InRecord] = []
    for record in decoded:
        made.append(InRecord(topic, partition, tp, generation_id, record.offset,
                             record.timestamp, record.key, record.value))
    return made


class Sender(Protocol):
    async def send_all(self, records: Sequence[OutRecord]) -> list[int]:
        """Produce ``records`` and wait for every acknowledgement; their offsets, in order."""
        ...


def by_partition(records: Sequence[OutRecord]) -> dict[tuple[str, int], list[int]]:
    """(topic, partition) → the positions of its records in ``records``, in order."""
    groups: dict[tuple[str, int], list[int]] = {}
    for index, record in enumerate(records):
        groups.setdefault((record.topic, record.partition), []).append(index)
    return groups


def fill_batch(builder: Any, records: Sequence[OutRecord], indexes: list[int], start: int) -> int:
    """Append ``records[i] for i in indexes[start:]`` to ``builder``, an aiokafka record batch
    builder (its C ``DefaultRecordBatchBuilder``) holding nothing yet, until it is full; returns
    the position in ``indexes`` it stopped at (at least ``start + 1``: a builder always takes
    its first record, as aiokafka's own ``BatchBuilder.append`` relies on).

    aiokafka's ``BatchBuilder.append`` wraps this call in two Python frames per record (keyword
    arguments, a serializer check, ~0.6 µs); every output and changelog record of a unit goes
    through here (~4 an event on the peers' job)."""
    position = start
    end = len(indexes)
    while position < end:
        record = records[indexes[position]]
        if builder.append(position - start, record.timestamp_ms, record.key, record.value,
                          record.headers) is None:
            break
        position += 1
    return position


@functools.lru_cache(maxsize=64)
def _words(count: int) -> struct.Struct:
    return struct.Struct(f"<{count}I")


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``), as aiokafka's
    ``murmur2`` computes it: the 4-byte words unpacked in one call, each step masked once.
    Every new person's key meets it (``app.producer.partition_for`` caches the recent ones).
    Tested against aiokafka's on random keys.

    Compiled (:mod:`tables.native`), its arithmetic is on native 64-bit integers (``i64``):
    every product is of a 32-bit value and a 31-bit constant, so none overflows. With mypyc's
    default integers the products past 2**62 took the slow path of Python's, and the compiled
    function was no faster than the Python one (3.7 against 3.9 µs for a person id)."""
    length: i64 = len(data)
    m: i64 = 0x5BD1E995
    h: i64 = 0x9747B28C ^ length
    for word in _words(length >> 2).unpack_from(data):
        k: i64 = word
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        h = ((h * m) & 0xFFFFFFFF) ^ ((k * m) & 0xFFFFFFFF)
    rest: i64 = length & 3
    if rest:
        tail: i64 = length & ~3
        if rest == 3:
            h ^= data[tail + 2] << 16
        if rest >= 2:
            h ^= data[tail + 1] << 8
        h = ((h ^ data[tail]) * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    return h ^ (h >> 15)
