"""The segment members listing's order: whole-number ids by value, then the rest as strings."""

from __future__ import annotations

import random
from pathlib import Path

from app.queries.segments import first_members as _first_members, natural_key
from tables.store import PartitionStore


def test_natural_key_orders_numbers_by_value_then_strings() -> None:
    ids = ["10", "5", "11", "b", "007", "a10", "a9", "2", "100", "ann"]
    assert sorted(ids, key=natural_key) == [
        "2", "5", "007", "10", "11", "100", "a10", "a9", "ann", "b"]


async def test_pages_of_one_partition_follow_the_natural_order(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path / "members")
    people = [str(n) for n in range(1, 12_001)] + ["ann", "bob"]
    random.Random(7).shuffle(people)
    # Another segment's members (a prefix of this one's id) stay out of the listing.
    store.write({**{f"seg\x00{p}": 1 for p in people}, "seg2\x001": 1, "se\x003": 1}, None)
    assert await _first_members(store, "seg", None, 4) == ["1", "2", "3", "4"]
    listed: list[str] = []
    after = None
    while True:
        page = await _first_members(store, "seg", after, 1000)
        if not page:
            break
        listed.extend(page)
        after = page[-1]
    assert listed == [str(n) for n in range(1, 12_001)] + ["ann", "bob"]
