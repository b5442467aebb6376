"""``SegmentCatalog.complete_through``: a unit waits until the catalog has confirmed it holds
every definition written before its inputs were accepted, sharing one confirmation between the
units that need it, and retrying one that fails."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.segments.catalog import SegmentCatalog


def now_ms() -> int:
    return int(time.time() * 1000)


async def test_without_a_follower_the_catalog_is_complete_as_filled() -> None:
    catalog = SegmentCatalog()
    assert not await asyncio.wait_for(catalog.complete_through(now_ms()), 1)
    assert catalog.complete_as_of_ms == 0


async def test_an_input_accepted_after_the_last_confirmation_waits_for_a_new_one() -> None:
    catalog = SegmentCatalog()
    calls: list[float] = []
    release = asyncio.Event()

    async def confirm() -> None:
        calls.append(time.time() * 1000)
        await release.wait()
    catalog.confirm = confirm
    accepted = now_ms()
    first = asyncio.ensure_future(catalog.complete_through(accepted))
    second = asyncio.ensure_future(catalog.complete_through(accepted - 5))
    await asyncio.sleep(0.05)
    assert not first.done() and not second.done()
    assert len(calls) == 1  # one confirmation serves both
    release.set()
    await asyncio.wait_for(asyncio.gather(first, second), 1)
    assert catalog.complete_as_of_ms >= accepted
    assert first.result() and second.result()  # (each waited)
    # Already confirmed past it: no new confirmation.
    assert not await asyncio.wait_for(catalog.complete_through(accepted), 1)
    assert len(calls) == 1
    # Accepted after the confirmation began: a new one.
    await asyncio.sleep(0.01)
    await asyncio.wait_for(catalog.complete_through(now_ms()), 1)
    assert len(calls) == 2


async def test_a_time_in_the_future_is_confirmed_as_of_now() -> None:
    catalog = SegmentCatalog()

    async def confirm() -> None:
        return None
    catalog.confirm = confirm
    await asyncio.wait_for(catalog.complete_through(now_ms() + 3_600_000), 1)


async def test_a_failed_confirmation_is_retried(caplog: pytest.LogCaptureFixture) -> None:
    catalog = SegmentCatalog()
    attempts = []

    async def confirm() -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("broker away")
    catalog.confirm = confirm
    accepted = now_ms()
    await asyncio.wait_for(catalog.complete_through(accepted), 5)
    assert len(attempts) == 3 and catalog.complete_as_of_ms >= accepted
    assert "could not confirm the segment definitions are complete" in caplog.text
