"""What the person stage tells the other stages when someone's identity changes: pure decisions.

The person stage owns a person; the identifier partitions (``identity.commands``: which person an
email or cio_id names) and the anonymous partitions (``anonymous.links``: which person an
anonymous id became) are owned elsewhere. After an identify, a merge or a delete the person stage
announces what changed there. Each announcement is idempotent where it lands (an alias set twice
is set once), so a redelivery may re-send them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.core import profiles
from app.core.profiles import Profile

#: The identifiers whose owner is recorded on the identifier's own partition.
ALIASED_KINDS = ("email", "cio_id")


@dataclass(frozen=True)
class Alias:
    """For ``identity.commands``, keyed by the identifier's value."""

    key: str
    command: dict[str, Any]


@dataclass(frozen=True)
class Link:
    """For ``anonymous.links``, keyed by the anonymous id."""

    anonymous_id: str
    command: dict[str, Any]


Announcement = Alias | Link


def _alias(op: str, person: str, kind: str, value: str, **extra: Any) -> Alias:
    return Alias(value, {"op": op, "person": person, "identifier": f"{kind}:{value}", **extra})


def after_identify(person: str, before: Profile | None, after: Profile | None,
                   item: dict[str, Any]) -> list[Announcement]:
    """An identify changed ``before`` into ``after``: move the aliases whose value changed, and
    link the anonymous id it carries."""
    old = profiles.identifiers(before) if before else {}
    new = profiles.identifiers(after) if after else {}
    out: list[Announcement] = []
    for kind in ALIASED_KINDS:
        if new.get(kind) != old.get(kind):
            if old.get(kind):
                out.append(_alias("unalias", person, kind, old[kind]))
            if new.get(kind):
                out.append(_alias("alias", person, kind, new[kind]))
    anonymous_id = item.get("anonymous_id")
    if anonymous_id:
        out.append(Link(anonymous_id, {"op": "link", "anonymous_id": anonymous_id,
                                       "person": person, "id": item["id"],
                                       "at": int(item["received_at"]) // 1000}))
    return out


def after_merge_away(secondary: str, primary: str, profile: Profile | None, merge_id: str,
                     merged_at_ms: int) -> list[Announcement]:
    """``secondary`` merged into ``primary``: each of its identifiers (its id at least) now names
    the primary, and named the secondary until the merge's accept time (so a merge into that
    identifier accepted earlier, resolved later, still goes to the secondary: ``routes``), and
    its anonymous ids are linked to the primary."""
    at = merged_at_ms // 1000
    out: list[Announcement] = [
        _alias("alias", primary, kind, value, moved_from=secondary, moved_at=merged_at_ms)
        for kind, value in (profiles.identifiers(profile) if profile else
                            {"id": secondary}).items()]
    out.extend(Link(anonymous_id, {"op": "link", "anonymous_id": anonymous_id, "person": primary,
                                   "relink_from": secondary, "at": at, "id": merge_id})
               for anonymous_id in (profile or {}).get("anonymous_ids", []))
    return out


def merged_marker(secondary: str, primary: str, merged_at_ms: int) -> Profile:
    """What stays of a secondary: a forwarder to the survivor, and when the merge was accepted
    (what it forwards says so: ``messages.forwarded``)."""
    at = merged_at_ms // 1000
    return {"id": secondary, "merged_into": primary, "merged_at": merged_at_ms, "attributes": {},
            "stamps": {}, "anonymous_ids": [], "created_at": at, "updated_at": at}


def after_delete(person: str, profile: Profile | None, delete_id: str,
                 at: int) -> list[Announcement]:
    """``person`` deleted: their aliases and anonymous links go. A link or alias may still name
    someone merged into this person (a merge chain resolved out of order leaves it on the middle
    person's marker): those go too (``former``)."""
    if not profile:
        return []
    former = sorted(profile.get("merged_from", []))
    out: list[Announcement] = [
        _alias("unalias", person, kind, value, former=former)
        for kind, value in profiles.identifiers(profile).items() if kind != "id"]
    out.extend(Link(anonymous_id, {"op": "unlink", "anonymous_id": anonymous_id,
                                   "person": person, "former": former, "id": delete_id,
                                   "at": at})
               for anonymous_id in profile.get("anonymous_ids", []))
    return out
