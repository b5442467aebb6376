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
from typing import Any, Callable

from app.api.imports import max_import_bytes
from app.api.openapi_components import (ERROR_SCHEMAS, READ_SCHEMAS, RENDER_SCHEMAS,
                                        SEGMENT_SCHEMAS)
from app.api.openapi_parts import Served, error_responses, key_schema, ref, text_schema
from app.api.openapi_paths import TRACK_PATH_GROUPS
from app.api.openapi_read_paths import READ_PATH_GROUPS
from app.ingest.fields import ENTITY_ACTIONS
from app.ingest.fields import MAX_BATCH_BYTES, MAX_ENTITY_BYTES
from app.ingest.fields import (ANONYMOUS_ID, ATTRIBUTE_NAME, ATTRIBUTE_VALUE, CUSTOMER_ID,
                               EMAIL_FIELDS, EVENT_FIELDS, EVENT_ID, EVENT_TYPE, IDENTIFY_FIELDS,
                               MAX_ATTRIBUTES, MILLISECONDS_THRESHOLD, NAME, PAGE_URL,
                               PERSON_IDENTIFIER_KINDS, TIMESTAMP, UPDATE, Field, Kind)

OPENAPI_VERSION = "3.1.0"
API_VERSION = "0.1.0"

# --- JSON Schema of one field, derived from its description in app.ingest.fields ------------------

FieldSchema = Callable[[Field, int], dict[str, Any]]


def _identifier(field: Field, now_s: int) -> dict[str, Any]:
    schema = key_schema(field.limit, field.doc)
    if not field.required:
        schema["type"] = ["string", "null"]
    return schema


def _timestamp(field: Field, now_s: int) -> dict[str, Any]:
    # The upper bound moves with the clock: the time the document was made is the best it can say.
    return {"description": field.doc, "anyOf": [
        {"type": "integer", "minimum": 0, "maximum": min(now_s, MILLISECONDS_THRESHOLD - 1)},
        {"type": "string", "pattern": field.pattern},
        {"type": "null"},
    ]}


def _data(field: Field, now_s: int) -> dict[str, Any]:
    return {"type": ["object", "null"], "description": field.doc,
            "properties": {email.name: field_schema(email, now_s) for email in EMAIL_FIELDS},
            "additionalProperties": True}


def _attribute_value(field: Field, now_s: int) -> dict[str, Any]:
    # Arrays and objects are bounded by their size as JSON, which JSON Schema cannot state: the
    # item counts are the document's stand-in for it.
    return {"description": field.doc, "anyOf": [
        {"type": "string", "maxLength": field.limit},
        {"type": ["number", "boolean", "null"]},
        {"type": "array", "maxItems": 50},
        {"type": "object", "maxProperties": 50},
    ]}


_JSON_SCHEMAS: dict[Kind, FieldSchema] = {
    "identifier": _identifier,
    "name": lambda field, now_s: text_schema(field.limit, field.doc),
    "attribute_name": lambda field, now_s: text_schema(field.limit, field.doc),
    "choice": lambda field, now_s: {"enum": [*field.choices, None], "description": field.doc},
    "ulid": lambda field, now_s: {"type": ["string", "null"], "pattern": field.pattern,
                                  "description": field.doc},
    "timestamp": _timestamp,
    "data": _data,
    "email": lambda field, now_s: {"type": "string", "pattern": field.pattern,
                                   "description": field.doc},
    "flag": lambda field, now_s: {"description": field.doc, "anyOf": [
        {"type": "boolean"}, {"type": "string", "enum": ["true", "false"]}, {"type": "null"}]},
    "attribute_value": _attribute_value,
}


def field_schema(field: Field, now_s: int) -> dict[str, Any]:
    """``field`` as a JSON body carries it (``null`` stands for absent where that is allowed)."""
    return _JSON_SCHEMAS[field.kind](field, now_s)


def form_field_schema(field: Field) -> dict[str, Any]:
    """``field`` as a form body carries it: always text."""
    if field.kind in ("identifier", "name", "attribute_name"):
        return field_schema(field, 0) | {"type": "string"}
    if field.kind == "choice":
        return {"type": "string", "enum": list(field.choices)}
    if field.kind == "flag":
        return {"type": "string", "enum": ["true", "false"]}
    if field.kind == "attribute_value":
        return {"type": "string", "maxLength": field.limit}
    if field.kind == "timestamp":
        return {"type": "string", "pattern": field.pattern,
                "description": "Unix seconds (see the JSON body's timestamp)."}
    return {"type": "string", "pattern": field.pattern, "description": field.doc}


def _properties(fields: tuple[Field, ...], now_s: int) -> dict[str, Any]:
    return {field.name: field_schema(field, now_s) for field in fields}


def _form_properties(fields: tuple[Field, ...]) -> dict[str, Any]:
    # Form bodies have no JSON objects: event data arrives as bracketed names (data[k]=v).
    return {field.name: form_field_schema(field) for field in fields if field.kind != "data"}


