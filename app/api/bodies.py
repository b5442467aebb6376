"""Read a request body as JSON or form-encoded, within the size limit, with clear errors."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from app.api.responses import ApiError
from app.ingest.forms import decode_form

#: JSON, and bodies sent without a type (aiohttp reads a missing Content-Type as octet-stream).
#: Anything else, text/plain included, is a 415 naming what to send.
_JSON_TYPES = ("application/json", "application/octet-stream", "")


async def read_body(request: web.Request, max_bytes: int) -> Any:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, f"body: larger than the limit of {max_bytes} bytes") from None
    if not raw.strip():
        return {}
    content_type = request.content_type
    if content_type == "application/x-www-form-urlencoded":
        try:
            text = raw.decode("utf-8")
            return decode_form(parse_qsl(text, keep_blank_values=True, errors="strict"))
        except UnicodeDecodeError:
            raise ApiError(400, "body: form data is not valid UTF-8") from None
        except ValueError as exc:
            raise ApiError(400, f"body: {exc}") from None
    if content_type in _JSON_TYPES or content_type.endswith("+json"):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, f"body: malformed JSON ({exc.msg} at position {exc.pos})") from None
    raise ApiError(415, f"body: unsupported content type {content_type!r}; send "
                        "application/json or application/x-www-form-urlencoded")
