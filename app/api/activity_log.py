"""``GET /api/v1/activities``: the workspace Activity Log (bearer app key).

How a page is read and merged across workers is :mod:`app.queries.activity_log` (the console's
Activity log page reads it too); this handler checks the caller and answers JSON.
"""

from __future__ import annotations

from aiohttp import web

from app.api import cluster
from app.api.auth import require_app
from app.api.context import runtime
from app.api.responses import json_response
from app.queries.activity_log import (ANONYMOUS_SCAN_IDS, DEFAULT_LIMIT, MAX_LIMIT, MAX_SCAN, PATH,
                                      activity_log, local_share, parse_query)

#: Documented by app.api.openapi from here.
__all__ = ["ANONYMOUS_SCAN_IDS", "DEFAULT_LIMIT", "MAX_LIMIT", "MAX_SCAN", "PATH", "activities"]


async def activities(request: web.Request) -> web.Response:
    rt = runtime(request)
    require_app(request, rt.settings)
    if cluster.is_forwarded(request) and request.query.get("share"):
        # A peer asking for this worker's share of the page.
        return json_response(local_share(rt, parse_query(request.query)).to_json())
    return json_response(await activity_log(rt, request, request.query))


ROUTES = [web.get(PATH, activities)]
