"""Bounds on what one source can ask for: failed authentications per address.

Without it, 300 wrong sign-ins took 1.9 s: guessing the app key or the track credentials was as
fast as the server. Past :data:`MAX_FAILURES` failed authentications (any 401) within
:data:`WINDOW_S`, an address gets ``429`` with ``Retry-After`` for everything until its window
has passed. Per process (every worker counts its own), in bounded memory.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Callable

from aiohttp import web

from app.api.responses import ApiError, error_response

MAX_FAILURES = 30
WINDOW_S = 60.0
#: Addresses remembered at once; the least recently failing is forgotten first.
MAX_SOURCES = 10_000


class FailureLimiter:
    def __init__(self, *, max_failures: int = MAX_FAILURES, window_s: float = WINDOW_S,
                 max_sources: int = MAX_SOURCES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures, self.window_s, self.max_sources = max_failures, window_s, max_sources
        self._clock = clock
        #: source → (window start, failures in it)
        self._failures: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def retry_after(self, source: str) -> float | None:
        """Seconds until ``source`` may try again, or None if it may now."""
        entry = self._failures.get(source)
        if entry is None:
            return None
        started, count = entry
        left = started + self.window_s - self._clock()
        if left <= 0:
            del self._failures[source]
            return None
        return left if count >= self.max_failures else None

    def failed(self, source: str) -> None:
        now = self._clock()
        started, count = self._failures.pop(source, (now, 0))
        if now - started >= self.window_s:
            started, count = now, 0
        self._failures[source] = (started, count + 1)
        while len(self._failures) > self.max_sources:
            self._failures.popitem(last=False)


def limit_failed_authentication(limiter: FailureLimiter):  # type: ignore[no-untyped-def]
    """Middleware: refuse an address that failed too often; count every 401 it gets."""

    @web.middleware
    async def middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
        source = request.remote or "?"
        wait = limiter.retry_after(source)
        if wait is not None:
            return error_response(429, "too many failed authentications from this address; "
                                       f"retry in {int(wait) + 1} s",
                                  headers={"Retry-After": str(int(wait) + 1)})
        try:
            response = await handler(request)
        except ApiError as exc:
            if exc.status == 401:
                limiter.failed(source)
            raise
        if response.status == 401:
            limiter.failed(source)
        return response

    return middleware
