"""A person's profile as a fold over identify items and merges.

Attribute writes are ordered by the sender's ``_timestamp`` when given (a later ``_timestamp`` wins
whatever the arrival order), else by arrival (``received_at``): each attribute remembers the stamp
of the write that set it, so applying identifies in any order gives the same attributes.

A merge is accepted at a time M. In accept order the primary keeps every attribute it has at M and
takes the others from the secondary, as the secondary had them at M; what reaches the secondary
after M is forwarded to the primary and competes there by stamp. Inputs reach a person in other
orders than they were accepted: a merge naming the secondary by email can overtake the secondary's
own identifies (or be overtaken), a crash can redo a merge, and the merges of a chain resolve in
any order. So a profile keeps, besides the winning values, one *level* per person merged into it
(``levels``: whom it was merged into, when, and each attribute's best write and first arrival
there), and its winning values are a function of those levels alone: every order gives the
accept order's answer. One limit (``_split``): a person keeps one write per attribute, so when it
handles writes sent on both sides of its merge before the merge itself, the outranked one is
known only by its arrival; without sender ``_timestamp`` that changes no answer (a write sent
after a merge outranks every one before it), with one it can. A merge sent twice takes the
earlier copy's time, whichever copy came first (``_lower``).
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable, Sequence

Profile = dict[str, Any]

#: Attribute changes kept per person (oldest dropped).
MAX_CHANGES = 1_000

#: An attribute at one level: ``[sent_ms, received_ms, first_ms, value]``: the best write by
#: (sent, received), and when the level first had the attribute. ``sent`` and ``received`` are
#: None when the level is known to have had it but its value was outranked by a later write of
#: the same person that was placed at a level above (``_split``).
Written = list[Any]
#: Where a forwarded input has been: ``[person, merged_at_ms]`` for each merge marker it passed,
#: the first first.
Via = Sequence[Sequence[Any]]

_LAST = float("inf")


def cio_id_for(person_id: str) -> str:
    """The generated identifier of a person (Customer.io's ``cio_id``), stable for its id."""
    return "cio_" + hashlib.blake2b(person_id.encode(), digest_size=8).hexdigest()


def _stamp(item: dict[str, Any]) -> tuple[int, int]:
    """Order key of a write: sender time first (seconds → ms), then arrival."""
    sent = item.get("timestamp")
    received = int(item.get("received_at") or 0)
    return (int(sent) * 1000 if sent is not None else received, received)


def new_profile(person_id: str, item: dict[str, Any]) -> Profile:
    return {
        "id": person_id,
        "cio_id": cio_id_for(person_id),
        "attributes": {},
        "stamps": {},
        "anonymous_ids": [],
        "changes": [],
        "created_at": int(item.get("received_at") or 0) // 1000,
        "updated_at": 0,
    }


# --- levels --------------------------------------------------------------------------------------


def _outranks(a: Written, b: Written) -> bool:
    """Whether ``a``'s write beats ``b``'s: a later stamp; on equal stamps the larger value, so
    that the choice does not depend on which was applied first."""
    if (a[0], a[1]) != (b[0], b[1]):
        return bool((a[0], a[1]) > (b[0], b[1]))
    return repr(a[3]) > repr(b[3])


def _combine(old: Written | None, new: Written) -> Written:
    """What a level knows of an attribute after both: commutative and idempotent."""
    if old is None:
        return new
    first = min(old[2], new[2])
    if new[0] is None or (old[0] is not None and not _outranks(new, old)):
        best = old
    else:
        best = new
    return [best[0], best[1], first, best[3]]


def own_level(profile: Profile) -> dict[str, Written]:
    """The person's own writes, by attribute. A profile stored before levels existed holds
    ``[sent, received]`` (or a merge's third place) and its values in ``attributes``: all its
    own. (A profile whose values all came by merges has no writes of its own, and levels.)"""
    stamps: dict[str, Any] = profile.get("stamps") or {}
    if "levels" in profile or len(next(iter(stamps.values()), ())) == 4:
        return stamps  # (every stamp has one layout: the first tells)

    def old(name: str, value: Any) -> Written:
        sent, received = stamps.get(name, [0, 0])[:2]
        return [sent, received, received, value]
    return {name: old(name, value) for name, value in profile.get("attributes", {}).items()}


def _climb(at_ms: int, path: list[tuple[str, float]]) -> str:
    """The level an arrival at ``at_ms`` belongs to along ``path`` (innermost first, ending at
    the profile's own person, who has no merge time): the first not merged away by then."""
    for person, merged_at in path:
        if at_ms < merged_at:
            return person
    return path[-1][0]


def _ensure_path(levels: dict[str, Any], root: str, path: list[tuple[str, float]]) -> None:
    """Record each merged person on ``path`` not recorded yet as merged into the first later
    one still there at its merge time (a merge accepted after its primary's own merge went to
    the survivor), outermost first, so that each climbs what is recorded above it. What is
    recorded already stands: a marker's merge time can be later than its merge's (a merge sent
    twice, the later copy handled first: ``_lower``)."""
    for i in range(len(path) - 2, -1, -1):
        person, merged_at = path[i]
        if person not in levels:
            into = _climb(int(merged_at), _chain(levels, root, path[i + 1][0]))
            levels[person] = {"into": into, "at": int(merged_at), "attributes": {}}


def _chain(levels: dict[str, Any], root: str, person: str) -> list[tuple[str, float]]:
    """The path from ``person`` up to ``root`` as the levels record it."""
    path: list[tuple[str, float]] = []
    while person != root and person in levels and len(path) <= len(levels):
        node = levels[person]
        path.append((person, float(node["at"])))
        person = node["into"]
    return [*path, (root, _LAST)]


def _known_path(levels: dict[str, Any], root: str, via: Via) -> list[tuple[str, float]]:
    """The path an input forwarded by ``via`` climbs: the levels recorded, else what ``via``
    says (recorded into ``levels``)."""
    if not via:
        return [(root, _LAST)]
    _ensure_path(levels, root, _path(root, via))
    return _chain(levels, root, str(via[0][0]))


def _put(own: dict[str, Written], levels: dict[str, Any], root: str, level: str, name: str,
         written: Written) -> None:
    if level == root:
        own[name] = _combine(own.get(name), written)
    else:
        node = levels[level]
        attributes = dict(node["attributes"])
        attributes[name] = _combine(attributes.get(name), written)
        levels[level] = {**node, "attributes": attributes}


def _split(written: Written, path: list[tuple[str, float]]) -> list[tuple[str, Written]]:
    """Place one level's knowledge of an attribute along ``path``: its first arrival where that
    arrival belongs, its best write where the write's arrival belongs. The writes it outranked
    are known only by the first arrival: exact without sender ``_timestamp`` (a write sent after
    a merge outranks those before, and the best stands for them); with one, an outranked write
    sent after the merge is lost where it would have beaten the primary's own value, and one
    sent before it where it would have blocked a later merge."""
    first_at = _climb(written[2], path)
    if written[0] is None:
        return [(first_at, written)]
    best_at = _climb(written[1], path)
    if best_at == first_at:
        return [(first_at, written)]
    return [(first_at, [None, None, written[2], None]),
            (best_at, [written[0], written[1], written[1], written[3]])]


def _lower(own: dict[str, Written], levels: dict[str, Any], root: str, person: str,
           into: str, merged_at: int) -> set[str]:
    """Record ``person`` as merged into ``into`` at ``merged_at``, unless known to be merged
    earlier. A merge sent twice takes the earlier copy's time, whichever copy its secondary
    handled first: when that was the later one, what the level holds is placed again along the
    earlier time's path, and the people merged into it since then move to its survivor. The
    names to settle again."""
    node = levels.get(person)
    if node is not None and node["at"] <= merged_at:
        return set()
    levels[person] = {"into": into, "at": merged_at, "attributes": {}}
    if node is None:
        return set()
    path = _chain(levels, root, person)
    for name, written in node["attributes"].items():
        for level, piece in _split(written, path):
            _put(own, levels, root, level, name, piece)
    for other, child in list(levels.items()):
        if child["into"] == person and child["at"] >= merged_at:
            levels[other] = {**child, "into": _climb(child["at"], path[1:])}
    # (rare: every name is settled again: the level's own, and those of the levels moved)
    return set(node["attributes"]) | {name for level in levels.values()
                                      for name in level["attributes"]}


def _resolve(own: dict[str, Written], levels: dict[str, Any], root: str,
             name: str) -> Written | None:
    """The accept order's answer for ``name`` at ``root``: its own writes, and what the first
    person merged into it that had the attribute then brought, unless it had its own first."""
    children: dict[str, list[tuple[int, str]]] = {}
    for person, node in levels.items():
        children.setdefault(node["into"], []).append((node["at"], person))

    def at_level(person: str, writes: dict[str, Written]) -> Written | None:
        mine = writes.get(name)
        for merged_at, child in sorted(children.get(person, ())):
            if mine is not None and mine[2] <= merged_at:
                return mine  # it had its own first: no merge from then on brings the attribute
            brought = at_level(child, levels[child]["attributes"])
            if brought is None:
                continue  # that person did not have it
            # The merge brought it first; the person's own writes came later and replace it
            # if they outrank it (a tie goes to the later: its own).
            if mine is not None and mine[0] is not None and (
                    brought[0] is None or (brought[0], brought[1]) <= (mine[0], mine[1])):
                return [mine[0], mine[1], merged_at, mine[3]]
            return [brought[0], brought[1], merged_at, brought[3]]
        return mine

    return at_level(root, own)


# --- identifies and merges -----------------------------------------------------------------------


def _settle(base: Profile, own: dict[str, Written], levels: dict[str, Any],
            names: Iterable[str], at: int, source: str, write_id: str) -> Profile:
    """``base`` with its levels replaced and the winning values of ``names`` recomputed; each
    value that changed is kept as a change."""
    attributes = dict(base["attributes"])
    entries: list[dict[str, Any]] = []
    for name in sorted(set(names)):
        written = own.get(name) if not levels else _resolve(own, levels, base["id"], name)
        if written is None or written[0] is None:
            continue
        old = attributes.get(name)
        if old != written[3] or name not in attributes:
            entries.append({"name": name, "old": old, "new": written[3], "at": at,
                            "source": source, "id": write_id})
            attributes[name] = written[3]
    changes = base.get("changes", [])
    if entries:
        changes = _logged(changes, entries, at, write_id)
    profile = {**base, "attributes": attributes, "stamps": own, "changes": changes}
    if levels:
        profile["levels"] = levels
    return profile


def _logged(changes: list[dict[str, Any]], entries: list[dict[str, Any]], at: int,
            write_id: str) -> list[dict[str, Any]]:
    """``changes`` with one write's ``entries`` placed by (accept second, write id), not
    appended: writes reaching a person by different paths (its own id, an email, a merge
    marker) arrive in any order, and a replay's log must be the live one. (When such writes
    race for one attribute, which of them changed it still follows arrival: a limit.)"""
    key = (at, write_id)
    position = len(changes)
    while position and (int(changes[position - 1].get("at") or 0),
                        str(changes[position - 1].get("id") or "")) > key:
        position -= 1
    return [*changes[:position], *entries, *changes[position:]][-MAX_CHANGES:]


def _path(profile_id: str, via: Via) -> list[tuple[str, float]]:
    return [*[(str(person), float(at)) for person, at in via], (profile_id, _LAST)]


def apply_identify(profile: Profile | None, person_id: str, item: dict[str, Any]) -> Profile:
    """Return the profile after ``item`` (an identify), as a new value. ``item["via"]``: the
    merge markers it was forwarded by, if any (``Via``)."""
    base = profile if profile is not None else new_profile(person_id, item)
    sent, received = _stamp(item)
    own = dict(own_level(base))
    levels: dict[str, Any] = dict(base.get("levels") or {})
    via = item.get("via") or ()
    level = base["id"]
    if via:
        known = dict(levels)
        level = _climb(received, _known_path(known, base["id"], via))
        if level != base["id"]:
            levels = known
    written_names = item.get("attributes", {})
    for name, value in written_names.items():
        _put(own, levels, base["id"], level, name, [sent, received, received, value])
    at = received // 1000
    profile = _settle(base, own, levels, written_names, at, item.get("source", "identify"),
                      item["id"])
    anonymous_ids = base["anonymous_ids"]
    anonymous_id = item.get("anonymous_id")
    if anonymous_id and anonymous_id not in anonymous_ids:
        anonymous_ids = sorted([*anonymous_ids, anonymous_id])
    created_at = base["created_at"]
    if isinstance(profile["attributes"].get("created_at"), int):
        created_at = profile["attributes"]["created_at"]
    return {
        **profile,
        "anonymous_ids": anonymous_ids,
        "created_at": created_at,
        "updated_at": max(base["updated_at"], at),
    }


def merge(primary: Profile | None, primary_id: str, secondary: Profile, merge_id: str,
          at: int, *, merged_at_ms: int, via: Via = ()) -> Profile:
    """Fold ``secondary`` (merged at ``merged_at_ms``) into ``primary``. ``via``: the merge
    markers the secondary's profile was forwarded by (it was merged into someone merged since).

    The secondary becomes a level: its writes that arrived before the merge stay there, those
    after it (it handled them before its side of the merge ran) go where a forwarded identify
    would have put them, and so do the levels of people merged into it after its merge.
    Applying the same merge twice, or its pieces in any order, gives the same profile."""
    base = primary if primary is not None else new_profile(primary_id, {"received_at": at * 1000})
    source = secondary["id"]
    own = dict(own_level(base))
    levels: dict[str, Any] = dict(base.get("levels") or {})
    outer = _known_path(levels, base["id"], via)
    names = _lower(own, levels, base["id"], source, _climb(merged_at_ms, outer), merged_at_ms)
    path = _chain(levels, base["id"], source)
    for name, written in own_level(secondary).items():
        names.add(name)
        for level, piece in _split(written, path):
            _put(own, levels, base["id"], level, name, piece)
    # (latest merge first: a level's survivor is recorded before it is re-placed under it)
    for person, node in sorted((secondary.get("levels") or {}).items(),
                               key=lambda entry: (-entry[1]["at"], entry[0])):
        into = node["into"]
        if into == source:
            into = _climb(node["at"], path)
        names |= _lower(own, levels, base["id"], person, into, node["at"])
        for name, written in node["attributes"].items():
            names.add(name)
            _put(own, levels, base["id"], person, name, written)
    profile = _settle(base, own, levels, names, at, f"merge:{source}", merge_id)
    merged_from = sorted(set(base.get("merged_from", [])) | {source}
                         | set(secondary.get("merged_from", [])))
    return {
        **profile,
        "anonymous_ids": sorted(set(base["anonymous_ids"]) | set(secondary["anonymous_ids"])),
        "merged_from": merged_from,
        "created_at": min(base["created_at"], secondary["created_at"]),
        "updated_at": max(base["updated_at"], at),
    }


def merged_in(profile: Profile, secondary_id: str) -> Profile:
    """``profile`` with ``secondary_id`` among the people merged into it (the same object when
    it is there already)."""
    merged_from = profile.get("merged_from", [])
    if secondary_id in merged_from:
        return profile
    return {**profile, "merged_from": sorted({*merged_from, secondary_id})}


def identifiers(profile: Profile) -> dict[str, str]:
    """The identifiers a person can be addressed by."""
    found = {"id": profile["id"], "cio_id": profile.get("cio_id") or cio_id_for(profile["id"])}
    email = profile["attributes"].get("email")
    if isinstance(email, str) and email:
        found["email"] = email
    return found


def public_view(profile: Profile) -> dict[str, Any]:
    """The profile as the read API shows it."""
    return {
        "id": profile["id"],
        "identifiers": identifiers(profile),
        "attributes": profile["attributes"],
        "anonymous_ids": profile["anonymous_ids"],
        "created_at": profile["created_at"],
        "updated_at": profile["updated_at"],
    }
