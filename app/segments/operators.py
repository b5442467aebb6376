"""Comparison operators of where-clauses and attribute conditions.

``apply(op, actual_values, expected)`` receives *every* value a path resolved to (see
:func:`app.segments.paths.resolve`); a path without ``[]`` gives zero or one value.

* Positive operators (``eq gt gte lt lte contains starts_with ends_with in exists``) hold when they
  hold for SOME resolved value, so ``items[].type eq "monitor"`` means "some item is a monitor", and
  nothing resolved means false.
* ``neq``, ``not_contains`` and ``not_exists`` are the exact negations of ``eq``, ``contains`` and
  ``exists`` over the whole set: ``items[].type neq "monitor"`` means "no item is a monitor" (true
  when there are no items), not "some item is something else". This keeps ``neq`` == ``not eq`` so a
  condition and its negation always partition profiles.

Value semantics (JSON values, as decoded by orjson/json):

* Numbers are ints/floats, never bools (``True`` is not ``1``). A *numeric string* is a string that
  spells a JSON-style number (``"10"``, ``"-2.5"``, ``"1e3"``; no spaces, no ``inf``/``nan``).
* ``gt gte lt lte``: if both sides are numbers or numeric strings they compare as numbers
  (``"10" > "9"``); otherwise two strings compare lexically (by code point); anything else (bools,
  null, lists, objects, number vs non-numeric string) is false.
* ``eq``: two strings compare exactly as strings (``"007"`` is not ``"7"``: identifiers and zip
  codes are strings with meaningful zeros); a number and a numeric string compare as numbers
  (``"10" eq 10``); anything else compares as JSON values (deep equality, bools are not numbers).
* ``contains``: substring when both are strings; membership (by ``eq``) when the actual value is a
  list; false otherwise (no stringification of numbers, no key lookup in objects).
* ``starts_with``/``ends_with``: strings only. ``in``: the actual value ``eq`` some listed value.
* ``exists``: some resolved value is not null; a member set to null counts as absent, like an
  attribute that was cleared.
"""

from __future__ import annotations

import re
from typing import Any, Callable

OPERATORS: tuple[str, ...] = (
    "eq", "neq", "gt", "gte", "lt", "lte", "contains", "not_contains",
    "starts_with", "ends_with", "in", "exists", "not_exists",
)
# Operators that take no "value" in a definition.
VALUELESS: frozenset[str] = frozenset({"exists", "not_exists"})

_NUMERIC = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# int() refuses strings past 4300 digits (CVE-2020-10735 guard); that long, a float is fine.
_MAX_INT_DIGITS = 4000


def _number(value: Any) -> int | float | None:
    """``value`` as a number if it is one or spells one, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str) and _NUMERIC.fullmatch(value):
        if len(value) <= _MAX_INT_DIGITS and not any(c in value for c in ".eE"):
            return int(value)
        # float, not Decimal: "0.1" must equal the JSON number 0.1 (which is a float).
        return float(value)
    return None


def _json_eq(a: Any, b: Any) -> bool:
    """Deep JSON equality in which bools are not numbers (Python's ``True == 1`` is wrong here)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, list):
        return (
            isinstance(b, list)
            and len(a) == len(b)
            and all(_json_eq(x, y) for x, y in zip(a, b))
        )
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and a.keys() == b.keys()
            and all(_json_eq(a[k], b[k]) for k in a)
        )
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b


def _eq(actual: Any, expected: Any) -> bool:
    if isinstance(actual, str) and isinstance(expected, str):
        return actual == expected
    a, b = _number(actual), _number(expected)
    if a is not None and b is not None:
        return a == b
    return _json_eq(actual, expected)


def _ordered(actual: Any, expected: Any) -> tuple[Any, Any] | None:
    """The pair to compare with <, >, ... or None when the two are not comparable."""
    a, b = _number(actual), _number(expected)
    if a is not None and b is not None:
        return a, b
    if isinstance(actual, str) and isinstance(expected, str):
        return actual, expected
    return None


def _gt(actual: Any, expected: Any) -> bool:
    pair = _ordered(actual, expected)
    return pair is not None and pair[0] > pair[1]


def _gte(actual: Any, expected: Any) -> bool:
    pair = _ordered(actual, expected)
    return pair is not None and pair[0] >= pair[1]


def _lt(actual: Any, expected: Any) -> bool:
    pair = _ordered(actual, expected)
    return pair is not None and pair[0] < pair[1]


def _lte(actual: Any, expected: Any) -> bool:
    pair = _ordered(actual, expected)
    return pair is not None and pair[0] <= pair[1]


def _contains(actual: Any, expected: Any) -> bool:
    if isinstance(actual, str):
        return isinstance(expected, str) and expected in actual
    if isinstance(actual, list):
        return any(_eq(item, expected) for item in actual)
    return False


def _starts_with(actual: Any, expected: Any) -> bool:
    return isinstance(actual, str) and isinstance(expected, str) and actual.startswith(expected)


def _ends_with(actual: Any, expected: Any) -> bool:
    return isinstance(actual, str) and isinstance(expected, str) and actual.endswith(expected)


def _in(actual: Any, expected: Any) -> bool:
    return isinstance(expected, list) and any(_eq(actual, item) for item in expected)


def _exists(actual: Any, expected: Any) -> bool:
    return actual is not None


# op -> (per-value test, negate the "some value" result)
_TABLE: dict[str, tuple[Callable[[Any, Any], bool], bool]] = {
    "eq": (_eq, False),
    "neq": (_eq, True),
    "gt": (_gt, False),
    "gte": (_gte, False),
    "lt": (_lt, False),
    "lte": (_lte, False),
    "contains": (_contains, False),
    "not_contains": (_contains, True),
    "starts_with": (_starts_with, False),
    "ends_with": (_ends_with, False),
    "in": (_in, False),
    "exists": (_exists, False),
    "not_exists": (_exists, True),
}


def apply(op: str, actual_values: list[Any], expected: Any = None) -> bool:
    """Whether ``op`` holds between the resolved values and ``expected`` (see module doc)."""
    try:
        test, negate = _TABLE[op]
    except KeyError:
        raise ValueError(f"unknown operator {op!r}") from None
    if len(actual_values) == 1:  # (a path without ``[]``: no generator for one value)
        some = test(actual_values[0], expected)
    else:
        some = any(test(actual, expected) for actual in actual_values)
    return not some if negate else some


def check_expected(op: str, expected: Any, present: bool) -> str | None:
    """Why ``expected`` is not a usable value for ``op`` (None when it is).

    Rejecting values that could never match (``starts_with 5``, ``gt [1]``) catches definition bugs
    at save time instead of producing a segment that silently stays empty.
    """
    if op in VALUELESS:
        return f'not allowed with operator "{op}"' if present else None
    if not present:
        return f'required with operator "{op}"'
    if op == "in" and not isinstance(expected, list):
        return "expected a list for operator \"in\""
    if op in ("starts_with", "ends_with") and not isinstance(expected, str):
        return f'expected a string for operator "{op}"'
    if op in ("gt", "gte", "lt", "lte") and (
        isinstance(expected, bool) or not isinstance(expected, (int, float, str))
    ):
        return f'expected a number or string for operator "{op}"'
    return None
