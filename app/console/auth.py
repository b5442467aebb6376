"""Console sign-in: the bearer app key, or a session cookie obtained by typing the app key.

The cookie never holds the app key itself: it is ``<expiry>.<HMAC-SHA256(app key, expiry)>``, so
it cannot be replayed against the API, it expires on its own, and changing the app key signs every
console session out. It is HttpOnly (scripts cannot read it) and SameSite=Strict (other sites'
pages cannot make the browser send it); console POSTs additionally refuse cross-site requests.
Every comparison is constant-time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from app.settings import Settings
from app.api.peers import PEER

COOKIE = "eventide_console"
SESSION_S = 12 * 3600


@dataclass(frozen=True)
class Viewer:
    """Who is looking: ``by_cookie`` decides whether the page shows a sign-out button."""

    by_cookie: bool


def keys_equal(given: str, expected: str) -> bool:
    try:
        given_bytes = given.encode()
    except UnicodeEncodeError:
        return False
    return bool(expected) and hmac.compare_digest(given_bytes, expected.encode())


def _mac(settings: Settings, expiry: int) -> str:
    return hmac.new(settings.app_key.encode(), f"eventide-console:{expiry}".encode(),
                    hashlib.sha256).hexdigest()


def session_token(settings: Settings, now_s: float) -> str:
    expiry = int(now_s) + SESSION_S
    return f"{expiry}.{_mac(settings, expiry)}"


def token_valid(settings: Settings, token: str, now_s: float) -> bool:
    expiry_text, _, mac = token.partition(".")
    if not settings.app_key or not (expiry_text.isascii() and expiry_text.isdigit()) or len(expiry_text) > 12:
        return False
    expiry = int(expiry_text)
    good = hmac.compare_digest(mac.encode(), _mac(settings, expiry).encode())
    return good and expiry > now_s


def viewer_of(request: web.Request, settings: Settings, now_s: float) -> Viewer | None:
    """The signed-in viewer, or None. A wrong bearer key is None too (never falls back)."""
    if request.get(PEER) is True:
        return Viewer(by_cookie=False)  # forwarded by the worker that checked the viewer
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and keys_equal(token.strip(), settings.app_key):
            return Viewer(by_cookie=False)
        return None
    cookie = request.cookies.get(COOKIE)
    if cookie and token_valid(settings, cookie, now_s):
        return Viewer(by_cookie=True)
    return None


def cross_site(request: web.Request) -> bool:
    """True for a state-changing request that another site's page made."""
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        return True
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    if origin == "null":
        return True
    return urlsplit(origin).netloc.lower() != request.host.lower()


def served_over_https(request: web.Request, settings: Settings) -> bool:
    """Whether the browser reached the console over HTTPS: eventide terminates TLS itself, the
    public URL it is published at is https (EVENTIDE_PUBLIC_URL), or a trusted proxy
    (EVENTIDE_TRUSTED_PROXIES) says so in ``X-Forwarded-Proto``."""
    if settings.tls_cert or (settings.public_url or "").startswith("https://"):
        return True
    return (request.remote in settings.trusted_proxies
            and request.headers.get("X-Forwarded-Proto", "").lower() == "https")


def set_session(response: web.StreamResponse, settings: Settings, now_s: float,
                request: web.Request) -> None:
    response.set_cookie(COOKIE, session_token(settings, now_s), max_age=SESSION_S,
                        path="/console", httponly=True, samesite="Strict",
                        secure=served_over_https(request, settings))


def clear_session(response: web.StreamResponse, settings: Settings,
                  request: web.Request) -> None:
    response.del_cookie(COOKIE, path="/console", httponly=True, samesite="Strict",
                        secure=served_over_https(request, settings))


def safe_next(value: str | None) -> str:
    """Where to go after sign-in: a console path only (never another host)."""
    if not value or not value.startswith("/console/") or value.startswith("//") \
            or "\\" in value or any(ord(c) < 0x20 for c in value):
        return "/console/"
    return value
