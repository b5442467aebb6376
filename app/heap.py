"""Give the C heap's freed memory back to the operating system after a busy stretch.

glibc's malloc returns memory to the OS only from the top of a heap: what is freed between live
blocks stays in the process. Draining a backlog with 1,000 segments, a worker's heap held two to
three times what it used (515–796 MB, 91–310 MB in use; docs/performance.md), and RSS stayed
there after the busy minute. ``malloc_trim(0)`` hands every free page back, wherever it lies.
It is called when the heap's free memory has grown by more than ``slack_bytes`` since the last
trim (what that trim left is given back already), at most once per ``interval_s``, so an idle
or steady worker does nothing. (Most of the peak itself was ``orjson.dumps``' oversized
buffers: see ``tables/json_bytes.py``.)
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


@dataclass(frozen=True)
class Glibc:
    """The two calls of glibc's malloc this module uses, where the C library has them."""

    free_bytes: Callable[[], int]
    trim: Callable[[], None]


def glibc() -> Glibc | None:
    """glibc's ``mallinfo2`` and ``malloc_trim``, or None on another C library (musl, macOS)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        mallinfo2, malloc_trim = libc.mallinfo2, libc.malloc_trim
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _MallInfo2
    malloc_trim.argtypes = [ctypes.c_size_t]
    malloc_trim.restype = ctypes.c_int

    def free_bytes() -> int:
        # fordblks: free chunks held in the arenas' bins (what a trim can give back).
        return int(mallinfo2().fordblks)

    def trim() -> None:
        malloc_trim(0)

    return Glibc(free_bytes=free_bytes, trim=trim)


class HeapTrimmer:
    """Decides when to trim: a pure policy over an injected clock and C library."""

    def __init__(self, lib: Glibc | None, *, slack_bytes: int = 32 << 20,
                 interval_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.lib, self.slack_bytes, self.interval_s, self.clock = \
            lib, slack_bytes, interval_s, clock
        self._next_check = 0.0
        #: Free bytes the last trim left: their pages are the OS's already.
        self._trimmed_free = 0
        #: Trims made, bytes they found free, and the time they took (for /metrics).
        self.trims = 0
        self.trimmed_bytes = 0
        self.trim_seconds = 0.0

    @property
    def enabled(self) -> bool:
        return self.lib is not None and self.interval_s > 0

    def maybe_trim(self) -> bool:
        """Trim if the interval has passed and free memory grew by more than ``slack_bytes``."""
        lib = self.lib
        if lib is None or self.interval_s <= 0:
            return False
        now = self.clock()
        if now < self._next_check:
            return False
        self._next_check = now + self.interval_s
        free = lib.free_bytes()
        if free < self._trimmed_free:
            self._trimmed_free = free  # reused since: what grows from here is new
        if free - self._trimmed_free <= self.slack_bytes:
            return False
        started = time.perf_counter()
        lib.trim()
        self.trim_seconds += time.perf_counter() - started
        self.trims += 1
        self.trimmed_bytes += free - self._trimmed_free
        self._trimmed_free = lib.free_bytes()
        return True


async def keep_trimmed(trimmer: HeapTrimmer) -> None:
    """A worker's task: look every ``interval_s`` whether there is enough free to give back."""
    if not trimmer.enabled:
        return
    while True:
        await asyncio.sleep(trimmer.interval_s)
        if trimmer.maybe_trim():
            log.debug("heap trimmed (%d so far, %.3f s in all)", trimmer.trims,
                      trimmer.trim_seconds)
