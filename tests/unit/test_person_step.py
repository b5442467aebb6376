"""Unit tests for app.core.person.step — the person stage as a pure function (DATAFLOW rule 2) —
and for what it decides once stored under per-event keys (:class:`app.person_store.PersonEvents`,
here over an in-memory model of a unit of work's tables)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from unittest.mock import patch
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ulid import ULID

from app.core.dedup import Verdict
from app.core.history import Retention
from app.core.person import PersonState, Policy, activity_of, step
from app import person_store
from app.person_store import PersonEvents, store_step
from tests.unit.memory_tables import MemoryTables

PERSON = "cust-1"
NOW_S = 1_700_000_000.0
POLICY = Policy(dedup_horizon_s=30 * 86_400, retention=Retention(max_age_s=0, max_events=10_000))


@dataclass
class Person:
    """A person's small state plus their stored events, advanced the way the agent does."""

    state: PersonState = field(default_factory=PersonState.empty)
    tables: MemoryTables = field(default_factory=MemoryTables)

    @property
    def stored(self) -> PersonEvents:
        return PersonEvents(self.tables, 0, PERSON)

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.stored.all()

    def seen(self, event_id: str) -> list[int] | None:
        return self.stored.seen(event_id)

    def snapshot(self) -> Any:
        # (the state's fields: a compiled frozen dataclass cannot be deep-copied itself)
        return copy.deepcopy((self.state.profile, self.state.membership, self.tables.data))


def run(person: Person, item: dict[str, Any], ref: tuple[int, int, int],
        now_s: float = NOW_S, policy: Policy = POLICY) -> tuple[Person, Verdict]:
    stored = person.stored
    result = step(person.state, PERSON, item, ref, stored.seen(item["id"]), now_s=now_s,
                  policy=policy)
    if result.verdict is not Verdict.DUPLICATE:
        store_step(stored, item["id"], result, now_s=now_s, retention=policy.retention)
        stored.finish()  # each delivery here is a unit of work of its own
    person.state = result.state
    return person, result.verdict


def ulid_at(ms: int, tail: int) -> str:
    return str(ULID.from_bytes(ms.to_bytes(6, "big") + tail.to_bytes(10, "big")))


def event(n: int, *, timestamp: int = 1_699_999_000, received_at: int = 1_700_000_000_500,
          **extra: Any) -> dict[str, Any]:
    return {"op": "event", "id": ulid_at(1_699_999_000_000 + n, n), "name": f"e{n}",
            "type": "event", "data": {"n": n}, "timestamp": timestamp, "customer": PERSON,
            "person": PERSON, "received_at": received_at, **extra}


def identify_item(n: int, attributes: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"op": "identify", "id": ulid_at(1_699_999_000_000 + n, 10_000 + n), "customer": PERSON,
            "person": PERSON, "attributes": attributes, "anonymous_id": None, "timestamp": None,
            "update": False, "received_at": 1_700_000_000_000 + n, **extra}


def test_a_new_event_is_stored_with_processed_at_from_the_person_stage_clock() -> None:
    item = event(1, received_at=1_700_000_123_999)
    person, verdict = run(Person(), item, (2, 40, 0), now_s=1_700_000_125.7)
    assert verdict is Verdict.NEW
    assert person.history == [{"id": item["id"], "name": "e1", "type": "event", "data": {"n": 1},
                               "timestamp": item["timestamp"], "processed_at": 1_700_000_125}]
    assert person.history == [activity_of(item, 1_700_000_125)]
    assert person.seen(item["id"])[1:] == [2, 40, 0]
    assert person.state.profile is None


def test_the_step_itself_only_says_what_to_store() -> None:
    item = event(1)
    result = step(PersonState.empty(), PERSON, item, (0, 3, 0), None, now_s=NOW_S, policy=POLICY)
    assert result.verdict is Verdict.NEW
    assert result.activity == activity_of(item, 1_700_000_000)
    assert result.remember is not None and result.remember[1:] == [0, 3, 0]
    again = step(PersonState.empty(), PERSON, item, (0, 4, 0), result.remember, now_s=NOW_S,
                 policy=POLICY)
    assert again.verdict is Verdict.DUPLICATE and again.activity is None


