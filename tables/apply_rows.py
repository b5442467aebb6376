"""What recovery and standbys do per changelog record and per change: read a fetch's records
into their partition's :class:`~tables.changelog.Replayer`, and stage each complete unit's
changes (and the local index writes they imply) into one write batch.

These are recovery's loops over every record (~840,000 after the 200,000-item segments run),
compiled with the rest of the hot path (:mod:`tables.native`). As Python they were about half
of a recovery's time (the apply loop ~35%, the records' reading most of the rest besides
RocksDB's writes and aiokafka's unpacking: docs/performance.md); the unit's multi-get and its
batch write stay in :class:`tables.state.StateManager`, once a unit.
"""

from __future__ import annotations

from typing import Any, Callable

from tables.changelog import Change, Position, Replayer, epoch_of
from tables.unit import ChangelogPartition, Table

#: Applies one complete unit with the position it reaches (``StateManager.apply_changes``).
Apply = Callable[[ChangelogPartition, list[Change], Position], None]

#: How a logged table's local-only indexes follow one of its changes: ``(key, old JSON, new
#: JSON)`` (None: absent / deleted) gives every index write it implies, ``[(index table, key,
#: JSON or None)]``. Index writes never go to the changelog: every reader derives them as it
#: applies the logged table's changes, so they cost no changelog records, bytes or recovery time
#: of their own.
Indexer = Callable[[str, bytes | None, bytes | None], list[tuple[str, str, bytes | None]]]


def feed_records(apply: Apply, cp: ChangelogPartition, replayer: Replayer,
                 records: list[Any]) -> int:
    """Each of a fetch's ``records`` of ``cp`` (aiokafka's, in offset order) into ``replayer``;
    every unit one completes goes to ``apply``. Returns the number of changes applied."""
    applied = 0
    for record in records:
        changes = replayer.feed(record.offset, record.key, record.value,
                                epoch_of(record.headers))
        if changes is not None:
            apply(cp, changes, replayer.position)
            applied += len(changes)
    return applied


def stage_unit(put: Callable[[bytes, bytes], None], delete: Callable[[bytes], None],
               partition: int, changes: list[Change], tables: dict[str, Table],
               indexes: dict[str, Indexer], cached: set[str],
               values: dict[tuple[str, str], bytes | None]) -> None:
    """Stage one unit's ``changes`` of ``partition``: each value, and the index writes each
    implies from the key's value before it (``values``: read for the unit at once, then
    advanced by the unit's own changes of the key). Changes of a table this worker does not
    keep are skipped."""
    for table, key, value in changes:
        spec = tables.get(table)
        if spec is None:
            continue
        if table in cached:
            spec.overwritten(partition, key)
        derive = indexes.get(table)
        if derive is not None:
            old = values[(table, key)]
            values[(table, key)] = value
            for index_table, index_key, index_value in derive(key, old, value):
                if index_value is None:
                    delete(tables[index_table].raw_key(partition, index_key))
                else:
                    put(tables[index_table].raw_key(partition, index_key), index_value)
        if value is None:
            delete(spec.raw_key(partition, key))
        else:
            put(spec.raw_key(partition, key), value)
