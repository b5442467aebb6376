"""What a decision of the person stage says should happen, for the agent to carry out.

Decisions (:mod:`app.core.inputs`, :mod:`app.core.lifecycle`, :mod:`app.core.evaluation`,
:mod:`app.core.activation`) are pure: they return the person's next state and a list of these, in
the order the effects must happen. The agent sends, writes and counts; metric names are the ones
:class:`Count` carries, so a decision says what happened and the agent only tallies it.

Outputs are frozen dataclasses. Those made per item or per change write out their ``__init__``
(``tables.native``, "Made per item"); a :class:`Count` is shared (:func:`counted`), so it costs
nothing per item.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.core.identity import Announcement
from app.core.membership import Change
from app.segments.definition import Segment


@dataclass(frozen=True, slots=True)
class Count:
    """Something happened that ``eventide_*`` metrics count, under this counter name."""

    name: str
    n: int = 1


def counted(name: str, n: int = 1) -> Count:
    """The shared :class:`Count` of ``name`` (immutable, so one object serves every item: the
    hot path makes no object per count)."""
    key = (name, n)
    found = _COUNTS.get(key)
    if found is None:
        found = _COUNTS[key] = Count(name, n)
    return found


#: Bounded by the metric names times the few batch sizes a count takes.
_COUNTS: dict[tuple[str, int], Count] = {}


@dataclass(frozen=True, init=False)
class Changed:
    """A segment membership change to publish (with the segment, for its action)."""

    change: Change
    segment: Segment | None

    def __init__(self, change: Change, segment: Segment | None) -> None:
        object.__setattr__(self, "change", change)
        object.__setattr__(self, "segment", segment)


@dataclass(frozen=True)
class Announce:
    """An identity announcement for the identifier or anonymous partitions."""

    announcement: Announcement


@dataclass(frozen=True)
class Forward:
    """An item for ``person``'s partition of ``person.events`` (a merge survivor, an absorb)."""

    person: str
    item: dict[str, Any]


@dataclass(frozen=True, init=False)
class Trigger:
    """A campaign trigger record."""

    record: dict[str, Any]

    def __init__(self, record: dict[str, Any]) -> None:
        object.__setattr__(self, "record", record)


@dataclass(frozen=True, init=False)
class NameSeen:
    """An event name was used (the event-names index)."""

    name: str
    timestamp: int

    def __init__(self, name: str, timestamp: int) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "timestamp", timestamp)


@dataclass(frozen=True, slots=True)
class ClearEvents:
    """The person's events and dedup ids go (a delete, or a merge away)."""


@dataclass(frozen=True, slots=True)
class Deleted:
    """The person's keys go at the end of the unit, unless identified again within it."""


Output = Count | Changed | Announce | Forward | Trigger | NameSeen | ClearEvents | Deleted
