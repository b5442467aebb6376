"""The crash-schedule scenario, shared by ``tests/chaos/test_crash_schedule.py`` (CI size) and
``bench/chaos.py`` (a million events).

1. **Workload** (:func:`generate`): a seeded, deterministic list of raw items — identified events,
   identifies, anonymous events, identifies that link an anonymous id, merges — with 10% exact
   resends (same id, same key) of earlier items. Built so the final state does not depend on the
   order the pipeline happens to process things in:

   * merges never chain: a secondary is merged once, into a person who is never a secondary;
   * within a merge group (a primary and its secondaries) each shared attribute (``plan``,
     ``city``) is written by one member only, so "primary wins" never has to decide; every other
     attribute a member writes is its own (``n_<person>``); ``email`` only for ungrouped people;
   * attribute writes carry no ``_timestamp`` and every item has its own ``received_at``, so the
     latest write (by ``received_at``) wins whatever the arrival order;
   * every secondary's first identify is produced (and acknowledged) a few chunks before its merge,
     on the same raw partition, so the merge never finds an empty secondary;
   * each linked anonymous id is linked by exactly one identify; 10% are never linked;
   * every event time is at most three days before its accept time, which is in the past: nothing
     falls out of the 30-day anonymous window, and at the final time every event counts.

2. **Oracle** (:func:`oracle`): the expected final state computed from the items alone with the
   product's pure functions: survivors, each survivor's event ids, attributes, anonymous ids and
   segment membership (:func:`app.segments.evaluate.is_member`).

3. **Kill schedule** (:func:`run_schedule`), after faust's ``tests/stress/killer.py``: SIGTERM at
   random intervals (worker restarted after each); then a second worker joins the group for a while
   (rebalances, with one more SIGTERM while both are in), then leaves; then a burst of SIGKILLs
   0.1–1 s apart, each followed by an immediate restart. Phases are tied to production progress, so
   the kills land mid-stream whatever the size; the last quarter of the items is held back until
   the burst and then written at full speed, so the first SIGKILL hits a busy pipeline.

4. **Reconciliation** (:func:`compare`, :func:`check_changes`): the read API of the one surviving
   worker (owning every partition) against the oracle — histories, profiles and memberships exact,
   no event lost or doubled — and ``segments.changes``: once repeats of a ``change_id`` are dropped,
   entered/exited strictly alternate per (person, segment), starting with entered, ending in the
   expected membership. Dead letters must be empty.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from ulid import ULID

from app.model import encode_envelope
from app.producer import partition_for
from app.segments.definition import Segment, parse_segment
from app.segments.evaluate import is_member
from tests.support.harness import Deployment, Worker, free_port, read_topic

Say = Callable[[str], None]

# --------------------------------------------------------------------------------------------------
# Segments

SEGMENTS: dict[str, dict[str, Any]] = {
    "e1-twice": {"name": "did e1 at least twice",
                 "match": {"event": "e1", "count": {"gte": 2}}},
    "plan-pro": {"name": "plan is pro",
                 "match": {"attribute": "plan", "op": "eq", "value": "pro"}},
    "e2-with-city": {"name": "did e2, has a city",
                     "match": {"all": [{"event": "e2"}, {"attribute": "city", "op": "exists"}]}},
}


def parsed_segments() -> dict[str, Segment]:
    return {sid: parse_segment(sid, doc) for sid, doc in SEGMENTS.items()}


# --------------------------------------------------------------------------------------------------
# Workload

SHARED_ATTRIBUTES = ("plan", "city")
PLANS = ("free", "pro", "basic")
CITIES = ("Oslo", "Lima", "Pune", "Kyiv")
#: e1 and e2 are rare (~3% each, about one per person), so the segments split people.
EVENT_NAMES = ("e1", "e2", *["e3"] * 10, *["e4"] * 10, *["e5"] * 10)
RESEND_RATIO = 0.10
MAX_EVENT_AGE_S = 3 * 86_400


@dataclass(frozen=True)
class Sent:
    """One item as written to a raw topic (``events``, ``identifies`` or ``anonymous``)."""

    topic: str
    key: str
    item: dict[str, Any]
    resend: bool = False


@dataclass
class Workload:
    seed: int
    sent: list[Sent]
    people: list[str]
    primary_of: dict[str, str]
    #: anonymous id → the person its linking identify is addressed to (absent: never linked)
    linked_by: dict[str, str]
    anonymous_ids: list[str]
    chunk_items: int

    def root(self, person: str) -> str:
        return self.primary_of.get(person, person)

    @property
    def survivors(self) -> list[str]:
        return [p for p in self.people if p not in self.primary_of]

    def chunks(self) -> Iterator[list[Sent]]:
        for start in range(0, len(self.sent), self.chunk_items):
            yield self.sent[start:start + self.chunk_items]

    def counts(self) -> dict[str, int]:
        found: Counter = Counter()
        for s in self.sent:
            op = s.item["op"]
            kind = "anonymous" if s.topic == "anonymous" else op
            found["resends" if s.resend else kind] += 1
        return {"items": len(self.sent), **found}


def _ulid(ms: int, rng: random.Random) -> str:
    return str(ULID.from_bytes(ms.to_bytes(6, "big") + rng.getrandbits(80).to_bytes(10, "big")))


def generate(n: int, seed: int, *, base_ms: int | None = None) -> Workload:
    """About ``n`` items (exactly ``n`` unless ``n`` is tiny); the same seed gives the same items
    apart from ``base_ms`` (accept times start there; default: comfortably in the past)."""
    rng = random.Random(seed)
    if base_ms is None:
        base_ms = int(time.time() * 1000) - n - 600_000
    n_people = max(20, n // 50)
    people = [f"p{i:06d}" for i in range(n_people)]
    order = people[:]
    rng.shuffle(order)
    n_secondary = max(2, n_people // 5)
    secondaries, candidates = order[:n_secondary], order[n_secondary:]
    primary_of = {s: rng.choice(candidates) for s in sorted(secondaries)}
    members: dict[str, list[str]] = defaultdict(list)
    for person in people:
        members[primary_of.get(person, person)].append(person)
    owner = {(root, attr): rng.choice(group) for root, group in sorted(members.items())
             for attr in SHARED_ATTRIBUTES}
    grouped = {p for group in members.values() if len(group) > 1 for p in group}
    n_anonymous = max(10, n // 100)
    anonymous_ids = [f"a{i:06d}" for i in range(n_anonymous)]
    linked_by = {a: rng.choice(people) for a in anonymous_ids[:n_anonymous * 9 // 10]}
    chunk_items = max(10, min(2000, n // 40))

    # Items at fixed positions: introductions early, merges in the middle (always chunks after the
    # introductions, see chunk_items), links spread over most of the run.
    scheduled: list[tuple[int, int, str, str]] = []
    for person in people:
        scheduled.append((rng.randrange(0, max(1, n * 15 // 100)), len(scheduled), "intro", person))
    for secondary in sorted(secondaries):
        scheduled.append((rng.randrange(n * 25 // 100, max(n * 25 // 100 + 1, n * 70 // 100)),
                          len(scheduled), "merge", secondary))
    for anonymous_id in sorted(linked_by):
        scheduled.append((rng.randrange(n * 10 // 100, max(n * 10 // 100 + 1, n * 85 // 100)),
                          len(scheduled), "link", anonymous_id))
    scheduled.sort()

    sent: list[Sent] = []
    pool: list[Sent] = []
    counter = Counter()

    def attributes_for(person: str, intro: bool) -> dict[str, Any]:
        root = primary_of.get(person, person)
        counter[person] += 1
        attributes: dict[str, Any] = {f"n_{person}": counter[person]}
        if owner[(root, "plan")] == person and (intro or rng.random() < 0.5):
            attributes["plan"] = rng.choice(PLANS)
        if owner[(root, "city")] == person and rng.random() < 0.5:
            attributes["city"] = rng.choice(CITIES)
        if intro and person not in grouped:
            attributes["email"] = f"{person}@example.test"
        return attributes

    def emit(topic: str, key: str, item: dict[str, Any]) -> None:
        entry = Sent(topic, key, item)
        sent.append(entry)
        pool.append(entry)

    def event(ms: int, index: int) -> dict[str, Any]:
        return {"op": "event", "id": _ulid(ms, rng), "name": rng.choice(EVENT_NAMES),
                "type": "page" if rng.random() < 0.1 else "event",
                "data": {"i": index, "v": rng.randrange(1000)},
                "timestamp": ms // 1000 - rng.randrange(MAX_EVENT_AGE_S), "received_at": ms}

    # Resends are drawn only in the free slots: scale so they are RESEND_RATIO of all items.
    resend_ratio = RESEND_RATIO * n / max(1, n - len(scheduled))
    k = 0
    while len(sent) < n or k < len(scheduled):
        index = len(sent)
        ms = base_ms + index
        if k < len(scheduled) and scheduled[k][0] <= index:
            _, _, kind, subject = scheduled[k]
            k += 1
            if kind == "intro":
                emit("identifies", subject, {
                    "op": "identify", "id": _ulid(ms, rng), "customer": subject,
                    "attributes": attributes_for(subject, intro=True), "received_at": ms})
            elif kind == "merge":
                emit("identifies", subject, {
                    "op": "merge", "id": _ulid(ms, rng), "primary": {"id": primary_of[subject]},
                    "secondary": {"id": subject}, "received_at": ms})
            else:
                person = linked_by[subject]
                emit("identifies", person, {
                    "op": "identify", "id": _ulid(ms, rng), "customer": person,
                    "attributes": {}, "anonymous_id": subject, "received_at": ms})
            continue
        roll = rng.random()
        if pool and roll < resend_ratio:
            original = rng.choice(pool)
            sent.append(Sent(original.topic, original.key, original.item, resend=True))
        elif roll < 0.70:
            person = rng.choice(people)
            emit("events", person, {**event(ms, index), "customer": person})
        elif roll < 0.82:
            person = rng.choice(people)
            emit("identifies", person, {"op": "identify", "id": _ulid(ms, rng),
                                        "customer": person,
                                        "attributes": attributes_for(person, intro=False),
                                        "received_at": ms})
        else:
            anonymous_id = rng.choice(anonymous_ids)
            emit("anonymous", anonymous_id, {**event(ms, index), "anonymous_id": anonymous_id})
    return Workload(seed, sent, people, primary_of, linked_by, anonymous_ids, chunk_items)


def envelopes(chunk: list[Sent], partitions: int) -> list[tuple[str, int, bytes, bytes]]:
    """(topic kind, partition, key, envelope) records for a chunk: order kept per partition."""
    grouped: dict[tuple[str, int], list[Sent]] = {}
    for entry in chunk:
        partition = partition_for(entry.key.encode(), partitions)
        grouped.setdefault((entry.topic, partition), []).append(entry)
    records = []
    for (topic, partition), entries in grouped.items():
        for start in range(0, len(entries), 500):
            part = entries[start:start + 500]
            records.append((topic, partition, part[0].key.encode(),
                            encode_envelope(e.item for e in part)))
    return records


# --------------------------------------------------------------------------------------------------
# Oracle


@dataclass
class Expected:
    #: survivor → event id → the activity it must hold (processed_at left out)
    histories: dict[str, dict[str, dict[str, Any]]]
    attributes: dict[str, dict[str, Any]]
    anonymous_ids: dict[str, list[str]]
    #: never-linked anonymous id → its events
    anonymous: dict[str, dict[str, dict[str, Any]]]
    linked: set[str]
    secondaries: set[str]
    membership: dict[str, set[str]]
    at_s: int

    @property
    def events(self) -> int:
        return sum(map(len, self.histories.values())) + sum(map(len, self.anonymous.values()))


def _activity(item: dict[str, Any]) -> dict[str, Any]:
    return {key: item[key] for key in ("id", "name", "type", "data", "timestamp")}


def oracle(w: Workload, at_s: int | None = None) -> Expected:
    at_s = int(time.time()) if at_s is None else at_s
    survivors = w.survivors
    histories: dict[str, dict[str, dict[str, Any]]] = {p: {} for p in survivors}
    attributes: dict[str, dict[str, Any]] = {p: {} for p in survivors}
    anonymous_ids: dict[str, set[str]] = {p: set() for p in survivors}
    anonymous: dict[str, dict[str, dict[str, Any]]] = {
        a: {} for a in w.anonymous_ids if a not in w.linked_by}
    seen: set[tuple[str, str]] = set()
    for entry in w.sent:
        item = entry.item
        scope = (entry.key, item["id"])
        if scope in seen:  # an exact resend: dropped by the pipeline
            continue
        seen.add(scope)
        op = item["op"]
        if op == "event" and "customer" in item:
            histories[w.root(item["customer"])][item["id"]] = _activity(item)
        elif op == "event":
            linked = w.linked_by.get(item["anonymous_id"])
            if linked is None:
                anonymous[item["anonymous_id"]][item["id"]] = _activity(item)
            else:
                histories[w.root(linked)][item["id"]] = _activity(item)
        elif op == "identify":
            root = w.root(item["customer"])
            # Items come in received_at order and no write has a _timestamp: the later one wins.
            attributes[root].update(item["attributes"])
            if item.get("anonymous_id"):
                anonymous_ids[root].add(item["anonymous_id"])
    segments = parsed_segments()
    membership = {
        person: {sid for sid, segment in segments.items()
                 if is_member(segment, list(histories[person].values()), attributes[person], at_s)}
        for person in survivors}
    return Expected(histories, attributes, {p: sorted(ids) for p, ids in anonymous_ids.items()},
                    anonymous, set(w.linked_by), set(w.primary_of), membership, at_s)


# --------------------------------------------------------------------------------------------------
# Observing the read API


@dataclass
class Observed:
    profiles: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    histories: dict[str, list[dict[str, Any]] | None] = field(default_factory=dict)
    segments: dict[str, list[str]] = field(default_factory=dict)
    anonymous: dict[str, list[dict[str, Any]] | None] = field(default_factory=dict)


class ApiUnavailable(AssertionError):
    """The worker did not answer (restarting, rebalancing); try again."""


async def _get(session: aiohttp.ClientSession, url: str, headers: dict[str, str],
               params: dict[str, str] | None = None) -> tuple[int, Any]:
    try:
        async with session.get(url, headers=headers, params=params) as response:
            if response.status not in (200, 404):
                raise ApiUnavailable(f"GET {url}: HTTP {response.status}")
            return response.status, await response.json()
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise ApiUnavailable(f"GET {url}: {exc!r}") from exc


async def _activities(session: aiohttp.ClientSession, url: str,
                      headers: dict[str, str]) -> list[dict[str, Any]] | None:
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"days": "3650", "limit": "500"} | ({"cursor": cursor} if cursor else {})
        status, page = await _get(session, url, headers, params)
        if status == 404:
            return None
        found.extend(page["activities"])
        cursor = page["next"]
        if cursor is None:
            return found


async def observe(d: Deployment, w: Workload, *, concurrency: int = 16) -> Observed:
    seen = Observed()
    base, headers = d.url, d.app_auth
    limit = asyncio.Semaphore(concurrency)
    timeout = aiohttp.ClientTimeout(total=60)

    async def person(session: aiohttp.ClientSession, pid: str) -> None:
        async with limit:
            status, body = await _get(session, f"{base}/api/v1/customers/{pid}", headers)
            seen.profiles[pid] = body["customer"] if status == 200 else None
            seen.histories[pid] = await _activities(
                session, f"{base}/api/v1/customers/{pid}/activities", headers)
            status, body = await _get(session, f"{base}/api/v1/customers/{pid}/segments",
                                      headers)
            seen.segments[pid] = sorted(s["id"] for s in body.get("segments", []))

    async def anonymous(session: aiohttp.ClientSession, aid: str) -> None:
        async with limit:
            seen.anonymous[aid] = await _activities(
                session, f"{base}/api/v1/anonymous/{aid}/activities", headers)

    async with aiohttp.ClientSession(timeout=timeout) as session:
        await asyncio.gather(*(person(session, p) for p in w.people),
                             *(anonymous(session, a) for a in w.anonymous_ids))
    return seen


# --------------------------------------------------------------------------------------------------
# Comparing


def _compare_events(where: str, expected: dict[str, dict[str, Any]],
                    found: list[dict[str, Any]] | None) -> list[str]:
    found = found or []
    out = []
    ids = Counter(a["id"] for a in found)
    doubled = sorted(i for i, c in ids.items() if c > 1)
    lost = sorted(set(expected) - set(ids))
    extra = sorted(set(ids) - set(expected))
    if lost:
        out.append(f"lost: {where}: {len(lost)} of {len(expected)} events missing, e.g. "
                   f"{lost[:3]}")
    if doubled:
        out.append(f"doubled: {where}: {len(doubled)} events stored more than once, e.g. "
                   f"{doubled[:3]}")
    if extra:
        out.append(f"extra: {where}: {len(extra)} events that belong elsewhere, e.g. {extra[:3]}")
    wrong = [a["id"] for a in found if a["id"] in expected
             and {k: a[k] for k in ("id", "name", "type", "data", "timestamp")}
             != expected[a["id"]]]
    if wrong:
        out.append(f"content: {where}: {len(wrong)} events differ from what was sent, e.g. "
                   f"{wrong[:3]}")
    return out


def compare(expected: Expected, seen: Observed) -> list[str]:
    """Every difference between the oracle and the read API, one line each."""
    out: list[str] = []
    for person in sorted(expected.histories):
        profile = seen.profiles.get(person)
        if profile is None:
            out.append(f"profile: {person}: missing (404)")
        else:
            if profile["attributes"] != expected.attributes[person]:
                out.append(f"profile: {person}: attributes {profile['attributes']} != expected "
                           f"{expected.attributes[person]}")
            if profile["anonymous_ids"] != expected.anonymous_ids[person]:
                out.append(f"profile: {person}: anonymous_ids {profile['anonymous_ids']} != "
                           f"expected {expected.anonymous_ids[person]}")
        history = seen.histories.get(person)
        out.extend(_compare_events(f"history of {person}", expected.histories[person], history))
        if history and any(a["processed_at"] is None for a in history):
            out.append(f"history: {person}: an activity without processed_at")
        segments = seen.segments.get(person, [])
        if set(segments) != expected.membership[person]:
            out.append(f"membership: {person}: in {segments}, expected "
                       f"{sorted(expected.membership[person])}")
    for secondary in sorted(expected.secondaries):
        if seen.profiles.get(secondary) is not None:
            out.append(f"profile: merged-away {secondary} still has a profile")
        if seen.histories.get(secondary):
            out.extend(_compare_events(f"history of merged-away {secondary}", {},
                                       seen.histories[secondary]))
        if seen.segments.get(secondary):
            out.append(f"membership: merged-away {secondary} is in {seen.segments[secondary]}")
    for anonymous_id, events in sorted(expected.anonymous.items()):
        out.extend(_compare_events(f"anonymous history of {anonymous_id}", events,
                                   seen.anonymous.get(anonymous_id)))
    for anonymous_id in sorted(expected.linked):
        # A linked id answers 200 with identified_as and no activity left (or 404).
        if seen.anonymous.get(anonymous_id):
            out.append(f"anonymous: linked {anonymous_id} still has an anonymous history of "
                       f"{len(seen.anonymous[anonymous_id])}")
    return out


@dataclass
class ChangeCheck:
    differences: list[str]
    records: int
    repeats: int


def check_changes(records: list[Any], expected: Expected) -> ChangeCheck:
    """``segments.changes`` once repeats of a change_id are dropped: strict alternation per
    (person, segment) starting with entered, ending in the expected membership."""
    out: list[str] = []
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    seen_ids: set[str] = set()
    repeats = 0
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        change = orjson.loads(record.value)
        if change["change_id"] in seen_ids:
            repeats += 1
            continue
        seen_ids.add(change["change_id"])
        change["_where"] = f"p{record.partition}@{record.offset}"
        by_key[(change["person_id"], change["segment_id"])].append(change)
    for (person, segment), changes in sorted(by_key.items()):
        state = "exited"
        for change in changes:
            if change["change"] == state:
                out.append(f"changes: {person}/{segment}: two consecutive {state} "
                           f"({_brief(changes)})")
                break
            state = change["change"]
    members = {(p, s) for p, segments in expected.membership.items() for s in segments}
    final = {key for key, changes in by_key.items() if changes[-1]["change"] == "entered"}
    for person, segment in sorted(members - final):
        out.append(f"changes: {person}/{segment}: expected member, changes end "
                   f"{'with exited' if (person, segment) in by_key else 'empty'}")
    for person, segment in sorted(final - members):
        out.append(f"changes: {person}/{segment}: not a member, but changes end with entered "
                   f"({_brief(by_key[(person, segment)])})")
    return ChangeCheck(out, len(records), repeats)


def _brief(changes: list[dict[str, Any]]) -> str:
    return ", ".join(f"{c['change']}@{c['at']} cause={c['cause']} id={c['change_id'][:8]} "
                     f"{c['_where']}" for c in changes[-6:])


# --------------------------------------------------------------------------------------------------
# Workers and the kill schedule


class Fleet:
    """Worker ``a`` (restarted after every kill, the one the reads go to) and worker ``b`` (in the
    group for part of the run: its own HTTP port and data directory)."""

    def __init__(self, d: Deployment, *, tick_s: float, say: Say) -> None:
        self.d = d
        self.say = say
        self.env = {"EVENTIDE_TICK_INTERVAL_S": str(tick_s)}
        self.ports = {"a": d.settings.http_port, "b": free_port()}
        self.workers: dict[str, Worker | None] = {"a": None, "b": None}
        self.starts = self.sigterms = self.sigkills = self.rebalances = 0
        self.t0 = time.monotonic()
        self.timeline: list[str] = []
        #: eventide_*_total counters summed over every worker incarnation (scraped before each
        #: signal and at the end: whatever a process counted after its last scrape is not here)
        self.metrics: Counter = Counter()
        #: fraction of the workload written so far, shown on the timeline
        self.progress: Callable[[], float] = lambda: 0.0

    def log_path(self, name: str) -> Path:
        return self.d.root / f"{name}.log"

    def alive(self, name: str) -> bool:
        worker = self.workers[name]
        return worker is not None and worker.process is not None and \
            worker.process.poll() is None

    def _note(self, text: str) -> None:
        line = f"{time.monotonic() - self.t0:7.1f}s [{self.progress():4.0%} written] {text}"
        self.timeline.append(line)
        self.say(line)
        for name in ("a", "b"):  # mark it in the logs too, so log lines can be placed
            if self.log_path(name).exists() or self.alive(name):
                with open(self.log_path(name), "a") as log:
                    log.write(f"===== chaos: {line}\n")

    def _other(self, name: str) -> str:
        return "b" if name == "a" else "a"

    def start(self, name: str) -> None:
        env = dict(self.env)
        if name == "b":
            env.update(EVENTIDE_HTTP_PORT=str(self.ports["b"]),
                       EVENTIDE_DATA_DIR=str(self.d.root / "data-b"))
        two = self.alive(self._other(name))
        self.rebalances += two
        self.starts += 1
        self._note(f"start {name}" + (" (joins the other: rebalance)" if two else ""))
        self.workers[name] = Worker(self.d, name, **env).start()

    async def scrape(self, name: str) -> None:
        """Add the worker's counters to :attr:`metrics` (best effort, quick)."""
        url = f"http://127.0.0.1:{self.ports[name]}/metrics"
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
                async with session.get(url, headers=self.d.app_auth) as response:
                    text = await response.text() if response.status == 200 else ""
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return
        for line in text.splitlines():
            metric, _, value = line.rpartition(" ")
            if metric.startswith("eventide_") and "_total" in metric:
                self.metrics[metric.removeprefix("eventide_")] += int(float(value))

    async def signal(self, name: str, sig: int) -> None:
        worker = self.workers[name]
        if worker is None or not self.alive(name):
            return
        await self.scrape(name)
        two = self.alive(self._other(name))
        self.rebalances += two
        if sig == signal.SIGKILL:
            self.sigkills += 1
        else:
            self.sigterms += 1
        self._note(f"{signal.Signals(sig).name} {name} pid {worker.process.pid}"  # type: ignore
                   + (" (the other takes over: rebalance)" if two else ""))
        # In a thread: a graceful stop can take seconds, and production goes on meanwhile.
        if sig == signal.SIGTERM:
            await asyncio.to_thread(worker.stop)  # graceful; SIGKILL if not done in 30 s
        else:
            await asyncio.to_thread(worker.kill, sig)

    async def ready(self, name: str, timeout_s: float = 90.0) -> None:
        worker = self.workers[name]
        assert worker is not None
        url = f"http://127.0.0.1:{self.ports[name]}/healthz"
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                if not self.alive(name):
                    raise AssertionError(f"worker {name} exited:\n" + worker.tail())
                try:
                    async with session.get(url) as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.2)
        raise AssertionError(f"worker {name} not ready in {timeout_s} s:\n" + worker.tail())

    async def stop_all(self) -> None:
        for name in ("a", "b"):
            if self.alive(name):
                await self.scrape(name)
        await asyncio.to_thread(self._stop_all)

    def _stop_all(self) -> None:
        for worker in self.workers.values():
            if worker is not None:
                worker.stop()