def test_a_given_processed_at_is_kept() -> None:
    item = event(1, processed_at=1_650_000_000)
    person, _ = run(Person(), item, (0, 0, 0))
    assert person.history[0]["processed_at"] == 1_650_000_000


def test_a_duplicate_changes_nothing() -> None:
    item = event(1)
    person, _ = run(Person(), item, (0, 5, 0))
    before = person.snapshot()
    state = person.state
    for other_ref in [(0, 6, 0), (0, 5, 1), (1, 5, 0)]:
        again, verdict = run(person, dict(item, name="changed"), other_ref)
        assert verdict is Verdict.DUPLICATE
        assert again.state is state
    assert person.snapshot() == before
    assert person.history[0]["name"] == "e1"


def test_a_redelivery_re_runs_idempotently() -> None:
    item = event(1)
    person, _ = run(Person(), item, (0, 5, 0))
    snapshot = person.snapshot()
    again, verdict = run(person, item, (0, 5, 0), now_s=NOW_S + 60)
    assert verdict is Verdict.REDELIVERY
    assert again.snapshot() == snapshot, "a redelivery does not move the first-delivery record"
    assert len(again.history) == 1


def test_a_redelivery_completes_what_the_first_run_did_not_persist() -> None:
    """If only the dedup entry reached the state before a crash, the redelivery appends."""
    item = event(1)
    full, _ = run(Person(), item, (0, 5, 0))
    partial = Person()
    partial.stored.remember(item["id"], full.seen(item["id"]), 0)
    again, verdict = run(partial, item, (0, 5, 0))
    assert verdict is Verdict.REDELIVERY
    assert again.history == full.history
    assert again.stored.size() == 1


def test_step_never_mutates_its_input_state() -> None:
    person, _ = run(Person(), identify_item(3, {"plan": "pro"}), (0, 2, 0))
    state = person.state
    snapshot = copy.deepcopy((state.profile, state.membership))
    step(state, PERSON, event(2), (0, 1, 0), None, now_s=NOW_S, policy=POLICY)
    step(state, PERSON, identify_item(4, {"plan": "basic"}), (0, 3, 0), None, now_s=NOW_S,
         policy=POLICY)
    assert (state.profile, state.membership) == snapshot


def test_identify_updates_only_the_profile() -> None:
    person, _ = run(Person(), event(1), (0, 0, 0))
    history = person.history
    after, verdict = run(person, identify_item(2, {"plan": "pro"}), (0, 1, 0))
    assert verdict is Verdict.NEW
    assert after.history == history
    assert after.state.profile is not None
    assert after.state.profile["id"] == PERSON
    assert after.state.profile["attributes"] == {"plan": "pro"}
    assert after.seen(event(1)["id"]) and after.seen(identify_item(2, {})["id"])


def test_an_identify_redelivery_leaves_the_profile_equal() -> None:
    item = identify_item(2, {"plan": "pro"})
    person, _ = run(Person(), item, (0, 1, 0))
    state = person.state
    again, verdict = run(person, item, (0, 1, 0))
    assert verdict is Verdict.REDELIVERY
    assert again.state == state


def test_an_event_keeps_the_profile_object() -> None:
    person, _ = run(Person(), identify_item(2, {"plan": "pro"}), (0, 1, 0))
    profile = person.state.profile
    after, _ = run(person, event(3), (0, 2, 0))
    assert after.state.profile is profile


def test_expired_dedup_entries_are_pruned_when_a_unit_remembers_a_new_id() -> None:
    item = event(1)
    person, _ = run(Person(), item, (0, 0, 0))
    expires_s = person.seen(item["id"])[0] / 1000
    later, verdict = run(person, event(2), (0, 1, 0), now_s=expires_s)
    assert verdict is Verdict.NEW
    assert later.seen(item["id"]) is None and later.seen(event(2)["id"]) is not None
    # the history is not affected by forgetting the id
    assert [a["id"] for a in later.history] == [item["id"], event(2)["id"]]


