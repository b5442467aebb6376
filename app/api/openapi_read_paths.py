"""The route table of the reads, segments, imports, render and export endpoints (bearer app key),
as data: one function per group, each returning its paths."""

from __future__ import annotations

from typing import Any

from app.api import activity_log, people_search, segment_preview
from app.api.openapi_parts import (ANONYMOUS_ID, BEARER, JSONL, NAMES_LIMIT, Served, json_body,
                                   key_schema, ok, path_param, query, ref, responses)
from app.api.segments import MAX_SEGMENT_ID_BYTES
from app.model import EVENT_TYPES

SEGMENT_ID = path_param("segment_id", key_schema(MAX_SEGMENT_ID_BYTES, "A segment id"),
                        "The segment's id.")
ACTIVITY_PARAMS = [
    query("days", {"type": "integer", "minimum": 1, "maximum": 36_500, "default": 30},
          "How many days back (by event time)."),
    query("type", {"type": "string"},
          "Only this type (event, page or screen; other values match nothing)."),
    query("name", {"type": "string"}, "Only events of this name."),
    query("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
          "Page size."),
    query("cursor", {"type": "string", "pattern": "^[0-9]+[.].+$"},
          "The 'next' of the previous page (400 for anything else)."),
]


def person_read_paths(s: Served) -> dict[str, Any]:
    """A person's (or an anonymous id's) activity, changes and segments; event names."""
    return {
        "/api/v1/customers/{customer_id}/activities": {"get": {
            "operationId": "customerActivities", "tags": ["reads"], "security": BEARER,
            "summary": "A person's activity, newest first.",
            "parameters": [s.customer_id, *ACTIVITY_PARAMS],
            "responses": responses("400", "401", "404", _200=ok(ref("ActivityPage"))),
        }},
        "/api/v1/anonymous/{anonymous_id}/activities": {"get": {
            "operationId": "anonymousActivities", "tags": ["reads"], "security": BEARER,
            "summary": "An anonymous visitor's activity (processed_at null), newest first.",
            "description": "Once an identify links the anonymous id to a person, its activity "
                           "moves to that person: the answer is then still 200, with "
                           "`identified_as` naming the person (and the activity that is still "
                           "anonymous, usually none). 404 only for an anonymous id with "
                           "nothing stored and no link.",
            "parameters": [ANONYMOUS_ID, *ACTIVITY_PARAMS],
            "responses": responses("400", "401", "404",
                                    _200=ok(ref("AnonymousActivityPage"))),
        }},
        "/api/v1/customers/{customer_id}/attribute_changes": {"get": {
            "operationId": "attributeChanges", "tags": ["reads"], "security": BEARER,
            "summary": "A person's attribute changes, newest first.",
            "parameters": [s.customer_id],
            "responses": responses("401", "404", _200=ok({
                "type": "object", "required": ["changes"], "additionalProperties": False,
                "properties": {"changes": {"type": "array",
                                           "items": ref("AttributeChange")}}})),
        }},
        "/api/v1/customers/{customer_id}/segments": {"get": {
            "operationId": "customerSegments", "tags": ["segments"], "security": BEARER,
            "summary": "The segments a person is in, and since when.",
            "parameters": [s.customer_id],
            "responses": responses("401", "404", _200=ok({
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
                query("q", {"type": "string"},
                       "Customer.io search syntax: * wildcard, + or, | not, \\ escapes."),
                NAMES_LIMIT],
            "responses": responses("400", "401", _200=ok({
                "type": "object", "required": ["names"], "additionalProperties": False,
                "properties": {"names": {"type": "array", "items": {
                    "type": "object", "required": ["name", "count", "last_seen"],
                    "additionalProperties": False,
                    "properties": {"name": {"type": "string"},
                                   "count": {"type": "integer", "minimum": 0},
                                   "last_seen": {"type": "number"}}}}}})),
        }},
    }


def activity_log_paths(s: Served) -> dict[str, Any]:
    """The workspace Activity Log."""
    return {
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
                query("type", {"type": "string", "enum": list(EVENT_TYPES)}, "Only this type."),
                query("name", {"type": "string"}, "Only events of this name."),
                query("customer", {"type": "string"},
                       "Only this person (the person id the rows show), or with anonymous=true "
                       "this anonymous id."),
                query("anonymous", {"type": "boolean", "default": False},
                       "The Anonymous tab: activity of anonymous ids not identified yet."),
                query("before", {"type": "string"},
                       "The 'next' of the previous page (400 for anything else)."),
                query("limit", {"type": "integer", "minimum": 1,
                                 "maximum": activity_log.MAX_LIMIT,
                                 "default": activity_log.DEFAULT_LIMIT}, "Page size."),
            ],
            "responses": responses("400", "401", "503", _200=ok({
                "type": "object", "required": ["activities", "next", "complete"],
                "additionalProperties": False,
                "properties": {
                    "activities": {"type": "array", "items": ref("LogActivity")},
                    "next": {"type": ["string", "null"],
                             "description": "The cursor for `before`, or null at the end."},
                    "complete": {"type": "boolean",
                                 "description": "False when a bounded anonymous scan stopped "
                                                "before reading every anonymous id."}}})),
        }},
    }


