"""Evaluation: windows at their exact edges, counts, where-clauses, combinators, change points."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from app.segments import evaluate, is_member, next_change_at, parse_segment
from app.segments.definition import Segment

M, H, D = 60, 3600, 86400
T0 = 1_700_000_000  # an arbitrary "day 0"


def act(name: str, ts: int | float, data: Any = None, type_: str = "event") -> dict[str, Any]:
    return {
        "id": f"{name}-{ts}",
        "name": name,
        "type": type_,
        "data": {} if data is None else data,
        "timestamp": ts,
        "processed_at": None,
    }


def seg(match: dict[str, Any]) -> Segment:
    return parse_segment("s", {"name": "n", "match": match})


def state(segment: Segment, activities: list, attributes: Mapping[str, Any], now: int) -> tuple:
    """(member, next change) -- also checks the two entry points agree."""
    result = evaluate(segment, activities, attributes, now)
    assert result.member is is_member(segment, activities, attributes, now)
    assert result.next_change_at == next_change_at(segment, activities, attributes, now)
    return result.member, result.next_change_at


class TestWindowEdges:
    segment = seg({"event": "e", "within": "1h"})

    @pytest.mark.parametrize(
        ("now", "member", "change"),
        [
            (T0 - 1, False, T0),  # stamped in the future: enters at its timestamp
            (T0, True, T0 + H),  # now exactly at the timestamp: IN
            (T0 + 1, True, T0 + H),
            (T0 + H - 1, True, T0 + H),  # one second before the edge: still in
            (T0 + H, False, None),  # exactly w seconds old: OUT, and nothing else can change
            (T0 + 10 * D, False, None),
        ],
    )
    def test_single_event(self, now: int, member: bool, change: int | None) -> None:
        assert state(self.segment, [act("e", T0)], {}, now) == (member, change)

    @pytest.mark.parametrize(
        ("within", "w"), [("1m", M), ("15m", 15 * M), ("2h", 2 * H), ("1d", D), ("30d", 30 * D)]
    )
    def test_units(self, within: str, w: int) -> None:
        segment = seg({"event": "e", "within": within})
        events = [act("e", T0)]
        assert state(segment, events, {}, T0 + w - 1) == (True, T0 + w)
        assert state(segment, events, {}, T0 + w) == (False, None)

    def test_back_dated_event_already_outside_the_window(self) -> None:
        # Arrives now but happened 31 days ago: never counts for a 30-day window.
        segment = seg({"event": "e", "within": "30d"})
        assert state(segment, [act("e", T0 - 31 * D)], {}, T0) == (False, None)
        assert state(segment, [act("e", T0 - 30 * D)], {}, T0) == (False, None)  # exactly w old
        assert state(segment, [act("e", T0 - 30 * D + 1)], {}, T0) == (True, T0 + 1)

    def test_without_within_all_history_counts(self) -> None:
        segment = seg({"event": "e"})
        assert state(segment, [act("e", 0)], {}, T0) == (True, None)
        assert state(segment, [act("e", T0)], {}, T0) == (True, None)
        # Future-stamped events count once their time comes, then forever.
        assert state(segment, [act("e", T0 + 5)], {}, T0) == (False, T0 + 5)
        assert state(segment, [act("e", T0 + 5)], {}, T0 + 5) == (True, None)

    def test_fractional_timestamps_take_effect_on_the_next_second(self) -> None:
        segment = seg({"event": "e", "within": "1m"})
        events = [act("e", 10.5)]
        assert state(segment, events, {}, 10) == (False, 11)
        assert state(segment, events, {}, 11) == (True, 71)
        assert state(segment, events, {}, 70) == (True, 71)  # 70 - 60 < 10.5
        assert state(segment, events, {}, 71) == (False, None)

    def test_activities_without_a_numeric_timestamp_never_count(self) -> None:
        segment = seg({"event": "e"})
        broken = [
            {"name": "e", "data": {}},
            {"name": "e", "timestamp": None},
            {"name": "e", "timestamp": "1700000000"},
            {"name": "e", "timestamp": True},
        ]
        assert state(segment, broken, {}, T0) == (False, None)


class TestCounts:
    def stamps(self, *offsets: int) -> list[dict[str, Any]]:
        return [act("e", T0 + o) for o in offsets]

    @pytest.mark.parametrize(
        ("count", "results"),
        [
            # results[n] = membership with n events in the window, n = 0..4
            ({"eq": 0}, [True, False, False, False, False]),
            ({"eq": 2}, [False, False, True, False, False]),
            ({"gte": 2}, [False, False, True, True, True]),
            ({"gte": 0}, [True, True, True, True, True]),
            ({"gt": 2}, [False, False, False, True, True]),
            ({"lte": 2}, [True, True, True, False, False]),
            ({"lt": 2}, [True, True, False, False, False]),
            ({"lt": 0}, [False, False, False, False, False]),
            ({"gte": 1, "lte": 3}, [False, True, True, True, False]),
            ({"gt": 1, "lt": 3}, [False, False, True, False, False]),
            ({"gt": 0, "lt": 4, "eq": 3}, [False, False, False, True, False]),
            ({"gte": 3, "lte": 1}, [False, False, False, False, False]),  # contradictory: never
        ],
    )
    def test_comparators(self, count: dict[str, int], results: list[bool]) -> None:
        segment = seg({"event": "e", "count": count, "within": "1d"})
        for n, expected in enumerate(results):
            events = self.stamps(*range(n)) + [act("e", T0 - 2 * D), act("other", T0)]
            assert is_member(segment, events, {}, T0 + 10) is expected, n

    def test_default_is_at_least_one(self) -> None:
        segment = seg({"event": "e"})
        assert is_member(segment, [], {}, T0) is False
        assert is_member(segment, self.stamps(0), {}, T0) is True
        assert is_member(segment, self.stamps(0, 1, 2), {}, T0 + 2) is True

    def test_change_is_when_the_verdict_flips_not_when_the_count_moves(self) -> None:
        # gte 2 over 1h with events at +0, +10, +20: the count drops to 2 at +3600 (no flip) and to
        # 1 at +3610 (flip).
        segment = seg({"event": "e", "count": {"gte": 2}, "within": "1h"})
        events = self.stamps(0, 10, 20)
        assert state(segment, events, {}, T0 + 20) == (True, T0 + 10 + H)
        assert state(segment, events, {}, T0 + 10 + H) == (False, None)
        # Before they happen: the second event makes it true.
        assert state(segment, events, {}, T0 - 5) == (False, T0 + 10)
        assert state(segment, events, {}, T0 + 5) == (False, T0 + 10)

    def test_upper_bound_with_future_events(self) -> None:
        # lte 1 without a window: true until the second event's time comes.
        segment = seg({"event": "e", "count": {"lte": 1}})
        events = self.stamps(0, 100, 200)
        assert state(segment, events, {}, T0) == (True, T0 + 100)
        assert state(segment, events, {}, T0 + 100) == (False, None)

    def test_eq_enters_and_leaves(self) -> None:
        segment = seg({"event": "e", "count": {"eq": 1}, "within": "1m"})
        events = self.stamps(0, 30)
        assert state(segment, events, {}, T0 - 1) == (False, T0)
        assert state(segment, events, {}, T0) == (True, T0 + 30)
        assert state(segment, events, {}, T0 + 30) == (False, T0 + 60)  # 2 in window
        assert state(segment, events, {}, T0 + 60) == (True, T0 + 90)  # first one left
        assert state(segment, events, {}, T0 + 90) == (False, None)

    def test_same_second_changes_are_applied_together(self) -> None:
        # One event leaves as another enters at the same second: the count stays 1, no flip.
        segment = seg({"event": "e", "count": {"eq": 1}, "within": "1m"})
        events = self.stamps(0, 60)
        assert state(segment, events, {}, T0) == (True, T0 + 120)


class TestWhere:
    def test_all_predicates_on_the_same_event(self) -> None:
        segment = seg({
            "event": "order",
            "where": [{"path": "total", "op": "gte", "value": 100}, {"path": "currency", "op": "eq", "value": "EUR"}],
        })
        split = [act("order", T0, {"total": 150, "currency": "USD"}), act("order", T0, {"total": 5, "currency": "EUR"})]
        assert is_member(segment, split, {}, T0) is False
        assert is_member(segment, split + [act("order", T0, {"total": "120", "currency": "EUR"})], {}, T0) is True

    def test_array_predicates_are_each_existential_within_the_event(self) -> None:
        # Documented: two predicates over items[] may be satisfied by different items of one event.
        segment = seg({
            "event": "cart",
            "where": [{"path": "items[].type", "op": "eq", "value": "monitor"},
                      {"path": "items[].price", "op": "gt", "value": 500}],
        })
        data = {"items": [{"type": "monitor", "price": 100}, {"type": "tv", "price": 900}]}
        assert is_member(segment, [act("cart", T0, data)], {}, T0) is True

    @pytest.mark.parametrize(
        ("path", "op", "value", "data", "result"),
        [
            ("items[].type", "eq", "monitor", {"items": [{"type": "tv"}, {"type": "monitor"}]}, True),
            ("items[].type", "eq", "monitor", {"items": []}, False),
            ("items[].type", "neq", "monitor", {"items": [{"type": "tv"}]}, True),
            ("items[].type", "neq", "monitor", {"items": [{"type": "tv"}, {"type": "monitor"}]}, False),
            ("items[0].type", "eq", "monitor", {"items": [{"type": "tv"}, {"type": "monitor"}]}, False),
            ("items[1].type", "eq", "monitor", {"items": [{"type": "tv"}, {"type": "monitor"}]}, True),
            ("a[].b[].c", "eq", 3, {"a": [{"b": [{"c": 1}]}, {"b": [{"c": 2}, {"c": 3}]}]}, True),
            ('["unit price"]', "lt", "10", {"unit price": 9.99}, True),
            ('cart["unit price"].usd', "gte", 10, {"cart": {"unit price": {"usd": "10"}}}, True),
            ('["a.b"]', "eq", 1, {"a.b": 1, "a": {"b": 2}}, True),
            ("a.b", "eq", 1, {"a.b": 1, "a": {"b": 2}}, False),
            ("coupon", "not_exists", None, {}, True),
            ("coupon", "exists", None, {"coupon": None}, False),
            ("tags", "contains", "sale", {"tags": ["new", "sale"]}, True),
            ("url", "starts_with", "https://", {"url": "https://x"}, True),
        ],
    )
    def test_paths_and_operators(self, path: str, op: str, value: Any, data: Any, result: bool) -> None:
        where: dict[str, Any] = {"path": path, "op": op}
        if op not in ("exists", "not_exists"):
            where["value"] = value
        segment = seg({"event": "e", "where": [where]})
        assert is_member(segment, [act("e", T0, data)], {}, T0) is result

    def test_non_object_data_matches_nothing_positive(self) -> None:
        segment = seg({"event": "e", "where": [{"path": "a", "op": "exists"}]})
        events = [act("e", T0, "text"), {"name": "e", "timestamp": T0}]  # no data at all
        assert is_member(segment, events, {}, T0) is False
        negated = seg({"event": "e", "where": [{"path": "a", "op": "not_exists"}]})
        assert is_member(negated, events, {}, T0) is True

    def test_non_matching_events_do_not_create_change_points(self) -> None:
        segment = seg({"event": "e", "where": [{"path": "ok", "op": "eq", "value": True}], "within": "1h"})
        events = [act("e", T0 + 100, {"ok": False}), act("e", T0 - 100, {"ok": False})]
        assert state(segment, events, {}, T0) == (False, None)

    def test_event_type_is_not_part_of_the_match(self) -> None:
        segment = seg({"event": "/pricing"})
        assert is_member(segment, [act("/pricing", T0, type_="page")], {}, T0) is True


class TestAttributes:
    @pytest.mark.parametrize(
        ("condition", "attributes", "result"),
        [
            ({"attribute": "email", "op": "exists"}, {"email": "a@b.c"}, True),
            ({"attribute": "email", "op": "exists"}, {"email": None}, False),
            ({"attribute": "email", "op": "not_exists"}, {}, True),
            ({"attribute": "plan", "op": "in", "value": ["pro", "team"]}, {"plan": "team"}, True),
            ({"attribute": "age", "op": "gte", "value": 18}, {"age": "21"}, True),
            ({"attribute": "age", "op": "gte", "value": 18}, {"age": "unknown"}, False),
            ({"attribute": "score", "op": "gt", "value": "9"}, {"score": "10"}, True),
            ({"attribute": '["sign up date"]', "op": "lt", "value": "2024-06-01"},
             {"sign up date": "2024-01-15"}, True),
            ({"attribute": "address.city", "op": "eq", "value": "Paris"}, {"address": {"city": "Paris"}}, True),
            ({"attribute": "tags[]", "op": "eq", "value": "vip"}, {"tags": ["new", "vip"]}, True),
            ({"attribute": "tags", "op": "contains", "value": "vip"}, {"tags": ["new", "vip"]}, True),
            ({"attribute": "tags", "op": "not_contains", "value": "vip"}, {"tags": []}, True),
            ({"attribute": "orders[0].total", "op": "gt", "value": 10}, {"orders": [{"total": 11}]}, True),
            ({"attribute": "email", "op": "ends_with", "value": "@corp.com"}, {"email": "x@corp.com"}, True),
        ],
    )
    def test_conditions(self, condition: dict, attributes: dict, result: bool) -> None:
        assert state(seg(condition), [], attributes, T0) == (result, None)


class TestCombinators:
    def test_nested_all_any_not(self) -> None:
        segment = seg({
            "any": [
                {"all": [{"attribute": "plan", "op": "eq", "value": "pro"},
                         {"not": {"event": "login", "within": "7d"}}]},
                {"not": {"any": [{"attribute": "email", "op": "exists"}, {"event": "signup"}]}},
            ]
        })
        login = [act("login", T0 - D)]
        assert is_member(segment, [], {"plan": "pro", "email": "x"}, T0) is True
        assert is_member(segment, login, {"plan": "pro", "email": "x"}, T0) is False
        assert is_member(segment, login, {"plan": "free"}, T0) is True  # second branch
        assert is_member(segment, login + [act("signup", T0 - 9 * D)], {"plan": "free"}, T0) is False
        # The login leaves the 7-day window 6 days from now, re-admitting the pro user.
        assert state(segment, login, {"plan": "pro", "email": "x"}, T0) == (False, T0 + 6 * D)

    def test_double_negation(self) -> None:
        segment = seg({"not": {"not": {"event": "e", "within": "1m"}}})
        assert state(segment, [act("e", T0)], {}, T0) == (True, T0 + M)

    def test_static_false_child_of_all_means_no_change(self) -> None:
        segment = seg({"all": [{"event": "e", "within": "1m"}, {"attribute": "vip", "op": "eq", "value": True}]})
        assert state(segment, [act("e", T0)], {"vip": False}, T0) == (False, None)
        assert state(segment, [act("e", T0)], {"vip": True}, T0) == (True, T0 + M)

    def test_static_true_child_of_any_means_no_change(self) -> None:
        segment = seg({"any": [{"event": "e", "within": "1m"}, {"attribute": "vip", "op": "eq", "value": True}]})
        assert state(segment, [act("e", T0)], {"vip": True}, T0) == (True, None)
        assert state(segment, [act("e", T0)], {"vip": False}, T0) == (True, T0 + M)

    def test_all_stays_false_until_every_false_child_changed(self) -> None:
        # a enters at +10, b at +20: "all" cannot become true before +20.
        segment = seg({"all": [{"event": "a"}, {"event": "b"}]})
        events = [act("a", T0 + 10), act("b", T0 + 20)]
        assert state(segment, events, {}, T0) == (False, T0 + 20)
        assert state(segment, events, {}, T0 + 20) == (True, None)

    def test_all_false_forever_when_a_false_child_never_changes(self) -> None:
        segment = seg({"all": [{"event": "a", "within": "1m"}, {"event": "b"}]})
        assert state(segment, [act("a", T0)], {}, T0) == (False, None)

    def test_any_stays_true_until_every_true_child_changed(self) -> None:
        segment = seg({"any": [{"event": "a", "within": "1m"}, {"event": "b", "within": "2m"}]})
        events = [act("a", T0), act("b", T0)]
        assert state(segment, events, {}, T0) == (True, T0 + 2 * M)
        assert state(segment, events, {}, T0 + 2 * M) == (False, None)

    def test_any_false_changes_at_the_first_child_change(self) -> None:
        segment = seg({"any": [{"event": "a"}, {"event": "b"}]})
        events = [act("a", T0 + 30), act("b", T0 + 20)]
        assert state(segment, events, {}, T0) == (False, T0 + 20)


class TestAbandonedCart:
    """The reference segment: a monitor left in a cart within 30 days, no purchase within 14."""

    segment = parse_segment("monitor-cart", {
        "name": "Monitor cart, no purchase",
        "match": {"all": [
            {"event": "abandoned_cart", "where": [{"path": "items[].type", "op": "eq", "value": "monitor"}],
             "count": {"gte": 1}, "within": "30d"},
            {"not": {"event": "purchased", "within": "14d"}},
            {"attribute": "email", "op": "exists"}]},
    })
    person = {"email": "ann@example.com"}
    cart = act("abandoned_cart", T0, {"items": [{"type": "cable"}, {"type": "monitor"}]})

    def test_enter_then_exit_when_the_cart_ages_out(self) -> None:
        assert state(self.segment, [], self.person, T0) == (False, None)
        assert state(self.segment, [self.cart], self.person, T0) == (True, T0 + 30 * D)
        assert state(self.segment, [self.cart], self.person, T0 + 30 * D - 1) == (True, T0 + 30 * D)
        assert state(self.segment, [self.cart], self.person, T0 + 30 * D) == (False, None)

    def test_purchase_suspends_membership_for_14_days(self) -> None:
        history = [self.cart, act("purchased", T0 + 5 * D)]
        assert state(self.segment, history, self.person, T0 + 5 * D) == (False, T0 + 19 * D)
        assert state(self.segment, history, self.person, T0 + 19 * D - 1) == (False, T0 + 19 * D)
        # The purchase leaves the 14-day window while the cart is still within 30 days.
        assert state(self.segment, history, self.person, T0 + 19 * D) == (True, T0 + 30 * D)
        assert state(self.segment, history, self.person, T0 + 30 * D) == (False, None)

    def test_purchase_older_than_the_cart_window(self) -> None:
        history = [act("purchased", T0 - 20 * D), self.cart]
        assert state(self.segment, history, self.person, T0) == (True, T0 + 30 * D)

    def test_late_purchase_after_the_cart_expired_changes_nothing(self) -> None:
        history = [self.cart, act("purchased", T0 + 40 * D)]
        assert state(self.segment, history, self.person, T0 + 31 * D) == (False, None)

    def test_cart_without_a_monitor(self) -> None:
        cables = act("abandoned_cart", T0, {"items": [{"type": "cable"}]})
        assert state(self.segment, [cables], self.person, T0) == (False, None)

    def test_no_email(self) -> None:
        assert state(self.segment, [self.cart], {}, T0) == (False, None)
        assert state(self.segment, [self.cart], {"email": None}, T0) == (False, None)

    def test_back_dated_cart(self) -> None:
        old = act("abandoned_cart", T0 - 31 * D, {"items": [{"type": "monitor"}]})
        assert state(self.segment, [old], self.person, T0) == (False, None)

    def test_future_purchase_is_a_change_point(self) -> None:
        history = [self.cart, act("purchased", T0 + 3 * D)]
        assert state(self.segment, history, self.person, T0) == (True, T0 + 3 * D)
        assert state(self.segment, history, self.person, T0 + 3 * D) == (False, T0 + 17 * D)


class _CountingActivity(Mapping[str, Any]):
    """An activity that counts how often its name is read."""

    def __init__(self, doc: dict[str, Any], reads: list[int]) -> None:
        self._doc = doc
        self._reads = reads

    def __getitem__(self, key: str) -> Any:
        if key == "name":
            self._reads[0] += 1
        return self._doc[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._doc)

    def __len__(self) -> int:
        return len(self._doc)


def test_activities_are_scanned_once_whatever_the_number_of_conditions() -> None:
    segment = seg({"any": [{"event": f"e{i}", "within": f"{i + 1}d"} for i in range(20)]
                   + [{"not": {"event": "e3", "count": {"gte": 5}}}]})
    reads = [0]
    activities = [_CountingActivity(act(f"e{i % 30}", T0 - i), reads) for i in range(3000)]
    evaluate(segment, activities, {}, T0)
    assert reads[0] == 3000
    reads[0] = 0
    is_member(segment, activities, {}, T0)
    assert reads[0] == 3000


def test_activities_may_be_a_one_shot_iterator() -> None:
    segment = seg({"all": [{"event": "a"}, {"event": "b"}]})
    assert is_member(segment, iter([act("a", 1), act("b", 2)]), {}, T0) is True