def test_an_expired_id_is_new_again_before_it_is_pruned() -> None:
    item = event(1)
    person, _ = run(Person(), item, (0, 0, 0))
    expires_s = person.seen(item["id"])[0] / 1000
    again, verdict = run(person, item, (0, 9, 0), now_s=expires_s)
    assert verdict is Verdict.NEW
    assert again.seen(item["id"])[1:] == [0, 9, 0]
    assert len(again.history) == 1, "the event is stored once all the same"


def test_retention_caps_the_history_at_the_oldest_end() -> None:
    policy = Policy(dedup_horizon_s=86_400, retention=Retention(max_age_s=0, max_events=3))
    person = Person()
    for n, ts in enumerate([50, 10, 40, 30, 20]):
        run(person, event(n, timestamp=1_699_999_000 + ts), (0, n, 0), policy=policy)
    assert [a["timestamp"] - 1_699_999_000 for a in person.history] == [30, 40, 50]
    assert person.stored.size() == 3
    assert [a["id"] for a in person.stored.named("e4", None)] == []
    assert [a["id"] for a in person.stored.named("e0", None)] == [event(0)["id"]]


def test_retention_by_age_drops_what_is_too_old_as_events_arrive() -> None:
    policy = Policy(dedup_horizon_s=86_400, retention=Retention(max_age_s=100, max_events=10))
    person = Person()
    run(person, event(1, timestamp=1_000), (0, 1, 0), now_s=1_050, policy=policy)
    run(person, event(2, timestamp=1_120), (0, 2, 0), now_s=1_150, policy=policy)
    assert [a["timestamp"] for a in person.history] == [1_120]
    assert person.stored.size() == 1


@pytest.fixture(params=["short history read whole", "read by name"])
def short_history(request: pytest.FixtureRequest) -> Iterator[None]:
    """Both ways a history is read for evaluation (whole when short, else by name) answer alike."""
    limit = person_store.SHORT_HISTORY if request.param == "short history read whole" else 0
    with patch.object(person_store, "SHORT_HISTORY", limit):
        yield


@pytest.mark.usefixtures("short_history")
def test_named_reads_one_name_from_a_window_start() -> None:
    person = Person()
    for n, ts in enumerate([100, 200, 300]):
        run(person, dict(event(n, timestamp=ts), name="viewed"), (0, n, 0))
    run(person, dict(event(7, timestamp=250), name="viewed\x1fother"), (0, 7, 0))
    assert [a["timestamp"] for a in person.stored.named("viewed", None)] == [100, 200, 300]
    assert [a["timestamp"] for a in person.stored.named("viewed", 200)] == [300]
    assert [a["timestamp"] for a in person.stored.named("viewed", 199.5)] == [200, 300]
    assert [a["timestamp"] for a in person.stored.named("missing", None)] == []


@pytest.mark.usefixtures("short_history")
def test_newest_is_read_once_per_name_and_sees_every_write_of_the_unit() -> None:
    """Conditions evaluated one after another share one read of a name's newest events; an
    event added or trimmed in the same unit is seen by the next reader."""
    person = Person()
    stored = person.stored  # one unit's view, as the person stage keeps it
    retention = Retention(max_age_s=0, max_events=4)
    for n, ts in enumerate([100, 200, 300]):
        stored.add(dict(activity_of(dict(event(n, timestamp=ts), name="viewed"), 1)),
                   now_s=NOW_S, retention=retention)
    first, second = stored.newest("viewed", None), stored.newest("viewed", 150)
    assert next(first)["timestamp"] == 300
    assert [a["timestamp"] for a in second] == [300, 200]  # interleaved readers
    assert [a["timestamp"] for a in first] == [200, 100]
    reads = person.tables.range_calls
    assert [a["timestamp"] for a in stored.newest("viewed", 250)] == [300]
    assert person.tables.range_calls == reads  # shared, not read again
    stored.add(dict(activity_of(dict(event(5, timestamp=250), name="viewed"), 1)),
               now_s=NOW_S, retention=retention)
    assert [a["timestamp"] for a in stored.newest("viewed", None)] == [300, 250, 200, 100]
    stored.add(dict(activity_of(dict(event(6, timestamp=400), name="viewed"), 1)),
               now_s=NOW_S, retention=retention)  # the cap of 4 trims the oldest
    assert [a["timestamp"] for a in stored.newest("viewed", None)] == [400, 300, 250, 200]
    stored.clear()
    assert list(stored.newest("viewed", None)) == []


