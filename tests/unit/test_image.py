"""The Dockerfile and .dockerignore, read without Docker (none on the development machines or in
CI): a pinned base, a non-root user, dependencies from the lock in a layer before the code, no
embedded broker, a healthcheck on /healthz and `eventide` as the entrypoint."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = (REPO / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", "", "\n".join(line for line in text.splitlines()
                                          if not line.lstrip().startswith("#")))
    found = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


@pytest.fixture(scope="module")
def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def test_base_image_is_an_exact_release() -> None:
    steps = instructions()
    [default] = [rest for keyword, rest in steps if keyword == "ARG"
                 and rest.startswith("PYTHON_IMAGE=")]
    image = default.split("=", 1)[1]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", image), image
    assert all(rest.split()[0] == "${PYTHON_IMAGE}" for keyword, rest in steps
               if keyword == "FROM")


def test_runs_as_a_numeric_non_root_user(final_stage: list[tuple[str, str]]) -> None:
    [user] = [rest for keyword, rest in final_stage if keyword == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0


def test_dependencies_come_from_the_lock_in_a_layer_before_the_code(
        final_stage: list[tuple[str, str]]) -> None:
    copies = [(i, rest) for i, (keyword, rest) in enumerate(final_stage) if keyword == "COPY"]
    deps_at = next(i for i, rest in copies if "requirements.lock" in rest)
    code_at = next(i for i, rest in copies if "--from=wheel" in rest)
    assert deps_at < code_at
    assert "app" not in final_stage[deps_at][1].split()
    runs = [rest for keyword, rest in final_stage[deps_at:code_at] if keyword == "RUN"]
    assert any("-c /tmp/deps/requirements.lock" in run for run in runs)
    [install] = [rest for keyword, rest in final_stage[code_at:] if keyword == "RUN"
                 and "pip install" in rest]
    assert "--no-deps" in install and "pip check" in install


def test_no_embedded_broker_or_test_extra_in_the_image() -> None:
    text = (REPO / "Dockerfile").read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "calfkit" not in code and "[embedded" not in code and "[test" not in code


def test_healthcheck_and_entrypoint(final_stage: list[tuple[str, str]]) -> None:
    [health] = [rest for keyword, rest in final_stage if keyword == "HEALTHCHECK"]
    command = json.loads(health[health.index("CMD") + 3:].strip())
    assert command[:2] == ["python", "-c"] and "/healthz" in command[2]
    compile(command[2], "healthcheck", "exec")
    assert "curl" not in health
    [entrypoint] = [rest for keyword, rest in final_stage if keyword == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["eventide"]
    [cmd] = [rest for keyword, rest in final_stage if keyword == "CMD"]
    assert json.loads(cmd) == ["worker"]


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".venv", ".git", ".eventide*", "bench/results", "tests"} <= ignored
    # ...and keeps what the Dockerfile copies.
    assert not ignored & {"app", "agents", "tables", "pyproject.toml", "requirements.lock",
                          "README.md"}
