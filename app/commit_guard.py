"""Offsets faust may commit: never past a fetched record that no unit has processed.

faust commits, per partition, the first run of acknowledged offsets, where its gaps (offsets a
fetch went past: compaction, transaction markers) count as acknowledged. Two of its shortcuts
let that run start past a record nothing processed: with nothing committed yet, it takes the
first run wherever it starts; otherwise it takes a run starting one past the committed offset
(its check is ``min(acked) - committed > 1``). And it adds a gap only between two records read
in a row, so the offsets skipped right after a seek are never a gap (which that lenient check
then covers for one offset). A record dropped without a seek after it (a unit given up, an inbox
emptied) would be committed past, and lost, by the first shortcut.

:class:`CommitGuard` keeps, per partition, the next offset a fetch should bring (from the seek to
the committed offset, then from each record), so every skipped offset becomes a gap, exactly;
where a partition with nothing committed starts (its first record after the seek); and holds a
commit whose run does not start at the committed offset (or that start). A hold lasting
:data:`RESEEK_AFTER_S` means a record was dropped: the consumer fetches again from the committed
offsets (``BulkConsumer.seek_again``), which brings it back; what was processed after it comes
again as redeliveries, which are idempotent.
"""

from __future__ import annotations

from typing import Any, Callable, Container, Hashable, Mapping

#: How long a commit is held at a record never acknowledged before the partitions are fetched
#: again from their committed offsets (acknowledgements come in offset order: a hold at all is
#: a record dropped, and a couple of commit intervals rule out a race with an acknowledgement).
RESEEK_AFTER_S = 2.0
#: How long after one fetch-again another may be asked for the same held offset.
RESEEK_EVERY_S = 10.0


class CommitGuard:
    def __init__(self) -> None:
        #: partition → the next offset a fetch should bring (unknown until a seek or a record).
        self._next: dict[Hashable, int] = {}
        #: partition with nothing committed → the first offset fetched since the seek.
        self._starts: dict[Hashable, int] = {}
        #: partition → (held offset, held since, last fetch-again or None).
        self._held: dict[Hashable, tuple[int, float, float | None]] = {}

    def sought(self, committed: Mapping[Hashable, int | None]) -> None:
        """Every partition was sought to its committed offset (None or 0: nothing committed, so
        it starts where the reset policy puts it, learnt from its first record)."""
        self._next = {tp: offset for tp, offset in committed.items() if offset}
        self._starts.clear()
        self._held.clear()

    def fetched(self, tp: Hashable, offset: int) -> tuple[int, int] | None:
        """A record at ``offset`` was fetched and goes on to its agent: the offsets the fetch went
        past before it (first, last), if any."""
        expected = self._next.get(tp)
        self._next[tp] = offset + 1
        if expected is None:
            self._starts.setdefault(tp, offset)
            return None
        return (expected, offset - 1) if offset > expected else None

    def fetched_run(self, tp: Hashable, first: int, last: int) -> tuple[int, int] | None:
        """Records at every offset from ``first`` to ``last`` were fetched and go on to their
        agent: :meth:`fetched` for each of them, in one call."""
        skipped = self.fetched(tp, first)
        self._next[tp] = last + 1
        return skipped

    def start(self, tp: Hashable, committed: int | None) -> int | None:
        """The offset the partition's next commit must cover first (None: not known)."""
        return committed if committed else self._starts.get(tp)

    def hold(self, tp: Hashable, committed: int | None, acked: Container[int],
             in_gap: Callable[[int], bool], now: float) -> tuple[int | None, bool]:
        """Whether to hold the partition's commit: (the offset it waits at, or None to commit
        as faust would; whether to fetch again from the committed offsets now)."""
        start = self.start(tp, committed)
        if start is None or start in acked or in_gap(start):
            self._held.pop(tp, None)
            return None, False
        offset, since, reseek = self._held.get(tp, (start, now, None))
        if offset != start:
            offset, since, reseek = start, now, None
        due = now - since >= RESEEK_AFTER_S and (reseek is None or
                                                 now - reseek >= RESEEK_EVERY_S)
        self._held[tp] = (offset, since, now if due else reseek)
        return start, due

    def forget(self, tps: Any) -> None:
        """Partitions revoked: whatever was known of them is not any more."""
        for tp in tps:
            self._next.pop(tp, None)
            self._starts.pop(tp, None)
            self._held.pop(tp, None)
