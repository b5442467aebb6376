"""``/metrics`` with ``prometheus_client``: hot-path counters and latency histograms read at scrape
time by a custom collector, plus the process collector.

The hot path stays as cheap as a dict increment: agents and handlers keep doing
``rt.counters["verdict:new"] += 1`` and ``rt.latency.observe(seconds)`` (a ``bisect`` and two
additions, no lock, no label lookup). :class:`HotPathCollector` turns those into Prometheus
families when ``/metrics`` is scraped:

- ``counters["<name>"]`` → ``eventide_<name>_total``; ``counters["<name>:<value>"]`` →
  ``eventide_<name>_total{<label>="<value>"}`` where the label name is fixed per counter
  (:data:`COUNTER_LABEL`, else ``kind``), never guessed from the value.
- each :class:`LatencyHistogram` → a Prometheus histogram (``_bucket{le}``, ``_sum``,
  ``_count``) with the same buckets on every process, so ``histogram_quantile`` over
  ``sum by (le) (rate(..._bucket[5m]))`` aggregates workers correctly.
"""

from __future__ import annotations

import bisect
import re
import resource
from collections import Counter
from typing import Callable, Iterable, Iterator, Mapping, Sequence

from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily, Metric)
from prometheus_client.exposition import generate_latest
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from app import event_loop

#: Histogram bucket upper bounds in seconds: 1 ms to 60 s, at most ~1.7x apart (1-1.5-2-3-5-7.5
#: steps), so a quantile interpolated inside one bucket is within that factor of the truth.
#: The same on every worker and tier process: that is what lets their buckets be summed.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075,
    0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
    0.1, 0.15, 0.2, 0.3, 0.5, 0.75,
    1.0, 1.5, 2.0, 3.0, 5.0, 7.5,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
)


