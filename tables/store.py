"""One table partition on a real RocksDB (rocksdict), JSON values, atomic batched writes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping

import orjson
from rocksdict import Options, Rdict, WriteBatch

#: Where a partition remembers the last changelog offset it has applied. Caller keys are text
#: encoded as UTF-8, where the byte 0xFF never occurs: no caller key can collide with this one,
#: and it sorts after every caller key, outside every range scan.
_OFFSET_KEY = b"\xff\xffchangelog-offset"


def _options() -> Options:
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    return options


class PartitionStore:
    """Key → JSON value for the keys of one Kafka partition.

    Every change goes through :meth:`write`, which applies puts, deletes and the changelog offset
    they came from in one atomic ``WriteBatch``: after a crash the store is at some batch boundary,
    never half-way through one.
    """

    def __init__(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = Rdict(str(path), _options())

    def get(self, key: str) -> Any | None:
        raw = self._db.get(key.encode())
        return None if raw is None else orjson.loads(raw)

    def write(self, changes: Mapping[str, Any | None], changelog_offset: int | None) -> None:
        """Apply ``changes`` (``None`` deletes) and record ``changelog_offset``, atomically."""
        batch = WriteBatch(raw_mode=True)
        for key, value in changes.items():
            if value is None:
                batch.delete(key.encode())
            else:
                batch.put(key.encode(), orjson.dumps(value))
        if changelog_offset is not None:
            batch.put(_OFFSET_KEY, str(changelog_offset).encode())
        self._db.write(batch)

    def apply_changelog(self, records: list[tuple[bytes, bytes | None]], last_offset: int) -> None:
        """Apply raw changelog records (key, JSON value or ``None`` for a tombstone)."""
        batch = WriteBatch(raw_mode=True)
        for key, value in records:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        batch.put(_OFFSET_KEY, str(last_offset).encode())
        self._db.write(batch)

    @property
    def changelog_offset(self) -> int:
        """Offset of the last changelog record reflected here, -1 for none."""
        raw = self._db.get(_OFFSET_KEY)
        return -1 if raw is None else int(raw)

    def items(self) -> Iterator[tuple[str, Any]]:
        for key, value in self._db.items():
            if key != _OFFSET_KEY:
                yield key.decode(), orjson.loads(value)

    def range(self, start: str, stop: str) -> Iterator[tuple[str, Any]]:
        """Items with ``start <= key < stop`` in key order (keys compare as UTF-8 bytes)."""
        end = stop.encode()
        for key, value in self._db.items(from_key=start.encode()):
            if key >= end:
                return
            if key != _OFFSET_KEY:
                yield key.decode(), orjson.loads(value)

    def keys(self) -> Iterator[str]:
        for key in self._db.keys():
            if key != _OFFSET_KEY:
                yield key.decode()

    def approximate_size_bytes(self) -> int:
        return self._db.property_int_value("rocksdb.total-sst-files-size") or 0

    def close(self) -> None:
        self._db.close()
