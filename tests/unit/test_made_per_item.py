"""The classes made per item write out their ``__init__`` (``tables.native``, "Made per item"),
and stay what their dataclass declaration says: frozen where declared so, compared by value,
``dataclasses.replace`` still works."""

from __future__ import annotations

import dataclasses

import pytest

from app.core.dedup import Verdict
from app.core.membership import Change
from app.core.messages import Event, Identify
from app.core.outputs import Changed, NameSeen, Trigger
from app.core.person import PersonState, Step
from tables.records import OutRecord

FROZEN = [
    (PersonState, ({"attributes": {"plan": "pro"}}, {"in": {}, "due": {}})),
    (Step, (PersonState(None), Verdict.NEW, [1, 0, 2, 0], {"id": "e1"})),
    (Change, ("s1", "p1", "entered", 1_700_000_000, "event:e1", 3)),
    (Event, ("p1", "e1", "purchased", 1_700_000_000, 1_700_000_000_000, {"op": "event"})),
    (Identify, ("p1", "e1", 1_700_000_000_000, {"op": "identify"})),
    (Changed, (Change("s1", "p1", "exited", 1, "tick", 1), None)),
    (Trigger, ({"trigger_id": "e1"},)),
    (NameSeen, ("purchased", 1_700_000_000)),
]


def generated(cls: type) -> bool:
    """Whether the class's ``__init__`` is the one ``dataclasses`` generated (as Python, which
    compiled callers still run as Python)."""
    code = getattr(cls.__init__, "__code__", None)  # (none: compiled)
    return code is not None and code.co_filename.startswith("<")


@pytest.mark.parametrize(("cls", "args"), FROZEN, ids=[cls.__name__ for cls, _ in FROZEN])
def test_a_frozen_class_made_per_item_is_built_by_its_own_init(cls: type, args: tuple) -> None:
    assert not generated(cls)
    made = cls(*args)
    fields = [field.name for field in dataclasses.fields(cls)]
    assert [getattr(made, name) for name in fields] == list(args)
    assert made == cls(*args)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(made, fields[0], None)
    assert dataclasses.replace(made, **{fields[0]: args[0]}) == made


def test_defaults_are_the_declared_ones() -> None:
    assert PersonState(None).membership is None
    step = Step(PersonState(None), Verdict.DUPLICATE)
    assert (step.remember, step.activity) == (None, None)


def test_an_out_record_is_built_by_its_own_init_with_a_list_of_headers_each() -> None:
    """aiokafka's record builder takes only a list; a default list is each record's own."""
    assert not generated(OutRecord)
    first, second = OutRecord("t", 0, b"k", b"v"), OutRecord("t", 1, None, None)
    assert first.headers == [] and second.headers == [] and first.headers is not second.headers
    assert (first.timestamp_ms, second.key, second.value) == (None, None, None)
    stamped = OutRecord("t", 2, b"k", b"v", [("epoch", b"3")], 1_700_000_000_000)
    assert (stamped.headers, stamped.timestamp_ms) == ([("epoch", b"3")], 1_700_000_000_000)
    assert stamped == OutRecord("t", 2, b"k", b"v", [("epoch", b"3")], 1_700_000_000_000)
