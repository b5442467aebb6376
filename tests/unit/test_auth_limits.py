"""app.api.limits: failed authentications are limited per source address (issue 14.11)."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from app.api.limits import FailureLimiter, limit_failed_authentication
from app.api.responses import ApiError
from app.api.server import error_shape
from tests.support.clock import HandClock


def test_an_address_is_held_back_after_too_many_failures_until_its_window_passes() -> None:
    clock = HandClock()
    limiter = FailureLimiter(max_failures=3, window_s=60, clock=clock)
    for _ in range(2):
        limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") is None
    limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == 60
    assert limiter.retry_after("10.0.0.2") is None, "other addresses are not affected"
    clock.now += 59
    assert limiter.retry_after("10.0.0.1") == 1
    clock.now += 1
    assert limiter.retry_after("10.0.0.1") is None


def test_memory_is_bounded_by_the_number_of_addresses_remembered() -> None:
    limiter = FailureLimiter(max_failures=1, max_sources=100, clock=HandClock())
    for n in range(1000):
        limiter.failed(f"addr-{n}")
    assert len(limiter._failures) == 100
    assert limiter.retry_after("addr-999") is not None and limiter.retry_after("addr-0") is None


async def test_the_middleware_answers_429_with_retry_after_once_the_bound_is_passed() -> None:
    async def protected(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer right":
            raise ApiError(401, "unauthorized")
        return web.json_response({"ok": True})

    async def sign_in(request: web.Request) -> web.Response:
        return web.Response(status=401, text="wrong key")  # a page, not an ApiError

    app = web.Application(middlewares=[
        limit_failed_authentication(FailureLimiter(max_failures=5)), error_shape])
    app.add_routes([web.get("/api", protected), web.post("/login", sign_in)])
    async with TestClient(TestServer(app)) as client:
        for n in range(5):
            path, method = ("/api", client.get) if n % 2 else ("/login", client.post)
            assert (await method(path)).status == 401
        refused = await client.get("/api", headers={"Authorization": "Bearer right"})
        assert refused.status == 429
        assert int(refused.headers["Retry-After"]) > 0
        assert "too many failed authentications" in await refused.text()
