"""A worker and the ingest tier run on the loop EVENTIDE_EVENT_LOOP names (uvloop by default):
what ``app.event_loop.install`` sets is what every later loop is, and ``running`` says which."""

from __future__ import annotations

import asyncio
import sys
from typing import Iterator

import pytest

from app import event_loop
from app.settings import StartupError


@pytest.fixture
def policy_kept() -> Iterator[None]:
    kept = asyncio.get_event_loop_policy()
    try:
        yield
    finally:
        asyncio.set_event_loop_policy(kept)


def _loop_of_a_new_run() -> tuple[str, str]:
    """What ``asyncio.run`` (as the tier starts) and a new loop (as faust's consumer thread
    makes one) run on, by the loop's own type and by ``running``."""
    async def which() -> tuple[str, str]:
        return type(asyncio.get_running_loop()).__module__.split(".")[0], event_loop.running()
    return asyncio.run(which())


@pytest.mark.usefixtures("policy_kept")
def test_uvloop_is_what_every_later_loop_is() -> None:
    event_loop.install("uvloop")
    assert _loop_of_a_new_run() == ("uvloop", "uvloop")
    thread_loop = asyncio.new_event_loop()
    try:
        assert type(thread_loop).__module__.startswith("uvloop")
    finally:
        thread_loop.close()


@pytest.mark.usefixtures("policy_kept")
def test_asyncio_puts_the_standard_loop_back() -> None:
    event_loop.install("uvloop")
    event_loop.install("asyncio")
    assert _loop_of_a_new_run() == ("asyncio", "asyncio")


@pytest.mark.usefixtures("policy_kept")
def test_uvloop_missing_is_one_line_naming_the_way_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    with pytest.raises(StartupError, match="EVENTIDE_EVENT_LOOP=asyncio"):
        event_loop.install("uvloop")
