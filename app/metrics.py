"""Counters and a latency histogram, rendered in Prometheus text format at ``/metrics``."""

from __future__ import annotations

import bisect
import math
import re
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


#: What ``/metrics`` answers with: the Prometheus text exposition format, version 0.0.4.
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: HELP text of the counters (``counters["<name>:<label>"]`` → ``eventide_<name>_total``).
COUNTER_HELP = {
    "accepted": "Items the HTTP API accepted (acknowledged by the broker), per operation.",
    "records_in": "Input records consumed, per topic.",
    "records_out": "Records routed to a topic, per topic.",
    "verdict": "Events judged by deduplication, per verdict (new, duplicate, redelivery).",
    "deadletters": "Records or items sent to the dead-letter topic.",
    "segment_evaluations": "Segment evaluations of a person.",
    "segment_changes": "Segment membership changes, per kind (enter, exit).",
    "http_responses": "HTTP API responses, per status code.",
    "invariant_violations": "Segment changes withheld because they would repeat the person's "
                            "last change for that segment (two entered in a row): a bug, logged "
                            "with its partition and offset. Must stay 0.",
}
#: Label name of a counter's ``:<label>`` part, where it is not a topic (``.`` in it) or a kind.
COUNTER_LABEL = {"http_responses": "status"}
GAUGE_HELP = {
    "ready": "1 once this process is ready to serve (see /readyz), else 0.",
    "peak_rss_bytes": "Peak resident set size of this process (VmHWM).",
    "rocksdb_size_bytes": "Approximate on-disk size of this worker's RocksDB tables.",
    "changelog_fences": "Changelog partitions this worker fenced on taking them over (each voids "
                        "an unfinished unit a previous writer left, if any).",
    "changelog_void_records": "Changelog records recovery left out: an unfinished unit's, or a "
                              "deposed owner's written after a fence.",
    "event_loop_lag_seconds": "How late the event loop last woke a 50 ms timer: how long a "
                              "piece of work held it.",
    "event_loop_lag_max_seconds": "The worst event-loop stall since start (same measure).",
    "consumer_lag": "Records in an assigned partition not yet committed by this worker "
                    "(high-watermark minus committed offset).",
}
SUMMARY_HELP = {
    "processing_latency_seconds": "Accepted (HTTP or record time) to durably in history, per "
                                  "new event.",
    "http_request_duration_seconds": "Time to answer an API request (validation, produce, "
                                     "broker acknowledgement).",
}

_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_:]")


def metric_name(name: str) -> str:
    """A valid Prometheus metric name (``[a-zA-Z_:][a-zA-Z0-9_:]*``) for ``eventide_<name>``."""
    return "eventide_" + _NAME_UNSAFE.sub("_", name)


def label_value(value: object) -> str:
    """A label value as the text format wants it: quoted, with \\, \" and newlines escaped."""
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _labels(labels: dict[str, object]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f"{_NAME_UNSAFE.sub('_', k)}={label_value(v)}"
                          for k, v in labels.items()) + "}"


def _number(value: float) -> str:
    if isinstance(value, int):  # bool included
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _header(lines: list[str], metric: str, kind: str, help_text: str) -> None:
    help_text = help_text.replace("\\", "\\\\").replace("\n", "\\n")
    lines.append(f"# HELP {metric} {help_text}")
    lines.append(f"# TYPE {metric} {kind}")


def _summary(lines: list[str], name: str, histogram: LatencyHistogram) -> None:
    metric = metric_name(name)
    _header(lines, metric, "summary", SUMMARY_HELP.get(name, f"{name} (seconds)."))
    for q in (0.5, 0.99):
        value = histogram.quantile(q)
        if value is not None:
            lines.append(f'{metric}{{quantile="{q}"}} {value:.4f}')
    lines.append(f"{metric}_count {histogram.total}")
    lines.append(f"{metric}_sum {histogram.sum_s:.4f}")


def render(counters: Counter, latency: LatencyHistogram | None, gauges: dict[str, float], *,
           summaries: dict[str, LatencyHistogram] | None = None,
           labelled_gauges: dict[str, list[tuple[dict[str, object], float]]] | None = None
           ) -> str:
    """Prometheus text exposition (format 0.0.4): every family with its HELP and TYPE lines.

    ``counters`` keys are ``name`` or ``name:label``; the label is ``topic`` when it holds a dot,
    else ``kind`` (or the name's entry in :data:`COUNTER_LABEL`). ``latency`` is the processing
    latency summary (None: not rendered); ``summaries`` adds more; ``labelled_gauges`` maps a
    gauge name to its samples' (labels, value).
    """
    lines: list[str] = []
    families: dict[str, list[tuple[str, int]]] = {}
    for key in counters:
        name, _, label = key.partition(":")
        families.setdefault(name, []).append((label, counters[key]))
    for name in sorted(families):
        metric = metric_name(name) + "_total"
        _header(lines, metric, "counter", COUNTER_HELP.get(name, f"Count of {name}."))
        for label, value in sorted(families[name]):
            if not label:
                lines.append(f"{metric} {_number(value)}")
                continue
            label_name = COUNTER_LABEL.get(name) or ("topic" if "." in label else "kind")
            lines.append(f"{metric}{_labels({label_name: label})} {_number(value)}")
    if latency is not None:
        _summary(lines, "processing_latency_seconds", latency)
    for name, histogram in sorted((summaries or {}).items()):
        _summary(lines, name, histogram)
    plain = {name: [({}, value)] for name, value in gauges.items()}
    for name, samples in sorted({**plain, **(labelled_gauges or {})}.items()):
        metric = metric_name(name)
        _header(lines, metric, "gauge", GAUGE_HELP.get(name, f"{name}."))
        for labels, value in samples:
            lines.append(f"{metric}{_labels(labels)} {_number(value)}")
    return "\n".join(lines) + "\n"
