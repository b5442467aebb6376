"""A stable digest of all derived state of a state version, read from its changelogs.

Independent of partition layout and of processing timing: per-person tables are keyed by person,
so their content does not depend on partitions; per-partition aggregates (segment state, event
names) are summed across partitions; and what records *where* or *when* an input was processed
(dedup refs and expiry, which differ between a first delivery and a redelivery; an event's
``processed_at``, which a replay sets anew) is left out — of dedup, only the set of ids (the keys)
is kept.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Any

import orjson

from app.kafka_clients import kafka_client_options
from app.ops.topics_io import read_topic
from app.settings import Settings
from tables.changelog import Replayer, epoch_of
from app.topics import (ANONYMOUS_HISTORY, DEDUP, EVENT_NAMES, HISTORY, SEGMENT_STATE,
                        build_topics)

_AGGREGATED = (SEGMENT_STATE, EVENT_NAMES)


def _normalize(table: str, value: Any) -> Any:
    if table == DEDUP:
        return True  # one key per id: the key says it all
    if table == HISTORY:
        # When the person stage processed an event: a replay processes it again, later.
        return {k: v for k, v in value.items() if k != "processed_at"}
    if table == ANONYMOUS_HISTORY:
        return {"events": value["events"], "seen": sorted(value["seen"])}
    return value


def _aggregate(table: str, per_partition: dict[str, list[Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, values in per_partition.items():
        if table == SEGMENT_STATE:
            out[key] = {"versions": sorted({v.get("version") for v in values if v.get("version")}),
                        "members": sum(v.get("members", 0) for v in values)}
        else:
            out[key] = {"count": sum(v["count"] for v in values),
                        "last_seen": max(v["last_seen"] for v in values)}
    return out


async def changelog_state(settings: Settings, changelog: str
                          ) -> dict[tuple[int, str, str], bytes | None]:
    """(partition, table, key) → latest value, as a recovering worker would read the changelog:
    whole units only, fenced-off records left out (:class:`tables.changelog.Replayer`)."""
    partitions = build_topics(settings).person_events.partitions
    replayers: dict[int, Replayer] = defaultdict(Replayer)
    latest: dict[tuple[int, str, str], bytes | None] = {}
    async for batch in read_topic(settings.bootstrap_servers, changelog, partitions,
                                  kafka_client_options(settings)):
        for record in batch:
            changes = replayers[record.partition].feed(record.offset, record.key, record.value,
                                                       epoch_of(record.headers))
            for table, key, value in changes or ():
                latest[(record.partition, table, key)] = value
    return latest


async def table_contents(settings: Settings, table: str,
                         state: dict[tuple[int, str, str], bytes | None] | None = None
                         ) -> dict[str, Any]:
    """The latest value of every key of ``table`` (normalized), from its changelog."""
    if state is None:
        state = await changelog_state(settings, build_topics(settings).table(table).changelog_topic)
    latest = {(p, key): value for (p, t, key), value in state.items() if t == table}
    if table in _AGGREGATED:
        grouped: dict[str, list[Any]] = defaultdict(list)
        for (_, key), value in latest.items():
            if value is not None:
                grouped[key].append(orjson.loads(value))
        return _aggregate(table, grouped)
    return {key: _normalize(table, orjson.loads(value))
            for (_, key), value in latest.items() if value is not None}


def digest_of(contents: dict[str, Any]) -> str:
    sha = hashlib.sha256()
    for key in sorted(contents):
        sha.update(key.encode() + b"\x00")
        sha.update(orjson.dumps(contents[key], option=orjson.OPT_SORT_KEYS) + b"\n")
    return sha.hexdigest()


async def digest(settings: Settings) -> dict[str, str]:
    """``{table: sha256, ..., "overall": sha256}`` of a state version."""
    result: dict[str, str] = {}
    states: dict[str, dict[tuple[int, str, str], bytes | None]] = {}
    for spec in build_topics(settings).tables:
        if spec.changelog_topic not in states:
            states[spec.changelog_topic] = await changelog_state(settings, spec.changelog_topic)
        result[spec.name] = digest_of(await table_contents(settings, spec.name,
                                                           states[spec.changelog_topic]))
    overall = hashlib.sha256()
    for name in sorted(result):
        overall.update(f"{name}={result[name]}\n".encode())
    result["overall"] = overall.hexdigest()
    return result
