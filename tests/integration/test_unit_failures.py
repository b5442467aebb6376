"""A unit of work that fails outside its items (its recovery, its commit) loses no input: the
agent goes on from the committed offsets, where the failed unit's records come again."""

from __future__ import annotations

import subprocess
import sys

import aiohttp
import pytest

from app.ops.digest import table_contents
from app.topics import DEDUP
from tests.support.harness import REPO, Deployment, Worker, eventually

pytestmark = pytest.mark.integration


class FailingRecoveryWorker(Worker):
    def start(self) -> "FailingRecoveryWorker":
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.failing_recovery_worker"], env=self._env,
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return self


async def test_a_first_unit_failing_with_its_recovery_loses_none_of_a_backlog(
        deployment: Deployment) -> None:
    """A fresh group (nothing committed) drains a backlog, and its first recovery fails. faust
    commits the first run of acknowledged offsets of a partition with nothing committed, from
    wherever it starts: an agent that went on to the records after a failed unit got them
    committed past the failed unit's, which were never processed (CI: a replay short of the
    first records of one partition)."""
    d = deployment
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
    worker = FailingRecoveryWorker(d, "failing").start()
    try:
        async def all_applied() -> None:
            applied = len(await table_contents(d.settings, DEDUP))
            assert applied == 400, f"{applied} of 400 accepted events applied"
        await eventually(all_applied, timeout_s=90)
        log = worker.log_path.read_text()
        assert "a unit of work failed (RuntimeError(" in log and "injected: recovery" in log
    finally:
        worker.stop()
