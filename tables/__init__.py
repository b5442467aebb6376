"""Partitioned RocksDB tables (rocksdict) with batched changelogs and explicit recovery.

Why not faust's own ``Table``: it sends one changelog record per key write through faust's producer
buffer, writes RocksDB one key at a time, and takes its recovery target from ListOffsets, which the
embedded broker under-reports after batched produces (see ``docs/architecture.md``). Here a batch of
writes becomes one RocksDB ``WriteBatch`` and one produce per partition, written only after the
batch's outputs are acknowledged, and recovery reads a changelog until the fetch high-watermark.
"""

from tables import native

native.check()  # before any compiled module is imported: a stale build must not run

from tables.store import PartitionStore  # noqa: E402
from tables.state import StateManager  # noqa: E402
from tables.unit import Table, TableSpec  # noqa: E402

__all__ = ["PartitionStore", "StateManager", "Table", "TableSpec"]
