"""Micro-benchmark of the metrics hot path: what a worker does per new event (one counter
increment and one latency observation) and per batch (``observe_many``), in ns per event.

    python -m bench.hotpath

The numbers are for comparing two versions on the same machine, run back to back.
"""

from __future__ import annotations

import random
import timeit
from collections import Counter

from app.metrics import LatencyHistogram


def measure(rounds: int = 5) -> dict[str, float]:
    rng = random.Random(1)
    values = [rng.lognormvariate(-4, 1.2) for _ in range(100)]
    counters: Counter = Counter()
    histogram = LatencyHistogram()

    def per_event() -> None:
        counters["verdict:new"] += 1
        histogram.observe(0.0123)

    def per_batch() -> None:  # a committed batch of 100 events (agents/people.py)
        counters["records_in:eventide.person.events"] += 100
        histogram.observe_many(values)

    event = min(min(timeit.repeat(per_event, number=200_000, repeat=3)) / 200_000
                for _ in range(rounds))
    batch = min(min(timeit.repeat(per_batch, number=2_000, repeat=3)) / 2_000 / 100
                for _ in range(rounds))
    return {"counter_and_observe_ns": event * 1e9, "observe_many_ns_per_event": batch * 1e9}


if __name__ == "__main__":
    for name, value in measure().items():
        print(f"{name}: {value:.0f}")
