"""Console sessions signed out before they expired, known to every worker.

Each console session has an id (in its signed cookie, :mod:`app.console.auth`). Signing out
publishes ``session id → {"expiry": <the session's expiry>}`` to the compacted topic
``<prefix>.console.sessions.revoked`` (acks=all) and applies it locally before answering; every
worker follows that topic from the beginning, like the segment catalog follows the definitions
(``app.segments.catalog.follow``), and refuses a revoked session's cookie as soon as it has read it.

Bounded: a revocation is kept only until the session's own expiry (the cookie is refused from
then on anyway), so the set holds at most the sessions signed out in the last
``SESSION_S`` (12 h). The topic forgets the same records: it deletes records older than its
retention (one day, longer than any session lives), besides compacting them.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from typing import Any, Callable

#: How long a console session lasts (seconds).
SESSION_S = 12 * 3600


class RevokedSessions:
    """Session id → expiry, for sessions signed out before they expired; expired entries are
    dropped as time passes. Followed from the revocations topic by
    :func:`app.segments.catalog.follow` (it calls :meth:`apply`, :meth:`notify`, and reads
    ``offset`` and ``caught_up``)."""

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self._expiry: dict[str, int] = {}
        #: (expiry, session id), soonest first: what to drop next.
        self._queue: list[tuple[int, str]] = []
        #: Last offset of the topic applied by the follower (only the follower moves it: a
        #: restarted follower goes on from here).
        self.offset = -1
        #: Set once the topic as it stood at start has been read: until then a cookie cannot be
        #: told apart from a revoked one.
        self.caught_up = asyncio.Event()

    def __len__(self) -> int:
        self.expire()
        return len(self._expiry)

    def add(self, session_id: str, expiry: int) -> None:
        """Revoke ``session_id`` until ``expiry`` (unix seconds)."""
        self.expire()
        if expiry <= self._now() or self._expiry.get(session_id, 0) >= expiry:
            return
        self._expiry[session_id] = expiry
        heapq.heappush(self._queue, (expiry, session_id))

    def is_revoked(self, session_id: str) -> bool:
        self.expire()
        return session_id in self._expiry

    def expire(self) -> None:
        """Forget revocations of sessions that have expired by now."""
        now = self._now()
        while self._queue and self._queue[0][0] <= now:
            expiry, session_id = heapq.heappop(self._queue)
            if self._expiry.get(session_id) == expiry:
                del self._expiry[session_id]

    # -- following the topic (the interface app.segments.catalog.follow uses) ----------------

    def apply(self, session_id: str, value: dict[str, Any] | None, offset: int,
              at_ms: int | None = None) -> None:
        self.offset = max(self.offset, offset)
        expiry = value.get("expiry") if isinstance(value, dict) else None
        if isinstance(expiry, int):
            self.add(session_id, expiry)

    async def notify(self) -> None:
        pass


def revocation_record(session_id: str, expiry: int) -> tuple[bytes, bytes]:
    """Key and value of a revocation on the topic."""
    return session_id.encode(), b'{"expiry":%d}' % expiry
