"""One person's stored data as the export (API and console) reads it."""

from __future__ import annotations

from typing import Any

from app.api.responses import ApiError
from app.producer import partition_for
from app.person_store import stored_history
from app.runtime import Runtime
from app.topics import HISTORY_SIZE, PROFILES


def is_exportable(profile: dict[str, Any] | None) -> bool:
    """A merged-away or deleted person is not exported (``None``: events without a profile)."""
    return profile is None or not (profile.get("merged_into") or profile.get("deleted"))


def exportable_person(rt: Runtime, identifier: str
                      ) -> tuple[str, dict[str, Any] | None, list[dict[str, Any]] | None]:
    """(person, profile, stored events) of the person ``identifier`` names, or a 404."""
    person = rt.resolve_person(identifier)
    profile = history = None
    if person is not None:
        tables = rt.state.tables
        partition = partition_for(person.encode(), rt.topics.person_events.partitions)
        profile = tables[PROFILES].get(partition, person)
        history = stored_history(tables, partition, person) \
            if tables[HISTORY_SIZE].get(partition, person) else None
    if person is None or (profile is None and history is None) or not is_exportable(profile):
        raise ApiError(404, f"customer {identifier!r} not found")
    return person, profile, history
