"""A person's profile as a fold over identify items.

Attribute writes are ordered by the sender's ``_timestamp`` when given (a later ``_timestamp`` wins
whatever the arrival order), else by arrival (``received_at``): each attribute remembers the stamp
of the write that set it, so applying identifies in any order gives the same attributes.
"""

from __future__ import annotations

import hashlib
from typing import Any

Profile = dict[str, Any]

#: Attribute changes kept per person (oldest dropped).
MAX_CHANGES = 1_000


def cio_id_for(person_id: str) -> str:
    """The generated identifier of a person (Customer.io's ``cio_id``), stable for its id."""
    return "cio_" + hashlib.blake2b(person_id.encode(), digest_size=8).hexdigest()


def _stamp(item: dict[str, Any]) -> list[int]:
    """Order key of a write: sender time first (seconds → ms), then arrival, then id."""
    sent = item.get("timestamp")
    received = int(item.get("received_at") or 0)
    return [int(sent) * 1000 if sent is not None else received, received]


def new_profile(person_id: str, item: dict[str, Any]) -> Profile:
    return {
        "id": person_id,
        "cio_id": cio_id_for(person_id),
        "attributes": {},
        "stamps": {},
        "anonymous_ids": [],
        "changes": [],
        "created_at": int(item.get("received_at") or 0) // 1000,
        "updated_at": 0,
    }


def _newer(stamp: list[Any], previous: list[Any] | None) -> bool:
    """Whether a write stamped ``stamp`` replaces the one stamped ``previous``: a later stamp
    wins, and so does an equal one. (A stamp's third place says where a write came from.)"""
    return previous is None or stamp[:2] >= previous[:2]


def _write(attributes: dict[str, Any], stamps: dict[str, Any], changes: list[dict[str, Any]],
           name: str, value: Any, stamp: list[Any], at: int, source: str, write_id: str) -> None:
    """Set an attribute with its stamp, keeping the change when it is one."""
    old = attributes.get(name)
    if old != value or name not in attributes:
        changes.append({"name": name, "old": old, "new": value, "at": at, "source": source,
                        "id": write_id})
    attributes[name] = value
    stamps[name] = stamp


def apply_identify(profile: Profile | None, person_id: str, item: dict[str, Any]) -> Profile:
    """Return the profile after ``item`` (an identify), as a new value."""
    base = profile if profile is not None else new_profile(person_id, item)
    stamp = [*_stamp(item), 0]
    attributes = dict(base["attributes"])
    stamps = dict(base["stamps"])
    changes = list(base.get("changes", []))
    at = int(item.get("received_at") or 0) // 1000
    source = item.get("source", "identify")
    for name, value in item.get("attributes", {}).items():
        if _newer(stamp, stamps.get(name)):
            _write(attributes, stamps, changes, name, value, stamp, at, source, item["id"])
    anonymous_ids = base["anonymous_ids"]
    anonymous_id = item.get("anonymous_id")
    if anonymous_id and anonymous_id not in anonymous_ids:
        anonymous_ids = sorted([*anonymous_ids, anonymous_id])
    created_at = base["created_at"]
    if isinstance(attributes.get("created_at"), int):
        created_at = attributes["created_at"]
    return {
        **base,
        "attributes": attributes,
        "stamps": stamps,
        "anonymous_ids": anonymous_ids,
        "changes": changes[-MAX_CHANGES:],
        "created_at": created_at,
        "updated_at": max(base["updated_at"], int(item.get("received_at") or 0) // 1000),
    }


def merge(primary: Profile | None, primary_id: str, secondary: Profile, merge_id: str,
          at: int, *, merged_at_ms: int) -> Profile:
    """Fold ``secondary`` into ``primary``: the primary's attributes win on conflict, over what
    the secondary was sent before the merge (accepted at ``merged_at_ms``).

    Two kinds of the secondary's writes are applied as an identify is (a later stamp wins):

    * one sent after the merge. In accept order it reaches the primary as an identify forwarded
      by the secondary's marker; the secondary holds it only if it handled it before its side of
      the merge;
    * one of an attribute the primary took from this secondary. A merge is sent again, under the
      same id, when a crash lost the secondary's side after its absorb had gone out; the
      secondary may have handled more writes in between.

    So every order and redo of one merge gives the primary the same attributes. An attribute
    taken from a secondary carries its id in its stamp's third place (``apply_identify`` puts a
    0 there: the primary's own write)."""
    base = primary if primary is not None else new_profile(primary_id, {"received_at": at * 1000})
    attributes = dict(base["attributes"])
    stamps = dict(base["stamps"])
    changes = list(base.get("changes", []))
    source = secondary["id"]
    for name, value in sorted(secondary["attributes"].items()):
        stamp = [*secondary["stamps"].get(name, [0, 0])[:2], source]
        previous = stamps.get(name)
        taken_from_it = previous is not None and len(previous) > 2 and previous[2] == source
        if name in attributes and not (taken_from_it or stamp[1] > merged_at_ms):
            continue  # the primary's own (or another's) wins over a write sent before the merge
        if _newer(stamp, previous):
            _write(attributes, stamps, changes, name, value, stamp, at, f"merge:{source}",
                   merge_id)
    merged_from = sorted(set(base.get("merged_from", [])) | {source}
                         | set(secondary.get("merged_from", [])))
    return {
        **base,
        "attributes": attributes,
        "stamps": stamps,
        "anonymous_ids": sorted(set(base["anonymous_ids"]) | set(secondary["anonymous_ids"])),
        "changes": changes[-MAX_CHANGES:],
        "merged_from": merged_from,
        "created_at": min(base["created_at"], secondary["created_at"]),
        "updated_at": max(base["updated_at"], at),
    }


def merged_in(profile: Profile, secondary_id: str) -> Profile:
    """``profile`` with ``secondary_id`` among the people merged into it (the same object when
    it is there already)."""
    merged_from = profile.get("merged_from", [])
    if secondary_id in merged_from:
        return profile
    return {**profile, "merged_from": sorted({*merged_from, secondary_id})}


def identifiers(profile: Profile) -> dict[str, str]:
    """The identifiers a person can be addressed by."""
    found = {"id": profile["id"], "cio_id": profile.get("cio_id") or cio_id_for(profile["id"])}
    email = profile["attributes"].get("email")
    if isinstance(email, str) and email:
        found["email"] = email
    return found


def public_view(profile: Profile) -> dict[str, Any]:
    """The profile as the read API shows it."""
    return {
        "id": profile["id"],
        "identifiers": identifiers(profile),
        "attributes": profile["attributes"],
        "anonymous_ids": profile["anonymous_ids"],
        "created_at": profile["created_at"],
        "updated_at": profile["updated_at"],
    }
