"""Authentication and exposure: every endpoint of the OpenAPI document refuses missing, wrong and
mismatched credentials in the documented shape; the credential kinds never stand in for each
other; secrets are compared in constant time; servers listen on loopback unless told otherwise.

The endpoint lists come from the served ``/openapi.json``, so an endpoint added to the document is
covered here without touching this file (and ``tests/fuzz/test_openapi_document.py`` fails when a
route is registered but not documented).
"""

from __future__ import annotations

import ast
import asyncio
import base64
import inspect
import ipaddress
import json
import socket
from pathlib import Path
from typing import Any, AsyncIterator
from unittest import mock

import aiohttp
import pytest

from app.api import auth
from app.broker import EmbeddedBroker
from app.settings import Settings
from tests.fuzz.support import (basic, fill_path, module_worker, operations, raw_request,
                                schemes_of, v1_error_problem)
from tests.support.harness import Deployment, Worker, read_topic

pytestmark = pytest.mark.integration

TIMEOUT = aiohttp.ClientTimeout(total=30)


@pytest.fixture(scope="module")
async def live(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory
               ) -> AsyncIterator[tuple[Deployment, Worker, dict[str, Any]]]:
    """One worker for the module. Nothing in this module may be accepted: every request here is
    one the server must refuse, which ``test_refused_requests_wrote_nothing`` checks."""
    async with module_worker(broker.bootstrap_servers,
                             Path(tmp_path_factory.mktemp("security"))) as (deployment, worker):
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
            async with session.get(deployment.url + "/openapi.json") as response:
                assert response.status == 200, "GET /openapi.json must not need credentials"
                doc = await response.json()
        yield deployment, worker, doc


def secured(doc: dict[str, Any], scheme: str | None = None) -> list[tuple[str, str, dict]]:
    """Operations that need credentials (of ``scheme``: "basic" or "bearer", else any)."""
    found = []
    for path, method, op in operations(doc):
        kinds = {doc["components"]["securitySchemes"][n]["scheme"] for n in schemes_of(doc, op)}
        if kinds and (scheme is None or scheme in kinds):
            found.append((path, method, op))
    return found


def request_body(op: dict[str, Any]) -> tuple[bytes | None, dict[str, str]]:
    """A plausible body in the operation's first media type (it must be refused before use)."""
    content = op.get("requestBody", {}).get("content", {})
    if not content:
        return None, {}
    media_type = next(iter(content))
    body = {"application/json": b'{"name":"x","anonymous_id":"a","match":{"event":"e"}}',
            "application/x-www-form-urlencoded": b"name=x&anonymous_id=a",
            "text/csv": b"_cio_name,_cio_customer_id\nx,sec-c1\n",
            "application/x-ndjson": b'{"kind":"profile","id":"sec-c1","attributes":{}}\n'}
    return body.get(media_type, b"{}"), {"Content-Type": media_type}


async def call(session: aiohttp.ClientSession, d: Deployment, path: str, method: str,
               op: dict[str, Any], authorization: str | None
               ) -> tuple[int, dict[str, str], str]:
    body, headers = request_body(op)
    if authorization is not None:
        headers["Authorization"] = authorization
    async with session.request(method.upper(), d.url + fill_path(path), data=body,
                               headers=headers) as response:
        return response.status, dict(response.headers), await response.text()


def refusal_problem(status: int, headers: dict[str, str], text: str) -> str | None:
    """Why an answer is not a documented 401 (None when it is)."""
    headers = {k.lower(): v for k, v in headers.items()}
    if status != 401:
        return f"status {status}: {text[:200]}"
    if not headers.get("content-type", "").startswith("application/json"):
        return f"content type {headers.get('content-type')!r}"
    try:
        body = json.loads(text)
    except ValueError:
        return f"not JSON: {text[:200]!r}"
    shape = v1_error_problem(body)
    if shape is not None:
        return shape
    if not body["meta"]["errors"][0].startswith("unauthorized"):
        return f"message does not say unauthorized: {body['meta']['errors']}"
    if "www-authenticate" not in headers:
        return "no WWW-Authenticate challenge"
    return None


async def assert_refused(d: Deployment, ops: list[tuple[str, str, dict]],
                         credentials: dict[str, str | None]) -> int:
    """Every operation, with every one of ``credentials``, is a documented 401."""
    problems = []
    count = 0
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        for path, method, op in ops:
            for what, authorization in credentials.items():
                status, headers, text = await call(session, d, path, method, op, authorization)
                count += 1
                problem = refusal_problem(status, headers, text)
                if problem is not None:
                    problems.append(f"{method.upper()} {path} with {what}: {problem}")
                if method == "get":  # aiohttp answers HEAD for every GET: same check, no body
                    async with session.head(d.url + fill_path(path), headers=(
                            {"Authorization": authorization} if authorization else {})) as r:
                        if r.status != 401:
                            problems.append(f"HEAD {path} with {what}: {r.status}")
    assert not problems, f"{len(problems)} of {count} not refused as documented:\n" + "\n".join(
        problems)
    return count


