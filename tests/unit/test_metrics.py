"""Unit tests for app.metrics: the latency histogram, quantiles from its buckets (as Prometheus
estimates them, and as bench/measure.py reads them from a scrape), and the prometheus_client
exposition of the hot-path counters."""

from __future__ import annotations

import bisect
import math
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.metrics import LATENCY_BUCKETS, LatencyHistogram, histogram_quantile, render
from bench.measure import latency_quantile, metric_labels, parse_metrics, sum_metrics
from tests.support.prometheus import parse, samples


def true_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


def bucket_of(value: float) -> int:
    return bisect.bisect_left(LATENCY_BUCKETS, value)


def assert_in_the_truths_bucket(estimate: float | None, truth: float) -> None:
    """Interpolating inside the bucket that holds the true quantile: never outside it."""
    assert estimate is not None
    if truth > LATENCY_BUCKETS[-1]:
        assert estimate == LATENCY_BUCKETS[-1]
        return
    index = bucket_of(truth)
    lower = LATENCY_BUCKETS[index - 1] if index else 0.0
    assert lower * (1 - 1e-9) <= estimate <= LATENCY_BUCKETS[index] * (1 + 1e-9)


def test_buckets_span_1ms_to_60s_at_most_1_7x_apart() -> None:
    assert LATENCY_BUCKETS[0] == 0.001 and LATENCY_BUCKETS[-1] == 60.0
    ratios = [b / a for a, b in zip(LATENCY_BUCKETS, LATENCY_BUCKETS[1:])]
    assert all(1 < r <= 1.7 for r in ratios), ratios


@pytest.mark.parametrize("seed", range(5))
def test_quantiles_of_lognormal_latencies_are_in_the_right_bucket(seed: int) -> None:
    rng = random.Random(seed)
    values = [min(max(rng.lognormvariate(math.log(0.02), 1.2), 0.001), 100.0)
              for _ in range(5_000)]
    histogram = LatencyHistogram()
    histogram.observe_many(values)
    assert histogram.total == len(values)
    assert histogram.sum_s == pytest.approx(sum(values))
    for q in (0.5, 0.99):
        truth = true_quantile(values, q)
        estimate = histogram.quantile(q)
        assert_in_the_truths_bucket(estimate, truth)
        assert truth / 1.7 <= estimate <= truth * 1.7


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.floats(min_value=0.0, max_value=100.0), min_size=1, max_size=300),
       q=st.sampled_from([0.5, 0.9, 0.99]))
def test_any_quantile_is_in_the_bucket_of_the_truth(values: list[float], q: float) -> None:
    histogram = LatencyHistogram()
    histogram.observe_many(values)
    assert_in_the_truths_bucket(histogram.quantile(q), true_quantile(values, q))


def test_observe_and_observe_many_agree() -> None:
    values = [0.0, 0.001, 0.0011, 0.5, 60.0, 61.0, 3.0]
    one, many = LatencyHistogram(), LatencyHistogram()
    for value in values:
        one.observe(value)
    many.observe_many(values)
    assert one.counts == many.counts and one.total == many.total == 7
    assert one.sum_s == pytest.approx(many.sum_s)
    # le is inclusive: 0.001 is in the first bucket, 60 in the last finite one
    assert one.cumulative()[0] == (0.001, 2)
    assert one.cumulative()[-2] == (60.0, 6) and one.cumulative()[-1] == (math.inf, 7)


def test_uniform_data_p50_and_p99() -> None:
    values = [0.001 * i for i in range(1, 1001)]       # 1 ms .. 1 s
    histogram = LatencyHistogram()
    histogram.observe_many(values)
    assert histogram.quantile(0.5) == pytest.approx(0.5, rel=0.05)
    assert histogram.quantile(0.99) == pytest.approx(0.99, rel=0.05)


def test_an_empty_histogram_has_no_quantiles() -> None:
    histogram = LatencyHistogram()
    assert histogram.quantile(0.5) is None
    assert histogram.quantile(0.99) is None
    assert histogram_quantile(0.5, []) is None


def test_values_beyond_the_last_bucket_report_the_last_bound() -> None:
    histogram = LatencyHistogram()
    histogram.observe(10_000.0)
    assert histogram.quantile(0.99) == 60.0


