"""Changelog records as aiokafka decodes them, without a ``ConsumerRecord`` made for each.

aiokafka hands a consumer every record as a ``ConsumerRecord``: a dataclass of eleven fields,
built with two ``len`` calls and a tuple of the headers, ~1.1 µs a record on this machine against
~0.4 µs for decoding it; about a tenth of a recovery (``docs/performance.md``, "Recovery's
records as aiokafka decodes them"). Recovery and standbys read a record's offset, key, value and
headers only, which aiokafka's decoded record (its C ``DefaultRecord``) already carries; a
worker's consumer makes its agents' records of them (``app.bulk_fetch``). A consumer made with
``key_deserializer=AS_DECODED`` is handed those records as they are; every other consumer gets
``ConsumerRecord`` as before. Without :func:`install` such a consumer still works: the marker is
an identity deserializer, so it gets ``ConsumerRecord`` with the key unchanged.
"""

from __future__ import annotations

from typing import Any

from aiokafka.consumer import fetcher


def AS_DECODED(key: bytes | None) -> bytes | None:  # noqa: N802 (a marker, named as one)
    """Pass as ``key_deserializer``: this consumer's records are aiokafka's decoded ones."""
    return key


def _as_decoded(tp: Any, record: Any) -> Any:
    return record


class _NoDeserializers:
    _key_deserializer = _value_deserializer = None


def consumer_record(tp: Any, record: Any) -> Any:
    """The ``ConsumerRecord`` aiokafka makes of a decoded record (its own code, without
    deserializers): for a reader of decoded records that hands one on to code expecting it."""
    return fetcher.PartitionRecords._consumer_record(_NoDeserializers, tp, record)


class DecodedRecords(fetcher.PartitionRecords):  # type: ignore[misc]
    """aiokafka's records of one partition from one fetch; decoded records for a consumer marked
    with :data:`AS_DECODED`."""

    def __init__(self, tp: Any, records: Any, aborted_transactions: Any, fetch_offset: int,
                 key_deserializer: Any, *args: Any) -> None:
        as_decoded = key_deserializer is AS_DECODED
        super().__init__(tp, records, aborted_transactions, fetch_offset,
                         None if as_decoded else key_deserializer, *args)
        if as_decoded:
            self._consumer_record = _as_decoded


def install() -> None:
    """Let consumers of this process ask for decoded records (idempotent; the embedded broker's
    guard, :mod:`tables.torn_fetch`, builds on this class and keeps it)."""
    if not issubclass(fetcher.PartitionRecords, DecodedRecords):
        fetcher.PartitionRecords = DecodedRecords
