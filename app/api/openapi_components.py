"""The OpenAPI document's component schemas that are not request bodies of the ingest API: error
shapes, what reads answer, segment definitions and render requests. Plain data; the ingest
bodies are derived from :mod:`app.ingest.fields` in :mod:`app.api.openapi`."""

from __future__ import annotations

from typing import Any

from app.api.openapi_parts import ref
from app.ingest.fields import NON_BLANK_PATTERN
from app.model import EVENT_TYPES
from app.segments.definition import COUNT_KEYS, MAX_CONDITIONS, MAX_DEFINITION_BYTES, MAX_DEPTH
from app.segments.operators import OPERATORS

_WITHIN: dict[str, Any] = {"type": "string", "pattern": "^[1-9][0-9]*[mhd]$",
                           "description": "A rolling window: <n>m, <n>h or <n>d."}
_COMPARISON_VALUE: dict[str, Any] = {"description": (
    "Required except for exists/not_exists (where it is refused); in takes a list, "
    "starts_with/ends_with a string, gt/gte/lt/lte a number or string.")}
_NON_EMPTY: dict[str, Any] = {"type": "string", "minLength": 1}
_SEND_EVENT: dict[str, Any] = {
    "type": "object", "required": ["send_event"], "additionalProperties": False,
    "properties": {"send_event": {
        "type": "object", "required": ["name"], "additionalProperties": False,
        "properties": {"name": _NON_EMPTY, "data": {"type": "object"}}}},
}
_ACTIVITY: dict[str, Any] = {
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
_PROFILE: dict[str, Any] = {
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

#: The error shapes (v1 and v2) and the empty success.
ERROR_SCHEMAS: dict[str, Any] = {
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
                                  "items": ref("V2FieldError")}},
    },
    "Empty": {"type": "object", "maxProperties": 0,
              "description": "Accepted: the broker acknowledged the write."},
}


#: What the read endpoints answer.
READ_SCHEMAS: dict[str, Any] = {
    "Activity": _ACTIVITY,
    "ActivityPage": {
        "type": "object", "required": ["activities", "next"], "additionalProperties": False,
        "properties": {"activities": {"type": "array", "items": ref("Activity")},
                       "next": {"type": ["string", "null"],
                                "description": "The cursor of the next page, or null."}},
    },
    "LogActivity": {
        **_ACTIVITY,
        "properties": {
            **_ACTIVITY["properties"],
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
            "activities": {"type": "array", "items": ref("Activity"),
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
    "Profile": _PROFILE,
    "AttributeChange": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "old": {}, "new": {},
                       "at": {"type": ["integer", "number"]},
                       "source": {"type": "string"}, "id": {"type": "string"}},
    },
}


#: Segment definitions (as PUT takes them) and segments (as reads show them).
SEGMENT_SCHEMAS: dict[str, Any] = {
    "Condition": {
        "description": (f"A condition tree, at most {MAX_DEPTH} levels deep and "
                        f"{MAX_CONDITIONS} conditions (where tests included); the whole "
                        f"definition at most {MAX_DEFINITION_BYTES} bytes as JSON."),
        "anyOf": [
            {"type": "object", "required": ["all"], "additionalProperties": False,
             "properties": {"all": {"type": "array", "minItems": 1,
                                    "items": ref("Condition")}}},
            {"type": "object", "required": ["any"], "additionalProperties": False,
             "properties": {"any": {"type": "array", "minItems": 1,
                                    "items": ref("Condition")}}},
            {"type": "object", "required": ["not"], "additionalProperties": False,
             "properties": {"not": ref("Condition")}},
            ref("EventCondition"),
            ref("AttributeCondition"),
        ],
    },
    "EventCondition": {
        "type": "object", "required": ["event"], "additionalProperties": False,
        "properties": {
            "event": _NON_EMPTY,
            "where": {"type": "array", "items": ref("Where")},
            "count": {"type": "object", "minProperties": 1, "additionalProperties": False,
                      "properties": {k: {"type": "integer", "minimum": 0}
                                     for k in COUNT_KEYS},
                      "description": ("Default: {\"gte\": 1}. Integer literals only "
                                      "(1.0 is refused).")},
            "within": _WITHIN,
        },
    },
    "Where": {
        "type": "object", "required": ["path", "op"], "additionalProperties": False,
        "properties": {"path": {"type": "string", "description": "A data path: a.b, "
                                "items[].type, [\"x y\"]."},
                       "op": {"type": "string", "enum": list(OPERATORS)},
                       "value": _COMPARISON_VALUE},
    },
    "AttributeCondition": {
        "type": "object", "required": ["attribute", "op"], "additionalProperties": False,
        "properties": {"attribute": {"type": "string"},
                       "op": {"type": "string", "enum": list(OPERATORS)},
                       "value": _COMPARISON_VALUE},
    },
    "SegmentDefinition": {
        "type": "object", "required": ["name", "match"], "additionalProperties": False,
        "properties": {"name": _NON_EMPTY, "match": ref("Condition"),
                       "on_enter": _SEND_EVENT, "on_exit": _SEND_EVENT},
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
}


#: The render endpoint's request.
RENDER_SCHEMAS: dict[str, Any] = {
    "RenderRequest": {
        "type": "object", "required": ["template", "customer_id"],
        "not": {"required": ["event_id", "event"]},
        "properties": {
            "template": {"type": "string", "description": "Liquid source."},
            "customer_id": {"type": "string", "minLength": 1, "pattern": NON_BLANK_PATTERN},
            "event_id": {"type": ["string", "null"], "pattern": NON_BLANK_PATTERN,
                         "description": "A stored event of the person (its data is event)."},
            "event": {"type": ["object", "null"],
                      "description": "Inline event data (not together with event_id)."},
            "strict": {"type": "boolean", "default": False,
                       "description": "Undefined variables are errors."},
        },
    },
}
