"""The crash schedule (issue: "kill the worker on a schedule, then reconcile against an oracle").

A seeded workload of identified events, identifies, anonymous events, links and merges, 10% of it
exact resends, is written to the raw topics while the worker is SIGTERMed at random intervals, a
second worker joins the group and leaves (rebalances), and a burst of SIGKILLs 0.1-1 s apart hits
it. Then the surviving worker's read API and ``segments.changes`` are reconciled against an offline
oracle computed with the pure functions: histories, profiles and memberships exact, nothing lost or
doubled, no two consecutive entered (or exited) per person and segment. See ``scenario.py``;
``bench/chaos.py`` runs the same with a million events.
"""

from __future__ import annotations

import pytest

from app.testing.chaos.scenario import Config, log_excerpts, run_scenario
from app.testing.harness import Deployment

pytestmark = pytest.mark.integration

#: Several fixed seeds (issue 17: one seed passing hid a divergence others showed); the sweep
#: over many more, at 100k-1M items, is ``bench/sweep.py``.
SEEDS = {20240611: 3000, 23: 2000, 7: 2000}


@pytest.mark.timeout(420)
@pytest.mark.parametrize("seed", sorted(SEEDS))
async def test_crash_schedule_reconciles_exactly_with_the_oracle(deployment: Deployment,
                                                                 seed: int) -> None:
    result = await run_scenario(deployment, Config(events=SEEDS[seed], seed=seed, rate=70.0,
                                                   drain_timeout_s=90.0))
    print(result.summary())
    assert result.sigterms >= 3 and result.sigkills >= 3 and result.rebalances >= 3
    assert result.invariant_violations == 0
    assert not result.differences, (
        result.summary() + "\n" + "\n".join(result.differences[:40]) + "\n\ntimeline:\n"
        + "\n".join(result.timeline) + "\n\n" + log_excerpts(result))