def test_a_short_history_is_read_once_for_every_name_a_long_one_by_name() -> None:
    """An identify evaluates segments naming hundreds of events: a person with a few events
    costs one range read in all, not one per name."""
    retention = Retention(max_age_s=0, max_events=1_000)
    names = [f"name-{n}" for n in range(200)]
    # (history size, range reads for the first four names, then for all 200 names)
    for size, first, rest in ((3, 1, 0), (person_store.SHORT_HISTORY + 1, 4, 196)):
        person = Person()
        for n in range(size):
            person.stored.add(dict(activity_of(dict(event(n, timestamp=100 + n),
                                                    name=names[n % 3]), 1)),
                              now_s=NOW_S, retention=retention)
        stored = person.stored  # the next unit
        before = person.tables.range_calls
        assert [len(list(stored.newest(name, None))) for name in names[:4]] == [
            len(range(k, size, 3)) for k in range(3)] + [0]
        assert person.tables.range_calls - before == first
        for name in names:
            list(stored.newest(name, None))
        assert person.tables.range_calls - before == first + rest  # each name read once


def test_a_short_history_known_in_the_unit_is_kept_without_reading_it_again() -> None:
    """A person's first events need no read at all (the history was empty), and an event added
    after the read joins it in key order: the evaluation sees what a fresh read would."""
    retention = Retention(max_age_s=0, max_events=1_000)
    person = Person()
    stored = person.stored
    plan = [(300, "viewed"), (100, "viewed"), (200, "bought"), (100.5, "viewed")]
    for n, (ts, name) in enumerate(plan):
        stored.add(dict(activity_of(dict(event(n, timestamp=ts), name=name), 1)),
                   now_s=NOW_S, retention=retention)
        assert [a["timestamp"] for a in stored.named("viewed", None)] == sorted(
            t for t, name in plan[:n + 1] if name == "viewed")
    assert person.tables.range_calls == 0
    fresh = person_store.PersonEvents(person.tables, 0, stored.person)  # the next unit
    for name in ("viewed", "bought", "missing"):
        assert list(stored.newest(name, None)) == list(fresh.newest(name, None))
    assert person.tables.range_calls == 1
    fresh.add(dict(activity_of(dict(event(9, timestamp=150), name="viewed"), 1)),
              now_s=NOW_S, retention=retention)
    assert [a["timestamp"] for a in fresh.newest("viewed", 120)] == [300, 150]
    assert person.tables.range_calls == 1  # read once, then kept
    for n in range(len(plan) + 1, person_store.SHORT_HISTORY + 1):
        fresh.add(dict(activity_of(dict(event(n, timestamp=1_000 + n), name="viewed"), 1)),
                  now_s=NOW_S, retention=retention)
    assert fresh.size() == person_store.SHORT_HISTORY + 1  # past the bound: read by name
    assert [a["timestamp"] for a in fresh.newest("viewed", 1_000 + person_store.SHORT_HISTORY - 1)
            ] == [1_000 + person_store.SHORT_HISTORY]
    assert person.tables.range_calls == 2


