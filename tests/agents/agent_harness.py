"""A worker's runtime without a broker, for agents driven through faust's ``test_context()``.

The producer's ``send_all`` is replaced by a recorder (it can also be made to fail), commits are
counted so a test can wait until none is in flight, and every table partition counts as
recovered (there is no changelog to read). State lives in a real RocksDB in ``tmp_path``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Sequence

from app.clock import ManualClock
from app.person_store import stored_history, stored_ids
from app.producer import BrokerUnavailable, OutRecord
from app.settings import Settings
from app.topics import DEDUP, HISTORY
from app.wiring import create_app


def person_table(tables: dict[str, Any], table: str, partition: int, key: str) -> Any:
    """A table's value for ``key``, with a person's per-event keys gathered as one value (the
    history as a list oldest first, the dedup ids as a map); None when there is nothing."""
    if table == HISTORY:
        return stored_history(tables, partition, key) or None
    if table == DEDUP:
        return stored_ids(tables, partition, key) or None
    return tables[table].get(partition, key)


def person_tables(tables: dict[str, Any], table: str, partition: int) -> dict[str, Any]:
    """Every key's value of ``table`` in ``partition``, per person for per-event tables."""
    if table not in (HISTORY, DEDUP):
        return dict(tables[table].store(partition).items())
    people = {key.split("\x1f", 1)[0] for key, _ in tables[table].store(partition).items()}
    return {person: person_table(tables, table, partition, person) for person in sorted(people)}


class OnTopic:
    """An agent reading several topics, whose ``test_context`` messages carry the name of one of
    them (faust names them ``<internal>`` otherwise, which no topic of ours is)."""

    def __init__(self, agent: Any, topic: str) -> None:
        self.agent, self.topic = agent, topic

    def test_context(self) -> Any:
        wrapper = self.agent.test_context()
        wrapper.original_channel = self.agent.app.topic(self.topic)
        return wrapper


@dataclass
class AgentHarness:
    app: Any
    rt: Any
    sent: list[OutRecord] = field(default_factory=list)
    #: every send_all call's records, in order
    calls: list[list[OutRecord]] = field(default_factory=list)
    commits: int = 0
    committing: int = 0
    #: make the next n send_all calls fail as if the broker did not acknowledge
    fail_next: int = 0
    #: called at each send_all, before it records or fails (to look at the store meanwhile)
    on_send: Callable[[Sequence[OutRecord]], None] | None = None

    def sent_to(self, topic: str) -> list[OutRecord]:
        return [r for r in self.sent if r.topic == topic]

    async def settle(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait (bounded) until ``condition`` holds and no commit is in progress."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (condition() and self.committing == 0):
            if loop.time() > deadline:
                raise AssertionError("timed out waiting for the agent")
            await asyncio.sleep(0.005)


async def agent_harness(tmp_path: Path, now_s: float,
                        kind: type[AgentHarness] = AgentHarness) -> AsyncIterator[Any]:
    """Yield a harness of ``kind`` around a fresh runtime; close its state afterwards."""
    settings = Settings(data_dir=tmp_path, partitions=4, app_key="a", site_id="s", api_key="k")
    app = create_app(settings, clock=ManualClock(now_s))
    app.finalize()
    rt = app.runtime
    h = kind(app, rt)

    async def send_all(records: Sequence[OutRecord]) -> list[int]:
        records = list(records)
        if h.on_send is not None:
            h.on_send(records)
        if h.fail_next:
            h.fail_next -= 1
            raise BrokerUnavailable("injected: no acks")
        h.calls.append(records)
        h.sent.extend(records)
        return list(range(len(h.sent) - len(records), len(h.sent)))

    rt.producer.send_all = send_all
    original_commit = rt.commit

    async def commit(unit: Any) -> None:
        h.committing += 1
        try:
            await original_commit(unit)
            h.commits += 1
        finally:
            h.committing -= 1

    rt.commit = commit
    rt.started.set()
    topics = rt.topics
    rt.state._recovered.update({(topic.name, p) for topic in
                                (topics.person_events, topics.raw_anonymous, topics.raw_events)
                                for p in range(settings.partitions)})
    try:
        yield h
    finally:
        rt.state.close()
