"""Suggestions for the console's person pickers (JSON), from the same search as
``GET /api/v1/search/customers``."""

from __future__ import annotations

from aiohttp import web

from app.api.context import runtime
from app.api.responses import json_response
from app.console import auth
from app.console.guard import guarded
from app.queries.people_search import search_people

SUGGESTIONS = 10


@guarded
async def search_people_json(request: web.Request, viewer: auth.Viewer) -> web.Response:
    found = await search_people(runtime(request), request, request.query.get("q", ""),
                                str(SUGGESTIONS))
    return json_response({"customers": found})
