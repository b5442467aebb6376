"""The customer router (inside ``process_people``) and route_anonymous through faust's
``agent.test_context()`` (no broker).

``test_context`` puts every message on partition 0 with offsets 0, 1, 2, ...; the customer
router's test messages are on ``raw.events`` (:class:`OnTopic`), route_anonymous reads two topics
and its test messages carry the topic name ``<internal>``. A customer whose id hashes to
partition 0 is at home there and taken in place; the routing tests use customers of the other
partitions.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any, AsyncIterator

import orjson
import pytest
from ulid import ULID

from app.model import decode_envelope, encode_envelope
from app.producer import OutRecord, partition_for
from app.segments.catalog import deletion_value


from app.core import routes
from app.topics import ALIASES, ANONYMOUS_HISTORY, HISTORY, PROFILES
from tables.changelog import UNIT_KEY, split_key
from tests.agents.agent_harness import AgentHarness, OnTopic, agent_harness, person_table

NOW_S = 1_700_000_000.0
RECEIVED = 1_700_000_000_000
GIVEN_ID = "01ARZ3NDEKTSV4RRFFQ69G5FAV"


class Harness(AgentHarness):
    @property
    def person_records(self) -> list[OutRecord]:
        return self.sent_to(self.rt.topics.person_events.name)

    @property
    def letters(self) -> list[OutRecord]:
        return self.sent_to(self.rt.topics.deadletter.name)

    def anonymous(self, anonymous_id: str) -> dict[str, Any] | None:
        return self.rt.state.tables[ANONYMOUS_HISTORY].get(0, anonymous_id)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    async for h in agent_harness(tmp_path, NOW_S, Harness):
        yield h



def customers_on_distinct_partitions(partitions: int = 4) -> dict[int, list[str]]:
    """Two customer ids for each partition but 0 (where the test records are)."""
    found: dict[int, list[str]] = {}
    for n in itertools.count():
        key = f"cust-{n}"
        partition = partition_for(key.encode(), partitions)
        if partition:
            found.setdefault(partition, []).append(key)
        if len(found) >= 3 and sum(len(v) >= 2 for v in found.values()) >= 3:
            return {p: v[:2] for p, v in found.items() if len(v) >= 2}
    raise AssertionError("unreachable")


def customer_at_home(n: int = 0, partitions: int = 4) -> str:
    """The ``n``-th customer id whose partition is 0: taken in place from a record there."""
    return [key for key in (f"home-{i}" for i in range(1000))
            if partition_for(key.encode(), partitions) == 0][n]


def raw_events(h: Harness) -> Any:
    return OnTopic(h.app.agents["process_people"], h.rt.topics.raw_events.name)


def customer_event(customer: str, n: int, **extra: Any) -> dict[str, Any]:
    return {"op": "event", "customer": customer, "name": f"e{n}", "data": {"n": n},
            "received_at": RECEIVED + n, **extra}


def anon_event(anonymous_id: str, n: int, **extra: Any) -> dict[str, Any]:
    return {"op": "event", "anonymous_id": anonymous_id, "name": f"a{n}", "data": {"n": n},
            "timestamp": 1_699_990_000 + n, "received_at": RECEIVED + n, **extra}


# --- the customer router -------------------------------------------------------------------------


async def test_items_are_rekeyed_to_person_events_one_record_per_destination(
    harness: Harness,
) -> None:
    h = harness
    groups = customers_on_distinct_partitions()
    customers = [c for pair in groups.values() for c in pair]
    items = [customer_event(c, i) for i, c in enumerate(customers)]
    items.append({"op": "identify", "customer": customers[0], "attributes": {"plan": "pro"},
                  "received_at": RECEIVED + 99})
    async with raw_events(h).test_context() as ag:
        await ag.put(encode_envelope(items), key=b"raw")
        await h.settle(lambda: h.commits >= 1)
    records = h.person_records
    assert sorted(r.partition for r in records) == sorted(groups)      # one per destination
    routed_all = []
    for record in records:
        routed = decode_envelope(record.value)
        assert partition_for(record.key, 4) == record.partition
        for item in routed:
            assert item["person"] == item["customer"]
            assert partition_for(item["person"].encode(), 4) == record.partition
        # submit order is kept within a destination
        expected = [c for c in customers if partition_for(c.encode(), 4) == record.partition]
        events = [it["customer"] for it in routed if it["op"] == "event"]
        assert events == expected
        routed_all.extend(routed)
    assert len(routed_all) == len(items)
    ids = [it["id"] for it in routed_all]
    assert len(set(ids)) == len(ids)
    for it in routed_all:
        assert ULID.from_str(it["id"]).milliseconds == it["received_at"]
    identify = next(it for it in routed_all if it["op"] == "identify")
    assert identify["attributes"] == {"plan": "pro"} and identify["person"] == customers[0]
    assert h.rt.counters[f"records_out:{h.rt.topics.person_events.name}"] == len(records)
    # routing keeps no state: nothing goes to a changelog
    assert not [r for r in h.sent if ".changelog." in r.topic]


async def test_a_customer_at_home_is_taken_in_place_and_the_rest_routed(harness: Harness) -> None:
    """An event, identify or delete by a person's own id on that id's partition skips
    ``person.events``: the person stage of the same unit stores it."""
    h = harness
    home = customer_at_home()
    [away, *_] = next(iter(customers_on_distinct_partitions().values()))
    items = [customer_event(home, 1),
             {"op": "identify", "customer": home, "attributes": {"plan": "pro"},
              "received_at": RECEIVED + 2},
             customer_event(away, 3),
             {"op": "identify", "customer": f"{home}@example.com", "customer_kind": "email",
              "attributes": {}, "received_at": RECEIVED + 4}]
    async with raw_events(h).test_context() as ag:
        await ag.put(encode_envelope(items), key=home.encode())
        await h.settle(lambda: h.commits >= 1)
    [routed] = h.person_records
    assert [it["customer"] for it in decode_envelope(routed.value)] == [away]
    assert h.rt.counters["routed_in_place"] == 2
    assert h.rt.counters["parked:identify"] == 1   # an email nobody has yet: it waits
    stored = person_table(h.rt.state.tables, HISTORY, 0, home)
    assert [a["name"] for a in stored] == ["e1"]
    assert person_table(h.rt.state.tables, PROFILES, 0, home)["attributes"] == {"plan": "pro"}
    # One unit wrote the people tables and committed the raw record.
    assert any(r.topic.endswith(".changelog.people.l2") for r in h.sent)


def identity_commands(h: Harness) -> Any:
    return OnTopic(h.app.agents["process_people"], h.rt.topics.identity_commands.name)


def by_email(op: str, email: str, n: int, **extra: Any) -> dict[str, Any]:
    return {"op": op, "customer": email, "customer_kind": "email", "received_at": RECEIVED + n,
            **({"name": f"e{n}"} if op == "event" else {"attributes": {"n": n}}), **extra}


async def test_an_input_by_an_email_nobody_has_yet_waits_for_its_alias(harness: Harness) -> None:
    """The identify that sets an email reaches the email's partition as an alias, a hop later
    than an input sent by that email right after it: the input waits for the alias, then goes to
    the person it names, in the order the inputs came (found on three workers:
    tests/integration/test_person_decisions.py)."""
    h = harness
    [person, *_] = next(iter(customers_on_distinct_partitions().values()))
    email = "late@x.io"
    async with raw_events(h).test_context() as ag:
        await ag.put(encode_envelope([by_email("identify", email, 1), by_email("event", email, 2)]),
                     key=email.encode())
        await h.settle(lambda: h.commits >= 1)
    assert h.rt.counters["parked:identify"] == h.rt.counters["parked:event"] == 1
    assert [key for key, _ in parked_index(h)] == [
        routes.parked_key(RECEIVED + n, f"email:{email}") for n in (1, 2)]
    assert not h.person_records and "unknown_identifier:identify" not in h.rt.counters
    aliases = h.rt.state.tables[ALIASES]
    assert [item["op"] for item in aliases.get(0, f"pending:email:{email}")] == [
        "identify", "event"]
    async with identity_commands(h).test_context() as ag:
        await ag.put(encode_envelope([{"op": "alias", "identifier": f"email:{email}",
                                       "person": person}]), key=email.encode())
        await h.settle(lambda: h.commits >= 2)
    [routed] = h.person_records
    items = decode_envelope(routed.value)
    assert [(it["op"], it["person"], it["received_at"]) for it in items] == [
        ("identify", person, RECEIVED + 1), ("event", person, RECEIVED + 2)]
    # Nothing of the wait is left: a replay in which the alias came first has the same table.
    assert aliases.get(0, f"pending:email:{email}") is None
    assert parked_index(h) == []


def parked_index(h: Harness) -> list[tuple[str, Any]]:
    aliases = h.rt.state.tables[ALIASES]
    return list(aliases.store(0).range(routes.PARKED_PREFIX, routes.PARKED_PREFIX + "~"))


async def test_an_input_whose_identifier_nobody_takes_expires_a_day_of_input_time_later(
        harness: Harness) -> None:
    """Counted ``unknown_identifier`` once inputs accepted a day later reach the partition (the
    clock is the inputs' accept time, so a replay expires what live did); an alias arriving after
    that finds nothing waiting."""
    h = harness
    [person, *_] = next(iter(customers_on_distinct_partitions().values()))
    email, day = "ghost@x.io", routes.PARK_HORIZON_MS
    aliases = h.rt.state.tables[ALIASES]
    records = [[by_email("identify", email, 1)],
               [customer_event(person, day)],        # a day after the identify: not yet
               [customer_event(person, day + 2)]]    # past it
    async with raw_events(h).test_context() as ag:
        for n, items in enumerate(records, start=1):
            await ag.put(encode_envelope(items), key=b"k")
            await h.settle(lambda n=n: h.commits >= n)  # type: ignore[misc]
            expired = h.rt.counters.get("unknown_identifier:identify", 0)
            assert expired == (n == 3), (n, expired)
            waiting = aliases.get(0, f"pending:email:{email}")
            assert (waiting is None) == (n == 3), (n, waiting)
    assert parked_index(h) == []
    async with identity_commands(h).test_context() as ag:
        await ag.put(encode_envelope([{"op": "alias", "identifier": f"email:{email}",
                                       "person": person}]), key=email.encode())
        await h.settle(lambda: h.commits >= 4)
    assert [it["op"] for r in h.person_records for it in decode_envelope(r.value)] == [
        "event", "event"]


async def test_an_item_taken_in_place_is_remembered_at_its_raw_position(harness: Harness) -> None:
    """Redelivering the raw record is a redelivery; the same id at the same partition, offset and
    index of ``person.events`` (another record) is a duplicate."""
    h = harness
    home = customer_at_home()
    item = customer_event(home, 1, id=GIVEN_ID)
    async with raw_events(h).test_context() as ag:
        await ag.put(encode_envelope([item]), key=home.encode())
        await h.settle(lambda: h.commits >= 1)
        ag.sent_offset = 0
        await ag.put(encode_envelope([item]), key=home.encode())
        await h.settle(lambda: h.commits >= 2)
    assert h.rt.counters["verdict:new"] == 1
    assert h.rt.counters["verdict:redelivery"] == 1
    routed = {**item, "customer": f"{home}@example.com", "person": home, "type": "event",
              "timestamp": RECEIVED // 1000}
    on_person_events = OnTopic(h.app.agents["process_people"], h.rt.topics.person_events.name)
    async with on_person_events.test_context() as ag:
        await ag.put(encode_envelope([routed]), key=home.encode())     # offset 0, index 0 too
        await h.settle(lambda: h.rt.counters["verdict:duplicate"] == 1)
    assert h.rt.counters["verdict:redelivery"] == 1
    assert len(person_table(h.rt.state.tables, HISTORY, 0, home)) == 1


async def test_a_redelivered_raw_record_is_routed_with_the_same_ids(harness: Harness) -> None:
    h = harness
    [customer, *_] = next(iter(customers_on_distinct_partitions().values()))
    record = encode_envelope([customer_event(customer, 1), customer_event(customer, 2)])
    async with raw_events(h).test_context() as ag:
        await ag.put(record, key=b"raw", timestamp=NOW_S)
        await h.settle(lambda: len(h.person_records) == 1)
        ag.sent_offset = 0
        await ag.put(record, key=b"raw", timestamp=NOW_S)
        await h.settle(lambda: len(h.person_records) == 2)
        await ag.put(record, key=b"raw", timestamp=NOW_S)            # a new copy, offset 1
        await h.settle(lambda: len(h.person_records) == 3)
    first, again, copy_ = (decode_envelope(r.value) for r in h.person_records)
    assert [it["id"] for it in again] == [it["id"] for it in first]
    assert again == first
    assert [it["id"] for it in copy_] != [it["id"] for it in first]


async def test_a_given_id_is_kept_and_received_at_comes_from_the_record(harness: Harness) -> None:
    h = harness
    [customer, *_] = next(iter(customers_on_distinct_partitions().values()))
    bare = {"op": "event", "customer": customer, "name": "plain", "id": GIVEN_ID.lower()}
    async with raw_events(h).test_context() as ag:
        await ag.put(orjson.dumps(bare), key=b"raw", timestamp=1_700_000_001.5)
        await h.settle(lambda: len(h.person_records) == 1)
    [routed] = decode_envelope(h.person_records[0].value)
    assert routed["id"] == GIVEN_ID
    assert routed["received_at"] == 1_700_000_001_500
    assert routed["timestamp"] == 1_700_000_001
    assert routed["person"] == customer


async def test_bad_items_are_dead_lettered_and_the_rest_routed(harness: Harness) -> None:
    h = harness
    [customer, *_] = next(iter(customers_on_distinct_partitions().values()))
    items = [{"op": "event", "customer": customer, "name": ""},
             {"op": "teleport", "customer": customer},
             customer_event(customer, 3),
             {"op": "event", "name": "no customer"}]
    async with raw_events(h).test_context() as ag:
        await ag.put(b"{not json", key=b"raw")
        await ag.put(encode_envelope(items), key=b"raw")
        await h.settle(lambda: len(h.person_records) == 1)
    [record] = h.person_records
    assert [it["name"] for it in decode_envelope(record.value)] == ["e3"]
    letters = h.letters
    assert len(letters) == 4
    headers = [dict(letter.headers) for letter in letters]
    assert [(h_["origin.offset"], h_.get("origin.index")) for h_ in headers] == [
        (b"0", None), (b"1", b"0"), (b"1", b"1"), (b"1", b"3")]
    assert letters[0].value == b"{not json"
    assert headers[1]["error"].startswith(b"BadItem: name:")
    assert b"unknown action 'teleport'" in headers[2]["error"]
    assert headers[3]["error"].startswith(b"BadItem: customer:")
    assert orjson.loads(letters[2].value) == items[1]
    assert h.rt.counters["deadletters"] == 4


# --- route_anonymous -----------------------------------------------------------------------------


async def test_anonymous_events_are_stored_without_processed_at(harness: Harness) -> None:
    h = harness
    items = [anon_event("anon-1", 2), anon_event("anon-1", 1), anon_event("anon-2", 3)]
    async with h.app.agents["route_anonymous"].test_context() as ag:
        await ag.put(encode_envelope(items), key=b"anon-1")
        await h.settle(lambda: h.anonymous("anon-2") is not None)
    one = h.anonymous("anon-1")
    assert one is not None
    assert [a["name"] for a in one["events"]] == ["a1", "a2"]          # event-time order
    assert all(a["processed_at"] is None for a in one["events"])
    assert [a["data"] for a in one["events"]] == [{"n": 1}, {"n": 2}]
    assert set(one["seen"]) == {a["id"] for a in one["events"]}
    assert sorted(entry[1:] for entry in one["seen"].values()) == [[0, 0, 0], [0, 0, 1]]
    two = h.anonymous("anon-2")
    assert [a["name"] for a in two["events"]] == ["a3"]               # type: ignore[index]
    assert h.rt.counters["anonymous_events:stored"] == 3
    # nothing goes to person.events while the events are anonymous
    assert h.person_records == []
    changelog = h.rt.topics.table(ANONYMOUS_HISTORY).changelog_topic
    data = [r for r in h.sent_to(changelog) if r.key != UNIT_KEY]
    assert sorted(r.key for r in data) == [b"anonymous_history\x1fanon-1",
                                           b"anonymous_history\x1fanon-2"]
    for record in data:
        assert orjson.loads(record.value) == h.anonymous(split_key(record.key)[1])


async def test_anonymous_duplicates_stop_and_redeliveries_re_run(harness: Harness) -> None:
    h = harness
    first = anon_event("anon-1", 1, id=GIVEN_ID)
    async with h.app.agents["route_anonymous"].test_context() as ag:
        await ag.put(encode_envelope([first]), key=b"anon-1")
        await h.settle(lambda: h.anonymous("anon-1") is not None)
        stored = h.anonymous("anon-1")
        await ag.put(encode_envelope([dict(first, name="copy")]), key=b"anon-1")
        await h.settle(lambda: h.rt.counters["verdict:duplicate"] == 1)
        ag.sent_offset = 0
        await ag.put(encode_envelope([first]), key=b"anon-1")
        await h.settle(lambda: h.commits == 3)
    assert h.anonymous("anon-1") == stored
    assert [a["name"] for a in stored["events"]] == ["a1"]          # type: ignore[index]
    assert h.rt.counters["verdict:duplicate"] == 1


async def test_an_anonymous_identify_or_missing_id_is_dead_lettered(harness: Harness) -> None:
    h = harness
    items = [{"op": "identify", "anonymous_id": "anon-1", "attributes": {}},
             {"op": "event", "customer": "c", "name": "x"},
             anon_event("anon-1", 1)]
    async with h.app.agents["route_anonymous"].test_context() as ag:
        await ag.put(encode_envelope(items), key=b"anon-1")
        await h.settle(lambda: h.anonymous("anon-1") is not None)
    headers = [dict(letter.headers) for letter in h.letters]
    assert [x["origin.index"] for x in headers] == [b"0", b"1"]
    # test_context names the topic "<internal>" for an agent reading several topics
    assert all(x["origin.topic"] == b"<internal>" for x in headers)
    assert b"only events can be anonymous" in headers[0]["error"]
    assert headers[1]["error"].startswith(b"BadItem: anonymous_id:")
    assert [a["name"] for a in h.anonymous("anon-1")["events"]] == ["a1"]  # type: ignore[index]


async def test_definitions_recorded_before_an_input_taken_in_place_are_activated_first(
        harness: Harness) -> None:
    """An item taken in place is not ordered with the ``segment`` items of ``person.events``: the
    definitions recorded by its accept time are activated before it (their items then find them
    active), and an item of an older record than the active one changes nothing."""
    h = harness
    at = int(NOW_S)
    bought = {"name": "Buyers", "match": {"event": "e1"}}
    before = {"name": "Buyers (as first defined)", "match": {"event": "e2"}}
    h.rt.catalog.apply("buyers", {"definition": before, "version": "v0", "updated_at": at}, 2,
                       at_ms=(at - 200) * 1000)
    h.rt.catalog.apply("buyers", {"definition": bought, "version": "v1", "updated_at": at}, 5,
                       at_ms=(at - 100) * 1000)
    home = customer_at_home()
    async with raw_events(h).test_context() as ag:
        await ag.put(encode_envelope([customer_event(home, 1)]), key=home.encode())
        await h.settle(lambda: h.commits >= 1)
    changes_topic = h.rt.topics.segment_changes.name

    def changes() -> list[tuple[str, str]]:
        return [(c["segment_id"], c["change"]) for c in
                (orjson.loads(r.value) for r in h.sent_to(changes_topic))]
    assert changes() == [("buyers", "entered")]
    assert h.rt.state.tables["segment_state"].get(0, "buyers") == {"version": "v1", "members": 1}
    items = [{"op": "segment", "segment": "buyers", "version": version, "offset": offset,
              "at": at - age} for version, offset, age in (("v0", 2, 200), ("v1", 5, 100))]
    on_person_events = OnTopic(h.app.agents["process_people"], h.rt.topics.person_events.name)
    async with on_person_events.test_context() as ag:
        for item in items:   # their own items, late: v0's is overtaken, v1's is active already
            await ag.put(encode_envelope([item]), key=b"segment")
        await h.settle(lambda: h.rt.counters[
            f"records_in:{h.rt.topics.person_events.name}"] == 2)
    assert changes() == [("buyers", "entered")]
    assert h.rt.state.tables["segment_state"].get(0, "buyers") == {"version": "v1", "members": 1}


@pytest.mark.parametrize("raw_behind", [True, False], ids=["replayed", "live"])
async def test_a_definition_item_ahead_of_its_partitions_raw_inputs_waits_for_them(
        harness: Harness, raw_behind: bool) -> None:
    """A replay sends a definition's item ahead of a backlog of inputs accepted before the
    definition was written; live, an input accepted a moment before it was written can reach
    raw.events after its item. Activated on arrival, the item would evaluate such inputs against
    it (each entry caused by an input); where they were stored before it, it entered the people
    itself. So the item is left while the partition's raw records are not all taken
    (replayed), or within the definition's grace (live: the partition has taken all it saw), and
    the definition is activated at the end of the first unit after both have passed, caused by
    itself: the same change either way."""
    h = harness
    behind = {"raw": raw_behind}
    h.rt.raw_behind = lambda partition: behind["raw"]
    h.rt.catalog.apply("buyers", {"definition": {"name": "Buyers", "match": {"event": "e1"}},
                                  "version": "v1", "updated_at": int(NOW_S)}, 5,
                       at_ms=RECEIVED - 50)
    on_person_events = OnTopic(h.app.agents["process_people"], h.rt.topics.person_events.name)
    async with on_person_events.test_context() as ag:
        await ag.put(encode_envelope([{"op": "segment", "segment": "buyers", "version": "v1",
                                       "offset": 5, "at": int(NOW_S)}]), key=b"segment")
        await h.settle(lambda: h.rt.counters["definitions_left_to_inputs"] == 1)
    assert h.rt.state.tables["segment_state"].get(0, "buyers") is None

    home = customer_at_home()
    async with raw_events(h).test_context() as ag:  # accepted before the definition was written
        await ag.put(encode_envelope([customer_event(home, 1, received_at=RECEIVED - 100)]),
                     key=home.encode())
        await h.settle(lambda: h.rt.counters[f"records_in:{h.rt.topics.raw_events.name}"] == 1)
    changes_topic = h.rt.topics.segment_changes.name
    assert h.sent_to(changes_topic) == []  # evaluated without it; not activated yet

    behind["raw"] = False
    tick = encode_envelope([{"op": "tick", "at": int(NOW_S)}])
    ticks_in = f"records_in:{h.rt.topics.person_events.name}"
    async with on_person_events.test_context() as ag:
        await ag.put(tick, key=b"tick")   # caught up, but within the grace: still left
        await h.settle(lambda: h.rt.counters[ticks_in] == 2)
        assert h.sent_to(changes_topic) == []
        h.rt.clock.advance(h.rt.settings.definition_grace_s)
        await ag.put(tick, key=b"tick")
        await h.settle(lambda: h.sent_to(changes_topic) != [])
    [change] = [orjson.loads(r.value) for r in h.sent_to(changes_topic)]
    assert (change["person_id"], change["change"], change["cause"]) == (
        home, "entered", "definition:v1")
    assert h.rt.state.tables["segment_state"].get(0, "buyers") == {"version": "v1", "members": 1}


async def stored_before_the_definitions(h: Harness) -> str:
    """A customer's event, accepted before the test's definitions were written, stored; the
    customer's id."""
    home = customer_at_home()
    async with raw_events(h).test_context() as ag:
        await ag.put(encode_envelope([customer_event(home, 1, received_at=RECEIVED - 100)]),
                     key=home.encode())
        await h.settle(lambda: h.rt.counters[f"records_in:{h.rt.topics.raw_events.name}"] == 1)
    return home


async def test_an_item_activated_on_arrival_first_activates_the_edits_left_before_it(
        harness: Harness) -> None:
    """A segment's first version's item was left within its grace; the edit's item arrives once
    both graces have passed and is activated on arrival. The version left is activated first, as
    a replay activates each version recorded since the active one before an input accepted after
    them: the person it enters, the edit then exits, each caused by its own version."""
    h = harness
    h.rt.raw_behind = lambda partition: False
    for version, offset, event in (("v1", 5, "e1"), ("v2", 7, "e2")):
        h.rt.catalog.apply("buyers", {"definition": {"name": "Buyers", "match": {"event": event}},
                                      "version": version, "updated_at": int(NOW_S)}, offset,
                           at_ms=RECEIVED - 50 + offset)
    home = await stored_before_the_definitions(h)
    on_person_events = OnTopic(h.app.agents["process_people"], h.rt.topics.person_events.name)
    changes_topic = h.rt.topics.segment_changes.name
    async with on_person_events.test_context() as ag:
        await ag.put(encode_envelope([{"op": "segment", "segment": "buyers", "version": "v1",
                                       "offset": 5, "at": int(NOW_S)}]), key=b"segment")
        await h.settle(lambda: h.rt.counters["definitions_left_to_inputs"] == 1)
        assert h.sent_to(changes_topic) == []
        h.rt.clock.advance(h.rt.settings.definition_grace_s + 1)
        await ag.put(encode_envelope([{"op": "segment", "segment": "buyers", "version": "v2",
                                       "offset": 7, "at": int(NOW_S)}]), key=b"segment")
        await h.settle(lambda: len(h.sent_to(changes_topic)) == 2)
    changes = [orjson.loads(r.value) for r in h.sent_to(changes_topic)]
    assert [(c["person_id"], c["change"], c["cause"]) for c in changes] == [
        (home, "entered", "definition:v1"), (home, "exited", "definition:v2")]
    assert h.rt.state.tables["segment_state"].get(0, "buyers") == {"version": "v2", "members": 0}


async def test_a_segment_created_and_deleted_within_a_grace_enters_and_exits_once(
        harness: Harness) -> None:
    """A segment created and deleted with no input of a partition between, both items left
    within their graces: once the graces have passed, the version is activated and then the
    deletion, as a replay does before an input accepted after them (and as a partition that
    activated the version at a tick did). The deletion leaves a marker, so the items coming
    again (a redelivery) change nothing: before the marker, an old version's item found nothing
    active and entered the person a second time."""
    h = harness
    h.rt.raw_behind = lambda partition: False
    h.rt.catalog.apply("buyers", {"definition": {"name": "Buyers", "match": {"event": "e1"}},
                                  "version": "v1", "updated_at": int(NOW_S)}, 5,
                       at_ms=RECEIVED - 50)
    h.rt.catalog.apply("buyers", deletion_value(), 7, at_ms=RECEIVED - 40)
    home = await stored_before_the_definitions(h)
    on_person_events = OnTopic(h.app.agents["process_people"], h.rt.topics.person_events.name)
    changes_topic = h.rt.topics.segment_changes.name
    items = [encode_envelope([{"op": "segment", "segment": "buyers", "version": version,
                               "offset": offset, "at": int(NOW_S)}])
             for version, offset in (("v1", 5), (None, 7))]
    tick = encode_envelope([{"op": "tick", "at": int(NOW_S)}])
    ticks_in = f"records_in:{h.rt.topics.person_events.name}"
    async with on_person_events.test_context() as ag:
        for item in items:
            await ag.put(item, key=b"segment")
        await h.settle(lambda: h.rt.counters["definitions_left_to_inputs"] == 2)
        assert h.sent_to(changes_topic) == []
        h.rt.clock.advance(h.rt.settings.definition_grace_s + 1)
        await ag.put(tick, key=b"tick")
        await h.settle(lambda: len(h.sent_to(changes_topic)) == 2)
        assert h.rt.state.tables["segment_state"].get(0, "buyers") == {"deleted": 7,
                                                                        "members": 0}
        for item in [*items, tick]:   # again, as after a crash
            await ag.put(item, key=b"segment")
        await h.settle(lambda: h.rt.counters[ticks_in] == 6)
    changes = [orjson.loads(r.value) for r in h.sent_to(changes_topic)]
    assert [(c["person_id"], c["change"], c["cause"]) for c in changes] == [
        (home, "entered", "definition:v1"), (home, "exited", "definition:deleted@7")]
    assert h.rt.state.tables["segment_state"].get(0, "buyers") == {"deleted": 7, "members": 0}


def defined_past_its_grace(h: Harness) -> None:
    """``buyers`` v1 (did ``e1``) recorded at offset 5, 50 ms before ``RECEIVED``, its grace
    over, and the partition's raw inputs all taken: its item is activated on arrival."""
    h.rt.raw_behind = lambda partition: False
    h.rt.catalog.apply("buyers", {"definition": {"name": "Buyers", "match": {"event": "e1"}},
                                  "version": "v1", "updated_at": int(NOW_S)}, 5,
                       at_ms=RECEIVED - 50)
    h.rt.clock.advance(h.rt.settings.definition_grace_s + 1)


async def test_an_input_reaching_its_partition_after_a_later_definition_is_counted(
        harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    """A definition's item activated on arrival (its grace passed, the raw inputs all taken),
    then an input accepted before the definition was written: it took longer than the grace to
    arrive. Live it is evaluated against the definition (the event enters the person); a replay
    activates the definition after it. The worker counts it and says so; an input accepted
    after the definition is not counted."""
    h = harness
    defined_past_its_grace(h)
    on_person_events = OnTopic(h.app.agents["process_people"], h.rt.topics.person_events.name)
    async with on_person_events.test_context() as ag:
        await ag.put(encode_envelope([{"op": "segment", "segment": "buyers", "version": "v1",
                                       "offset": 5, "at": int(NOW_S)}]), key=b"segment")
        await h.settle(lambda: h.rt.state.tables["segment_state"].get(0, "buyers") is not None)
    home = customer_at_home()
    async with raw_events(h).test_context() as ag:
        await ag.put(encode_envelope([customer_event(home, 1, received_at=RECEIVED - 100),
                                      customer_event(home, 2, received_at=RECEIVED)]),
                     key=home.encode())
        await h.settle(lambda: h.rt.counters[f"records_in:{h.rt.topics.raw_events.name}"] == 1)
    assert h.rt.counters["inputs_behind_their_definitions"] == 1
    [warning] = [r.getMessage() for r in caplog.records if "EVENTIDE_DEFINITION_GRACE_S" in
                 r.getMessage()]
    assert f"reached person.events[0] after segment buyers recorded at {RECEIVED - 50} ms" in \
        warning
    [change] = [orjson.loads(r.value) for r in h.sent_to(h.rt.topics.segment_changes.name)]
    assert (change["person_id"], change["change"]) == (home, "entered")
    assert not change["cause"].startswith("definition:")


async def test_an_item_of_a_definition_activated_from_the_inputs_counts_no_input_behind_it(
        harness: Harness) -> None:
    """A definition activated before an input accepted after it (from the catalog), then its
    item: nothing was activated on the item's arrival. An input accepted before the definition
    that arrives next is evaluated against it, as in a replay, which reads the partition's
    inputs in the same order: it is not counted."""
    h = harness
    defined_past_its_grace(h)
    home = customer_at_home()
    async with raw_events(h).test_context() as ag:   # accepted after the definition
        await ag.put(encode_envelope([customer_event(home, 1, received_at=RECEIVED)]),
                     key=home.encode())
        await h.settle(lambda: h.rt.counters[f"records_in:{h.rt.topics.raw_events.name}"] == 1)
    on_person_events = OnTopic(h.app.agents["process_people"], h.rt.topics.person_events.name)
    async with on_person_events.test_context() as ag:
        await ag.put(encode_envelope([{"op": "segment", "segment": "buyers", "version": "v1",
                                       "offset": 5, "at": int(NOW_S)}]), key=b"segment")
        await h.settle(lambda: h.rt.counters[
            f"records_in:{h.rt.topics.person_events.name}"] == 1)
    async with raw_events(h).test_context() as ag:   # accepted before it, arriving now
        await ag.put(encode_envelope([customer_event(home, 2, received_at=RECEIVED - 100)]),
                     key=home.encode())
        await h.settle(lambda: h.rt.counters[f"records_in:{h.rt.topics.raw_events.name}"] == 2)
    assert h.rt.counters["inputs_behind_their_definitions"] == 0
    assert h.rt.arrived_definitions == {}


async def test_a_grace_ending_asks_for_one_tick_of_the_workers_partitions_a_tenth_of_a_second(
        harness: Harness) -> None:
    """A definition left for its grace on a quiet partition is activated at the end of the next
    unit there; the worker asks for a tick when the grace ends, one per tenth of a second
    however many definitions' graces end in it."""
    h = harness
    topic = h.rt.topics.person_events.name
    h.rt.assigned.update({(topic, 0), (topic, 2), (h.rt.topics.raw_events.name, 0)})
    h.rt.started.set()
    assert h.rt.tick_at is not None
    now = h.rt.clock.now()
    for at_s in (now - 1.29, now - 1.25, now - 1.21):   # graces ending within one tenth
        h.rt.tick_at(at_s)
    await h.settle(lambda: len(h.calls) == 1)
    assert [(r.topic, r.partition, orjson.loads(r.value)["items"][0]["op"])
            for r in h.calls[0]] == [(topic, 0, "tick"), (topic, 2, "tick")]
    h.rt.tick_at(now + 0.3)   # a later tenth: its own tick, when it comes
    await h.settle(lambda: len(h.calls) == 2, timeout=3.0)
    await asyncio.sleep(0.2)
    assert len(h.calls) == 2
