"""Unit tests for app.core.profiles: identifies folded into a profile, whatever their order."""

from __future__ import annotations

import copy
import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from app.core.profiles import apply_identify, cio_id_for, merge, new_profile, public_view

PERSON = "cust-1"
RECEIVED = 1_700_000_000_000


def identify(attributes: dict[str, Any], *, timestamp: int | None = None,
             received_at: int = RECEIVED, anonymous_id: str | None = None,
             event_id: str = "01HV5Z8N3Q4R5S6T7V8W9X0Y1Z") -> dict[str, Any]:
    return {"op": "identify", "id": event_id, "customer": PERSON, "attributes": attributes,
            "anonymous_id": anonymous_id, "timestamp": timestamp, "update": False,
            "received_at": received_at}


def fold(items: list[dict[str, Any]]) -> dict[str, Any] | None:
    profile = None
    for item in items:
        profile = apply_identify(profile, PERSON, item)
    return profile


# --- ordering of attribute writes ----------------------------------------------------------------


def test_later_sender_timestamp_wins_in_either_application_order() -> None:
    older = identify({"plan": "free", "city": "Oslo"}, timestamp=1_000, received_at=RECEIVED + 5)
    newer = identify({"plan": "pro"}, timestamp=2_000, received_at=RECEIVED)
    for order in ([older, newer], [newer, older]):
        profile = fold(order)
        assert profile is not None
        assert profile["attributes"] == {"plan": "pro", "city": "Oslo"}


def test_arrival_order_decides_without_sender_timestamp() -> None:
    first = identify({"plan": "free"}, received_at=RECEIVED)
    second = identify({"plan": "pro"}, received_at=RECEIVED + 1)
    assert fold([first, second])["attributes"] == {"plan": "pro"}  # type: ignore[index]
    assert fold([second, first])["attributes"] == {"plan": "pro"}  # type: ignore[index]


def test_equal_sender_timestamps_fall_back_to_arrival() -> None:
    early = identify({"plan": "free"}, timestamp=1_000, received_at=RECEIVED)
    late = identify({"plan": "pro"}, timestamp=1_000, received_at=RECEIVED + 1)
    assert fold([late, early])["attributes"] == {"plan": "pro"}  # type: ignore[index]
    assert fold([early, late])["attributes"] == {"plan": "pro"}  # type: ignore[index]


identify_batch = st.lists(
    st.tuples(
        st.dictionaries(st.sampled_from(["plan", "city", "age", "vip"]),
                        st.integers(0, 5) | st.sampled_from(["x", "y", None]), max_size=4),
        st.integers(0, 10**6),                                  # received_at offset (ms)
        st.none() | st.sampled_from(["anon-a", "anon-b", "anon-c"]),
    ),
    min_size=1, max_size=6,
)


@settings(max_examples=150, deadline=None)
@given(batch=identify_batch, stamps=st.lists(st.integers(1, 10**9), min_size=6, max_size=6,
                                                unique=True), data=st.data())
def test_any_permutation_of_identifies_with_distinct_stamps_folds_to_one_result(
    batch: list[tuple[dict[str, Any], int, str | None]], stamps: list[int], data: st.DataObject,
) -> None:
    items = [identify(attrs, timestamp=stamps[i], received_at=RECEIVED + delay, anonymous_id=anon)
             for i, (attrs, delay, anon) in enumerate(batch)]
    expected_attributes: dict[str, Any] = {}
    for item in sorted(items, key=lambda it: it["timestamp"]):
        expected_attributes.update(item["attributes"])
    expected_anon = sorted({it["anonymous_id"] for it in items if it["anonymous_id"]})

    permutations = list(itertools.islice(itertools.permutations(items), 120))
    permutations.append(tuple(data.draw(st.permutations(items))))
    results = [fold(list(order)) for order in permutations]
    for profile in results:
        assert profile is not None
        assert profile["attributes"] == expected_attributes
        assert profile["anonymous_ids"] == expected_anon
        assert profile["updated_at"] == max(it["received_at"] for it in items) // 1000
        assert profile["stamps"] == results[0]["stamps"]  # type: ignore[index]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["plan", "city"]), st.integers(0, 9)),
                min_size=1, max_size=6))
