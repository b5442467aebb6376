"""What the pipeline benchmark sends: seeded items for raw and HTTP loads, and segment
definitions."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from ulid import ULID





NAMES = ("purchase", "page_viewed", "added_to_cart", "signed_in", "checkout_started",
         "search", "email_clicked", "trial_started")
PLANS = ("free", "basic", "premium", "enterprise")
CAMPAIGNS = ("spring_sale", "newsletter_42", "retargeting", "organic", "partner_ref")
#: ``plan`` values identifies set: segment definitions test ``plan`` eq "pro", neq "enterprise",
#: exists; ``city`` exists.
IDENTIFY_PLANS = (*PLANS, "pro")
CITIES = ("Berlin", "Lisbon", "Oslo", "Lyon", "Turin", "Gdansk", "Porto", "Ghent")
DATA_BYTES = 200


#: Event names of the segments workload: definitions mention one or two of these each.
NAME_POOL = tuple(f"e{i}" for i in range(1000))
ITEM_TYPES = ("monitor", "hdmi", "desk", "chair", "lamp")


@dataclass
class Workload:
    #: (person id, item id, item) in send order; a resend is a copy of its original's item.
    #: Items are events and (``identify_ids``) identifies.
    events: list[tuple[str, str, dict[str, Any]]]
    resends: int
    identify_ids: set[str] = field(default_factory=set)

    @property
    def unique(self) -> int:
        """Unique items: what the dedup verdict ``new`` counts."""
        return len(self.events) - self.resends

    @property
    def identifies(self) -> int:
        return len(self.identify_ids)

    @property
    def unique_events(self) -> int:
        """Unique events: what the processing latency histogram observes."""
        return self.unique - self.identifies


def _data(rng: random.Random) -> dict[str, Any]:
    data = {"plan": rng.choice(PLANS), "amount": round(rng.uniform(1, 500), 2), "currency": "EUR",
            "sku": f"sku-{rng.randrange(10**6):06d}", "page": f"/products/{rng.randrange(10**4)}",
            "campaign": rng.choice(CAMPAIGNS), "quantity": rng.randrange(1, 10)}
    pad = DATA_BYTES - len(orjson.dumps(data)) - len(',"note":""')
    data["note"] = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(max(pad, 0)))
    return data


def _segment_data(rng: random.Random) -> dict[str, Any]:
    """Event data for the segments workload: what ``where`` clauses look at, padded like _data."""
    data: dict[str, Any] = {
        "items": [{"type": rng.choice(ITEM_TYPES), "price": rng.randrange(5, 400)}
                  for _ in range(rng.randrange(0, 3))],
        "total": rng.randrange(0, 500), "plan": rng.choice(PLANS)}
    pad = DATA_BYTES - len(orjson.dumps(data)) - len(',"note":""')
    data["note"] = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(max(pad, 0)))
    return data


def generate(n: int, people: int, dup_ratio: float, seed: int, *, segments: bool = False,
             identify_ratio: float = 0.0, backdated_ratio: float = 0.10,
             backdate_max_s: int = 7_200) -> Workload:
    """n items; every (1/dup_ratio)-th one is an exact resend of a random earlier event.

    ``identify_ratio`` of the other items are identifies setting ``plan`` and ``city``.
    ``segments``: names from :data:`NAME_POOL`, data with ``items``/``total``, and a share of the
    events back-dated (so that ``within`` windows close while the bench runs).
    """
    rng = random.Random(seed)
    every = round(1 / dup_ratio) if dup_ratio > 0 else 0
    now_s = int(time.time())
    originals: list[tuple[str, str, dict[str, Any]]] = []
    events: list[tuple[str, str, dict[str, Any]]] = []
    identify_ids: set[str] = set()
    resends = 0
    for i in range(n):
        if every and i % every == every - 1 and originals:
            events.append(rng.choice(originals))
            resends += 1
            continue
        person = f"person-{rng.randrange(people):07d}"
        event_id = str(ULID())
        if identify_ratio and rng.random() < identify_ratio:
            item = {"op": "identify", "id": event_id, "customer": person,
                    "attributes": {"plan": rng.choice(IDENTIFY_PLANS),
                                   "city": rng.choice(CITIES)},
                    "anonymous_id": None, "timestamp": None, "update": False}
            identify_ids.add(event_id)
            events.append((person, event_id, item))  # never resent: resends copy events
            continue
        if segments:
            backdate = rng.randrange(backdate_max_s) if rng.random() < backdated_ratio else 0
            item = {"op": "event", "id": event_id, "name": rng.choice(NAME_POOL),
                    "type": "event", "data": _segment_data(rng), "timestamp": now_s - backdate,
                    "customer": person}
        else:
            item = {"op": "event", "id": event_id, "name": rng.choice(NAMES), "type": "event",
                    "data": _data(rng), "timestamp": now_s, "customer": person}
        originals.append((person, event_id, item))
        events.append(originals[-1])
    return Workload(events, resends, identify_ids)


def segment_definitions(n: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """n varied definitions over :data:`NAME_POOL` (deterministic for a seed).

    Shares: 35% plain ``event``; 20% ``event`` + ``within``; 15% ``where`` on ``items[].type``;
    10% ``all`` [event within, ``not`` other event within]; 10% ``count`` >= 2 with an attribute
    condition; 5% ``any`` [attribute, event ``where total``]; 5% attribute only (never touched by
    events: evaluated only when the definition is activated).
    """
    rng = random.Random(seed * 7919 + n)
    definitions = []
    for i in range(n):
        a, b = rng.sample(NAME_POOL, 2)
        window = rng.choice(("30m", "1h", "2h", "1d", "7d"))
        kind = rng.random()
        if kind < 0.35:
            match: dict[str, Any] = {"event": a}
        elif kind < 0.55:
            match = {"event": a, "within": window}
        elif kind < 0.70:
            match = {"event": a, "where": [{"path": "items[].type", "op": "eq",
                                            "value": rng.choice(ITEM_TYPES)}],
                     "count": {"gte": 1}, "within": window}
        elif kind < 0.80:
            match = {"all": [{"event": a, "within": window},
                             {"not": {"event": b, "within": window}}]}
        elif kind < 0.90:
            match = {"all": [{"event": a, "count": {"gte": 2}},
                             {"attribute": "plan", "op": "neq", "value": "enterprise"}]}
        elif kind < 0.95:
            match = {"any": [{"attribute": "plan", "op": "eq", "value": "pro"},
                             {"event": a, "where": [{"path": "total", "op": "gt",
                                                     "value": rng.randrange(100, 450)}]}]}
        else:
            match = {"attribute": rng.choice(("plan", "city", "age")), "op": "exists"}
        definitions.append((f"seg-{i:05d}", {"name": f"bench segment {i}", "match": match}))
    return definitions
