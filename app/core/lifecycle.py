"""A person's lifecycle as pure decisions: merged away, absorbing a merged person, deleted, and
what reaches someone merged away.

Each returns the person's next state and its outputs; the agent stores, sends and counts.
"""

from __future__ import annotations

from typing import Any, Callable

from app.core import dedup, identity, membership, profiles
from app.core.dedup import Entry, Ref, Verdict
from app.core.evaluation import ActiveSegments, History, evaluate, leave
from app.core.messages import Absorb, Delete, ForPerson, MergeFrom, forwarded
from app.core.outputs import Announce, ClearEvents, Count, Deleted, Forward, Output
from app.core.person import PersonState, Policy

Activity = dict[str, Any]


def redirect(state: PersonState, message: ForPerson) -> list[Output] | None:
    """What happens instead of handling ``message`` here (None: handle it)."""
    marker = state.profile or {}
    merged_into = marker.get("merged_into")
    if isinstance(message, MergeFrom) and message.into == message.person:
        return [Count("merges:repeat")]
    if not merged_into:
        return None
    # (A marker left before merge times were kept has its merge's second.)
    merged_at = marker.get("merged_at") or int(marker.get("created_at") or 0) * 1000
    if isinstance(message, MergeFrom):
        if message.received_at < merged_at:
            return earlier_copy(marker, message)
        return [Count("merges:repeat")]  # merging twice is merging once
    # Someone merged away: whatever still reaches them belongs to the survivor.
    return [Forward(merged_into, forwarded(message, merged_into, merged_at))]


def earlier_copy(marker: profiles.Profile, message: MergeFrom) -> list[Output]:
    """A merge accepted before the one that merged this person away, handled after it (a merge
    sent twice, whose later copy came first). Merging twice is merging once, at the earlier
    time: the survivor is told so (``profiles.merge`` keeps a merged person's earliest merge
    time, and places again what arrived here in between). It is sent to the earlier copy's
    primary, whose marker forwards it on if that person has been merged since. The marker keeps
    its time: what it forwards meets the level the survivor records."""
    secondary = message.person
    stand_in = profiles.new_profile(secondary,
                                    {"received_at": int(marker.get("created_at") or 0) * 1000})
    absorb = Absorb.create(person=message.into, id=message.id, source=secondary, events=[],
                           profile=stand_in, received_at=message.received_at)
    return [Forward(message.into, absorb.item), Count("merges:earlier_copy")]


def merge_away(state: PersonState, message: MergeFrom,
               events: History) -> tuple[PersonState, list[Output]]:
    """The secondary's side of a merge: hand everything to the primary, leave a forwarder."""
    secondary, primary = message.person, message.into
    at = message.received_at // 1000
    out: list[Output] = []
    if state.profile is None and events.size() == 0:
        # Nothing here yet: the merge may have overtaken the secondary's first input (a crash
        # can redeliver that input after the merge). Leave the forwarder all the same, so what
        # arrives later for the secondary joins the primary, as it would have in the other
        # order; the primary still absorbs nothing but the secondary's id (merged_from).
        out.append(Count("merges:empty_secondary"))
    absorb = Absorb.create(person=primary, id=message.id, source=secondary,
                           events=events.all(), profile=state.profile,
                           received_at=message.received_at)
    out.append(Forward(primary, absorb.item))
    state, left = leave(state, secondary, events, cause=f"merge:{message.id}", at=at)
    out += left
    out.extend(Announce(announcement) for announcement in identity.after_merge_away(
        secondary, primary, state.profile, message.id, message.received_at))
    out += [ClearEvents(), Count("merges:done")]
    marker = identity.merged_marker(secondary, primary, message.received_at)
    return PersonState(marker, membership.empty()), out


def absorbed_events(message: Absorb, ref: Ref, seen: Callable[[str], Entry | None], *,
                    policy: Policy) -> list[tuple[Activity, Entry | None]]:
    """The primary's side of a merge, first half: which of the secondary's events to store, each
    with the dedup entry to remember for a new id (duplicates of the primary's own are left)."""
    now_ms = message.received_at
    remembered: dict[str, Entry] = {}
    kept: list[tuple[Activity, Entry | None]] = []
    for activity in message.events:
        event_id = activity["id"]
        entry = remembered[event_id] if event_id in remembered else seen(event_id)
        verdict = dedup.judge(entry, ref, now_ms)
        if verdict is Verdict.DUPLICATE:
            continue
        new_entry = None
        if verdict is Verdict.NEW:
            new_entry = remembered[event_id] = dedup.entry(
                event_id, ref, now_ms=now_ms, horizon_ms=policy.dedup_horizon_s * 1000)
        kept.append((activity, new_entry))
    return kept


def absorb(state: PersonState, message: Absorb, events: History,
           segments: ActiveSegments) -> tuple[PersonState, list[Output]]:
    """Second half, the events stored: the secondary's attributes, and the segments its events
    and attributes can change."""
    now_s = message.received_at // 1000
    profile = state.profile
    if message.profile:
        profile = profiles.merge(profile, message.person, message.profile, message.id, now_s,
                                 merged_at_ms=message.received_at,
                                 via=message.item.get("via") or ())
    elif profile is not None:  # an empty secondary: only its id joins the primary
        profile = profiles.merged_in(profile, message.source)
    candidates: set[str] = set()
    for name in {activity["name"] for activity in message.events}:
        candidates |= segments.for_event(name)
    before = (state.profile or {}).get("attributes", {})
    after = (profile or {}).get("attributes", {})
    candidates |= segments.for_attributes(
        set((message.profile or {}).get("attributes", {}))
        | {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)})
    return evaluate(PersonState(profile, state.membership), message.person, events,
                    segments.active(candidates), now_s=now_s, cause=f"merge:{message.id}")


def delete(state: PersonState, message: Delete,
           events: History) -> tuple[PersonState, list[Output]]:
    person, at = message.person, message.received_at // 1000
    state, out = leave(state, person, events, cause=f"delete:{message.id}", at=at)
    out.extend(Announce(announcement) for announcement in identity.after_delete(
        person, state.profile, message.id, at))
    out += [ClearEvents(), Deleted(), Count("deletes")]
    return PersonState(None, membership.empty()), out
