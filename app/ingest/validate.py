"""Validation and normalization of track API bodies into raw-topic items.

Pure functions: the HTTP tier passes the decoded body plus what only it knows (the customer id from
the path, the clock, an id source, the accept time) and gets back an item shaped as documented in
:mod:`app.model`, or a :class:`ValidationError` carrying *every* problem found, so a client can fix
a request in one round trip. Limits are the ones Customer.io publishes for its track API.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import orjson
from ulid import ULID

from app.model import EVENT_TYPES, Item

MAX_NAME_BYTES = 100
MAX_DATA_BYTES = 100_000
MAX_IDENTIFIER_BYTES = 150
MAX_ATTRIBUTE_NAME_BYTES = 150
MAX_ATTRIBUTE_VALUE_BYTES = 1_000
MAX_ATTRIBUTES = 300
MAX_FUTURE_SECONDS = 86_400
# Unix seconds reach 10**11 only in the year 5138, while "now" in milliseconds is ~1.7 * 10**12:
# anything at or above the threshold is a sender that forgot to divide by 1000.
MILLISECONDS_THRESHOLD = 10**11

EMAIL_OVERRIDE_FIELDS = ("recipient", "from_address", "reply_to")
IDENTIFY_RESERVED_KEYS = ("anonymous_id", "_timestamp", "_update")

_ADDRESS = r"[^\s@<>]+@[^\s@<>.]+(?:\.[^\s@<>.]+)+"
# The display name excludes control characters: these values end up in mail headers, and a CR/LF
# there would let a sender inject extra headers.
_EMAIL_RE = re.compile(rf"{_ADDRESS}|[^<>\x00-\x1f\x7f]*<{_ADDRESS}>")


@dataclass(frozen=True)
class FieldError:
    """One problem with one field; ``reason`` is a short machine word, ``message`` is for people."""

    field: str
    reason: str
    message: str

    def text(self) -> str:
        return f"{self.field}: {self.message}"


class ValidationError(ValueError):
    """A request body was rejected; ``errors`` lists every problem found, in field order."""

    def __init__(self, errors: Iterable[FieldError]) -> None:
        self.errors: list[FieldError] = list(errors)
        super().__init__("; ".join(self.messages()))

    def messages(self) -> list[str]:
        """The strings of the v1 error shape ``{"meta": {"errors": [...]}}``."""
        return [error.text() for error in self.errors]


# --- public API ---------------------------------------------------------------------------------


def validate_identifier(value: Any, field: str) -> str:
    """Return ``value`` if it is a usable person identifier, else raise :class:`ValidationError`.

    Identifiers are not trimmed: they are keys, and silently changing a key would split one
    person's history in two.
    """
    errors: list[FieldError] = []
    result = _check_identifier(value, field, errors)
    if errors:
        raise ValidationError(errors)
    return result


def validate_event(
    body: Any,
    *,
    customer: str | None,
    anonymous: bool,
    now_s: float,
    new_id: Callable[[], str],
    received_at_ms: int,
) -> Item:
    """Validate a v1 event body and return its ``op: event`` item.

    For an anonymous event (``anonymous=True``) the person is the body's ``anonymous_id`` and
    ``customer`` is ignored; otherwise ``customer`` is the path id.
    """
    errors: list[FieldError] = []
    if anonymous:
        person_key, person = "anonymous_id", None
    else:
        person_key, person = "customer", _check_identifier(customer, "customer_id", errors)
    if not isinstance(body, dict):
        errors.append(_not_an_object())
        raise ValidationError(errors)
    if anonymous:
        person = _check_identifier(body.get("anonymous_id"), "anonymous_id", errors)

    name = _check_name(body.get("name"), errors)
    event_type = _check_type(body.get("type"), errors)
    event_id = _check_id(body.get("id"), errors)
    timestamp = _check_timestamp(body.get("timestamp"), "timestamp", now_s, errors)
    data = _check_data(body.get("data"), errors)
    if errors:
        raise ValidationError(errors)
    return {
        "op": "event",
        "id": event_id if event_id is not None else new_id(),
        "name": name,
        "type": event_type,
        "data": data,
        "timestamp": timestamp if timestamp is not None else int(now_s),
        person_key: person,
        "received_at": received_at_ms,
    }


def validate_identify(
    body: Any,
    *,
    customer: str,
    now_s: float,
    new_id: Callable[[], str],
    received_at_ms: int,
) -> Item:
    """Validate a v1 identify body (``PUT /api/v1/customers/{id}``) and return its item."""
    errors: list[FieldError] = []
    customer = _check_identifier(customer, "customer_id", errors)
    if not isinstance(body, dict):
        errors.append(_not_an_object())
        raise ValidationError(errors)

    anonymous_id = body.get("anonymous_id")
    if anonymous_id is not None:
        anonymous_id = _check_identifier(anonymous_id, "anonymous_id", errors)
    timestamp = _check_timestamp(body.get("_timestamp"), "_timestamp", now_s, errors)
    update = _check_update(body.get("_update"), errors)
    attributes = {k: v for k, v in body.items() if k not in IDENTIFY_RESERVED_KEYS}
    _check_attributes(attributes, errors)
    if errors:
        raise ValidationError(errors)
    return {
        "op": "identify",
        "id": new_id(),
        "customer": customer,
        "attributes": attributes,
        "anonymous_id": anonymous_id,
        "timestamp": timestamp,
        "update": update,
        "received_at": received_at_ms,
    }


# --- field checks: each appends its problems to ``errors`` and returns the normalized value -------


def _not_an_object() -> FieldError:
    return FieldError("body", "type", "must be a JSON object")


def _utf8_len(text: str) -> int | None:
    """Byte length in UTF-8, or None for text that cannot be UTF-8 (lone surrogates)."""
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return None


#: Nesting allowed in event data and attribute values. Deeper documents are refused here because
#: the records that carry them add levels of their own, and orjson stops at 254.
MAX_DEPTH = 32


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` nests objects/arrays more than ``limit`` levels (iterative: no recursion
    limit of our own to hit)."""
    stack = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, dict):
            children = current.values()
        elif isinstance(current, list):
            children = current
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _json_len(value: Any) -> int | None:
    """Serialized size as the topic will carry it, or None if it cannot be serialized."""
    try:
        return len(orjson.dumps(value))
    except orjson.JSONEncodeError:
        return None


