"""The person stage as one pure step: ``(state, item, seen) -> (state, verdict, writes)``.

Runs for every item on ``person.events`` (events and identifies, already resolved to a canonical
person). Judges the item's id, folds identifies into the profile, and says what to store: the
dedup entry of a new id and the activity of an event. The stored events themselves live under
keys of their own (:mod:`app.person_store`): a step never sees, copies or re-writes a history.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from app.core import dedup, history, profiles
from app.core.dedup import Entry, Ref, Verdict
from app.core.membership import Membership


@dataclass(frozen=True)
class Policy:
    dedup_horizon_s: int
    retention: history.Retention


@dataclass(frozen=True, init=False)
class PersonState:
    """A person's small values, read and written whole: profile and segment membership (made per
    item: ``__init__`` written out, ``tables.native`` "Made per item")."""

    profile: profiles.Profile | None
    membership: Membership | None = None

    def __init__(self, profile: profiles.Profile | None,
                 membership: Membership | None = None) -> None:
        object.__setattr__(self, "profile", profile)
        object.__setattr__(self, "membership", membership)

    @classmethod
    def empty(cls) -> "PersonState":
        return cls(profile=None)

    @property
    def attributes(self) -> dict[str, Any]:
        return self.profile["attributes"] if self.profile else {}


@dataclass(frozen=True, init=False)
class Step:
    """What :func:`step` decided (made per item: ``__init__`` written out, ``tables.native``
    "Made per item")."""

    state: PersonState
    verdict: Verdict
    #: The dedup entry to store under the item's id (a new id), else None.
    remember: Entry | None = None
    #: The activity to store (an event; storing it again is a no-op), else None.
    activity: history.Activity | None = None

    def __init__(self, state: PersonState, verdict: Verdict, remember: Entry | None = None,
                 activity: history.Activity | None = None) -> None:
        object.__setattr__(self, "state", state)
        object.__setattr__(self, "verdict", verdict)
        object.__setattr__(self, "remember", remember)
        object.__setattr__(self, "activity", activity)


def activity_of(item: dict[str, Any], processed_at: int | None) -> history.Activity:
    return {
        "id": item["id"],
        "name": item["name"],
        "type": item["type"],
        "data": item["data"],
        "timestamp": item["timestamp"],
        "processed_at": processed_at,
    }


def step(state: PersonState, person_id: str, item: dict[str, Any], ref: Ref,
         seen: Entry | None, *, now_s: float, policy: Policy) -> Step:
    """``seen``: what is remembered of the item's id (None: nothing)."""
    now_ms = int(now_s * 1000)
    verdict = dedup.judge(seen, ref, now_ms)
    if verdict is Verdict.DUPLICATE:
        return Step(state, verdict)
    remember = dedup.entry(item["id"], ref, now_ms=now_ms,
                           horizon_ms=policy.dedup_horizon_s * 1000) \
        if verdict is Verdict.NEW else None
    # A redelivery re-runs the same transformations; each is idempotent, so whatever part of the
    # first run reached the state is not applied twice and whatever did not is applied now.
    if item["op"] == "identify":
        profile = profiles.apply_identify(state.profile, person_id, item)
        return Step(replace(state, profile=profile), verdict, remember)
    # Processed at: when the person stage processed it (the seed's third reason for a gap after
    # Timestamp: a processing delay), or when an anonymous event was linked (set upstream). A
    # redelivery finds the first processing's activity stored and keeps it. Not judged by any
    # segment, and left out of digests: replaying the log processes again, later.
    processed_at = item.get("processed_at") or int(now_s)
    return Step(state, verdict, remember, activity_of(item, processed_at))
