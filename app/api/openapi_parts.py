"""The building blocks of the OpenAPI document (:mod:`app.api.openapi`): media types, security
requirements, schema references, request bodies, responses and parameters, and what the route
table states that depends on the running settings (:class:`Served`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.ingest.fields import KEY_PATTERN, MAX_IDENTIFIER_BYTES, NON_BLANK_PATTERN

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
JSONL = "application/x-ndjson"

BASIC = [{"trackBasic": []}]
BEARER = [{"appBearer": []}]
PUBLIC: list[dict[str, list[str]]] = []

TRACK_ERRORS = ("400", "401", "404", "413", "415", "503")


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def bytes_note(limit: int) -> str:
    return (f"At most {limit} bytes of UTF-8 (maxLength counts characters; the server counts "
            "bytes, so fewer non-ASCII characters fit).")


def text_schema(limit: int, what: str) -> dict[str, Any]:
    """Non-blank text of at most ``limit`` bytes."""
    return {"type": "string", "minLength": 1, "maxLength": limit, "pattern": NON_BLANK_PATTERN,
            "description": f"{what}. {bytes_note(limit)} Must not be blank (whitespace only)."}


def key_schema(limit: int, what: str) -> dict[str, Any]:
    """A key (identifier, segment id): non-blank, no control characters, ``limit`` bytes."""
    schema = text_schema(limit, what)
    schema["pattern"] = KEY_PATTERN
    schema["description"] += " No control characters."
    return schema


def json_body(schema: dict[str, Any], *, form: dict[str, Any] | None = None,
               description: str = "") -> dict[str, Any]:
    content: dict[str, Any] = {JSON: {"schema": schema}}
    if form is not None:
        content[FORM] = {"schema": form}
    body: dict[str, Any] = {"required": True, "content": content}
    if description:
        body["description"] = description
    return body


def ok(schema: dict[str, Any], description: str = "OK",
        media_type: str = JSON) -> dict[str, Any]:
    return {"description": description, "content": {media_type: {"schema": schema}}}


def error(description: str, *, v2: bool = False) -> dict[str, Any]:
    schema = ({"anyOf": [ref("V2Error"), ref("Error")]} if v2 else ref("Error"))
    return {"description": description, "content": {JSON: {"schema": schema}}}


def responses(*codes: str, v2: bool = False, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {code.replace("_", ""): value for code, value in extra.items()}
    for code in codes:
        if code in ("400", "413") and v2:
            out[code] = error(ERROR_TEXT[code], v2=True)
        else:
            out[code] = {"$ref": f"#/components/responses/E{code}"}
    return out



ERROR_TEXT = {
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


def path_param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema,
            "description": description}


def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}



def error_responses() -> dict[str, Any]:
    """``components.responses``: the v1 error shape under each status, ``E401`` with its
    challenge."""
    return {
        f"E{code}": {
            "description": text,
            "content": {JSON: {"schema": ref("Error")}},
            **({"headers": {"WWW-Authenticate": {
                "required": True, "schema": {"type": "string"},
                "description": "The Basic challenge (sent on every 401)."}}}
               if code == "401" else {}),
        }
        for code, text in ERROR_TEXT.items()
    }


@dataclass(frozen=True)
class Served:
    """What the route table states that depends on the running settings."""

    max_body: int
    partitions: int
    import_cap: int
    identify_by: str

    @property
    def body_note(self) -> str:
        return f"At most {self.max_body} bytes (413 above)."

    @property
    def customer_id(self) -> dict[str, Any]:
        by = "email address" if self.identify_by == "email" else "customer id"
        return path_param("customer_id", ref("Identifier"),
                          f"The person's {by}. {bytes_note(MAX_IDENTIFIER_BYTES)}")

    @property
    def partition(self) -> dict[str, Any]:
        last = self.partitions - 1
        return path_param("partition", {"type": "integer", "minimum": 0, "maximum": last},
                          f"A person partition, 0 to {last}.")


ANONYMOUS_ID = path_param("anonymous_id", ref("Identifier"), "An anonymous id.")
NAMES_LIMIT = query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                    "Page size.")
