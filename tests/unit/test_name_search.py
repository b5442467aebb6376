"""Unit tests for app.core.name_search: Customer.io's `*`, `+`, `|` event-name search."""

from __future__ import annotations

import time
from functools import lru_cache

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.core.name_search import compile_query

NAMES = [
    "purchase",
    "Purchased",
    "repurchase",
    "purchase_test",
    "signup",
    "Sign Up",
    "login",
    "test_event",
    "C++ signup",
    "5*rating",
    "a|b",
    "a+b",
    "back\\slash",
    "",
]


def matching(q: str, names: list[str] = NAMES) -> list[str]:
    match = compile_query(q)
    return [name for name in names if match(name)]


def escape(literal: str) -> str:
    """Make every character of ``literal`` literal in a query."""
    return "".join("\\" + c if c in "*+|\\" else c for c in literal)


# --- empty queries ------------------------------------------------------------------------------


@pytest.mark.parametrize("q", ["", " ", "  \t ", "+", "|", "+|+", " + | "])
def test_empty_or_blank_query_matches_everything(q: str) -> None:
    assert matching(q) == NAMES


# --- plain terms: case-insensitive "contains" ---------------------------------------------------


def test_plain_term_matches_names_containing_it() -> None:
    assert matching("purchase") == ["purchase", "Purchased", "repurchase", "purchase_test"]


def test_plain_term_is_case_insensitive_both_ways() -> None:
    assert matching("PURCHASE") == matching("purchase")
    assert matching("sign up") == ["Sign Up"]
    assert compile_query("straße")("STRASSE") is False  # simple case folding only
    assert compile_query("ÉTÉ")("été 2024") is True


def test_plain_term_matching_nothing() -> None:
    assert matching("checkout") == []


def test_surrounding_whitespace_of_terms_is_ignored() -> None:
    assert matching("  login  ") == ["login"]
    assert matching("login + signup") == ["signup", "login", "C++ signup"]


def test_inner_whitespace_is_significant() -> None:
    assert matching("sign up") == ["Sign Up"]
    assert matching("signup") == ["signup", "C++ signup"]


# --- wildcards: whole-name globs ----------------------------------------------------------------


def test_trailing_wildcard_means_starts_with() -> None:
    assert matching("purchase*") == ["purchase", "Purchased", "purchase_test"]


def test_leading_wildcard_means_ends_with() -> None:
    assert matching("*up") == ["signup", "Sign Up", "C++ signup"]


def test_wildcard_term_must_match_the_whole_name() -> None:
    match = compile_query("p*e")
    assert match("purchase") and match("pe") and match("PE")
    assert not match("purchased") and not match("repurchase")


def test_lone_and_repeated_wildcards_match_everything() -> None:
    assert matching("*") == NAMES
    assert matching("**") == NAMES
    assert matching(" * ") == NAMES


@pytest.mark.parametrize(
    ("q", "name", "expected"),
    [
        ("a*b*c", "abc", True),
        ("a*b*c", "aXbYc", True),
        ("a*b*c", "acbc", True),
        ("a*b*c", "acb", False),
        ("a*b*c", "xabc", False),
        ("a*b*c", "abcx", False),
        ("a**b", "ab", True),
        ("a**b", "a-b", True),
        ("a*a", "a", False),
        ("a*a", "aa", True),
        ("*ab*abc", "ababc", True),
        ("*ab*abc", "abc", False),
        ("*ab*abc", "xabyabc", True),
        ("ab*ba", "aba", False),
        ("ab*ba", "abba", True),
        ("*a*", "banana", True),
        ("*a*", "xyz", False),
        ("*", "", True),
        ("*", "multi\nline", True),
    ],
)
def test_glob_cases(q: str, name: str, expected: bool) -> None:
    assert compile_query(q)(name) is expected


def test_many_wildcards_do_not_backtrack_exponentially() -> None:
    # A naive ".*a.*a.*...b" regex takes hours on this input; the atomic groups keep it instant.
    match = compile_query("*a" * 12 + "*b")
    started = time.perf_counter()
    assert match("a" * 2_000) is False
    assert match("a" * 2_000 + "b") is True
    assert time.perf_counter() - started < 5.0


# --- regex and fnmatch metacharacters are literal -----------------------------------------------


@pytest.mark.parametrize(
    ("q", "hit", "miss"),
    [
        ("a.c", "a.c", "abc"),
        ("[abc]", "x[abc]y", "a"),
        ("what?", "what?", "whatx"),
        ("(x)", "f(x)", "x"),
        ("^start", "a^start", "start"),
        ("end$", "end$", "end"),
        ("[a-z]*", "[a-z]foo", "foo"),
        ("a{2}", "a{2}", "aa"),
        ("a?*", "a?b", "ab"),
    ],
)
def test_metacharacters_are_literal(q: str, hit: str, miss: str) -> None:
    match = compile_query(q)
    assert match(hit) is True
    assert match(miss) is False


# --- alternatives with + ------------------------------------------------------------------------


def test_plus_adds_alternatives() -> None:
    assert matching("login+signup") == ["signup", "login", "C++ signup"]


