"""The crash schedule's seeded workload and the segments it is judged by (see the package doc)."""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Iterator

from ulid import ULID

from app.model import encode_envelope
from app.producer import partition_for
from app.segments.definition import Segment, parse_segment

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
    if base_ms is None:
        base_ms = int(time.time() * 1000) - n - 600_000
    return _Generator(n, random.Random(seed)).run(seed, base_ms)


class _Generator:
    """One workload's cast (people, merge groups, attribute owners, anonymous ids) and the items
    written so far. Every draw from ``rng`` happens in one fixed order: the seed decides all."""

    def __init__(self, n: int, rng: random.Random) -> None:
        self.n, self.rng = n, rng
        n_people = max(20, n // 50)
        self.people = [f"p{i:06d}" for i in range(n_people)]
        order = self.people[:]
        rng.shuffle(order)
        n_secondary = max(2, n_people // 5)
        self.secondaries, candidates = order[:n_secondary], order[n_secondary:]
        self.primary_of = {s: rng.choice(candidates) for s in sorted(self.secondaries)}
        members: dict[str, list[str]] = defaultdict(list)
        for person in self.people:
            members[self.primary_of.get(person, person)].append(person)
        self.owner = {(root, attr): rng.choice(group) for root, group in sorted(members.items())
                      for attr in SHARED_ATTRIBUTES}
        self.grouped = {p for group in members.values() if len(group) > 1 for p in group}
        n_anonymous = max(10, n // 100)
        self.anonymous_ids = [f"a{i:06d}" for i in range(n_anonymous)]
        self.linked_by = {a: rng.choice(self.people)
                          for a in self.anonymous_ids[:n_anonymous * 9 // 10]}
        self.sent: list[Sent] = []
        #: the items an exact resend may repeat (never a resend itself)
        self.pool: list[Sent] = []
        self.writes: Counter[str] = Counter()

    def scheduled(self) -> list[tuple[int, int, str, str]]:
        """Items at fixed positions: introductions early, merges in the middle (always chunks after
        the introductions, see chunk_items), links spread over most of the run."""
        n, rng = self.n, self.rng
        scheduled: list[tuple[int, int, str, str]] = []
        for person in self.people:
            scheduled.append((rng.randrange(0, max(1, n * 15 // 100)), len(scheduled), "intro",
                              person))
        for secondary in sorted(self.secondaries):
            scheduled.append((rng.randrange(n * 25 // 100, max(n * 25 // 100 + 1, n * 70 // 100)),
                              len(scheduled), "merge", secondary))
        for anonymous_id in sorted(self.linked_by):
            scheduled.append((rng.randrange(n * 10 // 100, max(n * 10 // 100 + 1, n * 85 // 100)),
                              len(scheduled), "link", anonymous_id))
        scheduled.sort()
        return scheduled

    def run(self, seed: int, base_ms: int) -> Workload:
        scheduled = self.scheduled()
        # Resends are drawn only in the free slots: scale so they are RESEND_RATIO of all items.
        resend_ratio = RESEND_RATIO * self.n / max(1, self.n - len(scheduled))
        k = 0
        while len(self.sent) < self.n or k < len(scheduled):
            index = len(self.sent)
            if k < len(scheduled) and scheduled[k][0] <= index:
                _, _, kind, subject = scheduled[k]
                k += 1
                self.scheduled_item(base_ms + index, kind, subject)
            else:
                self.free_item(base_ms + index, index, resend_ratio)
        chunk_items = max(10, min(2000, self.n // 40))
        return Workload(seed, self.sent, self.people, self.primary_of, self.linked_by,
                        self.anonymous_ids, chunk_items)

    def scheduled_item(self, ms: int, kind: str, subject: str) -> None:
        rng = self.rng
        if kind == "intro":
            self.emit("identifies", subject, {
                "op": "identify", "id": _ulid(ms, rng), "customer": subject,
                "attributes": self.attributes_for(subject, intro=True), "received_at": ms})
        elif kind == "merge":
            self.emit("identifies", subject, {
                "op": "merge", "id": _ulid(ms, rng), "primary": {"id": self.primary_of[subject]},
                "secondary": {"id": subject}, "received_at": ms})
        else:
            person = self.linked_by[subject]
            self.emit("identifies", person, {
                "op": "identify", "id": _ulid(ms, rng), "customer": person,
                "attributes": {}, "anonymous_id": subject, "received_at": ms})

    def free_item(self, ms: int, index: int, resend_ratio: float) -> None:
        rng = self.rng
        roll = rng.random()
        if self.pool and roll < resend_ratio:
            original = rng.choice(self.pool)
            self.sent.append(Sent(original.topic, original.key, original.item, resend=True))
        elif roll < 0.70:
            person = rng.choice(self.people)
            self.emit("events", person, {**self.event(ms, index), "customer": person})
        elif roll < 0.82:
            person = rng.choice(self.people)
            self.emit("identifies", person, {"op": "identify", "id": _ulid(ms, rng),
                                             "customer": person,
                                             "attributes": self.attributes_for(person, intro=False),
                                             "received_at": ms})
        else:
            anonymous_id = rng.choice(self.anonymous_ids)
            self.emit("anonymous", anonymous_id,
                      {**self.event(ms, index), "anonymous_id": anonymous_id})

    def attributes_for(self, person: str, intro: bool) -> dict[str, Any]:
        rng = self.rng
        root = self.primary_of.get(person, person)
        self.writes[person] += 1
        attributes: dict[str, Any] = {f"n_{person}": self.writes[person]}
        if self.owner[(root, "plan")] == person and (intro or rng.random() < 0.5):
            attributes["plan"] = rng.choice(PLANS)
        if self.owner[(root, "city")] == person and rng.random() < 0.5:
            attributes["city"] = rng.choice(CITIES)
        if intro and person not in self.grouped:
            attributes["email"] = f"{person}@example.test"
        return attributes

    def emit(self, topic: str, key: str, item: dict[str, Any]) -> None:
        entry = Sent(topic, key, item)
        self.sent.append(entry)
        self.pool.append(entry)

    def event(self, ms: int, index: int) -> dict[str, Any]:
        rng = self.rng
        return {"op": "event", "id": _ulid(ms, rng), "name": rng.choice(EVENT_NAMES),
                "type": "page" if rng.random() < 0.1 else "event",
                "data": {"i": index, "v": rng.randrange(1000)},
                "timestamp": ms // 1000 - rng.randrange(MAX_EVENT_AGE_S), "received_at": ms}


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
