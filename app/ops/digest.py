"""A stable digest of all derived state of a state version, read from its changelogs.

Independent of partition layout and of processing timing: per-person tables are keyed by person,
so their content does not depend on partitions; per-partition aggregates (segment state, event
names) are summed across partitions; and what records *where* or *when* an input was processed
(dedup refs and expiry, which differ between a first delivery and a redelivery) is left out —
only the set of ids is kept.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Any

import orjson

from app.ops.topics_io import read_topic
from app.settings import Settings
from app.topics import (ANONYMOUS_HISTORY, DEDUP, EVENT_NAMES, SEGMENT_STATE, build_topics)

_AGGREGATED = (SEGMENT_STATE, EVENT_NAMES)


def _normalize(table: str, value: Any) -> Any:
    if table == DEDUP:
        return sorted(value)
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


async def table_contents(settings: Settings, table: str) -> dict[str, Any]:
    """The latest value of every key of ``table`` (normalized), from its changelog."""
    topics = build_topics(settings)
    spec = topics.table(table)
    latest: dict[tuple[int, bytes], bytes | None] = {}
    async for batch in read_topic(settings.bootstrap_servers, spec.changelog_topic,
                                  topics.person_events.partitions):
        for record in batch:
            latest[(record.partition, record.key)] = record.value
    if table in _AGGREGATED:
        grouped: dict[str, list[Any]] = defaultdict(list)
        for (_, key), value in latest.items():
            if value is not None:
                grouped[key.decode()].append(orjson.loads(value))
        return _aggregate(table, grouped)
    return {key.decode(): _normalize(table, orjson.loads(value))
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
    for spec in build_topics(settings).tables:
        result[spec.name] = digest_of(await table_contents(settings, spec.name))
    overall = hashlib.sha256()
    for name in sorted(result):
        overall.update(f"{name}={result[name]}\n".encode())
    result["overall"] = overall.hexdigest()
    return result
