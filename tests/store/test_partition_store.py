"""tables.store.PartitionStore on a real RocksDB in tmp_path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from rocksdict import DbClosedError

from tables.store import PartitionStore, open_database


@pytest.fixture
def store(tmp_path: Path) -> Any:
    opened = PartitionStore(tmp_path / "history" / "0")
    yield opened
    try:
        opened.close()
    except DbClosedError:  # the test closed it to reopen the same path
        pass


def reopen(store: PartitionStore) -> PartitionStore:
    store.close()
    return PartitionStore(store.path)


VALUES: dict[str, Any] = {
    "cust-1": [{"id": "A", "timestamp": 1, "data": {"nested": [1, 2.5, None, True]}}],
    "cust-2": {"attributes": {"plan": "pro", "é": "ü"}, "anonymous_ids": []},
    "cust-3": 42,
    "cust-4": "text",
    "ünïcode key": {"x": None},
}


def test_put_get_delete_round_trip(store: PartitionStore) -> None:
    assert store.get("cust-1") is None
    store.write(VALUES, None)
    for key, value in VALUES.items():
        assert store.get(key) == value
    store.write({"cust-1": None, "cust-3": 43}, None)
    assert store.get("cust-1") is None
    assert store.get("cust-3") == 43
    assert store.get("cust-2") == VALUES["cust-2"]


def test_deleting_a_missing_key_is_harmless(store: PartitionStore) -> None:
    store.write({"never-there": None}, 3)
    assert store.get("never-there") is None
    assert list(store.keys()) == []
    assert store.changelog_offset == 3


def test_changelog_offset_is_minus_one_when_fresh(store: PartitionStore) -> None:
    assert store.changelog_offset == -1
    store.write({"a": 1}, None)
    assert store.changelog_offset == -1, "a write without an offset does not invent one"


def test_changelog_offset_is_written_with_the_values(store: PartitionStore) -> None:
    store.write({"a": 1}, 7)
    assert store.changelog_offset == 7
    store.write({"b": 2}, None)
    assert store.changelog_offset == 7
    store.write({"c": 3}, 12)
    assert store.changelog_offset == 12
    assert store.get("c") == 3


def test_values_and_offset_survive_close_and_reopen(store: PartitionStore) -> None:
    store.write(VALUES, 99)
    store.write({"cust-4": None}, 100)
    again = reopen(store)
    try:
        assert again.changelog_offset == 100
        assert dict(again.items()) == {k: v for k, v in VALUES.items() if k != "cust-4"}
    finally:
        again.close()


def test_apply_changelog_applies_puts_and_tombstones_and_sets_the_offset(
    store: PartitionStore,
) -> None:
    store.write({"gone": [1], "kept": [2], "replaced": [3]}, 4)
    store.apply_changelog([
        (b"gone", None),
        (b"replaced", orjson.dumps({"v": 30})),
        (b"new", orjson.dumps(["n"])),
        (b"new", orjson.dumps(["n", "later"])),     # later record of a key wins
    ], last_offset=20)
    assert store.changelog_offset == 20
    assert dict(store.items()) == {"kept": [2], "replaced": {"v": 30}, "new": ["n", "later"]}
    again = reopen(store)
    try:
        assert again.changelog_offset == 20
        assert again.get("new") == ["n", "later"]
        assert again.get("gone") is None
    finally:
        again.close()


def test_apply_changelog_with_no_records_still_moves_the_offset(store: PartitionStore) -> None:
    store.apply_changelog([], last_offset=5)
    assert store.changelog_offset == 5
    assert list(store.items()) == []


def test_items_and_keys_never_show_the_offset_key(store: PartitionStore) -> None:
    store.write({"a": 1, "b": {"x": 2}}, 55)
    store.apply_changelog([(b"c", orjson.dumps(3))], last_offset=56)
    assert sorted(store.keys()) == ["a", "b", "c"]
    assert dict(store.items()) == {"a": 1, "b": {"x": 2}, "c": 3}
    store.write({"a": None, "b": None, "c": None}, 57)
    assert list(store.keys()) == []
    assert list(store.items()) == []
    assert store.changelog_offset == 57


def test_a_write_batch_is_applied_whole(store: PartitionStore) -> None:
    changes = {f"key-{n:04d}": {"n": n, "pad": "x" * 100} for n in range(2_000)}
    store.write(changes, 2_000)
    again = reopen(store)
    try:
        assert dict(again.items()) == changes
        assert again.changelog_offset == 2_000
    finally:
        again.close()


def test_a_failing_write_batch_changes_nothing(store: PartitionStore) -> None:
    """A value that cannot be encoded aborts the batch before RocksDB sees any of it."""
    store.write({"a": 1}, 1)
    with pytest.raises(TypeError):
        store.write({"a": 2, "b": 2, "c": object()}, 2)
    assert store.get("a") == 1
    assert store.get("b") is None
    assert store.changelog_offset == 1
    again = reopen(store)
    try:
        assert dict(again.items()) == {"a": 1}
        assert again.changelog_offset == 1
    finally:
        again.close()


def test_partitions_are_separate_databases(tmp_path: Path) -> None:
    zero = PartitionStore(tmp_path / "t" / "0")
    one = PartitionStore(tmp_path / "t" / "1")
    try:
        zero.write({"k": "zero"}, 1)
        one.write({"k": "one"}, 9)
        assert zero.get("k") == "zero" and one.get("k") == "one"
        assert zero.changelog_offset == 1 and one.changelog_offset == 9
    finally:
        zero.close()
        one.close()


def test_range_is_ordered_half_open_and_hides_the_offset_key(store: PartitionStore) -> None:
    store.write({"t:0003:b": 1, "t:0001:a": 1, "t:0002:c": 1, "u:0000:z": 1}, 9)
    assert [k for k, _ in store.range("", "t:0003")] == ["t:0001:a", "t:0002:c"]
    assert [k for k, _ in store.range("t:0002", "u")] == ["t:0002:c", "t:0003:b"]
    assert list(store.range("v", "w")) == []


def test_a_caller_key_equal_to_the_internal_offset_key_is_kept_apart(
    store: PartitionStore,
) -> None:
    person = "\x00changelog-offset"
    history = [{"id": "A", "timestamp": 1}]
    store.write({person: history, "other": 1}, 5)
    assert store.changelog_offset == 5
    assert store.get(person) == history
    assert sorted(store.keys()) == sorted([person, "other"])


def test_a_database_built_from_other_changelogs_is_removed_and_rebuilt(tmp_path: Path) -> None:
    from tables.store import open_database

    path = tmp_path / "tables"
    db = open_database(path, layout="v1.changelog.people")
    PartitionStore.view(db, "history", 0).write({"cust-1": [{"id": "A"}]}, 41)
    db.close()
    db = open_database(path, layout="v1.changelog.people")  # same layout: kept
    assert PartitionStore.view(db, "history", 0).get("cust-1") == [{"id": "A"}]
    db.close()
    db = open_database(path, layout="v1.changelog.people.l2")  # another: gone, from scratch
    store = PartitionStore.view(db, "history", 0)
    assert store.get("cust-1") is None
    assert store.changelog_offset == -1
    db.close()


def test_the_database_filters_absent_keys_in_files_and_in_memtables(tmp_path: Path) -> None:
    """Most hot-path reads are of absent keys (a new id, a new event's key): RocksDB's own record
    of the options it opened with shows a whole-key Bloom filter on the files and on the
    memtables (tables/store.py)."""
    open_database(tmp_path / "db").close()
    (options_file,) = sorted((tmp_path / "db").glob("OPTIONS-*"))[-1:]
    written = {line.strip() for line in options_file.read_text().splitlines()}
    assert {"memtable_whole_key_filtering=true", "memtable_prefix_bloom_size_ratio=0.100000",
            "filter_policy=bloomfilter", "whole_key_filtering=true"} <= written
