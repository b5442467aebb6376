"""Credentials: HTTP Basic ``site_id:api_key`` for tracking, a bearer app key for reads.

Comparisons are constant-time (``hmac.compare_digest``) so response timing does not reveal how
much of a guessed key was right. The two kinds never stand in for each other.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from aiohttp import web

from app.api.responses import ApiError
from app.settings import Settings
from app.api.peers import PEER

BASIC_CHALLENGE = 'Basic realm="eventide"'


BEARER_CHALLENGE = 'Bearer realm="eventide"'


def _equal(given: str, expected: str) -> bool:
    try:
        given_bytes = given.encode()
    except UnicodeEncodeError:  # e.g. lone surrogates from odd header bytes: never a match
        return False
    return bool(expected) and hmac.compare_digest(given_bytes, expected.encode())


def require_track(request: web.Request, settings: Settings) -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise ApiError(401, "unauthorized: send HTTP Basic credentials site_id:api_key")
    try:
        site_id, _, api_key = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, ValueError):  # ValueError: non-ASCII input, or not UTF-8 inside
        raise ApiError(401, "unauthorized: malformed Basic credentials") from None
    # Evaluate both halves before deciding, so timing does not tell which one was wrong.
    site_ok = _equal(site_id, settings.site_id)
    key_ok = _equal(api_key, settings.api_key)
    if not (site_ok and key_ok):
        raise ApiError(401, "unauthorized: wrong site_id or api_key")


def require_app(request: web.Request, settings: Settings) -> None:
    if request.get(PEER) is True:
        return  # forwarded by a worker that checked the caller; its signature verified
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "unauthorized: send the app key as 'Authorization: Bearer <key>'",
                       challenge=BEARER_CHALLENGE)
    if not _equal(token.strip(), settings.app_key):
        raise ApiError(401, "unauthorized: wrong app key", challenge=BEARER_CHALLENGE)
