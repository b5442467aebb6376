"""A command's HTTP port is taken before anything starts: in use, it is one line naming the
setting to change."""

from __future__ import annotations

import os
import socket

import pytest

from app.listen import adopt, listener_for, take_port
from app.settings import Settings, SettingsError, StartupError
from app.testing.harness import free_port


def test_a_free_port_is_bound_and_listening_so_early_clients_wait_instead_of_being_refused(
) -> None:
    sock = take_port("127.0.0.1", 0)
    try:
        host, port = sock.getsockname()
        assert host == "127.0.0.1" and port > 0
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass  # queued until the server serves on it
    finally:
        sock.close()


def test_a_port_another_command_took_a_moment_ago_is_refused() -> None:
    """Two commands started together on one port: the second is told at once. With
    SO_REUSEADDR and no listen, Linux lets both bind, and the second only failed when its
    server started, after it had joined its group."""
    first = take_port("127.0.0.1", 0)
    port = first.getsockname()[1]
    try:
        with pytest.raises(StartupError, match=f"cannot listen on 127.0.0.1:{port}: "):
            take_port("127.0.0.1", port)
    finally:
        first.close()


def test_a_port_in_use_is_one_line_naming_the_setting() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        with pytest.raises(StartupError) as raised:
            take_port("127.0.0.1", port, setting="--ingest-port")
    message = str(raised.value)
    assert message.startswith(f"cannot listen on 127.0.0.1:{port}: ")
    assert "in use" in message and message.endswith("set --ingest-port to a free port")
    assert "\n" not in message and raised.value.status == 1


def test_a_port_its_last_server_left_in_time_wait_is_taken_again() -> None:
    """A server restarted at once finds its port free, as aiohttp's own sites do
    (``SO_REUSEADDR``): the connection it closed first stays in TIME_WAIT on that port."""
    server = take_port("127.0.0.1", 0)
    port = server.getsockname()[1]
    with socket.create_connection(("127.0.0.1", port)) as client:
        accepted, _ = server.accept()
        accepted.close()  # the server's side closes first: it is the one left in TIME_WAIT
        client.recv(1)
    server.close()
    again = take_port("127.0.0.1", port)
    assert again.getsockname()[1] == port
    again.close()


def test_a_host_that_does_not_resolve_is_one_line_too() -> None:
    with pytest.raises(StartupError, match="cannot listen on no-such-host.invalid:80"):
        take_port("no-such-host.invalid", 80)


def test_a_socket_handed_down_is_served_on_and_its_port_is_the_settings_port() -> None:
    """``eventide up`` and ``eventide replay`` hand their children the port they took
    (``EVENTIDE_HTTP_FD``), so it is never free in between."""
    taken = take_port("127.0.0.1", 0)
    port = taken.getsockname()[1]
    handed = os.dup(taken.fileno())  # what the child finds at that number
    taken.close()
    settings = Settings.from_env({"EVENTIDE_HTTP_FD": str(handed), "EVENTIDE_HTTP_PORT": "6066"})
    assert settings.http_fd == handed
    sock, named = listener_for(settings)
    try:
        assert sock.fileno() == handed and named.http_port == port
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
    finally:
        sock.close()


def test_without_one_the_port_of_the_settings_is_taken() -> None:
    assert Settings.from_env({}).http_fd is None
    sock, named = listener_for(Settings(http_port=free_port()))
    try:
        assert named.http_port == sock.getsockname()[1]
    finally:
        sock.close()


def test_what_is_not_a_listening_tcp_socket_is_one_line() -> None:
    read_end, write_end = os.pipe()
    unbound, datagram = socket.socket(), socket.socket(type=socket.SOCK_DGRAM)
    try:
        with pytest.raises(StartupError, match=f"EVENTIDE_HTTP_FD={read_end}: not a socket"):
            adopt(read_end)
        for sock in (unbound, datagram):
            with pytest.raises(StartupError, match="not a listening TCP socket"):
                adopt(sock.fileno())
            assert sock.fileno() >= 0  # left open: it was not the command's to close
    finally:
        for fd in (read_end, write_end):
            os.close(fd)
        unbound.close()
        datagram.close()


def test_a_bad_eventide_http_fd_is_a_settings_problem() -> None:
    with pytest.raises(SettingsError, match="EVENTIDE_HTTP_FD=.three.: expected a whole number"):
        Settings.from_env({"EVENTIDE_HTTP_FD": "three"})
