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
    # With people addressed by id, the id is the person: someone merged away keeps a marker
    # (``merged_into``) in their own partition, so no alias (kept on another partition, maybe by
    # another worker) needs reading. Addressed by email, the email's alias names the person.
    person = identifier if rt.settings.identify_by == "id" else rt.resolve_person(identifier)
    if person is None:
        return None
    partition = partition_for(person.encode(), rt.topics.person_events.partitions)
    profile = rt.state.tables[PROFILES].get(partition, person)
    if profile is None or profile.get("merged_into") or profile.get("deleted"):
        return None
    return person, profile
