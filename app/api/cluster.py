"""Reads on any worker: forward a keyed read to the worker that owns the key's partition, and
gather list reads from every worker.

Ownership comes from faust's assignor: every member's advertised URL and the partitions it was
given (``external_topic_distribution``) travel with each assignment, so every worker knows who
owns what. A forwarded request is signed (``app.api.peers``); a worker that receives one serves it
locally whatever its view (no forwarding loops while an assignment changes). Errors name no
internal address (they are logged here instead), and a peer's 4xx answer is the caller's.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

import aiohttp
from aiohttp import web

from app.api import peers as peer_auth
from app.api.responses import ApiError
from app.producer import partition_for
from app.runtime import Runtime

log = logging.getLogger(__name__)

#: What of the caller's request a peer sees: never its credentials (the request is signed).
_PASSED_HEADERS = ("Content-Type", "Accept")


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
    """A request another worker forwarded here, its signature verified."""
    return peer_auth.from_peer(request)


def peer_headers(rt: Runtime, request: web.Request, path_qs: str, body: bytes,
                 method: str | None = None) -> dict[str, str]:
    headers = {k: v for k, v in request.headers.items() if k in _PASSED_HEADERS}
    headers.update(peer_auth.sign(rt.settings, method or request.method, path_qs, body))
    return headers


def peer_ssl(rt: Runtime, url: str) -> Any:
    return peer_auth.client_ssl(rt.settings) if url.startswith("https:") else None


async def forward(rt: Runtime, request: web.Request, url: str) -> web.Response:
    """Answer ``request`` (already authenticated here) from the worker at ``url``."""
    # body_exists, not can_read_body: a handler may have read (and cached) the body already.
    body = await request.read() if request.body_exists else b""
    headers = peer_headers(rt, request, request.path_qs, body)
    timeout = aiohttp.ClientTimeout(total=30)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.request(request.method, url + request.path_qs, headers=headers,
                                       data=body or None, ssl=peer_ssl(rt, url)) as response:
                payload = await response.read()
                return web.Response(body=payload, status=response.status,
                                    content_type=response.content_type)
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        log.warning("forwarding %s %s to %s failed: %r", request.method, request.path, url, exc)
        raise ApiError(503, "the worker that owns this key did not answer; the group may be "
                            "rebalancing, retry") from None


async def gather(request: web.Request, rt: Runtime, path_qs: str | None = None, *,
                 required: bool = True, body: bytes | None = None) -> list[Any]:
    """The JSON answers of every other worker to a GET of ``path_qs`` (default: this request's),
    or a POST of the JSON ``body`` when given, each answering for its own share. A peer that does
    not answer makes the read a 503 (a partial sum would be silently wrong), unless ``required``
    is false: then it is left out."""
    path_qs = path_qs or request.path_qs
    if is_forwarded(request):
        return []
    timeout = aiohttp.ClientTimeout(total=30)
    method = "GET" if body is None else "POST"

    async def ask(session: aiohttp.ClientSession, url: str) -> Any:
        headers = peer_headers(rt, request, path_qs, body or b"", method=method)
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            async with session.request(method, url + path_qs, headers=headers, data=body,
                                       ssl=peer_ssl(rt, url)) as response:
                if 400 <= response.status < 500:
                    # The caller's mistake (a bad parameter), found by the peer: say it as is.
                    raise ApiError(response.status, *error_messages(await response.read()))
                response.raise_for_status()
                return await response.json()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            log.warning("gathering %s from %s failed: %r", path_qs, url, exc)
            if required:
                raise ApiError(503, "another worker did not answer; the group may be "
                                    "rebalancing, retry") from None
            return None

    async with aiohttp.ClientSession(timeout=timeout) as session:
        answers = await asyncio.gather(*(ask(session, url) for url in peers(rt)))
    return [answer for answer in answers if answer is not None]


def error_messages(body: bytes) -> list[str]:
    """The messages of an error answer in the API's shape (``{"meta": {"errors": [...]}}``)."""
    try:
        errors = orjson.loads(body)["meta"]["errors"]
        return [str(e) for e in errors] or ["bad request"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return ["bad request"]
