"""Items on ``person.events`` as types: decoded once from their JSON dict, encoded to the same shape.

The wire is unchanged (``{"op": "event", ...}``, keys in the order earlier versions wrote them);
what changes is that the person stage dispatches on a type, not on a string. The types are frozen
dataclasses; the two made per item (:class:`Event`, :class:`Identify`) write out their
``__init__`` (``tables.native``, "Made per item"). Every item addressed
to a person keeps its wire dict (``item``): history and profiles fold it as they always did, and
an item forwarded to a merge survivor travels with every field it arrived with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

Item = dict[str, Any]


@dataclass(frozen=True, init=False)
class Event:
    person: str
    id: str
    name: str
    timestamp: int
    received_at: int
    item: Item

    def __init__(self, person: str, id: str, name: str, timestamp: int, received_at: int,
                 item: Item) -> None:
        object.__setattr__(self, "person", person)
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "timestamp", timestamp)
        object.__setattr__(self, "received_at", received_at)
        object.__setattr__(self, "item", item)

    @property
    def at_s(self) -> int:
        """Evaluation time: when it was accepted (or linked, for an anonymous event)."""
        return int(self.item.get("processed_at") or self.received_at // 1000)

    @property
    def at_ms(self) -> int:
        """:attr:`at_s` in milliseconds (``processed_at`` is whole seconds)."""
        return accept_ms(self.item, self.received_at)

    @classmethod
    def create(cls, *, person: str, id: str, name: str, type: str, data: dict[str, Any],
               timestamp: int, received_at: int, source: str,
               processed_at: int | None = None) -> "Event":
        """An event the pipeline itself produces (a segment action, a linked anonymous event)."""
        item: Item = {"op": "event", "id": id, "name": name, "type": type, "data": data,
                      "timestamp": timestamp, "person": person, "received_at": received_at}
        if processed_at is not None:
            item["processed_at"] = processed_at
        item["source"] = source
        return cls(person, id, name, timestamp, received_at, item)


def accept_ms(item: Item, received_at: int) -> int:
    """When an input counts as accepted, in milliseconds: ``processed_at`` (whole seconds, set
    when an anonymous event is linked) or ``received_at``."""
    processed_at = item.get("processed_at")
    return int(processed_at) * 1000 if processed_at else received_at


@dataclass(frozen=True, init=False)
class Identify:
    person: str
    id: str
    received_at: int
    item: Item

    def __init__(self, person: str, id: str, received_at: int, item: Item) -> None:
        object.__setattr__(self, "person", person)
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "received_at", received_at)
        object.__setattr__(self, "item", item)

    @property
    def at_s(self) -> int:
        return int(self.item.get("processed_at") or self.received_at // 1000)

    @property
    def at_ms(self) -> int:
        return accept_ms(self.item, self.received_at)

    @property
    def update_only(self) -> bool:
        """``_update``: change an existing person, never create one."""
        return bool(self.item.get("update"))


@dataclass(frozen=True)
class MergeFrom:
    """The secondary's side of a merge: ``person`` merges into ``into``."""

    person: str
    id: str
    into: str
    received_at: int
    item: Item

    @classmethod
    def create(cls, *, id: str, person: str, into: str, received_at: int) -> "MergeFrom":
        return cls(person, id, into, received_at, {"op": "merge_from", "id": id, "person": person,
                                                   "into": into, "received_at": received_at})


@dataclass(frozen=True)
class Absorb:
    """The primary's side of a merge: the secondary's events and profile."""

    person: str
    id: str
    source: str
    events: list[dict[str, Any]]
    profile: dict[str, Any] | None
    received_at: int
    item: Item

    @classmethod
    def create(cls, *, person: str, id: str, source: str, events: list[dict[str, Any]],
               profile: dict[str, Any] | None, received_at: int) -> "Absorb":
        return cls(person, id, source, events, profile, received_at,
                   {"op": "absorb", "id": id, "from": source, "events": events,
                    "profile": profile, "received_at": received_at, "person": person})


@dataclass(frozen=True)
class Delete:
    person: str
    id: str
    received_at: int
    item: Item


@dataclass(frozen=True)
class Tick:
    at: int


@dataclass(frozen=True)
class Definition:
    """A segment definition reached this partition (``version`` None: deleted)."""

    segment: str
    version: str | None
    offset: int | None
    at: int


ForPerson = Event | Identify | MergeFrom | Absorb | Delete
PersonMessage = ForPerson | Tick | Definition


def _event(item: Item) -> Event:
    return Event(item["person"], item["id"], item["name"], item["timestamp"],
                 int(item["received_at"]), item)


def _identify(item: Item) -> Identify:
    return Identify(item["person"], item["id"], int(item["received_at"]), item)


def _merge_from(item: Item) -> MergeFrom:
    return MergeFrom(item["person"], item["id"], item["into"], int(item["received_at"]), item)


def _absorb(item: Item) -> Absorb:
    return Absorb(item["person"], item["id"], item["from"], item["events"], item.get("profile"),
                  int(item["received_at"]), item)


def _delete(item: Item) -> Delete:
    return Delete(item["person"], item["id"], int(item["received_at"]), item)


def _tick(item: Item) -> Tick:
    return Tick(int(item["at"]))


def _definition(item: Item) -> Definition:
    offset = item.get("offset")
    return Definition(item["segment"], item.get("version"),
                      None if offset is None else int(offset), int(item["at"]))


_DECODERS: dict[Any, Callable[[Item], PersonMessage]] = {
    "event": _event, "identify": _identify, "merge_from": _merge_from, "absorb": _absorb,
    "delete": _delete, "tick": _tick, "segment": _definition}


def decode(item: Item) -> PersonMessage:
    """The typed form of a ``person.events`` item (KeyError names a missing field)."""
    decoder = _DECODERS.get(item.get("op"))
    if decoder is None:
        raise ValueError(f"op: unknown action {item.get('op')!r}")
    return decoder(item)


def forwarded(message: ForPerson, person: str, merged_at_ms: int) -> Item:
    """``message`` re-addressed to ``person`` (a merge survivor), every other field as it came,
    and the marker it passed added to its ``via`` (whom it was for, and when that person was
    merged away): where it lands, a write sent before that merge still counts as the merged
    person's (``profiles.apply_identify``)."""
    via = [*message.item.get("via", ()), [message.person, merged_at_ms]]
    return {**message.item, "person": person, "via": via}
