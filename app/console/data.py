"""What the console writes, and the reads only the console makes, on the same tables, topics and
pipeline as the API.

Reads it shares with the API are in :mod:`app.queries` (one person's data on this worker, which
the console's person pages are forwarded to by :mod:`app.console.forward`; lists and counts
gathered from every worker). Writes go through the normal pipeline: an event is validated by :func:`app.ingest.validate.validate_event` and submitted with
``rt.batcher.submit`` exactly like a track API call; a segment definition is validated by
:func:`app.segments.definition.parse_segment` and published like ``PUT /api/v1/segments/{id}``.

The only read without an index is "recent activity of one event name across people" (and the
sparklines' daily counts): it scans this worker's own history partitions, bounded by
:data:`SCAN_MAX_PEOPLE` keys and :data:`SCAN_MAX_EVENTS` events, and is cached for a few seconds.
"""

from __future__ import annotations

import bisect
import heapq
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from app.api import cluster
from app.api.responses import ApiError
from app.core import history
from app.core.items import new_id
from app.ingest.validate import validate_event
from app.producer import BrokerUnavailable
from app.api.segments import publish_definition
from app.runtime import Runtime
from app.segments.definition import parse_segment
from app.person_store import stored_history
from app.topics import ANONYMOUS_HISTORY, HISTORY_SIZE, TopicSpec

DAY_S = 86_400
#: Days covered by sparklines and by the console's activity views.
WINDOW_DAYS = 30
SCAN_MAX_PEOPLE = 5_000
SCAN_MAX_EVENTS = 200_000
SCAN_CACHE_S = 2.0


# --- events: send and resend ---------------------------------------------------------------------


async def submit(rt: Runtime, topic: TopicSpec, key: str, item: dict[str, Any]) -> None:
    """Hand an item to the pipeline as the track API does; ApiError(503) if the broker is away."""
    try:
        await rt.batcher.submit(topic.name, topic.partitions, key, item)
    except BrokerUnavailable as exc:
        raise ApiError(503, f"broker: {exc}; nothing was accepted, retry") from None
    rt.counters[f"accepted:{item['op']}"] += 1


async def send_event(rt: Runtime, *, customer: str | None, anonymous_id: str | None,
                     body: dict[str, Any]) -> dict[str, Any]:
    """Validate and submit one event (identified when ``customer`` is set); returns the item.

    Raises :class:`ValidationError` with every problem, like the track API's 400.
    """
    now_s = rt.clock.now()
    if customer is not None:
        item = validate_event(body, customer=customer, anonymous=False, now_s=now_s,
                              new_id=new_id, received_at_ms=int(now_s * 1000))
        await submit(rt, rt.topics.raw_events, customer, item)
    else:
        item = validate_event({**body, "anonymous_id": anonymous_id}, customer=None,
                              anonymous=True, now_s=now_s, new_id=new_id,
                              received_at_ms=int(now_s * 1000))
        await submit(rt, rt.topics.raw_anonymous, item["anonymous_id"], item)
    return item


def find_activity(events: list[dict[str, Any]], event_id: str) -> dict[str, Any] | None:
    for activity in reversed(events):
        if activity.get("id") == event_id:
            return activity
    return None


# --- activity ---------------------------------------------------------------------------------


def activity_page(events: list[dict[str, Any]], *, now_s: float, name: str | None,
                  type_: str | None, cursor: str | None, limit: int = 50
                  ) -> tuple[list[dict[str, Any]], str | None]:
    if cursor is not None:
        try:
            history.decode_cursor(cursor)
        except ValueError:
            cursor = None
    query = history.ActivityQuery(since_s=now_s - WINDOW_DAYS * DAY_S, type=type_ or None,
                                  name=name or None, cursor=cursor, limit=limit)
    return history.query(events, query)


def _stores(rt: Runtime, table: str, topic: TopicSpec) -> Iterator[tuple[int, Any]]:
    """This worker's own partitions (a revoked partition's local copy may be stale)."""
    owned = cluster.owned_partitions(rt, topic.name, topic.partitions)
    return ((p, rt.state.tables[table].store(p)) for p in owned)


