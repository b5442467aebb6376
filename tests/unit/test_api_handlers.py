"""API handlers are module-level functions: one can be mounted and called alone, with only the
runtime it reads on the application."""

from __future__ import annotations

from types import SimpleNamespace

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from app.api import people_search, segments
from app.api.context import RT
from app.api.server import error_shape
from app.settings import Settings

SETTINGS = Settings(site_id="site-x", api_key="track-key", app_key="app-key")


async def test_a_handler_checks_its_caller_and_parameters_alone() -> None:
    app = web.Application(middlewares=[error_shape])
    app[RT] = SimpleNamespace(settings=SETTINGS)  # type: ignore[assignment]
    app.router.add_get(people_search.PATH, people_search.search)
    app.router.add_get("/api/v1/events/names", segments.event_names)
    async with TestClient(TestServer(app)) as client:
        response = await client.get(people_search.PATH)
        assert response.status == 401
        bearer = {"Authorization": "Bearer app-key"}
        response = await client.get(people_search.PATH, params={"limit": "0"}, headers=bearer)
        assert response.status == 400
        assert (await response.json())["meta"]["errors"] == [
            f"limit: must be an integer between 1 and {people_search.MAX_LIMIT}"]
        response = await client.get("/api/v1/events/names", params={"limit": "x"},
                                    headers=bearer)
        assert response.status == 400
