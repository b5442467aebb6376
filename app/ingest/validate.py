"""Validation and normalization of track API bodies into raw-topic items.

Pure functions: the HTTP tier passes the decoded body plus what only it knows (the customer id from
the path, the clock, an id source, the accept time) and gets back an item shaped as documented in
:mod:`app.model`, or a :class:`ValidationError` carrying *every* problem found, so a client can fix
a request in one round trip.

Which fields a body has, with their limits and patterns, is described once in
:mod:`app.ingest.fields` (the OpenAPI document and the CSV importer read the same descriptions);
this module says how each *kind* of field is checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import orjson

from app.core.items import canonical_ulid
from app.ingest.fields import (ATTRIBUTE_NAME, ATTRIBUTE_VALUE, CUSTOMER_ID, EMAIL_FIELDS,
                               EMAIL_RE, EVENT_FIELDS, IDENTIFY_FIELDS, MAX_ATTRIBUTES,
                               MAX_FUTURE_SECONDS, MAX_IDENTIFIER_BYTES, MILLISECONDS_THRESHOLD,
                               Field, Kind)
# Re-exported: other modules check keys and nesting by the same rules.
from app.ingest.fields import CONTROL_CHARACTERS as CONTROL_CHARACTERS
from app.ingest.fields import MAX_DEPTH as MAX_DEPTH
from app.model import Item

#: The identify body's reserved keys; every other key is an attribute.
IDENTIFY_RESERVED_KEYS = tuple(field.name for field in IDENTIFY_FIELDS)


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
        person_key, person = "customer", _check_identifier(customer, CUSTOMER_ID.name, errors)
    if not isinstance(body, dict):
        errors.append(_not_an_object())
        raise ValidationError(errors)
    if anonymous:
        person = _check_identifier(body.get("anonymous_id"), "anonymous_id", errors)
    values = _check_fields(_EVENT_CHECKS, body, errors, now_s)
    if errors:
        raise ValidationError(errors)
    event_id, timestamp = values["id"], values["timestamp"]
    return {
        "op": "event",
        "id": event_id if event_id is not None else new_id(),
        "name": values["name"],
        "type": values["type"],
        "data": values["data"],
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
    customer = _check_identifier(customer, CUSTOMER_ID.name, errors)
    if not isinstance(body, dict):
        errors.append(_not_an_object())
        raise ValidationError(errors)
    values = _check_fields(_IDENTIFY_CHECKS, body, errors, now_s)
    attributes = {k: v for k, v in body.items() if k not in IDENTIFY_RESERVED_KEYS}
    _check_attributes(attributes, errors)
    if errors:
        raise ValidationError(errors)
    return {
        "op": "identify",
        "id": new_id(),
        "customer": customer,
        "attributes": attributes,
        "anonymous_id": values["anonymous_id"],
        "timestamp": values["_timestamp"],
        "update": values["_update"],
        "received_at": received_at_ms,
    }


# --- checks by kind: each appends its problems to ``errors`` and returns the normalized value -----

#: ``check(field, value, errors, now_s)``; ``now_s`` is only read by timestamps.
Check = Callable[[Field, Any, list[FieldError], float], Any]


def _check_fields(
    checks: tuple[tuple[str, Field, Check], ...], body: dict[str, Any], errors: list[FieldError],
    now_s: float,
) -> dict[str, Any]:
    """Every field of a shape checked in order (so errors come in field order), by name."""
    # A plain loop: this runs for every event accepted, and a comprehension costs a frame more.
    values = {}
    for name, field, check in checks:
        values[name] = check(field, body.get(name), errors, now_s)
    return values


def _not_an_object() -> FieldError:
    return FieldError("body", "type", "must be a JSON object")


def _utf8_len(text: str) -> int | None:
    """Byte length in UTF-8, or None for text that cannot be UTF-8 (lone surrogates)."""
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return None


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value`` nests objects/arrays more than ``limit`` levels (iterative: no recursion
    limit of our own to hit)."""
    if not isinstance(value, (dict, list)):
        return False
    # Only containers go on the stack: scalars nest nothing, and most values are mostly scalars
    # (this runs for every event's data on the ingest path).
    stack = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if depth > limit:
            return True
        for child in current.values() if isinstance(current, dict) else current:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
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


def _check_identifier(value: Any, field: str, errors: list[FieldError]) -> str:
    """An identifier under any name (a path parameter, ``identifiers.email`` in v2)."""
    if value is None:
        errors.append(FieldError(field, "required", "is required"))
        return ""
    before = len(errors)
    _check_text(value, field, MAX_IDENTIFIER_BYTES, errors)
    if len(errors) == before and CONTROL_CHARACTERS.search(value):
        errors.append(FieldError(field, "invalid", "must not contain control characters"))
    return value


def _identifier(field: Field, value: Any, errors: list[FieldError], now_s: float) -> str | None:
    if value is None and not field.required:
        return None
    return _check_identifier(value, field.name, errors)


def _name(field: Field, value: Any, errors: list[FieldError], now_s: float) -> str:
    if value is None:
        errors.append(FieldError(field.name, "required", "is required"))
        return ""
    if isinstance(value, str):
        value = value.strip()
    _check_text(value, field.name, field.limit, errors)
    return value  # type: ignore[no-any-return]


def _choice(field: Field, value: Any, errors: list[FieldError], now_s: float) -> str:
    if value is None:
        return field.choices[0]
    if not isinstance(value, str) or value not in field.choices:
        allowed = ", ".join(field.choices)
        errors.append(FieldError(field.name, "invalid", f"must be one of {allowed}"))
    return value  # type: ignore[no-any-return]


