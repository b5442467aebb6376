"""A worker that waits for its consumer group says so.

From its start, and from each rebalance's revocation, a worker processes nothing until the
group's coordinator gives it partitions; its HTTP API is not served before the first time.
A join normally takes a few seconds. Once, in the crash schedule, two workers waited 90 s with
nothing in their logs (docs/performance.md, 2026-12-07): an operator could not tell a stuck
group from a slow start. So a wait past ``after_s`` is logged, then again every ``every_s``
while it lasts, and its end is logged too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

log = logging.getLogger(__name__)


class AssignmentWatch:
    """How long the worker has waited for an assignment; when to say so (a clock is given)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, *, after_s: float = 30.0,
                 every_s: float = 60.0) -> None:
        self._clock, self.after_s, self.every_s = clock, after_s, every_s
        #: Since when the worker has waited (None: it holds an assignment).
        self.waiting_since: float | None = clock()
        self._warned_at: float | None = None

    def revoked(self) -> None:
        """A rebalance began: nothing is processed until the next assignment."""
        if self.waiting_since is None:
            self.waiting_since = self._clock()

    def assigned(self) -> float | None:
        """The group gave this worker its partitions; how long it waited, if that was said."""
        waited = None
        if self.waiting_since is not None and self._warned_at is not None:
            waited = self._clock() - self.waiting_since
        self.waiting_since, self._warned_at = None, None
        return waited

    def overdue(self) -> float | None:
        """How long the worker has waited, when that is to be said now (else None)."""
        if self.waiting_since is None:
            return None
        now = self._clock()
        if now - self.waiting_since < self.after_s:
            return None
        if self._warned_at is not None and now - self._warned_at < self.every_s:
            return None
        self._warned_at = now
        return now - self.waiting_since


async def watch_assignment(watch: AssignmentWatch, group: str, bootstrap: str,
                           interval_s: float = 5.0) -> None:
    """Log a wait for the group's assignment past ``watch.after_s``, every ``watch.every_s``."""
    while True:
        await asyncio.sleep(interval_s)
        waited = watch.overdue()
        if waited is not None:
            log.warning("no partitions assigned for %.0f s: consumer group %s has not given this "
                        "worker its partitions (broker %s). Nothing is processed until it does; "
                        "the group's other workers and the broker's coordinator say why",
                        waited, group, bootstrap)
