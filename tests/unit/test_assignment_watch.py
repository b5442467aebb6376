"""A worker waiting for its group's assignment says so past ``after_s``, then every
``every_s`` while it lasts, and how long it waited once it is assigned; a short wait (a normal
rebalance) is never said. With an injected clock."""

from __future__ import annotations

import asyncio
import logging

import pytest

from app.assignment_watch import AssignmentWatch, watch_assignment
from tests.support.clock import HandClock


def test_a_wait_from_the_start_is_said_past_after_s_then_every_every_s() -> None:
    clock = HandClock(1000.0)
    watch = AssignmentWatch(clock, after_s=30, every_s=60)
    clock.now += 29
    assert watch.overdue() is None
    clock.now += 1
    assert watch.overdue() == 30
    clock.now += 59
    assert watch.overdue() is None, "said a minute ago"
    clock.now += 1
    assert watch.overdue() == 90
    clock.now += 5
    assert watch.assigned() == 95, "its end is said, with how long it lasted"
    clock.now += 600
    assert watch.overdue() is None, "holding an assignment: nothing to say"


def test_a_rebalance_of_a_few_seconds_is_never_said() -> None:
    clock = HandClock(1000.0)
    watch = AssignmentWatch(clock, after_s=30, every_s=60)
    clock.now += 2
    assert watch.assigned() is None
    for _ in range(3):
        clock.now += 300
        watch.revoked()
        clock.now += 4
        assert watch.overdue() is None
        assert watch.assigned() is None


def test_a_wait_counts_from_the_revocation_not_from_a_second_one() -> None:
    clock = HandClock(1000.0)
    watch = AssignmentWatch(clock, after_s=30, every_s=60)
    watch.assigned()
    watch.revoked()
    clock.now += 20
    watch.revoked()  # (revocations within one wait do not restart it)
    clock.now += 10
    assert watch.overdue() == 30


async def test_the_task_logs_the_wait_with_the_group_and_the_broker(
        caplog: pytest.LogCaptureFixture) -> None:
    watch = AssignmentWatch(after_s=0.0, every_s=60)
    task = asyncio.ensure_future(watch_assignment(watch, "eventide-v1", "127.0.0.1:9092",
                                                  interval_s=0.01))
    with caplog.at_level(logging.WARNING, logger="app.assignment_watch"):
        for _ in range(100):
            await asyncio.sleep(0.01)
            if caplog.records:
                break
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    [record] = caplog.records
    assert "no partitions assigned" in record.getMessage()
    assert "eventide-v1" in record.getMessage() and "127.0.0.1:9092" in record.getMessage()
