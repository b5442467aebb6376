"""``GET /api/v1/search/customers?q=&limit=``: people whose id or email starts with ``q``
(bearer app key). The search itself is :mod:`app.queries.people_search`, which the console's
person pickers use too."""

from __future__ import annotations

from aiohttp import web

from app.api.auth import require_app
from app.api.context import runtime
from app.api.responses import json_response
from app.queries.people_search import (DEFAULT_LIMIT, MAX_LIMIT, MAX_QUERY, PATH,
                                       search_people)

#: Documented by app.api.openapi from here.
__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "MAX_QUERY", "PATH", "search"]


async def search(request: web.Request) -> web.Response:
    rt = runtime(request)
    require_app(request, rt.settings)
    found = await search_people(rt, request, request.query.get("q", ""),
                                request.query.get("limit", ""))
    return json_response({"customers": found})


ROUTES = [web.get(PATH, search)]
