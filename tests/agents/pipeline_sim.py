"""A deterministic, in-process simulation of eventide's whole dataflow, without Kafka.

Every topic partition the agents read (``raw.events``, ``raw.identifies``, ``identity.commands``,
``raw.anonymous``, ``anonymous.links``, ``person.events``) is an in-memory log with a consumer
position. A *step* hands one or more records at the head of one or more logs of the same stage
(agent) to the product's own batch handler (``route_anonymous_batch``, or ``process_people_batch``
for the identifier-keyed topics and ``person.events``, which one agent reads), exactly as faust
would after ``take_events``: the handler builds its own
``UnitOfWork`` and commits it through ``StateManager.commit`` to a fake producer. The fake producer
appends every record sent to a consumed topic to the destination log (offsets 0, 1, 2, ... per
partition, so dedup refs are real), collects dead letters, and answers changelog writes with
increasing offsets; the values and the changelog offset then land in the real RocksDB of a fresh
runtime built with ``create_app`` in a temporary directory.

Which head to take next is up to the caller: :meth:`Sim.run_schedule` follows a list of
integers (hypothesis draws them: a queue, how many records, and, with ``crashes=True``, whether
the unit crashes mid-commit and whether offsets get committed) or of topic names (hand-written
schedules for fixed examples), then :meth:`Sim.drain` empties every log in a fixed round-robin
order. A crash rewinds every log to its last committed offset, so everything since is redelivered
(the same partition, offset and index: a redelivery, as Kafka does it), possibly several units of
several stages.

:func:`summary` reads the final state back in a form independent of partition layout and timing:
surviving people (profile attributes, anonymous ids, merged_from, history without
``processed_at``), people merged away, anonymous histories still held, and which survivor every
identifier and anonymous id resolves to (through aliases, links and merge markers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from ulid import ULID

from agents import people, routing
from app.clock import ManualClock
from app.model import encode_envelope
from app.producer import OutRecord, partition_for
from app.settings import Settings
from app.topics import ALIASES, ANONYMOUS_HISTORY, ANONYMOUS_LINKS, HISTORY, PROFILES
from app.wiring import create_app
from tests.agents.agent_harness import person_tables

PARTITIONS = 4
NOW_S = 1_700_000_000
NOW_MS = NOW_S * 1000

ANONYMOUS, PEOPLE = "anonymous", "people"
STAGES = (PEOPLE, ANONYMOUS)


def ulid_at(ms: int, tail: int) -> str:
    """An event id made at ``ms`` (milliseconds), the same in every run."""
    return str(ULID.from_bytes(ms.to_bytes(6, "big") + tail.to_bytes(10, "big")))


class SimulatedCrash(Exception):
    """The worker died in the middle of a commit."""


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float


@dataclass(frozen=True)
class Event:
    """The part of a faust ``EventT`` the agents use."""
    message: Message


@dataclass
class Log:
    records: list[Message] = field(default_factory=list)
    #: Next offset the consumer hands out.
    position: int = 0
    #: Where a restarted consumer resumes.
    committed: int = 0

    @property
    def pending(self) -> int:
        return len(self.records) - self.position


class Sim:
    def __init__(self, root: Path, *, partitions: int = PARTITIONS, now_s: float = NOW_S,
                 crashes: bool = False, unit_max_outputs: int = 10_000) -> None:
        #: Whether :meth:`step` may crash units of work (redelivering their inputs).
        self.crashes = crashes
        self.clock = ManualClock(now_s)
        settings = Settings(data_dir=root, partitions=partitions, app_key="a", site_id="s",
                            api_key="k", unit_max_outputs=unit_max_outputs)
        self.app = create_app(settings, clock=self.clock)
        self.rt = rt = self.app.runtime
        self.partitions = partitions
        rt.producer.send_all = self._send_all  # type: ignore[method-assign]
        topics = rt.topics
        self.stage_topics = {
            ANONYMOUS: (topics.raw_anonymous.name, topics.anonymous_links.name),
            PEOPLE: (topics.raw_events.name, topics.raw_identifies.name,
                     topics.identity_commands.name, topics.person_events.name),
        }
        self.stage_of = {t: stage for stage, names in self.stage_topics.items() for t in names}
        self.handlers = {ANONYMOUS: routing.route_anonymous_batch,
                         PEOPLE: people.process_people_batch}
        # No broker: every table partition counts as caught up with its (empty) changelog.
        rt.state._recovered.update({(t.name, p) for t in (topics.raw_events, topics.raw_anonymous,
                                                          topics.person_events)
                                    for p in range(partitions)})
        rt.started.set()
        self.logs: dict[tuple[str, int], Log] = {
            (topic, p): Log() for topic in self.stage_of for p in range(partitions)}
        self.deadletters: list[OutRecord] = []
        self.other: list[OutRecord] = []
        self._offset = 0
        self.steps = 0
        self.crashes_done = 0

    def close(self) -> None:
        self.rt.state.close()

    # -- the fake producer --------------------------------------------------------------------

    async def _send_all(self, records: Sequence[OutRecord]) -> list[int]:
        offsets = []
        for record in records:
            if record.topic in self.stage_of:
                offsets.append(self.append(record.topic, record.partition, record.key,
                                           record.value))
                continue
            if record.topic == self.rt.topics.deadletter.name:
                self.deadletters.append(record)
            elif ".changelog." not in record.topic:
                self.other.append(record)
            self._offset += 1
            offsets.append(self._offset)
        return offsets

    def append(self, topic: str, partition: int, key: bytes | None, value: bytes | None,
               timestamp: float | None = None) -> int:
        log = self.logs[(topic, partition)]
        offset = len(log.records)
        log.records.append(Message(topic, partition, offset, key, value,
                                   self.clock.now() if timestamp is None else timestamp))
        return offset

    def send_raw(self, topic: str, key: str, items: Sequence[dict[str, Any]]) -> None:
        """What the HTTP tier does: one envelope on the key's partition of a raw topic."""
        partition = partition_for(key.encode(), self.partitions)
        self.append(topic, partition, key.encode(), encode_envelope(items),
                    timestamp=items[0]["received_at"] / 1000)

    # -- processing ---------------------------------------------------------------------------

    def pending_queues(self) -> list[tuple[str, int]]:
        return sorted(key for key, log in self.logs.items() if log.pending)

    def idle(self) -> bool:
        return not self.pending_queues()

    async def process(self, stage: str, takes: Iterable[tuple[tuple[str, int], int]],
                      crash: str | None = None, commit: bool = True) -> None:
        """One unit of work of ``stage``: ``n`` head records from each listed queue.

        ``commit``: afterwards the consumer commits every queue's position (faust commits
        offsets periodically, not per unit, so a unit may end uncommitted).
        ``crash``: ``"before_state"`` — the worker dies after the unit's outputs are acknowledged
        (step 1 of the commit order) but before its changelog and RocksDB writes; ``"before_ack"``
        — it dies after the store is written but before the inputs are committed. Either way
        every queue goes back to its last committed position and is redelivered from there, which
        can re-run several units already processed, of any stage.
        """
        events = []
        for queue, n in takes:
            assert self.stage_of[queue[0]] == stage
            log = self.logs[queue]
            taken = log.records[log.position:log.position + n]
            log.position += len(taken)
            events.extend(Event(message) for message in taken)
        if not events:
            return
        self.steps += 1
        if crash == "before_state":
            state = self.rt.state
            original = state.commit

            async def outputs_then_crash(unit: Any) -> None:
                await self._send_all(unit.outputs)
                raise SimulatedCrash

            state.commit = outputs_then_crash  # type: ignore[method-assign]
            try:
                await self.handlers[stage](self.rt, events)
            except SimulatedCrash:
                pass
            else:
                raise AssertionError("the unit of work did not commit")
            finally:
                state.commit = original  # type: ignore[method-assign]
        else:
            await self.handlers[stage](self.rt, events)
        if crash is not None:
            self.crashes_done += 1
            for log in self.logs.values():
                log.position = log.committed
        elif commit:
            for log in self.logs.values():
                log.committed = log.position

    async def step(self, choice: int) -> bool:
        """One scheduling decision from an integer; False once every queue is empty.

        ``choice % len(pending)`` picks a queue; the quotient ``q`` picks how much to take:
        ``q % 4`` of 0-2 is 1-3 records from it, 3 the head record of every pending queue of that
        queue's stage together in one unit (faust's batches span partitions and topics). With
        ``crashes`` on, ``r = q // 4`` picks the unit's end: ``r % 6`` of 4 or 5 crashes it (see
        :meth:`process`), else its offsets are committed unless ``r // 6 % 3 == 0``.
        """
        pending = self.pending_queues()
        if not pending:
            return False
        queue = pending[choice % len(pending)]
        stage = self.stage_of[queue[0]]
        q = choice // len(pending)
        mode, r = q % 4, q // 4
        crash, commit = None, True
        if self.crashes:
            crash = {4: "before_state", 5: "before_ack"}.get(r % 6)
            commit = r // 6 % 3 != 0
        if mode == 3:
            takes = [(q_, 1) for q_ in pending if self.stage_of[q_[0]] == stage]
        else:
            takes = [(queue, mode + 1)]
        await self.process(stage, takes, crash, commit)
        return True

    async def step_topic(self, name: str) -> bool:
        """One record from the first pending queue of a topic named by its suffix
        (``"raw.identifies"``, or ``"raw.identifies@3"`` for partition 3); False if none."""
        suffix, _, partition = name.partition("@")
        for queue in self.pending_queues():
            topic, p = queue
            if topic.endswith("." + suffix) and (not partition or p == int(partition)):
                await self.process(self.stage_of[topic], [(queue, 1)])
                return True
        return False

    async def run_schedule(self, schedule: Sequence[int | str]) -> None:
        """Follow ``schedule`` (integers for :meth:`step`, topic names for :meth:`step_topic`,
        which are skipped when that topic has nothing pending, ``"settle"`` to drain every
        internal topic but leave raw records waiting), then drain in the fixed order."""
        for choice in schedule:
            if choice == "settle":
                await self.drain(raw=False)
            elif isinstance(choice, str):
                await self.step_topic(choice)
            elif not await self.step(choice):
                return
        await self.drain()

    def is_raw(self, topic: str) -> bool:
        return topic in {t.name for t in self.rt.topics.raw}

    async def drain(self, limit: int = 100_000, *, raw: bool = True) -> None:
        """Until every log (every internal log, with ``raw=False``) is empty: each stage in turn,
        each of its queues one record at a time."""
        for _ in range(limit):
            queues = [q for q in self.pending_queues() if raw or not self.is_raw(q[0])]
            if not queues:
                return
            for stage in STAGES:
                for queue in queues:
                    if self.stage_of[queue[0]] == stage and self.logs[queue].pending:
                        await self.process(stage, [(queue, 1)])
        raise AssertionError("the pipeline did not drain (a forwarding loop?)")

    # -- reading the stores -------------------------------------------------------------------

    def table_items(self, table: str) -> dict[tuple[int, str], Any]:
        found = {}
        for p in range(self.partitions):
            for key, value in person_tables(self.rt.state.tables, table, p).items():
                found[(p, key)] = value
        return found


