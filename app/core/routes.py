"""Which person a raw item belongs to, and a merge's two hops: pure decisions of the customer
router, over the ``aliases`` entries it reads (an identifier's person, inputs parked on it).

Each decision returns outputs for :mod:`agents.routing` to carry out: route an item to a person's
partition, send an identity command, park an input until its identifier is known, count.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from app.core.commands import MergeResolve
from app.core.messages import MergeFrom
from app.core.outputs import Count

Item = dict[str, Any]

#: Inputs parked per unknown identifier, at most (the oldest beyond are dropped).
MAX_PARKED = 100

#: How long an input waits for its identifier to name someone, in accept time: well past the
#: hop an alias takes from the person who set it (seconds; hours behind a crashed worker).
PARK_HORIZON_MS = 24 * 3600 * 1000

#: ``aliases`` keys ``parked␟<received_at:013d>␟<identifier>`` index parked inputs by accept
#: time, so expiring them is a range read of what is due.
PARKED_PREFIX = "parked\x1f"


class Route(NamedTuple):
    """``item`` goes to ``person``'s partition of ``person.events``."""

    person: str
    item: Item


class Command(NamedTuple):
    """``item`` goes to ``key``'s partition of ``identity.commands``."""

    key: str
    item: Item


class Park(NamedTuple):
    """``item`` waits for ``identifier`` (``kind:value``) to name someone."""

    identifier: str
    item: Item


RouteOutput = Route | Command | Park | Count


def resolve(alias: str | None, kind: str, value: str, identify_by: str) -> str | None:
    """The person an identifier names: its alias, else the identifier itself if it is the kind
    the workspace addresses people by (a new person), else nobody."""
    if alias is not None:
        return alias
    return value if kind == identify_by else None


def held(history: list[list[Any]] | None, moved_from: str, moved_at: int) -> list[list[Any]] | None:
    """Who an identifier named before each merge that moved it: ``[person, until_ms]`` in time
    order, once ``moved_from`` held it until ``moved_at`` (None: that is known already)."""
    entry = [moved_from, moved_at]
    history = history or []
    if entry in history:
        return None
    return sorted([*history, entry], key=lambda held_until: (held_until[1], held_until[0]))


def named_at(current: str | None, history: list[list[Any]] | None,
             received_at: int) -> str | None:
    """Whom an identifier named when an input was accepted (``received_at``): the first merge
    after that moved it says whom it named until then, else it names ``current``. A merge into
    someone merged away since goes to them, and their marker forwards it with its merge time
    (``profiles``: which of the survivor's attributes it meets)."""
    for person, until in history or ():
        if received_at < until:
            return str(person)
    return current


def route_input(item: Item, person: str | None, identify_by: str,
                identifier: str) -> RouteOutput:
    """An event, identify or delete whose identifier (``kind:value``) names ``person``.

    None: nobody yet, and the input waits for it. The identify that sets an email reaches the
    email's partition as an alias, a hop later than an input sent by that email right after it
    (both answered 200); a person who takes the email later is the one it was meant for too. An
    identifier nobody takes within :data:`PARK_HORIZON_MS` names nobody (:func:`expired`)."""
    if person is None:
        return Park(identifier, item)
    if item["op"] == "identify" and identify_by == "email":
        return Route(person, {**item, "attributes": {"email": item["customer"],
                                                      **item["attributes"]},
                              "person": person})
    return Route(person, {**item, "person": person})


#: What a customer does that the person stage can take straight from the raw record.
IN_PLACE_OPS = frozenset({"event", "identify", "delete"})


def in_place(item: Item, identify_by: str, on_home_partition: bool) -> bool:
    """Whether the person stage handles ``item`` where it was read, skipping ``person.events``.

    True when the identifier is the person's own id and its record is on that id's partition
    (the partitioner may be the producer's own, not Kafka's default): the person's partition is
    then this one, on this worker (the topics are co-partitioned). Every operation of such an
    identifier is taken in place (a delete too, so it is never overtaken by the next event), in
    the order of its raw partition. An id merged away needs no alias lookup here: the person stage
    forwards what reaches someone merged away to the survivor, as it does for anything racing a
    merge. Anything else (emails, ``cio_id``, merges, ids on another partition) is routed.
    """
    return (on_home_partition and identify_by == "id" and item["op"] in IN_PLACE_OPS
            and (item.get("customer_kind") or identify_by) == "id")


def first_hop(item: Item, secondary: str | None, secondary_ref: tuple[str, str],
              primary_ref: tuple[str, str]) -> RouteOutput:
    """A merge on the secondary identifier's partition, ``secondary`` the person it names."""
    if secondary is None:
        return Park(":".join(secondary_ref), item)
    kind, value = primary_ref
    return Command(value, MergeResolve.create(id=item["id"], source=secondary,
                                              primary_kind=kind, primary_value=value,
                                              received_at=item["received_at"]).item)


def second_hop(command: MergeResolve, primary: str | None) -> RouteOutput:
    """A merge on the primary identifier's partition, ``primary`` the person it names."""
    if primary is None:
        return Park(f"{command.primary_kind}:{command.primary_value}", command.item)
    if primary == command.source:
        return Count("merges:already_one")
    return Route(command.source, MergeFrom.create(id=command.id, person=command.source,
                                                  into=primary,
                                                  received_at=command.received_at).item)


def parked(waiting: list[Item] | None, item: Item) -> list[Item] | None:
    """The inputs waiting on an identifier once ``item`` joins them (None: it is there already).

    So a merge or an input sent right after the identify that sets an email does not depend on
    which of the two reaches this partition first."""
    waiting = waiting or []
    if any(parked["id"] == item["id"] for parked in waiting):
        return None
    return [*waiting, item][-MAX_PARKED:]


def parked_key(received_at: int, identifier: str) -> str:
    return f"{PARKED_PREFIX}{received_at:013d}\x1f{identifier}"


def due_stop(newest_ms: int) -> str:
    """Where the parked index stops being due once inputs accepted at ``newest_ms`` arrive."""
    return f"{PARKED_PREFIX}{max(newest_ms - PARK_HORIZON_MS, 0):013d}"


def identifier_of(key: str) -> str:
    """The identifier a ``parked␟…`` key is due for."""
    return key.split("\x1f", 2)[2]


def expired(waiting: list[Item] | None, newest_ms: int) -> tuple[list[Item], list[Item]]:
    """``waiting`` split into (still waiting, waited longer than the horizon), by accept time
    against the newest input accepted on the partition: a replay expires what live did."""
    cutoff = newest_ms - PARK_HORIZON_MS
    kept: list[Item] = []
    gone: list[Item] = []
    for item in waiting or ():
        (gone if int(item["received_at"]) < cutoff else kept).append(item)
    return kept, gone


def names_one_of(current: str | None, person: str, former: tuple[str, ...]) -> bool:
    """Whether an unalias (an unlink) applies: the identifier still names the person it is about,
    or someone merged into them; an alias someone else took since stays."""
    return current is not None and (current == person or current in former)
