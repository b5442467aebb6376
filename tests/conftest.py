"""Shared fixtures: one embedded broker per test session; a fresh namespace per test."""

from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest

from app.broker import EmbeddedBroker
from tests.support.harness import Deployment, Worker, free_port


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
