"""The routers' pure decisions (app/core routes and anonymous) and the typed side commands."""

from __future__ import annotations

import orjson
import pytest

from app.core import anonymous, history, routes
from app.core.commands import (Alias, Link, MergeResolve, Unlink, decode_identity_command,
                               decode_link)
from app.core.messages import Event, decode
from app.core.outputs import Count

NOW = 1_700_000_000
ID = "01HGW2N7EHJVJZ9Y8C4QY3W7ZA"
POLICY = anonymous.Policy(horizon_s=30 * 86_400, dedup_horizon_s=86_400,
                          retention=history.Retention(30 * 86_400, 100))


def raw(**extra: object) -> dict[str, object]:
    return {"op": "event", "id": ID, "anonymous_id": "a1", "name": "viewed", "type": "event",
            "data": {}, "timestamp": NOW, "received_at": NOW * 1000, **extra}


def test_an_identifier_names_its_alias_else_itself_when_people_go_by_that_kind() -> None:
    assert routes.resolve("p9", "email", "x@y", "id") == "p9"
    assert routes.resolve(None, "id", "p1", "id") == "p1"
    assert routes.resolve(None, "email", "x@y", "id") is None


def test_an_input_goes_to_its_person_or_waits_for_its_identifier() -> None:
    item = {"op": "identify", "customer": "x@y", "attributes": {"a": 1}}
    assert routes.route_input(item, None, "id", "email:x@y") == routes.Park("email:x@y", item)
    routed = routes.route_input(item, "p1", "email", "email:x@y")
    assert isinstance(routed, routes.Route) and list(routed.item) == [
        "op", "customer", "attributes", "person"]
    assert routed.item["attributes"] == {"email": "x@y", "a": 1}


def test_only_a_persons_own_id_on_its_own_partition_is_taken_in_place() -> None:
    for op in ("event", "identify", "delete"):
        assert routes.in_place({"op": op, "customer": "p1"}, "id", True)
    assert not routes.in_place({"op": "event", "customer": "p1"}, "id", False)   # elsewhere
    assert not routes.in_place({"op": "merge", "customer": "p1"}, "id", True)
    assert not routes.in_place({"op": "event", "customer": "x@y", "customer_kind": "email"},
                               "id", True)
    assert not routes.in_place({"op": "event", "customer": "cio_1", "customer_kind": "cio_id"},
                               "id", True)
    # People addressed by email: an identify gains its email attribute on the way; routed.
    assert not routes.in_place({"op": "identify", "customer": "x@y"}, "email", True)


def test_a_merge_hops_to_the_primary_or_parks_on_an_unknown_identifier() -> None:
    item = {"op": "merge", "id": ID, "primary": {"id": "p1"}, "secondary": {"email": "x@y"},
            "received_at": 5}
    assert routes.first_hop(item, None, ("email", "x@y"), ("id", "p1")) == routes.Park(
        "email:x@y", item)
    hop = routes.first_hop(item, "p2", ("email", "x@y"), ("id", "p1"))
    assert hop == routes.Command("p1", {"op": "merge_resolve", "id": ID, "from": "p2",
                                        "primary": {"id": "p1"}, "received_at": 5})
    command = decode_identity_command(hop.item)
    assert isinstance(command, MergeResolve) and command.item is hop.item
    assert routes.second_hop(command, "p2") == Count("merges:already_one")
    assert routes.second_hop(command, None) == routes.Park("id:p1", hop.item)
    assert routes.second_hop(command, "p1") == routes.Route("p2", {
        "op": "merge_from", "id": ID, "person": "p2", "into": "p1", "received_at": 5})


def test_parked_inputs_are_kept_once_each_and_bounded() -> None:
    waiting = [{"id": str(n)} for n in range(routes.MAX_PARKED)]
    assert routes.parked(waiting, {"id": "3"}) is None
    grown = routes.parked(waiting, {"id": "new"})
    assert grown is not None and len(grown) == routes.MAX_PARKED and grown[-1] == {"id": "new"}


