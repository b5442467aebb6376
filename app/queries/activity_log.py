"""The workspace Activity Log: everyone's activity, newest processed first (bearer app key).

``GET /api/v1/activities?type=&name=&customer=&anonymous=&before=&limit=``

Identified activity is read from ``activity_log``, a local index of ``history`` per partition by
processed time (:mod:`app.person_store`): a page costs ``limit + 1`` index entries and as many
point reads per worker, however many events are stored. ``name`` reads the index's per-name keys,
so it costs the same; ``type`` alone filters as it reads, at most :data:`MAX_SCAN` index entries
per worker per request (past that the page is cut short and ``next`` continues from there);
``customer`` reads that person's own history (bounded by the retention cap).

Every worker answers for the partitions it owns with at most ``limit + 1`` entries and how far it
read (``examined_to``); the receiving worker merges them by sort key (processed time, person,
event id) and keeps only what every worker has read past, so memory is bounded by ``limit + 1``
per worker and no page skips an entry. ``next`` is an opaque cursor for ``before``.

Anonymous activity (``anonymous=true``) has no processing time yet (``processed_at`` is null until
the id is identified): it is ordered by when it was received, from a bounded scan of at most
:data:`ANONYMOUS_SCAN_IDS` anonymous ids per worker (``complete: false`` when a worker stopped
there: the page is then the newest of what was scanned).
"""

from __future__ import annotations

import base64
import binascii
import heapq
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping

from aiohttp import web
from yarl import URL

from app.api import cluster
from app.api.responses import ApiError
from app.model import EVENT_TYPES
from app.person_store import SEP, PersonEvents, StoredTables, log_order, time_key
from app.producer import partition_for
from app.runtime import Runtime
from app.topics import ACTIVITY_LOG, ANONYMOUS_HISTORY, HISTORY

MAX_LIMIT = 200
DEFAULT_LIMIT = 50
#: Index entries one worker reads for one request when filtering by type alone.
MAX_SCAN = 20_000
#: Anonymous ids one worker reads for one anonymous page.
ANONYMOUS_SCAN_IDS = 5_000
PATH = "/api/v1/activities"

#: (sort key, public row): sort keys order the log, newest first when descending.
Entry = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class LogQuery:
    anonymous: bool = False
    type: str | None = None
    name: str | None = None
    customer: str | None = None
    before: str | None = None  # a sort key: entries strictly older
    limit: int = DEFAULT_LIMIT


@dataclass
class Share:
    """One worker's answer: its newest matching entries (at most limit + 1), and the lowest
    sort key it has read down to when it stopped before the end (None: it read everything)."""

    entries: list[Entry]
    examined_to: str | None = None
    complete: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"entries": [[key, row] for key, row in self.entries],
                "examined_to": self.examined_to, "complete": self.complete}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "Share":
        return cls([(str(key), row) for key, row in doc.get("entries", [])],
                   doc.get("examined_to"), bool(doc.get("complete", True)))


# --- cursors -------------------------------------------------------------------------------------


def encode_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        key = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValueError("not a cursor") from None
    if key.count(SEP) < 2:
        raise ValueError("not a cursor")
    return key


# --- merging -------------------------------------------------------------------------------------


def merge(shares: Iterable[Share], limit: int) -> tuple[list[Entry], str | None, bool]:
    """The page over every worker's share: (entries newest first, the sort key to continue
    before or None at the end, whether every share was complete).

    Only entries at or above the highest ``examined_to`` are certain: a worker that stopped
    there may hold more entries just below it, so the page ends there and continues from it.
    """
    shares = list(shares)
    bound = max((s.examined_to for s in shares if s.examined_to is not None), default=None)
    certain = [entry for share in shares for entry in share.entries
               if bound is None or entry[0] >= bound]
    certain.sort(key=lambda entry: entry[0], reverse=True)
    complete = all(share.complete for share in shares)
    if len(certain) > limit:
        return certain[:limit], certain[limit - 1][0], complete
    return certain, bound, complete


# --- one worker's share --------------------------------------------------------------------------


def _after(prefix: str) -> str:
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _public(activity: dict[str, Any], **who: Any) -> dict[str, Any]:
    row = {key: activity.get(key) for key in ("id", "name", "type", "data", "timestamp",
                                              "processed_at")}
    row.update(who)
    return row


def _person_of(order: str) -> tuple[str, str]:
    """(person, event id) of a sort key ``<processed>␟<person>␟<event id>``."""
    stamp_and_person, _, event_id = order.rpartition(SEP)
    return stamp_and_person.split(SEP, 1)[1], event_id


def _index_entries(store: Any, query: LogQuery) -> Iterator[tuple[str, list[Any]]]:
    """(sort key, pointer) of one partition's index, newest first, below ``query.before``."""
    prefix = f"a{SEP}" if query.name is None else f"n{SEP}{query.name}{SEP}"
    stop = _after(prefix) if query.before is None else prefix + query.before
    for key, pointer in store.range(prefix, stop, reverse=True):
        if query.name is not None and pointer[1] != query.name:
            continue  # a name containing the separator sorts among ours: not ours
        yield key[len(prefix):], pointer


