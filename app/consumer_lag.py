"""Consumer lag of a worker's assigned partitions, for ``/metrics``.

Lag of a partition = its high-watermark (as the worker's consumer last fetched it) minus the
offset the worker has committed there (the next offset to process), or minus the consumer's
position while nothing was committed yet. It is 0 once everything produced so far is processed
and committed (faust commits every ``broker_commit_interval``, 1 s), and it reads the consumer's
own fetch state, so a scrape costs no request to the broker (except for a partition without a
committed offset, whose position is asked for, briefly).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

log = logging.getLogger(__name__)

#: () → [(topic, partition, lag)]
LagProbe = Callable[[], Awaitable[list[tuple[str, int, int]]]]


def faust_lag_probe(app: Any, *, position_timeout_s: float = 0.5) -> LagProbe:
    """A probe reading the lag of ``app``'s consumer (a faust app, started)."""

    async def probe() -> list[tuple[str, int, int]]:
        try:
            consumer = app.consumer
            assignment = sorted(consumer.assignment())
        except Exception:  # not started yet, or stopping: no lag to report
            return []
        # faust's own record of committed offsets (next offset to read), updated at every commit.
        committed = getattr(consumer, "_committed_offset", {})
        lags = []
        for tp in assignment:
            try:
                highwater = consumer.highwater(tp)
                if highwater is None:
                    continue  # not fetched yet
                done = committed.get(tp)
                if done is None:
                    done = await asyncio.wait_for(consumer.position(tp), position_timeout_s)
                if done is None:
                    continue
            except Exception as exc:  # revoked meanwhile, or the position is being reset
                log.debug("no lag for %s[%d]: %r", tp.topic, tp.partition, exc)
                continue
            lags.append((tp.topic, tp.partition, max(int(highwater) - int(done), 0)))
        return lags

    return probe
