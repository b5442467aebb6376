"""The condition tree of a segment definition, and its canonical JSON.

Built by :func:`app.segments.definition.parse_segment` (which validates a document and documents
the format); read by :mod:`app.segments.evaluate`. Values taken from JSON (``value``, ``data``)
may be lists/dicts, so they are excluded from hashing; equality still compares them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Union

from . import operators
from .paths import Key, Step, format_path

#: The bounds a ``count`` may set, in the order its canonical JSON lists them.
COUNT_KEYS: tuple[str, ...] = ("eq", "gte", "lte", "gt", "lt")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}


def _derived() -> Any:
    """A field that ``__post_init__`` sets from the others: not an argument, and not part of
    the value (equality, hash, repr).

    What the evaluator reads of a condition at every evaluation (a window's length, a count's
    saturation, an all/any's children in evaluation order) is such a field, worked out once
    when the condition is made. Not ``functools.cached_property``: compiled with mypyc
    (``tables/native.py``), that computes again at every read, and those reads were an eighth
    of an identify's cost (docs/performance.md, 2026-12-03)."""
    return field(init=False, repr=False, compare=False, hash=False)


@dataclass(frozen=True)
class Window:
    """A rolling window ``<amount><unit>`` ending now."""

    amount: int
    unit: str  # "m" | "h" | "d"
    seconds: int = _derived()

    def __post_init__(self) -> None:
        object.__setattr__(self, "seconds", self.amount * _UNIT_SECONDS[self.unit])

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"


@dataclass(frozen=True)
class Count:
    """Bounds on a number of events; every bound that is set must hold."""

    eq: int | None = None
    gte: int | None = None
    lte: int | None = None
    gt: int | None = None
    lt: int | None = None
    #: A count from which ``holds`` no longer changes: counting can stop there.
    saturation: int = _derived()

    def __post_init__(self) -> None:
        limits = [0]
        for bound, past in ((self.eq, 1), (self.gte, 0), (self.lte, 1), (self.gt, 1), (self.lt, 0)):
            if bound is not None:
                limits.append(bound + past)
        object.__setattr__(self, "saturation", max(limits))

    def holds(self, n: int) -> bool:
        return (
            (self.eq is None or n == self.eq)
            and (self.gte is None or n >= self.gte)
            and (self.lte is None or n <= self.lte)
            and (self.gt is None or n > self.gt)
            and (self.lt is None or n < self.lt)
        )

    def to_json(self) -> dict[str, int]:
        return {k: v for k in COUNT_KEYS if (v := getattr(self, k)) is not None}


DEFAULT_COUNT = Count(gte=1)


@dataclass(frozen=True)
class Where:
    """A test on the data of one event. ``value`` is unused for ``exists``/``not_exists``."""

    path: tuple[Step, ...]
    op: str
    value: Any = field(default=None, hash=False)

    def to_json(self) -> dict[str, Any]:
        return _comparison_json({"path": format_path(self.path)}, self.op, self.value)


@dataclass(frozen=True)
class AttributeCondition:
    """A test on the profile attributes. ``value`` is unused for ``exists``/``not_exists``."""

    path: tuple[Step, ...]
    op: str
    value: Any = field(default=None, hash=False)

    @property
    def root(self) -> str:
        """The top-level attribute this condition reads (paths always start with a key)."""
        head = self.path[0]
        assert isinstance(head, Key)
        return head.name

    def to_json(self) -> dict[str, Any]:
        return _comparison_json({"attribute": format_path(self.path)}, self.op, self.value)


@dataclass(frozen=True)
class EventCondition:
    """How many events named ``event`` whose data satisfies every ``where`` (on the same event)
    happened within ``within`` (all history when None)."""

    event: str
    where: tuple[Where, ...] = ()
    count: Count = DEFAULT_COUNT
    within: Window | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"event": self.event}
        if self.where:
            doc["where"] = [w.to_json() for w in self.where]
        if self.count != DEFAULT_COUNT:  # the default is left implicit, as people write it
            doc["count"] = self.count.to_json()
        if self.within is not None:
            doc["within"] = str(self.within)
        return doc