def test_clear_removes_every_key_of_the_person() -> None:
    person = Person()
    run(person, event(1), (0, 1, 0))
    run(person, identify_item(2, {"plan": "pro"}), (0, 2, 0))
    other = PersonEvents(person.tables, 0, PERSON + "x")
    other.add(activity_of(event(3), 1), now_s=NOW_S, retention=POLICY.retention)
    person.stored.clear()
    remaining = {table: sorted(rows) for (table, _), rows in person.tables.data.items() if rows}
    other_id = event(3)["id"]
    assert remaining == {"activity_log": [f"a\x1f{1:012d}\x1f{PERSON}x\x1f{other_id}",
                                          f"n\x1fe3\x1f{1:012d}\x1f{PERSON}x\x1f{other_id}"],
                         "history": [f"{PERSON}x\x1f{1_699_999_000:012d}\x1f{event(3)['id']}"],
                         "history_by_name": [f"{PERSON}x\x1fe3\x1f{1_699_999_000:012d}"
                                             f"\x1f{event(3)['id']}"],
                         "history_size": [PERSON + "x"]}


# --- property: any interleaving of duplicates and redeliveries -----------------------------------


deliveries = st.lists(
    st.tuples(st.integers(0, 9),            # which distinct item
              st.sampled_from(["first", "redeliver", "duplicate"]),
              st.integers(0, 50)),           # event time offset
    min_size=1, max_size=50,
)


@settings(max_examples=200, deadline=None)
@given(deliveries)
def test_history_holds_each_distinct_id_exactly_once(plan: list[tuple[int, str, int]]) -> None:
    person = Person()
    first_ref: dict[int, tuple[int, int, int]] = {}
    items: dict[int, dict[str, Any]] = {}
    offset = 0
    verdicts: list[Verdict] = []
    for n, kind, ts in plan:
        if n not in items:
            items[n] = event(n, timestamp=1_699_999_000 + ts)
        if n not in first_ref or kind == "first":
            offset += 1
            ref = (0, offset, 0) if n not in first_ref else (1, offset, 0)
            first_ref.setdefault(n, ref)
        elif kind == "redeliver":
            ref = first_ref[n]
        else:
            offset += 1
            ref = (0, offset, n % 3)
        person, verdict = run(person, items[n], ref)
        verdicts.append(verdict)
        if ref != first_ref[n]:
            assert verdict is Verdict.DUPLICATE
        elif verdict is not Verdict.NEW:
            assert verdict is Verdict.REDELIVERY
    history = person.history
    history_ids = [a["id"] for a in history]
    assert len(history_ids) == len(set(history_ids))
    assert set(history_ids) == {item["id"] for item in items.values()}
    assert verdicts.count(Verdict.NEW) == len(items)
    assert [(a["timestamp"], a["id"]) for a in history] == sorted(
        (a["timestamp"], a["id"]) for a in history)
    assert person.stored.size() == len(history)


def test_pruning_forgets_at_least_as_many_expired_ids_as_a_unit_remembers() -> None:
    """A person's ids stay bounded by the horizon: each unit forgets more than it adds."""
    policy = Policy(dedup_horizon_s=10, retention=Retention(max_age_s=0, max_events=10))
    tables = MemoryTables()
    now = 1_700_000_000.0
    for unit in range(30):
        stored = PersonEvents(tables, 0, PERSON)
        for n in range(100):  # 100 new ids per unit, each unit 20 s after the last
            item = event(unit * 100 + n, received_at=int(now * 1000))
            item["id"] = ulid_at(int(now * 1000) - 50_000 + n, unit * 100 + n)
            result = step(PersonState.empty(), PERSON, item, (0, unit * 100 + n, 0), None,
                          now_s=now, policy=policy)
            store_step(stored, item["id"], result, now_s=now, retention=policy.retention)
        stored.finish()
        now += 20
    kept = tables.data[("dedup", 0)]
    assert len(kept) == 100, "only the last unit's ids are inside the 10 s horizon"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(1, 30)), min_size=1, max_size=25),
       st.integers(1, 30))
