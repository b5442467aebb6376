"""What a unit of work produces: records for Kafka, and the one thing ``tables`` needs of a
producer. The application's producer (``app.producer.Producer``) is passed in; ``tables`` knows
nothing of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence


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


class Sender(Protocol):
    async def send_all(self, records: Sequence[OutRecord]) -> list[int]:
        """Produce ``records`` and wait for every acknowledgement; their offsets, in order."""
        ...
