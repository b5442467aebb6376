"""Finding a stored person from an identifier, for handlers that need "must already exist"."""

from __future__ import annotations

from typing import Any

from app.producer import partition_for
from app.runtime import Runtime
from app.topics import PROFILES


def lookup_profile(rt: Runtime, identifier: str) -> tuple[str, dict[str, Any]] | None:
    """The (person id, profile) an identifier names, or None if no such person is stored.

    The identifier is a customer id (or an email when the workspace addresses people by email).
    """
    person = rt.resolve_person(identifier)
    if person is None:
        return None
    if rt.settings.identify_by == "id" and person != identifier:
        return None  # merged away: the secondary is gone (its identifiers now lead elsewhere)
    partition = partition_for(person.encode(), rt.topics.person_events.partitions)
    profile = rt.state.tables[PROFILES].get(partition, person)
    if profile is None or profile.get("merged_into") or profile.get("deleted"):
        return None
    return person, profile
