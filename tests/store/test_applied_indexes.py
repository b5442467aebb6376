"""What recovery and standbys derive while applying history from a changelog: the local indexes
(by name, Activity Log) hold exactly the entries of the events stored, whether an event is
written, overwritten or removed, in one unit or across units. Real RocksDB, no broker: changelog
units are fed to the state manager as its changelog consumer would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from app.membership_index import membership_index
from app.person_store import HISTORY_INDEXES, history_index, time_key
from app.topics import (ACTIVITY_LOG, HISTORY, HISTORY_BY_NAME, MEMBERSHIP, SEGMENT_MEMBERS,
                        TIMERS)
from tables import apply_rows
from tables.unit import TableSpec
from tables.changelog import UNIT_KEY, Position, Replayer, data_key
from tables.state import StateManager
from tests.support.changelog_records import changelog_record

CHANGELOG = "t.changelog.people"
CP = (CHANGELOG, 0)


def activity(n: int, name: str, processed_at: float | None = None) -> dict[str, Any]:
    return {"id": f"01J{n:023d}", "name": name, "type": "event", "data": {"n": n},
            "timestamp": 1_700_000_000 + n, "processed_at": processed_at or 1_700_000_100.5 + n}


class Applier:
    def __init__(self, root: Path) -> None:
        specs = [TableSpec(table, "t.person.events", CHANGELOG)
                 for table in (HISTORY, HISTORY_BY_NAME, ACTIVITY_LOG)]
        self.state = StateManager(specs, root, None, "127.0.0.1:1",  # type: ignore[arg-type]
                                  indexes={HISTORY: history_index()})
        self.replayer = Replayer(Position())
        self.offset = 0

    def unit(self, *changes: tuple[str, dict[str, Any] | None, dict[str, Any]]) -> None:
        """One unit: (person, activity or None to remove it, the activity naming the key)."""
        for person, stored, keyed in changes:
            value = orjson.dumps(stored) if stored is not None else None
            self._feed(data_key(HISTORY, time_key(person, keyed)), value)
        self._feed(UNIT_KEY, b"")

    def _feed(self, key: bytes, value: bytes | None) -> None:
        apply_rows.feed_records(self.state.apply_changes, CP, self.replayer,
                                [changelog_record(CP, self.offset, key, value)])
        self.offset += 1

    def keys(self, table: str) -> dict[str, Any]:
        return {key: value for key, value in self.state.tables[table].store(0).items()}

    def expected(self, table: str) -> dict[str, Any]:
        """The index entries of exactly the events history holds, as the live path writes them."""
        entries: dict[str, Any] = {}
        for key, stored in self.keys(HISTORY).items():
            entries.update(HISTORY_INDEXES[table](key.split("\x1f", 1)[0], stored))
        return entries


def test_indexes_follow_writes_overwrites_and_removals_in_and_across_units(
        tmp_path: Path) -> None:
    applier = Applier(tmp_path)
    a1, a2, a3 = activity(1, "viewed"), activity(2, "bought"), activity(3, "viewed")
    applier.unit(("p", a1, a1), ("p", a2, a2), ("q", a3, a3))
    # Across units: a2 removed; a1 stored again under its key with another processed time (the
    # Activity Log's key moves), and its first entries must go.
    a1_again = activity(1, "viewed", processed_at=1_700_009_999.0)
    applier.unit(("p", None, a2), ("p", a1_again, a1))
    # Within one unit: a4 written, overwritten, removed; a5 written twice.
    a4, a5 = activity(4, "left"), activity(5, "bought")
    a5_again = activity(5, "bought", processed_at=1_700_008_888.0)
    applier.unit(("q", a4, a4), ("q", activity(4, "left", 1_700_007_777.0), a4),
                 ("q", None, a4), ("p", a5, a5), ("p", a5_again, a5))

    assert sorted(a["id"] for a in applier.keys(HISTORY).values()) == \
        sorted(a["id"] for a in (a1, a3, a5))
    for table in (HISTORY_BY_NAME, ACTIVITY_LOG):
        assert applier.keys(table) == applier.expected(table), table
    log_times = {key.split("\x1f")[1] for key in applier.keys(ACTIVITY_LOG) if key[0] == "a"}
    assert "001700009999" in log_times and "001700008888" in log_times
    assert not log_times & {"001700000101.5", "001700000105.5"}, \
        "the first processed times of a1 and a5 are gone from the Activity Log"


def test_membership_indexes_from_changelogs_of_both_layouts(tmp_path: Path) -> None:
    """``segment_members`` and ``timers`` were logged tables before they were derived from
    ``membership``: a changelog written then holds their records beside the membership records.
    Applied by a worker that derives them (which rebuilds a local database of the old layout
    from the changelogs: the layout names the indexes), both give the same entries, and units of
    either layout follow each other."""
    specs = [TableSpec(table, "t.person.events", CHANGELOG)
             for table in (MEMBERSHIP, SEGMENT_MEMBERS, TIMERS)]
    state = StateManager(specs, tmp_path, None, "127.0.0.1:1",  # type: ignore[arg-type]
                         indexes={MEMBERSHIP: membership_index()})
    replayer, offset = Replayer(Position()), 0

    def unit(*records: tuple[str, str, Any]) -> None:
        nonlocal offset
        for table, key, value in (*records, ("", "", None)):
            raw_key = data_key(table, key) if table else UNIT_KEY
            raw = b"" if not table else None if value is None else orjson.dumps(value)
            apply_rows.feed_records(state.apply_changes, CP, replayer,
                                    [changelog_record(CP, offset, raw_key, raw)])
            offset += 1

    first = {"in": {"s1": 100, "s2": 120}, "due": {"s1": 500}}
    second = {"in": {"s2": 120, "s3": 130}, "due": {"s3": 900}}
    # The old layout: membership and its index records, in one unit each.
    unit((MEMBERSHIP, "p", first), (SEGMENT_MEMBERS, "s1\x00p", 100),
         (SEGMENT_MEMBERS, "s2\x00p", 120), (TIMERS, "000000000500:p", 1))
    unit((MEMBERSHIP, "p", second), (SEGMENT_MEMBERS, "s1\x00p", None),
         (SEGMENT_MEMBERS, "s3\x00p", 130), (TIMERS, "000000000500:p", None),
         (TIMERS, "000000000900:p", 1))
    # The new layout: membership alone.
    unit((MEMBERSHIP, "q", first))
    unit((MEMBERSHIP, "q", {"in": {}, "due": {}}), (MEMBERSHIP, "r", second))

    def stored(table: str) -> dict[str, Any]:
        return dict(state.tables[table].store(0).items())

    assert stored(SEGMENT_MEMBERS) == {"s2\x00p": 120, "s3\x00p": 130,
                                       "s2\x00r": 120, "s3\x00r": 130}
    assert stored(TIMERS) == {"000000000900:p": 1, "000000000900:r": 1}
    state.close()
