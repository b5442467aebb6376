"""A person's profile as a fold over identify items.

Attribute writes are ordered by the sender's ``_timestamp`` when given (a later ``_timestamp`` wins
whatever the arrival order), else by arrival (``received_at``): each attribute remembers the stamp
of the write that set it, so applying identifies in any order gives the same attributes.
"""

from __future__ import annotations

from typing import Any

Profile = dict[str, Any]


def _stamp(item: dict[str, Any]) -> list[int]:
    """Order key of a write: sender time first (seconds → ms), then arrival, then id."""
    sent = item.get("timestamp")
    received = int(item.get("received_at") or 0)
    return [int(sent) * 1000 if sent is not None else received, received]


def new_profile(person_id: str, item: dict[str, Any]) -> Profile:
    return {
        "id": person_id,
        "attributes": {},
        "stamps": {},
        "anonymous_ids": [],
        "created_at": int(item.get("received_at") or 0) // 1000,
        "updated_at": 0,
    }


def apply_identify(profile: Profile | None, person_id: str, item: dict[str, Any]) -> Profile:
    """Return the profile after ``item`` (an identify), as a new value."""
    base = profile if profile is not None else new_profile(person_id, item)
    stamp = [*_stamp(item), 0]
    attributes = dict(base["attributes"])
    stamps = dict(base["stamps"])
    for name, value in item.get("attributes", {}).items():
        previous = stamps.get(name)
        if previous is None or stamp[:2] >= previous[:2]:
            attributes[name] = value
            stamps[name] = stamp
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
        "created_at": created_at,
        "updated_at": max(base["updated_at"], int(item.get("received_at") or 0) // 1000),
    }


def public_view(profile: Profile) -> dict[str, Any]:
    """The profile as the read API shows it."""
    return {
        "id": profile["id"],
        "attributes": profile["attributes"],
        "anonymous_ids": profile["anonymous_ids"],
        "created_at": profile["created_at"],
        "updated_at": profile["updated_at"],
    }
