"""Activity of an anonymous id as pure decisions: kept under the id (deduplicated, within the
anonymous horizon) until a link names its person, then moved to that person.

The stored value of an anonymous id is ``{"seen": {event id: dedup entry}, "events": [...]}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.core import dedup, history
from app.core.commands import Link
from app.core.dedup import Ref, Verdict
from app.core.messages import Event
from app.core.outputs import Count, counted
from app.core.person import activity_of
from app.core.routes import Route

Item = dict[str, Any]
Stored = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Policy:
    horizon_s: int
    dedup_horizon_s: int
    retention: history.Retention


def too_old(item: Item, horizon_s: int) -> bool:
    """Older than the anonymous horizon when it arrived: never kept, whether or not its
    anonymous id is linked yet, so the outcome does not depend on that order."""
    return bool(item["timestamp"] <= item["received_at"] // 1000 - horizon_s)


def forward(item: Item, person: str) -> list[Route | Count]:
    """An event of an anonymous id already linked: straight to the person."""
    return [Route(person, {**item, "person": person}), counted("anonymous_events:forwarded")]


def store(stored: Stored | None, item: Item, ref: Ref, *, now_s: float,
          policy: Policy) -> tuple[Stored | None, Count]:
    """An event of an anonymous id nobody is linked to yet: the id's stored value after it
    (None: unchanged, a duplicate)."""
    state = stored or {"seen": {}, "events": []}
    seen = state["seen"]
    # Not judged with the clock, unlike a person's: an expired id stays a duplicate here until
    # the next new id prunes it, as it always has (replays must decide the same).
    verdict = dedup.classify(seen, item["id"], ref)
    if verdict is Verdict.DUPLICATE:
        return None, counted("verdict:duplicate")
    now_ms = int(now_s * 1000)
    if verdict is Verdict.NEW:
        seen = dedup.remember(dedup.prune(seen, now_ms), item["id"], ref, now_ms=now_ms,
                              horizon_ms=policy.dedup_horizon_s * 1000)
    activity = {**activity_of(item, None), "received_at": item["received_at"]}
    events = history.append(state["events"], activity, now_s=now_s, retention=policy.retention)
    return {"seen": seen, "events": events}, counted("anonymous_events:stored")


def links(current: str | None, link: Link) -> bool:
    """Whether ``link`` takes the anonymous id: the first link wins, a merge may move it."""
    return current in (None, link.person, link.relink_from)


def moved(stored: Stored, link: Link, horizon_s: int) -> list[Route | Count]:
    """The stored events (within the horizon at the link's time) move to the linked person."""
    at = link.at
    horizon = at - horizon_s
    out: list[Route | Count] = [
        Route(link.person, Event.create(
            person=link.person, id=event["id"], name=event["name"], type=event["type"],
            data=event["data"], timestamp=event["timestamp"],
            received_at=event.get("received_at", at * 1000), processed_at=at,
            source="anonymous").item)
        for event in stored["events"] if event["timestamp"] > horizon]
    out.append(Count("anonymous_links:linked"))
    return out
