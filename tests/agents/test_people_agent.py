"""process_people through faust's ``agent.test_context()``: no broker, real RocksDB in tmp_path.

The producer's ``send_all`` is replaced by a recorder, so the outputs and changelog writes a
commit makes are visible, and can be made to fail. ``test_context`` puts every message on
partition 0 with offsets 0, 1, 2, ... (``ag.sent_offset`` can be rewound to replay an offset,
which is what a Kafka redelivery looks like).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, AsyncIterator, Sequence

import orjson
import pytest
from ulid import ULID

from app.model import encode_envelope
from app.producer import BrokerUnavailable, OutRecord, partition_for
from app.person_store import stored_history
from app.topics import DEDUP, EVENT_NAMES, HISTORY, HISTORY_SIZE, PROFILES
from tests.agents.agent_harness import AgentHarness, OnTopic, agent_harness
from tables.changelog import UNIT_KEY, split_key
from tables.state import StateManager

NOW_S = 1_700_000_000.0
RECEIVED = 1_700_000_000_000


def ulid_at(ms: int, tail: int) -> str:
    return str(ULID.from_bytes(ms.to_bytes(6, "big") + tail.to_bytes(10, "big")))


def event(n: int, person: str = "alice", *, timestamp: int = 1_699_990_000,
          **extra: Any) -> dict[str, Any]:
    return {"op": "event", "id": ulid_at(RECEIVED - 60_000 + n, n), "name": f"e{n}",
            "type": "event", "data": {"n": n}, "timestamp": timestamp, "customer": person,
            "person": person, "received_at": RECEIVED + n, **extra}


def identify(n: int, attributes: dict[str, Any], person: str = "alice",
             **extra: Any) -> dict[str, Any]:
    return {"op": "identify", "id": ulid_at(RECEIVED - 60_000 + n, 1_000 + n), "customer": person,
            "person": person, "attributes": attributes, "anonymous_id": None, "timestamp": None,
            "update": False, "received_at": RECEIVED + n, **extra}


class Harness(AgentHarness):
    @property
    def person_topic(self) -> str:
        return self.rt.topics.person_events.name

    def changelog(self, table: str) -> str:
        return self.rt.topics.table(table).changelog_topic

    def history(self, person: str) -> list[dict[str, Any]] | None:
        return stored_history(self.rt.state.tables, 0, person) or None

    def seen(self, person: str) -> dict[str, list[int]] | None:
        """The person's dedup entries by event id (one key each: ``<person>␟<id>``)."""
        rows = self.rt.state.tables[DEDUP].store(0).range(person + "\x1f", person + "\x20")
        return {key.split("\x1f", 1)[1]: entry for key, entry in rows} or None


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    async for h in agent_harness(tmp_path, NOW_S, Harness):
        yield h



def agent_of(h: Harness) -> Any:
    """``process_people``, its test messages on ``person.events``."""
    return OnTopic(h.app.agents["process_people"], h.person_topic)


# --- history, profile, changelog -----------------------------------------------------------------


async def test_events_are_stored_in_history_in_event_time_order(harness: Harness) -> None:
    """...with processed_at: when the person stage processed them (the worker's clock)."""
    h = harness
    late, early = event(1, timestamp=1_699_990_500), event(2, timestamp=1_699_990_100)
    async with agent_of(h).test_context() as ag:
        await ag.put(encode_envelope([late, early]), key=b"alice")
        await h.settle(lambda: h.history("alice") is not None)
    stored = h.history("alice")
    assert stored == [
        {"id": early["id"], "name": "e2", "type": "event", "data": {"n": 2},
         "timestamp": 1_699_990_100, "processed_at": int(NOW_S)},
        {"id": late["id"], "name": "e1", "type": "event", "data": {"n": 1},
         "timestamp": 1_699_990_500, "processed_at": int(NOW_S)},
    ]
    seen = h.seen("alice")
    assert seen == {late["id"]: [RECEIVED + 86_400_000 * 30, 0, 0, 0],
                    early["id"]: [RECEIVED + 86_400_000 * 30, 0, 0, 1]}
    assert h.rt.state.tables[PROFILES].get(0, "alice") is None
    assert h.rt.counters["verdict:new"] == 2
    assert h.rt.counters[f"records_in:{h.person_topic}"] == 1