def test_histograms_of_two_workers_add_up() -> None:
    """The reason for a histogram: summing buckets gives the quantile of all observations."""
    fast, slow, both = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
    fast.observe_many([0.002] * 90)
    slow.observe_many([2.0] * 10)
    both.observe_many([0.002] * 90 + [2.0] * 10)
    summed = [(bound, a + b) for (bound, a), (_, b) in zip(fast.cumulative(), slow.cumulative())]
    assert summed == both.cumulative()
    assert histogram_quantile(0.5, summed) <= 0.002
    assert 1.5 < histogram_quantile(0.99, summed) <= 2.0


def test_render_lines() -> None:
    counters = Counter({"verdict:new": 3, "records_in:eventide.person.events": 2,
                        "deadletters": 1})
    histogram = LatencyHistogram()
    histogram.observe_many([0.01] * 10)
    text = render(counters, histogram, {"rss_bytes": 1234, "lag": 0})
    assert text.endswith("\n")
    lines = [line for line in text.splitlines()
             if not line.startswith("#") and "_bucket" not in line]
    assert lines == [
        "eventide_deadletters_total 1.0",
        'eventide_records_in_total{topic="eventide.person.events"} 2.0',
        'eventide_verdict_total{kind="new"} 3.0',
        "eventide_processing_latency_seconds_count 10.0",
        "eventide_processing_latency_seconds_sum 0.09999999999999999",
        "eventide_lag 0.0",
        "eventide_rss_bytes 1234.0",
    ]
    buckets = {s.label("le"): s.value
               for s in samples(text, "eventide_processing_latency_seconds_bucket")}
    assert len(buckets) == len(LATENCY_BUCKETS) + 1
    assert buckets["0.0075"] == 0 and buckets["0.01"] == 10 and buckets["+Inf"] == 10


def test_an_empty_histogram_is_rendered_with_zero_counts() -> None:
    text = render(Counter(), LatencyHistogram(), {})
    [count] = samples(text, "eventide_processing_latency_seconds_count")
    assert count.value == 0
    assert all(s.value == 0 for s in samples(text, "eventide_processing_latency_seconds_bucket"))


def test_label_names_are_fixed_per_counter_not_guessed_from_values() -> None:
    counters = Counter({"records_in:no_dot_topic": 1, "records_out:a.b": 1,
                        "segment_changes:entered": 2, "http_responses:200": 1,
                        "merges:done.twice": 1})
    text = render(counters, None, {})
    assert samples(text, "eventide_records_in_total")[0].label("topic") == "no_dot_topic"
    assert samples(text, "eventide_records_out_total")[0].label("topic") == "a.b"
    assert samples(text, "eventide_segment_changes_total")[0].label("kind") == "entered"
    assert samples(text, "eventide_http_responses_total")[0].label("status") == "200"
    assert samples(text, "eventide_merges_total")[0].label("kind") == "done.twice"


def test_process_collector_is_included() -> None:
    text = render(Counter({"deadletters": 1}), None, {}, process=True)
    families = parse(text)
    assert families["process_resident_memory_bytes"].samples[0].value > 0
    assert "process_cpu_seconds_total" in families


def test_counters_are_read_at_scrape_time() -> None:
    from app.metrics import Exposition
    counters: Counter = Counter()
    latency = LatencyHistogram()
    exposition = Exposition(counters, {"processing_latency_seconds": latency}, process=False)
    assert not samples(exposition.render(), "eventide_verdict_total")
    counters["verdict:new"] += 2
    latency.observe(0.2)
    text = exposition.render()
    assert samples(text, "eventide_verdict_total")[0].value == 2
    assert samples(text, "eventide_processing_latency_seconds_count")[0].value == 1


def test_bench_reads_quantiles_from_summed_buckets() -> None:
    fast, slow = LatencyHistogram(), LatencyHistogram()
    fast.observe_many([0.002] * 90)
    slow.observe_many([2.0] * 10)
    scraped = [parse_metrics(render(Counter(), h, {},
                                    labelled_gauges={"consumer_lag": [
                                        ({"topic": "t.person", "partition": i}, 0)]}))
               for i, h in enumerate((fast, slow))]
    assert latency_quantile(scraped[0], 0.5) == fast.quantile(0.5)
    total = sum_metrics(scraped)
    assert total["eventide_processing_latency_seconds_count"] == 100
    assert 1.5 < latency_quantile(total, 0.99) <= 2.0
    assert latency_quantile(total, 0.5) <= 0.002
    assert latency_quantile({}, 0.5) is None
    owned = sorted(int(metric_labels(name)["partition"]) for name in total
                   if name.startswith("eventide_consumer_lag{"))
    assert owned == [0, 1]
