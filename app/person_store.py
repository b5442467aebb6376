"""A person's stored events and dedup ids, one key each, read and written through a unit of work.

Every event costs the same few small reads and writes whatever the person's history holds
(issue #11: the whole history used to be decoded and re-written, and re-shipped through the
changelog, for each event):

* ``history``          ``<person>␟<timestamp:012d>␟<event id>`` → activity: the activity API's
  order (newest first by event time, then id) and the oldest-first order retention trims from;
* ``history_by_name``  ``<person>␟<name>␟<timestamp:012d>␟<event id>`` → activity: what a segment
  condition reads, by range (its event name, and from its window's start). A local index of
  ``history`` (:data:`HISTORY_INDEXES`): never in the changelog, derived wherever history is
  applied;
* ``activity_log``     ``a␟<processed_at>␟<person>␟<event id>`` and
  ``n␟<name>␟<processed_at>␟<person>␟<event id>`` → ``[timestamp, name, type]``: the workspace
  Activity Log's order (newest processed first, all events or one name's), a pointer to the
  ``history`` key. A local index of ``history`` too;
* ``history_size``     ``<person>`` → number of stored activities, for the count cap;
* ``dedup``            ``<person>␟<event id>`` → ``[expires_ms, partition, offset, index]``.

Dedup keys sort by ULID, so by the ids' own time: pruning (once per person per unit of work)
reads from a person's oldest id and stops at the first one still inside the horizon (an old ULID
sent late expires late: it holds the ones after it back only until it expires itself). An expired id is new again whether or not it has
been pruned yet, so pruning never changes a verdict.

The ``<person>␟`` prefix is the key group :meth:`tables.state.UnitOfWork.range` merges pending
writes by, so a unit reads its own writes in ranges too.
"""

from __future__ import annotations

import bisect
import functools
from typing import Any, Callable, Iterator, Protocol

import orjson

from app.core import history
from app.core.dedup import Entry
from app.core.person import Step
from app.topics import ACTIVITY_LOG, DEDUP, HISTORY, HISTORY_BY_NAME, HISTORY_SIZE
from tables.json_bytes import json_bytes
from tables.unit import UnitOfWork

Activity = dict[str, Any]
SEP = "\x1f"
#: Histories of at most this many events are read whole, once per unit, for evaluation.
SHORT_HISTORY = 32
#: Expired dedup ids forgotten per person per unit beyond the number it remembered: forgetting
#: outpaces remembering, while no unit pays for a long-idle person's whole backlog at once.
_PRUNE_PER_EVENT = 64


class TableAccess(Protocol):
    """What :class:`tables.state.UnitOfWork` offers (reads see pending writes)."""

    def get(self, table: str, partition: int, key: str) -> Any | None: ...
    def put(self, table: str, partition: int, key: str, value: Any) -> None: ...
    def delete(self, table: str, partition: int, key: str) -> None: ...
    def range(self, table: str, partition: int, start: str, stop: str, *,
              reverse: bool = False) -> Iterator[tuple[str, Any]]: ...


def _after(prefix: str) -> str:
    """The first key past every key that starts with ``prefix``."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


@functools.lru_cache(maxsize=16_384)  # (four keys per stored event; most share a few seconds)
def _stamp(timestamp: float) -> str:
    """Sorts as the time does: whole seconds (what the API stores) as 12 digits; a fraction, if
    any, follows as ``.digits``, which sorts after the whole second's own keys (``.`` > ``␟``)."""
    whole = int(timestamp)
    if timestamp == whole:
        return f"{whole:012d}"
    return f"{whole:012d}." + f"{timestamp - whole:.6f}"[2:].rstrip("0")


def _key_order(activity: Activity) -> tuple[str, str]:
    """How a person's events of one name sort in ``history_by_name``."""
    return _stamp(activity["timestamp"]), activity["id"]


def time_key(person: str, activity: Activity) -> str:
    return f"{person}{SEP}{_stamp(activity['timestamp'])}{SEP}{activity['id']}"


def name_key(person: str, activity: Activity) -> str:
    return (f"{person}{SEP}{activity['name']}{SEP}{_stamp(activity['timestamp'])}{SEP}"
            f"{activity['id']}")