def test_without_sender_timestamps_the_latest_arrival_wins_in_any_order(
    writes: list[tuple[str, int]],
) -> None:
    items = [identify({key: value}, received_at=RECEIVED + i) for i, (key, value) in
             enumerate(writes)]
    expected: dict[str, Any] = {}
    for key, value in writes:
        expected[key] = value
    assert fold(items)["attributes"] == expected  # type: ignore[index]
    assert fold(list(reversed(items)))["attributes"] == expected  # type: ignore[index]


# --- anonymous ids, idempotence, purity ----------------------------------------------------------


def test_anonymous_ids_are_kept_sorted_and_unique() -> None:
    profile = fold([
        identify({}, anonymous_id="zeta", received_at=RECEIVED),
        identify({}, anonymous_id="alpha", received_at=RECEIVED + 1),
        identify({}, anonymous_id="zeta", received_at=RECEIVED + 2),
        identify({}, anonymous_id=None, received_at=RECEIVED + 3),
        identify({}, anonymous_id="mid", received_at=RECEIVED + 4),
    ])
    assert profile is not None
    assert profile["anonymous_ids"] == ["alpha", "mid", "zeta"]


def test_re_applying_an_identify_is_idempotent() -> None:
    first = identify({"plan": "free", "age": 3}, timestamp=1_000, anonymous_id="anon-1")
    second = identify({"plan": "pro"}, timestamp=2_000, received_at=RECEIVED + 10)
    once = fold([first, second])
    twice = fold([first, second, second, first])
    assert once == twice
    assert apply_identify(once, PERSON, second) == once


def test_apply_identify_returns_a_new_value_and_leaves_the_input_untouched() -> None:
    profile = fold([identify({"plan": "free"}, timestamp=1_000, anonymous_id="a")])
    snapshot = copy.deepcopy(profile)
    after = apply_identify(profile, PERSON, identify({"plan": "pro", "x": 1}, timestamp=2_000,
                                                     anonymous_id="b"))
    assert profile == snapshot
    assert after is not profile
    assert after["attributes"] == {"plan": "pro", "x": 1}
    assert after["anonymous_ids"] == ["a", "b"]


def test_a_new_profile_takes_id_and_created_at_from_its_first_identify() -> None:
    profile = apply_identify(None, PERSON, identify({"plan": "free"}, received_at=1_700_000_123_456))
    assert profile["id"] == PERSON
    assert profile["created_at"] == 1_700_000_123
    assert profile["updated_at"] == 1_700_000_123
    assert new_profile(PERSON, identify({}, received_at=5_999))["created_at"] == 5


def test_an_integer_created_at_attribute_sets_created_at() -> None:
    profile = fold([identify({"created_at": 1_600_000_000}, received_at=RECEIVED)])
    assert profile["created_at"] == 1_600_000_000  # type: ignore[index]
    profile = fold([identify({"created_at": "yesterday"}, received_at=RECEIVED)])
    assert profile["created_at"] == RECEIVED // 1000  # type: ignore[index]


def test_updated_at_never_goes_back() -> None:
    profile = fold([identify({"a": 1}, received_at=RECEIVED + 9_000),
                    identify({"b": 2}, received_at=RECEIVED)])
    assert profile["updated_at"] == (RECEIVED + 9_000) // 1000  # type: ignore[index]


# --- merges --------------------------------------------------------------------------------------

MERGED_AT = RECEIVED + 5_000  # when the merge was accepted


def secondary(items: list[dict[str, Any]]) -> dict[str, Any]:
    profile = None
    for item in items:
        profile = apply_identify(profile, "gus", {**item, "customer": "gus"})
    assert profile is not None
    return profile


