"""JSON encoding for bytes that are kept: right-sized, unlike ``orjson.dumps``'s own.

Since 3.12, ``orjson.dumps`` returns a ``bytes`` object whose allocation starts at 4 KiB and is
never shrunk to the text's length (ijl/orjson#483; Home Assistant trims its cached fragments for
the same reason). A unit of work keeps every output and changelog record until it commits, and
draining a backlog with 1,000 segments puts tens of thousands of ~150-byte records in one unit:
at 4 KiB each they were most of a worker's peak RSS (tracemalloc: 440 MB of the 584 MB traced
at the peak, in the three ``orjson.dumps`` calls of the unit's records). Copying into a bytes
of the exact length is faster overall: fresh 4 KiB pages are not faulted in.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orjson import dumps


def json_bytes(value: Any, default: Callable[[Any], Any] | None = None) -> bytes:
    """``value`` as compact JSON, in a ``bytes`` no larger than its text."""
    text = dumps(value, default=default)
    # The copy: a slice is a bytes of its own length, and joining the last byte (one-byte bytes
    # are shared objects) makes another. Compiled, that is two allocations and two copies, no
    # call; ``bytes(memoryview(text))`` cost more instructions than the encoding itself
    # (~3,000 against ~1,800 for a change record: a memoryview, its buffer, a call of ``bytes``).
    return text[:-1] + text[-1:]


def plain_text(text: str) -> bool:
    """Whether ``text`` is its own JSON string literal between quotes, as ``orjson.dumps``
    writes it: orjson escapes only ``"``, ``\\`` and control characters. Check several strings
    at once by joining them (one call of ``isprintable``, which compiled code makes as Python's
    method call: ~1,000 instructions a string checked alone)."""
    return text.isprintable() and '"' not in text and "\\" not in text
