"""Decisions about a person, taken on the worker that owns the person and after every write
accepted before the request (issue 13.1 and 13.2).

A request that decides something from a person's state (does this person exist? what is their
profile, their stored event?) is answered by the worker owning the person's partition — the
whole request forwarded there (a render), or only the per-person part, one signed request per
worker (a CSV import's "which of these people exist") — so every worker gives the same answer.

The owner answers once its person stage has applied every write accepted before the request
(:func:`settle`): the request's *positions* are the end offsets of the ``raw.events`` partitions
concerned, read when it arrived (every write answered ``200`` before is below them, whichever
worker accepted it); the owner waits until its router applied those, then until its person stage
applied ``person.events`` up to the end offset read after that (``app.progress``). The wait is
bounded (``EVENTIDE_READ_YOUR_WRITES_TIMEOUT_S``, 10 s by default): past it, a 503 says the
worker is behind and to retry. A partition that is not (or no longer) owned here — the group is
rebalancing — is a 503 too, never an answer from state that is not this worker's.

Writes are matched by partition: an identify, event or delete sent with the identifier the
request names lands on the same ``raw.events`` partition (people addressed by that identifier).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Iterable, Mapping

import aiohttp
import orjson
from aiohttp import web

from app.api import cluster
from app.api import peers as peer_auth
from app.api.people import lookup_profile
from app.api.context import runtime
from app.api.responses import ApiError, json_response
from app.producer import partition_for
from app.runtime import Runtime

log = logging.getLogger(__name__)

#: Default bound on waiting for earlier writes to be applied (EVENTIDE_READ_YOUR_WRITES_TIMEOUT_S).
DEFAULT_TIMEOUT_S = 10.0
#: The peer-only route that answers "which of these identifiers name a stored person".
PEOPLE_LOOKUP_PATH = "/internal/v1/people/lookup"
#: Identifiers per lookup request (a CSV chunk has at most 500 rows).
MAX_LOOKUP_IDENTIFIERS = 1000


def timeout_s(env: Mapping[str, str] | None = None) -> float:
    raw = ((os.environ if env is None else env).get("EVENTIDE_READ_YOUR_WRITES_TIMEOUT_S")
           or "").strip()
    try:
        value = float(raw)
    except ValueError:
        return DEFAULT_TIMEOUT_S
    return value if value > 0 else DEFAULT_TIMEOUT_S


def partition_of(rt: Runtime, identifier: str) -> int:
    return partition_for(identifier.encode(), rt.topics.raw_events.partitions)


def owner_of(rt: Runtime, identifier: str) -> str | None:
    """The URL of the worker owning ``identifier``'s person partition; None: this one."""
    spec = rt.topics.person_events
    return cluster.owner_of(rt, spec.name, spec.partitions, identifier)


async def positions(rt: Runtime, partitions: Iterable[int]) -> dict[int, int]:
    """The end offsets of these ``raw.events`` partitions now: every write accepted before this
    call is below them."""
    wanted = sorted(set(partitions))
    if not wanted or rt.end_offsets is None:
        return {}
    try:
        return await rt.end_offsets(rt.topics.raw_events.name, wanted)
    except Exception as exc:  # noqa: BLE001 - any client failure is "the broker is away"
        log.warning("reading the end offsets of %s failed: %r", rt.topics.raw_events.name, exc)
        raise ApiError(503, "broker: cannot read how far the input log goes; nothing was "
                            "decided, retry") from None


def _owned(rt: Runtime, topic: str, partition: int) -> bool:
    if not rt.assigned and not cluster.peers(rt):
        return True  # alone, before the first assignment is known: everything is here
    return (topic, partition) in rt.assigned and rt.state.is_recovered(topic, partition)


async def settle(rt: Runtime, raw_positions: Mapping[int, int], *,
                 wait_s: float | None = None) -> None:
    """Return once this worker's person stage has applied every ``raw.events`` record below
    ``raw_positions`` (partition → offset); ApiError 503 when a partition is not owned here or
    the wait runs out."""
    applied = rt.applied
    # (A partition nothing was ever written to has nothing to wait for.)
    pending = {p: at for p, at in raw_positions.items()
               if at > 0 and applied.confirmed.get(p, -1) < at}
    if not pending or rt.end_offsets is None:
        return
    raw, people = rt.topics.raw_events.name, rt.topics.person_events.name
    for partition in pending:
        if not (_owned(rt, raw, partition) and _owned(rt, people, partition)):
            raise ApiError(503, f"partition {partition} is changing hands (the worker group is "
                                "rebalancing); nothing was decided, retry")
    loop = asyncio.get_running_loop()
    budget = timeout_s() if wait_s is None else wait_s
    deadline = loop.time() + budget
    short = await applied.wait(raw, pending, deadline)
    if not short:
        try:
            ends = await rt.end_offsets(people, sorted(pending))
        except Exception as exc:  # noqa: BLE001
            log.warning("reading the end offsets of %s failed: %r", people, exc)
            raise ApiError(503, "broker: cannot read how far the person stage's input goes; "
                                "nothing was decided, retry") from None
        short = await applied.wait(people, ends, deadline)
    if short:
        behind = ", ".join(f"partition {p}: {n} records" for p, n in sorted(short.items()))
        rt.counters["read_your_writes:timeout"] += 1
        raise ApiError(503, f"this worker has not applied the writes accepted before this "
                            f"request within {budget:g} s ({behind} behind); nothing was "
                            "decided, retry")
    for partition, at in pending.items():
        applied.confirmed[partition] = max(applied.confirmed.get(partition, -1), at)


