"""Segment definitions and their evaluation (pure logic: no I/O, no asyncio).

* :mod:`.paths` -- ``items[].type``-style paths into JSON documents.
* :mod:`.operators` -- the comparison operators of where-clauses and attribute conditions.
* :mod:`.conditions` -- the condition tree and its canonical JSON.
* :mod:`.definition` -- parsing and validating a definition (:class:`DefinitionError`).
* :mod:`.evaluate` -- membership at a time, and the next time membership could change by itself.
"""

from .conditions import (
    AllOf,
    AnyOf,
    AttributeCondition,
    Condition,
    Count,
    EventCondition,
    Not,
    Segment,
    SendEvent,
    Where,
    Window,
)
from .definition import DefinitionError, parse_segment
from .evaluate import Evaluation, evaluate, is_member, next_change_at
from .operators import OPERATORS, apply
from .paths import Each, Index, Key, Step, format_path, parse_path, resolve

__all__ = [
    "AllOf",
    "AnyOf",
    "AttributeCondition",
    "Condition",
    "Count",
    "DefinitionError",
    "Each",
    "Evaluation",
    "EventCondition",
    "Index",
    "Key",
    "Not",
    "OPERATORS",
    "Segment",
    "SendEvent",
    "Step",
    "Where",
    "Window",
    "apply",
    "evaluate",
    "format_path",
    "is_member",
    "next_change_at",
    "parse_path",
    "parse_segment",
    "resolve",
]
