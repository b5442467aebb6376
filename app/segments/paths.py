"""Paths into JSON documents (profile attributes, event ``data``).

Grammar (JSON dot notation)::

    path    := head tail*
    head    := bare | '["' json-string-body '"]'
    tail    := '.' bare | '[]' | '[' digits ']' | '["' json-string-body '"]'
    bare    := one or more characters other than . [ ] " and whitespace

* ``cart.total`` -- key ``total`` of the object at key ``cart``.
* ``items[].type`` -- ``type`` of *every* element of the list ``items`` (the evaluator treats the
  resulting set existentially: "some element's type ...").
* ``items[0].type`` -- ``type`` of the first element only.
* ``["sign up date"]``, ``cart["unit price"].usd`` -- keys containing spaces, dots or brackets; the
  quoted part is a JSON string, so ``\\"`` and ``\\\\`` escape as in JSON.

A path always starts with a key because both roots it is applied to (attributes, event data) are
objects; that also makes "the top-level attribute a path touches" well defined for indexing.
Steps never coerce: a key applies only to objects, ``[n]``/``[]`` only to lists.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Union


@dataclass(frozen=True, slots=True)
class Key:
    """Object member access."""

    name: str


@dataclass(frozen=True, slots=True)
class Index:
    """List element access by a non-negative position."""

    index: int


@dataclass(frozen=True, slots=True)
class Each:
    """Every element of a list (``[]``)."""


Step = Union[Key, Index, Each]

# Characters a bare key may not contain: they are the path's own syntax (or would make a key with
# invisible boundaries, which is what the quoted form is for).
_BARE = re.compile(r'[^.\[\]"\s]+')
# What format_path writes bare: identifier-like keys (Unicode letters allowed). Must stay a subset
# of _BARE so that formatting then parsing gives back the same steps.
_CANONICAL_BARE = re.compile(r"(?:[^\W\d]|\$)[\w$\-]*")
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_DIGITS = re.compile(r"[0-9]+")


def parse_path(text: object) -> tuple[Step, ...]:
    """Parse ``text`` into steps, or raise :class:`ValueError` with the reason."""
    if not isinstance(text, str):
        raise ValueError(f"expected a string, got {type(text).__name__}")
    if not text:
        raise ValueError("empty path")
    steps: list[Step] = []
    size = len(text)
    pos = 0
    need_key = True  # at the start and after '.', only a key may follow
    while pos < size or need_key:
        if need_key:
            if pos >= size:
                raise ValueError("path ends with '.'")
            if text[pos] == "[":
                if pos != 0:
                    raise ValueError(
                        f"'[' right after '.' at position {pos} (write a[\"k\"], not a.[\"k\"])"
                    )
                step, pos = _parse_bracket(text, pos)
                if not isinstance(step, Key):
                    raise ValueError('a path must start with a key, e.g. items[] or ["my key"]')
            else:
                match = _BARE.match(text, pos)
                if match is None:
                    raise ValueError(f"expected a key at position {pos}, found {text[pos]!r}")
                step, pos = Key(match.group()), match.end()
            steps.append(step)
            need_key = False
            continue
        char = text[pos]
        if char == ".":
            need_key = True
            pos += 1
        elif char == "[":
            step, pos = _parse_bracket(text, pos)
            steps.append(step)
        elif char.isspace():
            raise ValueError(
                f"whitespace at position {pos} (write keys with spaces as [\"...\"])"
            )
        else:
            raise ValueError(f"unexpected {char!r} at position {pos}")
    return tuple(steps)


def _parse_bracket(text: str, pos: int) -> tuple[Step, int]:
    """Parse the bracket at ``text[pos] == '['``; return the step and the position after it."""
    inner = pos + 1
    if text.startswith("]", inner):
        return Each(), inner + 1
    digits = _DIGITS.match(text, inner)
    if digits is not None:
        end = digits.end()
        if not text.startswith("]", end):
            raise ValueError(f"expected ']' at position {end}")
        return Index(int(digits.group())), end + 1
    quoted = _QUOTED.match(text, inner)
    if quoted is not None:
        end = quoted.end()
        if not text.startswith("]", end):
            raise ValueError(f"expected ']' at position {end}")
        try:
            name = json.loads(quoted.group())
        except ValueError as exc:
            raise ValueError(f"invalid quoted key at position {inner}: {exc}") from None
        return Key(name), end + 1
    raise ValueError(f'expected [], [<n>] or ["key"] at position {pos}')


def format_path(steps: tuple[Step, ...]) -> str:
    """The canonical text of ``steps``: ``parse_path(format_path(s)) == s`` for all valid ``s``."""
    if not steps or not isinstance(steps[0], Key):
        raise ValueError("a path must start with a key")
    parts: list[str] = []
    for step in steps:
        if isinstance(step, Key):
            if _CANONICAL_BARE.fullmatch(step.name):
                parts.append(f".{step.name}" if parts else step.name)
            else:
                parts.append(f"[{json.dumps(step.name, ensure_ascii=False)}]")
        elif isinstance(step, Index):
            parts.append(f"[{step.index}]")
        else:
            parts.append("[]")
    return "".join(parts)


def resolve(doc: Any, steps: tuple[Step, ...]) -> list[Any]:
    """Every value reached by following ``steps`` from ``doc``; a missing member gives nothing.

    ``[]`` fans out, so the result can hold many values (or none for an empty list).
    """
    if len(steps) == 1 and isinstance(steps[0], Key):  # ``plan``: most paths, every evaluation
        name = steps[0].name
        return [doc[name]] if isinstance(doc, dict) and name in doc else []
    current: list[Any] = [doc]
    for step in steps:
        reached: list[Any] = []
        if isinstance(step, Key):
            name = step.name
            for value in current:
                if isinstance(value, dict) and name in value:
                    reached.append(value[name])
        elif isinstance(step, Index):
            position = step.index
            for value in current:
                if isinstance(value, list) and position < len(value):
                    reached.append(value[position])
        else:
            for value in current:
                if isinstance(value, list):
                    reached.extend(value)
        if not reached:
            return reached
        current = reached
    return current
