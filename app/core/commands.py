"""Items on the routers' side topics as types: ``identity.commands`` (aliases and the second hop
of a merge) and ``anonymous.links``. Decoded once from their JSON dict; the wire is unchanged. ``NamedTuple``s, as the items of
``person.events`` are (:mod:`app.core.messages`)."""

from __future__ import annotations

from typing import Any, NamedTuple

Item = dict[str, Any]


class Alias(NamedTuple):
    """``identifier`` (``kind:value``) now names ``person``; after a merge, it named
    ``moved_from`` until the merge's accept time ``moved_at`` (ms)."""

    identifier: str
    person: str
    moved_from: str | None = None
    moved_at: int | None = None


class Unalias(NamedTuple):
    """``identifier`` no longer names ``person`` (nor anyone merged into them: ``former``)."""

    identifier: str
    person: str
    former: tuple[str, ...]


class MergeResolve(NamedTuple):
    """A merge's second hop, on the primary identifier's partition: ``source`` (the secondary,
    resolved on the first hop) merges into whoever ``primary_kind:primary_value`` names."""

    id: str
    source: str
    primary_kind: str
    primary_value: str
    received_at: int
    item: Item

    @classmethod
    def create(cls, *, id: str, source: str, primary_kind: str, primary_value: str,
               received_at: int) -> "MergeResolve":
        return cls(id, source, primary_kind, primary_value, received_at,
                   {"op": "merge_resolve", "id": id, "from": source,
                    "primary": {primary_kind: primary_value}, "received_at": received_at})


IdentityCommand = Alias | Unalias | MergeResolve


def decode_identity_command(item: Item) -> IdentityCommand:
    op = item["op"]
    if op == "alias":
        return Alias(item["identifier"], item["person"], item.get("moved_from"),
                     item.get("moved_at"))
    if op == "unalias":
        return Unalias(item["identifier"], item["person"], tuple(item.get("former", ())))
    if op == "merge_resolve":
        [(kind, value)] = item["primary"].items()
        return MergeResolve(item["id"], item["from"], kind, value, item["received_at"], item)
    raise ValueError(f"op: unknown identity command {op!r}")


class Link(NamedTuple):
    """``anonymous_id`` became ``person`` (``relink_from``: who it was linked to before a merge)."""

    anonymous_id: str
    person: str
    relink_from: str | None
    item: Item

    @property
    def at(self) -> int:
        return int(self.item["at"])


class Unlink(NamedTuple):
    anonymous_id: str
    person: str
    former: tuple[str, ...]


def decode_link(item: Item) -> Link | Unlink:
    anonymous_id, person = item["anonymous_id"], item["person"]
    if item["op"] == "unlink":
        return Unlink(anonymous_id, person, tuple(item.get("former", ())))
    return Link(anonymous_id, person, item.get("relink_from"), item)