async def test_identify_builds_the_profile(harness: Harness) -> None:
    h = harness
    async with agent_of(h).test_context() as ag:
        await ag.put(encode_envelope([identify(1, {"plan": "free"}), event(2),
                                      identify(3, {"plan": "pro", "city": "Oslo"})]),
                     key=b"alice")
        await h.settle(lambda: h.rt.state.tables[PROFILES].get(0, "alice") is not None)
    profile = h.rt.state.tables[PROFILES].get(0, "alice")
    assert profile["id"] == "alice"
    assert profile["attributes"] == {"plan": "pro", "city": "Oslo"}
    assert [a["id"] for a in h.history("alice")] == [event(2)["id"]]


async def test_changelog_records_mirror_every_changed_table(harness: Harness) -> None:
    h = harness
    async with agent_of(h).test_context() as ag:
        await ag.put(encode_envelope([event(1), identify(2, {"plan": "pro"}),
                                      event(3, person="bob")]), key=b"alice")
        await h.settle(lambda: h.history("bob") is not None)
    # every people table shares one changelog, so a unit's writes are one ordered run
    changelog = h.changelog(DEDUP)
    assert {h.changelog(t) for t in (DEDUP, HISTORY, PROFILES)} == {changelog}
    assert changelog.endswith(".changelog.people.l2")
    records = h.sent_to(changelog)
    assert all(record.partition == 0 for record in records)
    *data, end = records
    assert end.key == UNIT_KEY, "the run ends with the unit-end record"
    assert UNIT_KEY not in [r.key for r in data]
    by_table: dict[str, list[str]] = {}
    for record in data:
        table, key = split_key(record.key)
        by_table.setdefault(table, []).append(key)
        assert orjson.loads(record.value) == h.rt.state.tables[table].get(0, key)
    assert sorted(by_table[PROFILES]) == ["alice"]
    people_of = {t: sorted({key.split("\x1f")[0] for key in by_table[t]}) for t in by_table}
    assert people_of[DEDUP] == people_of[HISTORY] == people_of[HISTORY_SIZE] == ["alice", "bob"]
    # the local copy remembers the offset of the unit's end: recovery resumes after it
    position = h.rt.state.position((changelog, 0))
    assert position.applied_to == [i for i, r in enumerate(h.sent) if r.key == UNIT_KEY][-1]


async def test_a_units_events_are_counted_by_name_once_per_name(harness: Harness) -> None:
    """The event-names index: each name's uses and latest event time (an older event keeps
    it), over units; a unit's changelog holds one record for each name it saw, whatever its
    number of events."""
    h = harness
    first = [event(1, timestamp=1_699_990_500, name="viewed"),
             event(2, timestamp=1_699_990_900, name="viewed"),
             event(3, timestamp=1_699_990_100, name="viewed", person="bob"),
             event(4, timestamp=1_699_990_200, name="bought")]
    async with agent_of(h).test_context() as ag:
        await ag.put(encode_envelope(first), key=b"alice")
        await h.settle(lambda: h.rt.state.tables[EVENT_NAMES].get(0, "bought") is not None)
        names = h.rt.state.tables[EVENT_NAMES]
        assert names.get(0, "viewed") == {"count": 3, "last_seen": 1_699_990_900}
        assert names.get(0, "bought") == {"count": 1, "last_seen": 1_699_990_200}
        written = [split_key(r.key)[1] for r in h.sent_to(h.changelog(EVENT_NAMES))
                   if r.key != UNIT_KEY and split_key(r.key)[0] == EVENT_NAMES]
        assert sorted(written) == ["bought", "viewed"]
        await ag.put(encode_envelope([event(5, timestamp=1_699_990_000, name="viewed")]),
                     key=b"alice")
        await h.settle(lambda: names.get(0, "viewed")["count"] == 4)
    assert names.get(0, "viewed") == {"count": 4, "last_seen": 1_699_990_900}
    assert names.get(0, "bought") == {"count": 1, "last_seen": 1_699_990_200}


# --- dedup ---------------------------------------------------------------------------------------