def _activity(activity: dict[str, Any]) -> tuple:
    """What of a stored event must not depend on order (``processed_at`` does, by design)."""
    return (activity["id"], activity["name"], activity["type"],
            tuple(sorted(activity["data"].items())), activity["timestamp"])


def summary(sim: Sim, identifiers: Iterable[tuple[str, str]] = (),
            anonymous_ids: Iterable[str] = ()) -> dict[str, Any]:
    """The final state, independent of partition layout and processing order."""
    profiles = {key: value for (_, key), value in sim.table_items(PROFILES).items()}
    histories = {key: value for (_, key), value in sim.table_items(HISTORY).items()}
    merged = {pid: prof["merged_into"] for pid, prof in profiles.items()
              if prof.get("merged_into")}
    survivors = {}
    for pid in sorted(set(profiles) | set(histories)):
        if pid in merged:
            assert not histories.get(pid), f"{pid} was merged away but keeps a history"
            continue
        profile = profiles.get(pid)
        history = histories.get(pid) or []
        if profile is None and not history:
            continue
        survivors[pid] = {
            "attributes": None if profile is None else profile["attributes"],
            "anonymous_ids": None if profile is None else profile["anonymous_ids"],
            "merged_from": None if profile is None else profile.get("merged_from", []),
            "history": [_activity(a) for a in history],
        }

    def survivor(person: str | None) -> str | None:
        seen = set()
        while person is not None and person in merged:
            assert person not in seen, f"merge markers form a cycle at {person}"
            seen.add(person)
            person = merged[person]
        return person

    resolves = {}
    for kind, value in identifiers:
        resolves[f"{kind}:{value}"] = survivor(sim.rt.resolve_person(value, kind))
    links = {key: value for (_, key), value in sim.table_items(ANONYMOUS_LINKS).items()}
    for anonymous_id in anonymous_ids:
        resolves[f"anonymous:{anonymous_id}"] = survivor(links.get(anonymous_id))
    anonymous = {key: sorted(_activity(a) for a in value["events"])
                 for (_, key), value in sim.table_items(ANONYMOUS_HISTORY).items()
                 if value["events"]}
    parked = {key: [w["id"] for w in value]
              for (_, key), value in sim.table_items(ALIASES).items()
              if key.startswith("pending:")}
    # A marker names the primary the merge resolved to at the time (which, in a chain, may
    # itself be merged away later): compare where it ends up.
    return {"people": survivors, "merged": {pid: survivor(pid) for pid in merged},
            "anonymous": anonymous, "resolves": resolves, "parked": parked}
