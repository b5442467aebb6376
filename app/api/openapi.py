"""The HTTP API described as an OpenAPI 3.1 document, served at ``GET /openapi.json`` (no auth).

:func:`document` builds it from the running settings (body limit, partition count, import cap), so
the limits it states are the ones the server enforces. It is precise enough to drive a
property-based fuzzer (``tests/fuzz``) and the security suite, which walks every operation here.

Conventions worth knowing when reading it:

* Limits the server counts in **bytes of UTF-8** are written as ``maxLength`` (which counts
  characters) and say so in their description: a string of ``maxLength`` characters that are not
  all ASCII can still be refused with a 400.
* "Non-blank" is written as ``pattern: "\\S"`` (at least one non-whitespace character).
* Fields the server treats ``null`` as absent for are typed ``[..., "null"]``.
* Every ``GET`` also answers ``HEAD`` (aiohttp's default); those are not listed separately.
* The console (``/console/...``) is a browser UI (HTML pages, a sign-in form and a session cookie),
  not part of this API, and is not described here. The browser snippet's endpoints
  (``/api/v1/browser/{site_id}/...``, ``/js/track.js``) are: they authenticate with the public
  site id in the path alone (``x-eventide-credential: site_id``), add events, and answer CORS
  preflights; their identify, as with Customer.io's snippet, can set a person's attributes (email
  included) and link the browser's anonymous id, unless ``EVENTIDE_BROWSER_IDENTIFY=0`` turns it
  off (then it answers 403).
* The v1 error shape ``{"meta": {"errors": ["field: message", ...]}}`` is used by every endpoint
  for transport-level problems (401, 404, 405, 413, 415, 503, malformed JSON). The v2 endpoints
  answer *validation* problems in the v2 shape ``{"errors": [{"reason", "field", "message"}]}``
  (plus ``batch_index`` in a batch), so their 400/413 responses may be either shape.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from app.api.imports import max_import_bytes
from app.api import activity_log, people_search, segment_preview
from app.api.segments import MAX_SEGMENT_ID_BYTES
from app.api.v2 import ACTIONS, MAX_BATCH_BYTES, MAX_ENTITY_BYTES
from app.ingest.validate import (MAX_ATTRIBUTE_NAME_BYTES, MAX_ATTRIBUTE_VALUE_BYTES,
                                 MAX_ATTRIBUTES, MAX_DATA_BYTES, MAX_FUTURE_SECONDS,
                                 MAX_IDENTIFIER_BYTES, MAX_NAME_BYTES, MILLISECONDS_THRESHOLD)
from app.model import EVENT_TYPES
from app.segments.definition import (COUNT_KEYS, MAX_CONDITIONS, MAX_DEFINITION_BYTES,
                                     MAX_DEPTH)
from app.segments.operators import OPERATORS

OPENAPI_VERSION = "3.1.0"
API_VERSION = "0.1.0"

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"

_ULID_PATTERN = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$"
_ADDRESS = r"[^\s@<>]+@[^\s@<>.]+(?:\.[^\s@<>.]+)+"
_EMAIL_PATTERN = rf"^(?:{_ADDRESS}|[^<>\x00-\x1f\x7f]*<{_ADDRESS}>)$"
_DIGITS = "^[0-9]+$"
_NON_BLANK = r"\S"

BASIC = [{"trackBasic": []}]
BEARER = [{"appBearer": []}]
PUBLIC: list[dict[str, list[str]]] = []


#: A form body: every field name is a base name plus [segment] groups (a trailing [] appends to
#: a list); other brackets, and empty names, are a 400. Values are text.
_FORM: dict[str, Any] = {
    "type": "object",
    "description": ("Form-encoded. Bracketed names nest: data[cart][total]=5 is "
                    "{\"data\": {\"cart\": {\"total\": \"5\"}}}, a trailing [] appends to a list "
                    "(data[tags][]=a). Values stay text. A name used both as a value and as an "
                    "object is a 400."),
    "propertyNames": {"pattern": "^[^\\[\\]]+(\\[[^\\[\\]]+\\])*(\\[\\])?$"},
    "additionalProperties": {"type": "string"},
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _bytes_note(limit: int) -> str:
    return (f"At most {limit} bytes of UTF-8 (maxLength counts characters; the server counts "
            "bytes, so fewer non-ASCII characters fit).")


def _text(limit: int, what: str, *, blank_ok: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": limit,
                              "description": f"{what}. {_bytes_note(limit)}"}
    if not blank_ok:
        schema["pattern"] = _NON_BLANK
        schema["description"] += " Must not be blank (whitespace only)."
    return schema


#: Not blank, and no control characters (C0, DEL): identifiers and segment ids are keys.
_KEY_PATTERN = r"^(?=[\s\S]*\S)[^\x00-\x1f\x7f]*$"


def _key(limit: int, what: str) -> dict[str, Any]:
    schema = _text(limit, what)
    schema["pattern"] = _KEY_PATTERN
    schema["description"] += " No control characters."
    return schema


def _schemas(now_s: int) -> dict[str, Any]:
    identifier = _key(MAX_IDENTIFIER_BYTES, "A person identifier (used as a key: never trimmed)")
    timestamp = {
        "description": (
            "Event time in Unix seconds: an integer literal (1.0 is refused), or (as form bodies "
            "carry only text) a digit string. Refused when negative, at or above "
            f"{MILLISECONDS_THRESHOLD} (milliseconds), or more than {MAX_FUTURE_SECONDS} seconds "
            "in the future; the maximum stated here is the time this document was made. "
            "Default: now."),
        "anyOf": [
            {"type": "integer", "minimum": 0, "maximum": min(now_s, MILLISECONDS_THRESHOLD - 1)},
            {"type": "string", "pattern": _DIGITS},
            {"type": "null"},
        ],
    }
    email = {"type": "string", "pattern": _EMAIL_PATTERN,
             "description": "An email address: a@example.com or Name <a@example.com>."}
    event_data = {
        "type": ["object", "null"],
        "description": (
            f"Free-form event data. At most {MAX_DATA_BYTES} bytes as compact JSON. "
            "recipient, from_address and reply_to, when present, must be email addresses."),
        "properties": {"recipient": email, "from_address": email, "reply_to": email},
        "additionalProperties": True,
    }
    attribute_value = {
        "description": (f"An attribute value: at most {MAX_ATTRIBUTE_VALUE_BYTES} bytes (a string "
                        "counts its text, anything else its compact JSON)."),
        "anyOf": [
            {"type": "string", "maxLength": MAX_ATTRIBUTE_VALUE_BYTES},
            {"type": ["number", "boolean", "null"]},
            {"type": "array", "maxItems": 50},
            {"type": "object", "maxProperties": 50},
        ],
    }
    attribute_name = {
        "type": "string", "minLength": 1, "maxLength": MAX_ATTRIBUTE_NAME_BYTES,
        "pattern": _NON_BLANK,
        "description": f"An attribute name. {_bytes_note(MAX_ATTRIBUTE_NAME_BYTES)}",
    }
    update_flag = {
        "description": ("true: only update an existing person. Accepted either way; the "
                        "worker that processes it drops it, in log order, when the person does "
                        "not exist then (it never creates anyone). Form bodies send the text "
                        "true/false."),
        "anyOf": [{"type": "boolean"}, {"type": "string", "enum": ["true", "false"]},
                  {"type": "null"}],
    }
    event_properties = {
        "name": _text(MAX_NAME_BYTES, "The event name (trimmed)"),
        "id": {"type": ["string", "null"], "pattern": _ULID_PATTERN,
               "description": ("A ULID (26 Crockford base32 characters, any case). Events are "
                               "deduplicated by id; omitted, the server mints one.")},
        "type": {"enum": [*EVENT_TYPES, None], "description": "Default: event."},
        "timestamp": timestamp,
        "data": event_data,
    }
    form_event_properties = {
        "name": _text(MAX_NAME_BYTES, "The event name (trimmed)"),
        "id": {"type": "string", "pattern": _ULID_PATTERN, "description": "A ULID."},
        "type": {"type": "string", "enum": list(EVENT_TYPES)},
        "timestamp": {"type": "string", "pattern": _DIGITS,
                      "description": "Unix seconds (see the JSON body's timestamp)."},
    }
    person_reference = {
        "type": "object",
        "description": "Exactly one identifier of a person.",
        "minProperties": 1, "maxProperties": 1,
        "properties": {"id": identifier, "email": identifier, "cio_id": identifier},
        "additionalProperties": False,
    }
    entity_type = {"type": "string", "enum": ["person"], "default": "person",
                   "description": "Only person entities are supported."}
    within = {"type": "string", "pattern": "^[1-9][0-9]*[mhd]$",
              "description": "A rolling window: <n>m, <n>h or <n>d."}
    comparison_value = {"description": ("Required except for exists/not_exists (where it is "
                                        "refused); in takes a list, starts_with/ends_with a "
                                        "string, gt/gte/lt/lte a number or string.")}
    non_empty = {"type": "string", "minLength": 1}
    send_event = {
        "type": "object", "required": ["send_event"], "additionalProperties": False,
        "properties": {"send_event": {
            "type": "object", "required": ["name"], "additionalProperties": False,
            "properties": {"name": non_empty, "data": {"type": "object"}}}},
    }
    activity = {
        "type": "object",
        "required": ["id", "name", "type", "data", "timestamp", "processed_at"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "type": {"type": "string", "enum": list(EVENT_TYPES)},
            "data": {"type": "object"},
            "timestamp": {"type": "integer", "description": "Event time, Unix seconds."},
            "processed_at": {"type": ["integer", "null"],
                             "description": "Unix seconds; null while anonymous."},
        },
    }
    profile = {
        "type": "object",
        "required": ["id", "identifiers", "attributes", "anonymous_ids", "created_at",
                     "updated_at"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string"},
            "identifiers": {"type": "object", "required": ["id", "cio_id"],
                            "additionalProperties": {"type": "string"},
                            "properties": {"id": {"type": "string"},
                                           "cio_id": {"type": "string"},
                                           "email": {"type": "string"}}},
            "attributes": {"type": "object"},
            "anonymous_ids": {"type": "array", "items": {"type": "string"}},
            "created_at": {"type": "integer"},
            "updated_at": {"type": "integer"},
        },
    }
    return {
        # --- errors ---------------------------------------------------------------------------
        "Error": {
            "type": "object",
            "description": "The v1 (and read/admin) error shape: one 'field: message' per problem.",
            "required": ["meta"],
            "additionalProperties": False,
            "properties": {"meta": {
                "type": "object", "required": ["errors"], "additionalProperties": False,
                "properties": {"errors": {"type": "array", "minItems": 1,
                                          "items": {"type": "string"}}}}},
        },
        "V2FieldError": {
            "type": "object",
            "required": ["reason", "field", "message"],
            "additionalProperties": False,
            "properties": {
                "batch_index": {"type": "integer", "minimum": 0,
                                "description": "In a batch: the index of the entity at fault."},
                "reason": {"type": "string",
                           "description": "A short machine word: type, invalid, required, "
                                          "too_long, milliseconds, future, ..."},
                "field": {"type": "string"},
                "message": {"type": "string"},
            },
        },
        "V2Error": {
            "type": "object", "required": ["errors"], "additionalProperties": False,
            "properties": {"errors": {"type": "array", "minItems": 1,
                                      "items": _ref("V2FieldError")}},
        },
        "Empty": {"type": "object", "maxProperties": 0,
                  "description": "Accepted: the broker acknowledged the write."},
        # --- track v1 -------------------------------------------------------------------------
        "Identifier": identifier,
        "Timestamp": timestamp,
        "EventData": event_data,
        "TrackEvent": {
            "type": "object", "required": ["name"], "properties": event_properties,
            "description": "An event of the person named by the path. Unknown keys are ignored.",
        },
        "AnonymousEvent": {
            "type": "object", "required": ["name", "anonymous_id"],
            "properties": {**event_properties, "anonymous_id": identifier},
            "description": "An event of an anonymous visitor, linked on a later identify.",
        },
        "TrackEventForm": {
            **_FORM, "required": ["name"], "properties": form_event_properties,
        },
        "AnonymousEventForm": {
            **_FORM, "required": ["name", "anonymous_id"],
            "properties": {**form_event_properties,
                           "anonymous_id": _key(MAX_IDENTIFIER_BYTES, "The anonymous id")},
        },
        "Identify": {
            "type": "object",
            "description": (
                "Attributes to set, plus the reserved keys anonymous_id (link that visitor's "
                "activity), _timestamp (orders attribute writes) and _update. At most "
                f"{MAX_ATTRIBUTES} attributes."),
            "maxProperties": MAX_ATTRIBUTES + 3,
            "properties": {"anonymous_id": {**identifier, "type": ["string", "null"]},
                           "_timestamp": timestamp, "_update": update_flag},
            "propertyNames": attribute_name,
            "additionalProperties": attribute_value,
        },
        "IdentifyForm": {
            **_FORM,
            "description": _FORM["description"] + f" At most {MAX_ATTRIBUTES} attributes.",
            "maxProperties": MAX_ATTRIBUTES + 3,
            "properties": {"anonymous_id": _key(MAX_IDENTIFIER_BYTES, "The anonymous id"),
                           "_timestamp": {"type": "string", "pattern": _DIGITS},
                           "_update": {"type": "string", "enum": ["true", "false"]}},
            "additionalProperties": {"type": "string", "maxLength": MAX_ATTRIBUTE_VALUE_BYTES},
        },
        "MergeForm": {
            **_FORM,
            "description": "primary[id]=a&secondary[email]=b@example.com: one field per side.",
            "properties": {f"{side}[{kind}]": identifier for side in ("primary", "secondary")
                           for kind in ("id", "email", "cio_id")},
            "allOf": [{"oneOf": [{"required": [f"{side}[{kind}]"]}
                                 for kind in ("id", "email", "cio_id")]}
                      for side in ("primary", "secondary")],
            "additionalProperties": False,
        },
        "PersonReference": person_reference,
        "Merge": {
            "type": "object", "required": ["primary", "secondary"],
            "description": "Fold the secondary person into the primary one.",
            "properties": {"primary": _ref("PersonReference"),
                           "secondary": _ref("PersonReference")},
        },
        # --- track v2 -------------------------------------------------------------------------
        "PersonIdentifiers": {
            **person_reference,
            "description": "Exactly one of id, email, cio_id.",
        },
        "EventIdentifiers": {
            **person_reference,
            "description": "Exactly one of id, email, cio_id, anonymous_id.",
            "properties": {**person_reference["properties"], "anonymous_id": identifier},
        },
        "IdentifyEntity": {
            "type": "object", "required": ["action", "identifiers"],
            "properties": {
                "type": entity_type, "action": {"const": "identify"},
                "identifiers": _ref("PersonIdentifiers"),
                "attributes": {**_ref("Identify"), "description": "As the v1 identify body."},
                "timestamp": timestamp,
            },
        },
        "DeleteEntity": {
            "type": "object", "required": ["action", "identifiers"],
            "properties": {"type": entity_type, "action": {"const": "delete"},
                           "identifiers": _ref("PersonIdentifiers")},
        },
        "EventEntity": {
            "type": "object", "required": ["action", "identifiers", "name"],
            "properties": {
                "type": entity_type, "action": {"enum": ["event", "page", "screen"]},
                "identifiers": _ref("EventIdentifiers"),
                "name": event_properties["name"], "id": event_properties["id"],
                "timestamp": timestamp,
                "attributes": {**event_data, "description": "The event's data. "
                               + event_data["description"]},
            },
        },
        "MergeEntity": {
            "type": "object", "required": ["action", "primary", "secondary"],
            "properties": {"type": entity_type, "action": {"const": "merge"},
                           "primary": _ref("PersonReference"),
                           "secondary": _ref("PersonReference")},
        },
        "Entity": {
            "description": (f"One v2 entity (action one of {', '.join(ACTIONS)}). At most "
                            f"{MAX_ENTITY_BYTES} bytes as compact JSON."),
            "anyOf": [_ref("IdentifyEntity"), _ref("DeleteEntity"), _ref("EventEntity"),
                      _ref("MergeEntity")],
        },
        "Batch": {
            "type": "object", "required": ["batch"],
            "description": (f"At most {MAX_BATCH_BYTES} bytes (by Content-Length). Each entity "
                            "is checked on its own: the good ones are accepted, the bad ones "
                            "named in a 207."),
            "properties": {"batch": {"type": "array", "minItems": 1,
                                     "items": _ref("Entity")}},
        },
        # --- browser snippet ------------------------------------------------------------------
        "BrowserEvent": {
            "type": "object", "required": ["name"],
            "description": ("An event from a web page: of the person customer_id, else of the "
                            "visitor anonymous_id (one of the two is required)."),
            "properties": {**event_properties, "customer_id": identifier,
                           "anonymous_id": identifier},
            "anyOf": [{"required": ["customer_id"]}, {"required": ["anonymous_id"]}],
        },
        "BrowserPage": {
            "type": "object", "required": ["url"],
            "description": ("A page view, stored as an event of type page named by the URL (or "
                            "by name when url is absent); customer_id or anonymous_id as for "
                            "events."),
            "properties": {
                "url": _text(MAX_NAME_BYTES, "The page's URL (the event's name)"),
                **{k: v for k, v in event_properties.items() if k not in ("name", "type")},
                "customer_id": identifier, "anonymous_id": identifier},
            "anyOf": [{"required": ["customer_id"]}, {"required": ["anonymous_id"]}],
        },
        "BrowserIdentify": {
            "type": "object", "required": ["id"],
            "description": ("id names the person; every other key except anonymous_id and "
                            "_timestamp is an attribute. _update is refused from browsers."),
            "maxProperties": MAX_ATTRIBUTES + 3,
            "properties": {"id": identifier,
                           "anonymous_id": {**identifier, "type": ["string", "null"]},
                           "_timestamp": timestamp},
            "not": {"required": ["_update"]},
            "propertyNames": attribute_name,
            "additionalProperties": attribute_value,
        },
        # --- reads ----------------------------------------------------------------------------
        "Activity": activity,
        "ActivityPage": {
            "type": "object", "required": ["activities", "next"], "additionalProperties": False,
            "properties": {"activities": {"type": "array", "items": _ref("Activity")},
                           "next": {"type": ["string", "null"],
                                    "description": "The cursor of the next page, or null."}},
        },
        "LogActivity": {
            **activity,
            "properties": {
                **activity["properties"],
                "customer_id": {"type": "string", "description": "The person (identified)."},
                "anonymous_id": {"type": "string", "description": "The anonymous id."},
                "received_at": {"type": ["integer", "null"],
                                "description": "Unix ms it was accepted (anonymous activity's "
                                               "order)."}},
        },
        "AnonymousActivityPage": {
            "type": "object", "required": ["activities", "next", "identified_as"],
            "additionalProperties": False,
            "properties": {
                "activities": {"type": "array", "items": _ref("Activity"),
                               "description": "Activity that is still anonymous."},
                "next": {"type": ["string", "null"],
                         "description": "The cursor of the next page, or null."},
                "identified_as": {
                    "type": ["string", "null"],
                    "description": "The person an identify linked this anonymous id to (its "
                                   "activity moved to that person: read it at "
                                   "/api/v1/customers/{identified_as}/activities), or null "
                                   "while it is not identified."}},
        },
        "Profile": profile,
        "AttributeChange": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "old": {}, "new": {},
                           "at": {"type": ["integer", "number"]},
                           "source": {"type": "string"}, "id": {"type": "string"}},
        },
        # --- segments -------------------------------------------------------------------------
        "Condition": {
            "description": (f"A condition tree, at most {MAX_DEPTH} levels deep and "
                            f"{MAX_CONDITIONS} conditions (where tests included); the whole "
                            f"definition at most {MAX_DEFINITION_BYTES} bytes as JSON."),
            "anyOf": [
                {"type": "object", "required": ["all"], "additionalProperties": False,
                 "properties": {"all": {"type": "array", "minItems": 1,
                                        "items": _ref("Condition")}}},
                {"type": "object", "required": ["any"], "additionalProperties": False,
                 "properties": {"any": {"type": "array", "minItems": 1,
                                        "items": _ref("Condition")}}},
                {"type": "object", "required": ["not"], "additionalProperties": False,
                 "properties": {"not": _ref("Condition")}},
                _ref("EventCondition"),
                _ref("AttributeCondition"),
            ],
        },
        "EventCondition": {
            "type": "object", "required": ["event"], "additionalProperties": False,
            "properties": {
                "event": non_empty,
                "where": {"type": "array", "items": _ref("Where")},
                "count": {"type": "object", "minProperties": 1, "additionalProperties": False,
                          "properties": {k: {"type": "integer", "minimum": 0}
                                         for k in COUNT_KEYS},
                          "description": ("Default: {\"gte\": 1}. Integer literals only "
                                          "(1.0 is refused).")},
                "within": within,
            },
        },
        "Where": {
            "type": "object", "required": ["path", "op"], "additionalProperties": False,
            "properties": {"path": {"type": "string", "description": "A data path: a.b, "
                                    "items[].type, [\"x y\"]."},
                           "op": {"type": "string", "enum": list(OPERATORS)},
                           "value": comparison_value},
        },
        "AttributeCondition": {
            "type": "object", "required": ["attribute", "op"], "additionalProperties": False,
            "properties": {"attribute": {"type": "string"},
                           "op": {"type": "string", "enum": list(OPERATORS)},
                           "value": comparison_value},
        },
        "SegmentDefinition": {
            "type": "object", "required": ["name", "match"], "additionalProperties": False,
            "properties": {"name": non_empty, "match": _ref("Condition"),
                           "on_enter": send_event, "on_exit": send_event},
        },
        "Segment": {
            "type": "object",
            "required": ["id", "name", "match", "version", "updated_at", "state", "members"],
            "properties": {
                "id": {"type": "string"}, "name": {"type": "string"}, "match": {"type": "object"},
                "on_enter": {"type": "object"}, "on_exit": {"type": "object"},
                "version": {"type": "string"}, "updated_at": {"type": "integer"},
                "state": {"type": "string", "enum": ["live", "building"]},
                "members": {"type": "integer", "minimum": 0},
            },
        },
        # --- render ---------------------------------------------------------------------------
        "RenderRequest": {
            "type": "object", "required": ["template", "customer_id"],
            "not": {"required": ["event_id", "event"]},
            "properties": {
                "template": {"type": "string", "description": "Liquid source."},
                "customer_id": {"type": "string", "minLength": 1, "pattern": _NON_BLANK},
                "event_id": {"type": ["string", "null"], "pattern": _NON_BLANK,
                             "description": "A stored event of the person (its data is event)."},
                "event": {"type": ["object", "null"],
                          "description": "Inline event data (not together with event_id)."},
                "strict": {"type": "boolean", "default": False,
                           "description": "Undefined variables are errors."},
            },
        },
    }


def _json_body(schema: dict[str, Any], *, form: dict[str, Any] | None = None,
               description: str = "") -> dict[str, Any]:
    content: dict[str, Any] = {JSON: {"schema": schema}}
    if form is not None:
        content[FORM] = {"schema": form}
    body: dict[str, Any] = {"required": True, "content": content}
    if description:
        body["description"] = description
    return body


def _ok(schema: dict[str, Any], description: str = "OK",
        media_type: str = JSON) -> dict[str, Any]:
    return {"description": description, "content": {media_type: {"schema": schema}}}


def _error(description: str, *, v2: bool = False) -> dict[str, Any]:
    schema = ({"anyOf": [_ref("V2Error"), _ref("Error")]} if v2 else _ref("Error"))
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _responses(*codes: str, v2: bool = False, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {code.replace("_", ""): value for code, value in extra.items()}
    for code in codes:
        if code in ("400", "413") and v2:
            out[code] = _error(_ERROR_TEXT[code], v2=True)
        else:
            out[code] = {"$ref": f"#/components/responses/E{code}"}
    return out


_ERROR_TEXT = {
    "400": "Invalid request: every problem is named ('field: message').",
    "401": "Missing or wrong credentials.",
    "404": "Not found (also: a path that matches no route).",
    "409": "Conflict.",
    "413": "Body over the size limit.",
    "415": "Unsupported content type.",
    "503": ("Not ready, the broker did not acknowledge, or the worker owning a person is "
            "rebalancing or has not applied the writes accepted before the request in time "
            "(EVENTIDE_READ_YOUR_WRITES_TIMEOUT_S): nothing was accepted or decided; retry."),
}


def _path_param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema,
            "description": description}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


def _browser_paths(body_note: str) -> dict[str, Any]:
    site_id = _path_param("site_id", {"type": "string"},
                          "The public site id (EVENTIDE_SITE_ID); anything else is a 401.")
    origin = {"name": "Origin", "in": "header", "required": False, "schema": {"type": "string"},
              "description": ("A browser page's origin: must be listed in EVENTIDE_CORS_ORIGINS "
                              "(403 otherwise). Requests without Origin are accepted.")}
    site_errors = {
        "400": {"$ref": "#/components/responses/E400"},
        "401": {"description": "Unknown site id.", "content": {JSON: {"schema": _ref("Error")}}},
        "403": {"description": "Origin not allowed.",
                "content": {JSON: {"schema": _ref("Error")}}},
        "404": {"$ref": "#/components/responses/E404"},
        "413": {"$ref": "#/components/responses/E413"},
        "415": {"$ref": "#/components/responses/E415"},
        "503": {"$ref": "#/components/responses/E503"},
    }
    preflight = {
        "tags": ["browser"], "security": PUBLIC,
        "summary": "CORS preflight: 204 for an allowed Origin asking for POST, else 403.",
        "parameters": [
            {**origin, "description": "The page's origin (must be allowed)."},
            {"name": "Access-Control-Request-Method", "in": "header", "required": False,
             "schema": {"type": "string"}, "description": "Must be POST."}],
        "responses": {
            "204": {"description": "Allowed; CORS headers set.", "headers": {
                "Access-Control-Allow-Origin": {"required": True, "schema": {"type": "string"}},
                "Access-Control-Allow-Methods": {"required": True,
                                                 "schema": {"type": "string"}}}},
            "403": {"description": "Origin or method not allowed (no CORS headers).",
                    "content": {"text/plain": {"schema": {"type": "string"}}}},
            "404": {"$ref": "#/components/responses/E404"},
        },
    }
    paths: dict[str, Any] = {}
    for action, schema, summary in (
            ("events", "BrowserEvent", "Track an event from a web page."),
            ("page", "BrowserPage", "Track a page view from a web page."),
            ("identify", "BrowserIdentify", "Identify a person from a web page.")):
        paths[f"/api/v1/browser/{{site_id}}/{action}"] = {
            "parameters": [site_id],
            "post": {
                "operationId": f"browser{action.title()}", "tags": ["browser"],
                "security": PUBLIC, "x-eventide-credential": "site_id",
                "summary": summary,
                "parameters": [origin],
                "requestBody": _json_body(_ref(schema), description=body_note),
                "responses": {"200": _ok(_ref("Empty")), **site_errors},
            },
            "options": {**preflight, "operationId": f"browser{action.title()}Preflight"},
        }
    return paths


def document(rt: Any) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API as ``rt`` (a :class:`app.runtime.Runtime`) serves it.

    Only ``rt.settings`` and ``rt.topics`` are read, so a stand-in with those two works too.
    """
    settings = rt.settings
    partitions = rt.topics.person_events.partitions
    clock = getattr(rt, "clock", None)
    now_s = clock.now() if clock is not None else time.time()
    max_body = settings.max_body_bytes
    import_cap = max_import_bytes()
    by = "email address" if settings.identify_by == "email" else "customer id"

    customer_id = _path_param(
        "customer_id", _ref("Identifier"),
        f"The person's {by}. {_bytes_note(MAX_IDENTIFIER_BYTES)}")
    anonymous_id = _path_param("anonymous_id", _ref("Identifier"), "An anonymous id.")
    segment_id = _path_param(
        "segment_id", _key(MAX_SEGMENT_ID_BYTES, "A segment id"), "The segment's id.")
    partition = _path_param(
        "partition", {"type": "integer", "minimum": 0, "maximum": partitions - 1},
        f"A person partition, 0 to {partitions - 1}.")
    names_limit = _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000,
                                   "default": 100}, "Page size.")
    activity_params = [
        _query("days", {"type": "integer", "minimum": 1, "maximum": 36_500, "default": 30},
               "How many days back (by event time)."),
        _query("type", {"type": "string"},
               "Only this type (event, page or screen; other values match nothing)."),
        _query("name", {"type": "string"}, "Only events of this name."),
        _query("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
               "Page size."),
        _query("cursor", {"type": "string", "pattern": "^[0-9]+[.].+$"},
               "The 'next' of the previous page (400 for anything else)."),
    ]
    body_note = f"At most {max_body} bytes (413 above)."
    track_errors = ("400", "401", "404", "413", "415", "503")
    jsonl = "application/x-ndjson"

    paths: dict[str, Any] = {
        **{path: {"get": {
            "operationId": operation_id, "tags": ["ops"], "security": PUBLIC,
            "summary": ("Readiness (both paths answer the same): joined the consumer group "
                        "and recovered the state of every assigned partition."),
            "responses": {
                "200": _ok({"type": "object", "required": ["status"],
                            "properties": {"status": {"const": "ok"}}}),
                "503": {"$ref": "#/components/responses/E503"}},
        }} for path, operation_id in (("/healthz", "healthz"), ("/readyz", "readyz"))},
        "/openapi.json": {"get": {
            "operationId": "openapi", "tags": ["ops"], "security": PUBLIC,
            "summary": "This document.",
            "responses": {"200": _ok({"type": "object", "required": ["openapi", "paths"]})},
        }},
        "/metrics": {"get": {
            "operationId": "metrics", "tags": ["ops"], "security": BEARER,
            "summary": "Prometheus text: records, verdicts, dead letters, latency, RSS, RocksDB.",
            "responses": _responses("401", _200=_ok({"type": "string"}, media_type="text/plain")),
        }},
        # --- track v1 (HTTP Basic) ----------------------------------------------------------
        "/api/v1/customers/{customer_id}/events": {
            "parameters": [customer_id],
            "post": {
                "operationId": "trackCustomerEvent", "tags": ["track"], "security": BASIC,
                "summary": "Track an event of an identified person.",
                "requestBody": _json_body(_ref("TrackEvent"), form=_ref("TrackEventForm"),
                                          description=body_note),
                "responses": _responses(*track_errors, _200=_ok(_ref("Empty"))),
            },
        },
        "/api/v1/events": {"post": {
            "operationId": "trackAnonymousEvent", "tags": ["track"], "security": BASIC,
            "summary": "Track an event of an anonymous visitor.",
            "requestBody": _json_body(_ref("AnonymousEvent"), form=_ref("AnonymousEventForm"),
                                      description=body_note),
            "responses": _responses(*track_errors, _200=_ok(_ref("Empty"))),
        }},
        "/api/v1/customers/{customer_id}": {
            "parameters": [customer_id],
            "put": {
                "operationId": "identify", "tags": ["track"], "security": BASIC,
                "summary": "Create or update a person (identify).",
                "requestBody": _json_body(_ref("Identify"), form=_ref("IdentifyForm"),
                                          description=body_note),
                "responses": _responses(*track_errors, _200=_ok(_ref("Empty"))),
            },
            "delete": {
                "operationId": "deleteCustomer", "tags": ["track"], "security": BASIC,
                "summary": "Delete a person (no body needed).",
                "responses": _responses(*track_errors, _200=_ok(_ref("Empty"))),
            },
            "get": {
                "operationId": "getCustomer", "tags": ["reads"], "security": BEARER,
                "summary": "A person's profile.",
                "responses": _responses("401", "404", _200=_ok({
                    "type": "object", "required": ["customer"], "additionalProperties": False,
                    "properties": {"customer": _ref("Profile")}})),
            },
        },
        "/api/v1/merge_customers": {"post": {
            "operationId": "mergeCustomers", "tags": ["track"], "security": BASIC,
            "summary": "Merge two people: the secondary is folded into the primary.",
            "requestBody": _json_body(_ref("Merge"), form=_ref("MergeForm"), description=body_note),
            "responses": _responses(*track_errors, _200=_ok(_ref("Empty"))),
        }},
        # --- track v2 (HTTP Basic) ----------------------------------------------------------
        "/api/v2/entity": {"post": {
            "operationId": "v2Entity", "tags": ["track-v2"], "security": BASIC,
            "summary": "One v2 entity.",
            "requestBody": _json_body(_ref("Entity"), description=(
                f"At most {MAX_ENTITY_BYTES} bytes as compact JSON (400 too_long), and "
                f"{max_body} bytes on the wire (413).")),
            "responses": _responses(*track_errors, v2=True, _200=_ok(_ref("Empty"))),
        }},
        "/api/v2/batch": {"post": {
            "operationId": "v2Batch", "tags": ["track-v2"], "security": BASIC,
            "summary": "Several v2 entities; the good ones are accepted even if some are bad.",
            "requestBody": _json_body(_ref("Batch"), description=(
                f"At most {MAX_BATCH_BYTES} bytes by Content-Length (413 in the v2 shape).")),
            "responses": _responses(
                *track_errors, v2=True, _200=_ok(_ref("Empty"), "Every entity was accepted."),
                _207={"description": ("Some entities were refused (each named with its "
                                      "batch_index); the others were accepted."),
                      "content": {JSON: {"schema": _ref("V2Error")}}}),
        }},
        # --- browser snippet (site id in the path) -----------------------------------------
        **_browser_paths(body_note),
        "/js/track.js": {"get": {
            "operationId": "trackSnippet", "tags": ["browser"], "security": PUBLIC,
            "summary": "The JavaScript snippet that calls the browser endpoints.",
            "responses": {"200": _ok({"type": "string"}, media_type="application/javascript")},
        }},
        # --- reads (bearer app key) ---------------------------------------------------------
        "/api/v1/customers/{customer_id}/activities": {"get": {
            "operationId": "customerActivities", "tags": ["reads"], "security": BEARER,
            "summary": "A person's activity, newest first.",
            "parameters": [customer_id, *activity_params],
            "responses": _responses("400", "401", "404", _200=_ok(_ref("ActivityPage"))),
        }},
        "/api/v1/anonymous/{anonymous_id}/activities": {"get": {
            "operationId": "anonymousActivities", "tags": ["reads"], "security": BEARER,
            "summary": "An anonymous visitor's activity (processed_at null), newest first.",
            "description": "Once an identify links the anonymous id to a person, its activity "
                           "moves to that person: the answer is then still 200, with "
                           "`identified_as` naming the person (and the activity that is still "
                           "anonymous, usually none). 404 only for an anonymous id with "
                           "nothing stored and no link.",
            "parameters": [anonymous_id, *activity_params],
            "responses": _responses("400", "401", "404",
                                    _200=_ok(_ref("AnonymousActivityPage"))),
        }},
        "/api/v1/activities": {"get": {
            "operationId": "activityLog", "tags": ["reads"], "security": BEARER,
            "summary": "The workspace Activity Log: everyone's activity, newest processed first.",
            "description": (
                "Gathered from every worker (each answers for the partitions it owns) and "
                "merged by processed time, then person id, then event id. Identified activity "
                "is read from a per-partition index by processed time, so a page costs about "
                "`limit` reads per worker however much is stored; with `type` alone a worker "
                f"reads at most {activity_log.MAX_SCAN} index entries per request and the page "
                "may then be short (follow `next`). Anonymous activity (`anonymous=true`) has "
                "no processed time yet: it is ordered by when it was received, from a bounded "
                f"scan of at most {activity_log.ANONYMOUS_SCAN_IDS} anonymous ids per worker "
                "(`complete: false` when a worker stopped there)."),
            "parameters": [
                _query("type", {"type": "string", "enum": list(EVENT_TYPES)}, "Only this type."),
                _query("name", {"type": "string"}, "Only events of this name."),
                _query("customer", {"type": "string"},
                       "Only this person (the person id the rows show), or with anonymous=true "
                       "this anonymous id."),
                _query("anonymous", {"type": "boolean", "default": False},
                       "The Anonymous tab: activity of anonymous ids not identified yet."),
                _query("before", {"type": "string"},
                       "The 'next' of the previous page (400 for anything else)."),
                _query("limit", {"type": "integer", "minimum": 1,
                                 "maximum": activity_log.MAX_LIMIT,
                                 "default": activity_log.DEFAULT_LIMIT}, "Page size."),
            ],
            "responses": _responses("400", "401", "503", _200=_ok({
                "type": "object", "required": ["activities", "next", "complete"],
                "additionalProperties": False,
                "properties": {
                    "activities": {"type": "array", "items": _ref("LogActivity")},
                    "next": {"type": ["string", "null"],
                             "description": "The cursor for `before`, or null at the end."},
                    "complete": {"type": "boolean",
                                 "description": "False when a bounded anonymous scan stopped "
                                                "before reading every anonymous id."}}})),
        }},
        "/api/v1/customers/{customer_id}/attribute_changes": {"get": {
            "operationId": "attributeChanges", "tags": ["reads"], "security": BEARER,
            "summary": "A person's attribute changes, newest first.",
            "parameters": [customer_id],
            "responses": _responses("401", "404", _200=_ok({
                "type": "object", "required": ["changes"], "additionalProperties": False,
                "properties": {"changes": {"type": "array",
                                           "items": _ref("AttributeChange")}}})),
        }},
        "/api/v1/customers/{customer_id}/segments": {"get": {
            "operationId": "customerSegments", "tags": ["segments"], "security": BEARER,
            "summary": "The segments a person is in, and since when.",
            "parameters": [customer_id],
            "responses": _responses("401", "404", _200=_ok({
                "type": "object", "required": ["segments"], "additionalProperties": False,
                "properties": {"segments": {"type": "array", "items": {
                    "type": "object", "required": ["id", "since"],
                    "properties": {"id": {"type": "string"},
                                   "since": {"type": "number"}}}}}})),
        }},
        "/api/v1/events/names": {"get": {
            "operationId": "eventNames", "tags": ["segments"], "security": BEARER,
            "summary": "Event names seen, most frequent first.",
            "parameters": [
                _query("q", {"type": "string"},
                       "Customer.io search syntax: * wildcard, + or, | not, \\ escapes."),
                names_limit],
            "responses": _responses("400", "401", _200=_ok({
                "type": "object", "required": ["names"], "additionalProperties": False,
                "properties": {"names": {"type": "array", "items": {
                    "type": "object", "required": ["name", "count", "last_seen"],
                    "additionalProperties": False,
                    "properties": {"name": {"type": "string"},
                                   "count": {"type": "integer", "minimum": 0},
                                   "last_seen": {"type": "number"}}}}}})),
        }},
        # --- segments (bearer) --------------------------------------------------------------
        "/api/v1/segments": {"get": {
            "operationId": "listSegments", "tags": ["segments"], "security": BEARER,
            "summary": "Every segment.",
            "responses": _responses("401", _200=_ok({
                "type": "object", "required": ["segments"], "additionalProperties": False,
                "properties": {"segments": {"type": "array", "items": _ref("Segment")}}})),
        }},
        "/api/v1/segments/{segment_id}": {
            "parameters": [segment_id],
            "put": {
                "operationId": "putSegment", "tags": ["segments"], "security": BEARER,
                "summary": "Create or replace a segment definition.",
                "description": "An invalid definition is a 400 listing every mistake, each "
                               "\"location: reason\" (\"match.all[0].within: ...\"), in "
                               "document order (at most 50, then one line counting the rest).",
                "requestBody": _json_body(_ref("SegmentDefinition"), description=body_note),
                "responses": _responses("400", "401", "404", "413", "415", "503", _200=_ok({
                    "type": "object", "required": ["segment"],
                    "properties": {"segment": _ref("Segment")}})),
            },
            "get": {
                "operationId": "getSegment", "tags": ["segments"], "security": BEARER,
                "summary": "A segment: its definition, state and member count.",
                "responses": _responses("400", "401", "404", _200=_ok({
                    "type": "object", "required": ["segment"],
                    "properties": {"segment": _ref("Segment")}})),
            },
            "delete": {
                "operationId": "deleteSegment", "tags": ["segments"], "security": BEARER,
                "summary": "Delete a segment.",
                "responses": _responses("400", "401", "404", "503", _200=_ok(_ref("Empty"))),
            },
        },
        "/api/v1/segments/{segment_id}/membership": {"get": {
            "operationId": "segmentMembership", "tags": ["segments"], "security": BEARER,
            "summary": "A segment's members, in natural id order.",
            "description": "Ids that are whole numbers come first, by value (5, 10, 11), then "
                           "every other id in string order.",
            "parameters": [segment_id, names_limit,
                           _query("cursor", {"type": "string"},
                                  "The 'next' of the previous page.")],
            "responses": _responses("400", "401", "404", _200=_ok({
                "type": "object", "required": ["people", "next"], "additionalProperties": False,
                "properties": {"people": {"type": "array", "items": {"type": "string"}},
                               "next": {"type": ["string", "null"]}}})),
        }},
        "/api/v1/segments/preview": {"post": {
            "operationId": "previewSegment", "tags": ["segments"], "security": BEARER,
            "summary": "How many people a definition would match now, and a sample of them.",
            "description": (
                "Publishes nothing. Every worker evaluates the definition for the people of the "
                "partitions it owns, as the person stage would now; the counts are summed and "
                f"the sample is the first {segment_preview.SAMPLE_SIZE} matching ids in the "
                f"membership order. Bounded: a worker looks at most at "
                f"{segment_preview.MAX_PEOPLE} people per request; `complete` is false when one "
                "stopped there (`count` is then a lower bound). `name` may be left out. An "
                "invalid definition is a 400 naming every mistake, as for PUT."),
            "requestBody": _json_body({"type": "object"}, description=body_note),
            "responses": _responses("400", "401", "413", "415", "503", _200=_ok({
                "type": "object",
                "required": ["count", "sample", "scanned", "complete", "max_people_per_worker"],
                "additionalProperties": False,
                "properties": {
                    "count": {"type": "integer", "minimum": 0},
                    "sample": {"type": "array", "items": {"type": "string"}},
                    "scanned": {"type": "integer", "minimum": 0,
                                "description": "People evaluated, over every worker."},
                    "complete": {"type": "boolean"},
                    "max_people_per_worker": {"type": "integer"}}})),
        }},
        "/api/v1/search/customers": {"get": {
            "operationId": "searchCustomers", "tags": ["reads"], "security": BEARER,
            "summary": "People whose id or email starts with q (for person pickers).",
            "description": "Gathered from every worker; whole-number ids first, by value.",
            "parameters": [
                _query("q", {"type": "string", "maxLength": people_search.MAX_QUERY},
                       "A prefix of the id or email (case-sensitive); empty: the first people."),
                _query("limit", {"type": "integer", "minimum": 1,
                                 "maximum": people_search.MAX_LIMIT,
                                 "default": people_search.DEFAULT_LIMIT}, "How many.")],
            "responses": _responses("400", "401", "503", _200=_ok({
                "type": "object", "required": ["customers"], "additionalProperties": False,
                "properties": {"customers": {"type": "array", "items": {
                    "type": "object", "required": ["id"], "additionalProperties": False,
                    "properties": {"id": {"type": "string"},
                                   "email": {"type": "string"}}}}}})),
        }},
        # --- imports, render, export (bearer) -----------------------------------------------
        "/api/v1/imports/events": {"post": {
            "operationId": "importEvents", "tags": ["imports"], "security": BEARER,
            "summary": "Import a Customer.io CSV event file.",
            "description": ("People must already exist: each row's person is looked up by the "
                            "worker that owns it, after every write accepted before the import "
                            "(an identify answered just before counts). Rows of other people "
                            "are rejected unknown_customer. The answer is the same on every "
                            "worker. A 503 part way says how many rows were imported before."),
            "requestBody": {"required": True, "description": (
                "Header _cio_name,_cio_customer_id[,_cio_timestamp][,_cio_id][,data columns]. "
                "Also accepted as application/csv, text/plain, application/octet-stream, "
                f"application/vnd.ms-excel. At most {import_cap} bytes (413 above)."),
                "content": {"text/csv": {"schema": {"type": "string"}}}},
            "responses": _responses("400", "401", "404", "413", "415", "503", _200=_ok({
                "type": "object",
                "required": ["accepted", "rejected", "rejected_by_reason", "rejects"],
                "additionalProperties": False,
                "properties": {
                    "accepted": {"type": "integer", "minimum": 0},
                    "rejected": {"type": "integer", "minimum": 0},
                    "rejected_by_reason": {"type": "object",
                                           "additionalProperties": {"type": "integer"}},
                    "rejects": {"type": "array", "maxItems": 1000, "items": {
                        "type": "object", "required": ["row", "reason"],
                        "properties": {"row": {"type": "integer"},
                                       "reason": {"type": "string"}}}}}})),
        }},
        "/api/v1/imports/export": {"post": {
            "operationId": "importExport", "tags": ["imports"], "security": BEARER,
            "summary": "Re-create people from an eventide jsonl export.",
            "requestBody": {"required": True, "description": (
                "jsonl as written by the export endpoints (profile, attribute_change and event "
                "lines). Also accepted as application/jsonl, application/json, text/plain, "
                f"application/octet-stream. At most {import_cap} bytes (413 above)."),
                "content": {jsonl: {"schema": {"type": "string"}}}},
            "responses": _responses("400", "401", "404", "413", "415", "503", _200=_ok({
                "type": "object",
                "required": ["people", "identifies", "events", "skipped"],
                "additionalProperties": False,
                "properties": {
                    "people": {"type": "integer", "minimum": 0},
                    "identifies": {"type": "integer", "minimum": 0},
                    "events": {"type": "integer", "minimum": 0},
                    "skipped": {"type": "object",
                                "additionalProperties": {"type": "integer"}}}})),
        }},
        "/api/v1/render": {"post": {
            "operationId": "render", "tags": ["render"], "security": BEARER,
            "summary": "Render a liquid template for a person (and an event).",
            "description": ("Answered by the worker that owns the person, after every write "
                            "accepted before the request (an identify or event answered just "
                            "before counts), so the same on every worker."),
            "requestBody": _json_body(_ref("RenderRequest"), description=body_note),
            "responses": _responses("400", "401", "404", "413", "415", "503", _200=_ok({
                "type": "object", "required": ["output"], "additionalProperties": False,
                "properties": {"output": {"type": "string"}}})),
        }},
        "/api/v1/customers/{customer_id}/export": {"get": {
            "operationId": "customerExport", "tags": ["export"], "security": BEARER,
            "summary": "One person as jsonl (profile, attribute changes, events) or csv (events).",
            "parameters": [customer_id, _query(
                "format", {"type": "string", "enum": ["jsonl", "csv"], "default": "jsonl"},
                "Output format.")],
            "responses": _responses("400", "401", "404", _200={
                "description": "Streamed as an attachment.",
                "content": {jsonl: {"schema": {"type": "string"}},
                            "text/csv": {"schema": {"type": "string"}}}}),
        }},
        "/api/v1/export/partitions": {"get": {
            "operationId": "exportPartitions", "tags": ["export"], "security": BEARER,
            "summary": "How many person partitions there are, and which this worker owns.",
            "responses": _responses("401", _200=_ok({
                "type": "object", "required": ["partitions", "owned"],
                "additionalProperties": False,
                "properties": {"partitions": {"const": partitions},
                               "owned": {"type": "array", "items": {
                                   "type": "integer", "minimum": 0,
                                   "maximum": partitions - 1}}}})),
        }},
        "/api/v1/export/partitions/{partition}": {"get": {
            "operationId": "exportPartition", "tags": ["export"], "security": BEARER,
            "summary": "Every person of a partition as jsonl (only from the worker owning it).",
            "parameters": [partition],
            "responses": _responses("401", "404", "409", _200={
                "description": "Streamed as an attachment.",
                "content": {jsonl: {"schema": {"type": "string"}}}}),
        }},
    }

    error_responses = {
        f"E{code}": {
            "description": text,
            "content": {JSON: {"schema": _ref("Error")}},
            **({"headers": {"WWW-Authenticate": {
                "required": True, "schema": {"type": "string"},
                "description": "The Basic challenge (sent on every 401)."}}}
               if code == "401" else {}),
        }
        for code, text in _ERROR_TEXT.items()
    }
    return copy.deepcopy({  # nothing shared with module constants or between calls
        "openapi": OPENAPI_VERSION,
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "eventide",
            "version": API_VERSION,
            "summary": "Customer.io-compatible track API, reads, segments, imports and exports.",
            "description": __doc__,
        },
        "servers": [{"url": "/", "description": f"as configured: {settings.http_url}"}],
        "tags": [{"name": name} for name in
                 ("track", "track-v2", "browser", "reads", "segments", "imports", "render",
                  "export", "ops")],
        "paths": paths,
        "components": {
            "schemas": _schemas(int(now_s)),
            "responses": error_responses,
            "securitySchemes": {
                "trackBasic": {
                    "type": "http", "scheme": "basic",
                    "description": ("HTTP Basic site_id:api_key: the track API (v1 and v2). "
                                    "The app key is not accepted here."),
                },
                "appBearer": {
                    "type": "http", "scheme": "bearer",
                    "description": ("Authorization: Bearer <app key>: reads, segments, imports, "
                                    "exports, render and metrics. Track credentials are not "
                                    "accepted here."),
                },
            },
        },
    })