def _check_text(
    value: Any, field: str, max_bytes: int, errors: list[FieldError], *, what: str = ""
) -> None:
    """Append errors for a non-blank string of at most ``max_bytes`` UTF-8 bytes."""
    prefix = f"{what} " if what else ""
    if not isinstance(value, str):
        errors.append(FieldError(field, "type", f"{prefix}must be a string"))
        return
    if not value.strip():
        errors.append(FieldError(field, "required", f"{prefix}must not be blank"))
        return
    size = _utf8_len(value)
    if size is None:
        errors.append(FieldError(field, "invalid", f"{prefix}is not valid UTF-8"))
    elif size > max_bytes:
        message = f"{prefix}must be at most {max_bytes} bytes (got {size})"
        errors.append(FieldError(field, "too_long", message))


#: Control characters (C0 and DEL). Refused in identifiers: ids are keys, joined with separators
#: such as NUL and \x1f inside eventide's tables, and shown in headers and CSV files.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def _check_identifier(value: Any, field: str, errors: list[FieldError]) -> str:
    if value is None:
        errors.append(FieldError(field, "required", "is required"))
        return ""
    before = len(errors)
    _check_text(value, field, MAX_IDENTIFIER_BYTES, errors)
    if len(errors) == before and CONTROL_CHARACTERS.search(value):
        errors.append(FieldError(field, "invalid", "must not contain control characters"))
    return value


def _check_name(value: Any, errors: list[FieldError]) -> str:
    if value is None:
        errors.append(FieldError("name", "required", "is required"))
        return ""
    if isinstance(value, str):
        value = value.strip()
    _check_text(value, "name", MAX_NAME_BYTES, errors)
    return value


def _check_type(value: Any, errors: list[FieldError]) -> str:
    if value is None:
        return "event"
    if not isinstance(value, str) or value not in EVENT_TYPES:
        allowed = ", ".join(EVENT_TYPES)
        errors.append(FieldError("type", "invalid", f"must be one of {allowed}"))
    return value