def wrong_credentials(s: Settings) -> dict[str, str | None]:
    return {
        "no Authorization header": None,
        "an empty Authorization header": "",
        "Basic with a wrong api_key": basic(s.site_id, "nope"),
        "Basic with a wrong site_id": basic("site-nope", s.api_key),
        "Bearer with a wrong key": "Bearer nope",
        "Basic, no credentials": "Basic",
        "Bearer, no token": "Bearer ",
        "Basic, not base64": "Basic !!!",
        "Basic, base64 of non-UTF-8": "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
        "an unknown scheme": "Digest username=x",
        "a bare token": s.app_key,
        "Basic with the keys swapped": basic(s.api_key, s.site_id),
    }


# --- every documented endpoint -------------------------------------------------------------------


async def test_every_endpoint_refuses_missing_and_wrong_credentials(
        live: tuple[Deployment, Worker, dict[str, Any]]) -> None:
    d, _, doc = live
    ops = secured(doc)
    assert len(ops) >= 25, "the document lists fewer secured operations than expected"
    count = await assert_refused(d, ops, wrong_credentials(d.settings))
    assert count >= len(ops) * 10


async def test_track_credentials_cannot_read(
        live: tuple[Deployment, Worker, dict[str, Any]]) -> None:
    """Bearer endpoints (reads, segments, imports, exports, render, metrics) refuse Basic."""
    d, _, doc = live
    s = d.settings
    await assert_refused(d, secured(doc, "bearer"), {
        "the track credentials (Basic site_id:api_key)": basic(s.site_id, s.api_key),
        "the api_key as a bearer token": f"Bearer {s.api_key}",
        "site_id:api_key as a bearer token": f"Bearer {s.site_id}:{s.api_key}",
        "the base64 track credentials as a bearer token": "Bearer " + base64.b64encode(
            f"{s.site_id}:{s.api_key}".encode()).decode(),
        "the app key as Basic": basic(s.site_id, s.app_key),
    })


async def test_app_key_is_not_a_track_credential(
        live: tuple[Deployment, Worker, dict[str, Any]]) -> None:
    d, _, doc = live
    s = d.settings
    await assert_refused(d, secured(doc, "basic"), {
        "Bearer app key": f"Bearer {s.app_key}",
        "Basic site_id:app_key": basic(s.site_id, s.app_key),
        "Basic app_key:app_key": basic(s.app_key, s.app_key),
        "Basic app_key:api_key": basic(s.app_key, s.api_key),
        "Basic :app_key": basic("", s.app_key),
    })


async def test_site_id_alone_cannot_call_track_endpoints(
        live: tuple[Deployment, Worker, dict[str, Any]]) -> None:
    d, _, doc = live
    s = d.settings
    await assert_refused(d, secured(doc, "basic"), {
        "Basic site_id: (empty key)": basic(s.site_id, ""),
        "Basic site_id (no colon)": "Basic " + base64.b64encode(s.site_id.encode()).decode(),
        "Basic site_id:site_id": basic(s.site_id, s.site_id),
        "Bearer site_id": f"Bearer {s.site_id}",
        "Basic :api_key (no site id)": basic("", s.api_key),
    })


async def test_site_id_endpoints_refuse_other_site_ids(
        live: tuple[Deployment, Worker, dict[str, Any]]) -> None:
    """The browser endpoints' only credential is the site id in the path."""
    d, _, doc = live
    site = d.settings.site_id
    ops = [(p, m, op) for p, m, op in operations(doc)
           if op.get("x-eventide-credential") == "site_id"]
    if not ops:
        pytest.skip("no site-id endpoints in the document")
    problems = []
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        for path, method, op in ops:
            for wrong in ("site-nope", site + "x", site[:-1], site.upper(), " " + site,
                          site + "%00", d.settings.api_key, d.settings.app_key):
                body, headers = request_body(op)
                url = d.url + fill_path(path, site_id=wrong)
                async with session.request(method.upper(), url, data=body, headers={
                        **headers, **d.track_auth}) as response:
                    text = await response.text()
                    if response.status != 401 or v1_error_problem(await response.json()):
                        problems.append(f"{method} {path} site_id={wrong!r}: "
                                        f"{response.status} {text[:200]}")
    assert not problems, "\n".join(problems)


