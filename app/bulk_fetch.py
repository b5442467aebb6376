"""faust's Kafka consumer, handing what it fetches to eventide's agents in bulk.

faust delivers every record on its own: the fetch loop awaits a task pair per record
(``wait_first(callback(message), suspend_flow.wait())``), the conductor takes a lock and
decodes it into an ``Event``, and the agent's stream queues and dequeues it. On this machine that
was ~550 µs of a worker's CPU per record for producers writing one event per record, about four
times eventide's own work per event (``docs/performance.md``, "A bulk fetch").

Here faust stays the worker and agent framework — its consumer group, assignment, rebalances,
offset tracking and commits are all its own — but the records of eventide's agents' topics go
from each fetch into the agent's :class:`Inbox` as one list. The agent takes them in batches
(``agents.batches.run``), and this consumer keeps faust's books for them a unit at a time: a
unit's records are tracked while it runs (a rebalance waits for them, :class:`TrackedRecords`)
and acknowledged once it is committed, each offset as faust's ``Consumer.ack`` counts it, so
faust commits exactly the offsets it would have. A rebalance clears inboxes like faust's own
stream buffers (they are managed by the app's flow control), and faust seeks every assigned
partition back to its committed offset.

The agents' records are :class:`tables.records.InRecord`, made from aiokafka's decoded records
(:mod:`tables.decoded_records`) in compiled code: faust's message made of aiokafka's
``ConsumerRecord``, tracked and acknowledged one by one, cost ~5 µs a record more on this
machine (docs/performance.md), paid by every event a producer writes as a record of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from time import monotonic
from typing import Any, Iterable, Sequence

import faust
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

from app.commit_guard import CommitGuard
from tables import decoded_records
from tables.records import InRecord, in_records

log = logging.getLogger(__name__)

#: faust hard-codes fetch_max_wait_ms=1500 for its consumer. The embedded broker does not answer a
#: parked fetch when data arrives, so every hop would wait up to 1.5 s; 50 ms keeps the pipeline's
#: latency in tens of milliseconds at a negligible cost in idle fetches.
TANSU_FETCH_MAX_WAIT_MS = 50

#: Bytes of record values an inbox holds before the fetch loop waits for its agent: what a worker
#: buffers is bounded by configuration, never by the backlog.
INBOX_MAX_BYTES = 8 * 1024 * 1024


class Inbox:
    """Records fetched for one agent, not yet taken by it."""

    def __init__(self, max_bytes: int = INBOX_MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._messages: deque[InRecord] = deque()
        self._bytes = 0
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    async def put_many(self, messages: list[InRecord], current: Any) -> bool:
        """Add a fetch's records; waits while the inbox is full. ``current()`` false (a rebalance
        began, or a seek happened, while waiting) drops them and answers False: they are fetched
        again from the offsets the seek sets."""
        while self._bytes >= self.max_bytes and current():
            self._room.clear()
            try:
                await asyncio.wait_for(self._room.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
        if not current():
            return False
        self._messages.extend(messages)
        self._bytes += sum(len(m.value or b"") for m in messages)
        self._ready.set()
        return True

    async def take(self, limit: int) -> list[InRecord]:
        """At least one record (waits for it), at most ``limit``, oldest first."""
        while not self._messages:
            self._ready.clear()
            await self._ready.wait()
        messages = self._messages
        taken = [messages.popleft() for _ in range(min(limit, len(messages)))]
        self._bytes -= sum(len(m.value or b"") for m in taken)
        if self._bytes < self.max_bytes:
            self._room.set()
        return taken

    def clear(self) -> None:
        """Flow control (a rebalance): drop what was fetched; it will be fetched again."""
        self._messages.clear()
        self._bytes = 0
        self._room.set()


def inboxes_of(app: faust.App) -> dict[str, Inbox]:
    """topic name → the inbox of the agent reading it."""
    registry: dict[str, Inbox] | None = getattr(app, "_eventide_inboxes", None)
    if registry is None:
        registry = {}
        app._eventide_inboxes = registry  # type: ignore[attr-defined]
    return registry


def fetch_in_bulk(app: faust.App, topics: Iterable[str]) -> Inbox:
    """The inbox of an agent reading ``topics``; declared with the agent, before the app starts,
    so the fetch loop never meets one of these topics without its inbox."""
    inbox = Inbox()
    registry = inboxes_of(app)
    for topic in topics:
        registry[topic] = inbox
    app.flow_control.manage_queue(inbox)  # type: ignore[arg-type]
    return inbox


def bulk_inbox(app: faust.App, stream: Any) -> Inbox | None:
    """The inbox feeding the agent of ``stream``, when this app fetches in bulk: its stream reads
    the agent's own topics (not a test channel) and its consumer is a :class:`BulkConsumer`."""
    topics = getattr(stream.channel, "topics", None)
    if not topics or not isinstance(app.consumer, BulkConsumer):
        return None
    registry = inboxes_of(app)
    inbox = registry.get(topics[0])
    return inbox if all(registry.get(topic) is inbox for topic in topics) else None