def test_parked_inputs_expire_a_horizon_of_input_time_after_they_were_accepted() -> None:
    """By accept time against the newest input of the partition, not by a clock: a replay of an
    old log expires what live did."""
    horizon = routes.PARK_HORIZON_MS
    old, young = {"id": "a", "received_at": 1_000}, {"id": "b", "received_at": 5_000}
    assert routes.expired([old, young], 1_000 + horizon) == ([old, young], [])
    assert routes.expired([old, young], 1_001 + horizon) == ([young], [old])
    assert routes.expired(None, 10**13) == ([], [])
    # The index: due keys sort by accept time and stop before the first one still waiting.
    keys = sorted(routes.parked_key(at, "email:x@y") for at in (999, 1_000, 1_001))
    assert [key < routes.due_stop(1_000 + horizon) for key in keys] == [True, False, False]
    assert [key < routes.due_stop(1_001 + horizon) for key in keys] == [True, True, False]
    assert all(key.startswith(routes.PARKED_PREFIX) for key in keys)
    assert routes.identifier_of(keys[0]) == "email:x@y"
    assert routes.due_stop(0) == routes.PARKED_PREFIX + "0" * 13


def test_a_merge_goes_to_whom_its_primary_identifier_named_when_it_was_accepted() -> None:
    """bob's id and email moved to ann when bob was merged into ann at 2,000 ms, and to zed when
    ann was merged into zed at 5,000 (the alias commands may arrive in either order). A merge
    into bob accepted before 2,000 ms goes to bob (a marker now: it forwards, saying when it was
    merged), one accepted between goes to ann, and a later one to whom the alias names now."""
    history = routes.held(None, "ann", 5_000)
    history = routes.held(history, "bob", 2_000)
    assert history == [["bob", 2_000], ["ann", 5_000]]
    assert routes.held(history, "bob", 2_000) is None  # an alias command redelivered
    assert [routes.named_at("zed", history, at) for at in (1_999, 2_000, 4_999, 5_000)] == [
        "bob", "ann", "ann", "zed"]
    assert routes.named_at("ann", None, 1_000) == "ann"
    assert decode_identity_command({"op": "alias", "identifier": "id:bob", "person": "ann",
                                    "moved_from": "bob", "moved_at": 2_000}) == \
        Alias("id:bob", "ann", "bob", 2_000)


def test_side_commands_decode_to_types() -> None:
    assert decode_identity_command({"op": "alias", "identifier": "email:x", "person": "p"}) == \
        Alias("email:x", "p")
    with pytest.raises(ValueError, match="unknown identity command"):
        decode_identity_command({"op": "teleport"})
    assert decode_link({"op": "unlink", "anonymous_id": "a", "person": "p",
                        "former": ["q"]}) == Unlink("a", "p", ("q",))
    assert routes.names_one_of("q", "p", ("q",)) and not routes.names_one_of("r", "p", ())


def test_an_anonymous_event_is_stored_once_within_the_horizon() -> None:
    stored, outcome = anonymous.store(None, raw(), (0, 1, 0), now_s=NOW, policy=POLICY)
    assert outcome == Count("anonymous_events:stored") and stored is not None
    assert [e["id"] for e in stored["events"]] == [ID]
    assert anonymous.store(stored, raw(), (0, 2, 0), now_s=NOW, policy=POLICY) == (
        None, Count("verdict:duplicate"))
    again, _ = anonymous.store(stored, raw(), (0, 1, 0), now_s=NOW, policy=POLICY)
    assert again is not None and again["events"] == stored["events"]
    assert anonymous.too_old(raw(timestamp=NOW - 31 * 86_400), POLICY.horizon_s)


def test_a_link_moves_the_stored_events_to_the_person_once() -> None:
    stored, _ = anonymous.store(None, raw(), (0, 1, 0), now_s=NOW, policy=POLICY)
    assert stored is not None
    link = decode_link({"op": "link", "anonymous_id": "a1", "person": "p1", "id": ID,
                        "at": NOW + 5})
    assert isinstance(link, Link)
    assert anonymous.links(None, link) and not anonymous.links("p7", link)
    [route, count] = anonymous.moved(stored, link, POLICY.horizon_s)
    assert count == Count("anonymous_links:linked")
    assert isinstance(route, routes.Route) and route.person == "p1"
    assert orjson.dumps(route.item) == orjson.dumps({
        "op": "event", "id": ID, "name": "viewed", "type": "event", "data": {},
        "timestamp": NOW, "person": "p1", "received_at": NOW * 1000,
        "processed_at": NOW + 5, "source": "anonymous"})
    assert isinstance(decode(route.item), Event)
