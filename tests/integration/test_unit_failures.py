"""No input is lost to a unit of work that fails outside its items (its recovery, its commit):
the agent goes on from the committed offsets, where the failed unit's records come again; nor to
a record dropped before any unit took it: commits wait at it, and it is fetched again."""

from __future__ import annotations

import subprocess
import sys

import aiohttp
import pytest

from app.ops.digest import table_contents
from app.topics import DEDUP
from tests.support.harness import REPO, Deployment, Worker, eventually

pytestmark = pytest.mark.integration


class PatchedWorker(Worker):
    """A worker run by a module of tests/support that patches one of its parts first."""

    def __init__(self, deployment: Deployment, module: str) -> None:
        super().__init__(deployment, module.rsplit(".", 1)[-1])
        self.module = module

    def start(self) -> "PatchedWorker":
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module], env=self._env, cwd=REPO, stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self


async def send_backlog(d: Deployment) -> None:
    """400 events to 50 people, accepted by the ingest tier before any worker runs (a fresh
    group: nothing committed)."""
    api = Worker(d, "api", command="api").start()
    try:
        await api.wait_ready(60)
        async with aiohttp.ClientSession() as session:
            for first in range(0, 400, 100):
                items = [{"type": "person", "identifiers": {"id": f"f{n % 50}"},
                          "action": "event", "name": "viewed", "attributes": {"n": n}}
                         for n in range(first, first + 100)]
                async with session.post(d.url + "/api/v2/batch", json={"batch": items},
                                        headers=d.track_auth) as response:
                    assert response.status == 200, await response.text()
    finally:
        api.stop()


async def all_applied(d: Deployment) -> None:
    applied = len(await table_contents(d.settings, DEDUP))
    assert applied == 400, f"{applied} of 400 accepted events applied"


async def backlog_drained_by(d: Deployment, module: str) -> str:
    """Send the backlog, drain it with the worker ``module`` runs until every event is applied
    (bounded), and answer that worker's log."""
    await send_backlog(d)
    worker = PatchedWorker(d, module).start()
    try:
        await eventually(lambda: all_applied(d), timeout_s=90)
        return worker.log_path.read_text()
    finally:
        worker.stop()


async def test_a_first_unit_failing_with_its_recovery_loses_none_of_a_backlog(
        deployment: Deployment) -> None:
    """A fresh group drains a backlog, and its first recovery fails
    (tests/support/failing_recovery_worker.py): faust ended the people agent for good, and the
    worker, up and healthy, applied 0 of the 400 events."""
    log = await backlog_drained_by(deployment, "tests.support.failing_recovery_worker")
    assert "a unit of work failed (RuntimeError(" in log and "injected: recovery" in log


async def test_a_record_dropped_before_any_unit_took_it_is_fetched_again(
        deployment: Deployment) -> None:
    """The people agent loses its first raw record (tests/support/dropping_worker.py). Its
    partition has nothing committed, so faust committed the first run of acknowledged offsets
    after it and the record's events were never applied (382 of 400); the commit guard holds
    the partition's commits at it and has it fetched again."""
    log = await backlog_drained_by(deployment, "tests.support.dropping_worker")
    assert "test: dropped" in log and "was fetched and never acknowledged" in log