def test_a_prune_schedule_forgets_exactly_what_pruning_every_unit_forgets(
        units: list[tuple[int, int]], horizon_s: int) -> None:
    """Skipping a person's prune until its first id can expire (PruneSchedule) leaves the same
    ids as pruning at every unit, whatever the units' sizes, gaps and the horizon."""
    from app.person_store import PruneSchedule

    policy = Policy(dedup_horizon_s=horizon_s, retention=Retention(max_age_s=0, max_events=10))
    every, scheduled = MemoryTables(), MemoryTables()
    schedule = PruneSchedule()
    now = 1_700_000_000.0
    n = 0
    for gap_s, size in units:
        now += gap_s
        for tables, plan in ((every, None), (scheduled, schedule)):
            stored = PersonEvents(tables, 0, PERSON, plan)
            if plan is not None and n == 0:
                stored.first_unit()  # nothing stored before: noted without a prune
            for k in range(size):
                item = event(n + k, received_at=int(now * 1000))
                # ids out of time order too: a late event's id sorts before earlier ones
                item["id"] = ulid_at(int(now * 1000) - ((n + k) * 7919 % 60_000), n + k)
                result = step(PersonState.empty(), PERSON, item, (0, n + k, 0),
                              stored.seen(item["id"]), now_s=now, policy=policy)
                if result.verdict is not Verdict.DUPLICATE:
                    store_step(stored, item["id"], result, now_s=now,
                               retention=policy.retention)
            stored.finish()
        n += size
        assert every.data.get(("dedup", 0)) == scheduled.data.get(("dedup", 0))


def test_a_new_persons_first_unit_notes_its_earliest_expiry_without_reading_its_ids() -> None:
    """Nothing stored before: the unit's own ids are all that a prune could read, and none has
    expired, so the schedule gets the earliest expiry among them (what a prune would note) and
    the person's ids are not read by range; the next unit prunes once that time has come."""
    from app.person_store import PruneSchedule

    horizon_s = 60
    policy = Policy(dedup_horizon_s=horizon_s, retention=Retention(max_age_s=0, max_events=10))
    tables, schedule = RangeCounting(), PruneSchedule()
    now_ms = int(NOW_S * 1000)
    stored = PersonEvents(tables, 0, PERSON, schedule)
    stored.first_unit()
    ids = [ulid_at(now_ms + 30_000, 1), ulid_at(now_ms - 5_000, 2), ulid_at(now_ms, 3)]
    for n, event_id in enumerate(ids):
        item = event(n, received_at=now_ms)
        item["id"] = event_id
        result = step(PersonState.empty(), PERSON, item, (0, n, 0), None, now_s=NOW_S,
                      policy=policy)
        store_step(stored, event_id, result, now_s=NOW_S, retention=policy.retention)
    stored.finish()
    assert tables.dedup_ranges == 0
    earliest = now_ms + horizon_s * 1000  # the two ids not from the future expire first
    assert not schedule.due(0, PERSON, earliest - 1) and schedule.due(0, PERSON, earliest)

    later = PersonEvents(tables, 0, PERSON, schedule)  # a unit after they expired
    item = event(9, received_at=earliest)
    item["id"] = ulid_at(earliest, 9)
    result = step(PersonState.empty(), PERSON, item, (0, 9, 0), None, now_s=earliest / 1000,
                  policy=policy)
    store_step(later, item["id"], result, now_s=earliest / 1000, retention=policy.retention)
    later.finish()
    assert tables.dedup_ranges == 1
    assert sorted(key.split("\x1f")[1] for key in tables.data[("dedup", 0)]) == sorted(
        [ids[0], item["id"]])


class RangeCounting(MemoryTables):
    """Memory tables that count range reads of the dedup table."""

    dedup_ranges = 0

    def range(self, table: str, partition: int, start: str, stop: str, *,  # type: ignore[override]
              reverse: bool = False) -> Iterator[tuple[str, Any]]:
        if table == "dedup":
            self.dedup_ranges += 1
        return super().range(table, partition, start, stop, reverse=reverse)
