"""Operators: every operator over single values, numeric strings, mismatched types and lists."""

from __future__ import annotations

from typing import Any

import pytest

from app.segments.operators import OPERATORS, VALUELESS, apply, check_expected


def one(op: str, actual: Any, expected: Any = None) -> bool:
    """The operator on a single resolved value (a path without [])."""
    return apply(op, [actual], expected)


@pytest.mark.parametrize(
    ("actual", "expected", "result"),
    [
        ("monitor", "monitor", True),
        ("monitor", "Monitor", False),
        (10, 10, True),
        (10, 10.0, True),
        ("10", 10, True),  # numeric string vs number: numbers
        (10, "10", True),
        ("10.0", 10, True),
        ("0.1", 0.1, True),
        ("1e3", 1000, True),
        ("-2.5", -2.5, True),
        ("007", "7", False),  # two strings compare as strings: leading zeros matter
        ("007", 7, True),
        ("abc", 0, False),
        (True, True, True),
        (True, 1, False),  # bools are not numbers
        (1, True, False),
        (False, 0, False),
        ("true", True, False),
        (None, None, True),
        (None, "x", False),
        ([1, 2], [1, 2], True),
        ([1, 2], [2, 1], False),
        ([True], [1], False),
        ({"a": 1}, {"a": 1.0}, True),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ({"a": True}, {"a": 1}, False),
        ("1", [1], False),
    ],
)
def test_eq_and_neq(actual: Any, expected: Any, result: bool) -> None:
    assert one("eq", actual, expected) is result
    assert one("neq", actual, expected) is (not result)


@pytest.mark.parametrize(
    ("actual", "expected", "gt", "gte", "lt", "lte"),
    [
        (10, 9, True, True, False, False),
        (9, 9, False, True, False, True),
        (9.5, 10, False, False, True, True),
        ("10", "9", True, True, False, False),  # numeric strings compare as numbers
        ("10", 9, True, True, False, False),
        (10, "9", True, True, False, False),
        ("9", "10", False, False, True, True),
        ("1e2", "99", True, True, False, False),
        ("-1", "0", False, False, True, True),
        ("b", "a", True, True, False, False),  # strings compare lexically
        ("a", "a", False, True, False, True),
        ("apple", "banana", False, False, True, True),
        ("10", "9a", False, False, True, True),  # not both numeric: lexical
        ("10", "abc", False, False, True, True),
        (10, "abc", False, False, False, False),  # number vs non-numeric string: false
        ("abc", 10, False, False, False, False),
        (True, 0, False, False, False, False),  # bools are not ordered
        (1, False, False, False, False, False),
        (None, 0, False, False, False, False),
        ([5], 1, False, False, False, False),
        ({"a": 1}, "a", False, False, False, False),
        (float("inf"), 10, True, True, False, False),
        ("1e400", 10, True, True, False, False),  # overflows to inf, still a number
        ("1" * 5000, 10, True, True, False, False),  # past int()'s digit limit
    ],
)
def test_ordering(actual: Any, expected: Any, gt: bool, gte: bool, lt: bool, lte: bool) -> None:
    assert one("gt", actual, expected) is gt
    assert one("gte", actual, expected) is gte
    assert one("lt", actual, expected) is lt
    assert one("lte", actual, expected) is lte


@pytest.mark.parametrize(
    ("actual", "expected", "result"),
    [
        ("hello world", "lo w", True),
        ("hello", "", True),
        ("hello", "HELLO", False),
        ("abc10", 10, False),  # no stringification of numbers
        (["vip", "beta"], "vip", True),
        (["vip", "beta"], "vi", False),  # list membership, not substring of an element
        ([1, 2, 3], 2, True),
        (["1", "2"], 2, True),  # membership uses eq: numeric string equals number
        ([[1, 2]], [1, 2], True),
        ([], "x", False),
        ({"vip": True}, "vip", False),  # no key lookup in objects
        (10, 1, False),
        (None, "x", False),
    ],
)
def test_contains_and_not_contains(actual: Any, expected: Any, result: bool) -> None:
    assert one("contains", actual, expected) is result
    assert one("not_contains", actual, expected) is (not result)


@pytest.mark.parametrize(
    ("op", "actual", "expected", "result"),
    [
        ("starts_with", "monitor 27in", "monitor", True),
        ("starts_with", "monitor", "tor", False),
        ("starts_with", "x", "", True),
        ("starts_with", 123, "1", False),
        ("starts_with", ["a"], "a", False),
        ("ends_with", "user@example.com", "@example.com", True),
        ("ends_with", "user@example.com", "example", False),
        ("ends_with", 123, "3", False),
        ("ends_with", None, "", False),
    ],
)
def test_starts_and_ends_with(op: str, actual: Any, expected: Any, result: bool) -> None:
    assert one(op, actual, expected) is result


