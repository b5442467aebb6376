"""/metrics output is valid Prometheus text exposition: HELP/TYPE per family, quoting, values."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.metrics import LatencyHistogram, render
from tests.support.prometheus import ExpositionError, parse, samples


def worker_like_text() -> str:
    counters = Counter({"records_in:eventide.raw.events": 5, "records_in:eventide.raw.anonymous": 2,
                        "verdict:new": 4, "verdict:duplicate": 1, "deadletters": 1,
                        "segment_evaluations": 9, "accepted:event": 3, "http_responses:200": 3})
    latency = LatencyHistogram()
    latency.observe_many([0.004, 0.02, 0.5])
    return render(counters, latency, {"peak_rss_bytes": 1.5e8, "rocksdb_size_bytes": 4096.0,
                                      "ready": 1.0},
                  histograms={"http_request_duration_seconds": latency}, process=True,
                  labelled_gauges={"consumer_lag": [
                      ({"topic": "eventide.raw.events", "partition": 0}, 0),
                      ({"topic": "eventide.raw.events", "partition": 1}, 12)]})


def test_every_family_has_help_and_type_and_samples_parse() -> None:
    families = parse(worker_like_text())
    for name, family in families.items():
        assert family.help, name
        assert family.type != "untyped", name
        assert family.samples, name
    assert families["eventide_records_in_total"].type == "counter"
    assert families["eventide_processing_latency_seconds"].type == "histogram"
    assert families["eventide_http_request_duration_seconds"].type == "histogram"
    assert families["process_resident_memory_bytes"].type == "gauge"
    assert families["eventide_consumer_lag"].type == "gauge"
    assert families["eventide_ready"].type == "gauge"


def test_the_metrics_the_issue_asks_for_are_there() -> None:
    text = worker_like_text()
    lag = {(s.label("topic"), s.label("partition")): s.value
           for s in samples(text, "eventide_consumer_lag")}
    assert lag == {("eventide.raw.events", "0"): 0, ("eventide.raw.events", "1"): 12}
    verdicts = {s.label("kind"): s.value for s in samples(text, "eventide_verdict_total")}
    assert verdicts == {"new": 4, "duplicate": 1}
    assert samples(text, "eventide_deadletters_total")[0].value == 1
    assert samples(text, "eventide_segment_evaluations_total")[0].value == 9
    topics = {s.label("topic") for s in samples(text, "eventide_records_in_total")}
    assert topics == {"eventide.raw.events", "eventide.raw.anonymous"}
    buckets = {s.label("le"): s.value
               for s in samples(text, "eventide_processing_latency_seconds_bucket")}
    assert buckets["0.005"] == 1 and buckets["0.02"] == 2 and buckets["+Inf"] == 3
    assert samples(text, "eventide_processing_latency_seconds_count")[0].value == 3
    assert samples(text, "eventide_rocksdb_size_bytes")[0].value == 4096
    statuses = {s.label("status") for s in samples(text, "eventide_http_responses_total")}
    assert statuses == {"200"}


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=30))
def test_any_label_value_round_trips(value: str) -> None:
    text = render(Counter({f"records_in:{value}": 1}), None, {},
                  labelled_gauges={"consumer_lag": [({"topic": value, "partition": 1}, 3)]})
    [lag] = samples(text, "eventide_consumer_lag")
    assert lag.label("topic") == value
    [counted] = samples(text, "eventide_records_in_total")
    assert counted.label("topic") == value


def test_odd_counter_names_become_valid_metric_names() -> None:
    text = render(Counter({"weird name-with.dots:x": 1}), None, {"bad gauge!": 2.5})
    families = parse(text)
    assert "eventide_weird_name_with_dots_total" in families
    assert samples(text, "eventide_bad_gauge_")[0].value == 2.5


def test_special_values() -> None:
    text = render(Counter(), None, {"a": math.inf, "b": -math.inf, "c": math.nan, "d": 3})
    values = {s.name: s.value for f in parse(text).values() for s in f.samples}
    assert values["eventide_a"] == math.inf and values["eventide_b"] == -math.inf
    assert math.isnan(values["eventide_c"]) and values["eventide_d"] == 3


def test_label_values_are_escaped() -> None:
    text = render(Counter({'records_in:a"b\\c\nd': 1}), None, {})
    assert 'eventide_records_in_total{topic="a\\"b\\\\c\\nd"} 1.0' in text
    assert samples(text, "eventide_records_in_total")[0].label("topic") == 'a"b\\c\nd'


@pytest.mark.parametrize("bad", [
    "metric 1",                                                    # no final newline
    "1metric 1\n",                                                 # bad name
    'm{a="x} 1\n',                                                 # unterminated
    'm{a="\\x"} 1\n',                                              # bad escape
    'm{a="1",a="2"} 1\n',                                          # repeated label
    "m one\n",                                                     # bad value
    "# TYPE m counter\n# TYPE m counter\nm 1\n",                   # second TYPE
    "m 1\n# TYPE m counter\n",                                     # TYPE after samples
    "# TYPE m gauge\nm 1\nn 2\nm 3\n",                            # not together
    'm{a="1"} 1\nm{a="1"} 2\n',                                    # duplicate series
    "m 1 2 3\n",                                                   # too many fields
    'm{a="1"b="2"} 1\n',                                           # no comma
])
def test_the_validator_rejects(bad: str) -> None:
    with pytest.raises(ExpositionError):
        parse(bad)
