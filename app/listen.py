"""The HTTP port, taken before a process joins anything.

A worker's HTTP API starts once the worker has its first partitions. If it bound its port only
then, a worker started on a port already in use would join its group, take partitions from the
others and crash: two rebalances for every other worker, and a process that lingers in the group
while it stops. So commands take their port first (bound *and* listening), hold the socket, and
hand it to the server; a port in use is then one line before anything else starts
(:class:`StartupError`). A process that starts another (``eventide up``'s extra workers and
ingest tier, ``eventide replay``'s worker) takes the port itself and hands the socket down
(``EVENTIDE_HTTP_FD``), so the port is never free in between.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from app.settings import Settings, StartupError

#: The setting that names the HTTP port, for the line a port in use prints.
PORT_SETTING = "EVENTIDE_HTTP_PORT (or --port)"


def take_port(host: str, port: int, *, setting: str = PORT_SETTING) -> socket.socket:
    """A TCP socket bound to ``host:port`` and listening; the server serves on it later, and a
    client that connects before then waits in the queue instead of being refused.

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
        # Listening at once is what holds the port: with SO_REUSEADDR, Linux lets a second
        # socket bind a port whose first socket is bound but not listening, and the loser of
        # the two only finds out when it listens (after joining its group).
        sock.listen(socket.SOMAXCONN)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}; set {setting} to "
                           "a free port", status=1) from exc
    return sock


def adopt(fd: int) -> socket.socket:
    """The listening TCP socket a parent process handed down as file descriptor ``fd``.
    Raises :class:`StartupError` if ``fd`` is not one."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise StartupError(f"EVENTIDE_HTTP_FD={fd}: not a socket ({exc.strerror})",
                           status=1) from exc
    listening = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    if sock.type != socket.SOCK_STREAM or not listening:
        sock.detach()  # not ours to close
        raise StartupError(f"EVENTIDE_HTTP_FD={fd}: not a listening TCP socket", status=1)
    return sock


def listener_for(settings: Settings, *, setting: str = PORT_SETTING
                 ) -> tuple[socket.socket, Settings]:
    """The HTTP socket a command serves on: the one handed down (``EVENTIDE_HTTP_FD``), else
    ``http_host:http_port`` taken now. Returns it with ``settings`` naming its port, which a
    socket handed down decides."""
    if settings.http_fd is None:
        sock = take_port(settings.http_host, settings.http_port, setting=setting)
    else:
        sock = adopt(settings.http_fd)
    port = int(sock.getsockname()[1])
    return sock, (settings if port == settings.http_port else settings.replace(http_port=port))


def hand_down(listener: socket.socket, command: str, env: Mapping[str, str],
              log_path: Path) -> subprocess.Popen:
    """Start ``eventide <command>`` serving on ``listener``: the child is handed the socket
    (``EVENTIDE_HTTP_FD``), so the port stays taken from this process's start to the child's
    end. This process's copy is closed; the child's output goes to ``log_path``."""
    try:
        return subprocess.Popen(
            [str(Path(sys.executable).with_name("eventide")), command],
            env=dict(env, EVENTIDE_HTTP_FD=str(listener.fileno())),
            pass_fds=(listener.fileno(),), stdin=subprocess.DEVNULL,
            stdout=open(log_path, "ab"), stderr=subprocess.STDOUT)
    finally:
        listener.close()
