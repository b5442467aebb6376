"""What a unit of work produces: records for Kafka, and the one thing ``tables`` needs of a
producer. The application's producer (``app.producer.Producer``) is passed in; ``tables`` knows
nothing of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence


@dataclass(slots=True)  # (tens of thousands per unit of work: no __dict__ each)
class OutRecord:
    topic: str
    partition: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    #: The record's timestamp (ms); None: the producer's clock when it is appended.
    timestamp_ms: int | None = None


class Sender(Protocol):
    async def send_all(self, records: Sequence[OutRecord]) -> list[int]:
        """Produce ``records`` and wait for every acknowledgement; their offsets, in order."""
        ...
