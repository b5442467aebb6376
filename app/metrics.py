"""Counters and a latency histogram, rendered in Prometheus text format at ``/metrics``."""

from __future__ import annotations

import bisect
import resource
from collections import Counter
from typing import Iterable

# Bucket upper bounds in seconds: 1 ms to ~2 min, about 20% apart, enough for p50/p99 within 10%.
_BOUNDS = tuple(0.001 * 1.2 ** i for i in range(65))


class LatencyHistogram:
    def __init__(self) -> None:
        self.counts = [0] * (len(_BOUNDS) + 1)
        self.total = 0
        self.sum_s = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(_BOUNDS, seconds)] += 1
        self.total += 1
        self.sum_s += seconds

    def observe_many(self, values: Iterable[float]) -> None:
        for value in values:
            self.observe(value)

    def quantile(self, q: float) -> float | None:
        """Upper bound of the bucket holding the q-th observation (None when empty)."""
        if not self.total:
            return None
        rank = q * self.total
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= rank and count:
                return _BOUNDS[min(index, len(_BOUNDS) - 1)]
        return _BOUNDS[-1]


def peak_rss_bytes() -> int:
    """This process's own peak RSS (VmHWM). ``ru_maxrss`` is not used: Linux carries a parent's
    peak into a child it spawns, so a worker started by a large process would report the parent's."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def render(counters: Counter, latency: LatencyHistogram, gauges: dict[str, float]) -> str:
    lines = []
    for key in sorted(counters):
        name, _, label = key.partition(":")
        metric = f"eventide_{name}_total"
        lines.append(f'{metric}{{topic="{label}"}} {counters[key]}' if label and "." in label
                     else f'{metric}{{kind="{label}"}} {counters[key]}' if label
                     else f"{metric} {counters[key]}")
    for q in (0.5, 0.99):
        value = latency.quantile(q)
        if value is not None:
            lines.append(f'eventide_processing_latency_seconds{{quantile="{q}"}} {value:.4f}')
    lines.append(f"eventide_processing_latency_seconds_count {latency.total}")
    lines.append(f"eventide_processing_latency_seconds_sum {latency.sum_s:.4f}")
    for name, value in sorted(gauges.items()):
        lines.append(f"eventide_{name} {value}")
    return "\n".join(lines) + "\n"
