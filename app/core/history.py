"""A person's (or an anonymous id's) stored events: append, retention and the activity query.

History is a list of activities ``{"id", "name", "type", "data", "timestamp", "processed_at"}``
kept sorted by ``(timestamp, id)``, so the activity API pages newest-first with a stable cursor
and a back-dated event lands where it happened, not where it arrived.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

Activity = dict[str, Any]


@dataclass(frozen=True)
class Retention:
    max_age_s: int
    max_events: int


def _order(activity: Activity) -> tuple[int, str]:
    return (activity["timestamp"], activity["id"])


def contains(history: list[Activity], event_id: str, timestamp: int) -> bool:
    at = bisect.bisect_left(history, (timestamp, event_id), key=_order)
    return at < len(history) and history[at]["id"] == event_id


def append(history: list[Activity], activity: Activity, *, now_s: float,
           retention: Retention) -> list[Activity]:
    """Return a new history with ``activity`` in place and retention applied.

    Appending an activity that is already there returns the history unchanged (idempotent).
    """
    if contains(history, activity["id"], activity["timestamp"]):
        return history
    at = bisect.bisect_right(history, _order(activity), key=_order)
    return prune([*history[:at], activity, *history[at:]], now_s=now_s, retention=retention)


def prune(history: list[Activity], *, now_s: float, retention: Retention) -> list[Activity]:
    """Drop events older than the retention age (0: no age limit), then the oldest beyond the
    count limit."""
    start = len(history) - retention.max_events
    if retention.max_age_s:
        cutoff = now_s - retention.max_age_s
        start = max(start, bisect.bisect_left(history, cutoff, key=lambda a: a["timestamp"]))
    return history if start <= 0 else history[start:]


@dataclass(frozen=True)
class ActivityQuery:
    since_s: float
    type: str | None = None
    name: str | None = None
    cursor: str | None = None
    limit: int = 50


def encode_cursor(activity: Activity) -> str:
    return f"{activity['timestamp']}.{activity['id']}"


def decode_cursor(cursor: str) -> tuple[int, str]:
    """Raise ``ValueError`` for a cursor this module did not make."""
    timestamp, _, event_id = cursor.partition(".")
    if not event_id:
        raise ValueError("malformed cursor")
    return int(timestamp), event_id


def query(history: list[Activity], q: ActivityQuery) -> tuple[list[Activity], str | None]:
    """Newest first, at most ``q.limit``; returns the page and the cursor of the next one."""
    end = len(history)
    if q.cursor is not None:
        end = bisect.bisect_left(history, decode_cursor(q.cursor), key=_order)
    page: list[Activity] = []
    for index in range(end - 1, -1, -1):
        activity = history[index]
        if activity["timestamp"] < q.since_s:
            break
        if q.type is not None and activity["type"] != q.type:
            continue
        if q.name is not None and activity["name"] != q.name:
            continue
        if len(page) == q.limit:
            return page, encode_cursor(page[-1])
        page.append(activity)
    return page, None
