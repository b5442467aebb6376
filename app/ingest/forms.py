"""Decoding of ``application/x-www-form-urlencoded`` track bodies into JSON-like dicts.

Customer.io's own curl examples send ``-d name=purchased -d data[price]=23.45``, so bracketed keys
nest the way Rack/PHP do it: ``data[cart][total]=5`` builds nested objects and a trailing ``[]``
(``data[tags][]=a``) appends to a list. Values stay strings; :mod:`app.ingest.validate` converts
what needs converting (timestamps, ``_update``).
"""

from __future__ import annotations

import re
from typing import Any, Iterable

# A base name, then any number of [segment] groups; brackets may not appear anywhere else.
_KEY_RE = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")
_SEGMENT_RE = re.compile(r"\[([^\[\]]*)\]")


def decode_form(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Build a nested dict from decoded form pairs, in order of first appearance.

    A repeated plain key keeps its last value (as Rack does). Raises ``ValueError`` naming the key
    for a malformed name or for a name used both as a value and as an object or list.
    """
    result: dict[str, Any] = {}
    for key, value in pairs:
        path, append = _parse_key(key)
        _insert(result, key, path, append, value)
    return result


def _parse_key(key: str) -> tuple[list[str], bool]:
    """Split ``a[b][c][]`` into ``(["a", "b", "c"], True)``; the flag means "append to a list"."""
    match = _KEY_RE.fullmatch(key)
    if match is None:
        raise ValueError(f"malformed form field name {key!r}")
    path = [match.group(1), *_SEGMENT_RE.findall(match.group(2))]
    append = len(path) > 1 and path[-1] == ""
    if append:
        path.pop()
    if "" in path:
        # Lists of objects (a[][b]=...) have ambiguous grouping rules; nothing here needs them.
        raise ValueError(f"form field name {key!r}: '[]' is only allowed at the end")
    return path, append


def _insert(root: dict[str, Any], key: str, path: list[str], append: bool, value: str) -> None:
    node = root
    for depth, segment in enumerate(path[:-1]):
        child = node.setdefault(segment, {})
        if not isinstance(child, dict):
            raise _conflict(key, path[: depth + 1], child, "an object")
        node = child
    last = path[-1]
    existing = node.get(last)
    if append:
        if existing is None:
            existing = node[last] = []
        if not isinstance(existing, list):
            raise _conflict(key, path, existing, "a list")
        existing.append(value)
    elif existing is None or isinstance(existing, str):
        node[last] = value
    else:
        raise _conflict(key, path, existing, "a value")


def _conflict(key: str, path: list[str], existing: Any, wanted: str) -> ValueError:
    name = path[0] + "".join(f"[{segment}]" for segment in path[1:])
    return ValueError(
        f"form field {name!r} is used both as {_kind(existing)} and as {wanted} (at {key!r})"
    )


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return "a value"