def log_order(person: str, activity: Activity) -> str:
    """The Activity Log's sort key of a stored event: processed time, person, event id."""
    return (f"{_stamp(activity.get('processed_at') or 0)}{SEP}{person}{SEP}"
            f"{activity['id']}")


def log_entries(person: str, activity: Activity) -> list[tuple[str, list[Any]]]:
    """``activity_log`` keys of one stored event (every event, and its name's), and the pointer
    they hold: enough to filter by type and to read the event from ``history``."""
    order = log_order(person, activity)
    pointer = [activity["timestamp"], activity["name"], activity["type"]]
    return [(f"a{SEP}{order}", pointer), (f"n{SEP}{activity['name']}{SEP}{order}", pointer)]


def name_entries(person: str, activity: Activity) -> list[tuple[str, Any]]:
    return [(name_key(person, activity), activity)]


#: ``history``'s local indexes: index table → its entries for one stored activity. The one place
#: they are defined: a unit writes them as it stores or removes an event, and recovery and
#: standbys derive them as they apply history (:func:`history_index`).
HISTORY_INDEXES: dict[str, Callable[[str, Activity], list[tuple[str, Any]]]] = {
    HISTORY_BY_NAME: name_entries,
    ACTIVITY_LOG: log_entries,
}


class PruneSchedule:
    """When each person's oldest remembered id can expire first, as far as this worker knows.

    Forgetting expired ids is a range read per person per unit, and while nothing has expired it
    forgets nothing: with every person new each unit, those reads (RocksDB iterators, which seek
    through every memtable and level-0 file) were over a third of a worker's time draining a
    200k-event backlog. A prune stops at the first id not expired yet; until that id's expiry
    no prune can forget anything, because ids remembered later expire later still. So the time
    is a lower bound that stays true whoever writes the person next, skipping until then forgets
    exactly what pruning would, and the schedule is only a cache: bounded, oldest dropped first.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._due: dict[tuple[int, str], int] = {}

    def due(self, partition: int, person: str, now_ms: int) -> bool:
        return self._due.get((partition, person), 0) <= now_ms

    def note(self, partition: int, person: str, first_expiry_ms: int | None) -> None:
        """After a prune: the expiry of the first id it left (None: it stopped at its limit)."""
        slot = (partition, person)
        self._due.pop(slot, None)
        if first_expiry_ms is None:
            return
        self._due[slot] = first_expiry_ms
        if len(self._due) > self.capacity:
            del self._due[next(iter(self._due))]


class PersonEvents:
    """One person's events and dedup ids in one partition (an :class:`EventSource` too)."""

    def __init__(self, tables: UnitOfWork | TableAccess, partition: int, person: str,
                 schedule: PruneSchedule | None = None) -> None:
        #: A unit of work in a worker; any :class:`TableAccess` elsewhere (the API's
        #: :class:`StoredTables`, the tests' tables in memory). Named in the type, the unit's
        #: methods are called natively under mypyc, not through Python's method call, and a
        #: worker makes ~30 of these calls an item.
        self.tables: UnitOfWork | TableAccess = tables
        self.partition = partition
        self.person = person
        self.schedule = schedule
        self.prefix = person + SEP
        self._size: int | None = None
        self._remembered = 0
        self._now_ms = 0
        #: The earliest expiry of the ids remembered in this unit (see :meth:`first_unit`).
        self._earliest_ms: int | None = None
        self._first_unit = False
        #: name → that name's events newest first, read once and shared by every condition
        #: evaluated in this unit (dropped when the person's events of that name change).
        self._newest: dict[str, NewestFirst] = {}
        #: A short history read whole (see :meth:`_short`): name → its events, oldest first.
        self._by_name: dict[str, list[Activity]] | None = None

    # -- dedup -------------------------------------------------------------------------------

    def seen(self, event_id: str) -> Entry | None:
        return self.tables.get(DEDUP, self.partition, self.prefix + event_id)

    def remember(self, event_id: str, entry: Entry, now_ms: int) -> None:
        self._remembered += 1
        self._now_ms = now_ms
        if self._earliest_ms is None or entry[0] < self._earliest_ms:
            self._earliest_ms = entry[0]
        self.tables.put(DEDUP, self.partition, self.prefix + event_id, entry)

    def first_unit(self) -> None:
        """Nothing was stored under this person before this unit (no profile, no history: the
        input that says so is the person's first here).

        So the only ids a prune could read are this unit's, none of them expired yet (an id
        expires a horizon after the later of its time and now): with a schedule, :meth:`finish`
        notes the earliest of their expiries, which is what the prune would note, without the
        range read (an iterator seek; most people of a draining backlog are new). Not quite
        nothing in one case: a person whose every stored event aged out of history
        (``EVENTIDE_HISTORY_RETENTION_DAYS``) while its ids are still remembered. Those ids are
        then forgotten at the person's first unit after that earliest expiry, not at this one:
        later, never wrongly (an expired id is new again whether it was forgotten or not)."""
        self._first_unit = True

    def finish(self) -> None:
        """End of a unit of work: forget expired ids, as many as were remembered in it and then
        some, so the ids a person keeps stay bounded by the horizon (one range read per person
        per unit, not per event)."""
        if not self._remembered:
            return
        limit, now_ms = self._remembered + _PRUNE_PER_EVENT, self._now_ms
        self._remembered = 0
        schedule = self.schedule
        if schedule is None:
            self.prune_seen(now_ms, limit)
        elif self._first_unit:
            schedule.note(self.partition, self.person, self._earliest_ms)
        elif schedule.due(self.partition, self.person, now_ms):
            schedule.note(self.partition, self.person, self._prune(now_ms, limit)[1])

    def prune_seen(self, now_ms: int, limit: int = _PRUNE_PER_EVENT) -> int:
        """Forget up to ``limit`` of the oldest ids whose horizon has passed."""
        return self._prune(now_ms, limit)[0]

    def _prune(self, now_ms: int, limit: int) -> tuple[int, int | None]:
        """(ids forgotten, the expiry of the first id left; None if the limit stopped it)."""
        expired: list[str] = []
        first_left: int | None = None
        for key, entry in self.tables.range(DEDUP, self.partition, self.prefix,
                                            _after(self.prefix)):
            if entry[0] > now_ms:
                first_left = entry[0]
                break
            if len(expired) == limit:
                break
            expired.append(key)
        for key in expired:
            self.tables.delete(DEDUP, self.partition, key)
        return len(expired), first_left

    # -- history -----------------------------------------------------------------------------

    def size(self) -> int:
        if self._size is None:
            self._size = self.tables.get(HISTORY_SIZE, self.partition, self.person) or 0
        return self._size

    def _set_size(self, size: int) -> None:
        self._size = size
        if size:
            self.tables.put(HISTORY_SIZE, self.partition, self.person, size)
        else:
            self.tables.delete(HISTORY_SIZE, self.partition, self.person)

    def add(self, activity: Activity, *, now_s: float, retention: history.Retention) -> bool:
        """Store ``activity`` unless it is there already, then apply retention. True if added."""
        key = time_key(self.person, activity)
        if self.tables.get(HISTORY, self.partition, key) is not None:
            return False
        size = self.size()
        self.tables.put(HISTORY, self.partition, key, activity)
        self._newest.pop(activity["name"], None)
        for table, entries in HISTORY_INDEXES.items():
            for key, value in entries(self.person, activity):
                self.tables.put(table, self.partition, key, value)
        self._set_size(size + 1)
        self._keep_short(activity, known=self._by_name if size else {})
        self.trim(now_s=now_s, retention=retention)
        return True

    def _keep_short(self, added: Activity, known: "dict[str, list[Activity]] | None") -> None:
        """The short history read whole (:meth:`_short`), with ``added`` in it, when it is known
        without a read: read already in this unit, or empty before (a person's first event, the
        common case while a backlog of new people drains, needs no read at all)."""
        if known is None or self.size() > SHORT_HISTORY or SEP in self.person:
            self._by_name = None
            return
        name = added["name"]
        # A new list (a reader may still be walking the old one), in the by-name keys' order.
        events = list(known.get(name, ()))
        bisect.insort(events, added, key=_key_order)
        known[name] = events
        self._by_name = known

    def _remove(self, activity: Activity) -> None:
        self.tables.delete(HISTORY, self.partition, time_key(self.person, activity))
        self._newest.pop(activity["name"], None)
        self._by_name = None
        for table, entries in HISTORY_INDEXES.items():
            for key, _ in entries(self.person, activity):
                self.tables.delete(table, self.partition, key)

    def trim(self, *, now_s: float, retention: history.Retention) -> None:
        """Drop the oldest events past the count cap or the retention age (``history.prune``'s
        rule, applied from the oldest key: each removal is one read and the event's deletes)."""
        size = self.size()
        cutoff = now_s - retention.max_age_s if retention.max_age_s else None
        if size <= retention.max_events and cutoff is None:
            return
        removed = 0
        for _, activity in self.tables.range(HISTORY, self.partition, self.prefix,
                                             _after(self.prefix)):
            too_many = size - removed > retention.max_events
            if not too_many and (cutoff is None or activity["timestamp"] >= cutoff):
                break
            self._remove(activity)
            removed += 1
        if removed:
            self._set_size(size - removed)

    def _short(self) -> dict[str, list[Activity]] | None:
        """The whole history by name, if it has at most :data:`SHORT_HISTORY` events.

        An identify re-evaluates every segment over the attributes it changed, and those name
        hundreds of different events: one range read per name (an iterator seeking through every
        memtable and level-0 file) for a person with two events. Read whole once per unit, a
        short history answers them all; a long one is still read by name and window only.
        """
        if self._by_name is None:
            size = self.size()
            if size > SHORT_HISTORY or SEP in self.person:  # (ids never hold SEP; be safe)
                return None
            by_name: dict[str, list[Activity]] = {}
            if size:
                for _, activity in self.tables.range(HISTORY_BY_NAME, self.partition,
                                                     self.prefix, _after(self.prefix)):
                    by_name.setdefault(activity["name"], []).append(activity)
            self._by_name = by_name
        return self._by_name

    def names(self) -> dict[str, list[Activity]] | None:
        """The names of a short history's events (its events by name, read whole once:
        :meth:`_short`); None for a long one (an :class:`EventSource`)."""
        return self._short()

    def named(self, name: str, after: float | None) -> Iterator[Activity]:
        """Events called ``name`` in ``(timestamp, id)`` order, ``timestamp > after`` if given."""
        short = self._short()
        if short is not None:
            for activity in short.get(name, ()):
                if after is None or activity["timestamp"] > after:
                    yield activity
            return
        prefix = f"{self.prefix}{name}{SEP}"
        start = prefix if after is None else prefix + _stamp(max(after, 0))
        for _, activity in self.tables.range(HISTORY_BY_NAME, self.partition, start,
                                             _after(prefix)):
            # A name containing the separator shares a prefix with another: keep our own.
            if activity["name"] == name and (after is None or activity["timestamp"] > after):
                yield activity

    def newest(self, name: str, after: float | None) -> Iterator[Activity]:
        """:meth:`named`, newest first. The segments that mention an event name are evaluated
        one after another on the same person: they share one read of the name's newest events
        (each reads only as far back as its window and count need)."""
        short = self._short()
        if short is not None:
            for activity in reversed(short.get(name, ())):
                if after is not None and activity["timestamp"] <= after:
                    return
                yield activity
            return
        events = self._newest.get(name)
        if events is None:
            prefix = f"{self.prefix}{name}{SEP}"
            events = self._newest[name] = NewestFirst(self.tables.range(
                HISTORY_BY_NAME, self.partition, prefix, _after(prefix), reverse=True))
        for activity in events:
            if activity["name"] != name:
                continue  # a name containing the separator sorts among ours: not ours
            if after is not None and activity["timestamp"] <= after:
                return
            yield activity

    def all(self) -> list[Activity]:
        """Oldest first (merges and exports: the whole history, on purpose)."""
        return [activity for _, activity in self.tables.range(
            HISTORY, self.partition, self.prefix, _after(self.prefix))]

    def clear(self) -> None:
        """Remove every event and dedup id of the person (a delete, or a merge away)."""
        self._newest.clear()
        self._by_name = None
        for activity in self.all():
            self._remove(activity)
        self._set_size(0)
        for key, _ in list(self.tables.range(DEDUP, self.partition, self.prefix,
                                             _after(self.prefix))):
            self.tables.delete(DEDUP, self.partition, key)