@dataclass(frozen=True)
class Schedule:
    """The kill schedule; phases end at fractions of the production (so kills land mid-stream)."""

    sigterms: tuple[int, int] = (2, 6)          # phase 1: at least / at most
    sigterm_sleep_s: tuple[float, float] = (1.0, 4.0)
    phase1_until: float = 0.30
    two_worker_sigterms: tuple[int, int] = (1, 3)
    phase2_until: float = 0.65
    burst_at: float = 0.75
    burst: tuple[int, int] = (3, 5)
    burst_sleep_s: tuple[float, float] = (0.1, 1.0)


async def run_schedule(fleet: Fleet, schedule: Schedule, rng: random.Random,
                       progress: Callable[[], float], release: asyncio.Event) -> None:
    # Phase 1: SIGTERM at random intervals; restarted each time (alone in the group).
    done = 0
    while done < schedule.sigterms[0] or (progress() < schedule.phase1_until
                                          and done < schedule.sigterms[1]):
        await asyncio.sleep(rng.uniform(*schedule.sigterm_sleep_s))
        await fleet.signal("a", signal.SIGTERM)
        fleet.start("a")
        done += 1
        await fleet.ready("a")
    # Phase 2: a second worker in the group; A is SIGTERMed while both are in; then B leaves.
    fleet.start("b")
    await fleet.ready("b")
    done = 0
    while done < schedule.two_worker_sigterms[0] or (
            progress() < schedule.phase2_until and done < schedule.two_worker_sigterms[1]):
        await asyncio.sleep(rng.uniform(*schedule.sigterm_sleep_s))
        await fleet.signal("a", signal.SIGTERM)
        fleet.start("a")
        done += 1
        await fleet.ready("a")
        await fleet.ready("b")
    await asyncio.sleep(rng.uniform(*schedule.sigterm_sleep_s))
    await fleet.signal("b", signal.SIGTERM)
    await fleet.ready("a")
    # Phase 3: a burst of SIGKILL 0.1-1 s apart (the OOM killer), a restart right after each.
    # Production holds its last part back until now; once A alone consumes everything written
    # so far (the rebalance after B left is over), the rest is written at full speed, so the
    # first SIGKILL lands while the pipeline is busy with it.
    while progress() < schedule.burst_at and not release.is_set():
        await asyncio.sleep(0.2)
    lag = await wait_for_lag(fleet.d, consumed_topics(fleet.d, raw_only=True), at_most=0,
                             timeout_s=60)
    fleet._note(f"raw lag {lag}: releasing the held-back {1 - progress():.0%} at full speed")
    release.set()
    for _ in range(rng.randint(*schedule.burst)):
        await asyncio.sleep(rng.uniform(*schedule.burst_sleep_s))
        await fleet.signal("a", signal.SIGKILL)
        fleet.start("a")


