"""Membership of one person in a segment, and when it can next change on its own.

Inputs are the person's stored activities (``{"id", "name", "type", "data", "timestamp",
"processed_at"}``, ``timestamp`` = event time in Unix seconds) and profile attributes (a dict).

Time semantics, with ``w`` the window length in seconds:

* an event counts for a ``within`` condition at time ``now`` iff ``now - w < timestamp <= now``: it
  enters at ``timestamp`` and leaves at ``timestamp + w`` (exactly ``w`` seconds old is out);
* without ``within`` it counts iff ``timestamp <= now``: future-stamped events count once their time
  comes, and never leave.

Event conditions match on ``name`` alone, whatever the activity ``type`` (event/page/screen).
Activities without a numeric ``timestamp`` never count. ``processed_at`` plays no part: windows are
judged by event time, so a back-dated event can arrive already outside its window.

Cost: each event condition reads only the person's events of its name, and of those only the ones
inside its window (an :class:`EventSource` over the stored history reads them by key range);
events given as a list are bucketed by the segment's event names in one pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Collection, Iterable, Iterator, Mapping, Protocol, cast

from . import operators
from .conditions import (
    AllOf,
    AttributeCondition,
    Condition,
    EventCondition,
    Not,
    Segment,
    Where,
)
from .paths import resolve

Activity = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Evaluation:
    """Membership now, and the earliest time after now at which it could change by itself."""

    member: bool
    next_change_at: int | None


def is_member(
    segment: Segment, activities: "Iterable[Activity] | EventSource",
    attributes: Mapping[str, Any], now_s: int
) -> bool:
    """Whether the person is in ``segment`` at ``now_s``."""
    return _Evaluator(_source(segment, activities), attributes, now_s).value(segment.match)


def next_change_at(
    segment: Segment, activities: "Iterable[Activity] | EventSource",
    attributes: Mapping[str, Any], now_s: int
) -> int | None:
    """The earliest ``t > now_s`` at which :func:`is_member` could change with no new input.

    Membership is guaranteed constant on ``[now_s, t)``; at ``t`` it may or may not change (the
    answer is conservative, never late). None: it cannot change until new input arrives.
    """
    return evaluate(segment, activities, attributes, now_s).next_change_at


def evaluate(
    segment: Segment, activities: "Iterable[Activity] | EventSource",
    attributes: Mapping[str, Any], now_s: int
) -> Evaluation:
    """:func:`is_member` and :func:`next_change_at` at once, with one pass over the activities."""
    member, change = _Evaluator(_source(segment, activities), attributes, now_s).value_and_change(
        segment.match
    )
    return Evaluation(member, change)


def evaluator(
    activities: "Iterable[Activity] | EventSource", attributes: Mapping[str, Any], now_s: int
) -> Callable[[Segment], tuple[bool, int | None]]:
    """:func:`evaluate` of one person at one time, for segment after segment: as
    ``(member, next_change_at)``, sharing one evaluator over a stored history (a person's
    evaluation runs once per segment an input can affect: hundreds for some identifies)."""
    if hasattr(activities, "newest"):
        shared = _Evaluator(cast(EventSource, activities), attributes, now_s)
        return lambda segment: shared.value_and_change(segment.match)
    return lambda segment: _Evaluator(_source(segment, activities), attributes,
                                      now_s).value_and_change(segment.match)


def _source(segment: Segment, activities: "Iterable[Activity] | EventSource") -> "EventSource":
    """``activities`` as an :class:`EventSource`: a stored history is one already; a list is
    bucketed by the segment's event names.

    (Not isinstance with the runtime-checkable protocol: that walks the protocol's members at
    every call, 9% of a worker evaluating 1,000 segments.)"""
    if hasattr(activities, "newest"):
        return cast(EventSource, activities)
    return ListSource(activities, segment.event_names())


def _where_holds(where: tuple[Where, ...], data: Any) -> bool:
    return all(operators.apply(w.op, resolve(data, w.path), w.value) for w in where)


def _ceil(t: int | float) -> int:
    # Change points are whole seconds: a fractional timestamp takes effect at the next second.
    return t if isinstance(t, int) else math.ceil(t)


class EventSource(Protocol):
    """A person's stored events of one name, for the conditions that mention it.

    ``named(name, after)`` yields the events called ``name`` with a numeric timestamp, in
    ``(timestamp, id)`` order, only those with ``timestamp > after`` when ``after`` is given (a
    window's start): a stored history is read by range, never whole.
    """

    def named(self, name: str, after: float | None) -> Iterator[Activity]: ...

    def newest(self, name: str, after: float | None) -> Iterator[Activity]:
        """The same events, newest first."""
        ...

    def names(self) -> Collection[str] | None:
        """Every name the person's events have, if known without reading by name (None if
        not): a condition on another name is decided without a read."""
        ...


class ListSource:
    """:class:`EventSource` over activities in memory, bucketed by name in one pass."""

    def __init__(self, activities: Iterable[Activity], names: Iterable[str]) -> None:
        buckets: dict[str, list[Activity]] = {name: [] for name in names}
        if buckets:
            for activity in activities:
                name = activity.get("name")
                bucket = buckets.get(name) if isinstance(name, str) else None
                if bucket is not None:
                    stamp = activity.get("timestamp")
                    if isinstance(stamp, (int, float)) and not isinstance(stamp, bool):
                        bucket.append(activity)
        self._buckets = buckets
        self._names = {name for name, bucket in buckets.items() if bucket}

    def names(self) -> Collection[str] | None:
        return self._names  # (names outside the buckets have no events here either)

    def named(self, name: str, after: float | None) -> Iterator[Activity]:
        for activity in self._buckets.get(name, ()):
            if after is None or activity["timestamp"] > after:
                yield activity

    def newest(self, name: str, after: float | None) -> Iterator[Activity]:
        ordered = sorted(self._buckets.get(name, ()), key=lambda a: (a["timestamp"], a["id"]))
        for activity in reversed(ordered):
            if after is not None and activity["timestamp"] <= after:
                return
            yield activity


class _Evaluator:
    """State of one evaluation call, or of one person's evaluations at one time
    (:func:`evaluator`): it holds no result between calls."""

    def __init__(self, source: EventSource, attributes: Mapping[str, Any], now_s: int) -> None:
        self.now = now_s
        self.attributes = attributes
        self.source = source
        #: ``source.names()``, asked once, at the first event condition.
        self._names: Collection[str] | None = None
        self._names_asked = False

    def _none_named(self, name: str) -> bool:
        """Whether the person surely has no event called ``name``. An identify re-evaluates
        hundreds of segments naming hundreds of events, and most people have done few of
        them: each such condition is decided here, without starting a read of its events."""
        if not self._names_asked:
            self._names, self._names_asked = self.source.names(), True
        names = self._names
        return names is not None and name not in names

    def _events(self, name: str, after: float | None) -> Iterator[Activity]:
        return self.source.named(name, after)

    # -- membership only, short-circuiting ------------------------------------------------------

    def value(self, condition: Condition) -> bool:
        if isinstance(condition, AttributeCondition):
            return self._attribute(condition)
        if isinstance(condition, EventCondition):
            return self._event(condition)
        if isinstance(condition, Not):
            return not self.value(condition.condition)
        if isinstance(condition, AllOf):
            return all(self.value(c) for c, _ in condition.static_first)
        return any(self.value(c) for c, _ in condition.static_first)

    def _attribute(self, condition: AttributeCondition) -> bool:
        values = resolve(self.attributes, condition.path)
        return operators.apply(condition.op, values, condition.value)

    def _event(self, condition: EventCondition) -> bool:
        if self._none_named(condition.event):
            return condition.count.holds(0)
        now = self.now
        start = None if condition.within is None else now - condition.within.seconds
        saturation = condition.count.saturation
        where = condition.where
        count = 0
        for activity in self._events(condition.event, start):
            stamp = activity["timestamp"]
            if stamp > now:
                continue
            if where and not _where_holds(where, activity.get("data")):
                continue
            count += 1
            if count >= saturation:  # more events cannot change the verdict
                break
        return condition.count.holds(count)

    # -- membership and the next time it could change -------------------------------------------

    def value_and_change(self, condition: Condition) -> tuple[bool, int | None]:
        if isinstance(condition, AttributeCondition):
            return self._attribute(condition), None
        if isinstance(condition, EventCondition):
            return self._event_and_change(condition)
        if isinstance(condition, Not):
            value, change = self.value_and_change(condition.condition)
            return not value, change
        is_all = isinstance(condition, AllOf)
        # For all: a false child decides; for any: a true child decides.
        deciding = not is_all
        results: list[tuple[bool, int | None]] = []
        for child, static in condition.static_first:
            if static:
                value = self.value(child)
                if value == deciding:  # decided forever by a time-invariant child
                    return deciding, None
                continue  # a static non-deciding child never changes: it bounds nothing
            results.append(self.value_and_change(child))
        if any(value == deciding for value, _ in results):
            # Decided now; it stays so while at least one deciding child keeps its value, i.e.
            # at least until the LAST of their first changes (later if others take over).
            deciding_changes = [change for value, change in results if value == deciding]
            known = [change for change in deciding_changes if change is not None]
            if len(known) < len(deciding_changes):
                return deciding, None
            return deciding, max(known)
        # Not decided: every child holds the non-deciding value; the first child to change may
        # decide it.
        pending = [change for _, change in results if change is not None]
        return not deciding, min(pending) if pending else None

    def _event_and_change(self, condition: EventCondition) -> tuple[bool, int | None]:
        if self._none_named(condition.event):
            return condition.count.holds(0), None  # (no events: none enters or leaves)
        now = self.now
        window = None if condition.within is None else condition.within.seconds
        where = condition.where
        count = 0
        deltas: list[tuple[int, int]] = []  # (when, +1 enters / -1 leaves), all after now
        # Newest first, and past events only up to the count's saturation: the newest events
        # leave a window last, so with P past events of which only the newest s are read, the
        # count at any later time is min(P(t), s) + F(t) (F: future-stamped ones, all read) and
        # holds(min(P + F, s)) = holds(min(min(P, s) + F, s)): the same verdict at every instant.
        # A person's older events are never read. Events already out of the window stay out.
        saturation = condition.count.saturation
        past = 0
        source = self.source
        for activity in source.newest(condition.event, None if window is None else now - window):
            stamp = activity["timestamp"]
            if where and not _where_holds(where, activity.get("data")):
                continue
            if stamp <= now:
                if past == saturation:
                    break
                past += 1
                count += 1
            else:
                deltas.append((_ceil(stamp), 1))
            if window is not None:
                deltas.append((_ceil(stamp + window), -1))
        value = condition.count.holds(count)
        if not deltas:
            return value, None
        # Replay the future: the first instant at which the count's verdict differs is exact.
        deltas.sort()
        index, size = 0, len(deltas)
        while index < size:
            when = deltas[index][0]
            while index < size and deltas[index][0] == when:
                count += deltas[index][1]
                index += 1
            if condition.count.holds(count) != value:
                return value, when
        return value, None
