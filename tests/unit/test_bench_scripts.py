"""Every benchmark script the README names still imports and parses its arguments: a script
run only by hand broke once unnoticed when a module it imported moved (``bench.activity_log``
after the Activity Log's queries moved to ``app.queries``)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

SCRIPTS = sorted(path.stem for path in (Path(__file__).parents[2] / "bench").glob("*.py")
                 if "def main(" in path.read_text())


def test_the_scripts_are_found() -> None:
    assert {"activity_log", "beside", "history_cost", "instructions", "run", "stage",
            "sweep"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_script_imports_and_answers_help(script: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    module = importlib.import_module(f"bench.{script}")
    with pytest.raises(SystemExit) as exit_:
        module.main(["--help"])
    assert exit_.value.code == 0
    assert "usage:" in capsys.readouterr().out