class LatencyHistogram:
    """Counts per bucket (the last is +Inf), total and sum: what the hot path updates."""

    __slots__ = ("bounds", "counts", "total", "sum_s")

    def __init__(self, bounds: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0
        self.sum_s = 0.0

    def observe(self, seconds: float) -> None:
        # bisect_left: a value equal to a bound counts in that bound's bucket (le is inclusive).
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += 1
        self.sum_s += seconds

    def observe_many(self, values: Iterable[float]) -> None:
        counts, bounds, find = self.counts, self.bounds, bisect.bisect_left
        n, added = 0, 0.0
        for value in values:
            counts[find(bounds, value)] += 1
            n += 1
            added += value
        self.total += n
        self.sum_s += added

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations ≤ it) per bucket, ending with (+Inf, total)."""
        out, seen = [], 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts):
            seen += count
            out.append((bound, seen))
        return out

    def quantile(self, q: float) -> float | None:
        """The q-quantile as Prometheus's ``histogram_quantile`` estimates it (None when empty)."""
        return histogram_quantile(q, self.cumulative())


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """Estimate the q-quantile from cumulative ``(upper bound, count)`` buckets the way
    Prometheus's ``histogram_quantile`` does: find the bucket holding rank ``q * total`` and
    interpolate linearly inside it (from 0 for the first bucket). A rank in the +Inf bucket
    gives the highest finite bound. None without observations."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    total = ordered[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank and count > lower_count:
            if bound == float("inf"):
                return lower_bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound


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


#: What ``/metrics`` answers with: the Prometheus text exposition format, version 0.0.4
#: (what :func:`prometheus_client.exposition.generate_latest` writes).
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: HELP text of the counters (``counters["<name>:<value>"]`` → ``eventide_<name>_total``).
COUNTER_HELP = {
    "accepted": "Items the HTTP API accepted (acknowledged by the broker), per operation.",
    "records_in": "Input records consumed, per topic.",
    "records_out": "Records routed to a topic, per topic.",
    "records_committed": "Input records whose unit of work is committed, per topic (a replay "
                         "checks them against the input log: app/ops/replay_tally.py).",
    "verdict": "Events judged by deduplication, per verdict (new, duplicate, redelivery).",
    "deadletters": "Records or items sent to the dead-letter topic.",
    "segment_evaluations": "Segment evaluations of a person.",
    "segment_changes": "Segment membership changes, per kind (entered, exited).",
    "http_responses": "HTTP API responses, per status code.",
    "invariant_violations": "Segment changes withheld because they would repeat the person's "
                            "last change for that segment (two entered in a row): a bug, logged "
                            "with its partition and offset. Must stay 0.",
    "identify": "Identify operations set aside, per reason.",
    "merges": "Merge operations, per outcome.",
    "deletes": "People deleted.",
    "triggers": "Campaign triggers, per outcome (sent, skipped_import, skipped_stale).",
    "anonymous_events": "Events of anonymous ids, per outcome.",
    "anonymous_links": "Anonymous ids linked to a person, per outcome.",
    "unknown_identifier": "Operations naming an identifier no person took within a day of "
                          "input time (they wait for one first: parked), per operation.",
    "parked": "Events, identifies and deletes that named an identifier nobody had yet (an "
              "email whose alias was still on its way) and waited for it, per operation.",
    "forwarded_to_survivor": "Operations on a merged-away person forwarded to the survivor.",
    "torn_fetches": "Fetches the embedded broker served past records it had acknowledged but not "
                    "yet shown, cut there and fetched again (tables/torn_fetch.py).",
    "fetch_jumps_accepted": "Jumps in a partition's offsets still there after several fetches, "
                            "read on from (records really gone; tables/torn_fetch.py).",
    "fetch_gaps": "Offsets a fetch went past without their records, committed as compacted "
                  "away (app/bulk_fetch.py); none of the consumed topics is compacted, so each "
                  "is logged as a warning. Must stay 0.",
    "unit_failures": "Units of work that failed outside their items (their recovery or their "
                     "commit); the agent fetched their records again from the committed offsets "
                     "(agents/batches.py).",
    "commits_held": "Times a partition's commits waited at a fetched record no unit had "
                    "acknowledged while later ones were, and every partition was fetched again "
                    "from its committed offset (app/commit_guard.py). Must stay 0: each is a "
                    "record dropped on its way to a unit, which faust would have committed "
                    "past.",
    "routed_in_place": "Operations by a person's own id the person stage took straight from "
                       "the raw topic's partition, without the hop through person.events.",
    "imported": "Rows imported, per kind.",
    "units_cut_short": "Units of work that took no further record because their outputs "
                       "reached EVENTIDE_UNIT_MAX_OUTPUTS; the rest made the next unit.",
    "definition_confirmations": "Units of work that waited for the segment catalog to confirm "
                                "it holds every definition written before their inputs were "
                                "accepted (app/segments/catalog.py: complete_through).",
    "definitions_left_to_inputs": "Segment definitions' items that found their partition's raw "
                                  "inputs not all taken yet, or arrived within the grace of "
                                  "their writing, and were activated once the inputs accepted "
                                  "before them were in (app/core/activation.py: "
                                  "left_to_inputs).",
    "inputs_behind_their_definitions": "Inputs that reached their partition after a segment "
                                       "definition recorded after they were accepted had been "
                                       "activated there on its item's arrival: each took "
                                       "longer than EVENTIDE_DEFINITION_GRACE_S, and a replay "
                                       "may evaluate it differently. Should stay 0.",
}
#: Label name of each counter's ``:<value>`` part: fixed per counter, ``kind`` when not listed.
COUNTER_LABEL = {"records_in": "topic", "records_out": "topic", "records_committed": "topic",
                 "http_responses": "status"}
DEFAULT_COUNTER_LABEL = "kind"
GAUGE_HELP = {
    "ready": "1 once this process is ready to serve (see /readyz), else 0.",
    "peak_rss_bytes": "Peak resident set size of this process (VmHWM).",
    "event_loop_info": "1, labelled with the event loop this process runs on (EVENTIDE_EVENT_LOOP).",
    "rocksdb_size_bytes": "Approximate on-disk size of this worker's RocksDB tables.",
    "changelog_fences": "Changelog partitions this worker fenced on taking them over (each voids "
                        "an unfinished unit a previous writer left, if any).",
    "changelog_void_records": "Changelog records recovery left out: an unfinished unit's, or a "
                              "deposed owner's written after a fence.",
    "changelog_recovered_records": "Changelog records this worker read to bring partitions it "
                                   "took over up to date, since start.",
    "changelog_standby_records": "Changelog records this worker applied to its warm copies of "
                                 "partitions it does not own (EVENTIDE_STANDBY_REPLICAS), since "
                                 "start: what a takeover no longer has to read.",
    "event_loop_lag_seconds": "How late the event loop last woke a 50 ms timer: how long a "
                              "piece of work held it.",
    "event_loop_lag_max_seconds": "The worst event-loop stall since start (same measure).",
    "state_cache_bytes": "What the values a worker keeps decoded take (approximate; bounded by "
                         "EVENTIDE_STATE_CACHE_MB).",
    "state_cache_hits": "Reads of a unit answered by those values, since start.",
    "state_cache_misses": "Reads of a unit for cached tables that went to RocksDB, since start.",
    "heap_trims": "Times freed C-heap memory was handed back to the OS (malloc_trim).",
    "heap_trim_seconds": "Time those trims held the event loop, in all.",
    "consumer_lag": "Records in an assigned partition not yet committed by this worker "
                    "(high-watermark minus committed offset).",
}
HISTOGRAM_HELP = {
    "processing_latency_seconds": "Accepted (HTTP or record time) to durably in history, per "
                                  "new event.",
    "http_request_duration_seconds": "Time to answer an API request (validation, produce, "
                                     "broker acknowledgement).",
    # Where processing_latency_seconds goes, stage by stage (README, "Metrics"):
    "processing_wait_seconds": "Accepted to the start of the unit of work that processes it, "
                               "per new event: the input's produce, fetch and queue.",
    "unit_prepare_seconds": "Time a unit of the people agent took to process its items, per "
                            "unit.",
    "unit_commit_seconds": "A unit of the people agent processed to durably committed, per "
                           "unit: the previous unit's commit, the outputs' and changelog's "
                           "acknowledgements and the RocksDB write.",
}

#: The stages of ``processing_latency_seconds`` (what :attr:`app.runtime.Runtime.stages` holds).
STAGE_HISTOGRAMS = ("processing_wait_seconds", "unit_prepare_seconds", "unit_commit_seconds")

_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_:]")

#: Labelled gauge samples: gauge name → [(labels, value)]; every sample of one gauge has the
#: same label names, in the same order.
LabelledGauges = Mapping[str, Sequence[tuple[Mapping[str, object], float]]]


def metric_name(name: str) -> str:
    """A valid Prometheus metric name (``[a-zA-Z_:][a-zA-Z0-9_:]*``) for ``eventide_<name>``."""
    return "eventide_" + _NAME_UNSAFE.sub("_", name)


def counter_label(name: str) -> str:
    """The label name of counter ``name``'s ``:<value>`` part."""
    return COUNTER_LABEL.get(name, DEFAULT_COUNTER_LABEL)


