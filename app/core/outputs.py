"""What a decision of the person stage says should happen, for the agent to carry out.

Decisions (:mod:`app.core.inputs`, :mod:`app.core.lifecycle`, :mod:`app.core.evaluation`,
:mod:`app.core.activation`) are pure: they return the person's next state and a list of these, in
the order the effects must happen. The agent sends, writes and counts; metric names are the ones
:class:`Count` carries, so a decision says what happened and the agent only tallies it.
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


@dataclass(frozen=True, slots=True)
class Changed:
    """A segment membership change to publish (with the segment, for its action)."""

    change: Change
    segment: Segment | None


@dataclass(frozen=True, slots=True)
class Announce:
    """An identity announcement for the identifier or anonymous partitions."""

    announcement: Announcement


@dataclass(frozen=True, slots=True)
class Forward:
    """An item for ``person``'s partition of ``person.events`` (a merge survivor, an absorb)."""

    person: str
    item: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Trigger:
    """A campaign trigger record."""

    record: dict[str, Any]


@dataclass(frozen=True, slots=True)
class NameSeen:
    """An event name was used (the event-names index)."""

    name: str
    timestamp: int


@dataclass(frozen=True, slots=True)
class ClearEvents:
    """The person's events and dedup ids go (a delete, or a merge away)."""


@dataclass(frozen=True, slots=True)
class Deleted:
    """The person's keys go at the end of the unit, unless identified again within it."""


Output = Count | Changed | Announce | Forward | Trigger | NameSeen | ClearEvents | Deleted