def _required(fields: tuple[Field, ...]) -> list[str]:
    return [field.name for field in fields if field.required]


# --- the ingest bodies, derived -------------------------------------------------------------------

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
#: An identify body's keys: its reserved fields plus at most MAX_ATTRIBUTES attributes.
_MAX_IDENTIFY_KEYS = MAX_ATTRIBUTES + len(IDENTIFY_FIELDS)


def _event_schemas(now_s: int) -> dict[str, Any]:
    anonymous = (*EVENT_FIELDS, ANONYMOUS_ID)
    return {
        "Identifier": field_schema(CUSTOMER_ID, now_s),
        "Timestamp": field_schema(TIMESTAMP, now_s),
        "EventData": _properties(EVENT_FIELDS, now_s)["data"],
        "TrackEvent": {
            "type": "object", "required": _required(EVENT_FIELDS),
            "properties": _properties(EVENT_FIELDS, now_s),
            "description": "An event of the person named by the path. Unknown keys are ignored.",
        },
        "AnonymousEvent": {
            "type": "object", "required": _required(anonymous),
            "properties": _properties(anonymous, now_s),
            "description": "An event of an anonymous visitor, linked on a later identify.",
        },
        "TrackEventForm": {**_FORM, "required": _required(EVENT_FIELDS),
                           "properties": _form_properties(EVENT_FIELDS)},
        "AnonymousEventForm": {**_FORM, "required": _required(anonymous),
                               "properties": _form_properties(anonymous)},
    }


def _identify_schemas(now_s: int) -> dict[str, Any]:
    return {
        "Identify": {
            "type": "object",
            "description": (
                "Attributes to set, plus the reserved keys anonymous_id (link that visitor's "
                "activity), _timestamp (orders attribute writes) and _update. At most "
                f"{MAX_ATTRIBUTES} attributes."),
            "maxProperties": _MAX_IDENTIFY_KEYS,
            "properties": _properties(IDENTIFY_FIELDS, now_s),
            "propertyNames": field_schema(ATTRIBUTE_NAME, now_s),
            "additionalProperties": field_schema(ATTRIBUTE_VALUE, now_s),
        },
        "IdentifyForm": {
            **_FORM,
            "description": _FORM["description"] + f" At most {MAX_ATTRIBUTES} attributes.",
            "maxProperties": _MAX_IDENTIFY_KEYS,
            "properties": _form_properties(IDENTIFY_FIELDS),
            "additionalProperties": form_field_schema(ATTRIBUTE_VALUE),
        },
    }


def _person_schemas(now_s: int) -> dict[str, Any]:
    identifier = field_schema(CUSTOMER_ID, now_s)
    person_reference = {
        "type": "object",
        "description": "Exactly one identifier of a person.",
        "minProperties": 1, "maxProperties": 1,
        "properties": {kind: identifier for kind in PERSON_IDENTIFIER_KINDS},
        "additionalProperties": False,
    }
    return {
        "MergeForm": {
            **_FORM,
            "description": "primary[id]=a&secondary[email]=b@example.com: one field per side.",
            "properties": {f"{side}[{kind}]": identifier for side in ("primary", "secondary")
                           for kind in PERSON_IDENTIFIER_KINDS},
            "allOf": [{"oneOf": [{"required": [f"{side}[{kind}]"]}
                                 for kind in PERSON_IDENTIFIER_KINDS]}
                      for side in ("primary", "secondary")],
            "additionalProperties": False,
        },
        "PersonReference": person_reference,
        "Merge": {
            "type": "object", "required": ["primary", "secondary"],
            "description": "Fold the secondary person into the primary one.",
            "properties": {"primary": ref("PersonReference"),
                           "secondary": ref("PersonReference")},
        },
        "PersonIdentifiers": {**person_reference,
                              "description": "Exactly one of id, email, cio_id."},
        "EventIdentifiers": {
            **person_reference,
            "description": "Exactly one of id, email, cio_id, anonymous_id.",
            "properties": {**person_reference["properties"], "anonymous_id": identifier},
        },
    }