async def test_refused_requests_wrote_nothing(
        live: tuple[Deployment, Worker, dict[str, Any]]) -> None:
    d, _, _ = live
    await test_every_endpoint_refuses_missing_and_wrong_credentials(live)
    for topic in (d.topics.raw_events, d.topics.raw_anonymous, d.topics.raw_identifies,
                  d.topics.segment_definitions):
        records = await read_topic(d.bootstrap, topic.name, partitions=topic.partitions)
        assert records == [], f"{topic.name}: a refused request was written"
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        async with session.get(d.url + "/api/v1/segments", headers=d.app_auth) as response:
            assert (await response.json()) == {"segments": []}


# --- constant-time comparisons -------------------------------------------------------------------


def _compare_digest_calls(tree: ast.AST) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute) and node.func.attr == "compare_digest"
            and isinstance(node.func.value, ast.Name) and node.func.value.id in ("hmac",
                                                                                  "secrets")]


async def test_ids_with_control_characters_are_refused_so_segments_never_mix(
        live: tuple[Deployment, Worker, dict[str, Any]]) -> None:
    """A NUL separates segment and person in the members index: ``nulseg%00leak`` would have
    read ``nulseg``'s members. Every id with a control character is a 400 now."""
    d, _, _ = live
    definition = {"name": "x", "match": {"event": "e"}}
    async with aiohttp.ClientSession() as session:
        for path in ("/api/v1/segments/nulseg%00leak", "/api/v1/segments/tab%09seg"):
            async with session.put(d.url + path, json=definition,
                                   headers=d.app_auth) as response:
                assert response.status == 400, path
                assert "control characters" in await response.text()
        for path in ("/api/v1/customers/a%00b/events", "/api/v1/customers/a%0D%0Ab/events"):
            async with session.post(d.url + path, json={"name": "e"},
                                    headers=d.track_auth) as response:
                assert response.status == 400, path
                assert "control characters" in await response.text()


