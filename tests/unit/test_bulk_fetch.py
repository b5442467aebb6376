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
from aiokafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
import pytest
from faust.types import TP, Message

from app.bulk_fetch import BulkConsumer, BulkTransport, Inbox, fetch_in_bulk
from tables.records import in_records


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


# --- A unit's records: tracked, acknowledged, and handed over as aiokafka decoded them --------


def decoded(offsets: range, *, key: bytes | None = b"k") -> list[Any]:
    """aiokafka's decoded records (its C ``DefaultRecord``) at ``offsets``, read back from a
    record batch as its fetcher reads one."""
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0,
                                        producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                        batch_size=1 << 20)
    for delta, _ in enumerate(offsets):
        builder.append(delta, timestamp=1_700_000_000_123 + delta, key=key,
                       value=b"v%d" % delta, headers=[("h", b"1")])
    return [_At(record, offsets.start + record.offset)
            for record in DefaultRecordBatch(bytes(builder.build()))]


class _At:
    """A decoded record moved to another offset (a batch builder always starts at 0)."""

    def __init__(self, record: Any, offset: int) -> None:
        self.offset = offset
        self.timestamp, self.timestamp_type = record.timestamp, record.timestamp_type
        self.key, self.value = record.key, record.value
        self.headers, self.checksum = record.headers, record.checksum


def test_a_decoded_record_becomes_an_in_record_with_what_fausts_message_carried() -> None:
    consumer, _, partition = _consumer_over_one_partition("t-in-records", None)
    records = decoded(range(40, 43))
    made = in_records(partition.tp, 7, records)
    faust_made = [consumer._to_message(partition.tp, record) for record in records]
    for ours, theirs in zip(made, faust_made):
        assert ours.message is ours
        assert (ours.topic, ours.partition, ours.offset, ours.timestamp, ours.key, ours.value,
                ours.tp, ours.generation_id) == (
                    theirs.topic, theirs.partition, theirs.offset, theirs.timestamp, theirs.key,
                    theirs.value, theirs.tp, 7)
    assert tuple(faust_made[0].headers) == (("h", b"1"),)
    assert faust_made[0].serialized_key_size == 1 and faust_made[0].offset == 40


def test_acknowledging_a_unit_counts_each_offset_as_fausts_own_ack_does() -> None:
    """``ack_records`` against faust's ``Consumer.ack`` one message at a time, over the same
    records: an offset below the committed one is not counted, an offset acknowledged already
    (a redelivery fetched again after a seek) is not counted twice."""
    ours, _, ours_partition = _consumer_over_one_partition("t-acks-ours", None)
    theirs, _, theirs_partition = _consumer_over_one_partition("t-acks-faust", None)
    for consumer, tp in ((ours, ours_partition.tp), (theirs, theirs_partition.tp)):
        consumer._committed_offset[tp] = 5
    first, again = decoded(range(3, 9)), decoded(range(7, 11))
    ours.ack_records(in_records(ours_partition.tp, 1, first))
    ours.ack_records(in_records(ours_partition.tp, 1, again))
    for record in [*first, *again]:
        theirs.ack(theirs._to_message(theirs_partition.tp, record))
    assert ours._acked[ours_partition.tp] == theirs._acked[theirs_partition.tp] == \
        [5, 6, 7, 8, 9, 10]
    assert ours._acked_index[ours_partition.tp] == theirs._acked_index[theirs_partition.tp]
    assert ours._n_acked == theirs._n_acked == 6


def test_a_units_records_are_waited_for_by_a_rebalance_until_acknowledged_or_dropped() -> None:
    """faust's ``wait_empty`` (a rebalance, a stop) waits while ``_unacked_messages`` holds
    anything not acked; a unit's records are one entry there until the last is settled. And
    faust's livelock check learns that each partition's records are being taken (it logged
    "Stream has not started processing" for every partition under steady traffic when units
    did not tell it)."""
    consumer, _, partition = _consumer_over_one_partition("t-tracked", None)
    other = TP("t-tracked-other", 3)
    unit = in_records(partition.tp, 1, decoded(range(0, 4)))
    rest = in_records(other, 1, decoded(range(10, 12)))
    consumer.track_records(unit)
    consumer.track_records(rest)
    assert set(consumer.app.monitor.stream_inbound_time) >= {partition.tp, other}
    [entry] = list(consumer._unacked_messages)
    assert not entry.acked and len(entry) == 6

    consumer.ack_records(unit[:2])
    consumer._clean_unacked_messages()  # what wait_empty does between its waits
    assert list(consumer._unacked_messages) == [entry], "two records of the unit are left"
    consumer.untrack_records(unit[2:])  # a rebalance overtook the rest
    consumer.untrack_topics(frozenset({other.topic}))  # an agent fetching its topics again
    assert entry.acked and not consumer._unacked_messages
    assert consumer._acked[partition.tp] == [0, 1]


async def test_settling_the_last_tracked_record_wakes_a_rebalance_waiting_for_it() -> None:
    consumer, _, partition = _consumer_over_one_partition("t-tracked-wake", None)
    unit = in_records(partition.tp, 1, decoded(range(0, 3)))
    consumer.track_records(unit)
    waiting = asyncio.ensure_future(consumer._wait_for_ack(timeout=5))
    await asyncio.sleep(0)
    started = time.monotonic()
    consumer.ack_records(unit)
    await asyncio.wait_for(waiting, 1)
    assert time.monotonic() - started < 0.5 and not consumer._unacked_messages
