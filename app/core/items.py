"""Routing an item from a raw topic: check its shape, fill in what a plain Kafka producer may omit.

Items written by the HTTP tier are already validated; items a Kafka producer writes directly are
checked here with the same limits, so nothing malformed reaches the person stage. An item that
fails is dead-lettered with its provenance; the rest of its record goes on.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from ulid import ULID

from app.model import EVENT_TYPES, MAX_IDENTIFIER_BYTES, MAX_NAME_BYTES

#: 26 Crockford base32 characters hold 130 bits; a ULID is 128, so the first is at most ``7``.
_ULID = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")


#: ULIDs hold 48 bits of milliseconds.
_MAX_ULID_MS = 1 << 48


class BadItem(ValueError):
    """The item can't be processed; the message says why."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def canonical_ulid(value: str) -> str | None:
    """The canonical (upper-case) form of a ULID, or None when ``value`` is not one: what
    python-ulid's ``str(ULID.from_str(value))`` answers, without decoding the 128 bits and
    encoding them again (that round trip was 9% of a worker's time taking HTTP batches). ASCII
    only, so that no character upper-cases into a valid one (``"ſ".upper() == "S"``)."""
    if not value.isascii():
        return None
    upper = value.upper()
    return upper if _ULID.fullmatch(upper) else None


def _ulid(value: Any) -> str:
    """The canonical form of a ULID, or :class:`BadItem`."""
    canonical = canonical_ulid(value) if isinstance(value, str) else None
    if canonical is None:
        raise BadItem("id: must be a ULID (26 Crockford base32 characters, the first 0-7)")
    return canonical


def new_id() -> str:
    """A fresh event id for an item accepted without one (a ULID: time-ordered, unique)."""
    return str(ULID())


def derived_id(ts_ms: int, seed: str) -> str:
    """A ULID with time ``ts_ms`` whose random part is a hash of ``seed``: same seed, same id."""
    digest = hashlib.blake2b(seed.encode(), digest_size=10).digest()
    return str(ULID.from_bytes(ts_ms.to_bytes(6, "big") + digest))


def id_for_position(topic: str, partition: int, offset: int, index: int, ts_ms: int) -> str:
    """A ULID derived from where an item sits in the log, so a redelivery gets the same id."""
    return derived_id(ts_ms, f"{topic}/{partition}/{offset}/{index}")


def _identifier(item: dict[str, Any], field: str) -> str:
    value = item.get(field)
    if not isinstance(value, str) or not value.strip():
        raise BadItem(f"{field}: must be a non-blank string")
    if len(value.encode()) > MAX_IDENTIFIER_BYTES:
        raise BadItem(f"{field}: longer than {MAX_IDENTIFIER_BYTES} bytes")
    return value


IDENTIFIER_KINDS = ("id", "email", "cio_id")


def _reference(value: Any, field: str) -> tuple[str, str]:
    """A person reference ``{"id": ...}``, ``{"email": ...}`` or ``{"cio_id": ...}``."""
    if not isinstance(value, dict) or len(value) != 1:
        raise BadItem(f"{field}: must be an object with exactly one of id, email, cio_id")
    [(kind, identifier)] = value.items()
    if kind not in IDENTIFIER_KINDS:
        raise BadItem(f"{field}: unknown identifier kind {kind!r}")
    _identifier({f"{field}.{kind}": identifier}, f"{field}.{kind}")
    return kind, identifier


def reference(value: Any, field: str) -> tuple[str, str]:
    return _reference(value, field)


def normalize(item: dict[str, Any], *, topic: str, partition: int, offset: int, index: int,
              record_ts_ms: int, identifier_field: str) -> dict[str, Any]:
    """Return the item ready for routing, or raise :class:`BadItem`."""
    op = item.get("op")
    if op not in ("event", "identify", "merge", "delete"):
        raise BadItem(f"op: unknown action {op!r}")
    if op == "merge":
        for side in ("primary", "secondary"):
            _reference(item.get(side), side)
    else:
        _identifier(item, identifier_field)
    out = dict(item)
    received_at = item.get("received_at")
    if received_at is None:
        out["received_at"] = received_at = record_ts_ms
    elif not _is_int(received_at) or not 0 <= received_at < _MAX_ULID_MS:
        raise BadItem("received_at: must be an integer of milliseconds since the epoch")
    event_id = item.get("id")
    if event_id is None:
        out["id"] = id_for_position(topic, partition, offset, index, received_at)
    else:
        out["id"] = _ulid(event_id)
    if op in ("merge", "delete"):
        return out
    if op == "identify":
        if not isinstance(item.get("attributes", {}), dict):
            raise BadItem("attributes: must be an object")
        sent = item.get("timestamp")
        if sent is not None and (not _is_int(sent) or sent < 0):
            raise BadItem("timestamp: must be a non-negative integer (Unix seconds)")
        out.setdefault("attributes", {})
        return out
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise BadItem("name: must be a non-blank string")
    out["name"] = name = name.strip()
    if len(name.encode()) > MAX_NAME_BYTES:
        raise BadItem(f"name: longer than {MAX_NAME_BYTES} bytes")
    out.setdefault("type", "event")
    if out["type"] not in EVENT_TYPES:
        raise BadItem(f"type: must be one of {', '.join(EVENT_TYPES)}")
    data = out.setdefault("data", {})
    if not isinstance(data, dict):
        raise BadItem("data: must be an object")
    timestamp = out.setdefault("timestamp", received_at // 1000)
    if not _is_int(timestamp) or timestamp < 0:
        raise BadItem("timestamp: must be a non-negative integer (Unix seconds)")
    return out
