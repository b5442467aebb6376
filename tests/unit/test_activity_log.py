"""The workspace Activity Log: one worker's share from the processed-time index, and the merge of
every worker's shares into pages (newest processed first, nothing skipped or repeated, bounded
per worker)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from app.queries.activity_log import (LogQuery, Share, anonymous_share, decode_cursor, encode_cursor,
                                  identified_share, merge)
from app.core.history import Retention
from app.person_store import PersonEvents, log_order
from tests.unit.memory_tables import StateTables as Tables

RETENTION = Retention(max_events=1_000, max_age_s=0)


def activity(n: int, *, processed: int, name: str = "viewed", type_: str = "event") -> dict:
    return {"id": f"ev{n:05d}", "name": name, "type": type_, "data": {"n": n},
            "timestamp": 1_700_000_000 + n * 7 % 50, "processed_at": processed}


def stored_world(seed: int = 3, people: int = 12, events: int = 150
                 ) -> tuple[Tables, list[tuple[int, str, dict]]]:
    """Events spread over 4 partitions, processed times with many ties."""
    rng = random.Random(seed)
    tables = Tables()
    everything = []
    for n in range(events):
        person = f"p{rng.randrange(people)}"
        partition = int(person[1:]) % 4
        a = activity(n, processed=1_700_000_000 + rng.randrange(40),
                     name=rng.choice(["viewed", "bought", "a\x1fb", "a"]),
                     type_=rng.choice(["event", "event", "page"]))
        PersonEvents(tables.memory, partition, person).add(a, now_s=1_700_000_100,
                                                           retention=RETENTION)
        everything.append((partition, person, a))
    return tables, everything


def pages(tables: Tables, workers: list[list[int]], query: LogQuery, **share_options: Any
          ) -> list[list[str]]:
    """Every page of the log, as event ids, following ``next``; checks bounded shares."""
    found = []
    before = None
    for _ in range(1_000):
        q = LogQuery(type=query.type, name=query.name, customer=query.customer,
                     before=before, limit=query.limit)
        shares = [identified_share(tables, owned, q, **share_options) for owned in workers]
        assert all(len(s.entries) <= q.limit + 1 for s in shares)
        # as peers send them
        shares = [Share.from_json(s.to_json()) for s in shares]
        entries, next_key, _ = merge(shares, q.limit)
        found.append([row["id"] for _, row in entries])
        if next_key is None:
            return found
        before = decode_cursor(encode_cursor(next_key))
    raise AssertionError("paging did not end")


def expected(everything: list[tuple[int, str, dict]], **match: Any) -> list[str]:
    rows = [(log_order(person, a), a["id"]) for _, person, a in everything
            if all(a[k] == v for k, v in match.items())]
    return [event_id for _, event_id in sorted(rows, reverse=True)]


@pytest.mark.parametrize("limit", [1, 3, 10, 200])
def test_pages_over_workers_are_the_whole_log_newest_processed_first(limit: int) -> None:
    tables, everything = stored_world()
    found = pages(tables, [[0, 1], [2], [3]], LogQuery(limit=limit))
    assert [event_id for page in found for event_id in page] == expected(everything)
    assert all(len(page) == limit for page in found[:-1])


def test_rows_carry_the_person_and_both_times() -> None:
    tables, everything = stored_world(events=5)
    share = identified_share(tables, [0, 1, 2, 3], LogQuery(limit=10))
    by_id = {a["id"]: (person, a) for _, person, a in everything}
    for _, row in share.entries:
        person, a = by_id[row["id"]]
        assert row == {**{k: a[k] for k in ("id", "name", "type", "data", "timestamp",
                                             "processed_at")}, "customer_id": person}


@pytest.mark.parametrize("name", ["a", "a\x1fb", "bought", "missing"])
def test_name_filter_reads_the_names_own_keys(name: str) -> None:
    tables, everything = stored_world()
    found = pages(tables, [[0, 1], [2, 3]], LogQuery(name=name, limit=4))
    assert [event_id for page in found for event_id in page] == expected(everything, name=name)


@pytest.mark.parametrize("max_scan", [1, 5, 1_000])
def test_type_filter_with_a_bounded_scan_still_pages_through_everything(max_scan: int) -> None:
    tables, everything = stored_world()
    found = pages(tables, [[0], [1, 2], [3]], LogQuery(type="page", limit=5), max_scan=max_scan)
    assert [event_id for page in found for event_id in page] == expected(everything,
                                                                         type="page")
    assert all(len(page) <= 5 for page in found)


def test_customer_filter_reads_that_persons_history() -> None:
    tables, everything = stored_world()
    person = everything[0][1]
    partition = everything[0][0]
    found = pages(tables, [[partition], [p for p in range(4) if p != partition]],
                  LogQuery(customer=person, limit=7))
    mine = [(log_order(p, a), a["id"]) for _, p, a in everything if p == person]
    assert [event_id for page in found for event_id in page] == \
        [event_id for _, event_id in sorted(mine, reverse=True)]


def test_removed_events_leave_the_log() -> None:
    tables, everything = stored_world(events=40)
    partition, person, _ = everything[0]
    PersonEvents(tables.memory, partition, person).clear()
    found = pages(tables, [[0, 1, 2, 3]], LogQuery(limit=50))
    assert found == [[a["id"] for _, p, a in sorted(
        everything, key=lambda e: log_order(e[1], e[2]), reverse=True) if p != person]]


def test_merge_stops_at_the_highest_point_a_worker_read_to() -> None:
    a = Share([("5", {"id": "a5"}), ("3", {"id": "a3"})], examined_to="3")
    b = Share([("4", {"id": "b4"}), ("2", {"id": "b2"}), ("1", {"id": "b1"})])
    entries, next_key, complete = merge([a, b], limit=10)
    assert [row["id"] for _, row in entries] == ["a5", "b4", "a3"]
    assert next_key == "3" and complete
    entries, next_key, _ = merge([a, b], limit=2)
    assert [row["id"] for _, row in entries] == ["a5", "b4"] and next_key == "4"
    assert merge([Share([]), Share([], complete=False)], 5) == ([], None, False)


def test_anonymous_share_orders_by_received_time_and_bounds_its_scan() -> None:
    tables = Tables()
    for n in range(30):
        events = [{**activity(n * 10 + k, processed=0), "processed_at": None,
                   "received_at": (1_700_000_000 + (n * 13 + k) % 97) * 1000}
                  for k in range(3)]
        tables.memory.put("anonymous_history", n % 2, f"anon-{n:02d}",
                          {"events": events, "seen": {}})
    share = anonymous_share(tables, [0, 1], LogQuery(anonymous=True, limit=5))
    assert share.complete and len(share.entries) == 6 and share.examined_to is not None
    keys = [key for key, _ in share.entries]
    assert keys == sorted(keys, reverse=True)
    assert all(row["anonymous_id"].startswith("anon-") and row["processed_at"] is None
               for _, row in share.entries)
    bounded = anonymous_share(tables, [0, 1], LogQuery(anonymous=True, limit=5), max_ids=4)
    assert not bounded.complete
    one = anonymous_share(tables, [0, 1], LogQuery(anonymous=True, customer="anon-03",
                                                   limit=50))
    assert {row["anonymous_id"] for _, row in one.entries} == {"anon-03"}
    assert len(one.entries) == 3


def test_cursors_round_trip_and_refuse_anything_else() -> None:
    key = "001700000000\x1fpérson\x1fev1"
    assert decode_cursor(encode_cursor(key)) == key
    for bad in ("", "!!", encode_cursor("no separators")):
        with pytest.raises(ValueError):
            decode_cursor(bad)
