"""``eventide worker`` whose first recovery of the people tables' changelog partitions fails
after three seconds, as a broker timeout under load would make it fail: the agent's first unit,
waiting for that recovery, fails with it (tests/integration/test_unit_failures.py)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from app.cli import main
from tables.state import StateManager

_replay = StateManager._replay
_failed: list[Any] = []


async def _replay_failing_once(self: StateManager, cps: Any) -> Any:
    if not _failed and any(".changelog.people" in topic for topic, _ in cps):
        _failed.append(cps)
        await asyncio.sleep(3.0)  # the agent's first unit is waiting for it by then
        raise RuntimeError(f"injected: recovery of {sorted(cps)} failed")
    return await _replay(self, cps)


StateManager._replay = _replay_failing_once  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main(["worker"]))
