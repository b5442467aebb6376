"""The OpenAPI document: valid OpenAPI 3.1, valid JSON Schema throughout, and complete (every route
the server registers is described, with its security)."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any
from unittest.mock import MagicMock

import jsonschema
import orjson
import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from app.api.openapi import document
from app.settings import Settings
from app.topics import build_topics
from tests.fuzz.support import operations, schemes_of

#: A browser UI (HTML, sign-in form, session cookie), deliberately not part of the API document,
#: and routes only other workers may call (signed; app.api.consistency).
UNDOCUMENTED_PREFIXES = ("/console", "/internal/")


def _runtime(**settings: Any) -> SimpleNamespace:
    s = Settings(site_id="site-x", api_key="k", app_key="a", **settings)
    return SimpleNamespace(settings=s, topics=build_topics(s))


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    # Through JSON, as clients see it (tuples become lists, and it must serialize at all).
    return orjson.loads(orjson.dumps(document(_runtime())))


def test_is_a_valid_openapi_3_1_document(doc: dict[str, Any]) -> None:
    assert doc["openapi"].startswith("3.1.")
    validate(doc)  # the OpenAPI 3.1 meta-schema, plus $ref resolution
    errors = list(OpenAPIV31SpecValidator(doc).iter_errors())
    assert not errors, "\n".join(str(e)[:500] for e in errors)


def test_every_schema_is_valid_json_schema_2020_12(doc: dict[str, Any]) -> None:
    def schemas(node: Any, where: str):  # type: ignore[no-untyped-def]
        if isinstance(node, dict):
            if "schema" in node and isinstance(node["schema"], dict):
                yield where + ".schema", node["schema"]
            for key, value in node.items():
                yield from schemas(value, f"{where}.{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                yield from schemas(value, f"{where}[{index}]")

    found = [("components.schemas." + k, v) for k, v in doc["components"]["schemas"].items()]
    found += list(schemas(doc["paths"], "paths"))
    assert len(found) > 50
    for where, schema in found:
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise AssertionError(f"{where}: {exc.message}") from None
        for pattern in _patterns(schema):
            re.compile(pattern)


def _patterns(node: Any):  # type: ignore[no-untyped-def]
    if isinstance(node, dict):
        if isinstance(node.get("pattern"), str):
            yield node["pattern"]
        for value in node.values():
            yield from _patterns(value)
    elif isinstance(node, list):
        for value in node:
            yield from _patterns(value)


def test_error_shapes_validate_what_the_server_sends(doc: dict[str, Any]) -> None:
    from app.api.responses import error_response
    from app.api.v2 import _errors_json
    from app.ingest.validate import FieldError

    registry_doc = {**doc["components"]}

    def validator(name: str) -> jsonschema.Draft202012Validator:
        schema = {"$ref": f"#/components/schemas/{name}", "components": registry_doc}
        return jsonschema.Draft202012Validator(schema)

    v1 = orjson.loads(error_response(400, "name: is required", "data: must be an object").body)
    validator("Error").validate(v1)
    batch = {"errors": _errors_json([FieldError("name", "required", "is required")], 3)}
    validator("V2Error").validate(batch)
    assert not validator("Error").is_valid({"errors": ["x"]})
    assert not validator("Error").is_valid({"meta": {"errors": []}})
    assert not validator("V2Error").is_valid({"errors": [{"reason": "x", "field": "y"}]})


def test_every_operation_is_identified_secured_and_answers_in_json(doc: dict[str, Any]) -> None:
    ids = [op.get("operationId") for _, _, op in operations(doc)]
    assert all(ids) and len(ids) == len(set(ids)), ids
    schemes = doc["components"]["securitySchemes"]
    assert schemes["trackBasic"] == {**schemes["trackBasic"], "type": "http", "scheme": "basic"}
    assert schemes["appBearer"] == {**schemes["appBearer"], "type": "http", "scheme": "bearer"}
    public = {"/healthz", "/readyz", "/openapi.json", "/js/track.js"}
    for path, method, op in operations(doc):
        assert "security" in op, f"{method} {path}: security not stated"
        names = schemes_of(doc, op)
        if names:
            assert "401" in op["responses"], f"{method} {path}: no 401"
        elif op.get("x-eventide-credential") == "site_id":
            assert "{site_id}" in path and "401" in op["responses"], path
        else:
            assert path in public or method == "options", f"{method} {path} is public"
        assert not any(code.startswith("5") and code != "503" for code in op["responses"]), path
    assert {p for p in doc["paths"] if p.startswith("/api/v1/customers")} >= {
        "/api/v1/customers/{customer_id}", "/api/v1/customers/{customer_id}/events"}


def test_limits_follow_the_settings() -> None:
    doc = document(_runtime(partitions=12, max_body_bytes=2048))
    part = doc["paths"]["/api/v1/export/partitions/{partition}"]["get"]["parameters"][0]
    assert part["schema"]["maximum"] == 11
    body = doc["paths"]["/api/v1/customers/{customer_id}/events"]["post"]["requestBody"]
    assert "2048 bytes" in body["description"]
    schemas = doc["components"]["schemas"]
    assert schemas["TrackEvent"]["properties"]["name"]["maxLength"] == 100
    assert schemas["Identifier"]["maxLength"] == 150
    assert "100000 bytes" in schemas["EventData"]["description"]
    assert "32768 bytes" in schemas["Entity"]["description"]
    assert "512000 bytes" in schemas["Batch"]["description"]


def _routes() -> set[tuple[str, str]]:
    from app.api.server import build_web_app

    rt = MagicMock()
    rt.settings = Settings(site_id="site-x", api_key="k", app_key="a")
    rt.topics = build_topics(rt.settings)
    try:
        application = build_web_app(rt)
    except Exception as exc:  # pragma: no cover - depends on what other modules need at build
        pytest.skip(f"cannot build the web app with a stand-in runtime: {exc!r}")
    found = set()
    for route in application.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or info.get("prefix") or ""
        if route.method in ("HEAD", "*") or path.startswith(UNDOCUMENTED_PREFIXES):
            continue
        found.add((route.method.lower(), path))
    return found


def test_every_route_the_server_registers_is_documented(doc: dict[str, Any]) -> None:
    documented = {(method, path) for path, method, _ in operations(doc)}
    registered = _routes()
    missing = registered - documented
    assert not missing, (f"routes not in the OpenAPI document (add them to app/api/openapi.py): "
                         f"{sorted(missing)}")
    stale = documented - registered
    assert not stale, f"documented but not routed: {sorted(stale)}"
