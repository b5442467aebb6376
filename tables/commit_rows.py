"""What a unit's commit writes, key by key: its changes encoded once, as changelog records and as
write-batch entries (:meth:`tables.state.StateManager.commit` runs the steps and their order).

These are the commit's loops over every changed key (~7 a stored event), compiled with the rest
of the hot path (:mod:`tables.native`); the commit itself awaits the producer and stays Python.
"""

from __future__ import annotations

from typing import Any, Callable

from tables.json_bytes import json_bytes
from tables.records import OutRecord
from tables.unit import ChangelogPartition, Table

#: One table partition's writes in a commit: (its key prefix in the database, its table's key
#: prefix in the changelog, [(key, JSON value or None to delete)]).
Run = tuple[bytes, bytes, list[tuple[bytes, bytes | None]]]

#: A cached table's write, to give its cache once the database holds it: (changelog partition,
#: table, key, value, its JSON or None).
CacheWrite = tuple[ChangelogPartition, str, str, Any, "bytes | None"]


class Encoded:
    """A unit's changes as rows: ``logged`` (the tables with a changelog) and ``local`` (their
    local indexes) by changelog partition, and the cached tables' writes."""

    __slots__ = ("logged", "local", "cache_writes")

    def __init__(self) -> None:
        self.logged: dict[ChangelogPartition, list[Run]] = {}
        self.local: dict[ChangelogPartition, list[Run]] = {}
        self.cache_writes: list[CacheWrite] = []


def encode(changes: dict[tuple[str, int], dict[str, Any]], tables: dict[str, Table],
           index_tables: set[str], cached_tables: set[str],
           changelog_prefix: Callable[[str], bytes]) -> Encoded:
    """Each changed key's bytes and its value's JSON. A value written under several keys is one
    object (an event in history and in the by-name index, an Activity Log pointer under both its
    keys): encoded once (each is alive until the commit ends, so an id names one object)."""
    encoded: dict[int, bytes] = {}
    out = Encoded()
    for (table, partition), table_changes in changes.items():
        cp = (tables[table].spec.changelog_topic, partition)
        cached = table in cached_tables
        rows: list[tuple[bytes, bytes | None]] = []
        for key, value in table_changes.items():
            raw: bytes | None = None
            if value is not None:
                raw = encoded.get(id(value))
                if raw is None:
                    raw = json_bytes(value)
                    encoded[id(value)] = raw
            rows.append((key.encode(), raw))  # (each key encoded once, for both places)
            if cached:
                out.cache_writes.append((cp, table, key, value, raw))
        run = (tables[table].raw_prefix(partition), changelog_prefix(table), rows)
        by_changelog = out.local if table in index_tables else out.logged
        found = by_changelog.get(cp)
        if found is None:
            by_changelog[cp] = [run]
        else:
            found.append(run)
    return out


def changelog_records(logged: dict[ChangelogPartition, list[Run]],
                      headers: dict[ChangelogPartition, list[tuple[str, bytes]]],
                      unit_key: bytes) -> list[OutRecord]:
    """Every changed key of every logged table as a changelog record, then the unit's end: one
    ordered run per changelog partition, each record with its partition's epoch header."""
    records: list[OutRecord] = []
    for cp, runs in logged.items():
        topic, partition = cp
        cp_headers = headers[cp]
        for _, prefix, rows in runs:
            for key_bytes, raw in rows:
                records.append(OutRecord(topic, partition, prefix + key_bytes, raw, cp_headers))
        # Last in its partition's run: readers apply the unit once they have read this.
        records.append(OutRecord(topic, partition, unit_key, b"", cp_headers))
    return records


def unit_ends(records: list[OutRecord], offsets: list[int], unit_key: bytes
              ) -> dict[ChangelogPartition, int]:
    """The offset each changelog partition's unit-end record was written at."""
    ends: dict[ChangelogPartition, int] = {}
    for record, offset in zip(records, offsets):
        if record.key == unit_key:
            ends[(record.topic, record.partition)] = offset
    return ends


def stage(put: Callable[[bytes, bytes], None], delete: Callable[[bytes], None],
          runs: list[Run]) -> None:
    """``runs`` into a write batch (its ``put`` and ``delete``)."""
    for prefix, _, rows in runs:
        for key_bytes, raw in rows:
            if raw is None:
                delete(prefix + key_bytes)
            else:
                put(prefix + key_bytes, raw)


def keep_cached(cache_writes: list[CacheWrite], tables: dict[str, Table],
                changed_hands: list[ChangelogPartition]) -> None:
    """Give each cached table's write to its cache once the database holds it, except the
    writes of a partition that changed hands during the unit (they were not written)."""
    for cp, table, key, value, raw in cache_writes:
        if not changed_hands or cp not in changed_hands:
            tables[table].written(cp[1], key, value, raw)