# --------------------------------------------------------------------------------------------------
# Consumer-group lag (committed offsets against fetch high-watermarks: ListOffsets is not trusted
# on the embedded broker)


def consumed_topics(d: Deployment, *, raw_only: bool = False) -> list[str]:
    t = d.topics
    raw = [t.raw_events.name, t.raw_identifies.name, t.raw_anonymous.name]
    return raw if raw_only else [*raw, t.identity_commands.name, t.anonymous_links.name,
                                 t.person_events.name]


async def group_lag(d: Deployment, topics: list[str], timeout_s: float = 10.0) -> int:
    """Records on ``topics`` not yet committed by the workers' consumer group."""
    tps = [TopicPartition(topic, p) for topic in topics for p in range(d.settings.partitions)]
    group = AIOKafkaConsumer(bootstrap_servers=d.bootstrap, group_id=d.settings.app_id,
                             enable_auto_commit=False)
    await group.start()
    try:
        committed = {tp: (await group.committed(tp)) or 0 for tp in tps}
    finally:
        await group.stop()
    reader = AIOKafkaConsumer(bootstrap_servers=d.bootstrap, group_id=None,
                              enable_auto_commit=False)
    await reader.start()
    try:
        reader.assign(tps)
        for tp in tps:
            reader.seek(tp, committed[tp])
        highwater: dict[TopicPartition, int] = {}
        deadline = time.monotonic() + timeout_s
        while len(highwater) < len(tps):
            if time.monotonic() > deadline:
                raise ApiUnavailable("no high-watermark for every partition in time")
            await reader.getmany(timeout_ms=200, max_records=1)
            for tp in tps:
                mark = reader.highwater(tp)
                if mark is not None:
                    highwater[tp] = mark
        return sum(max(0, highwater[tp] - committed[tp]) for tp in tps)
    finally:
        await reader.stop()