def absorb(primary: dict[str, Any] | None, gus: dict[str, Any]) -> dict[str, Any]:
    return merge(primary, PERSON, gus, "merge-1", MERGED_AT // 1000, merged_at_ms=MERGED_AT)


def test_the_change_log_is_in_accept_order_whichever_path_delivered_a_write_first() -> None:
    """Writes by a person's own id, by an email and through a merge marker reach the person by
    different paths, in any order: the log of attribute changes is placed by accept time and
    write id, so a replay keeps the live one (for writes of different attributes)."""
    ann = fold([identify({"plan": "pro"}, received_at=RECEIVED)])
    gus = secondary([identify({"city": "Oslo"}, received_at=RECEIVED + 1_000)])
    by_id = identify({"plan": "basic"}, received_at=MERGED_AT + 1_000, event_id="01B")
    by_email = identify({"x": 3}, received_at=MERGED_AT + 2_000, event_id="01C")
    logs = []
    for first, second in ((by_id, by_email), (by_email, by_id)):
        merged = absorb(ann, gus)
        profile = apply_identify(apply_identify(merged, PERSON, forward(first)), PERSON,
                                 forward(second))
        logs.append([(change["name"], change["new"]) for change in profile["changes"]])
    assert logs[0] == logs[1] == [("plan", "pro"), ("city", "Oslo"), ("plan", "basic"),
                                  ("x", 3)]


def test_the_primary_wins_over_what_the_secondary_was_sent_before_the_merge() -> None:
    ann = fold([identify({"plan": "pro"}, received_at=RECEIVED)])
    gus = secondary([identify({"plan": "free", "city": "Oslo"}, received_at=RECEIVED + 1_000)])
    assert absorb(ann, gus)["attributes"] == {"plan": "pro", "city": "Oslo"}


def forward(item: dict[str, Any]) -> dict[str, Any]:
    """``item`` as the secondary's merge marker forwards it to the primary."""
    return {**item, "via": [["gus", MERGED_AT]]}


def test_what_the_secondary_was_sent_after_the_merge_counts_as_a_forwarded_identify() -> None:
    """In accept order a write sent to the secondary after its merge reaches the primary as an
    identify forwarded by the secondary's marker. The secondary holds it when it handled it
    before its side of the merge, and when that side was redone after a crash (its first
    absorb had gone out, its state was lost: the merge sends the profile again, under the same
    id). Every path gives the primary the same attributes."""
    ann = fold([identify({"plan": "pro"}, received_at=RECEIVED)])
    before = [identify({"plan": "free", "city": "Oslo"}, received_at=RECEIVED + 1_000)]
    after = identify({"plan": "basic", "city": "Lyon"}, received_at=MERGED_AT + 1_000)
    forwarded = apply_identify(absorb(ann, secondary(before)), PERSON, forward(after))
    redone = absorb(absorb(ann, secondary(before)), secondary([*before, after]))
    handled_first = absorb(ann, secondary([*before, after]))
    assert forwarded["attributes"] == {"plan": "basic", "city": "Lyon"}
    assert redone["attributes"] == handled_first["attributes"] == forwarded["attributes"]


def test_a_write_sent_before_the_merge_and_handled_after_it_loses_to_the_primarys_own() -> None:
    """A merge naming the secondary by email can overtake the secondary's own identify: the
    identify then reaches a merge marker and is forwarded, saying so (``via``). It was sent
    before the merge, so it is the secondary's, and the primary's own value wins over it, as in
    accept order, where the secondary took it before its merge."""
    ann = fold([identify({"plan": "pro"}, received_at=RECEIVED)])
    oslo = identify({"plan": "free", "city": "Oslo"}, received_at=RECEIVED + 1_000)
    overtaken = apply_identify(absorb(ann, new_profile("gus", {})), PERSON, forward(oslo))
    assert overtaken["attributes"] == absorb(ann, secondary([oslo]))["attributes"] == {
        "plan": "pro", "city": "Oslo"}
    assert overtaken["levels"]["gus"]["into"] == PERSON


def test_a_redone_merge_takes_the_newer_writes_of_what_came_from_the_secondary() -> None:
    """The first absorb went out when the secondary had handled one of its writes; the second,
    after the crash, holds both. The primary ends as if it had absorbed both at once."""
    oslo = identify({"city": "Oslo"}, received_at=RECEIVED + 1_000, event_id="a")
    lyon = identify({"city": "Lyon"}, received_at=RECEIVED + 2_000, event_id="b")
    ann = fold([identify({"plan": "pro"}, received_at=RECEIVED)])
    redone = absorb(absorb(ann, secondary([oslo])), secondary([oslo, lyon]))
    assert redone["attributes"] == {"plan": "pro", "city": "Lyon"}
    at_once = absorb(ann, secondary([oslo, lyon]))
    assert {**redone, "changes": []} == {**at_once, "changes": []}  # the changes tell the story


def test_a_write_after_the_merge_still_loses_to_a_later_stamp_of_the_primary() -> None:
    ann = fold([identify({"plan": "pro"}, timestamp=(MERGED_AT + 9_000) // 1000,
                         received_at=RECEIVED)])
    gus = secondary([identify({"plan": "basic"}, received_at=MERGED_AT + 1_000)])
    assert absorb(ann, gus)["attributes"] == {"plan": "pro"}


def test_of_two_secondaries_the_one_merged_first_brings_a_shared_attribute() -> None:
    """Two secondaries with the same attribute, the primary without it: in accept order the
    first merge brings it and the second finds it there. Absorbed in either order, or the
    second redone, the first merge's value stays."""
    eve = apply_identify(None, "eve", {**identify({"city": "Rome"}, received_at=RECEIVED + 500),
                                       "customer": "eve"})
    gus = secondary([identify({"city": "Oslo"}, received_at=RECEIVED + 1_000)])
    ann = fold([identify({"plan": "pro"})])

    def take_eve(profile: dict[str, Any]) -> dict[str, Any]:
        return merge(profile, PERSON, eve, "merge-0", MERGED_AT // 1000 - 1,
                     merged_at_ms=MERGED_AT - 1_000)

    in_order = absorb(take_eve(ann), gus)
    assert in_order["attributes"] == {"plan": "pro", "city": "Rome"}
    assert take_eve(absorb(ann, gus))["attributes"] == in_order["attributes"]
    assert absorb(in_order, gus)["attributes"] == in_order["attributes"]


def test_a_merge_sent_twice_takes_the_earlier_copys_time_whichever_is_absorbed_first() -> None:
    """gus is merged into ann twice, at MERGED_AT and 4 s later, and was sent a plan between the
    two. In accept order the first copy merges gus, so that plan reaches ann forwarded and
    outranks hers. When gus handles the later copy first, his absorb is timed by it; the earlier
    copy, reaching his marker, sends a stand-in with the earlier time
    (``lifecycle.earlier_copy``), which places the plan again. Either order, the same."""
    ann = fold([identify({"plan": "pro"}, received_at=RECEIVED)])
    gus = secondary([identify({"plan": "free", "city": "Oslo"}, received_at=RECEIVED + 1_000),
                     identify({"plan": "basic"}, received_at=MERGED_AT + 2_000)])
    stand_in = new_profile("gus", {})  # (what lifecycle.earlier_copy sends)

    def second(profile: dict[str, Any] | None, whom: dict[str, Any]) -> dict[str, Any]:
        return merge(profile, PERSON, whom, "merge-2", MERGED_AT // 1000 + 4,
                     merged_at_ms=MERGED_AT + 4_000)

    later_only = second(ann, gus)
    assert later_only["attributes"] == {"plan": "pro", "city": "Oslo"}  # ann's own came first
    in_accept_order = absorb(ann, gus)
    assert in_accept_order["attributes"] == {"plan": "basic", "city": "Oslo"}
    assert absorb(later_only, stand_in)["attributes"] == in_accept_order["attributes"]
    assert second(absorb(ann, stand_in), gus)["attributes"] == in_accept_order["attributes"]
    assert absorb(later_only, stand_in)["levels"]["gus"]["at"] == MERGED_AT
    # gus sent nothing else: his plan leaves his level altogether, and still wins.
    late = secondary([identify({"plan": "basic"}, received_at=MERGED_AT + 2_000)])
    assert second(ann, late)["attributes"] == {"plan": "pro"}
    assert absorb(second(ann, late), stand_in)["attributes"] == {"plan": "basic"}


def test_people_merged_into_someone_after_its_earlier_merge_move_to_the_survivor() -> None:
    """eve was merged into gus at MERGED_AT + 2 s, after gus's first merge into ann (MERGED_AT)
    and before its second copy (MERGED_AT + 4 s), which gus handled first. ann got a plan at
    MERGED_AT + 3 s, stamped by its sender before everything else. In accept order eve went to
    ann before that plan arrived and brought hers, which the older stamp does not outrank.
    Timed by the later copy, ann had her plan before gus (and eve with him) came. Once the
    earlier time is known, eve's level moves from gus to ann, and her plan wins again."""
    ann = fold([identify({"plan": "pro"}, timestamp=RECEIVED // 1000 - 100,
                         received_at=MERGED_AT + 3_000)])
    eve = apply_identify(None, "eve", {**identify({"plan": "free"}, received_at=RECEIVED),
                                       "customer": "eve"})
    gus = merge(secondary([identify({"city": "Oslo"}, received_at=RECEIVED + 1_000)]), "gus",
                eve, "merge-e", MERGED_AT // 1000 + 2, merged_at_ms=MERGED_AT + 2_000)
    assert gus["attributes"] == {"plan": "free", "city": "Oslo"}
    timed_late = merge(ann, PERSON, gus, "merge-2", MERGED_AT // 1000 + 4,
                       merged_at_ms=MERGED_AT + 4_000)
    assert timed_late["attributes"] == {"plan": "pro", "city": "Oslo"}
    stand_in = new_profile("gus", {})  # (what lifecycle.earlier_copy sends)
    retimed = absorb(timed_late, stand_in)
    assert retimed["levels"]["eve"]["into"] == PERSON
    assert retimed["attributes"] == {"plan": "free", "city": "Oslo"}


def test_what_a_stale_marker_forwards_climbs_the_merge_times_the_survivor_has() -> None:
    """cat was merged into dan at T, by a copy handled after a later one (T + 11 s) that left
    cat's marker with the later time; eve was merged into cat at T + 10 s, ann into eve at
    T + 9 s. ann's absorb reaches dan through both markers, which say (eve, T + 10 s), (cat,
    T + 11 s). dan knows cat's earlier time, so eve went to dan, after dan had its own plan:
    ann's plan loses. (Found by seed 73 of ``test_merge_orders``.)"""
    t = RECEIVED
    cat = new_profile("cat", {})
    dan = merge(None, "dan", cat, "m0", t // 1000, merged_at_ms=t)
    dan = apply_identify(dan, "dan", {**identify({"plan": 0}, received_at=t + 4_000),
                                      "via": [["cat", t + 11_000]]})
    ann = apply_identify(None, "ann", {**identify({"plan": 1}, received_at=t + 1_000),
                                       "customer": "ann"})
    dan = merge(dan, "dan", ann, "m9", t // 1000 + 9, merged_at_ms=t + 9_000,
                via=[["eve", t + 10_000], ["cat", t + 11_000]])
    assert dan["levels"]["eve"]["into"] == "dan"
    assert dan["attributes"] == {"plan": 0}


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["plan", "city"]), st.integers(0, 3),
                          st.integers(-3, 3)), min_size=1, max_size=6),
       st.dictionaries(st.sampled_from(["plan", "city"]), st.integers(0, 3)),
       st.integers(0, 6), st.integers(0, 6))
