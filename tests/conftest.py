"""Shared fixtures: one embedded broker per test session; a fresh namespace per test."""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest

from app.broker import EmbeddedBroker
from app.testing import harness
from tests.support.harness import Deployment, Worker, free_port


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """A failed test's report shows the log of every worker that exited on its own: CI keeps
    only what the test run prints."""
    outcome = yield
    report = outcome.get_result()
    if call.when == "teardown":
        started, harness.STARTED[:] = list(harness.STARTED), []
    else:
        started = list(harness.STARTED)
    if not report.failed:
        return
    for worker in started:
        worker.running()
        if worker.exited_on_its_own is not None:
            report.sections.append(
                (f"worker {worker.name} exited on its own (status {worker.exited_on_its_own})",
                 worker.tail(80)))


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    root = tmp_path_factory.mktemp("broker")
    instance = EmbeddedBroker(free_port(), log_path=Path(root) / "tansu.log")
    instance.start()
    yield instance
    instance.stop()


@pytest.fixture
async def deployment(broker: EmbeddedBroker, tmp_path: Path) -> Deployment:
    deployed = Deployment(broker.bootstrap_servers, tmp_path)
    await deployed.create_topics()
    return deployed


@pytest.fixture
async def worker(deployment: Deployment) -> AsyncIterator[Worker]:
    started = Worker(deployment).start()
    try:
        await started.wait_ready()
        yield started
    finally:
        started.stop()
