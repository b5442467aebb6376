"""A first run that reads well: credentials kept in the data dir across starts, every command
finding the local instance from it, and the banner `eventide up` prints once ready."""

from __future__ import annotations

import http.server
import io
import os
import socket
import stat
import threading
import time
from contextlib import redirect_stdout
from pathlib import Path

import orjson
import pytest

from app import cli, cli_ops, cli_up, local_instance
from app.broker import claim_data_dir
from app.settings import Settings

VARIABLES = ("EVENTIDE_SITE_ID", "EVENTIDE_API_KEY", "EVENTIDE_APP_KEY", "EVENTIDE_HTTP_PORT",
             "EVENTIDE_HTTP_HOST", "EVENTIDE_BROKER", "EVENTIDE_BROKER_FLAVOR",
             "EVENTIDE_EMBEDDED_BROKER_PORT", "EVENTIDE_PARTITIONS", "EVENTIDE_TOPIC_PREFIX",
             "EVENTIDE_STATE_VERSION", "EVENTIDE_DATA_DIR")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    """No EVENTIDE_* setting, in an empty directory; the environment as it was afterwards
    (the commands fill os.environ from the local instance)."""
    saved = dict(os.environ)
    for name in VARIABLES:
        os.environ.pop(name, None)
    monkeypatch.chdir(tmp_path)  # no developer's .eventide is found by accident
    try:
        yield tmp_path
    finally:
        os.environ.clear()
        os.environ.update(saved)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- credentials kept across starts ------------------------------------------------------------


def test_generated_credentials_are_kept_across_two_starts(tmp_path: Path) -> None:
    supplied = Settings(data_dir=tmp_path / "data")
    first, generated = local_instance.kept_credentials(supplied)
    assert generated == ["site_id", "api_key", "app_key"]
    assert first.site_id and first.api_key and first.app_key
    path = tmp_path / "data" / local_instance.CREDENTIALS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    second, _ = local_instance.kept_credentials(supplied)
    assert (second.site_id, second.api_key, second.app_key) == \
        (first.site_id, first.api_key, first.app_key)
    assert orjson.loads(path.read_bytes()) == {"site_id": first.site_id,
                                               "api_key": first.api_key,
                                               "app_key": first.app_key}


def test_supplied_credentials_win_and_are_never_written(tmp_path: Path) -> None:
    data = tmp_path / "data"
    all_supplied = Settings(data_dir=data, site_id="s", api_key="k", app_key="a")
    assert local_instance.kept_credentials(all_supplied) == (all_supplied, [])
    assert not (data / local_instance.CREDENTIALS_FILE).exists()
    # only the app key supplied: the track credentials are generated and kept, the key is not
    partly, generated = local_instance.kept_credentials(Settings(data_dir=data, app_key="mine"))
    assert generated == ["site_id", "api_key"] and partly.app_key == "mine"
    saved = orjson.loads((data / local_instance.CREDENTIALS_FILE).read_bytes())
    assert set(saved) == {"site_id", "api_key"}
    # a later start without any: the kept two again, and a new app key added to the file
    later, _ = local_instance.kept_credentials(Settings(data_dir=data))
    assert (later.site_id, later.api_key) == (partly.site_id, partly.api_key)
    assert later.app_key and later.app_key != "mine"
    again, _ = local_instance.kept_credentials(Settings(data_dir=data))
    assert again.app_key == later.app_key


def test_a_damaged_credentials_file_is_replaced(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / local_instance.CREDENTIALS_FILE).write_text("{not json")
    settings, _ = local_instance.kept_credentials(Settings(data_dir=data))
    assert local_instance.read_credentials(data)["app_key"] == settings.app_key


def test_a_new_embedded_broker_keeps_the_credentials_in_place(tmp_path: Path) -> None:
    data = tmp_path / "data"
    kept, _ = local_instance.kept_credentials(Settings(data_dir=data))
    assert claim_data_dir(data, "broker-1") is None  # only credentials: nothing to move
    (data / "v1").mkdir()
    assert claim_data_dir(data, "broker-2") is not None  # the state moved aside...
    assert local_instance.read_credentials(data)["app_key"] == kept.app_key  # ...not the keys