def test_a_merge_gives_the_same_attributes_whenever_the_secondary_handled_its_writes(
        writes: list[tuple[str, int, int]], own: dict[str, int], handled: int,
        first_run: int) -> None:
    """The secondary is sent ``writes`` (seconds around the merge's accept time; no sender
    timestamps), the primary has ``own``. In accept order the secondary absorbs those sent
    before the merge and forwards the rest. Its side of the merge may first run when it has
    handled any number of them (the first ``handled``: a merge by email can overtake its
    writes or be overtaken by them), the rest forwarded; and a crash may lose that side after
    its absorb went out when it had handled the first ``first_run``: the merge is redone once
    it has handled them all. The primary ends the same every way."""
    ann = fold([identify(own, received_at=RECEIVED)]) if own else None
    items = sorted((identify({name: value}, received_at=MERGED_AT + offset * 1_000 + 1 + n,
                             event_id=f"w{n}") for n, (name, value, offset) in enumerate(writes)),
                   key=lambda item: item["received_at"])
    sent_before = sum(item["received_at"] <= MERGED_AT for item in items)

    def handled_then_forwarded(k: int) -> dict[str, Any]:
        profile = absorb(ann, secondary(items[:k]) if k else new_profile("gus", {}))
        for item in items[k:]:
            profile = apply_identify(profile, PERSON, forward(item))
        return profile

    accept_order = handled_then_forwarded(sent_before)
    either_way = handled_then_forwarded(min(handled, len(items)))
    first = secondary(items[:first_run]) if first_run else new_profile("gus", {})
    redone = absorb(absorb(ann, first), secondary(items))
    assert either_way["attributes"] == accept_order["attributes"]
    assert redone["attributes"] == accept_order["attributes"]