async def test_a_repeated_id_in_another_record_is_a_duplicate(harness: Harness) -> None:
    h = harness
    original = event(1)
    copy_ = dict(original, name="changed", data={"n": 999})
    async with agent_of(h).test_context() as ag:
        await ag.put(encode_envelope([original]), key=b"alice")
        await h.settle(lambda: h.history("alice") is not None)
        await ag.put(encode_envelope([copy_, event(2)]), key=b"alice")
        await h.settle(lambda: len(h.history("alice") or []) == 2)
    stored = h.history("alice")
    assert [a["id"] for a in stored] == sorted([original["id"], event(2)["id"]])
    assert next(a for a in stored if a["id"] == original["id"])["name"] == "e1"
    assert h.rt.counters["verdict:duplicate"] == 1
    assert h.rt.counters["verdict:new"] == 2
    seen = h.seen("alice")
    assert seen[original["id"]][1:] == [0, 0, 0], "the first delivery's position is kept"


async def test_a_duplicate_inside_one_record_is_dropped(harness: Harness) -> None:
    h = harness
    async with agent_of(h).test_context() as ag:
        await ag.put(encode_envelope([event(1), event(1), event(2)]), key=b"alice")
        await h.settle(lambda: h.history("alice") is not None)
    assert [a["id"] for a in h.history("alice")] == sorted([event(1)["id"], event(2)["id"]])
    assert h.rt.counters["verdict:duplicate"] == 1


async def test_a_redelivered_record_re_runs_without_double_appending(harness: Harness) -> None:
    h = harness
    record = encode_envelope([event(1), identify(2, {"plan": "pro"})])
    async with agent_of(h).test_context() as ag:
        await ag.put(record, key=b"alice")
        await h.settle(lambda: h.history("alice") is not None)
        before = (h.history("alice"), h.rt.state.tables[PROFILES].get(0, "alice"),
                  h.seen("alice"))
        changelog_before = len(h.sent)
        ag.sent_offset = 0                       # Kafka hands us offset 0 again
        await ag.put(record, key=b"alice")
        await h.settle(lambda: h.rt.counters["verdict:redelivery"] == 2)
    # history and dedup did not change, so they were not re-written
    rewritten = [r.key for r in h.sent[changelog_before:] if r.topic == h.changelog(HISTORY)]
    assert not [key for key in rewritten if key.startswith((b"history", b"dedup"))]
    after = (h.history("alice"), h.rt.state.tables[PROFILES].get(0, "alice"),
             h.seen("alice"))
    assert after == before
    assert h.rt.counters["verdict:duplicate"] == 0
    assert h.rt.counters["verdict:new"] == 2


# --- commit order --------------------------------------------------------------------------------


async def test_outputs_and_changelog_are_acknowledged_before_the_store_is_written(
    harness: Harness,
) -> None:
    h = harness
    store_seen_at_send: list[Any] = []
    h.on_send = lambda records: store_seen_at_send.append(h.history("alice"))
    h.fail_next = 1                                  # the broker is away for the first attempt
    bad = b"{not json"                               # makes an output (a dead letter)
    async with agent_of(h).test_context() as ag:
        await ag.put(bad, key=b"alice")
        await ag.put(encode_envelope([event(1)]), key=b"alice")
        await h.settle(lambda: h.history("alice") is not None)
    assert h.commits >= 1
    # every send (the failed one, outputs, changelog) saw the store still without the event
    assert len(store_seen_at_send) >= 3
    assert all(value is None for value in store_seen_at_send)
    assert [a["id"] for a in h.history("alice")] == [event(1)["id"]]
    # the dead letter (an output) went before any changelog record
    topics = [r.topic for r in h.sent]
    dead = h.rt.topics.deadletter.name
    first_changelog = next(i for i, t in enumerate(topics) if ".changelog." in t)
    assert dead in topics[:first_changelog]


