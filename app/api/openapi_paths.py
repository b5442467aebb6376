"""The route table of the track API (v1 and v2), the browser snippet's endpoints and the operational
ones, as data: one function per group, each returning its paths."""

from __future__ import annotations

from typing import Any

from app.api.openapi_parts import (BASIC, BEARER, JSON, PUBLIC, TRACK_ERRORS, Served, json_body,
                                   ok, path_param, ref, responses)
from app.ingest.fields import MAX_BATCH_BYTES, MAX_ENTITY_BYTES


def ops_paths(s: Served) -> dict[str, Any]:
    """Readiness, this document and metrics."""
    return {
        **{path: {"get": {
            "operationId": operation_id, "tags": ["ops"], "security": PUBLIC,
            "summary": ("Readiness (both paths answer the same): joined the consumer group "
                        "and recovered the state of every assigned partition."),
            "responses": {
                "200": ok({"type": "object", "required": ["status"],
                            "properties": {"status": {"const": "ok"}}}),
                "503": {"$ref": "#/components/responses/E503"}},
        }} for path, operation_id in (("/healthz", "healthz"), ("/readyz", "readyz"))},
        "/openapi.json": {"get": {
            "operationId": "openapi", "tags": ["ops"], "security": PUBLIC,
            "summary": "This document.",
            "responses": {"200": ok({"type": "object", "required": ["openapi", "paths"]})},
        }},
        "/metrics": {"get": {
            "operationId": "metrics", "tags": ["ops"], "security": BEARER,
            "summary": "Prometheus text: records, verdicts, dead letters, latency, RSS, RocksDB.",
            "responses": responses("401", _200=ok({"type": "string"}, media_type="text/plain")),
        }},
    }


def track_paths(s: Served) -> dict[str, Any]:
    """Track API v1: events, identify, delete and merge."""
    return {
        "/api/v1/customers/{customer_id}/events": {
            "parameters": [s.customer_id],
            "post": {
                "operationId": "trackCustomerEvent", "tags": ["track"], "security": BASIC,
                "summary": "Track an event of an identified person.",
                "requestBody": json_body(ref("TrackEvent"), form=ref("TrackEventForm"),
                                          description=s.body_note),
                "responses": responses(*TRACK_ERRORS, _200=ok(ref("Empty"))),
            },
        },
        "/api/v1/events": {"post": {
            "operationId": "trackAnonymousEvent", "tags": ["track"], "security": BASIC,
            "summary": "Track an event of an anonymous visitor.",
            "requestBody": json_body(ref("AnonymousEvent"), form=ref("AnonymousEventForm"),
                                      description=s.body_note),
            "responses": responses(*TRACK_ERRORS, _200=ok(ref("Empty"))),
        }},
        "/api/v1/customers/{customer_id}": {
            "parameters": [s.customer_id],
            "put": {
                "operationId": "identify", "tags": ["track"], "security": BASIC,
                "summary": "Create or update a person (identify).",
                "requestBody": json_body(ref("Identify"), form=ref("IdentifyForm"),
                                          description=s.body_note),
                "responses": responses(*TRACK_ERRORS, _200=ok(ref("Empty"))),
            },
            "delete": {
                "operationId": "deleteCustomer", "tags": ["track"], "security": BASIC,
                "summary": "Delete a person (no body needed).",
                "responses": responses(*TRACK_ERRORS, _200=ok(ref("Empty"))),
            },
            "get": {
                "operationId": "getCustomer", "tags": ["reads"], "security": BEARER,
                "summary": "A person's profile.",
                "responses": responses("401", "404", _200=ok({
                    "type": "object", "required": ["customer"], "additionalProperties": False,
                    "properties": {"customer": ref("Profile")}})),
            },
        },
        "/api/v1/merge_customers": {"post": {
            "operationId": "mergeCustomers", "tags": ["track"], "security": BASIC,
            "summary": "Merge two people: the secondary is folded into the primary.",
            "requestBody": json_body(ref("Merge"), form=ref("MergeForm"), description=s.body_note),
            "responses": responses(*TRACK_ERRORS, _200=ok(ref("Empty"))),
        }},
    }


