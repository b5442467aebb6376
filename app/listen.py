"""The HTTP port, taken before a process joins anything.

A worker's HTTP API starts once the worker has its first partitions. If it bound its port only
then, a worker started on a port already in use would join its group, take partitions from the
others and crash: two rebalances for every other worker, and a process that lingers in the group
while it stops. So commands bind their port first, hold the socket, and hand it to the server;
a port in use is then one line before anything else starts (:class:`StartupError`).
"""

from __future__ import annotations

import socket

from app.settings import StartupError


def take_port(host: str, port: int, *,
              setting: str = "EVENTIDE_HTTP_PORT (or --port)") -> socket.socket:
    """A TCP socket bound to ``host:port``, not yet listening (the server listens on it).

    ``host`` is bound as the server would bind it: the first address it resolves to (the
    wildcard for ``""``). Raises :class:`StartupError`, naming ``setting``, if it is taken."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}", status=1) from exc
    sock = socket.socket(family, kind, proto)
    # As aiohttp's own sites do: a port whose last server left connections in TIME_WAIT is free.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}; set {setting} to "
                           "a free port", status=1) from exc
    return sock
