"""A new event or identify for a person, as two pure decisions around storing it.

:func:`receive` judges the input and says what to store (the step); once the agent has stored it,
:func:`react` decides what the input causes: the event-name index, a campaign trigger, identity
announcements and segment changes. Storing comes between the two because evaluation reads the
person's events, the new one included.
"""

from __future__ import annotations

from app.core import dedup, identity, triggers
from app.core.dedup import Entry, Ref, Verdict
from app.core.evaluation import ActiveSegments, History, catch_up, evaluate
from app.core.messages import Event, Identify
from app.core.outputs import Announce, NameSeen, Output, Trigger, counted
from app.core.person import PersonState, Policy, Step, step

_ABSENT = object()


#: ``(state, step, outputs, first_seen)``: the person before the input (time-driven changes due
#: until its time applied); what to store (a new input, or a redelivery completing its state
#: steps), else None; the outputs so far; whether nobody was stored under this person before.
#: A plain tuple: one per item on the hot path. :func:`react` follows a ``step`` of verdict NEW.
Received = tuple[PersonState, Step | None, list[Output], bool]

_VERDICTS = {verdict: counted(f"verdict:{verdict.value}") for verdict in Verdict}
_UPDATE_OF_NOBODY = counted("identify:update_of_unknown_person")
_SKIPPED_IMPORT = counted("triggers:skipped_import")
_SKIPPED_STALE = counted("triggers:skipped_stale")


def receive(state: PersonState, message: Event | Identify, ref: Ref, seen: Entry | None,
            events: History, segments: ActiveSegments, *, now_s: float,
            policy: Policy) -> Received:
    """``seen``: what is remembered of the input's id; ``now_s``: the clock (dedup horizons)."""
    person = message.person
    if isinstance(message, Identify) and message.update_only and state.profile is None:
        return state, None, [_UPDATE_OF_NOBODY], False
    if dedup.judge(seen, ref) is Verdict.REDELIVERY:
        # This record's effects reached the state, so all its outputs were acknowledged first
        # (the commit order). Re-apply the state steps (idempotent: they complete a changelog
        # that was cut short) but evaluate and send nothing: evaluating now, against a state
        # that may have moved past this input, would invent transitions.
        return state, step(state, person, message.item, ref, seen, now_s=now_s,
                           policy=policy), [_VERDICTS[Verdict.REDELIVERY]], False
    # Time-driven changes due before this input happen first, on the history before it.
    state, out = catch_up(state, person, events, segments, message.at_s)
    first_seen = state.profile is None and events.size() == 0
    result = step(state, person, message.item, ref, seen, now_s=now_s, policy=policy)
    out.append(_VERDICTS[result.verdict])
    if result.verdict is Verdict.DUPLICATE:
        return state, None, out, False
    return state, result, out, first_seen


def react(before: PersonState, after: PersonState, message: Event | Identify, events: History,
          segments: ActiveSegments, *, first_seen: bool) -> tuple[PersonState, list[Output]]:
    """A new input's outputs (its step stored): name index, trigger, announcements, changes."""
    at_s, person = message.at_s, message.person
    out: list[Output]
    if isinstance(message, Event):
        out = [NameSeen(message.name, message.timestamp), trigger(message, at_s)]
        candidates = segments.for_event(message.name)
    else:
        out = [Announce(announcement) for announcement in identity.after_identify(
            person, before.profile, after.profile, message.item)]
        # Only attributes whose value this identify changed can change a verdict: the last
        # evaluation already saw the others (a repeated identify costs no evaluation).
        old, new = before.attributes, after.attributes
        changed = {name for name in message.item.get("attributes", {})
                   if old.get(name, _ABSENT) != new.get(name, _ABSENT)}
        candidates = segments.for_attributes(changed)
    if first_seen:
        # Someone new is also in every segment that holds for a person with no data at all
        # ("has not purchased", "plan neq pro"): those mention nothing this input carries.
        candidates = candidates | segments.true_when_empty()
    state, evaluated = evaluate(after, person, events, segments.active(candidates), now_s=at_s,
                                cause=message.id)
    out += evaluated
    return state, out


def trigger(message: Event, now_s: int) -> Output:
    """A campaign trigger for each fresh event (72-hour rule); none for imports or merges."""
    if message.item.get("source") == "import":
        return _SKIPPED_IMPORT
    if not triggers.is_fresh(message.timestamp, now_s):
        return _SKIPPED_STALE
    return Trigger(triggers.trigger_record(message.item, message.person))
