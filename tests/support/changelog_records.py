"""Changelog records as the changelog consumer hands them to recovery
(``tables.apply_rows.feed_records``), for tests that feed a state manager without a broker."""

from __future__ import annotations

from aiokafka.structs import ConsumerRecord

from tables.changelog import epoch_header


def changelog_record(cp: tuple[str, int], offset: int, key: bytes | None, value: bytes | None,
                     epoch: int = 0) -> ConsumerRecord:
    return ConsumerRecord(cp[0], cp[1], offset, 0, 0, key, value, None,
                          -1 if key is None else len(key), -1 if value is None else len(value),
                          tuple(epoch_header(epoch)))
