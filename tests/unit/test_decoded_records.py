"""Records as aiokafka decodes them, for the consumers that ask (tables.decoded_records): built
from a record batch as a fetch response carries it. No broker: recovery reads them through the
real one in tests/integration (test_recovery_crash.py, test_standbys.py and every restart)."""

from __future__ import annotations

from typing import Any, Callable

import pytest
from aiokafka import TopicPartition
from aiokafka.consumer import fetcher
from aiokafka.structs import ConsumerRecord

from tables import decoded_records, torn_fetch
from tables.apply_rows import feed_records
from tables.changelog import UNIT_KEY, Position, Replayer, data_key, epoch_header
from tests.support.record_batches import Record, partition_records, record_batch

TP = TopicPartition("t-decoded", 3)


def read(fetch_offset: int, key_deserializer: Callable[[Any], Any] | None,
         *batches: bytes) -> list[Any]:
    return list(partition_records(TP, fetch_offset, *batches,
                                  key_deserializer=key_deserializer))


RECORDS: list[Record] = [(b"k0", b"v0", [("e", b"7")]), (b"k1", None, []), (b"k2", b"v2", [])]


@pytest.fixture(params=["decoded", "decoded and guarded"])
def installed(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetcher, "PartitionRecords", decoded_records.DecodedRecords.__base__)
    if request.param == "decoded and guarded":
        torn_fetch.install()
    decoded_records.install()


def test_a_marked_consumer_gets_the_decoded_records(installed: None) -> None:
    records = read(11, decoded_records.AS_DECODED, record_batch(10, RECORDS))
    assert not any(isinstance(r, ConsumerRecord) for r in records)
    assert [(r.offset, r.key, r.value, list(r.headers)) for r in records] == [
        (11, b"k1", None, []), (12, b"k2", b"v2", [])]


def test_every_other_consumer_gets_consumer_records(installed: None) -> None:
    records = read(10, None, record_batch(10, RECORDS))
    assert [type(r) for r in records] == [ConsumerRecord] * 3
    assert [(r.topic, r.partition, r.offset, r.key, r.headers) for r in records] == [
        ("t-decoded", 3, 10, b"k0", (("e", b"7"),)), ("t-decoded", 3, 11, b"k1", ()),
        ("t-decoded", 3, 12, b"k2", ())]
    # A consumer's own deserializer still runs.
    upper = read(10, bytes.upper, record_batch(10, RECORDS))
    assert [r.key for r in upper] == [b"K0", b"K1", b"K2"]


def test_without_install_the_marker_is_an_identity_deserializer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetcher, "PartitionRecords", decoded_records.DecodedRecords.__base__)
    records = read(10, decoded_records.AS_DECODED, record_batch(10, RECORDS))
    assert [(type(r), r.key) for r in records] == [(ConsumerRecord, b"k0"),
                                                   (ConsumerRecord, b"k1"),
                                                   (ConsumerRecord, b"k2")]


def test_install_keeps_the_embedded_brokers_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetcher, "PartitionRecords", decoded_records.DecodedRecords.__base__)
    torn_fetch.install()
    decoded_records.install()
    assert fetcher.PartitionRecords is torn_fetch.WholePartitionRecords
    decoded_records.install()
    torn_fetch.install()
    assert fetcher.PartitionRecords is torn_fetch.WholePartitionRecords


def test_recovery_applies_decoded_records_as_it_applied_consumer_records(
        installed: None) -> None:
    """The replayer reads a record's offset, key, value and headers: one unit of two changes
    and its end marker, read both ways, applies the same changes at the same position."""
    epoch = epoch_header(5)
    unit: list[Record] = [(data_key("tbl", "a"), b"1", epoch),
                          (data_key("tbl", "b"), None, epoch), (UNIT_KEY, b"", epoch)]
    applied: dict[str, list[tuple[Any, Any, Position]]] = {}
    for name, marker in (("decoded", decoded_records.AS_DECODED), ("records", None)):
        replayer = Replayer(Position(-1, 5))
        out = applied.setdefault(name, [])
        feed_records(lambda cp, changes, position: out.append((cp, list(changes), position)),
                     ("cl", 3), replayer, read(0, marker, record_batch(0, unit)))
    assert applied["decoded"] == applied["records"] == [
        (("cl", 3), [("tbl", "a", b"1"), ("tbl", "b", None)], Position(2, 5))]