# --- commands find the local instance ----------------------------------------------------------


def write_instance(data: Path, **overrides: object) -> Settings:
    settings, _ = local_instance.kept_credentials(
        Settings(data_dir=data, http_port=free_port(), embedded_broker_port=free_port(),
                 partitions=3, **overrides))  # type: ignore[arg-type]
    local_instance.write_instance(settings)
    return settings


def test_environment_fills_only_what_is_not_set(tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = write_instance(data)
    path = data / local_instance.INSTANCE_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    found = local_instance.environment({"EVENTIDE_DATA_DIR": str(data)})
    assert found["EVENTIDE_APP_KEY"] == settings.app_key
    assert found["EVENTIDE_HTTP_PORT"] == str(settings.http_port)
    assert found["EVENTIDE_EMBEDDED_BROKER_PORT"] == str(settings.embedded_broker_port)
    assert found["EVENTIDE_PARTITIONS"] == "3"
    from_env = Settings.from_env(found)
    assert from_env.bootstrap_servers == settings.bootstrap_servers and from_env.tansu
    mine = local_instance.environment({"EVENTIDE_DATA_DIR": str(data), "EVENTIDE_APP_KEY": "x",
                                       "EVENTIDE_BROKER": "kafka://k:9092"})
    assert mine["EVENTIDE_APP_KEY"] == "x"
    assert "EVENTIDE_EMBEDDED_BROKER_PORT" not in mine  # the embedded port is not for kafka://
    assert local_instance.environment({"EVENTIDE_DATA_DIR": str(tmp_path / "none")}) == {
        "EVENTIDE_DATA_DIR": str(tmp_path / "none")}


def test_instance_file_is_removed_by_its_own_process_only(tmp_path: Path) -> None:
    settings = write_instance(tmp_path / "data")
    path = tmp_path / "data" / local_instance.INSTANCE_FILE
    doc = orjson.loads(path.read_bytes())
    path.write_bytes(orjson.dumps({**doc, "pid": 1}))  # another up wrote it since
    local_instance.remove_instance(settings)
    assert path.exists()
    local_instance.write_instance(settings)
    local_instance.remove_instance(settings)
    assert not path.exists()


def test_an_http_command_finds_port_and_key_in_the_data_dir(
        clean_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = write_instance(clean_env / ".eventide")  # the default data dir, in this directory
    # Nothing listens on the recorded port: the one-line error shows the command went there,
    # with the recorded key (no "set EVENTIDE_APP_KEY").
    assert cli.main(["export", "--customer", "1"]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: cannot reach http://127.0.0.1:{settings.http_port}")
    assert "eventide up" in line and "EVENTIDE_HTTP_PORT" in line
    assert os.environ["EVENTIDE_APP_KEY"] == settings.app_key


def test_a_broker_command_finds_the_broker_in_the_data_dir(
        clean_env: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    settings = write_instance(clean_env / "elsewhere")
    monkeypatch.setenv("EVENTIDE_DATA_DIR", str(clean_env / "elsewhere"))
    assert cli.main(["digest"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: cannot reach the embedded broker at 127.0.0.1:"
                   f"{settings.embedded_broker_port}: start `eventide up` in this directory (or "
                   "set EVENTIDE_DATA_DIR to its data dir), or set EVENTIDE_BROKER=kafka://HOST:PORT"]


def test_without_a_local_instance_the_command_says_what_to_set(
        clean_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["export", "--customer", "1"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: set EVENTIDE_APP_KEY or pass --app-key-file FILE")
    assert ".eventide/credentials.json" in line
    assert cli_ops._default_url() == "http://127.0.0.1:6066"


# --- the banner ----------------------------------------------------------------------------------


def test_banner_with_generated_credentials_is_copy_paste_ready(tmp_path: Path) -> None:
    supplied = Settings(data_dir=tmp_path, http_port=6066)
    settings = supplied.replace(site_id="site-1", api_key="track-key", app_key="app-key")
    text = cli_up.banner(settings, supplied, broker_note=" (embedded)",
                      workers=["worker 2:           http://127.0.0.1:6067"],
                      kept_in=tmp_path / "credentials.json")
    lines = text.splitlines()
    assert lines[0] == "eventide is ready."
    assert "eventide API:       http://127.0.0.1:6066" in lines
    assert "track credentials:  site_id=site-1  api_key=track-key" in lines
    assert "app key (reads):    app-key" in lines
    assert "broker:             127.0.0.1:9092 (embedded)" in lines
    assert "worker 2:           http://127.0.0.1:6067" in lines
    assert any(str(tmp_path / "credentials.json") in line for line in lines)
    [export] = [line for line in lines if "export " in line]
    assert export.endswith("export EVENTIDE_SITE_ID=site-1 EVENTIDE_API_KEY=track-key "
                           "EVENTIDE_APP_KEY=app-key")
    assert lines[-1] == ("try:  curl -u site-1:track-key http://127.0.0.1:6066/api/v1/customers/5"
                         "/events -d name=purchased -d 'data[price]=23.45'")
    assert "SITE_ID:API_KEY" not in text


def test_banner_never_prints_supplied_credentials(tmp_path: Path) -> None:
    supplied = Settings(data_dir=tmp_path, site_id="s", api_key="secret-track",
                        app_key="secret-app")
    text = cli_up.banner(supplied, supplied)
    assert "secret" not in text
    assert "api_key=(as set in the environment)" in text
    assert "app key (reads):    (as set in the environment)" in text
    assert "export " not in text
    assert 'curl -u "$EVENTIDE_SITE_ID:$EVENTIDE_API_KEY" ' in text


class _Readyz(http.server.BaseHTTPRequestHandler):
    ready = False

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.send_response(200 if type(self).ready else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_the_banner_waits_for_readyz() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Readyz)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out = io.StringIO()
    try:
        with redirect_stdout(out):
            settings = Settings(http_port=server.server_address[1])
            thread = cli_up.announce_when_ready(settings, "BANNER", interval_s=0.02)
            time.sleep(0.3)
            assert out.getvalue() == ""  # listening, answering 503: not yet
            _Readyz.ready = True
            thread.join(5)
        assert out.getvalue() == "BANNER\n"
    finally:
        _Readyz.ready = False
        server.shutdown()
        server.server_close()


def test_files_others_could_have_written_are_ignored(tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = write_instance(data)
    for name in (local_instance.INSTANCE_FILE, local_instance.CREDENTIALS_FILE):
        (data / name).chmod(0o666)
    found = local_instance.environment({"EVENTIDE_DATA_DIR": str(data)})
    assert "EVENTIDE_APP_KEY" not in found and "EVENTIDE_HTTP_PORT" not in found
    (data / local_instance.INSTANCE_FILE).chmod(0o600)
    assert local_instance.environment({"EVENTIDE_DATA_DIR": str(data)})[
        "EVENTIDE_HTTP_PORT"] == str(settings.http_port)


def test_commands_reach_an_instance_over_loopback_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_instance(data, http_host="0.0.0.0")
    found = local_instance.environment({"EVENTIDE_DATA_DIR": str(data)})
    assert found["EVENTIDE_HTTP_HOST"] == "127.0.0.1"


def test_an_ingest_port_on_a_worker_s_port_is_refused_before_anything_starts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    settings = Settings(http_port=7000, data_dir=tmp_path / "data")
    args = argparse.Namespace(settings=settings, workers=3, ingest_port=7002)
    assert cli_up.cmd_up(args) == 2
    assert "--ingest-port 7002 is a worker's port (the workers use 7000-7002)" in \
        capsys.readouterr().err
    assert not (tmp_path / "data").exists(), "nothing was started"
