"""Paths: every syntactic form, its errors, canonical formatting, and resolution."""

from __future__ import annotations

import pytest

from app.segments.paths import Each, Index, Key, format_path, parse_path, resolve


@pytest.mark.parametrize(
    ("text", "steps"),
    [
        ("email", (Key("email"),)),
        ("cart.total", (Key("cart"), Key("total"))),
        ("a.b.c.d", (Key("a"), Key("b"), Key("c"), Key("d"))),
        ("items[].type", (Key("items"), Each(), Key("type"))),
        ("a[].b[].c", (Key("a"), Each(), Key("b"), Each(), Key("c"))),
        ("matrix[][]", (Key("matrix"), Each(), Each())),
        ("items[0].type", (Key("items"), Index(0), Key("type"))),
        ("items[12]", (Key("items"), Index(12))),
        ("items[0][]", (Key("items"), Index(0), Each())),
        ('["sign up date"]', (Key("sign up date"),)),
        ('cart["unit price"].usd', (Key("cart"), Key("unit price"), Key("usd"))),
        ('["a.b"]', (Key("a.b"),)),
        ('x["a.b"]["c d"]', (Key("x"), Key("a.b"), Key("c d"))),
        ('x["[]"]', (Key("x"), Key("[]"))),
        ('x["say \\"hi\\""]', (Key("x"), Key('say "hi"'))),
        ('x["back\\\\slash"]', (Key("x"), Key("back\\slash"))),
        ('x["\\u00e9"]', (Key("x"), Key("é"))),
        ('[""]', (Key(""),)),
        ('items[]["unit price"]', (Key("items"), Each(), Key("unit price"))),
        ("first-name", (Key("first-name"),)),
        ("prénom.ville", (Key("prénom"), Key("ville"))),
        ("a.0", (Key("a"), Key("0"))),  # a bare digit key is a key, not an index
        ("$ref:x", (Key("$ref:x"),)),
    ],
)
def test_parse_path_forms(text: str, steps: tuple) -> None:
    assert parse_path(text) == steps


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty path"),
        ("a.", "ends with '.'"),
        (".a", "expected a key at position 0"),
        ("a..b", "expected a key at position 2"),
        ("sign up date", "whitespace at position 4"),
        ("a[", "expected [], [<n>]"),
        ("a[x]", "expected [], [<n>]"),
        ("a[-1]", "expected [], [<n>]"),
        ("a[1", "expected ']' at position 3"),
        ('a["x"', "expected ']' at position 5"),
        ('a["x]', "expected [], [<n>]"),
        ("a['x']", "expected [], [<n>]"),
        ("a]", "unexpected ']' at position 1"),
        ('a"b', "unexpected '\"' at position 1"),
        ("[]", "must start with a key"),
        ("[0].a", "must start with a key"),
        ('a.["b"]', "'[' right after '.'"),
        ('a["\\x"]', "invalid quoted key"),
        ("a[ ]", "expected [], [<n>]"),
        ("a[]b", "unexpected 'b' at position 3"),
    ],
)
def test_parse_path_errors(text: str, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_path(text)
    assert reason in str(info.value)


def test_parse_path_rejects_non_strings() -> None:
    with pytest.raises(ValueError, match="expected a string"):
        parse_path(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("cart.total", "cart.total"),
        ('["cart"]["total"]', "cart.total"),
        ('cart["unit price"].usd', 'cart["unit price"].usd'),
        ("items[].type", "items[].type"),
        ("items[007]", "items[7]"),
        ("a.0", 'a["0"]'),
        ('["sign up date"]', '["sign up date"]'),
        ('x["é"]', "x.é"),
        ('x["say \\"hi\\""]', 'x["say \\"hi\\""]'),
    ],
)
def test_format_path_is_canonical(text: str, canonical: str) -> None:
    assert format_path(parse_path(text)) == canonical
    assert parse_path(canonical) == parse_path(text)


def test_format_path_requires_a_leading_key() -> None:
    with pytest.raises(ValueError):
        format_path((Each(),))
    with pytest.raises(ValueError):
        format_path(())


DOC = {
    "email": "a@example.com",
    "nothing": None,
    "cart": {"total": 30, "unit price": {"usd": 10}},
    "items": [{"type": "monitor", "tags": ["a", "b"]}, {"type": "tv", "tags": []}, "loose", 7],
    "matrix": [[1, 2], [3], []],
    "sign up date": "2024-01-01",
    "a.b": 1,
    "a": {"b": 2},
    "groups": [{"members": [{"n": 1}, {"n": 2}]}, {"members": [{"n": 3}]}, {"other": 1}],
}


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("email", ["a@example.com"]),
        ("nothing", [None]),  # present but null: resolved (exists decides what null means)
        ("missing", []),
        ("cart.total", [30]),
        ("cart.missing", []),
        ("email.x", []),  # a key on a string reaches nothing
        ('cart["unit price"].usd', [10]),
        ("items[].type", ["monitor", "tv"]),  # non-objects among the elements are skipped
        ("items[].tags[]", ["a", "b"]),
        ("items[].tags", [["a", "b"], []]),
        ("items[0].type", ["monitor"]),
        ("items[1].type", ["tv"]),
        ("items[9].type", []),
        ("items[2]", ["loose"]),
        ("matrix[][]", [1, 2, 3]),
        ("matrix[1][0]", [3]),
        ("cart[]", []),  # [] applies to lists only
        ("cart[0]", []),
        ("items.type", []),  # no implicit traversal of lists
        ('["sign up date"]', ["2024-01-01"]),
        ('["a.b"]', [1]),
        ("a.b", [2]),
        ("groups[].members[].n", [1, 2, 3]),
    ],
)
def test_resolve(text: str, values: list) -> None:
    assert resolve(DOC, parse_path(text)) == values


def test_resolve_on_non_objects() -> None:
    assert resolve(None, parse_path("a")) == []
    assert resolve([1, 2], parse_path("a")) == []
    assert resolve("text", parse_path("a[]")) == []
