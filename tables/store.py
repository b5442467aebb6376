"""Table partitions on a real RocksDB (rocksdict): JSON values, atomic batched writes.

A worker keeps *one* RocksDB for all its tables and partitions; each (table, partition) is a key
prefix, viewed through a :class:`PartitionStore`. One database means one set of memtables and one
write-ahead log (72 separate databases with default 64 MiB write buffers used over a gigabyte in
the benchmark), and one ``WriteBatch`` can cover every table a unit of work touched, so local
state moves from one unit boundary to the next atomically.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import orjson
from rocksdict import BlockBasedOptions, Cache, Options, Rdict, WriteBatch

#: Caller keys are text encoded as UTF-8, where the byte 0xFF never occurs: metadata keys start
#: with it, so no caller key can collide with one, and they sort after every caller key.
_META = b"\xff\xff"
_SEPARATOR = "\x1f"
log = logging.getLogger(__name__)


#: RocksDB's block cache (data blocks) for the worker's database. The hot path's reads are point
#: reads of recent keys: in a probe of 1M history keys a read that hit took 5–7 µs with RocksDB's
#: 8 MiB default and ~2 µs with this cache. Index and filter blocks are deliberately *not* kept
#: in it: data blocks evicted them and every read re-parsed them (63% of a worker's main thread
#: draining a 200k backlog; docs/performance.md). The table readers hold them instead, a few MB.
BLOCK_CACHE_BYTES = 32 * 1024 * 1024


def _options() -> Options:
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_size(16 * 1024 * 1024)
    options.set_max_write_buffer_number(3)
    options.set_max_total_wal_size(64 * 1024 * 1024)
    # Most point reads of the hot path are of keys that do not exist (a new event's dedup id and
    # history key, a segment's members key on entering): a Bloom filter over each memtable's
    # whole keys answers those without searching the memtables' skip lists (a tenth of the write
    # buffer, ~5 MB in all). Measured on the peers' job in-process: a dedup read 3.6 -> 2.2 µs,
    # a history read 3.4 -> 1.7 µs.
    options.set_memtable_prefix_bloom_ratio(0.1)
    options.set_memtable_whole_key_filtering(True)
    # Most reads of a new event are of keys that do not exist (a first dedup id, a new person):
    # a whole-key Bloom filter answers those without reading a data block of each file whose
    # key range holds them (not measured on its own: the probe's absent keys fell outside
    # every file's range).
    table = BlockBasedOptions()
    table.set_bloom_filter(10, False)
    table.set_block_cache(Cache(BLOCK_CACHE_BYTES))
    options.set_block_based_table_factory(table)
    return options


_LAYOUT_KEY = _META + b"layout"


def open_database(path: Path, layout: str | None = None) -> Rdict:
    """Open (or create) the worker's database. With ``layout`` (what the content is derived from,
    e.g. the changelog topics), a database built for another layout is removed first: it is a
    cache of the changelogs, and recovery rebuilds it from the ones this layout names."""
    path.mkdir(parents=True, exist_ok=True)
    db = Rdict(str(path), _options())
    if layout is None:
        return db
    found = db.get(_LAYOUT_KEY)
    if found != layout.encode():
        empty = next(iter(db.keys()), None) is None
        if not empty:
            log.warning("local state in %s was built for %s; removing it to rebuild it from "
                        "the changelogs of %s", path, (found or b"an earlier layout").decode(),
                        layout)
            db.close()
            shutil.rmtree(path)
            path.mkdir(parents=True)
            db = Rdict(str(path), _options())
        db[_LAYOUT_KEY] = layout.encode()
    return db


class PartitionStore:
    """Key → JSON value for the keys of one table partition.

    ``PartitionStore(path)`` opens a database of its own; :meth:`view` shares one.
    """

    def __init__(self, path: Path | None = None, *, db: Rdict | None = None,
                 prefix: str = "") -> None:
        self._owns_db = db is None
        if db is None:
            assert path is not None
            db = open_database(path)
        self._db = db
        self.path = path
        self._prefix = prefix
        self._raw_prefix = prefix.encode()
        self._offset_key = _META + self._raw_prefix + b"changelog-offset"

    @property
    def raw_prefix(self) -> bytes:
        """What every key of this store starts with in the database."""
        return self._raw_prefix

    @classmethod
    def view(cls, db: Rdict, table: str, partition: int) -> "PartitionStore":
        return cls(db=db, prefix=f"{table}{_SEPARATOR}{partition}{_SEPARATOR}")

    def raw_key(self, key: str) -> bytes:
        """``key`` as stored in the shared database (for a multi-get across stores)."""
        return self._raw_prefix + key.encode()

    def get(self, key: str) -> Any | None:
        raw = self._db.get(self.raw_key(key))
        return None if raw is None else orjson.loads(raw)

    def get_raw(self, key: str) -> bytes | None:
        return self._db.get(self.raw_key(key))

    def stage(self, batch: WriteBatch, changes: Mapping[str, Any | None],
              changelog_offset: int | None) -> None:
        """Add ``changes`` (``None`` deletes) and the changelog offset to ``batch``."""
        for key, value in changes.items():
            if value is None:
                batch.delete(self.raw_key(key))
            else:
                batch.put(self.raw_key(key), orjson.dumps(value))
        if changelog_offset is not None:
            batch.put(self._offset_key, str(changelog_offset).encode())

    def stage_raw(self, batch: WriteBatch, key: str, raw: bytes | None) -> None:
        """Add one already-encoded value (``None`` deletes) to ``batch``."""
        if raw is None:
            batch.delete(self.raw_key(key))
        else:
            batch.put(self.raw_key(key), raw)

    def write(self, changes: Mapping[str, Any | None], changelog_offset: int | None) -> None:
        """Apply ``changes`` and record ``changelog_offset``, atomically."""
        batch = WriteBatch(raw_mode=True)
        self.stage(batch, changes, changelog_offset)
        self._db.write(batch)

    def apply_changelog(self, records: list[tuple[bytes, bytes | None]], last_offset: int) -> None:
        """Apply raw changelog records (key, JSON value or ``None`` for a tombstone)."""
        batch = WriteBatch(raw_mode=True)
        for key, value in records:
            if value is None:
                batch.delete(self._raw_prefix + key)
            else:
                batch.put(self._raw_prefix + key, value)
        batch.put(self._offset_key, str(last_offset).encode())
        self._db.write(batch)

    @property
    def changelog_offset(self) -> int:
        """Offset of the last changelog record reflected here, -1 for none."""
        raw = self._db.get(self._offset_key)
        return -1 if raw is None else int(raw)

    def _scan(self, start: bytes, stop: bytes, reverse: bool = False
              ) -> Iterator[tuple[bytes, bytes]]:
        if reverse:
            iterator = self._db.iter()
            iterator.seek_for_prev(stop)
            if iterator.valid() and iterator.key() >= stop:
                iterator.prev()
            while iterator.valid():
                key = iterator.key()
                if key < start:
                    return
                yield key, iterator.value()
                iterator.prev()
            return
        for key, value in self._db.items(from_key=start):
            assert isinstance(key, bytes) and isinstance(value, bytes)  # raw mode
            if key >= stop:
                return
            yield key, value

    def _end(self) -> bytes:
        # Every caller key is below prefix + 0xFF (UTF-8 never contains the byte 0xFF).
        return self._raw_prefix + b"\xff"

    def range(self, start: str, stop: str, *, reverse: bool = False
              ) -> Iterator[tuple[str, Any]]:
        """Items with ``start <= key < stop`` in key order (keys compare as UTF-8 bytes),
        descending with ``reverse``."""
        width = len(self._raw_prefix)
        for key, value in self._scan(self.raw_key(start), self.raw_key(stop), reverse):
            yield key[width:].decode(), orjson.loads(value)

    def items(self) -> Iterator[tuple[str, Any]]:
        width = len(self._raw_prefix)
        for key, value in self._scan(self._raw_prefix, self._end()):
            yield key[width:].decode(), orjson.loads(value)

    def keys(self) -> Iterator[str]:
        for key, _ in self.items():
            yield key

    def approximate_size_bytes(self) -> int:
        return self._db.property_int_value("rocksdb.total-sst-files-size") or 0

    def close(self) -> None:
        if self._owns_db:
            self._db.close()


def write_atomically(db: Rdict, parts: Iterable[tuple[PartitionStore, Mapping[str, Any | None],
                                                      int | None]]) -> None:
    """Stage several partition stores' changes in one ``WriteBatch`` of their shared database."""
    batch = WriteBatch(raw_mode=True)
    for store, changes, offset in parts:
        store.stage(batch, changes, offset)
    db.write(batch)
