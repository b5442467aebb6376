"""Telling the operator when the embedded broker is running out of CPU.

The embedded broker (Tansu's memory storage) lists every batch a partition ever received to
answer a read of it. So under steady traffic each read costs more than the last, until the
broker takes a whole core and every hop of the pipeline waits on it (docs/architecture.md, "The
embedded broker"). Nothing in its answers shows it: its reads just get slower. `eventide up`
started the broker, so it watches the broker's CPU and says once, in one line, what is going on
and what resets it, instead of leaving a latency that only grows.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable

_CLK_TCK = os.sysconf("SC_CLK_TCK")

#: The broker's share of one core, over :data:`WINDOW_S`, that counts as running out of CPU.
SATURATED_SHARE = 0.8
WINDOW_S = 60.0
#: A warning again after this long, if the broker is still that busy.
REPEAT_S = 600.0
SAMPLE_EVERY_S = 10.0


def process_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process, from /proc (None if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


class LoadWatch:
    """Samples of a process's CPU seconds in, a warning out when its share of a core over the
    last ``window_s`` reached ``threshold``, at most once every ``repeat_s``."""

    def __init__(self, threshold: float = SATURATED_SHARE, window_s: float = WINDOW_S,
                 repeat_s: float = REPEAT_S) -> None:
        self.threshold = threshold
        self.window_s = window_s
        self.repeat_s = repeat_s
        self._samples: deque[tuple[float, float]] = deque()
        self._warned_at: float | None = None

    def observe(self, at_s: float, cpu_s: float) -> float | None:
        """Record a sample; the share of a core over the window if a warning is due, else None.
        A window not yet full (the broker just started) never warns."""
        samples = self._samples
        samples.append((at_s, cpu_s))
        while len(samples) > 2 and at_s - samples[1][0] >= self.window_s:
            samples.popleft()
        first_at, first_cpu = samples[0]
        span = at_s - first_at
        if span < self.window_s:
            return None
        share = (cpu_s - first_cpu) / span
        if share < self.threshold:
            return None
        if self._warned_at is not None and at_s - self._warned_at < self.repeat_s:
            return None
        self._warned_at = at_s
        return share


def watch_load(pid: int, on_saturated: Callable[[float], None], *,
               every_s: float = SAMPLE_EVERY_S, watch: LoadWatch | None = None,
               stop: threading.Event | None = None) -> threading.Thread:
    """Sample ``pid``'s CPU every ``every_s`` seconds on a daemon thread, calling
    ``on_saturated(share of a core)`` when :class:`LoadWatch` says so, until the process is
    gone (or ``stop`` is set)."""
    watch = watch or LoadWatch()
    stop = stop or threading.Event()

    def run() -> None:
        while not stop.is_set():
            cpu_s = process_cpu_seconds(pid)
            if cpu_s is None:
                return
            share = watch.observe(time.monotonic(), cpu_s)
            if share is not None:
                on_saturated(share)
            stop.wait(every_s)

    thread = threading.Thread(target=run, name="embedded-broker-load", daemon=True)
    thread.start()
    return thread
