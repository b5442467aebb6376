"""Merges and attribute writes delivered in any order give the accept order's attributes.

A log of identifies (people write the same attribute names) and merges (chains allowed, a merge
into someone merged already allowed) is run two ways through the pure decisions
(``profiles.apply_identify``, ``profiles.merge``, ``lifecycle``'s forwarding by merge markers):

* the *model*: the log in accept order, one input at a time. An identify writes at the end of the
  person's merge chain, where a later stamp wins; a merge leaves the primary's attributes and
  takes the secondary's others;
* the *delivery*: every input may reach its person in any order (a merge naming the secondary by
  email rides another partition than the secondary's identifies; an absorb and a forwarded write
  race each other across partitions; of a merge sent twice, the later copy may be handled
  first), a secondary's side of a merge may be redone after a crash that lost its state after
  the absorb went out, and any input may be delivered twice. What reaches someone merged away
  goes through ``lifecycle.redirect``.

Checked: every surviving person's attributes are the model's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from app.core import lifecycle, profiles
from app.core.identity import merged_marker
from app.core.messages import Absorb, decode
from app.core.outputs import Forward
from app.core.person import PersonState

PEOPLE = ("ann", "bob", "cat", "dan", "eve")
T0 = 1_700_000_000_000


# --- the log -------------------------------------------------------------------------------------


@st.composite
def logs(draw: st.DrawFn) -> list[tuple]:
    """("identify", person, {name: value}) and ("merge", secondary, primary): a forest of merges
    (each secondary merged into one primary, no cycle; a merge is sometimes sent again later),
    in accept order, one second apart."""
    ops: list[tuple] = []
    parent: dict[str, str] = {}

    def root(person: str) -> str:
        while person in parent:
            person = parent[person]
        return person

    for _ in range(draw(st.integers(1, 14))):
        if parent and draw(st.integers(0, 5)) == 0:  # a merge sent again
            secondary = draw(st.sampled_from(sorted(parent)))
            ops.append(("merge", secondary, parent[secondary]))
            continue
        if draw(st.integers(0, 2)) == 0:
            secondary = draw(st.sampled_from([p for p in PEOPLE if p not in parent]))
            primaries = [p for p in PEOPLE if root(p) != secondary]
            if primaries:
                primary = draw(st.sampled_from(primaries))
                parent[secondary] = primary
                ops.append(("merge", secondary, primary))
                continue
        person = draw(st.sampled_from(PEOPLE))
        attributes = draw(st.dictionaries(st.sampled_from(["plan", "city"]), st.integers(0, 3),
                                          min_size=1))
        ops.append(("identify", person, attributes))
    return ops


def item_of(n: int, op: tuple) -> dict[str, Any]:
    at = T0 + n * 1_000
    if op[0] == "identify":
        return {"op": "identify", "id": f"i{n}", "person": op[1], "attributes": op[2],
                "timestamp": None, "received_at": at}
    return {"op": "merge_from", "id": f"m{n}", "person": op[1], "into": op[2], "received_at": at}


def model(ops: list[tuple]) -> dict[str, dict[str, Any]]:
    """Each survivor's attributes, the log applied in accept order."""
    values: dict[str, dict[str, Any]] = {}
    into: dict[str, str] = {}

    def root(person: str) -> str:
        while person in into:
            person = into[person]
        return person

    for op in ops:
        if op[0] == "identify":
            values.setdefault(root(op[1]), {}).update(op[2])
        elif op[1] not in into:  # (a merge sent again is applied once)
            secondary, primary = op[1], op[2]
            taken = values.pop(secondary, {})
            survivor = root(primary)
            values[survivor] = {**taken, **values.get(survivor, {})}
            into[secondary] = primary
    return {person: attributes for person, attributes in values.items()
            if person not in into and attributes}


# --- delivery in any order -----------------------------------------------------------------------


@dataclass
class People:
    state: dict[str, dict[str, Any]] = field(default_factory=dict)
    pending: list[dict[str, Any]] = field(default_factory=list)

    def deliver(self, item: dict[str, Any], crash: bool) -> None:
        person = item["person"]
        profile = self.state.get(person)
        if profile is not None and profile.get("merged_into"):
            for out in lifecycle.redirect(PersonState(profile), decode(item)) or ():
                if isinstance(out, Forward):
                    self.pending.append(out.item)
            return
        if item["op"] == "identify":
            self.state[person] = profiles.apply_identify(profile, person, item)
        elif item["op"] == "merge_from":
            self.pending.append(Absorb.create(
                person=item["into"], id=item["id"], source=person, events=[], profile=profile,
                received_at=item["received_at"]).item)
            if crash:  # the absorb went out, the marker was lost: the merge comes again
                self.pending.append(item)
            else:
                self.state[person] = merged_marker(person, item["into"], item["received_at"])
        else:
            source = item["profile"]
            if source is None:
                merged = profile if profile is None else profiles.merged_in(profile, item["from"])
            else:
                merged = profiles.merge(profile, person, source, item["id"],
                                        item["received_at"] // 1000,
                                        merged_at_ms=item["received_at"],
                                        via=item.get("via") or ())
            if merged is not None:
                self.state[person] = merged

    def survivors(self) -> dict[str, dict[str, Any]]:
        return {person: profile["attributes"] for person, profile in self.state.items()
                if not profile.get("merged_into") and profile["attributes"]}


@settings(max_examples=1_500, deadline=None)
@given(ops=logs(), data=st.data())
def test_any_delivery_order_gives_the_accept_orders_attributes(
        ops: list[tuple], data: st.DataObject) -> None:
    people = People(pending=[item_of(n, op) for n, op in enumerate(ops)])
    faults = 12  # crashes and redeliveries at most, so that every run ends
    while people.pending:
        k = data.draw(st.integers(0, len(people.pending) - 1), label="next")
        item = people.pending.pop(k)
        crash = faults > 0 and item["op"] == "merge_from" and data.draw(
            st.integers(0, 5), label="crash") == 0
        people.deliver(item, crash)
        if faults > 0 and data.draw(st.integers(0, 7), label="again") == 0:
            people.pending.append(item)  # a redelivery
            faults -= 1
        faults -= crash
    assert people.survivors() == model(ops)