def test_alternatives_mix_contains_and_globs() -> None:
    assert matching("purchase*+*up") == [
        "purchase", "Purchased", "purchase_test", "signup", "Sign Up", "C++ signup",
    ]


def test_empty_alternatives_are_ignored() -> None:
    assert matching("login++") == ["login"]
    assert matching("+login") == ["login"]


# --- exclusions with | --------------------------------------------------------------------------


def test_pipe_excludes_a_term() -> None:
    assert matching("purchase|test") == ["purchase", "Purchased", "repurchase"]


def test_several_exclusions() -> None:
    assert matching("purchase|test|re*") == ["purchase", "Purchased"]


def test_exclusion_may_be_a_glob() -> None:
    assert matching("purchase|*ed") == ["purchase", "repurchase", "purchase_test"]


def test_only_exclusions_means_everything_except_those() -> None:
    assert matching("|purchase|signup") == [
        "Sign Up", "login", "test_event", "5*rating", "a|b", "a+b", "back\\slash", "",
    ]


def test_exclusions_apply_to_the_whole_query() -> None:
    # "a|b+c" is (a or c) and not b, wherever the exclusion sits.
    match = compile_query("log|in+sign")
    assert match("signup") is True
    assert match("login") is False  # contains "log" but also "in"
    assert match("signing") is False  # contains "sign" but also "in"
    assert compile_query("sign+log|in")("login") is False


def test_excluding_what_is_included_matches_nothing() -> None:
    assert matching("purchase|purchase") == []
    assert matching("*|*") == []


# --- escapes ------------------------------------------------------------------------------------


def test_escaped_star_is_a_literal_star() -> None:
    assert matching("5\\*") == ["5*rating"]
    assert compile_query("a\\*b")("a*b") is True
    assert compile_query("a\\*b")("axb") is False


def test_escaped_star_inside_a_glob() -> None:
    match = compile_query("*\\**")
    assert match("5*rating") is True
    assert match("rating") is False


def test_escaped_plus_is_a_literal_plus() -> None:
    assert matching("c\\+\\+") == ["C++ signup"]
    assert matching("a\\+b") == ["a+b"]


def test_escaped_pipe_is_a_literal_pipe_not_an_exclusion() -> None:
    assert matching("a\\|b") == ["a|b"]


def test_escaped_backslash_is_a_literal_backslash() -> None:
    assert matching("k\\\\s") == ["back\\slash"]


def test_escaped_backslash_then_wildcard() -> None:
    # "\\*" is a literal backslash followed by a wildcard.
    match = compile_query("back\\\\*")
    assert match("back\\slash") is True
    assert match("backslash") is False


def test_backslash_before_other_characters_stays_literal() -> None:
    assert matching("k\\s") == ["back\\slash"]


def test_trailing_backslash_is_literal() -> None:
    assert matching("back\\") == ["back\\slash"]


# --- properties ---------------------------------------------------------------------------------

names = st.text(max_size=30)


@given(names)
def test_escaped_name_always_matches_itself(name: str) -> None:
    assert compile_query(escape(name))(name) is True


@given(names.filter(lambda s: s.strip()))
def test_escaped_name_excluded_never_matches_itself(name: str) -> None:
    assert compile_query("|" + escape(name))(name) is False


@given(st.text(alphabet="abcXYZ_ ", max_size=20))
def test_ascii_matching_ignores_case(name: str) -> None:
    assert compile_query(escape(name.upper()))(name.lower()) is True


terms = st.text(alphabet="ab*", min_size=1, max_size=6).filter(lambda s: s.strip())
short_names = st.text(alphabet="abAB", max_size=10)


@given(terms, terms, short_names)
def test_plus_is_union(left: str, right: str, name: str) -> None:
    expected = compile_query(left)(name) or compile_query(right)(name)
    assert compile_query(f"{left}+{right}")(name) is expected


@given(terms, terms, short_names)
def test_pipe_is_difference(left: str, right: str, name: str) -> None:
    expected = compile_query(left)(name) and not compile_query(right)(name)
    assert compile_query(f"{left}|{right}")(name) is expected


def reference_glob(pattern: str, name: str) -> bool:
    """Textbook recursive '*'-glob matcher, case-insensitive, as an oracle for the fast one."""
    pattern, name = pattern.lower(), name.lower()

    @lru_cache(maxsize=None)
    def match(p: int, n: int) -> bool:
        if p == len(pattern):
            return n == len(name)
        if pattern[p] == "*":
            return match(p + 1, n) or (n < len(name) and match(p, n + 1))
        return n < len(name) and pattern[p] == name[n] and match(p + 1, n + 1)

    return match(0, 0)


@given(st.text(alphabet="ab*", max_size=8).filter(lambda s: "*" in s), short_names)
def test_globs_agree_with_a_reference_matcher(pattern: str, name: str) -> None:
    assert compile_query(pattern)(name) is reference_glob(pattern, name)


@given(st.text(alphabet="abAB", min_size=1, max_size=4), short_names)
def test_plain_terms_agree_with_substring_search(term: str, name: str) -> None:
    assert compile_query(term)(name) is (term.lower() in name.lower())
