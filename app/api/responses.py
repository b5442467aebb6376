"""The API's error shape, one place: ``{"meta": {"errors": ["field: message", ...]}}``."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def error_response(status: int, *messages: str, headers: dict[str, str] | None = None
                   ) -> web.Response:
    response = json_response({"meta": {"errors": list(messages)}}, status)
    if headers:
        response.headers.update(headers)
    return response


class ApiError(Exception):
    """Raised inside a handler; turned into :func:`error_response` by the middleware."""

    def __init__(self, status: int, *messages: str, challenge: str | None = None) -> None:
        super().__init__(status, messages)
        self.status = status
        self.messages = list(messages)
        #: The ``WWW-Authenticate`` challenge of a 401 (Basic for track calls unless set).
        self.challenge = challenge