def segment_paths(s: Served) -> dict[str, Any]:
    """Segment definitions and membership."""
    return {
        "/api/v1/segments": {"get": {
            "operationId": "listSegments", "tags": ["segments"], "security": BEARER,
            "summary": "Every segment.",
            "responses": responses("401", _200=ok({
                "type": "object", "required": ["segments"], "additionalProperties": False,
                "properties": {"segments": {"type": "array", "items": ref("Segment")}}})),
        }},
        "/api/v1/segments/{segment_id}": {
            "parameters": [SEGMENT_ID],
            "put": {
                "operationId": "putSegment", "tags": ["segments"], "security": BEARER,
                "summary": "Create or replace a segment definition.",
                "description": "An invalid definition is a 400 listing every mistake, each "
                               "\"location: reason\" (\"match.all[0].within: ...\"), in "
                               "document order (at most 50, then one line counting the rest).",
                "requestBody": json_body(ref("SegmentDefinition"), description=s.body_note),
                "responses": responses("400", "401", "404", "413", "415", "503", _200=ok({
                    "type": "object", "required": ["segment"],
                    "properties": {"segment": ref("Segment")}})),
            },
            "get": {
                "operationId": "getSegment", "tags": ["segments"], "security": BEARER,
                "summary": "A segment: its definition, state and member count.",
                "responses": responses("400", "401", "404", _200=ok({
                    "type": "object", "required": ["segment"],
                    "properties": {"segment": ref("Segment")}})),
            },
            "delete": {
                "operationId": "deleteSegment", "tags": ["segments"], "security": BEARER,
                "summary": "Delete a segment.",
                "responses": responses("400", "401", "404", "503", _200=ok(ref("Empty"))),
            },
        },
        "/api/v1/segments/{segment_id}/membership": {"get": {
            "operationId": "segmentMembership", "tags": ["segments"], "security": BEARER,
            "summary": "A segment's members, in natural id order.",
            "description": "Ids that are whole numbers come first, by value (5, 10, 11), then "
                           "every other id in string order.",
            "parameters": [SEGMENT_ID, NAMES_LIMIT,
                           query("cursor", {"type": "string"},
                                  "The 'next' of the previous page.")],
            "responses": responses("400", "401", "404", _200=ok({
                "type": "object", "required": ["people", "next"], "additionalProperties": False,
                "properties": {"people": {"type": "array", "items": {"type": "string"}},
                               "next": {"type": ["string", "null"]}}})),
        }},
    }