def _ulid(field: Field, value: Any, errors: list[FieldError], now_s: float) -> str | None:
    """Return the canonical (upper-case) ULID, or None when absent so the caller mints one."""
    if value is None:
        return None
    if not isinstance(value, str):
        errors.append(FieldError(field.name, "type", "must be a ULID string"))
        return None
    canonical = canonical_ulid(value)
    if canonical is None:
        message = "must be a ULID (26 Crockford base32 characters, the first 0-7)"
        errors.append(FieldError(field.name, "invalid", message))
    return canonical


def _timestamp(field: Field, value: Any, errors: list[FieldError], now_s: float) -> int | None:
    """Unix seconds as an int; digit strings are accepted because form bodies only carry text."""
    if value is None:
        return None
    name = field.name
    if isinstance(value, str) and value.isascii() and value.isdigit():
        # A digit string this long is too large whatever it says; int() would refuse > 4300 digits.
        digits = value.lstrip("0") or "0"
        value = int(digits) if len(digits) <= 20 else MILLISECONDS_THRESHOLD
    elif isinstance(value, str):
        errors.append(FieldError(name, "invalid", "must be Unix seconds (an integer)"))
        return None
    elif isinstance(value, bool) or not isinstance(value, int):
        errors.append(FieldError(name, "type", "must be Unix seconds (an integer)"))
        return None
    if value < 0:
        errors.append(FieldError(name, "invalid", "must not be negative"))
    elif value >= MILLISECONDS_THRESHOLD:
        message = "looks like milliseconds; send Unix seconds"
        errors.append(FieldError(name, "milliseconds", message))
    elif value > now_s + MAX_FUTURE_SECONDS:
        message = f"is more than {MAX_FUTURE_SECONDS} seconds in the future"
        errors.append(FieldError(name, "future", message))
    else:
        return value  # type: ignore[no-any-return]
    return None


def _data(field: Field, value: Any, errors: list[FieldError], now_s: float) -> dict[str, Any]:
    name = field.name
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors.append(FieldError(name, "type", "must be an object"))
        return {}
    if too_deep(value):
        errors.append(FieldError(name, "too_deep", f"nests deeper than {MAX_DEPTH} levels"))
        return {}
    size = _json_len(value)
    if size is None:
        errors.append(FieldError(name, "invalid", "cannot be serialized as JSON"))
    elif size > (limit := field.limit):
        message = f"must be at most {limit} bytes as JSON (got {size})"
        errors.append(FieldError(name, "too_long", message))
    for email in EMAIL_FIELDS:
        if email.name in value and not _looks_like_email(value[email.name]):
            message = "must be an email address (a@example.com or Name <a@example.com>)"
            errors.append(FieldError(f"{name}.{email.name}", "invalid", message))
    return value


def _looks_like_email(value: Any) -> bool:
    return isinstance(value, str) and EMAIL_RE.fullmatch(value) is not None


def _flag(field: Field, value: Any, errors: list[FieldError], now_s: float) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"  # type: ignore[no-any-return]
    errors.append(FieldError(field.name, "invalid", "must be true or false"))
    return False


# Read once: attributes are checked one by one, up to MAX_ATTRIBUTES per identify.
_ATTRIBUTE_NAME_BYTES = ATTRIBUTE_NAME.limit
_ATTRIBUTE_NAME_WHAT = ATTRIBUTE_NAME.name
_ATTRIBUTE_VALUE_BYTES = ATTRIBUTE_VALUE.limit


def _check_attributes(attributes: dict[str, Any], errors: list[FieldError]) -> None:
    if len(attributes) > MAX_ATTRIBUTES:
        message = f"must be at most {MAX_ATTRIBUTES} attributes (got {len(attributes)})"
        errors.append(FieldError("attributes", "too_many", message))
    for name, value in attributes.items():
        field = f"attributes.{name}"
        _check_text(name, field, _ATTRIBUTE_NAME_BYTES, errors, what=_ATTRIBUTE_NAME_WHAT)
        _check_attribute_value(value, field, errors)


def _check_attribute_value(value: Any, field: str, errors: list[FieldError]) -> None:
    limit = _ATTRIBUTE_VALUE_BYTES
    if too_deep(value):
        errors.append(FieldError(field, "too_deep", f"value nests deeper than {MAX_DEPTH} levels"))
        return
    # Strings count their text, not their JSON quoting/escaping: that is what a person sees.
    size = _utf8_len(value) if isinstance(value, str) else _json_len(value)
    if size is None:
        errors.append(FieldError(field, "invalid", "value cannot be serialized as JSON"))
    elif size > limit:
        message = f"value must be at most {limit} bytes (got {size})"
        errors.append(FieldError(field, "too_long", message))


#: How each kind of field is checked (attributes are checked as a whole: their names are free).
CHECKS: dict[Kind, Check] = {
    "identifier": _identifier, "name": _name, "choice": _choice, "ulid": _ulid,
    "timestamp": _timestamp, "data": _data, "flag": _flag,
}


def _bind(fields: tuple[Field, ...]) -> tuple[tuple[str, Field, Check], ...]:
    return tuple((field.name, field, CHECKS[field.kind]) for field in fields)


_EVENT_CHECKS = _bind(EVENT_FIELDS)
_IDENTIFY_CHECKS = _bind(IDENTIFY_FIELDS)
