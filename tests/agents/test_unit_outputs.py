"""A unit whose outputs reach ``unit_max_outputs`` takes no further record: the rest of its
records make the next unit (issue 11: a worker's memory is bounded by configuration; 1,000
identifies each entering ~47 of 1,000 segments made units of ~93,000 records). Taking a backlog in
smaller units changes nothing that is stored or sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.agents.pipeline_sim import NOW_S, PEOPLE, Sim, summary, ulid_at


async def run(root: Path, unit_max_outputs: int, *, per_record: int = 1
              ) -> tuple[dict[str, Any], list[Any], list[int]]:
    """40 events of 5 people (one campaign trigger each), ``per_record`` of a person's to a
    record, taken one take per partition; returns the final state, what was sent, and the
    outputs of every committed people unit."""
    sim = Sim(root, unit_max_outputs=unit_max_outputs)
    units: list[int] = []
    commit = sim.rt.state.commit

    async def counting(unit: Any) -> None:
        units.append(len(unit.outputs))
        await commit(unit)

    sim.rt.state.commit = counting  # type: ignore[method-assign]
    try:
        raw = sim.rt.topics.raw_events.name
        items: dict[str, list[dict[str, Any]]] = {}
        for index in range(40):
            received_at = NOW_S * 1000 + index
            person = f"p{index % 5}"
            items.setdefault(person, []).append({
                "op": "event", "id": ulid_at(received_at, index + 1), "customer": person,
                "name": f"e{index % 3}", "type": "event", "data": {"n": index},
                "timestamp": NOW_S - 60, "received_at": received_at})
            if len(items[person]) == per_record:
                sim.send_raw(raw, person, items.pop(person))
        for queue in sim.pending_queues():
            await sim.process(PEOPLE, [(queue, 100)])  # every record of the partition at once
        assert sim.idle() and not sim.deadletters
        sent = sorted((r.topic, r.partition, r.key, r.value) for r in sim.other)
        # each item judged once, and new: none handled twice (a split record resumes where its
        # unit stopped)
        assert sim.rt.counters["verdict:new"] == 40 and not sim.rt.counters["verdict:redelivery"]
        return summary(sim), sent, units
    finally:
        sim.close()


async def test_a_unit_full_of_outputs_leaves_its_other_records_to_the_next(
        tmp_path: Path) -> None:
    whole, whole_sent, whole_units = await run(tmp_path / "whole", 10_000)
    split, split_sent, split_units = await run(tmp_path / "split", 3)
    # A take per partition is one unit when nothing fills up; with room for 3 outputs, every
    # unit ends at the first record that takes it to 3 (one trigger per record).
    assert len(whole_units) < 5 and sum(whole_units) == 40
    assert sum(split_units) == 40 and max(split_units) == 3 and len(split_units) >= 40 // 3
    # The same people, histories and triggers: every record processed once, in order.
    assert split == whole
    assert split_sent == whole_sent and len(whole_sent) == 40


async def test_a_record_whose_items_fill_units_is_split_between_them(tmp_path: Path) -> None:
    # Records of 8 events each: with room for 3 outputs, every record is split between three
    # units (acknowledged with the last), and what is stored and sent is the same.
    whole, whole_sent, whole_units = await run(tmp_path / "whole", 10_000, per_record=8)
    split, split_sent, split_units = await run(tmp_path / "split", 3, per_record=8)
    assert max(whole_units) >= 8 and sum(whole_units) == 40
    assert max(split_units) == 3 and sum(split_units) == 40 and len(split_units) >= 40 // 3
    assert split == whole
    assert split_sent == whole_sent and len(whole_sent) == 40