def _v2_schemas(now_s: int) -> dict[str, Any]:
    entity_type = {"type": "string", "enum": ["person"], "default": "person",
                   "description": "Only person entities are supported."}
    timestamp, data = field_schema(TIMESTAMP, now_s), _event_schemas(now_s)["EventData"]
    event_actions = list(EVENT_TYPE.choices)
    return {
        "IdentifyEntity": {
            "type": "object", "required": ["action", "identifiers"],
            "properties": {
                "type": entity_type, "action": {"const": "identify"},
                "identifiers": ref("PersonIdentifiers"),
                "attributes": {**ref("Identify"), "description": "As the v1 identify body."},
                "timestamp": timestamp,
            },
        },
        "DeleteEntity": {
            "type": "object", "required": ["action", "identifiers"],
            "properties": {"type": entity_type, "action": {"const": "delete"},
                           "identifiers": ref("PersonIdentifiers")},
        },
        "EventEntity": {
            "type": "object", "required": ["action", "identifiers", "name"],
            "properties": {
                "type": entity_type, "action": {"enum": event_actions},
                "identifiers": ref("EventIdentifiers"),
                **_properties((NAME, EVENT_ID), now_s),
                "timestamp": timestamp,
                "attributes": {**data, "description": "The event's data. " + data["description"]},
            },
        },
        "MergeEntity": {
            "type": "object", "required": ["action", "primary", "secondary"],
            "properties": {"type": entity_type, "action": {"const": "merge"},
                           "primary": ref("PersonReference"),
                           "secondary": ref("PersonReference")},
        },
        "Entity": {
            "description": (f"One v2 entity (action one of {', '.join(ENTITY_ACTIONS)}). At most "
                            f"{MAX_ENTITY_BYTES} bytes as compact JSON."),
            "anyOf": [ref("IdentifyEntity"), ref("DeleteEntity"), ref("EventEntity"),
                      ref("MergeEntity")],
        },
        "Batch": {
            "type": "object", "required": ["batch"],
            "description": (f"At most {MAX_BATCH_BYTES} bytes (by Content-Length). Each entity "
                            "is checked on its own: the good ones are accepted, the bad ones "
                            "named in a 207."),
            "properties": {"batch": {"type": "array", "minItems": 1,
                                     "items": ref("Entity")}},
        },
    }


def _browser_schemas(now_s: int) -> dict[str, Any]:
    # A browser names its person in the body (customer_id), or its visitor (anonymous_id).
    people = _properties((CUSTOMER_ID, ANONYMOUS_ID), now_s)
    either = [{"required": [name]} for name in people]
    page_fields = tuple(f for f in EVENT_FIELDS if f not in (NAME, EVENT_TYPE))
    # _update is refused from browsers: a page must not decide whether a person exists.
    identify_fields = tuple(f for f in IDENTIFY_FIELDS if f is not UPDATE)
    return {
        "BrowserEvent": {
            "type": "object", "required": _required(EVENT_FIELDS),
            "description": ("An event from a web page: of the person customer_id, else of the "
                            "visitor anonymous_id (one of the two is required)."),
            "properties": {**_properties(EVENT_FIELDS, now_s), **people},
            "anyOf": either,
        },
        "BrowserPage": {
            "type": "object", "required": [PAGE_URL.name],
            "description": ("A page view, stored as an event of type page named by the URL (or "
                            "by name when url is absent); customer_id or anonymous_id as for "
                            "events."),
            "properties": _properties((PAGE_URL, *page_fields), now_s) | people,
            "anyOf": either,
        },
        "BrowserIdentify": {
            "type": "object", "required": ["id"],
            "description": ("id names the person; every other key except anonymous_id and "
                            "_timestamp is an attribute. _update is refused from browsers."),
            "maxProperties": _MAX_IDENTIFY_KEYS,
            "properties": {"id": field_schema(CUSTOMER_ID, now_s),
                           **_properties(identify_fields, now_s)},
            "not": {"required": [UPDATE.name]},
            "propertyNames": field_schema(ATTRIBUTE_NAME, now_s),
            "additionalProperties": field_schema(ATTRIBUTE_VALUE, now_s),
        },
    }


def _schemas(now_s: int) -> dict[str, Any]:
    return {**ERROR_SCHEMAS, **_event_schemas(now_s), **_identify_schemas(now_s),
            **_person_schemas(now_s), **_v2_schemas(now_s), **_browser_schemas(now_s),
            **READ_SCHEMAS, **SEGMENT_SCHEMAS, **RENDER_SCHEMAS}


# --- the document ---------------------------------------------------------------------------------

_SECURITY_SCHEMES = {
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
}
_TAGS = ("track", "track-v2", "browser", "reads", "segments", "imports", "render", "export", "ops")


def document(rt: Any) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API as ``rt`` (a :class:`app.runtime.Runtime`) serves it.

    Only ``rt.settings`` and ``rt.topics`` are read, so a stand-in with those two works too.
    """
    settings = rt.settings
    clock = getattr(rt, "clock", None)
    now_s = clock.now() if clock is not None else time.time()
    served = Served(max_body=settings.max_body_bytes,
                    partitions=rt.topics.person_events.partitions,
                    import_cap=max_import_bytes(), identify_by=settings.identify_by)
    paths: dict[str, Any] = {}
    for group in (*TRACK_PATH_GROUPS, *READ_PATH_GROUPS):
        paths.update(group(served))
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
        "tags": [{"name": name} for name in _TAGS],
        "paths": paths,
        "components": {
            "schemas": _schemas(int(now_s)),
            "responses": error_responses(),
            "securitySchemes": _SECURITY_SCHEMES,
        },
    })