class NewestFirst:
    """One range read of a name's events, newest first, that several readers can walk: each
    reads from the start, and the range is read only as far as the furthest reader went."""

    def __init__(self, rows: Iterator[tuple[str, Activity]]) -> None:
        self._rows = rows
        self._read: list[Activity] = []
        self._done = False

    def __iter__(self) -> Iterator[Activity]:
        read = self._read
        index = 0
        while True:
            if index < len(read):
                yield read[index]
                index += 1
                continue
            if self._done:
                return
            row = next(self._rows, None)
            if row is None:
                self._done = True
                return
            read.append(row[1])


def history_index() -> tuple[tuple[str, ...], Callable[[str, bytes | None, bytes | None],
                                                      list[tuple[str, str, bytes | None]]]]:
    """``history``'s local indexes as the state manager derives them while applying a changelog
    (a :data:`tables.state.Index`): each stored or removed event parsed once for all of
    :data:`HISTORY_INDEXES`, and an index value that is the event itself written as its stored
    bytes (recovery applies a changelog at tens of thousands of records a second)."""
    indexes = list(HISTORY_INDEXES.items())

    def derive(key: str, old: bytes | None, new: bytes | None
               ) -> list[tuple[str, str, bytes | None]]:
        person = key.split(SEP, 1)[0]
        writes: list[tuple[str, str, bytes | None]] = []
        if old is not None:
            activity = orjson.loads(old)
            for table, entries in indexes:
                writes += [(table, index_key, None) for index_key, _ in entries(person, activity)]
        if new is not None:
            activity = orjson.loads(new)
            encoded: dict[int, bytes] = {id(activity): new}
            for table, entries in indexes:
                for index_key, value in entries(person, activity):
                    raw = encoded.get(id(value))
                    if raw is None:
                        raw = encoded[id(value)] = json_bytes(value)
                    writes.append((table, index_key, raw))
        return writes
    return tuple(table for table, _ in indexes), derive