async def wait_for_lag(d: Deployment, topics: list[str], *, at_most: int, timeout_s: float,
                       say: Say | None = None) -> int:
    """Poll the group's lag until it is at most ``at_most`` (bounded); the last lag seen."""
    deadline = time.monotonic() + timeout_s
    last_said = 0.0
    while True:
        try:
            lag = await group_lag(d, topics)
        except Exception as exc:  # broker busy or worker restarting: look again
            lag = -1
            if say:
                say(f"lag unknown: {exc!r}")
        if 0 <= lag <= at_most or time.monotonic() > deadline:
            return lag
        if say and time.monotonic() - last_said > 10:
            say(f"lag {lag} records")
            last_said = time.monotonic()
        await asyncio.sleep(1.0)


# --------------------------------------------------------------------------------------------------
# Producing


async def produce(d: Deployment, w: Workload, rate: float, produced: list[int], *,
                  hold_at: float = 1.0, release: asyncio.Event | None = None) -> None:
    """Write the workload chunk by chunk (each acknowledged before the next), at ``rate`` items/s.

    At ``hold_at`` of the items, wait for ``release``, then write the rest at full speed. A chunk
    whose write fails is written again whole: the same items, the same ids.
    """
    names = {"events": d.topics.raw_events.name, "identifies": d.topics.raw_identifies.name,
             "anonymous": d.topics.raw_anonymous.name}
    partitions = d.settings.partitions
    producer = AIOKafkaProducer(bootstrap_servers=d.bootstrap, acks="all", linger_ms=5,
                                max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        start = time.monotonic()
        held = False
        for chunk in w.chunks():
            if release is not None and not held and produced[0] >= hold_at * len(w.sent):
                await release.wait()
                held = True
            records = envelopes(chunk, partitions)
            for attempt in range(6):
                try:
                    futures = [await producer.send(names[topic], value, key=key,
                                                   partition=partition)
                               for topic, partition, key, value in records]
                    await asyncio.gather(*futures)
                    break
                except Exception:
                    if attempt == 5:
                        raise
                    await asyncio.sleep(1.0)
            produced[0] += len(chunk)
            ahead = start + produced[0] / rate - time.monotonic()
            if ahead > 0 and not held:
                await asyncio.sleep(ahead)
    finally:
        await producer.stop()


async def define_segments(d: Deployment) -> None:
    async with aiohttp.ClientSession() as session:
        for sid, doc in SEGMENTS.items():
            async with session.put(f"{d.url}/api/v1/segments/{sid}", json=doc,
                                   headers=d.app_auth) as response:
                assert response.status == 200, await response.text()
        deadline = time.monotonic() + 60
        while True:
            async with session.get(f"{d.url}/api/v1/segments", headers=d.app_auth) as response:
                states = {s["id"]: s["state"] for s in (await response.json())["segments"]}
            if states == {sid: "live" for sid in SEGMENTS}:
                return
            assert time.monotonic() < deadline, f"segments not live: {states}"
            await asyncio.sleep(0.2)


# --------------------------------------------------------------------------------------------------
# The whole run


@dataclass
class Config:
    events: int
    seed: int
    #: items produced per second (the run's length is about events / rate)
    rate: float
    tick_s: float = 2.0
    drain_timeout_s: float = 120.0
    http_concurrency: int = 16
    schedule: Schedule = field(default_factory=Schedule)


@dataclass
class Result:
    seed: int
    counts: dict[str, int]
    people: int
    survivors: int
    expected_events: int
    sigterms: int
    sigkills: int
    starts: int
    rebalances: int
    produce_s: float
    drain_s: float
    duration_s: float
    changes: int
    change_repeats: int
    deadletters: int
    differences: list[str]
    timeline: list[str]
    work_dir: Path
    metrics: Counter = field(default_factory=Counter)
    #: Segment changes a worker withheld as a repeat of the last one (logged "invariant:").
    invariant_violations: int = 0
    #: Unfinished units a new owner fenced off in a changelog (a writer killed mid-unit).
    fenced_units: int = 0

    @property
    def kinds(self) -> Counter:
        return Counter(line.split(":", 1)[0] for line in self.differences)

    def summary(self) -> str:
        c = self.counts
        return "\n".join([
            f"seed {self.seed}: {c['items']} items written ({c.get('event', 0)} identified events, "
            f"{c.get('anonymous', 0)} anonymous events, {c.get('identify', 0)} identifies, "
            f"{c.get('merge', 0)} merges, {c.get('resends', 0)} exact resends); "
            f"{self.expected_events} distinct events expected",
            f"people {self.people} ({self.survivors} after merges)",
            f"kills: {self.sigterms} SIGTERM + {self.sigkills} SIGKILL; worker starts "
            f"{self.starts}; rebalances with two in the group {self.rebalances}",
            f"produce {self.produce_s:.1f} s, drain after production {self.drain_s:.1f} s, "
            f"total {self.duration_s:.1f} s",
            f"segments.changes: {self.changes} records, {self.change_repeats} repeats of a "
            f"change_id (redelivery) dropped; dead letters {self.deadletters}",
            "worker counters (summed over incarnations, as scraped): "
            + ", ".join(f"{k} {self.metrics[k]}" for k in (
                'verdict_total{kind="new"}', 'verdict_total{kind="duplicate"}',
                'verdict_total{kind="redelivery"}', 'merges_total{kind="done"}',
                'anonymous_links_total{kind="linked"}', "forwarded_to_survivor_total")
                if k in self.metrics),
            f"invariant violations logged by any worker: {self.invariant_violations}; "
            f"unfinished units fenced off in changelogs: {self.fenced_units}",
            f"differences: {len(self.differences)}"
            + (f" {dict(self.kinds)}" if self.differences else ""),
        ])


def log_excerpts(result: Result, *, lines: int = 40) -> str:
    """Error lines of the worker logs (and their chaos markers), for a report."""
    out = []
    for name in ("a", "b"):
        path = result.work_dir / f"{name}.log"
        if not path.exists():
            continue
        picked = [line for line in path.read_text(errors="replace").splitlines()
                  if "ERROR" in line or "Traceback" in line or "Error" in line
                  or "===== chaos" in line or "WARNING" in line]
        out.append(f"--- {path} ({len(picked)} lines of interest, last {lines}) ---")
        out.extend(picked[-lines:])
    return "\n".join(out)


async def run_scenario(d: Deployment, cfg: Config, say: Say = print) -> Result:
    t0 = time.monotonic()
    w = generate(cfg.events, cfg.seed)
    counts = w.counts()
    say(f"workload: {counts}")
    fleet = Fleet(d, tick_s=cfg.tick_s, say=say)
    rng = random.Random(cfg.seed * 7919 + 1)
    produced = [0]
    differences: list[str] = []
    changes = ChangeCheck([], 0, 0)
    deadletters: list[Any] = []
    produce_s = drain_s = 0.0
    try:
        fleet.start("a")
        await fleet.ready("a")
        await define_segments(d)
        started = time.monotonic()
        fleet.progress = lambda: produced[0] / len(w.sent)
        release = asyncio.Event()
        producing = asyncio.ensure_future(produce(d, w, cfg.rate, produced,
                                                  hold_at=cfg.schedule.burst_at, release=release))
        producing.add_done_callback(lambda _: fleet._note("production done"))
        try:
            await run_schedule(fleet, cfg.schedule, rng, lambda: produced[0] / len(w.sent),
                               release)
        except BaseException:
            producing.cancel()
            raise
        await producing
        produce_s = time.monotonic() - started
        drained_from = time.monotonic()
        await fleet.ready("a", timeout_s=180)
        lag = await wait_for_lag(d, consumed_topics(d), at_most=2 * d.settings.partitions,
                                 timeout_s=cfg.drain_timeout_s, say=say)
        fleet._note(f"a owns every partition and has recovered them; lag {lag}; reconciling")
        expected = oracle(w)
        differences = await reconcile(d, w, expected, cfg, say)
        drain_s = time.monotonic() - drained_from
        records = await read_topic(d.bootstrap, d.topics.segment_changes.name,
                                   partitions=d.settings.partitions, timeout_s=60)
        changes = check_changes(records, expected)
        differences += changes.differences
        deadletters = await read_topic(d.bootstrap, d.topics.deadletter.name,
                                       partitions=d.settings.partitions, timeout_s=10)
        for record in deadletters[:20]:
            headers = {k: v.decode(errors="replace") for k, v in record.headers}
            differences.append(f"deadletter: {headers.get('error')} from "
                               f"{headers.get('origin.topic')}/{headers.get('origin.partition')}"
                               f"@{headers.get('origin.offset')}")
    finally:
        await fleet.stop_all()
    violations = worker_log_lines(d.root, "invariant:")
    differences += [f"invariant: {line}" for line in violations[:20]]
    return Result(
        seed=cfg.seed, counts=counts, people=len(w.people), survivors=len(w.survivors),
        expected_events=expected.events, sigterms=fleet.sigterms, sigkills=fleet.sigkills,
        starts=fleet.starts, rebalances=fleet.rebalances, produce_s=produce_s, drain_s=drain_s,
        duration_s=time.monotonic() - t0, changes=changes.records,
        change_repeats=changes.repeats, deadletters=len(deadletters), differences=differences,
        timeline=fleet.timeline, work_dir=d.root, metrics=fleet.metrics,
        invariant_violations=len(violations),
        fenced_units=len(worker_log_lines(d.root, "belong to an unfinished unit")))


def worker_log_lines(root: Path, marker: str) -> list[str]:
    """Lines of every worker's log (all incarnations append to one file) that hold ``marker``."""
    found = []
    for name in ("a", "b"):
        path = root / f"{name}.log"
        if path.exists():
            found += [line for line in path.read_text(errors="replace").splitlines()
                      if marker in line]
    return found


async def reconcile(d: Deployment, w: Workload, expected: Expected, cfg: Config,
                    say: Say) -> list[str]:
    """Poll the read API until it matches the oracle twice in a row (bounded); the differences of
    the last look."""
    deadline = time.monotonic() + cfg.drain_timeout_s
    clean = 0
    passes = 0
    differences: list[str] = ["never looked"]
    while True:
        passes += 1
        try:
            differences = compare(expected, await observe(d, w, concurrency=cfg.http_concurrency))
        except ApiUnavailable as exc:
            differences = [f"api: {exc}"]
        clean = clean + 1 if not differences else 0
        if passes == 1 or clean or passes % 5 == 0:
            say(f"reconcile pass {passes}: {len(differences)} differences"
                + (f", e.g. {differences[0]}" if differences else ""))
        if clean >= 2:
            return []
        if time.monotonic() > deadline:
            return differences
        await asyncio.sleep(3.0 if clean else 2.0)