def identified_share(tables: dict[str, Any], partitions: list[int], query: LogQuery,
                     max_scan: int = MAX_SCAN) -> Share:
    if query.customer is not None:
        return _person_share(tables, partitions, query)
    def tagged(partition: int) -> Iterator[tuple[str, list[Any], int]]:
        for key, pointer in _index_entries(tables[ACTIVITY_LOG].store(partition), query):
            yield key, pointer, partition

    merged = heapq.merge(*(tagged(p) for p in partitions), key=lambda entry: entry[0],
                         reverse=True)
    entries: list[Entry] = []
    scanned = 0
    for key, pointer, partition in merged:
        scanned += 1
        timestamp, name, type_ = pointer
        if query.type is None or type_ == query.type:
            person, event_id = _person_of(key)
            activity = tables[HISTORY].get(partition, time_key(person, {
                "timestamp": timestamp, "id": event_id}))
            if activity is not None:  # (removed since the index entry was read)
                entries.append((key, _public(activity, customer_id=person)))
                if len(entries) > query.limit:
                    return Share(entries, examined_to=key)
        if scanned >= max_scan:
            return Share(entries, examined_to=key)
    return Share(entries)


def _matches(activity: dict[str, Any], query: LogQuery) -> bool:
    return (query.type is None or activity.get("type") == query.type) and \
        (query.name is None or activity.get("name") == query.name)


def _newest(entries: Iterable[Entry], query: LogQuery) -> Share:
    found = heapq.nlargest(query.limit + 1, (e for e in entries
                                             if query.before is None or e[0] < query.before),
                           key=lambda entry: entry[0])
    return Share(found, examined_to=found[-1][0] if len(found) > query.limit else None)


def _person_share(tables: dict[str, Any], partitions: list[int], query: LogQuery) -> Share:
    """One person's activity (the caller passes the person's partition if it owns it)."""
    person = query.customer or ""
    entries: list[Entry] = []
    for p in partitions:
        for activity in PersonEvents(StoredTables(tables), p, person).all():
            if _matches(activity, query):
                entries.append((log_order(person, activity), _public(activity,
                                                                     customer_id=person)))
    return _newest(entries, query)


def _received_s(activity: dict[str, Any]) -> int:
    return int(activity.get("received_at") or 0) // 1000


def anonymous_share(tables: dict[str, Any], partitions: list[int], query: LogQuery,
                    max_ids: int = ANONYMOUS_SCAN_IDS) -> Share:
    """The newest anonymous activity, by received time, from a bounded scan of anonymous ids."""
    complete = True

    def rows(anonymous_id: str, state: dict[str, Any]) -> Iterator[Entry]:
        for activity in state.get("events", []):
            if _matches(activity, query):
                key = log_order(anonymous_id, {"processed_at": _received_s(activity),
                                               "id": activity["id"]})
                yield key, {**_public(activity, anonymous_id=anonymous_id),
                            "received_at": activity.get("received_at")}

    def scan() -> Iterator[Entry]:
        nonlocal complete
        seen = 0
        for p in partitions:
            store = tables[ANONYMOUS_HISTORY].store(p)
            if query.customer is not None:
                state = store.get(query.customer)
                if state is not None:
                    yield from rows(query.customer, state)
                continue
            for anonymous_id, state in store.items():
                if seen >= max_ids:
                    complete = False
                    return
                seen += 1
                yield from rows(anonymous_id, state)

    share = _newest(scan(), query)
    share.complete = complete
    return share


# --- the page --------------------------------------------------------------------------------


def parse_query(q: Mapping[str, str]) -> LogQuery:
    """The query of ``GET /api/v1/activities``'s parameters; every mistake in one 400."""
    errors = []
    type_ = q.get("type") or None
    if type_ is not None and type_ not in EVENT_TYPES:
        errors.append(f"type: must be one of {', '.join(EVENT_TYPES)}")
    anonymous_raw = (q.get("anonymous") or "false").lower()
    if anonymous_raw not in ("true", "false", "1", "0"):
        errors.append("anonymous: must be true or false")
    before = None
    if q.get("before"):
        try:
            before = decode_cursor(q["before"])
        except ValueError:
            errors.append("before: not a cursor this API returned")
    limit = DEFAULT_LIMIT
    if q.get("limit"):
        try:
            limit = int(q["limit"])
            if not 1 <= limit <= MAX_LIMIT:
                raise ValueError
        except ValueError:
            errors.append(f"limit: must be an integer between 1 and {MAX_LIMIT}")
    if errors:
        raise ApiError(400, *errors)
    return LogQuery(anonymous=anonymous_raw in ("true", "1"), type=type_,
                    name=q.get("name") or None, customer=q.get("customer") or None,
                    before=before, limit=limit)


def local_share(rt: Runtime, query: LogQuery) -> Share:
    tables = rt.state.tables
    if query.anonymous:
        topic = rt.topics.raw_anonymous
    else:
        topic = rt.topics.person_events
    owned = cluster.owned_partitions(rt, topic.name, topic.partitions)
    if query.customer is not None:
        mine = partition_for(query.customer.encode(), topic.partitions)
        owned = [p for p in owned if p == mine]
    if query.anonymous:
        return anonymous_share(tables, owned, query)
    return identified_share(tables, owned, query)


async def activity_log(rt: Runtime, request: web.Request, params: Mapping[str, str]
                       ) -> dict[str, Any]:
    """The merged page for the API's parameters ``params`` (a 400 for a bad one); each peer is
    asked for its share of the same page."""
    query = parse_query(params)
    path_qs = str(URL(PATH).with_query({**params, "share": "1"}))
    shares = [local_share(rt, query)]
    for answer in await cluster.gather(request, rt, path_qs):
        shares.append(Share.from_json(answer))
    entries, next_key, complete = merge(shares, query.limit)
    return {"activities": [row for _, row in entries],
            "next": None if next_key is None else encode_cursor(next_key),
            "complete": complete}