def _check_id(value: Any, errors: list[FieldError]) -> str | None:
    """Return the canonical (upper-case) ULID, or None when absent so the caller mints one."""
    if value is None:
        return None
    if not isinstance(value, str):
        errors.append(FieldError("id", "type", "must be a ULID string"))
        return None
    try:
        return str(ULID.from_str(value))
    except ValueError:
        message = "must be a ULID (26 Crockford base32 characters)"
        errors.append(FieldError("id", "invalid", message))
        return None


def _check_timestamp(
    value: Any, field: str, now_s: float, errors: list[FieldError]
) -> int | None:
    """Unix seconds as an int; digit strings are accepted because form bodies only carry text."""
    if value is None:
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        # A digit string this long is too large whatever it says; int() would refuse > 4300 digits.
        digits = value.lstrip("0") or "0"
        value = int(digits) if len(digits) <= 20 else MILLISECONDS_THRESHOLD
    elif isinstance(value, str):
        errors.append(FieldError(field, "invalid", "must be Unix seconds (an integer)"))
        return None
    elif isinstance(value, bool) or not isinstance(value, int):
        errors.append(FieldError(field, "type", "must be Unix seconds (an integer)"))
        return None
    if value < 0:
        errors.append(FieldError(field, "invalid", "must not be negative"))
    elif value >= MILLISECONDS_THRESHOLD:
        message = "looks like milliseconds; send Unix seconds"
        errors.append(FieldError(field, "milliseconds", message))
    elif value > now_s + MAX_FUTURE_SECONDS:
        message = f"is more than {MAX_FUTURE_SECONDS} seconds in the future"
        errors.append(FieldError(field, "future", message))
    else:
        return value
    return None


def _check_data(value: Any, errors: list[FieldError]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors.append(FieldError("data", "type", "must be an object"))
        return {}
    if too_deep(value):
        errors.append(FieldError("data", "too_deep", f"nests deeper than {MAX_DEPTH} levels"))
        return {}
    size = _json_len(value)
    if size is None:
        errors.append(FieldError("data", "invalid", "cannot be serialized as JSON"))
    elif size > MAX_DATA_BYTES:
        message = f"must be at most {MAX_DATA_BYTES} bytes as JSON (got {size})"
        errors.append(FieldError("data", "too_long", message))
    for key in EMAIL_OVERRIDE_FIELDS:
        if key in value and not _looks_like_email(value[key]):
            message = "must be an email address (a@example.com or Name <a@example.com>)"
            errors.append(FieldError(f"data.{key}", "invalid", message))
    return value


def _looks_like_email(value: Any) -> bool:
    return isinstance(value, str) and _EMAIL_RE.fullmatch(value) is not None


def _check_update(value: Any, errors: list[FieldError]) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    errors.append(FieldError("_update", "invalid", "must be true or false"))
    return False


def _check_attributes(attributes: dict[str, Any], errors: list[FieldError]) -> None:
    if len(attributes) > MAX_ATTRIBUTES:
        message = f"must be at most {MAX_ATTRIBUTES} attributes (got {len(attributes)})"
        errors.append(FieldError("attributes", "too_many", message))
    for name, value in attributes.items():
        field = f"attributes.{name}"
        _check_text(name, field, MAX_ATTRIBUTE_NAME_BYTES, errors, what="name")
        _check_attribute_value(value, field, errors)


def _check_attribute_value(value: Any, field: str, errors: list[FieldError]) -> None:
    if too_deep(value):
        errors.append(FieldError(field, "too_deep", f"value nests deeper than {MAX_DEPTH} levels"))
        return
    # Strings count their text, not their JSON quoting/escaping: that is what a person sees.
    size = _utf8_len(value) if isinstance(value, str) else _json_len(value)
    if size is None:
        errors.append(FieldError(field, "invalid", "value cannot be serialized as JSON"))
    elif size > MAX_ATTRIBUTE_VALUE_BYTES:
        message = f"value must be at most {MAX_ATTRIBUTE_VALUE_BYTES} bytes (got {size})"
        errors.append(FieldError(field, "too_long", message))
