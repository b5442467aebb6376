"""Unit tests for app.metrics: histogram quantiles and the Prometheus text rendering."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.metrics import LatencyHistogram, render

BUCKET_RATIO = 1.2


def true_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


def assert_within_a_bucket(estimate: float | None, truth: float) -> None:
    assert estimate is not None
    # the estimate is the upper bound of the bucket holding the true value
    assert truth <= estimate * (1 + 1e-9)
    assert estimate <= truth * BUCKET_RATIO * (1 + 1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_quantiles_of_lognormal_latencies_are_within_one_bucket(seed: int) -> None:
    rng = random.Random(seed)
    values = [min(max(rng.lognormvariate(math.log(0.02), 1.2), 0.001), 100.0)
              for _ in range(5_000)]
    histogram = LatencyHistogram()
    histogram.observe_many(values)
    assert histogram.total == len(values)
    assert histogram.sum_s == pytest.approx(sum(values))
    for q in (0.5, 0.99):
        assert_within_a_bucket(histogram.quantile(q), true_quantile(values, q))


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.floats(min_value=0.001, max_value=100.0), min_size=1, max_size=300),
       q=st.sampled_from([0.5, 0.9, 0.99]))
def test_any_quantile_is_within_one_bucket_of_the_truth(values: list[float], q: float) -> None:
    histogram = LatencyHistogram()
    histogram.observe_many(values)
    assert_within_a_bucket(histogram.quantile(q), true_quantile(values, q))


def test_uniform_data_p50_and_p99() -> None:
    values = [0.001 * i for i in range(1, 1001)]       # 1 ms .. 1 s
    histogram = LatencyHistogram()
    histogram.observe_many(values)
    p50, p99 = histogram.quantile(0.5), histogram.quantile(0.99)
    assert p50 is not None and 0.5 <= p50 <= 0.6
    assert p99 is not None and 0.99 <= p99 <= 1.19


def test_an_empty_histogram_has_no_quantiles() -> None:
    histogram = LatencyHistogram()
    assert histogram.quantile(0.5) is None
    assert histogram.quantile(0.99) is None


def test_values_beyond_the_last_bucket_report_the_last_bound() -> None:
    histogram = LatencyHistogram()
    histogram.observe(10_000.0)
    estimate = histogram.quantile(0.99)
    assert estimate is not None and 100 < estimate < 200


def test_render_lines() -> None:
    counters = Counter({"verdict:new": 3, "records_in:eventide.person.events": 2,
                        "deadletters": 1})
    histogram = LatencyHistogram()
    histogram.observe_many([0.01] * 10)
    text = render(counters, histogram, {"rss_bytes": 1234, "lag": 0})
    assert text.endswith("\n")
    lines = [line for line in text.splitlines() if not line.startswith("#")]  # HELP, TYPE
    p = histogram.quantile(0.5)
    assert lines == [
        "eventide_deadletters_total 1",
        'eventide_records_in_total{topic="eventide.person.events"} 2',
        'eventide_verdict_total{kind="new"} 3',
        f'eventide_processing_latency_seconds{{quantile="0.5"}} {p:.4f}',
        f'eventide_processing_latency_seconds{{quantile="0.99"}} {p:.4f}',
        "eventide_processing_latency_seconds_count 10",
        "eventide_processing_latency_seconds_sum 0.1000",
        "eventide_lag 0",
        "eventide_rss_bytes 1234",
    ]


def test_render_without_observations_omits_quantiles() -> None:
    lines = [line for line in render(Counter(), LatencyHistogram(), {}).splitlines()
             if not line.startswith("#")]
    assert lines == ["eventide_processing_latency_seconds_count 0",
                     "eventide_processing_latency_seconds_sum 0.0000"]
    assert not any("quantile" in line for line in lines)
