"""The records that travel on eventide's topics, and their wire codec.

A raw-topic record is a *batch envelope*: ``{"items": [item, ...]}``, every item belonging to a key
that hashes to the record's partition. The HTTP tier coalesces concurrent requests into one envelope
per partition, which is what lets one faust worker keep up: faust spends ~60 µs of framework time per
Kafka record (measured here: 17k records/s with an empty agent), so the per-record cost is paid once
per batch instead of once per event. A bare item (a JSON object with ``op``) is accepted too, so a
plain Kafka producer can write one event per record.

Items (plain dicts, JSON on the wire, validated at the HTTP boundary):

``{"op": "event", "id", "name", "type", "data", "timestamp", "customer" | "anonymous_id", "received_at"}``
    ``timestamp`` is event time in Unix seconds; ``received_at`` is accept time in milliseconds.
``{"op": "identify", "id", "customer", "attributes", "anonymous_id", "timestamp", "update", "received_at"}``
    ``timestamp`` is the sender's ``_timestamp`` (or ``None``): it orders attribute writes.

A stored activity (history entry) is ``{"id", "name", "type", "data", "timestamp", "processed_at"}``
with ``processed_at`` in Unix seconds (``None`` while anonymous).
"""

from __future__ import annotations

from typing import Any, Iterable

import orjson

from tables.json_bytes import json_bytes

Item = dict[str, Any]

EVENT_TYPES = ("event", "page", "screen")
#: An event's name (a page's URL included), in UTF-8 bytes. These are the limits items are held
#: to wherever they enter (HTTP bodies, CSV rows, a producer's own records); every other field's
#: limits are described in app.ingest.fields.
MAX_NAME_BYTES = 100
#: A person or anonymous identifier, in UTF-8 bytes.
MAX_IDENTIFIER_BYTES = 150


class DecodeError(ValueError):
    """A record on a topic could not be decoded into items."""


def encode_envelope(items: Iterable[Item]) -> bytes:
    return json_bytes({"items": list(items)})


#: A record's items are processed in one unit of work, so one record bounds a unit from below:
#: eventide's own records hold at most 500; a producer's envelope may hold this many.
MAX_ITEMS_PER_ENVELOPE = 10_000


def decode_envelope(value: bytes | None) -> list[Item]:
    """Return the items of a raw-topic record, or raise :class:`DecodeError` with the reason."""
    if value is None:
        raise DecodeError("record has no value")
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"value is not JSON: {exc}") from exc
    if isinstance(doc, dict) and "items" in doc:
        items = doc["items"]
        if not isinstance(items, list):
            raise DecodeError("'items' is not a list")
    elif isinstance(doc, dict) and "op" in doc:
        items = [doc]
    else:
        raise DecodeError("value is neither an envelope {'items': [...]} nor an item with 'op'")
    if len(items) > MAX_ITEMS_PER_ENVELOPE:
        raise DecodeError(f"envelope holds {len(items)} items; at most {MAX_ITEMS_PER_ENVELOPE} "
                          "(split it into several records)")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise DecodeError(f"items[{index}] is not an object")
    return items