def track_v2_paths(s: Served) -> dict[str, Any]:
    """Track API v2: one entity, or a batch."""
    return {
        "/api/v2/entity": {"post": {
            "operationId": "v2Entity", "tags": ["track-v2"], "security": BASIC,
            "summary": "One v2 entity.",
            "requestBody": json_body(ref("Entity"), description=(
                f"At most {MAX_ENTITY_BYTES} bytes as compact JSON (400 too_long), and "
                f"{s.max_body} bytes on the wire (413).")),
            "responses": responses(*TRACK_ERRORS, v2=True, _200=ok(ref("Empty"))),
        }},
        "/api/v2/batch": {"post": {
            "operationId": "v2Batch", "tags": ["track-v2"], "security": BASIC,
            "summary": "Several v2 entities; the good ones are accepted even if some are bad.",
            "requestBody": json_body(ref("Batch"), description=(
                f"At most {MAX_BATCH_BYTES} bytes by Content-Length (413 in the v2 shape).")),
            "responses": responses(
                *TRACK_ERRORS, v2=True, _200=ok(ref("Empty"), "Every entity was accepted."),
                _207={"description": ("Some entities were refused (each named with its "
                                      "batch_index); the others were accepted."),
                      "content": {JSON: {"schema": ref("V2Error")}}}),
        }},
    }


_SITE_ID = path_param("site_id", {"type": "string"},
                      "The public site id (EVENTIDE_SITE_ID); anything else is a 401.")
_ORIGIN = {"name": "Origin", "in": "header", "required": False, "schema": {"type": "string"},
           "description": ("A browser page's origin: must be listed in EVENTIDE_CORS_ORIGINS "
                           "(403 otherwise). Requests without Origin are accepted.")}
_SITE_ERRORS = {
    "400": {"$ref": "#/components/responses/E400"},
    "401": {"description": "Unknown site id.", "content": {JSON: {"schema": ref("Error")}}},
    "403": {"description": "Origin not allowed.",
            "content": {JSON: {"schema": ref("Error")}}},
    "404": {"$ref": "#/components/responses/E404"},
    "413": {"$ref": "#/components/responses/E413"},
    "415": {"$ref": "#/components/responses/E415"},
    "503": {"$ref": "#/components/responses/E503"},
}
_PREFLIGHT = {
    "tags": ["browser"], "security": PUBLIC,
    "summary": "CORS preflight: 204 for an allowed Origin asking for POST, else 403.",
    "parameters": [
        {**_ORIGIN, "description": "The page's origin (must be allowed)."},
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


def browser_paths(s: Served) -> dict[str, Any]:
    """The browser snippet's endpoints (site id in the path) and the snippet itself."""
    paths: dict[str, Any] = {"/js/track.js": {"get": {
        "operationId": "trackSnippet", "tags": ["browser"], "security": PUBLIC,
        "summary": "The JavaScript snippet that calls the browser endpoints.",
        "responses": {"200": ok({"type": "string"}, media_type="application/javascript")},
    }}}
    for action, schema, summary in (
            ("events", "BrowserEvent", "Track an event from a web page."),
            ("page", "BrowserPage", "Track a page view from a web page."),
            ("identify", "BrowserIdentify", "Identify a person from a web page.")):
        paths[f"/api/v1/browser/{{site_id}}/{action}"] = {
            "parameters": [_SITE_ID],
            "post": {
                "operationId": f"browser{action.title()}", "tags": ["browser"],
                "security": PUBLIC, "x-eventide-credential": "site_id",
                "summary": summary,
                "parameters": [_ORIGIN],
                "requestBody": json_body(ref(schema), description=s.body_note),
                "responses": {"200": ok(ref("Empty")), **_SITE_ERRORS},
            },
            "options": {**_PREFLIGHT, "operationId": f"browser{action.title()}Preflight"},
        }
    return paths


TRACK_PATH_GROUPS = (ops_paths, track_paths, track_v2_paths, browser_paths)
