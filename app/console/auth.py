"""Console sign-in: the bearer app key, or a session cookie obtained by typing the app key.

The cookie never holds the app key itself: it is ``<expiry>.<session id>.<HMAC-SHA256(app key,
expiry and session id)>``, so it cannot be replayed against the API, it expires on its own, and
changing the app key signs every console session out. Signing out revokes the session id on every
worker (:mod:`app.sessions`): the cookie is refused from then on, even where it is still kept. It is HttpOnly (scripts cannot read it) and SameSite=Strict (other sites'
pages cannot make the browser send it); console POSTs additionally refuse cross-site requests.
Every comparison is constant-time (``hmac.compare_digest``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from app.settings import Settings
from app.api.peers import PEER
from app.sessions import SESSION_S, RevokedSessions

COOKIE = "eventide_console"


@dataclass(frozen=True)
class Session:
    """A console session a valid cookie names (not necessarily still signed in: see revoked)."""

    session_id: str
    expiry: int


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


def _mac(settings: Settings, expiry: int, session_id: str) -> str:
    return hmac.new(settings.app_key.encode(), f"eventide-console:{expiry}:{session_id}".encode(),
                    hashlib.sha256).hexdigest()


def session_token(settings: Settings, now_s: float) -> str:
    """A new session's cookie value, with a fresh random session id."""
    expiry, session_id = int(now_s) + SESSION_S, secrets.token_hex(16)
    return f"{expiry}.{session_id}.{_mac(settings, expiry, session_id)}"


def session_of(settings: Settings, token: str, now_s: float) -> Session | None:
    """The session a cookie value names, if it is signed with the app key and not expired
    (revocation is checked by the caller)."""
    expiry_text, _, rest = token.partition(".")
    session_id, _, mac = rest.partition(".")
    if not settings.app_key or not (expiry_text.isascii() and expiry_text.isdigit()) \
            or len(expiry_text) > 12 or not (session_id.isascii() and session_id.isalnum()) \
            or len(session_id) > 64:
        return None
    expiry = int(expiry_text)
    good = hmac.compare_digest(mac.encode(), _mac(settings, expiry, session_id).encode())
    return Session(session_id, expiry) if good and expiry > now_s else None


def token_valid(settings: Settings, token: str, now_s: float,
                revoked: RevokedSessions) -> bool:
    session = session_of(settings, token, now_s)
    return session is not None and not revoked.is_revoked(session.session_id)


def cookie_session(request: web.Request, settings: Settings, now_s: float) -> Session | None:
    """The session of the request's console cookie, if any (revoked or not)."""
    cookie = request.cookies.get(COOKIE)
    return session_of(settings, cookie, now_s) if cookie else None


def viewer_of(request: web.Request, settings: Settings, now_s: float,
              revoked: RevokedSessions) -> Viewer | None:
    """The signed-in viewer, or None. A wrong bearer key is None too (never falls back), and so
    is a signed-out session's cookie."""
    if request.get(PEER) is True:
        return Viewer(by_cookie=False)  # forwarded by the worker that checked the viewer
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and keys_equal(token.strip(), settings.app_key):
            return Viewer(by_cookie=False)
        return None
    cookie = request.cookies.get(COOKIE)
    if cookie and token_valid(settings, cookie, now_s, revoked):
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
