"""``GET /api/v1/search/customers?q=&limit=``: people whose id or email starts with ``q``.

For the console's person pickers (Send Event, Resend). Every worker reads its own partitions, by
range and never more than ``limit`` keys per partition and kind: ids from ``profiles`` and
``history_size`` (people with events but no identify yet) on the person partitions, emails from
the ``email:`` aliases on the identifier partitions. The receiving worker merges the answers by
person, in the membership listing's order (whole-number ids by value first).
"""

from __future__ import annotations

import heapq
from typing import Any, Iterator

from aiohttp import web
from yarl import URL

from app.api import cluster
from app.api.responses import ApiError
from app.core.profiles import identifiers
from app.queries.segments import natural_key
from app.runtime import Runtime
from app.topics import ALIASES, HISTORY_SIZE, PROFILES

PATH = "/api/v1/search/customers"
MAX_LIMIT = 50
DEFAULT_LIMIT = 10
MAX_QUERY = 200


def _prefixed(store: Any, prefix: str, limit: int) -> Iterator[tuple[str, Any]]:
    stop = prefix[:-1] + chr(ord(prefix[-1]) + 1) if prefix else "\U0010ffff"
    for n, item in enumerate(store.range(prefix, stop)):
        if n >= limit:
            return
        yield item


def local_matches(rt: Runtime, q: str, limit: int) -> dict[str, dict[str, Any]]:
    """person id → {"id", "email"?} for this worker's partitions."""
    tables, topics = rt.state.tables, rt.topics
    found: dict[str, dict[str, Any]] = {}
    people = cluster.owned_partitions(rt, topics.person_events.name,
                                      topics.person_events.partitions)
    for partition in people:
        for table in (PROFILES, HISTORY_SIZE):
            for person, value in _prefixed(tables[table].store(partition), q, limit):
                profile = value if table == PROFILES else \
                    tables[PROFILES].get(partition, person)
                if profile is not None and (profile.get("merged_into") or
                                            profile.get("deleted")):
                    continue
                entry = found.setdefault(person, {"id": person})
                email = identifiers(profile).get("email") if profile else None
                if email:
                    entry["email"] = email
    if q:
        aliases = cluster.owned_partitions(rt, topics.raw_events.name,
                                           topics.raw_events.partitions)
        for partition in aliases:
            store = tables[ALIASES].store(partition)
            for key, person in _prefixed(store, f"email:{q}", limit):
                if isinstance(person, str):  # (not a parked merge)
                    found.setdefault(person, {"id": person})["email"] = key[len("email:"):]
    return found


def combine(answers: list[dict[str, dict[str, Any]]], limit: int) -> list[dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for answer in answers:
        for person, entry in answer.items():
            merged.setdefault(person, {}).update(entry)
    return [merged[p] for p in heapq.nsmallest(limit, merged, key=natural_key)]


async def search_people(rt: Runtime, request: web.Request, q: str, raw_limit: str
                        ) -> list[dict[str, Any]]:
    """People whose id or email starts with ``q``, from every worker (a 400 for a bad
    parameter)."""
    q = q.strip()
    raw_limit = raw_limit or str(DEFAULT_LIMIT)
    if not (raw_limit.isascii() and raw_limit.isdigit()) or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise ApiError(400, f"limit: must be an integer between 1 and {MAX_LIMIT}")
    if len(q) > MAX_QUERY:
        raise ApiError(400, f"q: at most {MAX_QUERY} characters")
    limit = int(raw_limit)
    answers = [local_matches(rt, q, limit)]
    path_qs = str(URL(PATH).with_query({"q": q, "limit": str(limit)}))
    for answer in await cluster.gather(request, rt, path_qs):
        answers.append({entry["id"]: entry for entry in answer["customers"]})
    return combine(answers, limit)
