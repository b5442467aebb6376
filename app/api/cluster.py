"""Reads on any worker: forward a keyed read to the worker that owns the key's partition, and
gather list reads from every worker.

Ownership comes from faust's assignor: every member's advertised URL and the partitions it was
given (``external_topic_distribution``) travel with each assignment, so every worker knows who
owns what. A forwarded request carries a header; a worker that receives one serves it locally
whatever its view (no forwarding loops while an assignment changes).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import web

from app.api.responses import ApiError
from app.producer import partition_for
from app.runtime import Runtime

FORWARDED = "X-Eventide-Forwarded"
_PASSED_HEADERS = ("Authorization", "Content-Type", "Accept")


def _distribution(rt: Runtime) -> dict[str, dict[str, list[int]]]:
    app = getattr(rt, "app", None)
    if app is None:
        return {}
    try:
        return {str(url): tps for url, tps in app.assignor.external_topic_distribution.items()}
    except AttributeError:
        return {}


def self_url(rt: Runtime) -> str:
    return rt.settings.advertised_url.rstrip("/")


def owner_of(rt: Runtime, topic: str, partitions: int, key: str) -> str | None:
    """The URL of the worker owning ``key``'s partition of ``topic``; None when it is this one
    (or nobody else is known)."""
    partition = partition_for(key.encode(), partitions)
    for url, topics in _distribution(rt).items():
        if partition in topics.get(topic, ()):
            url = url.rstrip("/")
            return None if url == self_url(rt) else url
    return None


def peers(rt: Runtime) -> list[str]:
    return sorted(url.rstrip("/") for url in _distribution(rt) if url.rstrip("/") != self_url(rt))


def owned_partitions(rt: Runtime, topic: str, partitions: int) -> list[int]:
    """Partitions of ``topic`` this worker owns (all of them when it runs alone)."""
    if not _distribution(rt) and not rt.assigned:
        return list(range(partitions))
    return sorted(p for (name, p) in rt.assigned if name == topic)


def is_forwarded(request: web.Request) -> bool:
    return request.headers.get(FORWARDED) == "1"


async def forward(request: web.Request, url: str) -> web.Response:
    headers = {k: v for k, v in request.headers.items() if k in _PASSED_HEADERS}
    headers[FORWARDED] = "1"
    body = await request.read() if request.can_read_body else None
    timeout = aiohttp.ClientTimeout(total=30)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.request(request.method, url + request.path_qs, headers=headers,
                                       data=body, ssl=False) as response:
                payload = await response.read()
                return web.Response(body=payload, status=response.status,
                                    content_type=response.content_type)
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise ApiError(503, f"worker {url}, which owns this key, did not answer ({exc}); the "
                            "group may be rebalancing, retry") from None


async def gather(request: web.Request, rt: Runtime, path_qs: str | None = None, *,
                 required: bool = True) -> list[Any]:
    """The JSON answers of every other worker to a GET of ``path_qs`` (default: this request's),
    each answering for its own share. A peer that does not answer makes the read a 503 (a
    partial sum would be silently wrong), unless ``required`` is false: then it is left out."""
    path_qs = path_qs or request.path_qs
    if is_forwarded(request):
        return []
    headers = {k: v for k, v in request.headers.items() if k in _PASSED_HEADERS}
    headers[FORWARDED] = "1"
    timeout = aiohttp.ClientTimeout(total=30)

    async def ask(session: aiohttp.ClientSession, url: str) -> Any:
        try:
            async with session.get(url + path_qs, headers=headers, ssl=False) as response:
                response.raise_for_status()
                return await response.json()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            if required:
                raise ApiError(503, f"worker {url} did not answer ({exc}); the group may be "
                                    "rebalancing, retry") from None
            return None

    async with aiohttp.ClientSession(timeout=timeout) as session:
        answers = await asyncio.gather(*(ask(session, url) for url in peers(rt)))
    return [answer for answer in answers if answer is not None]
