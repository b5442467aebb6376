"""Unit tests for app.core.identity: what the person stage announces after an identify, a merge
and a delete (pure: no I/O)."""

from __future__ import annotations

from typing import Any

from app.core.identity import (Alias, Link, after_delete, after_identify, after_merge_away,
                               merged_marker)
from app.core.profiles import cio_id_for


def profile(person: str, email: str | None = None, anonymous_ids: list[str] | None = None,
            **extra: Any) -> dict[str, Any]:
    return {"id": person, "attributes": {"email": email} if email else {}, "stamps": {},
            "anonymous_ids": anonymous_ids or [], "created_at": 1, "updated_at": 1, **extra}


def identify(anonymous_id: str | None = None) -> dict[str, Any]:
    return {"id": "01HZ0000000000000000000001", "anonymous_id": anonymous_id,
            "received_at": 1_700_000_000_999}


def test_a_new_person_aliases_their_cio_id_and_email() -> None:
    out = after_identify("p1", None, profile("p1", "a@x.io"), identify())
    assert out == [Alias("a@x.io", {"op": "alias", "person": "p1", "identifier": "email:a@x.io"}),
                   Alias(cio_id_for("p1"), {"op": "alias", "person": "p1",
                                            "identifier": f"cio_id:{cio_id_for('p1')}"})]


def test_a_changed_email_moves_its_alias_and_nothing_else() -> None:
    out = after_identify("p1", profile("p1", "old@x.io"), profile("p1", "new@x.io"), identify())
    assert out == [Alias("old@x.io", {"op": "unalias", "person": "p1",
                                      "identifier": "email:old@x.io"}),
                   Alias("new@x.io", {"op": "alias", "person": "p1",
                                      "identifier": "email:new@x.io"})]


def test_an_unchanged_profile_announces_nothing_but_the_anonymous_link() -> None:
    same = profile("p1", "a@x.io")
    assert after_identify("p1", same, same, identify()) == []
    assert after_identify("p1", same, same, identify("anon-7")) == [
        Link("anon-7", {"op": "link", "anonymous_id": "anon-7", "person": "p1",
                        "id": "01HZ0000000000000000000001", "at": 1_700_000_000})]


def test_merging_away_points_every_identifier_and_anonymous_id_at_the_primary() -> None:
    out = after_merge_away("p2", "p1", profile("p2", "b@x.io", ["anon-1"]), "M1", 50_000)
    aliases = {a.key: a.command for a in out if isinstance(a, Alias)}
    assert aliases == {value: {"op": "alias", "person": "p1", "identifier": f"{kind}:{value}",
                               "moved_from": "p2", "moved_at": 50_000}
                       for kind, value in (("id", "p2"), ("cio_id", cio_id_for("p2")),
                                           ("email", "b@x.io"))}
    assert [a for a in out if isinstance(a, Link)] == [
        Link("anon-1", {"op": "link", "anonymous_id": "anon-1", "person": "p1",
                        "relink_from": "p2", "at": 50, "id": "M1"})]


def test_merging_away_someone_never_seen_still_forwards_their_id() -> None:
    assert after_merge_away("p9", "p1", None, "M2", 50_000) == [
        Alias("p9", {"op": "alias", "person": "p1", "identifier": "id:p9", "moved_from": "p9",
                     "moved_at": 50_000})]
    assert merged_marker("p9", "p1", 50)["merged_into"] == "p1"


def test_a_delete_drops_aliases_but_the_id_and_unlinks_anonymous_ids() -> None:
    out = after_delete("p1", profile("p1", "a@x.io", ["anon-1"], merged_from=["p3", "p2"]),
                       "D1", 70)
    assert {a.key for a in out if isinstance(a, Alias)} == {"a@x.io", cio_id_for("p1")}
    assert all(a.command["op"] == "unalias" and a.command["former"] == ["p2", "p3"]
               for a in out if isinstance(a, Alias))
    assert [a for a in out if isinstance(a, Link)] == [
        Link("anon-1", {"op": "unlink", "anonymous_id": "anon-1", "person": "p1",
                        "former": ["p2", "p3"], "id": "D1", "at": 70})]
    assert after_delete("p1", None, "D1", 70) == []
