"""Segment preview: each worker counts the matching people of its partitions (bounded), and the
answers are summed with one sample in the membership listing's order."""

from __future__ import annotations

import asyncio

import pytest

from app.api.responses import ApiError
from app.api.segment_preview import combine, count_matches, parse_definition
from app.core.history import Retention
from app.person_store import PersonEvents
from app.segments.evaluate import is_member
from tests.unit.memory_tables import StateTables

NOW = 1_700_000_000
RETENTION = Retention(max_events=1_000, max_age_s=0)


def world() -> tuple[StateTables, dict[str, tuple[int, dict, list]]]:
    tables = StateTables()
    people = {}
    for n in range(60):
        person = str(n)
        partition = n % 3
        events = [{"id": f"e{n}-{k}", "name": "purchased" if k % 2 else "viewed", "type": "event",
                   "data": {"total": n + k}, "timestamp": NOW - 86_400 * (n % 40) - k,
                   "processed_at": NOW} for k in range(n % 4)]
        for a in events:
            PersonEvents(tables.memory, partition, person).add(a, now_s=NOW, retention=RETENTION)
        profile = {"id": person, "attributes": {"plan": "pro" if n % 5 == 0 else "free"}}
        if n % 7 == 0:
            profile = {**profile, "merged_into": "0"} if n else profile
        if n % 11 != 3:  # a few people have events and no profile
            tables.memory.put("profiles", partition, person, profile)
        people[person] = (partition, profile if n % 11 != 3 else None, events)
    return tables, people


DEFINITION = {"match": {"any": [{"event": "purchased", "within": "30d"},
                                {"attribute": "plan", "op": "eq", "value": "pro"}]}}


def expected(people: dict[str, tuple[int, dict, list]]) -> set[str]:
    segment = parse_definition(DEFINITION)
    return {person for person, (_, profile, events) in people.items()
            if (profile or events) and not (profile or {}).get("merged_into")
            and is_member(segment, events, (profile or {}).get("attributes", {}), NOW)}


def test_workers_count_their_partitions_and_the_answers_add_up() -> None:
    tables, people = world()
    segment = parse_definition(DEFINITION)
    answers = [asyncio.run(count_matches(tables, owned, segment, NOW, sample_size=5))
               for owned in ([0], [1, 2])]
    total = combine(answers, sample_size=5)
    matching = expected(people)
    assert 0 < len(matching) < len(people)
    assert total["count"] == len(matching)
    assert total["sample"] == sorted(matching, key=int)[:5]  # natural order: 0, 5, 10, ...
    stored = [p for p, (_, profile, events) in people.items() if profile or events]
    assert total["complete"] and total["scanned"] == len(stored) < len(people)


def test_a_worker_stops_at_its_bound_and_says_so() -> None:
    tables, people = world()
    segment = parse_definition(DEFINITION)
    answer = asyncio.run(count_matches(tables, [0, 1, 2], segment, NOW, max_people=25))
    assert answer["scanned"] == 25 and not answer["complete"]
    assert answer["count"] <= len(expected(people))
    assert not combine([answer, {"count": 0, "sample": [], "scanned": 0,
                                 "complete": True}])["complete"]


def test_an_invalid_definition_names_every_mistake() -> None:
    with pytest.raises(ApiError) as raised:
        parse_definition({"match": {"all": [{"event": ""}, {"attribute": "x", "zz": 1}]}})
    assert len(raised.value.messages) >= 2
