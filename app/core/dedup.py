"""Exact deduplication by event id, with redelivery told apart from duplication.

``seen`` maps an event id to ``[expires_ms, partition, offset, index]``: where the id was first
delivered. Kafka redelivering that same record (same partition, offset and index inside the batch
envelope) is a *redelivery*: its processing runs again, idempotently, and re-sends its outputs.
Any other record carrying a seen id is a *duplicate* and stops here (DATAFLOW rule 2).

An id is remembered for the horizon after the later of its ULID time and its first delivery: the
horizon is judged by the ULID's own timestamp, but a client may send an old ULID (the seed
document's example id is from 2017), and such an id must still be deduplicated for a full horizon.
"""

from __future__ import annotations

from enum import Enum


Ref = tuple[int, int, int]          # (partition, offset, index within the record)
Seen = dict[str, list[int]]


class Verdict(str, Enum):
    NEW = "new"
    REDELIVERY = "redelivery"
    DUPLICATE = "duplicate"


_CROCKFORD = {c: i for i, c in enumerate("0123456789ABCDEFGHJKMNPQRSTVWXYZ")}


def ulid_ms(event_id: str) -> int:
    """The ULID's timestamp: its first 10 characters, base32 (hot path: no ULID object)."""
    value = 0
    for char in event_id[:10]:
        value = value * 32 + _CROCKFORD[char]
    return value


def classify(seen: Seen, event_id: str, ref: Ref) -> Verdict:
    entry = seen.get(event_id)
    if entry is None:
        return Verdict.NEW
    return Verdict.REDELIVERY if tuple(entry[1:]) == ref else Verdict.DUPLICATE


def remember(seen: Seen, event_id: str, ref: Ref, *, now_ms: int, horizon_ms: int) -> Seen:
    """Return ``seen`` with ``event_id`` first delivered at ``ref`` (a new dict)."""
    expires = max(ulid_ms(event_id), now_ms) + horizon_ms
    return {**seen, event_id: [expires, *ref]}


def prune(seen: Seen, now_ms: int) -> Seen:
    """Forget ids whose horizon has passed; returns ``seen`` itself when nothing expired."""
    if all(entry[0] > now_ms for entry in seen.values()):
        return seen
    return {event_id: entry for event_id, entry in seen.items() if entry[0] > now_ms}