# --- bounded scan of recent history ------------------------------------------------------------


@dataclass
class Recent:
    """Daily counts per event name over the window, and (optionally) one name's newest rows."""

    day0: int  # Unix day number of the first day of the window
    daily: dict[str, list[int]] = field(default_factory=dict)
    #: ``(timestamp, id, kind, who, activity)`` newest first; kind is "person" or "anonymous"
    rows: list[tuple[int, str, str, str, dict[str, Any]]] = field(default_factory=list)
    people: int = 0
    events: int = 0
    complete: bool = True


_cache: dict[tuple[int, str | None, int], tuple[float, Recent]] = {}


def recent(rt: Runtime, *, name: str | None = None, max_rows: int = 100) -> Recent:
    """Scan recent local history (bounded; cached for :data:`SCAN_CACHE_S`)."""
    key = (id(rt), name, max_rows)
    hit = _cache.get(key)
    if hit is not None and time.monotonic() - hit[0] < SCAN_CACHE_S:
        return hit[1]
    result = _scan(rt, name=name, max_rows=max_rows, now_s=rt.clock.now())
    if len(_cache) > 64:
        _cache.clear()
    _cache[key] = (time.monotonic(), result)
    return result


def _scan(rt: Runtime, *, name: str | None, max_rows: int, now_s: float) -> Recent:
    today = int(now_s) // DAY_S
    day0 = today - WINDOW_DAYS + 1
    since = day0 * DAY_S
    out = Recent(day0=day0)
    heap: list[tuple[int, str, str, str, dict[str, Any]]] = []

    def take(kind: str, who: str, events: list[dict[str, Any]]) -> None:
        start = bisect.bisect_left(events, since, key=lambda a: a["timestamp"])
        for activity in events[start:]:
            day = activity["timestamp"] // DAY_S - day0
            if not 0 <= day < WINDOW_DAYS:
                continue  # future-dated (allowed up to a day ahead)
            counts = out.daily.get(activity["name"])
            if counts is None:
                counts = out.daily[activity["name"]] = [0] * WINDOW_DAYS
            counts[day] += 1
            if name is not None and activity["name"] == name:
                entry = (activity["timestamp"], activity["id"], kind, who, activity)
                if len(heap) < max_rows:
                    heapq.heappush(heap, entry)
                elif entry[:2] > heap[0][:2]:
                    heapq.heapreplace(heap, entry)

    sources = ((HISTORY_SIZE, rt.topics.person_events, "person"),
               (ANONYMOUS_HISTORY, rt.topics.raw_anonymous, "anonymous"))
    for table, topic, kind in sources:
        for partition, store in _stores(rt, table, topic):
            for who, value in store.items():
                events = stored_history(rt.state.tables, partition, who) if kind == "person" \
                    else value.get("events", [])
                out.people += 1
                out.events += len(events)
                take(kind, who, events)
                if out.people >= SCAN_MAX_PEOPLE or out.events >= SCAN_MAX_EVENTS:
                    out.complete = False
                    break
            if not out.complete:
                break
        if not out.complete:
            break
    out.rows = sorted(heap, key=lambda e: (e[0], e[1]), reverse=True)
    return out


# --- segments ------------------------------------------------------------------------------------


def segment_definition(rt: Runtime, segment_id: str) -> dict[str, Any] | None:
    """The current definition document (every worker follows the whole definitions topic)."""
    value = rt.catalog.latest.get(segment_id)
    definition: dict[str, Any] | None = None if value is None else value["definition"]
    return definition


async def save_segment(rt: Runtime, segment_id: str, doc: Any) -> None:
    """Validate (``DefinitionError`` on failure) and publish a definition, as the segments API does."""
    parsed = parse_segment(segment_id, doc)
    value = {"definition": parsed.to_json(), "version": new_id(),
             "updated_at": int(rt.clock.now())}
    await publish_definition(rt, segment_id, value)


async def delete_segment(rt: Runtime, segment_id: str) -> None:
    await publish_definition(rt, segment_id, None)