# --- public view ---------------------------------------------------------------------------------


def test_public_view_shape() -> None:
    profile = fold([identify({"plan": "pro", "email": "a@example.com"}, timestamp=1_000,
                             anonymous_id="anon-9", received_at=1_700_000_050_000)])
    assert profile is not None
    view = public_view(profile)
    assert view == {
        "id": PERSON,
        "identifiers": {"id": PERSON, "email": "a@example.com", "cio_id": cio_id_for(PERSON)},
        "attributes": {"plan": "pro", "email": "a@example.com"},
        "anonymous_ids": ["anon-9"],
        "created_at": 1_700_000_050,
        "updated_at": 1_700_000_050,
    }
    assert "stamps" not in view


# --- profiles stored before levels ---------------------------------------------------------------


def test_a_profile_stored_before_levels_keeps_its_values_as_its_own() -> None:
    """Stamps were ``[sent, received]`` (a merge's added its source): read as the person's own
    writes, so a later write wins by stamp and a merge's secondary still loses to them."""
    stored = {"id": PERSON, "cio_id": cio_id_for(PERSON), "attributes": {"plan": "pro",
                                                                        "city": "Oslo"},
              "stamps": {"plan": [RECEIVED, RECEIVED], "city": [RECEIVED, RECEIVED, "eve"]},
              "anonymous_ids": [], "changes": [], "created_at": 1, "updated_at": 2}
    later = apply_identify(stored, PERSON, identify({"plan": "basic"}, received_at=RECEIVED + 1))
    assert later["attributes"] == {"plan": "basic", "city": "Oslo"}
    assert later["stamps"]["city"] == [RECEIVED, RECEIVED, RECEIVED, "Oslo"]
    gus = secondary([identify({"city": "Lyon", "vip": True}, received_at=RECEIVED + 1_000)])
    assert absorb(stored, gus)["attributes"] == {"plan": "pro", "city": "Oslo", "vip": True}
