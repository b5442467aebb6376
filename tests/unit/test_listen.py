"""A command's HTTP port is taken before anything starts: in use, it is one line naming the
setting to change."""

from __future__ import annotations

import socket

import pytest

from app.listen import take_port
from app.settings import StartupError


def test_a_free_port_is_bound_and_not_yet_listening() -> None:
    sock = take_port("127.0.0.1", 0)
    try:
        host, port = sock.getsockname()
        assert host == "127.0.0.1" and port > 0
        with socket.socket() as client, pytest.raises(ConnectionRefusedError):
            client.connect(("127.0.0.1", port))  # the server listens on it, not this
    finally:
        sock.close()


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
    server.listen()
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
