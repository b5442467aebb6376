"""The crash schedule's expected final state, what the read API shows, and the differences."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from app.segments.evaluate import is_member
from app.testing.chaos.workload import Workload, parsed_segments
from app.testing.harness import Deployment


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