async def test_state_manager_commit_writes_nothing_until_the_changelog_is_acknowledged(
    harness: Harness,
) -> None:
    h = harness
    state: StateManager = h.rt.state
    unit = state.begin()
    output = OutRecord(h.person_topic, 2, b"k", b"v")
    unit.send(output)
    unit.put(HISTORY, 0, "carol", [{"id": "X"}])
    unit.put(DEDUP, 0, "carol", {"X": [1, 0, 0, 0]})
    assert unit.get(HISTORY, 0, "carol") == [{"id": "X"}]      # the unit reads its own writes
    assert state.tables[HISTORY].get(0, "carol") is None

    # outputs acknowledged, changelog write fails: the store must be unchanged
    h.fail_next = 0
    calls_before = len(h.calls)

    def fail_changelog(records: Sequence[OutRecord]) -> None:
        if any(".changelog." in r.topic for r in records):
            h.fail_next = 1
    h.on_send = fail_changelog
    with pytest.raises(BrokerUnavailable):
        await state.commit(unit)
    assert h.calls[calls_before:] == [[output]]
    assert state.tables[HISTORY].get(0, "carol") is None
    assert state.tables[DEDUP].get(0, "carol") is None
    assert state.position((h.changelog(HISTORY), 0)).applied_to == -1

    # outputs fail: nothing at all reaches the changelog or the store
    h.on_send = None
    h.fail_next = 1
    with pytest.raises(BrokerUnavailable):
        await state.commit(unit)
    assert state.tables[HISTORY].get(0, "carol") is None

    # the retry succeeds: outputs, then changelog, then the store
    await state.commit(unit)
    assert h.calls[-2] == [output]
    assert [(r.topic, r.key) for r in h.calls[-1]] == [
        (h.changelog(HISTORY), b"history\x1fcarol"), (h.changelog(DEDUP), b"dedup\x1fcarol"),
        (h.changelog(DEDUP), UNIT_KEY)]
    assert state.tables[HISTORY].get(0, "carol") == [{"id": "X"}]
    assert state.tables[DEDUP].get(0, "carol") == {"X": [1, 0, 0, 0]}
    assert state.position((h.changelog(HISTORY), 0)).applied_to == len(h.sent) - 1


async def test_a_delete_in_a_unit_is_a_tombstone(harness: Harness) -> None:
    h = harness
    state: StateManager = h.rt.state
    unit = state.begin()
    unit.put(PROFILES, 1, "dave", {"id": "dave"})
    await state.commit(unit)
    unit = state.begin()
    unit.delete(PROFILES, 1, "dave")
    assert unit.get(PROFILES, 1, "dave") is None
    await state.commit(unit)
    [tombstone, end] = [r for r in h.calls[-1]]
    assert (tombstone.topic, tombstone.partition, tombstone.key, tombstone.value) == (
        h.changelog(PROFILES), 1, b"profiles\x1fdave", None)
    assert (end.topic, end.partition, end.key) == (h.changelog(PROFILES), 1, UNIT_KEY)
    assert state.tables[PROFILES].get(1, "dave") is None


# --- dead letters --------------------------------------------------------------------------------


async def test_an_undecodable_record_is_dead_lettered_and_the_next_is_processed(
    harness: Harness,
) -> None:
    h = harness
    async with agent_of(h).test_context() as ag:
        await ag.put(b"{not json", key=b"alice")
        await ag.put(b"[1, 2]", key=b"alice")
        await ag.put(encode_envelope([event(1)]), key=b"alice")
        await h.settle(lambda: h.history("alice") is not None)
    letters = h.sent_to(h.rt.topics.deadletter.name)
    assert len(letters) == 2
    assert [letter.value for letter in letters] == [b"{not json", b"[1, 2]"]
    for offset, letter in enumerate(letters):
        headers = dict(letter.headers)
        assert headers["origin.topic"] == h.person_topic.encode()
        assert headers["origin.partition"] == b"0"
        assert headers["origin.offset"] == str(offset).encode()
        assert "origin.index" not in headers
        assert letter.key == b"alice"
        assert letter.partition == partition_for(b"alice", h.rt.topics.deadletter.partitions)
    assert dict(letters[0].headers)["error"].startswith(b"value is not JSON")
    assert [a["id"] for a in h.history("alice")] == [event(1)["id"]]
    assert h.rt.counters["deadletters"] == 2


async def test_a_bad_item_is_dead_lettered_alone(harness: Harness) -> None:
    h = harness
    no_person = {k: v for k, v in event(1).items() if k != "person"}
    async with agent_of(h).test_context() as ag:
        await ag.put(encode_envelope([no_person, event(2)]), key=b"alice")
        await h.settle(lambda: h.history("alice") is not None)
    [letter] = h.sent_to(h.rt.topics.deadletter.name)
    headers = dict(letter.headers)
    assert headers["origin.index"] == b"0"
    assert headers["origin.offset"] == b"0"
    assert headers["error"].startswith(b"KeyError")
    assert orjson.loads(letter.value) == no_person
    assert [a["id"] for a in h.history("alice")] == [event(2)["id"]]