def store_step(stored: PersonEvents, event_id: str, result: Step, *, now_s: float,
               retention: history.Retention) -> None:
    """Write what a person step decided: the new id's dedup entry, and the event."""
    if result.remember is not None:
        stored.remember(event_id, result.remember, int(now_s * 1000))
    if result.activity is not None:
        stored.add(result.activity, now_s=now_s, retention=retention)


class StoredTables:
    """:class:`TableAccess` for readers outside a unit of work (the API, the console)."""

    def __init__(self, tables: dict[str, Any]) -> None:
        self._tables = tables

    def get(self, table: str, partition: int, key: str) -> Any | None:
        return self._tables[table].get(partition, key)

    def range(self, table: str, partition: int, start: str, stop: str, *,
              reverse: bool = False) -> Iterator[tuple[str, Any]]:
        return self._tables[table].store(partition).range(start, stop, reverse=reverse)

    def put(self, table: str, partition: int, key: str, value: Any) -> None:
        raise TypeError("read-only")

    def delete(self, table: str, partition: int, key: str) -> None:
        raise TypeError("read-only")


def stored_history(tables: dict[str, Any], partition: int, person: str) -> list[Activity]:
    """A person's history, oldest first, as the worker's tables hold it now."""
    return PersonEvents(StoredTables(tables), partition, person).all()


def stored_ids(tables: dict[str, Any], partition: int, person: str) -> dict[str, Entry]:
    """A person's remembered event ids and their dedup entries, as the tables hold them now."""
    prefix = person + SEP
    return {key[len(prefix):]: entry for key, entry in
            tables[DEDUP].store(partition).range(prefix, _after(prefix))}
