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

_ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
_MAX_NAME_BYTES = 100
_MAX_ID_BYTES = 150
_EVENT_TYPES = ("event", "page", "screen")


class BadItem(ValueError):
    """The item can't be processed; the message says why."""


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
    if len(value.encode()) > _MAX_ID_BYTES:
        raise BadItem(f"{field}: longer than {_MAX_ID_BYTES} bytes")
    return value


def normalize(item: dict[str, Any], *, topic: str, partition: int, offset: int, index: int,
              record_ts_ms: int, identifier_field: str) -> dict[str, Any]:
    """Return the item ready for routing, or raise :class:`BadItem`."""
    op = item.get("op")
    if op not in ("event", "identify"):
        raise BadItem(f"op: unknown action {op!r}")
    _identifier(item, identifier_field)
    out = dict(item)
    received_at = item.get("received_at")
    if received_at is None:
        out["received_at"] = received_at = record_ts_ms
    elif not isinstance(received_at, int) or isinstance(received_at, bool):
        raise BadItem("received_at: must be an integer (ms)")
    event_id = item.get("id")
    if event_id is None:
        out["id"] = id_for_position(topic, partition, offset, index, received_at)
    elif not isinstance(event_id, str) or not _ULID.match(event_id.upper()):
        raise BadItem("id: must be a ULID")
    else:
        out["id"] = event_id.upper()
    if op == "identify":
        if not isinstance(item.get("attributes", {}), dict):
            raise BadItem("attributes: must be an object")
        out.setdefault("attributes", {})
        return out
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise BadItem("name: must be a non-blank string")
    out["name"] = name = name.strip()
    if len(name.encode()) > _MAX_NAME_BYTES:
        raise BadItem(f"name: longer than {_MAX_NAME_BYTES} bytes")
    out.setdefault("type", "event")
    if out["type"] not in _EVENT_TYPES:
        raise BadItem(f"type: must be one of {', '.join(_EVENT_TYPES)}")
    data = out.setdefault("data", {})
    if not isinstance(data, dict):
        raise BadItem("data: must be an object")
    timestamp = out.setdefault("timestamp", received_at // 1000)
    if not isinstance(timestamp, int) or isinstance(timestamp, bool) or timestamp < 0:
        raise BadItem("timestamp: must be a non-negative integer (Unix seconds)")
    return out
