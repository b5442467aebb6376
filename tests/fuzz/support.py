"""Shared by the fuzz and security suites: credentials per security scheme, the error shapes, the
serializers schemathesis needs for our media types, and the known bugs the fuzzer steps around.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from pathlib import Path
from typing import Any, AsyncIterator, Iterator
from urllib.parse import urlencode

from tests.support.harness import Deployment, Worker

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Every ``(path, method, operation)`` of an OpenAPI document."""
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


def schemes_of(doc: dict[str, Any], operation: dict[str, Any]) -> list[str]:
    """The security scheme names an operation requires (empty: public)."""
    requirements = operation.get("security", doc.get("security", []))
    return [name for requirement in requirements for name in requirement]


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def credentials(doc: dict[str, Any], operation: dict[str, Any],
                deployment: Deployment) -> dict[str, str]:
    """The right ``Authorization`` header for an operation, per its security scheme."""
    for name in schemes_of(doc, operation):
        scheme = doc["components"]["securitySchemes"][name]
        assert scheme["type"] == "http", scheme
        if scheme["scheme"] == "basic":
            return dict(deployment.track_auth)
        if scheme["scheme"] == "bearer":
            return dict(deployment.app_auth)
        raise AssertionError(f"unknown scheme {scheme}")
    return {}


def fill_path(path: str, **values: str) -> str:
    """``path`` with every ``{param}`` replaced (``values`` first, else a harmless default)."""
    defaults = {"customer_id": "sec-c1", "anonymous_id": "sec-a1", "segment_id": "sec-s1",
                "partition": "0", "site_id": "site-nope"}
    out = path
    for name in [p[1:-1] for p in path.split("/") if p.startswith("{") and p.endswith("}")]:
        out = out.replace("{" + name + "}", values.get(name, defaults.get(name, "x")))
    return out


# --- the documented error shapes -----------------------------------------------------------------


def v1_error_problem(body: Any) -> str | None:
    """Why ``body`` is not ``{"meta": {"errors": [str, ...]}}`` (None when it is)."""
    if not isinstance(body, dict) or set(body) != {"meta"}:
        return f"not {{'meta': ...}}: {body!r:.200}"
    meta = body["meta"]
    if not isinstance(meta, dict) or set(meta) != {"errors"}:
        return f"meta is not {{'errors': [...]}}: {meta!r:.200}"
    errors = meta["errors"]
    if not isinstance(errors, list) or not errors or not all(isinstance(e, str) for e in errors):
        return f"meta.errors is not a non-empty list of strings: {errors!r:.200}"
    return None


def v2_error_problem(body: Any, *, batch: bool = False) -> str | None:
    """Why ``body`` is not ``{"errors": [{"reason", "field", "message"[, "batch_index"]}]}``."""
    if not isinstance(body, dict) or set(body) != {"errors"}:
        return f"not {{'errors': [...]}}: {body!r:.200}"
    errors = body["errors"]
    if not isinstance(errors, list) or not errors:
        return f"errors is not a non-empty list: {errors!r:.200}"
    for error in errors:
        keys = {"reason", "field", "message"} | ({"batch_index"} if batch else set())
        if not isinstance(error, dict) or set(error) != keys:
            return f"an error is not {sorted(keys)}: {error!r:.200}"
        if not all(isinstance(error[k], str) for k in ("reason", "field", "message")):
            return f"reason/field/message are not strings: {error!r:.200}"
        if batch and (not isinstance(error["batch_index"], int) or error["batch_index"] < 0):
            return f"batch_index is not an index: {error!r:.200}"
    return None


def error_shape_problem(path: str, method: str, status: int, content_type: str,
                        text: str) -> str | None:
    """Why a 4xx answer is not in a documented error shape (None when it is)."""
    if method == "options" and status == 403 and content_type.startswith("text/plain"):
        return None  # a refused CORS preflight: plain text, documented
    if not content_type.startswith("application/json"):
        return f"{status} with content type {content_type!r}: {text[:200]!r}"
    try:
        body = json.loads(text)
    except ValueError:
        return f"{status} body is not JSON: {text[:200]!r}"
    v1 = v1_error_problem(body)
    if v1 is None:
        return None
    if path.startswith("/api/v2/"):
        v2 = v2_error_problem(body, batch=path == "/api/v2/batch" and status == 207)
        if v2 is None:
            return None
    return v1


# --- serializers for the media types schemathesis does not know (or knows differently) ----------


def _flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    """Rack-style bracketed form fields, the way app.ingest.forms reads them."""
    if isinstance(value, dict):
        if not value and prefix:
            out.append((prefix, ""))
        for key, item in value.items():
            _flatten(f"{prefix}[{key}]" if prefix else str(key), item, out)
    elif isinstance(value, list):
        for item in value:
            _flatten(prefix + "[]", item, out)
    elif value is None:
        out.append((prefix, ""))
    elif isinstance(value, bool):
        out.append((prefix, "true" if value else "false"))
    else:
        out.append((prefix, str(value)))


def form_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, dict):
        pairs: list[tuple[str, str]] = []
        _flatten("", value, pairs)
        return urlencode(pairs).encode()
    return json.dumps(value).encode()  # a negative non-object body: send it as is


def text_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return json.dumps(value).encode()


_registered = False


def register_serializers() -> None:
    global _registered
    if _registered:
        return
    import schemathesis

    @schemathesis.serializer("application/x-www-form-urlencoded")
    def _form(ctx: Any, value: Any) -> bytes:  # deepObject, as the document says
        return form_bytes(value)

    @schemathesis.serializer("text/csv", "application/x-ndjson")
    def _text(ctx: Any, value: Any) -> bytes:
        return text_bytes(value)

    _registered = True


# --- known bugs the fuzzer steps around (none open) ---------------------------------------------


def _non_decimal_digits(value: Any) -> bool:
    """``str.isdigit()`` but not ``int()``-able: superscripts ('²'), or past 4300 digits."""
    return isinstance(value, str) and value.isdigit() and (
        not value.isdecimal() or len(value) > 4300)


def _v2_identify_with_non_object_attributes(entity: Any) -> bool:
    return (isinstance(entity, dict) and entity.get("action") == "identify"
            and bool(entity.get("attributes")) and not isinstance(entity.get("attributes"), dict))


def known_bug(operation_id: str, path_parameters: dict[str, Any] | None,
              query: dict[str, Any] | None, body: Any) -> str | None:
    """The known bug a request would trigger (so the fuzzer skips it), or None.

    The bugs the first fuzz runs found are fixed (each has a regression test in
    test_api_fuzz.py); add one here only while its fix is in progress.
    """
    return None


def _values(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --- one worker for a whole test module ----------------------------------------------------------


@contextlib.asynccontextmanager
async def module_worker(bootstrap: str, root: Path) -> AsyncIterator[tuple[Deployment, Worker]]:
    """A deployment (fresh topics) and a ready worker, stopped on exit."""
    deployment = Deployment(bootstrap, root)
    await deployment.create_topics()
    started = Worker(deployment).start()
    try:
        await started.wait_ready()
        yield deployment, started
    finally:
        started.stop()


async def raw_request(url: str, request: bytes, timeout_s: float = 15.0
                      ) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` (bytes exactly as given: any header bytes) and read the whole answer."""
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout_s)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body
