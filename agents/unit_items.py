"""A unit's items, one by one, to their handler: decoded once, in turns with the event loop,
dead-lettered one by one when they fail, and cut short once the unit's outputs fill up.

This is the loop every item of every unit runs through, so it is compiled with the rest of the
hot path (:mod:`tables.native`): no async generator (mypyc compiles none), and a handler
answers ``None`` when it had nothing to wait for (nearly every item), so only the items that
wait for something (a segment definition) make a coroutine to await.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, NamedTuple, Sequence

from app.model import DecodeError, decode_envelope
from app.runtime import Runtime
from tables.json_bytes import json_bytes
from tables.unit import UnitOfWork

#: (record, partition, offset, index within the record, item). A record is faust's event or an
#: inbox's ``InRecord`` (``tables.records``): what the loop reads of it is its ``message``.
Located = tuple[Any, int, int, int, dict[str, Any]]

#: What handles an item: None once it is handled, or what to await for it to be.
Handler = Callable[[Located], "Awaitable[None] | None"]


class Resumed(NamedTuple):
    """A record a unit took part of: its items, and the index the next unit resumes at."""

    items: list[dict[str, Any]]
    start: int


#: id(event) → the record's items (or the part of them still to handle: :class:`Resumed`), or
#: why it cannot be decoded: each record is decoded once.
Decoded = dict[int, "list[dict[str, Any]] | DecodeError | Resumed"]


class Cut(NamedTuple):
    """Where a unit stopped short of the records it was given (its outputs filled up): it took
    ``records`` of them whole and the first ``items`` items of the next (0: it stopped at a
    record boundary). The next unit begins there."""

    records: int
    items: int


def rest_after(cut: Cut, events: Sequence[Any], decoded: Decoded | None
               ) -> tuple[list[Any], Decoded]:
    """What a unit that stopped at ``cut`` leaves for the next: its records from there on, and
    their decoded items, the first record resumed at the item where the unit stopped."""
    rest, decoded = list(events[cut.records:]), decoded or {}
    if not cut.items:
        return rest, decoded
    first = rest[0]
    found = decoded.get(id(first))
    items = found.items if isinstance(found, Resumed) else found
    if items is None:
        items = decode_one(first)
    assert isinstance(items, list), "only a decoded record's items can be cut"
    return rest, {**decoded, id(first): Resumed(items, cut.items)}


def decode_one(event: Any) -> "list[dict[str, Any]] | DecodeError":
    try:
        return decode_envelope(event.message.value)
    except DecodeError as exc:
        return exc


def newest_accept_ms(events: Sequence[Any], decoded: Decoded | None) -> int:
    """The latest time an item of these records counts as accepted, in milliseconds
    (``app.core.messages.accept_ms``; an item without ``received_at`` takes its record's
    time, as normalizing it does): the segment definitions written before it must all be
    known before the unit is processed (``SegmentCatalog.complete_through``)."""
    newest = 0
    for event in events:
        found = decoded.get(id(event)) if decoded is not None else None
        if found is None:
            found = decode_one(event)
        items = found.items if isinstance(found, Resumed) else found
        if not isinstance(items, list):
            continue
        record_ms = int((event.message.timestamp or 0) * 1000)
        for item in items:
            processed_at = item.get("processed_at")
            if isinstance(processed_at, int) and processed_at:
                at_ms = processed_at * 1000
            else:
                received_at = item.get("received_at")
                at_ms = received_at if isinstance(received_at, int) else record_ms
            if at_ms > newest:
                newest = at_ms
    return newest


class Taken:
    """How many items a unit was handed, and whether it may take another: a unit whose outputs
    reached ``max_outputs`` takes no further item (its first is always taken), and ``cut`` says
    where it stopped."""

    def __init__(self, unit: UnitOfWork, max_outputs: int | None) -> None:
        self.items = 0
        self.cut: Cut | None = None
        self._unit, self._max_outputs = unit, max_outputs

    def full(self) -> bool:
        max_outputs = self._max_outputs
        return self.items > 0 and max_outputs is not None and \
            len(self._unit.outputs) >= max_outputs


def items_of(rt: Runtime, unit: UnitOfWork, events: Sequence[Any],
             decoded: Decoded | None = None, taken: Taken | None = None) -> Iterator[Located]:
    """Every item of every record in the batch (those ``taken`` lets it take, from where a
    :class:`Resumed` record resumes); undecodable records are dead-lettered whole."""
    position = 0
    for event in events:
        if taken is not None and taken.full():
            taken.cut = Cut(position, 0)
            return
        message = event.message
        found = decoded.get(id(event)) if decoded is not None else None
        start = 0
        if isinstance(found, Resumed):
            start = found.start
            found = found.items
        items = found if found is not None else decode_one(event)
        if not start:  # (a record dead-lettered whole was consumed too: a replay counts on it)
            rt.counters[f"records_in:{message.topic}"] += 1
        if isinstance(items, DecodeError):
            rt.deadletter(unit, topic=message.topic, partition=message.partition,
                          offset=message.offset, key=message.key, value=message.value,
                          error=str(items))
            position += 1
            continue
        partition: int = message.partition
        offset: int = message.offset
        for index in range(start, len(items)):
            if taken is not None:
                if index > start and taken.full():
                    taken.cut = Cut(position, index)
                    return
                taken.items += 1
            yield event, partition, offset, index, items[index]
        position += 1


#: The longest a unit works between two turns it gives the event loop. A unit's work runs between
#: awaits: without turns a unit of 2,000 single-record items held HTTP requests, heartbeats and
#: the other agents for its whole length (1.2–1.9 s in the benchmark on a loaded machine). Turns
#: go by time, not by item count: an item's cost ranges from a dedup lookup to evaluating
#: hundreds of segments for a person seen for the first time (a turn every 250 items stalled the
#: loop for 6–9 s with 1,000 segments).
TURN_S = 0.05
#: The turn while the agent's previous unit commits: each step of that commit (sending its
#: outputs, then its changelog records, then writing RocksDB) waits for the event loop, so long
#: turns would stretch it by a turn a step, and the next unit would wait for it (it measured
#: 95 ms a unit for the outputs' acknowledgements alone with 50 ms turns).
HURRY_TURN_S = 0.002


async def handle_items(rt: Runtime, unit: UnitOfWork, events: Sequence[Any],
                       decoded: Decoded | None, handle: Handler, *,
                       max_outputs: int | None = None, turn_s: float = TURN_S,
                       clock: Callable[[], float] = time.monotonic) -> Cut | None:
    """Every item of a unit's records to ``handle``, letting the event loop run once ``turn_s``
    has passed since its last turn (:data:`HURRY_TURN_S` while the agent's previous unit
    commits: ``rt.state.committing()``); an item it fails on is dead-lettered with its
    provenance and the rest go on. Safe within a unit: nothing else writes the tables of this
    agent's partitions, and readers see only committed state.

    With ``max_outputs``, no item is handled once the unit holds that many outputs (the first
    always is): returns where it stopped (None: at the end), and the caller leaves the rest for
    the next unit."""
    taken = Taken(unit, max_outputs)
    hurry = rt.state.committing
    turn_ends = clock() + (HURRY_TURN_S if hurry() else turn_s)
    for located in items_of(rt, unit, events, decoded, taken):
        try:
            pending = handle(located)
            if pending is not None:
                await pending
        except Exception as exc:
            deadletter_item(rt, unit, located, exc)
        if clock() >= turn_ends:
            await asyncio.sleep(0)
            turn_ends = clock() + (HURRY_TURN_S if hurry() else turn_s)
    return taken.cut


def deadletter_item(rt: Runtime, unit: UnitOfWork, located: Located, error: Exception) -> None:
    event, partition, offset, index, item = located
    rt.deadletter(unit, topic=event.message.topic, partition=partition, offset=offset,
                  key=event.message.key, value=json_bytes(item, default=str),
                  error=f"{type(error).__name__}: {error}", index=index)
