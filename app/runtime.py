"""Everything a worker process shares: settings, topics, clock, producer, state, counters.

Built once by :func:`app.wiring.create_app`; agents and HTTP handlers receive it explicitly.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from app.assignment_watch import AssignmentWatch
from app.clock import Clock
from app.heap import HeapTrimmer
from app.ingest.batcher import IngestBatcher
from app.metrics import STAGE_HISTOGRAMS, LatencyHistogram
from app.producer import BrokerUnavailable, OutRecord, Producer, partition_for
from app.person_store import PruneSchedule
from app.progress import Applied
from app.sessions import RevokedSessions
from app.settings import Settings
from app.topics import ALIASES, Topics
from app.segments.catalog import SegmentCatalog
from tables.state import StateManager, UnitOfWork

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    topics: Topics
    clock: Clock
    producer: Producer
    state: StateManager
    batcher: IngestBatcher
    counters: Counter = field(default_factory=Counter)
    #: Accept (HTTP or record time) → durably in history, per new event.
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    #: Its stages (:data:`app.metrics.STAGE_HISTOGRAMS`): histogram name → histogram.
    stages: dict[str, LatencyHistogram] = field(
        default_factory=lambda: {name: LatencyHistogram() for name in STAGE_HISTOGRAMS})
    #: Segment definitions (every worker follows the whole definitions topic).
    catalog: SegmentCatalog = field(default_factory=SegmentCatalog)
    #: Console sessions signed out (every worker follows the revocations topic).
    revoked: RevokedSessions = field(default_factory=RevokedSessions)
    #: person.events partition → {segment id: version activated there} (cache of SEGMENT_STATE).
    active_segments: dict[int, dict[str, str]] = field(default_factory=dict)
    #: person.events partition → {segment id: offset of the deletion activated there last}, for
    #: segments with nothing active there (cache of SEGMENT_STATE, loaded with active_segments).
    deleted_segments: dict[int, dict[str, int]] = field(default_factory=dict)
    #: person.events partition → (catalog offset, next recorded time not yet due) when its
    #: recorded definitions were last activated (agents.people.PeopleBatch.activate_recorded)
    definitions_watch: dict[int, tuple[int, int | None]] = field(default_factory=dict)
    #: raw.events partition → the offset after the last of its records a prepared unit took
    #: whole (forgotten with the partition, and when a prepared unit is discarded).
    raw_handled: dict[int, int] = field(default_factory=dict)
    #: person.events partition → (record time in ms, segment id) of the latest-recorded
    #: definition activated there on its item's arrival since this worker took the partition: an
    #: input accepted before it that arrives later is one a replay may evaluate differently
    #: (agents.people.PeopleBatch.behind_a_definition).
    arrived_definitions: dict[int, tuple[int, str]] = field(default_factory=dict)
    #: Whether raw.events[p] holds records this worker has not taken yet, from the consumer's
    #: high-watermark (set at the consumer's first assignment; None: unknown, as in process
    #: without a consumer, where a definition activates on its item). A definition's item that
    #: finds them waits for them (``activation.left_to_inputs``).
    raw_behind: Callable[[int], bool] | None = None
    #: Asks for a tick of this worker's person partitions at a time (seconds since the epoch):
    #: a definition left to the inputs accepted before it is activated there, on a partition
    #: with no input of its own by then (set with the ``tick`` timer, agents/segments.py).
    tick_at: Callable[[float], None] | None = None
    #: Topic partitions currently assigned to this worker.
    assigned: set[tuple[str, int]] = field(default_factory=set)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    #: Set once the consumer has joined its group and had partitions assigned at least once.
    joined: bool = False
    #: How long the worker has waited for its group to assign it partitions (said in the log).
    assignment: AssignmentWatch = field(default_factory=AssignmentWatch)
    #: The faust app (for the assignor's view of which worker owns which partition).
    app: Any = None
    #: Embedded mode, ``eventide up``'s own worker: the input log it writes.
    input_log: Any = None
    #: How late the event loop last woke a timer, and the worst since start (seconds): how long
    #: some piece of work held the loop (HTTP, heartbeats and commits all wait that long).
    loop_lag_s: float = 0.0
    loop_lag_max_s: float = 0.0
    #: Gives freed C-heap memory back to the OS (a no-op off glibc); set at wiring.
    heap: HeapTrimmer = field(default_factory=lambda: HeapTrimmer(None))
    #: How far this worker's agents applied each input partition (read-your-writes waits on it).
    applied: Applied = field(default_factory=Applied)
    #: When a prune of each person's dedup ids can next forget anything (a cache).
    prune_schedule: PruneSchedule = field(default_factory=PruneSchedule)
    #: (topic, partitions) → their end offsets now (``app.progress.EndOffsets``); set at wiring.
    end_offsets: Any = None

    async def watch_loop_lag(self, interval_s: float = 0.05) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(interval_s)
            self.loop_lag_s = max(0.0, loop.time() - started - interval_s)
            self.loop_lag_max_s = max(self.loop_lag_max_s, self.loop_lag_s)

    def resolve_person(self, identifier: str, kind: str | None = None) -> str | None:
        """The person an identifier names (as the router would resolve it), or None."""
        kind = kind or self.settings.identify_by
        spec = self.topics.raw_events
        partition = partition_for(identifier.encode(), spec.partitions)
        alias = self.state.tables[ALIASES].get(partition, f"{kind}:{identifier}")
        if alias is not None:
            return alias
        return identifier if kind == self.settings.identify_by else None

    def deadletter(self, unit: UnitOfWork, *, topic: str, partition: int, offset: int,
                   key: bytes | None, value: bytes | None, error: str,
                   index: int | None = None) -> None:
        """Send an unprocessable record (or one item of it) aside, with its provenance."""
        headers = [
            ("origin.topic", topic.encode()),
            ("origin.partition", str(partition).encode()),
            ("origin.offset", str(offset).encode()),
            ("error", error.encode()[:4000]),
        ]
        if index is not None:
            headers.append(("origin.index", str(index).encode()))
        spec = self.topics.deadletter
        target = partition_for(key or b"", spec.partitions)
        unit.send(OutRecord(spec.name, target, key, value, headers))
        self.counters["deadletters"] += 1
        log.warning("dead-lettered %s[%d]@%d%s: %s", topic, partition, offset,
                    "" if index is None else f" item {index}", error)

    def discard_prepared(self) -> None:
        """A unit was prepared and will never be committed (its base's commit failed): forget
        what the caches learned from it. They are read again from the tables, which never held
        its writes; its inputs come again."""
        self.active_segments.clear()
        self.deleted_segments.clear()
        self.definitions_watch.clear()
        self.raw_handled.clear()
        self.arrived_definitions.clear()

    async def commit(self, unit: UnitOfWork) -> None:
        """Persist a unit of work; retries while the broker is away, never skips.

        Giving up would let faust acknowledge the batch (its ``take`` acks in a ``finally``), which
        is silent loss. So a worker that cannot persist keeps trying and, if it is being stopped
        meanwhile, exits hard: its inputs stay uncommitted and are redelivered. A unit whose
        partition changed hands meanwhile raises :class:`tables.state.OwnershipChanged`: the
        agent leaves its inputs unacknowledged (``agents/batches.py``).
        """
        delay = 0.2
        while True:
            try:
                await self.state.commit(unit)
                return
            except BrokerUnavailable as exc:
                log.error("commit failed, retrying in %.1fs: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except asyncio.CancelledError:
                log.error("stopped while a batch was uncommitted; exiting so it is redelivered")
                os._exit(3)
            except Exception:
                # Not retried: its inputs are not acknowledged and come again; a read waiting
                # for its state (``StateManager.written``) must not wait for it.
                self.state.drop(unit)
                raise
