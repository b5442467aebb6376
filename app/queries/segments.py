"""Segments as both the API and the console read them: summaries (definition, cluster-wide
member count and state), members in listing order, and the event-name index."""

from __future__ import annotations

import asyncio
import heapq
from typing import Any, Iterator
from urllib.parse import quote

from aiohttp import web
from yarl import URL

from app.api import cluster
from app.core.name_search import compile_query
from app.producer import partition_for
from app.runtime import Runtime
from app.topics import EVENT_NAMES, MEMBERSHIP, SEGMENT_MEMBERS, SEGMENT_STATE

SEGMENTS_PATH = "/api/v1/segments"
EVENT_NAMES_PATH = "/api/v1/events/names"
#: Members looked at between two yields to the event loop.
_SCAN_SLICE = 5_000


def segment_path(segment_id: str) -> str:
    """The API path of one segment (what peers are asked for)."""
    return f"{SEGMENTS_PATH}/{quote(segment_id, safe='')}"


def _owned(rt: Runtime) -> list[int]:
    topic = rt.topics.person_events
    return cluster.owned_partitions(rt, topic.name, topic.partitions)


def _stores(rt: Runtime, table: str) -> Iterator[Any]:
    """This worker's own partitions (a revoked partition's local copy may be stale)."""
    return (rt.state.tables[table].store(p) for p in _owned(rt))


def local_states(rt: Runtime, segment_id: str) -> dict[int, dict[str, Any]]:
    """This worker's share: per owned partition, the activated version and member count."""
    found = {p: rt.state.tables[SEGMENT_STATE].store(p).get(segment_id) for p in _owned(rt)}
    return {p: state for p, state in found.items() if state is not None}


def partition_states(rt: Runtime, segment_ids: list[str]) -> dict[str, Any]:
    """What a peer asking with ``partition_states=1`` is answered."""
    return {"partition_states": {sid: {str(p): state for p, state in local_states(rt, sid).items()}
                                 for sid in segment_ids}}


async def cluster_states(rt: Runtime, request: web.Request, segment_ids: list[str], path: str,
                         *, required: bool = True) -> dict[str, dict[int, dict[str, Any]]]:
    """Per segment, every partition's state from every worker; ``path`` is the API GET whose
    ``partition_states=1`` answer a peer gives (a forwarded request answers for itself alone)."""
    states = {sid: local_states(rt, sid) for sid in segment_ids}
    path_qs = str(URL(path).with_query({"partition_states": "1"}))
    for answer in await cluster.gather(request, rt, path_qs, required=required):
        for sid, by_partition in answer.get("partition_states", {}).items():
            states.setdefault(sid, {}).update({int(p): v for p, v in by_partition.items()})
    return states


def summary(rt: Runtime, segment_id: str, value: dict[str, Any],
            states: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """A segment as the API shows it: live once every partition activated this version."""
    live = all(states.get(p, {}).get("version") == value["version"]
               for p in range(rt.topics.person_events.partitions))
    return {"id": segment_id, **value["definition"], "version": value["version"],
            "updated_at": value["updated_at"], "state": "live" if live else "building",
            "members": sum(st.get("members", 0) for st in states.values())}


async def segment_list(rt: Runtime, request: web.Request) -> list[dict[str, Any]]:
    live = rt.catalog.live()
    states = await cluster_states(rt, request, sorted(live), SEGMENTS_PATH)
    return [summary(rt, sid, live[sid], states.get(sid, {})) for sid in sorted(live)]


async def segment_summary(rt: Runtime, request: web.Request, segment_id: str, *,
                          required: bool = True) -> dict[str, Any] | None:
    """The segment's summary, or None when the catalog has no such segment."""
    value = rt.catalog.latest.get(segment_id)
    if value is None:
        return None
    states = await cluster_states(rt, request, [segment_id], segment_path(segment_id),
                                  required=required)
    return summary(rt, segment_id, value, states[segment_id])


async def segment_members(rt: Runtime, request: web.Request, segment_id: str, *, limit: int,
                          cursor: str | None) -> dict[str, Any]:
    """``{"people": [...], "next": cursor or None}``: one page of members in listing order."""
    people: list[str] = []
    for store in _stores(rt, SEGMENT_MEMBERS):
        # Each partition's limit+1 first after the cursor are enough for the global page.
        people.extend(await first_members(store, segment_id, cursor, limit + 1))
    query = {"limit": str(limit), **({"cursor": cursor} if cursor else {})}
    path_qs = str(URL(segment_path(segment_id) + "/membership").with_query(query))
    peer_more = False
    for answer in await cluster.gather(request, rt, path_qs):
        people.extend(answer["people"])
        peer_more = peer_more or answer["next"] is not None
    people = sorted(set(people), key=natural_key)
    page = people[:limit]
    more = len(people) > limit or peer_more
    return {"people": page, "next": page[-1] if more and page else None}


def customer_segments(rt: Runtime, person: str) -> list[dict[str, Any]]:
    """The segments a person is in (this worker's tables), with when they entered."""
    partition = partition_for(person.encode(), rt.topics.person_events.partitions)
    state = rt.state.tables[MEMBERSHIP].get(partition, person) or {"in": {}}
    return [{"id": sid, "since": since} for sid, since in sorted(state["in"].items())]


async def event_names(rt: Runtime, request: web.Request, q: str, limit: int
                      ) -> list[dict[str, Any]]:
    """Event names matching the search ``q``, most frequent first, counted on every worker."""
    matches = compile_query(q)
    totals: dict[str, dict[str, int]] = {}

    def add(name: str, count: int, last_seen: int) -> None:
        total = totals.setdefault(name, {"count": 0, "last_seen": 0})
        total["count"] += count
        total["last_seen"] = max(total["last_seen"], last_seen)

    for store in _stores(rt, EVENT_NAMES):
        for name, entry in store.items():
            if matches(name):
                add(name, entry["count"], entry["last_seen"])
    path_qs = str(URL(EVENT_NAMES_PATH).with_query({"q": q, "limit": str(limit)}))
    for answer in await cluster.gather(request, rt, path_qs):
        for entry in answer["names"]:
            add(entry["name"], entry["count"], entry["last_seen"])
    found = sorted(totals.items(), key=lambda kv: (-kv[1]["count"], kv[0]))
    return [{"name": n, **t} for n, t in found[:limit]]


def natural_key(person: str) -> tuple[int, int, str]:
    """The members listing's order: ids that are whole numbers by value ("5, 10, 11", not
    "10, 11, 5"), then every other id as a string (code point order)."""
    if person.isascii() and person.isdigit():
        return (0, int(person), person)
    return (1, 0, person)


async def first_members(store: Any, segment_id: str, after: str | None, count: int
                        ) -> list[str]:
    """The ``count`` first members of a partition in :func:`natural_key` order after ``after``.

    The index (``SEGMENT_MEMBERS``) is kept in byte order, where "10" < "5", so every member of
    the segment in the partition is looked at (keys only, ~2 us each), in slices between which
    the event loop runs; what is kept is bounded by ``count``."""
    prefix = f"{segment_id}\x00"
    floor = natural_key(after) if after is not None else None
    best: list[str] = []
    batch: list[str] = []
    for seen, (key, _) in enumerate(store.range(prefix, f"{segment_id}\x01"), 1):
        person = key[len(prefix):]
        if floor is None or natural_key(person) > floor:
            batch.append(person)
        if seen % _SCAN_SLICE == 0:
            best = heapq.nsmallest(count, best + batch, key=natural_key)
            batch = []
            await asyncio.sleep(0)
    return heapq.nsmallest(count, best + batch, key=natural_key)
