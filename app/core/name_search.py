"""Customer.io's event-name search syntax, compiled into a predicate.

``*`` is a wildcard, ``+`` adds an alternative, ``|`` subtracts a term, and a backslash makes any of
``* + | \\`` literal. Matching ignores case. A term without a wildcard matches names that *contain*
it; a term with one must match the whole name. So ``purchase*+signup|*test*`` is "names starting
with purchase, or containing signup, except those containing test". Exclusions apply to the whole
query wherever they appear, and a query with no inclusions starts from every name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

_ESCAPABLE = "*+|\\"
_FLAGS = re.IGNORECASE | re.DOTALL


@dataclass
class _Term:
    excluded: bool
    # Literal text between unescaped '*'; a single piece means the term had no wildcard.
    pieces: list[str]


def compile_query(q: str) -> Callable[[str], bool]:
    """Return a predicate telling whether an event name matches the search ``q``."""
    terms = [term for term in _parse(q) if not _is_blank(term)]
    includes = [_compile_term(term.pieces) for term in terms if not term.excluded]
    excludes = [_compile_term(term.pieces) for term in terms if term.excluded]

    def matches(name: str) -> bool:
        if includes and not any(match(name) for match in includes):
            return False
        return not any(match(name) for match in excludes)

    return matches


def _parse(q: str) -> list[_Term]:
    """Split the query at unescaped '+' and '|', and each term at unescaped '*'."""
    terms: list[_Term] = []
    current = _Term(excluded=False, pieces=[""])
    index = 0
    while index < len(q):
        char = q[index]
        if char == "\\" and index + 1 < len(q) and q[index + 1] in _ESCAPABLE:
            current.pieces[-1] += q[index + 1]
            index += 2
            continue
        if char == "*":
            current.pieces.append("")
        elif char in "+|":
            terms.append(current)
            current = _Term(excluded=char == "|", pieces=[""])
        else:
            # Includes a backslash before anything else: a Windows-ish path should search as typed.
            current.pieces[-1] += char
        index += 1
    terms.append(current)
    for term in terms:
        # People type "a + b"; event names are stored trimmed, so edge spaces are never meant.
        term.pieces[0] = term.pieces[0].lstrip()
        term.pieces[-1] = term.pieces[-1].rstrip()
    return terms


def _is_blank(term: _Term) -> bool:
    return len(term.pieces) == 1 and not term.pieces[0]


def _compile_term(pieces: list[str]) -> Callable[[str], object]:
    if len(pieces) == 1:
        return re.compile(re.escape(pieces[0]), _FLAGS).search
    return re.compile(_glob_pattern(pieces), _FLAGS).fullmatch


def _glob_pattern(pieces: list[str]) -> str:
    """A whole-name pattern for ``first*middle*...*last`` that cannot backtrack exponentially.

    Each middle piece sits in an atomic group that commits to its leftmost occurrence. That is
    always safe for '*'-only globs (an earlier occurrence leaves the most room for what follows),
    and it keeps a query like ``*a*a*a*a*b`` linear-ish instead of exploding on long names.
    """
    first, *middle, last = pieces
    parts = [re.escape(first)]
    parts += [f"(?>.*?{re.escape(piece)})" for piece in middle if piece]
    parts.append(f".*{re.escape(last)}")
    return "".join(parts)
