"""One person (or anonymous id) as stored on this worker: profile, history, anonymous activity.

These read the worker's own tables: callers make sure the request reached the worker owning the
key's partition (the API's keyed-read forwarding, the console's :mod:`app.console.forward`).
"""

from __future__ import annotations

from typing import Any

from app.api.people import lookup_profile
from app.api.responses import ApiError
from app.core.profiles import identifiers
from app.person_store import stored_history
from app.producer import partition_for
from app.runtime import Runtime
from app.topics import ANONYMOUS_HISTORY, ANONYMOUS_LINKS, HISTORY_SIZE, PROFILES

Events = list[dict[str, Any]]


def _person_partition(rt: Runtime, person: str) -> int:
    return partition_for(person.encode(), rt.topics.person_events.partitions)


def _anonymous_partition(rt: Runtime, anonymous_id: str) -> int:
    return partition_for(anonymous_id.encode(), rt.topics.raw_anonymous.partitions)


def person_history(rt: Runtime, person: str) -> Events | None:
    """The person's stored events, oldest first (None: no history stored)."""
    partition = _person_partition(rt, person)
    if not rt.state.tables[HISTORY_SIZE].get(partition, person):
        return None
    return stored_history(rt.state.tables, partition, person)


def raw_profile(rt: Runtime, person: str) -> dict[str, Any] | None:
    """The stored profile as is (merged-away and deleted markers included)."""
    profile: dict[str, Any] | None = rt.state.tables[PROFILES].get(
        _person_partition(rt, person), person)
    return profile


def person_view(rt: Runtime, identifier: str
                ) -> tuple[str, dict[str, Any] | None, Events | None] | None:
    """(person, profile, stored events) an identifier names on this worker, or None when it has
    neither a profile nor activity here."""
    found = lookup_profile(rt, identifier)
    person = found[0] if found else (rt.resolve_person(identifier) or identifier)
    events = person_history(rt, person)
    if found is None and events is None:
        return None
    return person, found[1] if found else None, events


def customer_identifier(rt: Runtime, person: str) -> str:
    """What the track API's ``{id}`` path means for this person (id, or email)."""
    if rt.settings.identify_by == "id":
        return person
    profile = raw_profile(rt, person)
    email = identifiers(profile).get("email") if profile else None
    return email or person


def anonymous_events(rt: Runtime, anonymous_id: str) -> Events | None:
    """Activity of an anonymous id that is still anonymous (None: nothing stored)."""
    state = rt.state.tables[ANONYMOUS_HISTORY].get(_anonymous_partition(rt, anonymous_id),
                                                   anonymous_id)
    events: Events | None = None if state is None else state["events"]
    return events


def anonymous_link(rt: Runtime, anonymous_id: str) -> str | None:
    """The person an anonymous id was identified as (None: not identified)."""
    linked: str | None = rt.state.tables[ANONYMOUS_LINKS].get(
        _anonymous_partition(rt, anonymous_id), anonymous_id)
    return linked


def is_exportable(profile: dict[str, Any] | None) -> bool:
    """A merged-away or deleted person is not exported (``None``: events without a profile)."""
    return profile is None or not (profile.get("merged_into") or profile.get("deleted"))


def exportable_person(rt: Runtime, identifier: str
                      ) -> tuple[str, dict[str, Any] | None, Events | None]:
    """(person, profile, stored events) of the person ``identifier`` names, or a 404."""
    person = rt.resolve_person(identifier)
    profile = history = None
    if person is not None:
        profile = raw_profile(rt, person)
        history = person_history(rt, person)
    if person is None or (profile is None and history is None) or not is_exportable(profile):
        raise ApiError(404, f"customer {identifier!r} not found")
    return person, profile, history
