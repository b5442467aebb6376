"""``bench.ab``'s summary: each pair's difference, this checkout's minus the other's, and their
median; a run without a figure (a checkout whose ``bench.run`` predates it) is left out. And the
event loop's CPU that ``bench.run`` reads from /proc."""

from __future__ import annotations

import os
import time

from bench import ab
from bench.measure import cpu_seconds, main_thread_times


def run(items_per_s: float, cpu: float, loop: float | None) -> dict[str, float | None]:
    return {"items_per_s": items_per_s, "cpu_us_per_item": cpu, "loop_cpu_us_per_item": loop}


def test_each_pair_gives_this_minus_the_other_and_the_median_of_them() -> None:
    pairs = [{"this": run(14_488.6, 73.1, 53.8), "other": run(13_516.2, 77.3, 63.4)},
             {"this": run(13_752.1, 75.8, 56.9), "other": run(14_531.4, 72.5, 58.9)},
             {"this": run(13_340.3, 78.6, 59.5), "other": run(13_127.0, 80.3, None)}]
    found = ab.summary(pairs)
    assert found["items_per_s"] == {"this_minus_other_by_pair": [972.4, -779.3, 213.3],
                                    "median": 213.3}
    assert found["loop_cpu_us_per_item"] == {"this_minus_other_by_pair": [-9.6, -2.0],
                                             "median": -5.8}
    assert ab.summary([])["cpu_us_per_item"] == {"this_minus_other_by_pair": [],
                                                 "median": None}


def test_the_main_threads_cpu_is_read_and_is_part_of_the_process() -> None:
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass  # (some CPU on this, the main thread)
    pid = os.getpid()
    ran, waited = main_thread_times(pid)
    assert 0.05 <= ran <= cpu_seconds(pid) + 0.02  # (clock ticks against nanoseconds)
    assert waited >= 0.0
    assert main_thread_times(None) == (0.0, 0.0)
