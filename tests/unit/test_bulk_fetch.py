"""The inbox between the bulk fetch loop and an agent (app.bulk_fetch.Inbox): order, bounds,
back-pressure, and what a rebalance drops; and the fetch loop filling it across a rebalance's
seek. No broker: messages are plain stand-ins, fetches are scripted."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Awaitable, Callable

import faust
from aiokafka import TopicPartition
from aiokafka.consumer.subscription_state import SubscriptionState
from aiokafka.consumer.fetcher import OffsetResetStrategy
import pytest
from faust.types import TP, Message

from app.bulk_fetch import BulkConsumer, BulkTransport, Inbox, fetch_in_bulk


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


# --- The fetch loop across a rebalance's seek -------------------------------------------------
#
# BulkConsumer._drain_messages runs as written; only the broker is replaced, by a partition of
# END records and a fetch position: a fetch serves the next records from the position and moves
# it on, a seek sets it to the committed offset.

END = 30
FETCH_SIZE = 5


class _App(faust.App):
    def _new_transport(self) -> Any:
        return BulkTransport(self.conf.broker_consumer, self)


class _Fetcher:
    def __init__(self) -> None:
        self._stopped = asyncio.Event()


class _Partition:
    """One partition as the fetcher sees it. ``during_fetch`` runs once, in the middle of the
    fetch whose number it is given for: what a rebalance does while the fetch loop awaits."""

    def __init__(self, consumer: BulkConsumer, topic: str, committed: int | None) -> None:
        self.tp = TP(topic, 0)
        self.committed = committed
        self.position = committed or 0
        self.fetches = 0
        self.serve_then: Callable[[], Awaitable[None]] | None = None  # fetch, then the rebalance
        self.then_serve: Callable[[], Awaitable[None]] | None = None  # the rebalance, then fetch
        self.at_fetch = -1
        self._consumer = consumer

    def serve(self) -> list[int]:
        served = list(range(self.position, min(self.position + FETCH_SIZE, END)))
        self.position += len(served)
        return served

    async def fetch_bulk(self, timeout: float) -> list[tuple[TP, list[Message]]]:
        self.fetches += 1
        if self.position >= END or self.fetches > 20:
            fetcher._stopped.set()
            return []
        if self.fetches == self.at_fetch and self.then_serve is not None:
            await self.then_serve()
        offsets = self.serve()
        if self.fetches == self.at_fetch and self.serve_then is not None:
            await self.serve_then()
        return [(self.tp, [Message(self.tp.topic, 0, offset, 0.0, 0, None, b"k", b"v", None)
                           for offset in offsets])]

    async def seek_to_committed(self) -> dict[TP, int | None]:
        if self.committed:  # as aiokafka: nothing committed (or 0), no seek
            self.position = self.committed
        return {self.tp: self.committed}

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        assert all(isinstance(tp, TopicPartition) for tp in tps), "aiokafka's type, as it checks"
        assert list(tps) == [self.tp]
        self.position = 0

    def assignment(self) -> set[TP]:
        return {self.tp}


fetcher = _Fetcher()


def _consumer_over_one_partition(topic: str, committed: int | None
                                 ) -> tuple[BulkConsumer, Inbox, _Partition]:
    app = _App(f"bulk-{topic}", broker="kafka://127.0.0.1:1")
    inbox = fetch_in_bulk(app, [topic])
    consumer = app.consumer
    assert isinstance(consumer, BulkConsumer)
    partition = _Partition(consumer, topic, committed)
    consumer.fetch_bulk = partition.fetch_bulk  # type: ignore[method-assign]
    consumer._thread = partition  # type: ignore[assignment]  # what the consumer thread answers
    app.topics.acks_enabled_for = lambda topic: True  # type: ignore[method-assign]
    app.flow_control.resume()  # as a started worker's
    fetcher._stopped.clear()
    return consumer, inbox, partition


async def _drained(consumer: BulkConsumer, inbox: Inbox) -> list[int]:
    await asyncio.wait_for(consumer._drain_messages(fetcher), 5)
    return [m.offset for m in await asyncio.wait_for(inbox.take(1000), 1)]


@pytest.mark.parametrize("committed", [10, None])
async def test_a_fetch_served_before_a_rebalance_seek_is_fetched_again_and_loses_nothing(
        committed: int | None) -> None:
    """The fetch under way when a rebalance ended was served from the position before the
    rebalance's seek (15-19; committed: 10). Taking it would read 10-14 as a gap, commit them as
    such, then skip them as read already: how the CI run's identify was lost. With nothing
    committed (a partition whose owner was killed before its first commit), aiokafka's seek to
    committed does not move the fetcher, so fetching it again starts from the beginning."""
    consumer, inbox, partition = _consumer_over_one_partition("t-served-before-seek", committed)

    async def rebalance() -> None:
        inbox.clear()
        await consumer.perform_seek()

    partition.at_fetch, partition.serve_then = 2, rebalance
    assert await _drained(consumer, inbox) == list(range(committed or 0, END)), \
        "every record from the committed offset on, once, in order"
    assert not consumer._gap.get(partition.tp), "no offset may be committed as a gap"


@pytest.mark.parametrize("committed", [10, None])
async def test_a_fetch_served_after_a_rebalance_seek_is_fetched_again(
        committed: int | None) -> None:
    """The fetch under way was served after the seek (10-14): the fetcher has moved past them and
    will not serve them again, so dropping the stale fetch takes a seek of its own; with nothing
    committed, a seek to the beginning (the test that caught it: a killed worker's partitions)."""
    consumer, inbox, partition = _consumer_over_one_partition("t-served-after-seek", committed)

    async def rebalance() -> None:
        inbox.clear()
        await consumer.perform_seek()

    partition.at_fetch, partition.then_serve = 2, rebalance
    assert await _drained(consumer, inbox) == list(range(committed or 0, END))
    assert not consumer._gap.get(partition.tp)


# --- faust's livelock check across a seek to the beginning ------------------------------------

def _thread_with_one_partition(topic: str) -> tuple[Any, TP, Any]:
    """The consumer thread of a bulk consumer over aiokafka's real subscription state of one
    assigned partition (what the thread reads for its checks), with a fetch just polled."""
    app = _App(f"livelock-{topic}", broker="kafka://127.0.0.1:1")
    consumer = app.consumer
    assert isinstance(consumer, BulkConsumer)
    subscriptions = SubscriptionState()
    subscriptions.subscribe({topic})
    aiotp = TopicPartition(topic, 0)
    subscriptions.assign_from_subscribed({aiotp})
    state = subscriptions.subscription.assignment.state_value(aiotp)
    thread = consumer._thread
    thread._consumer = SimpleNamespace(_fetcher=SimpleNamespace(_subscriptions=subscriptions))
    thread.time_started = time.monotonic() - 600
    state.timestamp = time.time() * 1000  # polled just now
    state.highwater = 20
    return thread, TP(topic, 0), state


async def test_the_livelock_check_skips_a_partition_awaiting_a_reset(
        caplog: pytest.LogCaptureFixture) -> None:
    """A seek to the beginning (seek_again, for a partition never committed) leaves the partition
    without a position until the fetcher resets it. faust's periodic livelock check read it there
    and aiokafka's assertion crashed the worker (a CI run); the check now waits for the reset."""
    thread, tp, state = _thread_with_one_partition("t-awaiting-reset")
    state.reset_to(5)
    state.await_reset(OffsetResetStrategy.EARLIEST)  # what seek_to_beginning does
    assert not state.has_valid_position
    thread.app.topics.acks_enabled_for = lambda topic: True
    thread.app.monitor.stream_inbound_time.clear()  # so faust's check would report it, if run
    with caplog.at_level(logging.ERROR):
        thread.verify_event_path(time.monotonic(), tp)  # raised AssertionError before
    assert "t-awaiting-reset" not in caplog.text, "nothing to report before the reset"


async def test_the_livelock_check_still_checks_a_partition_with_a_position(
        caplog: pytest.LogCaptureFixture) -> None:
    thread, tp, state = _thread_with_one_partition("t-positioned")
    state.reset_to(5)  # records 5-19 wait, and the stream never took one: faust's check says so
    thread.app.topics.acks_enabled_for = lambda topic: True
    thread.app.monitor.stream_inbound_time.clear()
    with caplog.at_level(logging.ERROR):
        thread.verify_event_path(time.monotonic(), tp)
    assert "t-positioned" in caplog.text


# --- One fetch as messages, a partition at a time (BulkConsumer.fetch_bulk) --------------------

def _record(topic: str, partition: int, offset: int) -> SimpleNamespace:
    """What aiokafka's fetcher hands faust's consumer thread for one record."""
    return SimpleNamespace(topic=topic, partition=partition, offset=offset, timestamp=1_000,
                           timestamp_type=0, headers=[], key=b"k", value=b"v", checksum=None,
                           serialized_key_size=1, serialized_value_size=1)


def _consumer_fetching(records: dict[TP, list[SimpleNamespace]], active: set[TP] | None
                       ) -> BulkConsumer:
    app = _App("fetch-bulk", broker="kafka://127.0.0.1:1")
    consumer = app.consumer
    assert isinstance(consumer, BulkConsumer)

    async def wait_next_records(timeout: float) -> tuple[dict[TP, list[Any]], set[TP] | None]:
        return records, active

    consumer._wait_next_records = wait_next_records  # type: ignore[method-assign]
    consumer.highwater = lambda tp: 100  # type: ignore[method-assign]
    app.flow_control.resume()
    consumer.resume_flow()
    return consumer


async def test_a_fetch_comes_as_messages_grouped_by_partition_in_order() -> None:
    a, b = TP("t", 0), TP("t", 1)
    consumer = _consumer_fetching({a: [_record("t", 0, 5), _record("t", 0, 6)],
                                   b: [_record("t", 1, 9)]}, {a, b})
    fetched = await consumer.fetch_bulk(1.0)
    assert [(tp, [m.offset for m in messages]) for tp, messages in fetched] == \
        [(a, [5, 6]), (b, [9])]
    message = fetched[0][1][0]
    assert (message.topic, message.partition, message.tp, message.value) == ("t", 0, a, b"v")
    assert message.generation_id == consumer.app.consumer_generation_id
    assert consumer.app.monitor.tp_end_offsets[a] == 100, "faust's end-offset sensor, per partition"


async def test_a_fetch_leaves_out_partitions_no_longer_active() -> None:
    a, b = TP("t", 0), TP("t", 1)
    consumer = _consumer_fetching({a: [_record("t", 0, 5)], b: [_record("t", 1, 9)]}, {b})
    assert [tp for tp, _ in await consumer.fetch_bulk(1.0)] == [b]


async def test_a_fetch_with_the_flow_stopped_seeks_back_and_gives_nothing() -> None:
    a = TP("t", 0)
    consumer = _consumer_fetching({a: [_record("t", 0, 5)]}, {a})
    consumer.flow_active = False
    sought: list[bool] = []

    async def perform_seek() -> None:
        sought.append(True)

    consumer.perform_seek = perform_seek  # type: ignore[method-assign]
    assert await consumer.fetch_bulk(1.0) == []
    assert sought == [True], "faust's getmany seeks to the committed offsets when the flow stopped"
