"""The person stage as one pure step: ``(state, item) -> (state, verdict)``.

Runs for every item on ``person.events`` (events and identifies, already resolved to a canonical
person). Deduplicates, appends to history, folds identifies into the profile.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from app.core import dedup, history, profiles
from app.core.membership import Membership
from app.core.dedup import Ref, Seen, Verdict


@dataclass(frozen=True)
class Policy:
    dedup_horizon_s: int
    retention: history.Retention


@dataclass(frozen=True)
class PersonState:
    seen: Seen
    history: list[history.Activity]
    profile: profiles.Profile | None
    membership: Membership | None = None

    @classmethod
    def empty(cls) -> "PersonState":
        return cls(seen={}, history=[], profile=None)

    @property
    def attributes(self) -> dict[str, Any]:
        return self.profile["attributes"] if self.profile else {}


def activity_of(item: dict[str, Any], processed_at: int | None) -> history.Activity:
    return {
        "id": item["id"],
        "name": item["name"],
        "type": item["type"],
        "data": item["data"],
        "timestamp": item["timestamp"],
        "processed_at": processed_at,
    }


def step(state: PersonState, person_id: str, item: dict[str, Any], ref: Ref, *,
         now_s: float, policy: Policy) -> tuple[PersonState, Verdict]:
    now_ms = int(now_s * 1000)
    verdict = dedup.classify(state.seen, item["id"], ref)
    if verdict is Verdict.DUPLICATE:
        return state, verdict
    seen = state.seen
    if verdict is Verdict.NEW:
        seen = dedup.remember(dedup.prune(seen, now_ms), item["id"], ref, now_ms=now_ms,
                              horizon_ms=policy.dedup_horizon_s * 1000)
    # A redelivery re-runs the same transformations; each is idempotent, so whatever part of the
    # first run reached the state is not applied twice and whatever did not is applied now.
    if item["op"] == "identify":
        profile = profiles.apply_identify(state.profile, person_id, item)
        return replace(state, seen=seen, profile=profile), verdict
    processed_at = item.get("processed_at") or int(item["received_at"]) // 1000
    events = history.append(state.history, activity_of(item, processed_at), now_s=now_s,
                            retention=policy.retention)
    return replace(state, seen=seen, history=events), verdict
