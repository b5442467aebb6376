"""``process_people``: everything keyed by person, in one agent so one writer owns each partition.

Items on ``person.events``:

* ``event`` / ``identify`` — dedup, history, profile (:func:`app.core.person.step`), then the
  segments that mention the event's name or the identify's attributes are re-evaluated;
* ``tick`` — time passed: people whose due time has come are re-evaluated (the timer index);
* ``segment`` — a definition was created, edited or deleted: everyone in the partition is
  re-evaluated against it (its initial entries, or its exits).

Evaluation time is taken from the log (the item's accept time, the tick's or the definition's
time), so re-running the same log gives the same transitions with the same change ids.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Sequence

import faust
import orjson
from faust.types import EventT

from agents.batches import Decoded, deadletter_item, items_of, recover_for, run
from app.core import dedup, history, identity, membership, profiles, triggers
from app.core.dedup import Verdict
from app.core.items import derived_id
from app.core.membership import Change
from app.core.person import PersonState, Policy, Step, step
from app.model import encode_envelope
from app.person_store import PersonEvents, store_step
from app.producer import OutRecord, partition_for
from app.runtime import Runtime
from app.segments.definition import Segment
from app.topics import (EVENT_NAMES, HISTORY_SIZE, MEMBERSHIP, PROFILES, SEGMENT_MEMBERS,
                        SEGMENT_STATE, TIMERS)
from tables.state import UnitOfWork

log = logging.getLogger(__name__)


def policy_of(rt: Runtime) -> Policy:
    settings = rt.settings
    return Policy(dedup_horizon_s=settings.dedup_horizon_s,
                  retention=history.Retention(settings.history_retention_s,
                                              settings.history_max_events))


def load_person(unit: UnitOfWork, partition: int, person: str) -> PersonState:
    return PersonState(
        profile=unit.get(PROFILES, partition, person),
        membership=unit.get(MEMBERSHIP, partition, person) or membership.empty(),
    )


def save_person(unit: UnitOfWork, partition: int, person: str, before: PersonState,
                after: PersonState) -> None:
    """Write only the values that changed (steps return the same object when unchanged); events
    and dedup ids are written as they happen, each under its own key (:mod:`app.person_store`)."""
    if after.profile is not before.profile:
        unit.put(PROFILES, partition, person, after.profile)
    if after.membership is not before.membership:
        old_due = membership.earliest_due(before.membership)
        new_due = membership.earliest_due(after.membership)
        if old_due != new_due:
            if old_due is not None:
                unit.delete(TIMERS, partition, membership.timer_key(old_due, person))
            if new_due is not None:
                unit.put(TIMERS, partition, membership.timer_key(new_due, person), 1)
        unit.put(MEMBERSHIP, partition, person, after.membership)


_ABSENT = object()

#: Bound on due times handled for one person per tick (each step moves time strictly forward).
_MAX_DUE_STEPS = 1000


class PeopleBatch:
    """One batch of ``person.events``: person states loaded once, written once at the end."""

    def __init__(self, rt: Runtime, unit: UnitOfWork) -> None:
        self.rt = rt
        self.unit = unit
        self.policy = policy_of(rt)
        self.loaded: dict[tuple[int, str], PersonState] = {}
        self.current: dict[tuple[int, str], PersonState] = {}
        self.stored: dict[tuple[int, str], PersonEvents] = {}
        self.accepted_at_ms: list[int] = []
        self.changes = 0
        #: People deleted in this batch: their keys are removed at flush, not written.
        self.deleted: set[tuple[int, str]] = set()
        #: (partition, offset, index) of the item being handled, for error reports.
        self.at: tuple[int, int | None, int | None] = (0, None, None)

    def person(self, partition: int, person: str) -> PersonState:
        slot = (partition, person)
        if slot not in self.current:
            self.loaded[slot] = self.current[slot] = load_person(self.unit, partition, person)
        return self.current[slot]

    def events(self, partition: int, person: str) -> PersonEvents:
        """The person's stored events and dedup ids (reads see this batch's writes)."""
        slot = (partition, person)
        stored = self.stored.get(slot)
        if stored is None:
            stored = self.stored[slot] = PersonEvents(self.unit, partition, person)
        return stored

    def is_new(self, partition: int, person: str, state: PersonState) -> bool:
        return state.profile is None and self.events(partition, person).size() == 0

    def apply(self, partition: int, person: str, item: dict[str, Any], result: Step) -> None:
        """Store what a step decided: the new id, the event, the profile."""
        store_step(self.events(partition, person), item["id"], result,
                   now_s=self.rt.clock.now(), retention=self.policy.retention)
        self.current[(partition, person)] = result.state

    def flush(self) -> None:
        for stored in self.stored.values():
            stored.finish()
        for (partition, person), after in self.current.items():
            save_person(self.unit, partition, person, self.loaded[(partition, person)], after)
            # Deleted, and not identified again later in this batch: remove the keys entirely.
            if (partition, person) in self.deleted and self.is_new(partition, person, after):
                for table in (PROFILES, MEMBERSHIP):
                    self.unit.delete(table, partition, person)

    # -- item kinds ----------------------------------------------------------------------------

    async def handle(self, partition: int, offset: int, index: int, item: dict[str, Any]) -> None:
        self.at = (partition, offset, index)
        op = item.get("op")
        if op in ("event", "identify", "merge_from", "absorb", "delete"):
            state = self.person(partition, item["person"])
            if op == "merge_from" and (item["into"] == item["person"] or
                                       (state.profile or {}).get("merged_into")):
                self.rt.counters["merges:repeat"] += 1  # merging twice is merging once
            elif state.profile and state.profile.get("merged_into"):
                # Someone merged away: whatever still reaches them belongs to the survivor.
                self.forward(state.profile["merged_into"], item)
            elif op == "merge_from":
                self.on_merge_from(partition, item)
            elif op == "absorb":
                self.on_absorb(partition, offset, index, item)
            elif op == "delete":
                self.on_delete(partition, item)
            else:
                self.on_input(partition, offset, index, item)
        elif op == "tick":
            self.on_tick(partition, int(item["at"]))
        elif op == "segment":
            await self.on_segment(partition, item)
        else:
            raise ValueError(f"op: unknown action {op!r}")

    def on_input(self, partition: int, offset: int, index: int, item: dict[str, Any]) -> None:
        rt = self.rt
        person = item["person"]
        before = self.person(partition, person)
        if item["op"] == "identify" and item.get("update") and before.profile is None:
            rt.counters["identify:update_of_unknown_person"] += 1  # _update never creates
            return
        now_s = int(item.get("processed_at") or int(item["received_at"]) // 1000)
        ref = (partition, offset, index)
        seen = self.events(partition, person).seen(item["id"])
        if dedup.judge(seen, ref) is Verdict.REDELIVERY:
            # This record's effects reached the state, so all its outputs were acknowledged
            # first (the commit order). Re-apply the state steps (idempotent: they complete a
            # changelog that was cut short) but evaluate and send nothing: evaluating now, against
            # a state that may have moved past this input, would invent transitions.
            self.apply(partition, person, item, step(before, person, item, ref, seen,
                                                      now_s=rt.clock.now(), policy=self.policy))
            rt.counters["verdict:redelivery"] += 1
            return
        # Time-driven changes due before this input happen first, on the history before it.
        before = self.catch_up(partition, person, before, now_s)
        self.current[(partition, person)] = before
        first_seen = self.is_new(partition, person, before)
        result = step(before, person, item, ref, seen, now_s=rt.clock.now(), policy=self.policy)
        rt.counters[f"verdict:{result.verdict.value}"] += 1
        if result.verdict is Verdict.DUPLICATE:
            return
        self.apply(partition, person, item, result)
        self.evaluate_input(partition, person, before, result.state, item, now_s, first_seen)

    def evaluate_input(self, partition: int, person: str, before: PersonState,
                       after: PersonState, item: dict[str, Any], now_s: int,
                       first_seen: bool) -> None:
        """A new input's outputs: name counts, trigger, identity commands, segment changes."""
        rt = self.rt
        if item["op"] == "event":
            self.accepted_at_ms.append(item["received_at"])
            self.count_name(partition, item["name"], item["timestamp"])
            self.trigger(partition, person, item, now_s)
            candidates = rt.catalog.segments_for_event(item["name"])
        else:
            self.announce(identity.after_identify(person, before.profile, after.profile, item))
            # Only attributes whose value this identify changed can change a verdict: the last
            # evaluation already saw the others (a repeated identify costs no evaluation).
            old, new = before.attributes, after.attributes
            changed = {name for name in item.get("attributes", {})
                       if old.get(name, _ABSENT) != new.get(name, _ABSENT)}
            candidates = rt.catalog.segments_for_attributes(changed)
        if first_seen:
            # Someone new is also in every segment that holds for a person with no data at all
            # ("has not purchased", "plan neq pro"): those mention nothing this input carries.
            candidates = candidates | rt.catalog.segments_true_when_empty()
        self.current[(partition, person)] = self.evaluate(
            partition, person, after, self.active(partition, candidates), now_s=now_s,
            cause=item["id"])

    # -- identity ------------------------------------------------------------------------------

    def announce(self, announcements: Iterable[identity.Announcement]) -> None:
        """Send identity announcements to the partitions that own each identifier."""
        topics = self.rt.topics
        for announcement in announcements:
            if isinstance(announcement, identity.Alias):
                spec, key = topics.identity_commands, announcement.key
            else:
                spec, key = topics.anonymous_links, announcement.anonymous_id
            self.unit.send(OutRecord(spec.name, partition_for(key.encode(), spec.partitions),
                                     key.encode(), encode_envelope([announcement.command])))

    def forward(self, person: str, item: dict[str, Any]) -> None:
        spec = self.rt.topics.person_events
        self.unit.send(OutRecord(spec.name, partition_for(person.encode(), spec.partitions),
                                 person.encode(), encode_envelope([{**item, "person": person}])))
        self.rt.counters["forwarded_to_survivor"] += 1

    def on_merge_from(self, partition: int, item: dict[str, Any]) -> None:
        """The secondary's side of a merge: hand everything to the primary, leave a forwarder."""
        secondary, primary = item["person"], item["into"]
        state = self.person(partition, secondary)
        stored = self.events(partition, secondary)
        at = int(item["received_at"]) // 1000
        if self.is_new(partition, secondary, state):
            # Nothing here yet: the merge may have overtaken the secondary's first input (they
            # travel on different raw topics). Leave the forwarder all the same, so what arrives
            # later for the secondary joins the primary, as it would have in the other order.
            self.rt.counters["merges:empty_secondary"] += 1
        else:
            self.forward(primary, {"op": "absorb", "id": item["id"], "from": secondary,
                                   "events": stored.all(), "profile": state.profile,
                                   "received_at": item["received_at"]})
        state = self.leave(partition, secondary, state, cause=f"merge:{item['id']}", at=at)
        self.announce(identity.after_merge_away(secondary, primary, state.profile, item["id"],
                                                at))
        stored.clear()
        self.current[(partition, secondary)] = PersonState(
            identity.merged_marker(secondary, primary, at), membership.empty())
        self.rt.counters["merges:done"] += 1

    def on_absorb(self, partition: int, offset: int, index: int, item: dict[str, Any]) -> None:
        """The primary's side of a merge: the secondary's events (deduplicated) and attributes."""
        person = item["person"]
        state = self.person(partition, person)
        stored = self.events(partition, person)
        ref = (partition, offset, index)
        now_ms = int(item["received_at"])
        for activity in item["events"]:
            seen = stored.seen(activity["id"])
            verdict = dedup.judge(seen, ref, now_ms)
            if verdict is Verdict.DUPLICATE:
                continue
            if verdict is Verdict.NEW:
                stored.remember(activity["id"], dedup.entry(
                    activity["id"], ref, now_ms=now_ms,
                    horizon_ms=self.policy.dedup_horizon_s * 1000), now_ms)
            stored.add(activity, now_s=self.rt.clock.now(), retention=self.policy.retention)
        profile = state.profile
        if item.get("profile"):
            profile = profiles.merge(profile, person, item["profile"], item["id"],
                                     now_ms // 1000)
        merged = PersonState(profile, state.membership)
        names = {activity["name"] for activity in item["events"]}
        candidates: set[str] = set()
        for name in names:
            candidates |= self.rt.catalog.segments_for_event(name)
        candidates |= self.rt.catalog.segments_for_attributes(
            set((item.get("profile") or {}).get("attributes", {})))
        self.current[(partition, person)] = self.evaluate(
            partition, person, merged, self.active(partition, candidates),
            now_s=now_ms // 1000, cause=f"merge:{item['id']}")

    def on_delete(self, partition: int, item: dict[str, Any]) -> None:
        person = item["person"]
        state = self.person(partition, person)
        at = int(item["received_at"]) // 1000
        state = self.leave(partition, person, state, cause=f"delete:{item['id']}", at=at)
        self.announce(identity.after_delete(person, state.profile, item["id"], at))
        self.events(partition, person).clear()
        self.current[(partition, person)] = PersonState(None, membership.empty())
        self.deleted.add((partition, person))
        self.rt.counters["deletes"] += 1

    def leave(self, partition: int, person: str, state: PersonState, *, cause: str,
              at: int) -> PersonState:
        """Exit every segment the person is in (merged away or deleted)."""
        members = (state.membership or membership.empty())["in"]
        return self.evaluate(partition, person, state, [(sid, None) for sid in sorted(members)],
                             now_s=at, cause=cause)

    def trigger(self, partition: int, person: str, item: dict[str, Any], now_s: int) -> None:
        """A campaign trigger for each fresh event (72-hour rule); none for imports or merges."""
        rt = self.rt
        if item.get("source") == "import":
            rt.counters["triggers:skipped_import"] += 1
            return
        if not triggers.is_fresh(item["timestamp"], now_s):
            rt.counters["triggers:skipped_stale"] += 1
            return
        record = triggers.trigger_record(item, person)
        self.unit.send(OutRecord(rt.topics.campaign_triggers.name, partition, person.encode(),
                                 orjson.dumps(record)))
        rt.counters["triggers:sent"] += 1

    def on_tick(self, partition: int, at_s: int) -> None:
        for person in self.due_people(partition, at_s):
            self.current[(partition, person)] = self.catch_up(
                partition, person, self.person(partition, person), at_s)

    def catch_up(self, partition: int, person: str, state: PersonState,
                 until_s: int) -> PersonState:
        """Apply, in due order and each at its own due time, every time-driven change up to
        ``until_s``.

        Evaluating at the due time (not the tick's) makes a change's ``at`` the moment it became
        true, and running this before any evaluation at a later time makes the sequence of changes
        independent of when ticks happen to run (a replay, which runs faster than time, gets the
        same sequence).
        """
        due = (state.membership or {}).get("due")
        if not due or min(due.values()) > until_s:
            return state  # the common case: nothing time-driven is due
        for _ in range(_MAX_DUE_STEPS):
            current = state.membership or membership.empty()
            due_now = membership.due_segments(current, until_s)
            if not due_now:
                break
            segment_id = min(due_now, key=lambda sid: (current["due"][sid], sid))
            due = current["due"][segment_id]
            state = self.evaluate(partition, person, state,
                                  self.active(partition, {segment_id}), now_s=due,
                                  cause=f"timer:{due}")
            if (state.membership or membership.empty())["due"].get(segment_id) == due:
                break  # no longer active here: leave it for the definition item
        return state

    async def on_segment(self, partition: int, item: dict[str, Any]) -> None:
        rt = self.rt
        segment_id, version = item["segment"], item.get("version")
        segment: Segment | None = None
        if version is not None:
            segment = rt.catalog.get(segment_id, version)
            if segment is None and await rt.catalog.wait_for(int(item["offset"])):
                segment = rt.catalog.get(segment_id, version)
            if segment is None:
                raise ValueError(f"segment {segment_id} version {version} is not in the catalog")
        if self.active_map(partition).get(segment_id) == version and version is not None:
            return  # already activated here (a redelivery): its changes were all sent then
        cause = f"definition:{version or 'deleted'}"
        at = int(item["at"])
        for person in sorted(self.people_in(partition)):
            # Time-driven changes due before the definition's time come first, as for inputs.
            state = self.catch_up(partition, person, self.person(partition, person), at)
            self.current[(partition, person)] = self.evaluate(
                partition, person, state, [(segment_id, segment)], now_s=at, cause=cause)
        state_key = self.unit.get(SEGMENT_STATE, partition, segment_id) or {"members": 0}
        if version is None:
            self.unit.delete(SEGMENT_STATE, partition, segment_id)
            rt.active_segments.setdefault(partition, {}).pop(segment_id, None)
        else:
            self.unit.put(SEGMENT_STATE, partition, segment_id, {**state_key, "version": version})
            self.active_map(partition)[segment_id] = version

    # -- segments ------------------------------------------------------------------------------

    def active_map(self, partition: int) -> dict[str, str]:
        """Segment id → version activated in this partition (cached; the table is the truth)."""
        active = self.rt.active_segments.get(partition)
        if active is None:
            store = self.rt.state.tables[SEGMENT_STATE].store(partition)
            active = {key: value["version"] for key, value in store.items()}
            self.rt.active_segments[partition] = active
        return active

    def active(self, partition: int, segment_ids: Iterable[str]
               ) -> list[tuple[str, Segment | None]]:
        if not segment_ids:
            return []
        active = self.active_map(partition)
        found = []
        for segment_id in sorted(segment_ids):
            version = active.get(segment_id)
            segment = None if version is None else self.rt.catalog.get(segment_id, version)
            if segment is not None:
                found.append((segment_id, segment))
        return found

    def evaluate(self, partition: int, person: str, state: PersonState,
                 segments: list[tuple[str, Segment | None]], *, now_s: int,
                 cause: str) -> PersonState:
        if not segments:
            return state
        self.rt.counters["segment_evaluations"] += len(segments)
        new_membership, changes = membership.reevaluate(
            state.membership or membership.empty(), person, segments,
            self.events(partition, person), state.attributes, now_s=now_s, cause=cause)
        for change in changes:
            self.publish(partition, change, dict(segments)[change.segment_id])
        if new_membership is state.membership:
            return state
        return PersonState(state.profile, new_membership)

    def publish(self, partition: int, change: Change, segment: Segment | None) -> None:
        rt, unit, topics = self.rt, self.unit, self.rt.topics
        members_key = f"{change.segment_id}\x00{change.person_id}"
        entered = change.change == "entered"
        if (unit.get(SEGMENT_MEMBERS, partition, members_key) is not None) == entered:
            # The members index is written with every published change, so it holds the kind of
            # the last one. Publishing the same kind again (two entered in a row) can only mean
            # the person's membership and the index disagree: state was lost or mixed. Never
            # expected; counted (/metrics must show 0) and withheld from consumers.
            rt.counters["invariant_violations"] += 1
            log.error("invariant: %s %s %s again (cause %s, change %s) at person.events[%d] "
                      "offset %s item %s; not published", change.person_id, change.change,
                      change.segment_id, change.cause, change.change_id, partition,
                      *self.at[1:])
            return
        record = change.record()
        key = change.person_id.encode()
        unit.send(OutRecord(topics.segment_changes.name, partition, key, orjson.dumps(record)))
        member_key = f"{change.segment_id}:{change.person_id}".encode()
        unit.send(OutRecord(topics.segment_membership.name, partition, member_key,
                            orjson.dumps({"segment_id": change.segment_id,
                                          "person_id": change.person_id,
                                          "since": change.at}) if entered else None))
        if entered:
            unit.put(SEGMENT_MEMBERS, partition, members_key, change.at)
        else:
            unit.delete(SEGMENT_MEMBERS, partition, members_key)
        stats = unit.get(SEGMENT_STATE, partition, change.segment_id) or {"members": 0}
        unit.put(SEGMENT_STATE, partition, change.segment_id,
                 {**stats, "members": max(0, stats.get("members", 0) + (1 if entered else -1))})
        rt.counters[f"segment_changes:{change.change}"] += 1
        self.changes += 1
        action = None if segment is None else (segment.on_enter if entered else segment.on_exit)
        if action is not None:
            self.send_event(partition, change, action.name, action.data)

    def send_event(self, partition: int, change: Change, name: str, data: dict) -> None:
        """The segment's send-event action, once per transition (its id comes from the change)."""
        topics = self.rt.topics
        event_id = derived_id(change.at * 1000, "send_event:" + change.change_id)
        item = {"op": "event", "id": event_id, "name": name, "type": "event", "data": data,
                "timestamp": change.at, "person": change.person_id,
                "received_at": change.at * 1000, "source": f"segment:{change.segment_id}"}
        self.unit.send(OutRecord(topics.person_events.name, partition,
                                 change.person_id.encode(), encode_envelope([item])))

    # -- indexes -------------------------------------------------------------------------------

    def count_name(self, partition: int, name: str, timestamp: int) -> None:
        entry = self.unit.get(EVENT_NAMES, partition, name) or {"count": 0, "last_seen": 0}
        self.unit.put(EVENT_NAMES, partition, name,
                      {"count": entry["count"] + 1, "last_seen": max(entry["last_seen"],
                                                                      timestamp)})

    def due_people(self, partition: int, at_s: int) -> list[str]:
        """People of the timer index due at or before ``at_s``, pending writes included."""
        stop = membership.timer_key(at_s + 1, "")
        keys = {key for key, _ in self.rt.state.tables[TIMERS].store(partition).range("", stop)}
        for key, value in self.unit.changes.get((TIMERS, partition), {}).items():
            if key < stop:
                (keys.add if value is not None else keys.discard)(key)
        people = {key.split(":", 1)[1] for key in keys}
        # People this batch changed: their timer keys are only written at flush.
        for (p, person), state in self.current.items():
            due = membership.earliest_due(state.membership)
            if p == partition and due is not None and due <= at_s:
                people.add(person)
        return sorted(people)

    def people_in(self, partition: int) -> set[str]:
        """Everyone with a history or a profile here: stored, or loaded by this batch."""
        people = {person for (p, person) in self.current if p == partition}
        for table in (HISTORY_SIZE, PROFILES):
            people.update(self.rt.state.tables[table].store(partition).keys())
            for key, value in self.unit.changes.get((table, partition), {}).items():
                if value is not None:
                    people.add(key)
        return people


async def process_people_batch(rt: Runtime, events: Sequence[EventT],
                               decoded: Decoded | None = None) -> None:
    await recover_for(rt, events)
    batch = PeopleBatch(rt, rt.state.begin())
    for located in items_of(rt, batch.unit, events, decoded):
        _, partition, offset, index, item = located
        try:
            await batch.handle(partition, offset, index, item)
        except Exception as exc:
            deadletter_item(rt, batch.unit, located, exc)
    batch.flush()
    await rt.commit(batch.unit)
    done_ms = rt.clock.now() * 1000
    rt.latency.observe_many((done_ms - at) / 1000 for at in batch.accepted_at_ms)


def register(app: faust.App, rt: Runtime) -> None:
    person_events = app.topic(rt.topics.person_events.name, key_type=bytes, value_type=bytes,
                              key_serializer="raw", value_serializer="raw")

    @app.agent(person_events, name="process_people")
    async def process_people(stream):  # type: ignore[no-untyped-def]
        await run(stream, rt, process_people_batch)
