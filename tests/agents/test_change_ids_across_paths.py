"""A unit whose outputs went out but whose state was lost, redone in another order.

Found by the crash schedule (seed 106 at 1,000,000 items, 2026-12-04, night:
``bench/results/sweep-1m-20261204-native-calls.d/seed-106-1000000.log``): one person entered
"did e1 at least twice" twice in a row on ``segments.changes``, once caused by an event and once
by a merge, with two different change ids, so a consumer that drops repeats by id kept both.

How it happened. A customer's own event reaches the person stage in place from ``raw.events``;
the secondary's events of a merge reach it later, in an ``absorb`` on ``person.events``. The two
topics interleave in whatever order the worker fetches them: the order among a person's
identifiers was never a function of the input log (docs/architecture.md, "A customer's own items
are taken in place"). The commit order sends a unit's outputs before its changelog, so a worker
that dies in between leaves the outputs out and the state unwritten, and Kafka redelivers both
inputs. If the redo takes them in the other order, the transition is the same (the person enters
once) but its cause differs, and a change id was derived from the cause: the same transition
went out under two ids. The same would hold for any two paths (an email, an anonymous link).

A change id is now derived from the transition's place in its (person, segment) sequence, which
the recovered state fixes whichever order the redo takes (``app/core/membership.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from app.producer import partition_for
from tests.agents.pipeline_sim import NOW_MS, Sim, ulid_at

SEGMENT = "e1-twice"
DEFINITION = {"name": "did e1 at least twice", "match": {"event": "e1", "count": {"gte": 2}}}
PRIMARY, SECONDARY = "pat", "sam"


def _event(person: str, n: int) -> dict[str, Any]:
    received_at = NOW_MS + n * 1000
    return {"op": "event", "id": ulid_at(received_at, n), "customer": person, "name": "e1",
            "type": "event", "data": {"n": n}, "timestamp": NOW_MS // 1000 - 600 + n,
            "received_at": received_at}


def _identify(person: str, n: int) -> dict[str, Any]:
    received_at = NOW_MS + n * 1000
    return {"op": "identify", "id": ulid_at(received_at, n), "customer": person,
            "attributes": {"plan": "pro"}, "anonymous_id": None, "timestamp": None,
            "update": False, "received_at": received_at}


def _head_is_absorb(sim: Sim, queue: tuple[str, int]) -> bool:
    log = sim.logs[queue]
    if not log.pending:
        return False
    head = log.records[log.position]
    return any(item.get("op") == "absorb" for item in orjson.loads(head.value)["items"])


async def _run_until_absorb_waits(sim: Sim, absorb_queue: tuple[str, int]) -> None:
    """Every pending record, one at a time, until only the absorb on the primary's partition
    is left."""
    for _ in range(100):
        queues = [q for q in sim.pending_queues() if q != absorb_queue]
        if not queues:
            assert _head_is_absorb(sim, absorb_queue), "the merge reached the primary"
            return
        await sim.process(sim.stage_of[queues[0][0]], [(queues[0], 1)])
        if _head_is_absorb(sim, absorb_queue):
            continue
        if sim.logs[absorb_queue].pending:  # another hop on the primary's partition
            await sim.process("people", [(absorb_queue, 1)])
    raise AssertionError("the merge did not settle")


def _changes(sim: Sim) -> list[dict[str, Any]]:
    topic = sim.rt.topics.segment_changes.name
    return [orjson.loads(r.value) for r in sim.other if r.topic == topic and r.value]


@pytest.mark.parametrize("redo", ["the same order", "the other order"])
async def test_a_redo_sends_each_transition_under_one_id(tmp_path: Path, redo: str) -> None:
    sim = Sim(tmp_path, crashes=False)
    try:
        sim.rt.catalog.apply(SEGMENT, {"definition": DEFINITION, "version": "v1",
                                       "updated_at": NOW_MS - 60_000}, 0, at_ms=NOW_MS - 60_000)
        # Each has done e1 once: one more, from either path, makes the primary enter.
        for item in (_identify(PRIMARY, 1), _identify(SECONDARY, 2)):
            sim.send_raw(sim.rt.topics.raw_identifies.name, item["customer"], [item])
        sim.send_raw(sim.rt.topics.raw_events.name, PRIMARY, [_event(PRIMARY, 3)])
        sim.send_raw(sim.rt.topics.raw_events.name, SECONDARY, [_event(SECONDARY, 4)])
        await sim.drain()
        assert not _changes(sim)

        merge_at = NOW_MS + 5_000
        merge = {"op": "merge", "id": ulid_at(merge_at, 5), "primary": {"id": PRIMARY},
                 "secondary": {"id": SECONDARY}, "received_at": merge_at}
        sim.send_raw(sim.rt.topics.raw_identifies.name, SECONDARY, [merge])
        person_events = (sim.rt.topics.person_events.name,
                         partition_for(PRIMARY.encode(), sim.partitions))
        await _run_until_absorb_waits(sim, person_events)

        sim.send_raw(sim.rt.topics.raw_events.name, PRIMARY, [_event(PRIMARY, 6)])
        raw_events = (sim.rt.topics.raw_events.name,
                      partition_for(PRIMARY.encode(), sim.partitions))
        # The event first, then the absorb; outputs out, the worker dies before its state.
        await sim.process("people", [(raw_events, 1), (person_events, 1)],
                          crash="before_state")
        assert _head_is_absorb(sim, person_events), "the absorb is redelivered"
        # The redo takes them in the same order, or the other way round, and commits.
        takes = [(raw_events, 1), (person_events, 1)]
        await sim.process("people", takes if redo == "the same order" else takes[::-1])
        await sim.drain()

        ours = [c for c in _changes(sim) if c["person_id"] == PRIMARY
                and c["segment_id"] == SEGMENT]
        assert ours, "the primary entered"
        distinct: dict[str, dict[str, Any]] = {}
        for change in ours:
            distinct.setdefault(change["change_id"], change)
        kinds = [c["change"] for c in distinct.values()]
        assert kinds == ["entered"], (
            f"one transition, one id; sent: {[(c['change'], c['cause']) for c in ours]}")
        # The records differ in their cause only where the orders differ.
        causes = {c["cause"] for c in ours}
        assert len(causes) == (1 if redo == "the same order" else 2)
    finally:
        sim.close()
