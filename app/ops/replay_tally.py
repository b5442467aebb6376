"""Whether a replay took the whole input log: the records of each raw topic its worker committed
(its ``/metrics``, ``records_committed``) against those the topic holds from where it started.

Committed offsets reaching the ends say that the group *committed* past every record, not that
its worker processed each one: faust commits a jump in a partition's offsets as compacted away
(app/bulk_fetch.py), and a replay that skipped a run of records that way would end looking
complete, with a state short of those inputs. A worker counts each raw record once its unit of
work is committed, dead-lettered ones included, and at least once (a redelivery counts again),
so a count below the log's is records it never took. ``eventide replay`` waits for the count
(so it never stops a worker with a unit still to commit), and fails rather than offer a state
version built short of its inputs.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from app.kafka_clients import kafka_client_options
from app.ops.replay import end_offsets
from app.settings import Settings
from app.topics import build_topics

#: Counters of the replay worker worth showing when they are not 0: records or items set aside,
#: and offsets read past.
NOTED = ("deadletters", "fetch_gaps", "fetch_jumps_accepted", "commits_held", "unit_failures",
         "invariant_violations")


def raw_partitions(settings: Settings) -> list[TopicPartition]:
    return [TopicPartition(spec.name, p) for spec in build_topics(settings).raw
            for p in range(spec.partitions)]


async def starts(settings: Settings) -> dict[TopicPartition, int]:
    """Where the version's group starts each raw partition: its committed offset (``--since``
    commits one), else the partition's first offset still in the log."""
    tps = raw_partitions(settings)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
                                group_id=settings.app_id, enable_auto_commit=False,
                                **kafka_client_options(settings))
    await consumer.start()
    try:
        first = await consumer.beginning_offsets(tps)
        return {tp: await consumer.committed(tp) or first.get(tp, 0) for tp in tps}
    finally:
        await consumer.stop()


@dataclass
class Tally:
    """Raw records in the log since the replay's start, and committed by its worker, per topic."""

    in_log: dict[str, int]
    committed: dict[str, int]
    noted: dict[str, int] = field(default_factory=dict)

    @property
    def short(self) -> dict[str, int]:
        """topic → records in the log the worker has not committed (topics it is short of)."""
        return {topic: n - self.committed.get(topic, 0) for topic, n in self.in_log.items()
                if self.committed.get(topic, 0) < n}

    def summary(self, prefix: str) -> str:
        topics = "; ".join(f"{topic.removeprefix(prefix + '.')} "
                           f"{self.committed.get(topic, 0)} of {n}"
                           for topic, n in sorted(self.in_log.items()))
        noted = "".join(f"; {name} {value}" for name, value in sorted(self.noted.items()))
        return f"input records the replay worker committed: {topics}{noted}"


def tally(in_log: dict[str, int], counters: dict[str, float]) -> Tally:
    committed = {topic: int(counters.get(f"records_committed:{topic}", 0)) for topic in in_log}
    noted = {name: int(counters[name]) for name in NOTED if counters.get(name)}
    return Tally(in_log, committed, noted)


def records_in_log(ends: dict[TopicPartition, int], starts: dict[TopicPartition, int]
                   ) -> dict[str, int]:
    by_topic: dict[str, int] = {}
    for tp, start in starts.items():
        by_topic[tp.topic] = by_topic.get(tp.topic, 0) + max(0, ends.get(tp, start) - start)
    return by_topic


def scrape(url: str, app_key: str, timeout_s: float = 10.0) -> dict[str, float]:
    """A worker's counters from its ``/metrics``, named as in ``Runtime.counters``
    (``records_committed:<topic>``, ``deadletters``)."""
    request = urllib.request.Request(url + "/metrics",
                                     headers={"Authorization": f"Bearer {app_key}"})
    context = ssl._create_unverified_context() if url.startswith("https") else None  # (localhost)
    with urllib.request.urlopen(request, timeout=timeout_s, context=context) as response:
        return counters_from(response.read().decode())


def counters_from(text: str) -> dict[str, float]:
    """The counters of a worker's ``/metrics`` text, named as in ``Runtime.counters``."""
    counters: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if family.type != "counter" or not family.name.startswith("eventide_"):
            continue
        name = family.name.removeprefix("eventide_")
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            label = next(iter(sample.labels.values()), None)
            counters[name if label is None else f"{name}:{label}"] = sample.value
    return counters


def ends_now(settings: Settings, tps: list[TopicPartition]
             ) -> Callable[[], dict[TopicPartition, int]]:
    """The raw partitions' end offsets, read afresh at each call (those known)."""
    return lambda: asyncio.run(end_offsets(settings, tps))


def wait_committed_all(starts: dict[TopicPartition, int],
                       ends: Callable[[], dict[TopicPartition, int]],
                       counters: Callable[[], dict[str, float]], *, stall_s: float = 30.0,
                       poll_s: float = 1.0) -> Tally:
    """Poll until the worker has committed every raw record up to the ends (a group whose
    offsets ran ahead of its units gets there), or its count stops moving for ``stall_s``: the
    :class:`Tally` then says what it is short of."""
    last: dict[str, int] | None = None
    moved = time.monotonic()
    while True:
        found = ends()
        now = tally(records_in_log(found, starts), counters())
        known = all(tp in found for tp in starts)
        if known and not now.short:
            return now
        if now.committed != last:
            last, moved = now.committed, time.monotonic()
        elif time.monotonic() - moved > stall_s:
            if not known:
                raise TimeoutError("the ends of the raw topics could not be read")
            return now
        time.sleep(poll_s)
