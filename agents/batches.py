"""What every agent does around its pure step: batch, recover, decode, dead-letter, commit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Sequence

from faust.types import EventT, StreamT

from app.model import DecodeError, decode_envelope
from app.runtime import Runtime
from tables.state import UnitOfWork

#: (record, partition, offset, index within the record, item)
Located = tuple[EventT, int, int, int, dict[str, Any]]

BatchHandler = Callable[[Runtime, Sequence[EventT]], Awaitable[None]]


async def run(stream: StreamT, rt: Runtime, handle: BatchHandler) -> None:
    """The body of every agent: consume in batches, hand each to ``handle``."""
    await rt.started.wait()
    async for events in stream.take_events(rt.settings.batch_max,
                                           within=rt.settings.batch_within_s):
        await handle(rt, events)


async def recover_for(rt: Runtime, events: Sequence[EventT]) -> None:
    """Make sure the tables of every partition in the batch are caught up before use."""
    by_topic: dict[str, set[int]] = {}
    for event in events:
        by_topic.setdefault(event.message.topic, set()).add(event.message.partition)
    for topic, partitions in by_topic.items():
        await rt.state.ensure_recovered(topic, partitions)


def items_of(rt: Runtime, unit: UnitOfWork, events: Sequence[EventT]) -> Iterator[Located]:
    """Every item of every record in the batch; undecodable records are dead-lettered whole."""
    for event in events:
        message = event.message
        try:
            items = decode_envelope(message.value)
        except DecodeError as exc:
            rt.deadletter(unit, topic=message.topic, partition=message.partition,
                          offset=message.offset, key=message.key, value=message.value,
                          error=str(exc))
            continue
        rt.counters[f"records_in:{message.topic}"] += 1
        for index, item in enumerate(items):
            yield event, message.partition, message.offset, index, item


def deadletter_item(rt: Runtime, unit: UnitOfWork, located: Located, error: Exception) -> None:
    import orjson

    event, partition, offset, index, item = located
    rt.deadletter(unit, topic=event.message.topic, partition=partition, offset=offset,
                  key=event.message.key, value=orjson.dumps(item, default=str),
                  error=f"{type(error).__name__}: {error}", index=index)