class TrackedRecords:
    """The records the agents took from their inboxes and have not acknowledged, as faust's
    consumer sees them: one entry in its ``_unacked_messages``, while any is left. A rebalance
    waits until none is left (faust's ``Consumer.wait_empty``), as it waits for the messages
    its own streams track one by one (a weak reference and a sensor call each, ~1.2 µs a record
    on this machine, where a unit tracks its records here with one set update)."""

    __slots__ = ("_records", "_consumer", "__weakref__")

    #: What ``wait_empty`` logs of an entry it waits for.
    refcount = 1

    def __init__(self, consumer: Any) -> None:
        self._records: set[InRecord] = set()
        self._consumer = consumer

    @property
    def acked(self) -> bool:
        """Nothing left to wait for (``wait_empty`` then drops the entry)."""
        return not self._records

    def __len__(self) -> int:
        return len(self._records)

    def __repr__(self) -> str:
        return f"<{len(self._records)} records taken by agents, not acknowledged>"

    def add(self, records: Iterable[InRecord]) -> None:
        self._records.update(records)
        if self._records:
            self._consumer._unacked_messages.add(self)

    def discard(self, records: Iterable[InRecord]) -> None:
        self._records.difference_update(records)
        if not self._records:
            self._settled()

    def discard_topics(self, topics: frozenset[str]) -> None:
        self._records = {record for record in self._records if record.topic not in topics}
        if not self._records:
            self._settled()

    def _settled(self) -> None:
        self._consumer._unacked_messages.discard(self)
        notify(self._consumer._waiting_for_ack)


class ShortFetchWaitThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka's decoded records, not a ConsumerRecord each: the agents' records become
        # InRecords (BulkConsumer.fetch_bulk), anything else faust's messages as before
        # (BulkConsumer._to_message).
        decoded_records.install()
        consumer._key_deserializer = decoded_records.AS_DECODED
        runtime = getattr(self.app, "runtime", None)
        if runtime is not None and runtime.settings.tansu:
            consumer._fetch_max_wait_ms = TANSU_FETCH_MAX_WAIT_MS
        return consumer

    def verify_event_path(self, now: float, tp: TP) -> None:
        """faust's livelock check of a partition (it logs when records stop flowing), skipped
        while the partition awaits a reset. The check reads the partition's position, which
        aiokafka asserts is set, and a partition awaiting a reset has none until the fetcher
        resets it: a check in that window crashed a worker (a CI run: the worker killed by its
        own check just after :meth:`BulkConsumer.seek_again` sought a partition to its
        beginning). Such a partition has nothing to check yet; the next round checks it."""
        consumer = self._consumer
        subscription = consumer._fetcher._subscriptions.subscription if consumer else None
        assignment = subscription.assignment if subscription is not None else None
        state = (assignment.state_value(TopicPartition(tp.topic, tp.partition))
                 if assignment is not None else None)
        if state is None or not state.has_valid_position:
            return None
        return super().verify_event_path(now, tp)


class BulkConsumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer whose fetch loop fills inboxes a fetch at a time.

    A fetch that was under way while a seek happened is *stale*, and none of it is put. A
    rebalance ends with a seek of every partition to its committed offset, but the fetch the loop
    was awaiting meanwhile may come back afterwards: with records of a partition now owned by
    another worker, or with records from the position before the seek. faust's bookkeeping would
    take a jump from the committed offset to such a record for a gap (offsets compacted away,
    committed as if processed) and then skip the records between as read already: records lost.
    The same fetch may also hold records the seek's new position already served, which the fetcher
    will not serve again. So a stale fetch is dropped and followed by one more seek to the
    committed offsets: whatever it held is fetched again, and a record the agents have seen is
    judged a redelivery, which is idempotent."""

    #: Bumped when a seek begins and when it ends, so a fetch can tell that one overlapped it.
    #: Every seek of this consumer is a ``perform_seek`` (faust's rebalances, its ``getmany``
    #: with the flow stopped, and :meth:`seek_again`); nothing calls ``seek`` on it.
    seeks = 0

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return ShortFetchWaitThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - needs a broker
        """faust's ``Consumer._drain_messages``, with the records of inbox topics collected per
        fetch instead of awaited one by one. Offsets read and ``commit_every`` are kept as faust
        keeps them, and gaps exactly (:mod:`app.commit_guard`); records of any other topic take
        faust's own path."""
        inboxes = inboxes_of(self.app)
        fetched_at, fetched_run = self.commit_guard.fetched, self.commit_guard.fetched_run
        callback = self.callback
        read_offsets = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        fetcher_stopped = fetcher._stopped.is_set
        flowing = self.flowing
        try:
            while not (self._stopped.is_set() or fetcher_stopped()):
                seeks = self.seeks
                fetched = await self.fetch_bulk(timeout=1.0)
                await self.sleep(0)
                if self.should_stop:
                    continue
                batches: dict[int, tuple[Inbox, list[Any]]] = {}
                for tp, messages in fetched:
                    if self.seeks != seeks:
                        break
                    inbox = inboxes.get(tp.topic)
                    taken = (batches.setdefault(id(inbox), (inbox, []))[1]
                             if inbox is not None else None)
                    first, last = messages[0].offset, messages[-1].offset
                    read = read_offsets.get(tp)
                    if (taken is not None and last - first + 1 == len(messages)
                            and (read is None or first >= read)):
                        # A run without holes, none of it read already (nearly every fetch):
                        # the books kept for the run at once, as record by record below.
                        skipped = fetched_run(tp, first, last)
                        if skipped is not None and acks_enabled_for(tp.topic):
                            await self._add_skipped(tp, *skipped)
                            if self.seeks != seeks:
                                break
                        taken.extend(messages)
                        read_offsets[tp] = last
                        continue
                    for message in messages:
                        offset = message.offset
                        read = read_offsets.get(tp)
                        if read is not None and offset < read:
                            continue  # read already (faust drops these too)
                        skipped = fetched_at(tp, offset)
                        if skipped is not None and acks_enabled_for(message.topic):
                            await self._add_skipped(tp, *skipped)  # compacted away, or markers
                            if self.seeks != seeks:
                                break
                        if taken is None:
                            await self.wait_first(callback(message), self.suspend_flow.wait())
                            if self.seeks != seeks:
                                break
                        else:
                            taken.append(message)
                        read_offsets[tp] = offset

                def current() -> bool:
                    return flowing() and self.seeks == seeks

                for inbox, messages in batches.values():
                    if messages and not await inbox.put_many(messages, current):
                        break  # the rest is refused too: a seek comes before the flow resumes
                if self.seeks != seeks and flowing():
                    # The fetch was stale: fetch it all again. (With the flow stopped, a
                    # rebalance is under way, and it seeks before the flow resumes.)
                    log.info("a fetch was overtaken by a seek (a rebalance): fetching again "
                             "from the committed offsets")
                    await self.seek_again()
                commit_every = self._commit_every
                if commit_every is not None and self._n_acked >= commit_every:
                    self._n_acked = 0
                    await self.commit()
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commit_guard = CommitGuard()
        self.tracked = TrackedRecords(self)

    def track_records(self, records: Sequence[InRecord]) -> None:
        """A unit begins: its records are tracked, as faust's ``track_message`` tracks a stream's
        (a rebalance waits for them), and faust's livelock check learns that its partitions'
        records are being taken (``monitor.stream_inbound_time``, which faust's own streams set
        per event: without it, it logged "Stream has not started processing" for every
        partition read under steady traffic, 5 minutes after the worker started)."""
        self.tracked.add(records)
        inbound, now = self.app.monitor.stream_inbound_time, monotonic()
        for record in records:
            inbound[record.tp] = now

    def untrack_records(self, records: Sequence[InRecord]) -> None:
        """Neither acknowledged nor tracked any longer: a rebalance must not wait for these."""
        self.tracked.discard(records)

    def untrack_topics(self, topics: frozenset[str]) -> None:
        """No record of ``topics`` is tracked any longer (an agent fetches them all again)."""
        self.tracked.discard_topics(topics)

    def ack_records(self, records: Sequence[InRecord]) -> None:
        """A committed unit's records acknowledged, each as faust's ``Consumer.ack`` does it
        (an offset at or past the committed one, not acknowledged yet, is added to the
        offsets faust commits from), and untracked."""
        acks_enabled_for = self.app.topics.acks_enabled_for
        committed_offsets, acked_index, acked = (self._committed_offset, self._acked_index,
                                                 self._acked)
        tp: Any = None
        enabled, committed, index, offsets = False, None, set(), []
        n = 0
        with ack_lock:
            for record in records:
                if record.tp is not tp:
                    tp = record.tp
                    enabled = acks_enabled_for(record.topic)
                    committed = committed_offsets[tp]
                    index, offsets = acked_index[tp], acked[tp]
                if not enabled:
                    continue
                offset = record.offset
                if (committed is None or offset >= committed) and offset not in index:
                    index.add(offset)
                    offsets.append(offset)
                    n += 1
            self._n_acked += n
        self.tracked.discard(records)
        notify(self._waiting_for_ack)  # (as faust's ack does: a commit may be waiting)

    async def _add_skipped(self, tp: TP, first: int, last: int) -> None:
        """Offsets ``first``-``last`` the fetch went past without records: a gap, which faust
        commits as if processed (:mod:`app.commit_guard`: every such offset, exactly; faust's
        ``_add_gap`` would leave out the committed offset itself). Gaps are meant for
        compaction and transaction markers; in a topic that is not compacted (the input and
        hop topics) they are worth a warning and a count, which a replay checks
        (:mod:`app.ops.replay_tally`)."""
        runtime = getattr(self.app, "runtime", None)
        if runtime is not None and not runtime.topics.is_compacted(tp.topic):
            log.warning("%s[%d]: offsets %d-%d were not in what the broker served; they are "
                        "committed as compacted away", tp.topic, tp.partition, first, last)
            runtime.counters["fetch_gaps"] += last - first + 1
        gaps = self._gap[tp]
        gaps.addi(first, last + 1)
        await asyncio.sleep(0)
        gaps.merge_overlaps()

    def _new_offset(self, tp: TP) -> int | None:
        """faust's next offset to commit, held at a fetched record no unit has acknowledged
        (:class:`app.commit_guard.CommitGuard`); a hold that lasts fetches again."""
        if self._acked.get(tp):
            held, fetch_again = self.commit_guard.hold(
                tp, self._committed_offset.get(tp), self._acked_index[tp],
                self._gap[tp].overlaps, monotonic())
            if held is not None:
                if fetch_again:
                    log.warning("%s[%d]: offset %d was fetched and never acknowledged while "
                                "later ones were; commits wait there, and every partition is "
                                "fetched again from its committed offset", tp.topic,
                                tp.partition, held)
                    runtime = getattr(self.app, "runtime", None)
                    if runtime is not None:
                        runtime.counters["commits_held"] += 1
                    asyncio.ensure_future(self.seek_again())
                return None
        return super()._new_offset(tp)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        self.commit_guard.forget(revoked)
        await super().on_partitions_revoked(revoked)

    async def fetch_bulk(self, timeout: float) -> list[tuple[TP, list[Any]]]:
        """faust's ``Consumer.getmany`` a partition at a time: the records of one fetch grouped
        by partition in fetch order (an agent's topics' as :class:`InRecord`, any other's as
        faust's messages), with faust's checks (the flow, the group
        generation, the partitions active) and its end-offset sensor once per partition instead
        of once per record through an async generator: about a microsecond less per record
        (docs/performance.md), which counts where every record is one event. A stopped flow
        seeks back to the committed offsets and fetches nothing, as faust's does."""
        records, active_partitions = await self._wait_next_records(timeout)
        generation_id = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return []
        if not self.flow_active:
            try:
                await self.perform_seek()
            except Exception as exc:
                log.warning("exception performing seek when flow not active %s", exc)
            return []
        to_message = self._to_message
        inboxes = inboxes_of(self.app)
        buffered = self._buffered_partitions
        track_end = self.app.monitor.track_tp_end_offset
        fetched: list[tuple[TP, list[Any]]] = []
        for tp, tp_records in records.items():
            if not self.flow_active or self.app.consumer_generation_id != generation_id:
                break
            if tp_records and (active_partitions is None or tp in active_partitions
                               or tp in buffered):
                track_end(tp, self.highwater(tp))
                fetched.append((tp, in_records(tp, generation_id, tp_records)
                                if tp.topic in inboxes
                                else [to_message(tp, record) for record in tp_records]))
        return fetched

    def _to_message(self, tp: TP, record: Any) -> Any:
        """faust's message of a record: its consumer is handed aiokafka's decoded records
        (:meth:`ShortFetchWaitThread._create_worker_consumer`), which faust reads as the
        ``ConsumerRecord`` aiokafka would have made of it."""
        if not isinstance(record, ConsumerRecord):
            record = decoded_records.consumer_record(tp, record)
        return super()._to_message(tp, record)

    async def seek_again(self) -> None:
        """Every assigned partition back to its committed offset, and one with nothing committed
        back to its beginning, where a new assignment starts it (``consumer_auto_offset_reset``
        is "earliest"): aiokafka's seek to committed leaves such a partition where it is."""
        self.seeks += 1
        try:
            await self.perform_seek()
            read = self._read_offset
            never_committed = [self._new_topicpartition(tp.topic, tp.partition)
                               for tp in self.assignment() if not read.get(tp)]
            if never_committed:
                await self._thread.seek_to_beginning(*never_committed)
        finally:
            self.seeks += 1

    async def perform_seek(self) -> None:
        self.seeks += 1
        try:
            await super().perform_seek()
            committed = self._committed_offset
            self.commit_guard.sought({tp: committed.get(tp) for tp in self.assignment()})
        finally:
            self.seeks += 1

    def flowing(self) -> bool:
        """Records may go on to the agents: no rebalance or stop has begun (faust's consumer
        flow and the app's flow control both active)."""
        return self.flow_active and self.app.flow_control.is_active() and not self.should_stop


class BulkTransport(faust_aiokafka.Transport):
    Consumer = BulkConsumer
