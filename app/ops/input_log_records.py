"""The input log's record format, and reading a file of records back.

Record format: ``<u32 body length><u32 crc32 of body><body>``; body: the topic
(``<i32 length><bytes>``), ``<i32 partition><i64 timestamp ms>``, key and value each ``<i32 length|-1><bytes>``, then ``<i32 header count>`` and per header
``<i32 length><name><i32 length><value>``. Also the earlier versions' periodic archive format,
read once to convert it (:func:`app.ops.input_log.migrate_archive`).
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

_HEAD = struct.Struct(">II")
_I64 = struct.Struct(">q")
_I32 = struct.Struct(">i")

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Stored:
    topic: str
    partition: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Headers = field(default_factory=list)

    @property
    def slot(self) -> tuple[str, int]:
        return self.topic, self.partition


def encode(record: Stored) -> bytes:
    topic = record.topic.encode()
    parts = [_I32.pack(len(topic)), topic, _I32.pack(record.partition),
             _I64.pack(record.timestamp)]
    for blob in (record.key, record.value):
        parts.append(_I32.pack(-1) if blob is None else _I32.pack(len(blob)) + blob)
    parts.append(_I32.pack(len(record.headers)))
    for name, value in record.headers:
        raw = name.encode()
        parts.append(_I32.pack(len(raw)) + raw + _I32.pack(len(value)) + value)
    body = b"".join(parts)
    return _HEAD.pack(len(body), zlib.crc32(body)) + body


def _decode_body(body: bytes) -> Stored:
    (length,) = _I32.unpack_from(body, 0)
    topic = body[4:4 + length].decode()
    (partition,) = _I32.unpack_from(body, 4 + length)
    (timestamp,) = _I64.unpack_from(body, 8 + length)
    at = 16 + length
    blobs: list[bytes | None] = []
    for _ in range(2):
        (length,) = _I32.unpack_from(body, at)
        at += 4
        if length < 0:
            blobs.append(None)
        else:
            blobs.append(body[at:at + length])
            at += length
    (count,) = _I32.unpack_from(body, at)
    at += 4
    headers = []
    for _ in range(count):
        (length,) = _I32.unpack_from(body, at)
        name = body[at + 4:at + 4 + length].decode()
        at += 4 + length
        (length,) = _I32.unpack_from(body, at)
        headers.append((name, body[at + 4:at + 4 + length]))
        at += 4 + length
    return Stored(topic, partition, timestamp, blobs[0], blobs[1], headers)


@dataclass
class Scan:
    """What a file holds: its whole records, where the good bytes end, and what was wrong."""

    records: list[Stored]
    #: Byte length of the file's good prefix (what follows is a torn last record).
    good_bytes: int
    torn_bytes: int = 0
    #: (record position, byte offset) of corrupt records in the middle, left out.
    corrupt: list[tuple[int, int]] = field(default_factory=list)


def scan(blob: bytes) -> Scan:
    """Decode a file. A record cut short at the end is torn (a hard kill mid-append: it was never
    acknowledged); a record whose checksum fails with whole records after it is corrupt."""
    records: list[Stored] = []
    corrupt: list[tuple[int, int]] = []
    at = 0
    good = 0
    while at < len(blob):
        if at + _HEAD.size > len(blob):
            break
        length, crc = _HEAD.unpack_from(blob, at)
        end = at + _HEAD.size + length
        if end > len(blob):
            break
        body = blob[at + _HEAD.size:end]
        if zlib.crc32(body) != crc:
            if end == len(blob):
                break  # the last record, half-written pages: torn
            corrupt.append((len(records) + len(corrupt), at))
        else:
            try:
                records.append(_decode_body(body))
            except (struct.error, UnicodeDecodeError):
                corrupt.append((len(records) + len(corrupt), at))
        at = end
        good = end
    return Scan(records, good, len(blob) - good, corrupt)


def legacy_records(blob: bytes) -> Iterator[tuple[int, bytes | None, bytes | None]]:
    """Records of the periodic archive of earlier versions: ``<u32 total><i64 timestamp ms>``,
    then key and value each ``<i32 length|-1><bytes>``; a torn tail ends it."""
    at = 0
    while at + 12 <= len(blob):
        total, timestamp = struct.unpack_from(">Iq", blob, at)
        end = at + 4 + total
        if end > len(blob):
            return
        cursor = at + 12
        blobs: list[bytes | None] = []
        for _ in range(2):
            (length,) = _I32.unpack_from(blob, cursor)
            cursor += 4
            blobs.append(None if length < 0 else blob[cursor:cursor + length])
            cursor += max(length, 0)
        yield timestamp, blobs[0], blobs[1]
        at = end


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
