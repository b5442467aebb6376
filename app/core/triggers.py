"""Customer.io's campaign-trigger rule and the reserved event-data fields.

Customer.io lets an event trigger campaigns only when it is stamped within the past 72 hours, so
back-filled history never sends messages. Three data fields are reserved: ``recipient``,
``from_address`` and ``reply_to`` override the To / From / Reply-To of messages the event
triggers (mostly used for anonymous and invite events).

A *trigger record* is what the event processor hands to campaign evaluation::

    {"trigger_id", "event_id", "person_id", "name", "data", "timestamp", "overrides"}

``trigger_id`` equals the event id, so a redelivered event produces the same trigger and
downstream dedup on ``trigger_id`` makes triggering idempotent.
"""

from __future__ import annotations

from typing import Any, Mapping

#: Events older than this (by event time) must not trigger campaigns.
TRIGGER_HORIZON_S = 72 * 3600

#: Reserved data field -> the message header it overrides.
RESERVED_OVERRIDES: Mapping[str, str] = {
    "recipient": "to",
    "from_address": "from",
    "reply_to": "reply_to",
}


def is_fresh(event_timestamp_s: int, now_s: float) -> bool:
    """Whether an event stamped ``event_timestamp_s`` may still trigger campaigns at ``now_s``.

    The horizon is inclusive: an event exactly 72 hours old still triggers, one second older does
    not. Future-stamped events count as fresh; rejecting implausible future stamps is the job of
    input validation, not of this rule.
    """
    return now_s - event_timestamp_s <= TRIGGER_HORIZON_S


def extract_overrides(data: Mapping[str, Any]) -> dict[str, str]:
    """Map the reserved fields present in event ``data`` to message-header overrides.

    Only non-blank string values count: a ``null`` or empty ``recipient`` must not blank out the
    To address of a message, so such values are treated as absent.
    """
    overrides: dict[str, str] = {}
    for field, header in RESERVED_OVERRIDES.items():
        value = data.get(field)
        if isinstance(value, str) and value.strip():
            overrides[header] = value.strip()
    return overrides


def trigger_record(event: Mapping[str, Any], person_id: str) -> dict[str, Any]:
    """Build the trigger record for an identified ``event`` performed by ``person_id``.

    ``event`` is an event item (``id``, ``name``, ``data``, ``timestamp``). The reserved fields
    stay in ``data`` as well, because templates may still reference ``{{event.recipient}}``.
    ``data`` is copied so the record never aliases (and later mutation never leaks into) the input.
    """
    data = dict(event.get("data") or {})
    return {
        "trigger_id": event["id"],
        "event_id": event["id"],
        "person_id": person_id,
        "name": event["name"],
        "data": data,
        "timestamp": event.get("timestamp"),
        "overrides": extract_overrides(data),
    }
