"""Units of work are bounded by items, whatever the backlog, and give the event loop turns by
time (issue 11: bounded units of work)."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import orjson
import pytest

from agents.batches import DecodedUnits
from agents.unit_items import HURRY_TURN_S, handle_items
from app.model import MAX_ITEMS_PER_ENVELOPE, DecodeError, decode_envelope, encode_envelope
from tests.agents.pipeline_sim import Event, Message


def record(offset: int, items: int) -> Event:
    value = encode_envelope([{"op": "event", "n": i} for i in range(items)])
    return Event(Message("t", 0, offset, b"k", value, 0.0))


def units_of(events: list[Event], max_items: int) -> list[list[Event]]:
    return [unit for unit, _, _ in DecodedUnits(events, max_items)]  # type: ignore[arg-type]


def test_records_are_grouped_into_units_of_at_most_the_bound() -> None:
    events = [record(o, n) for o, n in enumerate([300, 500, 500, 200, 900, 100, 1])]
    units = units_of(events, 1_000)
    sizes = [[len(decode_envelope(e.message.value)) for e in unit] for unit in units]
    assert sizes == [[300, 500], [500, 200], [900, 100], [1]]
    assert [e for unit in units for e in unit] == events, "every record once, in order"


def test_a_record_larger_than_the_bound_is_a_unit_of_its_own_never_split() -> None:
    events = [record(0, 10), record(1, 2_500), record(2, 10)]
    assert [[e.message.offset for e in unit] for unit in units_of(events, 1_000)] == [
        [0], [1], [2]]


def test_a_take_is_decoded_a_unit_at_a_time() -> None:
    # Each unit comes with its own records' items only, and when it comes, no record past the
    # one after it has been decoded: a take's items are never all in memory at once.
    events = [record(o, 500) for o in range(8)]
    units = DecodedUnits(events, 1_000)  # type: ignore[arg-type]
    for number, (unit, decoded, begun) in enumerate(units):
        assert not begun
        assert set(decoded) == {id(e) for e in unit}
        assert all(len(decoded[id(e)]) == 500 for e in unit)  # type: ignore[arg-type]
        assert units.records <= 2 * (number + 1) + 1
    assert (units.records, units.items) == (8, 4_000)


def test_an_undecodable_record_counts_as_one_item_and_keeps_its_reason() -> None:
    bad = Event(Message("t", 0, 0, b"k", b"{not json", 0.0))
    units = DecodedUnits([bad], 1)  # type: ignore[list-item]
    [(unit, decoded, _)] = list(units)
    assert unit == [bad] and isinstance(decoded[id(bad)], DecodeError)
    assert units.items == 1


def test_an_envelope_over_the_cap_is_refused_with_a_reason() -> None:
    value = orjson.dumps({"items": [{"op": "event"}] * (MAX_ITEMS_PER_ENVELOPE + 1)})
    with pytest.raises(DecodeError, match="split it"):
        decode_envelope(value)
    assert len(decode_envelope(orjson.dumps({"items": [{"op": "e"}] * 10}))) == 10


def test_a_take_adapts_to_the_records_sizes() -> None:
    from agents.batches import TakeLimit

    limit = TakeLimit(40, floor=40, items=2000)
    # faust compares ``buffer_size() >= max_`` at every buffered event
    assert not (39 >= limit) and (40 >= limit)
    limit.adapt(records=40, items=40)           # one event per record: take 2,000 records
    assert limit.value == 2000 and not (1999 >= limit) and (2000 >= limit)
    limit.adapt(records=2000, items=6000)       # three per record
    assert limit.value == 666
    limit.adapt(records=40, items=20_000)       # batch envelopes of 500: back to the floor
    assert limit.value == 40
    limit.adapt(records=0, items=0)             # an empty take: as if one event per record
    assert limit.value == 2000


# --- turns the event loop gets during a unit ------------------------------------------------------


async def turns_taken(costs: list[float], turn_s: float = 0.05,
                      hurry: Callable[[int], bool] = lambda handled: False) -> list[int]:
    """Run a unit's items (one a record) costing ``costs`` seconds of a fake clock through
    ``handle_items``, hurried while ``hurry(items handled so far)``; the items after which
    another task got to run."""
    from collections import Counter
    from types import SimpleNamespace

    from tables.unit import UnitOfWork

    now = [0.0]
    handled: list[int] = []
    turns: list[int] = []
    events = [record(offset, 1) for offset in range(len(costs))]
    rt = SimpleNamespace(counters=Counter(),
                         state=SimpleNamespace(committing=lambda: hurry(len(handled))))

    def handle(located: Any) -> None:
        offset = located[2]
        now[0] += costs[offset]
        handled.append(offset)

    async def another_task() -> None:
        while True:
            turns.append(len(handled))
            await asyncio.sleep(0)

    other = asyncio.ensure_future(another_task())
    await asyncio.sleep(0)
    turns.clear()
    await handle_items(rt, UnitOfWork({}, {}), events, None, handle,  # type: ignore[arg-type]
                       turn_s=turn_s, clock=lambda: now[0])
    other.cancel()
    assert handled == list(range(len(costs)))
    return sorted(set(turns))


async def test_a_unit_gives_the_loop_a_turn_each_time_its_turn_has_passed() -> None:
    # Costly items (a first-seen person evaluated against hundreds of segments): a turn after
    # every 50 ms of work, whatever the number of items.
    assert await turns_taken([0.02] * 10) == [3, 6, 9]
    assert await turns_taken([0.2, 0.001, 0.2]) == [1, 3]


async def test_cheap_items_take_no_turn_until_the_turn_has_passed() -> None:
    assert await turns_taken([0.0] * 10_000) == []
    assert await turns_taken([0.00001] * 9_000) == [5000]



async def test_turns_are_short_while_the_previous_unit_commits() -> None:
    # A commit running beside the unit needs the loop at every step: a turn every 2 ms of work
    # (every other item here) while it runs, and the normal turn once it is done (item 20).
    taken = await turns_taken([0.001] * 40, hurry=lambda handled: handled < 20)
    assert HURRY_TURN_S == 0.002
    assert len([t for t in taken if t <= 20]) >= 9 and all(t <= 23 for t in taken), taken


async def test_a_unit_takes_no_further_item_once_its_outputs_reach_the_bound() -> None:
    # Each item of these records sends 3 outputs: with a bound of 10, the unit takes items until
    # it holds 10 or more, mid-record if need be, and says where it stopped; the next unit
    # resumes that record at that item, and records are counted in once, when begun.
    from collections import Counter
    from types import SimpleNamespace

    from agents.unit_items import Cut, Resumed, rest_after
    from tables.unit import UnitOfWork

    events = [record(o, n) for o, n in enumerate([2, 1, 2, 1, 1])]
    unit = UnitOfWork({}, {})
    rt = SimpleNamespace(counters=Counter(), state=SimpleNamespace(committing=lambda: False))
    seen: list[tuple[int, int]] = []

    async def handle(located: Any) -> None:
        _, _, offset, index, item = located
        assert item["n"] == index
        seen.append((offset, index))
        unit.outputs.extend([object()] * 3)

    cut = await handle_items(rt, unit, events, None, handle,  # type: ignore[arg-type]
                             max_outputs=10)
    assert cut == Cut(2, 1) and len(unit.outputs) == 12
    assert seen == [(0, 0), (0, 1), (1, 0), (2, 0)], "items in order, record 2's first only"
    assert rt.counters["records_in:t"] == 3
    # the next unit: record 2 from its second item on, then the records after it
    unit.outputs.clear()
    seen.clear()
    rest, decoded = rest_after(cut, events, None)  # type: ignore[arg-type]
    assert rest == events[2:]
    assert decoded == {id(rest[0]): Resumed([{"op": "event", "n": 0}, {"op": "event", "n": 1}], 1)}
    assert await handle_items(rt, unit, rest, decoded, handle,  # type: ignore[arg-type]
                              max_outputs=10) is None
    assert seen == [(2, 1), (3, 0), (4, 0)]
    assert rt.counters["records_in:t"] == 5, "record 2 counted in once"
    # the first item is always taken, however many outputs it makes; a unit can stop at a
    # record boundary too
    unit.outputs.clear()
    seen.clear()
    assert await handle_items(rt, unit, events, None, handle,  # type: ignore[arg-type]
                              max_outputs=1) == Cut(0, 1)
    assert seen == [(0, 0)]
    unit.outputs.clear()
    assert await handle_items(rt, unit, events, None, handle,  # type: ignore[arg-type]
                              max_outputs=6) == Cut(1, 0)
    # without a bound, every item
    unit.outputs.clear()
    seen.clear()
    assert await handle_items(rt, unit, events, None, handle) is None  # type: ignore[arg-type]
    assert len(seen) == 7


def test_the_rest_a_unit_left_comes_next_before_the_records_after_it() -> None:
    events = [record(o, 500) for o in range(5)]
    units = DecodedUnits(events, 1_000)  # type: ignore[arg-type]
    formed: list[tuple[list[int], bool]] = []
    for unit, decoded, begun in units:
        formed.append(([e.message.offset for e in unit], begun))
        assert all(id(e) in decoded for e in unit)
        if len(unit) > 1:
            units.push_back(unit[1:], decoded)  # its outputs filled up after one record
    assert formed == [([0, 1], False), ([1], True), ([2, 3], False), ([3], True),
                      ([4], False)]
    dropped: list[list[Any]] = []
    units = DecodedUnits(events, 1_000)  # type: ignore[arg-type]
    for unit, decoded, _ in units:
        units.push_back(unit[1:], decoded)
        break  # a rebalance: the rest the unit left is untracked
    units.release_pushed_back(dropped.append)
    assert [[e.message.offset for e in rest] for rest in dropped] == [[1]]