def segment_query_paths(s: Served) -> dict[str, Any]:
    """Segment previews and the person search behind pickers."""
    return {
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
            "requestBody": json_body({"type": "object"}, description=s.body_note),
            "responses": responses("400", "401", "413", "415", "503", _200=ok({
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
                query("q", {"type": "string", "maxLength": people_search.MAX_QUERY},
                       "A prefix of the id or email (case-sensitive); empty: the first people."),
                query("limit", {"type": "integer", "minimum": 1,
                                 "maximum": people_search.MAX_LIMIT,
                                 "default": people_search.DEFAULT_LIMIT}, "How many.")],
            "responses": responses("400", "401", "503", _200=ok({
                "type": "object", "required": ["customers"], "additionalProperties": False,
                "properties": {"customers": {"type": "array", "items": {
                    "type": "object", "required": ["id"], "additionalProperties": False,
                    "properties": {"id": {"type": "string"},
                                   "email": {"type": "string"}}}}}})),
        }},
    }


def import_paths(s: Served) -> dict[str, Any]:
    """CSV and jsonl imports."""
    return {
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
                f"application/vnd.ms-excel. At most {s.import_cap} bytes (413 above)."),
                "content": {"text/csv": {"schema": {"type": "string"}}}},
            "responses": responses("400", "401", "404", "413", "415", "503", _200=ok({
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
                f"application/octet-stream. At most {s.import_cap} bytes (413 above)."),
                "content": {JSONL: {"schema": {"type": "string"}}}},
            "responses": responses("400", "401", "404", "413", "415", "503", _200=ok({
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
    }


def export_paths(s: Served) -> dict[str, Any]:
    """Render and exports."""
    return {
        "/api/v1/render": {"post": {
            "operationId": "render", "tags": ["render"], "security": BEARER,
            "summary": "Render a liquid template for a person (and an event).",
            "description": ("Answered by the worker that owns the person, after every write "
                            "accepted before the request (an identify or event answered just "
                            "before counts), so the same on every worker."),
            "requestBody": json_body(ref("RenderRequest"), description=s.body_note),
            "responses": responses("400", "401", "404", "413", "415", "503", _200=ok({
                "type": "object", "required": ["output"], "additionalProperties": False,
                "properties": {"output": {"type": "string"}}})),
        }},
        "/api/v1/customers/{customer_id}/export": {"get": {
            "operationId": "customerExport", "tags": ["export"], "security": BEARER,
            "summary": "One person as jsonl (profile, attribute changes, events) or csv (events).",
            "parameters": [s.customer_id, query(
                "format", {"type": "string", "enum": ["jsonl", "csv"], "default": "jsonl"},
                "Output format.")],
            "responses": responses("400", "401", "404", _200={
                "description": "Streamed as an attachment.",
                "content": {JSONL: {"schema": {"type": "string"}},
                            "text/csv": {"schema": {"type": "string"}}}}),
        }},
        "/api/v1/export/partitions": {"get": {
            "operationId": "exportPartitions", "tags": ["export"], "security": BEARER,
            "summary": "How many person partitions there are, and which this worker owns.",
            "responses": responses("401", _200=ok({
                "type": "object", "required": ["partitions", "owned"],
                "additionalProperties": False,
                "properties": {"partitions": {"const": s.partitions},
                               "owned": {"type": "array", "items": {
                                   "type": "integer", "minimum": 0,
                                   "maximum": s.partitions - 1}}}})),
        }},
        "/api/v1/export/partitions/{partition}": {"get": {
            "operationId": "exportPartition", "tags": ["export"], "security": BEARER,
            "summary": "Every person of a partition as jsonl (only from the worker owning it).",
            "parameters": [s.partition],
            "responses": responses("401", "404", "409", _200={
                "description": "Streamed as an attachment.",
                "content": {JSONL: {"schema": {"type": "string"}}}}),
        }},
    }


READ_PATH_GROUPS = (person_read_paths, activity_log_paths, segment_paths, segment_query_paths,
                    import_paths, export_paths)