@pytest.mark.parametrize(
    ("actual", "expected", "result"),
    [
        ("gold", ["gold", "silver"], True),
        ("bronze", ["gold", "silver"], False),
        (2, [1, 2, 3], True),
        ("2", [1, 2, 3], True),  # eq semantics
        (2, ["2"], True),
        (True, [1], False),
        (None, [None], True),
        ("x", [], False),
        (["gold"], ["gold"], False),  # the list itself is not in; use tags[] for elements
        ("gold", "gold", False),  # not a list (rejected by definitions anyway)
    ],
)
def test_in(actual: Any, expected: Any, result: bool) -> None:
    assert one("in", actual, expected) is result


def test_exists_and_not_exists() -> None:
    assert apply("exists", ["x"]) is True
    assert apply("exists", [0]) is True
    assert apply("exists", [False]) is True
    assert apply("exists", [""]) is True
    assert apply("exists", [[]]) is True
    assert apply("exists", [None]) is False  # null counts as absent
    assert apply("exists", []) is False
    assert apply("exists", [None, 1]) is True
    assert apply("not_exists", []) is True
    assert apply("not_exists", [None]) is True
    assert apply("not_exists", [None, 1]) is False


class TestManyValues:
    """Values reached through [] paths: positive ops are existential, negations are 'none'."""

    types = ["monitor", "tv", "cable"]

    @pytest.mark.parametrize(
        ("op", "expected", "result"),
        [
            ("eq", "tv", True),
            ("eq", "radio", False),
            ("neq", "tv", False),  # "no item is a tv"
            ("neq", "radio", True),
            ("contains", "abl", True),
            ("not_contains", "abl", False),
            ("not_contains", "xyz", True),
            ("starts_with", "mon", True),
            ("ends_with", "le", True),
            ("in", ["radio", "cable"], True),
            ("in", ["radio"], False),
            ("gt", "n", True),  # "tv" > "n"
            ("lt", "a", False),
            ("exists", None, True),
            ("not_exists", None, False),
        ],
    )
    def test_strings(self, op: str, expected: Any, result: bool) -> None:
        assert apply(op, self.types, expected) is result

    @pytest.mark.parametrize(
        ("op", "expected", "result"),
        [
            ("gt", 25, True),
            ("gt", 30, False),
            ("gte", 30, True),
            ("lt", 5, False),
            ("lte", 5, True),
            ("eq", "20", True),
            ("neq", 20, False),
        ],
    )
    def test_numbers(self, op: str, expected: Any, result: bool) -> None:
        assert apply(op, [5, "20", 30], expected) is result

    @pytest.mark.parametrize(
        ("op", "expected", "result"),
        [
            ("eq", 1, False),
            ("neq", 1, True),  # nothing resolved: "no element equals" holds
            ("contains", "a", False),
            ("not_contains", "a", True),
            ("gt", 0, False),
            ("in", [1], False),
            ("starts_with", "", False),
            ("exists", None, False),
            ("not_exists", None, True),
        ],
    )
    def test_nothing_resolved(self, op: str, expected: Any, result: bool) -> None:
        assert apply(op, [], expected) is result


def test_unknown_operator() -> None:
    with pytest.raises(ValueError, match="unknown operator 'equals'"):
        apply("equals", [1], 1)


@pytest.mark.parametrize(
    ("op", "expected", "present", "reason"),
    [
        ("exists", None, True, 'not allowed with operator "exists"'),
        ("not_exists", 1, True, 'not allowed with operator "not_exists"'),
        ("eq", None, False, 'required with operator "eq"'),
        ("in", "gold", True, 'expected a list for operator "in"'),
        ("starts_with", 1, True, 'expected a string for operator "starts_with"'),
        ("ends_with", None, True, 'expected a string for operator "ends_with"'),
        ("gt", True, True, 'expected a number or string for operator "gt"'),
        ("lte", [1], True, 'expected a number or string for operator "lte"'),
        ("gte", None, True, 'expected a number or string for operator "gte"'),
    ],
)
def test_check_expected_rejects(op: str, expected: Any, present: bool, reason: str) -> None:
    assert check_expected(op, expected, present) == reason


@pytest.mark.parametrize("op", OPERATORS)
def test_check_expected_accepts(op: str) -> None:
    samples = {"in": ["a"], "starts_with": "a", "ends_with": "a"}
    if op in VALUELESS:
        assert check_expected(op, None, False) is None
    else:
        assert check_expected(op, samples.get(op, 1), True) is None
