"""The inbox between the bulk fetch loop and an agent (app.bulk_fetch.Inbox): order, bounds,
back-pressure, and what a rebalance drops. No broker: messages are plain stand-ins."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from app.bulk_fetch import Inbox


@dataclass
class Msg:
    offset: int
    value: bytes = b"x" * 10


def flowing() -> bool:
    return True


async def test_takes_come_oldest_first_and_at_most_the_limit() -> None:
    inbox = Inbox()
    await inbox.put_many([Msg(i) for i in range(5)], flowing)
    await inbox.put_many([Msg(i) for i in range(5, 8)], flowing)
    first = await inbox.take(3)
    rest = await inbox.take(100)
    assert [m.offset for m in first] == [0, 1, 2]
    assert [m.offset for m in rest] == [3, 4, 5, 6, 7]


async def test_a_take_waits_for_records() -> None:
    inbox = Inbox()
    waiting = asyncio.ensure_future(inbox.take(10))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    await inbox.put_many([Msg(1)], flowing)
    assert [m.offset for m in await asyncio.wait_for(waiting, 1)] == [1]


async def test_a_full_inbox_holds_the_fetch_loop_until_its_agent_takes() -> None:
    inbox = Inbox(max_bytes=25)
    await inbox.put_many([Msg(0), Msg(1), Msg(2)], flowing)  # 30 bytes: full now
    putting = asyncio.ensure_future(inbox.put_many([Msg(3)], flowing))
    await asyncio.sleep(0.01)
    assert not putting.done(), "the fetch loop must wait while the inbox is full"
    assert [m.offset for m in await inbox.take(2)] == [0, 1]
    await asyncio.wait_for(putting, 1)
    assert [m.offset for m in await inbox.take(10)] == [2, 3]


async def test_a_rebalance_drops_what_was_fetched_and_frees_a_waiting_fetch() -> None:
    inbox = Inbox(max_bytes=25)
    flow = {"on": True}
    await inbox.put_many([Msg(0), Msg(1), Msg(2)], lambda: flow["on"])
    putting = asyncio.ensure_future(inbox.put_many([Msg(3)], lambda: flow["on"]))
    await asyncio.sleep(0.01)
    flow["on"] = False  # faust stops the flow, then its flow control clears the inboxes
    inbox.clear()
    await asyncio.wait_for(putting, 1)
    flow["on"] = True
    await inbox.put_many([Msg(7)], flowing)
    assert [m.offset for m in await inbox.take(10)] == [7], \
        "records fetched before the rebalance are fetched again, not kept"
