"""Trust between workers: a forwarded request is signed, never a copy of the caller's key.

A worker forwards a read to the worker that owns the key's partition (``app.api.cluster``) and
the console's person pages to the worker that holds the person (``app.console.forward``). Anyone
who can join the consumer group can advertise a URL, so the forwarding worker:

* checks the caller's own credentials first (an unauthenticated request is never forwarded);
* sends the request without the caller's ``Authorization`` header, signed instead with the
  cluster secret: ``HMAC-SHA256(secret, method \\n path?query \\n sha256(body) \\n unix time)``
  in ``X-Eventide-Signature: t=<time>,s=<hex>``;
* verifies the peer's certificate when peers speak HTTPS.

A worker serves a forwarded request (as the app, locally, whatever its own view of ownership)
only when the signature verifies within :data:`MAX_SKEW_S` of its clock; a request that claims to
be forwarded without a valid signature is a 401. The secret is ``EVENTIDE_CLUSTER_SECRET``, or by
default derived from the app key, which every worker of a deployment already shares and a process
that merely joined the group does not know.
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
import time

from aiohttp import web

from app.api.responses import ApiError
from app.settings import Settings

FORWARDED = "X-Eventide-Forwarded"
SIGNATURE = "X-Eventide-Signature"
#: How far a signature's time may be from the receiver's clock.
MAX_SKEW_S = 60
#: ``request[PEER]`` is True once a forwarded request's signature verified.
PEER = "eventide.peer"


def cluster_secret(settings: Settings) -> bytes:
    if settings.cluster_secret:
        return settings.cluster_secret.encode()
    return hmac.new(b"eventide cluster secret", settings.app_key.encode(),
                    hashlib.sha256).digest()


def _mac(secret: bytes, method: str, path_qs: str, body: bytes, at: int) -> str:
    message = "\n".join((method.upper(), path_qs, hashlib.sha256(body).hexdigest(), str(at)))
    return hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()


def sign(settings: Settings, method: str, path_qs: str, body: bytes,
         now_s: float | None = None) -> dict[str, str]:
    """The headers that make a request to a peer a forwarded one."""
    at = int(time.time() if now_s is None else now_s)
    mac = _mac(cluster_secret(settings), method, path_qs, body, at)
    return {FORWARDED: "1", SIGNATURE: f"t={at},s={mac}"}


def verify(settings: Settings, header: str, method: str, path_qs: str, body: bytes,
           now_s: float | None = None) -> bool:
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        at = int(fields["t"])
    except (KeyError, ValueError):
        return False
    now = time.time() if now_s is None else now_s
    if abs(now - at) > MAX_SKEW_S:
        return False
    expected = _mac(cluster_secret(settings), method, path_qs, body, at)
    return hmac.compare_digest(expected.encode(), fields.get("s", "").encode())


def verified_peers(settings: Settings):  # type: ignore[no-untyped-def]
    """Middleware: mark a forwarded request whose signature verifies; refuse one that does not."""

    @web.middleware
    async def middleware(request: web.Request, handler):  # type: ignore[no-untyped-def]
        if FORWARDED in request.headers or SIGNATURE in request.headers:
            body = await request.read() if request.can_read_body else b""
            if not verify(settings, request.headers.get(SIGNATURE, ""), request.method,
                          request.path_qs, body):
                raise ApiError(401, "unauthorized: a forwarded request must carry a valid "
                                    "worker signature")
            request[PEER] = True
        return await handler(request)

    return middleware


def from_peer(request: web.Request) -> bool:
    return request.get(PEER) is True


def client_ssl(settings: Settings) -> ssl.SSLContext | None:
    """How to check a peer's certificate: against ``EVENTIDE_PEER_CA``, else this worker's own
    certificate (workers of one deployment usually share it), else the system's roots."""
    cafile = settings.peer_ca or settings.tls_cert
    return ssl.create_default_context(cafile=cafile) if cafile else None
