"""Settings are read and checked in one place: every bad value named at once, exit status 2;
a start that fails (broker unreachable, producer refused) ends in one line, not tracebacks."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from app import cli
from app.producer import IdempotenceRefused
from app.settings import Settings, SettingsError
from tests.support.harness import EVENTIDE, REPO

BAD = {
    "EVENTIDE_HTTP_PORT": "abc",
    "EVENTIDE_IDENTIFY_BY": "phone",
    "EVENTIDE_LOG_LEVEL": "loud",
    "EVENTIDE_LOG_FORMAT": "xml",
    "EVENTIDE_PARTITIONS": "0",
    "EVENTIDE_TICK_INTERVAL_S": "soon",
    "EVENTIDE_ACK_ON_DISK": "maybe",
    "EVENTIDE_BROKER": "kafka://localhost",
    "EVENTIDE_BROKER_FLAVOR": "redpanda",
    "EVENTIDE_IDEMPOTENT_PRODUCER": "sometimes",
    "EVENTIDE_PUBLIC_URL": "events.example.com",
    "EVENTIDE_TLS_CERT": "/nonexistent/cert.pem",
    "EVENTIDE_GC_YOUNG_THRESHOLD": "many",
    "EVENTIDE_EVENT_LOOP": "trio",
}


def test_every_bad_value_is_named_at_once() -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(BAD)
    problems = raised.value.problems
    assert len(problems) == len(BAD), problems
    for name, value in BAD.items():
        [line] = [p for p in problems if p.startswith(f"{name}=")]
        assert repr(value) in line, line
    by_name = {p.split("=", 1)[0]: p for p in problems}
    assert "whole number from 1 to 65535" in by_name["EVENTIDE_HTTP_PORT"]
    assert "one of id, email" in by_name["EVENTIDE_IDENTIFY_BY"]
    assert "debug, info, warning, error, critical" in by_name["EVENTIDE_LOG_LEVEL"]
    assert "one of uvloop, asyncio" in by_name["EVENTIDE_EVENT_LOOP"]


def test_good_values_and_defaults() -> None:
    assert Settings.from_env({}) == Settings()
    settings = Settings.from_env({
        "EVENTIDE_HTTP_PORT": " 7000 ", "EVENTIDE_IDENTIFY_BY": "Email",
        "EVENTIDE_LOG_LEVEL": "DEBUG", "EVENTIDE_ACK_ON_DISK": "off",
        "EVENTIDE_BROWSER_IDENTIFY": "no", "EVENTIDE_BROKER": "kafka://a:9092;b:9093",
        "EVENTIDE_TICK_INTERVAL_S": "0.5", "EVENTIDE_PUBLIC_URL": "https://events.example.com",
        "EVENTIDE_EVENT_LOOP": "AsyncIO"})
    assert settings.http_port == 7000 and settings.identify_by == "email"
    assert settings.log_level == "debug" and not settings.ack_on_disk
    assert not settings.browser_identify and settings.tick_interval_s == 0.5
    assert settings.event_loop == "asyncio" and Settings().event_loop == "uvloop"
    assert settings.bootstrap_servers == "a:9092,b:9093"


def test_idempotent_producer_setting() -> None:
    assert not Settings.from_env({}).idempotent  # embedded: Tansu
    assert Settings.from_env({"EVENTIDE_BROKER": "kafka://k:9092"}).idempotent
    assert not Settings.from_env({"EVENTIDE_BROKER": "kafka://k:9092",
                                  "EVENTIDE_IDEMPOTENT_PRODUCER": "0"}).idempotent
    assert not Settings.from_env({"EVENTIDE_BROKER": "kafka://k:9092",
                                  "EVENTIDE_BROKER_FLAVOR": "tansu"}).idempotent
    assert Settings.from_env({"EVENTIDE_IDEMPOTENT_PRODUCER": "1"}).idempotent


def test_the_cli_prints_each_problem_and_exits_2(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    for name in [n for n in os.environ if n.startswith("EVENTIDE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("EVENTIDE_HTTP_PORT", "abc")
    monkeypatch.setenv("EVENTIDE_IDENTIFY_BY", "phone")
    monkeypatch.setenv("EVENTIDE_LOG_LEVEL", "loud")
    assert cli.main(["worker"]) == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert [line for line in lines if line.startswith("error: ")] == [
        "error: EVENTIDE_HTTP_PORT='abc': expected a whole number from 1 to 65535",
        "error: EVENTIDE_IDENTIFY_BY='phone': expected one of id, email",
        "error: EVENTIDE_LOG_LEVEL='loud': expected one of debug, info, warning, error, "
        "critical"], err
    assert "Traceback" not in err and "nothing was started" in err


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again when the socket is


def test_a_worker_that_cannot_reach_its_broker_says_so_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTIDE_")}
    env.update(EVENTIDE_BROKER=f"kafka://127.0.0.1:{_closed_port()}", EVENTIDE_SITE_ID="s",
               EVENTIDE_API_KEY="a", EVENTIDE_APP_KEY="k", EVENTIDE_DATA_DIR=str(tmp_path),
               EVENTIDE_HTTP_PORT=str(_closed_port()))
    started = time.monotonic()
    done = subprocess.run([EVENTIDE, "worker"], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert time.monotonic() - started < 60
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    [line] = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert line.startswith("error: cannot reach the broker at 127.0.0.1:"), line


async def test_a_failed_start_shuts_down_cleanly(tmp_path: Path) -> None:
    """The broker refusing the producer in on_start: faust still stops the app, and on_shutdown
    closes only what on_start made (it used to fail on a missing ``_stopping``)."""
    from app.wiring import create_app

    settings = Settings(broker="kafka://127.0.0.1:1", data_dir=tmp_path, site_id="s",
                        api_key="a", app_key="k", partitions=2)
    (settings.state_dir / "faust").mkdir(parents=True)
    app = create_app(settings)

    async def refuse() -> None:
        raise IdempotenceRefused("refused")

    app.runtime.producer.start = refuse  # type: ignore[method-assign]
    with pytest.raises(IdempotenceRefused):
        await app.on_start()
    await app.on_shutdown()