@dataclass(frozen=True)
class _Composite:
    """An ``all``/``any``: its children, and (:attr:`static_first`) the same children each with
    whether it reads attributes only (so cannot change with time), those first: cheap and
    time-invariant, they let all/any short-circuit before any event is read."""

    conditions: tuple[Condition, ...]
    static_first: tuple[tuple[Condition, bool], ...] = _derived()

    def __post_init__(self) -> None:
        flagged = [(child, is_static(child)) for child in self.conditions]
        object.__setattr__(self, "static_first",
                           tuple(sorted(flagged, key=lambda pair: not pair[1])))


@dataclass(frozen=True)
class AllOf(_Composite):
    def to_json(self) -> dict[str, Any]:
        return {"all": [c.to_json() for c in self.conditions]}


@dataclass(frozen=True)
class AnyOf(_Composite):
    def to_json(self) -> dict[str, Any]:
        return {"any": [c.to_json() for c in self.conditions]}


@dataclass(frozen=True)
class Not:
    condition: Condition

    def to_json(self) -> dict[str, Any]:
        return {"not": self.condition.to_json()}


Condition = Union[AllOf, AnyOf, Not, EventCondition, AttributeCondition]


@dataclass(frozen=True)
class SendEvent:
    """Action on entering/leaving: emit an event named ``name`` with ``data`` for the person."""

    name: str
    data: dict[str, Any] = field(default_factory=dict, hash=False)

    def to_json(self) -> dict[str, Any]:
        return {"send_event": {"name": self.name, "data": copy_json(self.data)}}


@dataclass(frozen=True)
class Segment:
    id: str
    name: str
    match: Condition
    on_enter: SendEvent | None = None
    on_exit: SendEvent | None = None

    def conditions(self) -> Iterator[Condition]:
        """Every node of the condition tree, depth first."""
        return iter_conditions(self.match)

    def event_names(self) -> frozenset[str]:
        """Names of the events whose arrival (or ageing) can change membership."""
        return frozenset(c.event for c in self.conditions() if isinstance(c, EventCondition))

    def attribute_roots(self) -> frozenset[str]:
        """Top-level attribute names whose change can change membership."""
        return frozenset(c.root for c in self.conditions() if isinstance(c, AttributeCondition))

    def to_json(self) -> dict[str, Any]:
        """The canonical definition: ``parse_segment(s.id, s.to_json()) == s``.

        Canonical means: keys in a fixed order, paths in canonical form (``a.b``, ``["x y"]``), the
        default ``count`` omitted, empty ``where`` omitted, ``on_enter.send_event.data`` always
        present. ``id`` is not part of the document (it is the segment's key elsewhere).
        """
        doc: dict[str, Any] = {"name": self.name, "match": self.match.to_json()}
        if self.on_enter is not None:
            doc["on_enter"] = self.on_enter.to_json()
        if self.on_exit is not None:
            doc["on_exit"] = self.on_exit.to_json()
        return doc


def is_static(condition: Condition) -> bool:
    """True when the subtree reads only attributes, so its truth cannot change with time."""
    if isinstance(condition, AttributeCondition):
        return True
    if isinstance(condition, EventCondition):
        return False
    if isinstance(condition, Not):
        return is_static(condition.condition)
    return all(is_static(c) for c in condition.conditions)


def iter_conditions(condition: Condition) -> Iterator[Condition]:
    yield condition
    if isinstance(condition, (AllOf, AnyOf)):
        for child in condition.conditions:
            yield from iter_conditions(child)
    elif isinstance(condition, Not):
        yield from iter_conditions(condition.condition)


def _comparison_json(doc: dict[str, Any], op: str, value: Any) -> dict[str, Any]:
    doc["op"] = op
    if op not in operators.VALUELESS:
        doc["value"] = copy_json(value)
    return doc


def copy_json(value: Any) -> Any:
    """A deep copy, so callers never share mutable state with a (frozen) definition."""
    if isinstance(value, dict):
        return {k: copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) for v in value]
    return value