class HotPathCollector(Collector):
    """Reads the hot-path structures (a :class:`~collections.Counter`, latency histograms and
    gauge callbacks) when the registry is collected; nothing is copied between scrapes."""

    def __init__(self, counters: Counter, histograms: Mapping[str, LatencyHistogram], *,
                 gauges: Callable[[], Mapping[str, float]] | None = None) -> None:
        self.counters = counters
        self.histograms = histograms
        self.gauges = gauges
        #: Set by the scrape handler just before collecting (values it had to await).
        self.labelled: LabelledGauges = {}

    def collect(self) -> Iterator[Metric]:
        families: dict[str, list[tuple[str, float]]] = {}
        for key, value in list(self.counters.items()):
            name, _, label = key.partition(":")
            families.setdefault(name, []).append((label, value))
        for name in sorted(families):
            unlabelled = [v for label, v in families[name] if not label]
            labelled = sorted((label, v) for label, v in families[name] if label)
            help_text = COUNTER_HELP.get(name, f"Count of {name}.")
            if unlabelled:
                family = CounterMetricFamily(metric_name(name), help_text, value=unlabelled[0])
                for label, value in labelled:  # the same family with labelled series too
                        family.add_sample(family.name + "_total", {counter_label(name): label},
                                          value)
            else:
                family = CounterMetricFamily(metric_name(name), help_text,
                                             labels=[counter_label(name)])
                for label, value in labelled:
                    family.add_metric([label], value)
            yield family
        for name in sorted(self.histograms):
            histogram = self.histograms[name]
            yield HistogramMetricFamily(
                metric_name(name), HISTOGRAM_HELP.get(name, f"{name} (seconds)."),
                buckets=[(_le(bound), count) for bound, count in histogram.cumulative()],
                sum_value=histogram.sum_s)
        plain = dict(self.gauges()) if self.gauges is not None else {}
        for name in sorted({*plain, *self.labelled}):
            help_text = GAUGE_HELP.get(name, f"{name}.")
            if name in self.labelled:
                samples = self.labelled[name]
                label_names = [_NAME_UNSAFE.sub("_", k) for k in samples[0][0]] if samples else []
                family = GaugeMetricFamily(metric_name(name), help_text, labels=label_names)
                for labels, value in samples:
                    family.add_metric([str(v) for v in labels.values()], value)
            else:
                family = GaugeMetricFamily(metric_name(name), help_text, value=plain[name])
            yield family


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


#: One process collector (``process_cpu_seconds_total``, ``process_resident_memory_bytes``, open
#: file descriptors, start time...), added to every exposition registry.
PROCESS_COLLECTOR = ProcessCollector(registry=None)


class Exposition:
    """A process's ``/metrics``: a registry holding its :class:`HotPathCollector` and the process
    collector. Build once; :meth:`render` per scrape."""

    def __init__(self, counters: Counter, histograms: Mapping[str, LatencyHistogram], *,
                 gauges: Callable[[], Mapping[str, float]] | None = None,
                 process: bool = True) -> None:
        self.collector = HotPathCollector(counters, histograms, gauges=gauges)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        if process:
            self.registry.register(PROCESS_COLLECTOR)

    def render(self, labelled_gauges: LabelledGauges | None = None) -> str:
        """Prometheus text exposition 0.0.4 (every family with HELP and TYPE)."""
        self.collector.labelled = labelled_gauges or {}
        try:
            return generate_latest(self.registry).decode()
        finally:
            self.collector.labelled = {}


def loop_gauge() -> dict[str, list[tuple[dict[str, object], float]]]:
    """``eventide_event_loop_info{implementation="uvloop"} 1``: which loop serves this scrape."""
    return {"event_loop_info": [({"implementation": event_loop.running()}, 1.0)]}


def render(counters: Counter, latency: LatencyHistogram | None, gauges: Mapping[str, float], *,
           histograms: Mapping[str, LatencyHistogram] | None = None,
           labelled_gauges: LabelledGauges | None = None, process: bool = False) -> str:
    """One-off exposition of these values (``latency``: ``processing_latency_seconds``)."""
    every = dict(histograms or {})
    if latency is not None:
        every["processing_latency_seconds"] = latency
    return Exposition(counters, every, gauges=lambda: gauges,
                      process=process).render(labelled_gauges)