def test_credentials_are_compared_with_hmac_compare_digest() -> None:
    tree = ast.parse(inspect.getsource(auth))
    functions = {node.name: node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    # The one comparison helper compares with hmac.compare_digest ...
    helpers = [name for name, node in functions.items() if _compare_digest_calls(node)]
    assert helpers, "app.api.auth does not call hmac.compare_digest"
    # ... and every check of a secret goes through it, never through ==, != or in.
    secrets_ = {"site_id", "api_key", "app_key"}
    for name in ("require_track", "require_app"):
        node = functions[name]
        calls = {c.func.id for c in ast.walk(node) if isinstance(c, ast.Call)
                 and isinstance(c.func, ast.Name)}
        assert calls & set(helpers), f"{name} does not use {helpers}"
        for compare in (n for n in ast.walk(node) if isinstance(n, ast.Compare)):
            names = {n.attr for n in ast.walk(compare) if isinstance(n, ast.Attribute)}
            names |= {n.id for n in ast.walk(compare) if isinstance(n, ast.Name)}
            assert not names & (secrets_ | {"site_id", "api_key", "token"}), (
                f"{name} compares a secret with {ast.unparse(compare)}")
    # The browser endpoints' site id check too, when they exist.
    try:
        from app.api import browser
    except ImportError:
        return
    assert _compare_digest_calls(ast.parse(inspect.getsource(browser.site_matches)))


def test_both_halves_of_basic_credentials_are_always_compared() -> None:
    """Evaluating both halves means timing does not tell which one was wrong."""
    settings = Settings(site_id="site-abc", api_key="key-123", app_key="app-456")
    calls: list[tuple[bytes, bytes]] = []
    real = auth.hmac.compare_digest

    def recording(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    def request(header: str) -> Any:
        return mock.Mock(headers={"Authorization": header})

    with mock.patch.object(auth.hmac, "compare_digest", side_effect=recording):
        for user, password in (("site-abd", "key-123"), ("site-abc", "key-124"),
                               ("x", "y"), ("site-abc", "key-123")):
            calls.clear()
            try:
                auth.require_track(request(basic(user, password)), settings)
            except auth.ApiError as exc:
                assert exc.status == 401
            assert len(calls) == 2, (user, password, calls)
        calls.clear()
        with pytest.raises(auth.ApiError):
            auth.require_app(request("Bearer app-457"), settings)
        assert len(calls) == 1


async def test_right_length_and_wrong_length_keys_are_refused_identically(
        live: tuple[Deployment, Worker, dict[str, Any]]) -> None:
    d, _, _ = live
    s = d.settings

    def same_length_wrong(key: str) -> str:
        return key[:-1] + ("x" if key[-1] != "x" else "y")

    cases = {
        "track": ("/api/v1/customers/sec-c1/events", "POST", [
            basic(s.site_id, same_length_wrong(s.api_key)), basic(s.site_id, s.api_key + "x"),
            basic(s.site_id, s.api_key[:1]), basic(same_length_wrong(s.site_id), s.api_key),
            basic(s.site_id + "x", s.api_key)]),
        "app": ("/api/v1/customers/sec-c1", "GET", [
            f"Bearer {same_length_wrong(s.app_key)}", f"Bearer {s.app_key}x",
            f"Bearer {s.app_key[:1]}", f"Bearer {s.app_key * 8}"]),
    }
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        for kind, (path, method, headers) in cases.items():
            answers = set()
            for authorization in headers:
                async with session.request(method, d.url + path, data=b"{}", headers={
                        "Authorization": authorization,
                        "Content-Type": "application/json"}) as response:
                    kept = {k: v for k, v in response.headers.items() if k.lower() != "date"}
                    answers.add((response.status, await response.read(),
                                 tuple(sorted(kept.items()))))
            assert len(answers) == 1, f"{kind}: answers differ by key length:\n{answers}"
            [(status, _, _)] = answers
            assert status == 401


# --- malformed header bytes ----------------------------------------------------------------------


async def test_non_ascii_authorization_bytes_are_a_401(
        live: tuple[Deployment, Worker, dict[str, Any]]) -> None:
    d, _, doc = live
    problems = []
    for path, method, op in secured(doc):
        for value in (b"Bearer \xff\xfe", b"Basic \xff", b"Basic \xc3\xa9t\xc3\xa9",
                      b"Bearer " + d.settings.app_key.encode() + b"\xe9"):
            body, headers = request_body(op)
            head = (f"{method.upper()} {fill_path(path)} HTTP/1.1\r\nHost: test\r\n"
                    "Connection: close\r\n").encode()
            head += b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items())
            head += b"Authorization: " + value + b"\r\n"
            head += f"Content-Length: {len(body or b'')}\r\n\r\n".encode()
            status, response_headers, text = await raw_request(d.url, head + (body or b""))
            problem = refusal_problem(status, response_headers, text.decode(errors="replace"))
            if problem is not None:
                problems.append(f"{method.upper()} {path} with {value!r}: {problem}")
    assert not problems, f"{len(problems)} not refused as documented:\n" + "\n".join(problems)


async def test_bearer_endpoints_challenge_with_bearer(
        live: tuple[Deployment, Worker, dict[str, Any]]) -> None:
    d, _, doc = live
    wrong = []
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        for path, method, op in secured(doc):
            status, headers, _ = await call(session, d, path, method, op, None)
            scheme = doc["components"]["securitySchemes"][schemes_of(doc, op)[0]]["scheme"]
            challenge = headers.get("WWW-Authenticate", "")
            if status != 401 or not challenge.lower().startswith(scheme):
                wrong.append(f"{method.upper()} {path} ({scheme}): {status} {challenge!r}")
    assert not wrong, "\n".join(wrong)


# --- listening on loopback -----------------------------------------------------------------------


def _listening(port: int) -> list[str]:
    """Local addresses listening on ``port`` (TCP, IPv4 and IPv6), from /proc/net."""
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            local, state = fields[1], fields[3]
            address, _, hex_port = local.partition(":")
            if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            if width == 8:
                found.append(str(ipaddress.IPv4Address(raw[::-1])))
            else:  # four little-endian 32-bit words
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                found.append(str(ipaddress.IPv6Address(words)))
    return found


def _non_loopback_addresses() -> set[str]:
    addresses = set()
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            addresses.add(info[4][0])
    except OSError:
        pass
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))  # no packet is sent; picks the outbound address
            addresses.add(probe.getsockname()[0])
        except OSError:
            pass
    return {a for a in addresses if not ipaddress.ip_address(a).is_loopback
            and not ipaddress.ip_address(a).is_unspecified}


def test_settings_default_to_loopback() -> None:
    assert Settings().http_host == "127.0.0.1"
    assert Settings.from_env({}).http_host == "127.0.0.1"
    assert Settings.from_env({"EVENTIDE_HTTP_HOST": ""}).http_host == "127.0.0.1"
    assert Settings().bootstrap_servers.startswith("127.0.0.1:")


async def test_worker_and_embedded_broker_listen_on_loopback_only(
        live: tuple[Deployment, Worker, dict[str, Any]], broker: EmbeddedBroker) -> None:
    d, worker, _ = live
    if d.env().get("EVENTIDE_HTTP_HOST"):
        pytest.skip("EVENTIDE_HTTP_HOST is set in the environment: not the default host")
    port = d.settings.http_port
    for what, listen_port in (("worker HTTP API", port), ("embedded broker", broker.port)):
        addresses = _listening(listen_port)
        assert addresses, f"{what}: nothing listening on {listen_port} in /proc/net/tcp*"
        assert all(ipaddress.ip_address(a).is_loopback for a in addresses), (
            f"{what} listens on {addresses}, not only on loopback")
    for address in _non_loopback_addresses():
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), 3)
        except (OSError, asyncio.TimeoutError):
            continue
        writer.close()
        raise AssertionError(f"the worker answers on the non-loopback address {address}:{port}")