async def settle_for(rt: Runtime, identifier: str) -> None:
    """:func:`settle` for one identifier's writes, accepted anywhere before now."""
    partition = partition_of(rt, identifier)
    await settle(rt, await positions(rt, [partition]))


# --- which of these people exist, asked of their owners ---------------------------------------


async def lookup_local(rt: Runtime, identifiers: Iterable[str],
                       raw_positions: Mapping[int, int]) -> dict[str, str | None]:
    """identifier → the stored person it names (None: nobody), once settled here."""
    wanted = list(dict.fromkeys(identifiers))
    await settle(rt, {p: at for p, at in raw_positions.items()
                      if p in {partition_of(rt, i) for i in wanted}})
    found: dict[str, str | None] = {}
    for identifier in wanted:
        person = lookup_profile(rt, identifier)
        found[identifier] = None if person is None else person[0]
    return found


async def lookup_people(rt: Runtime, request: web.Request, identifiers: Iterable[str],
                        raw_positions: Mapping[int, int]) -> dict[str, str | None]:
    """identifier → stored person (None: nobody), each answered by the worker owning it, in one
    signed request per worker, after the writes below ``raw_positions``."""
    by_owner: dict[str | None, list[str]] = {}
    for identifier in dict.fromkeys(identifiers):
        by_owner.setdefault(owner_of(rt, identifier), []).append(identifier)

    async def ask(url: str | None, wanted: list[str]) -> dict[str, str | None]:
        if url is None:
            return await lookup_local(rt, wanted, raw_positions)
        found: dict[str, str | None] = {}
        for start in range(0, len(wanted), MAX_LOOKUP_IDENTIFIERS):
            part = wanted[start:start + MAX_LOOKUP_IDENTIFIERS]
            partitions = {partition_of(rt, i) for i in part}
            body = orjson.dumps({"identifiers": part,
                                 "positions": {str(p): at for p, at in raw_positions.items()
                                               if p in partitions}})
            found.update(await _post_peer(rt, request, url, PEOPLE_LOOKUP_PATH, body))
        return found

    answers = await asyncio.gather(*(ask(url, wanted) for url, wanted in by_owner.items()))
    merged: dict[str, str | None] = {}
    for answer in answers:
        merged.update(answer)
    return merged


async def _post_peer(rt: Runtime, request: web.Request, url: str, path: str,
                     body: bytes) -> dict[str, str | None]:
    headers = {"Content-Type": "application/json",
               **peer_auth.sign(rt.settings, "POST", path, body)}
    timeout = aiohttp.ClientTimeout(total=timeout_s() + 20)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.post(url + path, data=body, headers=headers,
                                    ssl=cluster.peer_ssl(rt, url)) as response:
                payload = await response.read()
                if response.status == 503:
                    raise ApiError(503, *cluster.error_messages(payload))
                response.raise_for_status()
                people = orjson.loads(payload)["people"]
                return {str(k): (None if v is None else str(v)) for k, v in people.items()}
    except (aiohttp.ClientError, asyncio.TimeoutError, orjson.JSONDecodeError, KeyError,
            AttributeError) as exc:
        log.warning("asking %s which people exist failed: %r", url, exc)
        raise ApiError(503, "the worker that owns some of these people did not answer; the "
                            "group may be rebalancing, retry") from None


async def people_lookup(request: web.Request) -> web.Response:
    """Peers only: ``{"identifiers": [...], "positions": {"<raw partition>": offset}}`` →
    ``{"people": {identifier: person or null}}``."""
    rt = runtime(request)
    if not cluster.is_forwarded(request):
        raise ApiError(404, f"{request.method} {request.path}: Not Found")
    try:
        body = orjson.loads(await request.read())
        identifiers = [str(i) for i in body["identifiers"]][:MAX_LOOKUP_IDENTIFIERS]
        raw_positions = {int(p): int(at) for p, at in body.get("positions", {}).items()}
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        raise ApiError(400, "body: expected identifiers and positions") from None
    return json_response({"people": await lookup_local(rt, identifiers, raw_positions)})


ROUTES = [web.post(PEOPLE_LOOKUP_PATH, people_lookup)]
