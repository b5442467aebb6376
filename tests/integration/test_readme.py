"""The README's curl examples ("Send and read events"), run top to bottom against a worker.

Each command runs as written, with SITE/KEY/APP/URL set to the test worker's; curl fails on an
HTTP error (``--fail-with-body``). A read may come a few milliseconds after the write it shows,
so a failing read is retried for a bounded time, as a person at a terminal would.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time

import orjson
import pytest

from tests.support.harness import REPO, Deployment, Worker

pytestmark = pytest.mark.integration

#: A curl that fails on HTTP errors; a stream cut by its own --max-time (exit 28) succeeded.
CURL = """curl() {
  command curl --fail-with-body -sS "$@"; local rc=$?
  if [ $rc = 28 ] && [[ " $* " == *" --max-time "* ]]; then return 0; fi
  return $rc
}
"""


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"## Send and read events\n+```sh\n(.*?)```", text, re.S)
    assert block, "the README's 'Send and read events' block"
    commands = []
    for command in block.group(1).replace("\\\n", " ").splitlines():
        command = command.strip()
        if command and not command.startswith("#") and not command.startswith("SITE="):
            commands.append(command)
    return commands


def test_the_readme_block_is_found() -> None:
    commands = readme_commands()
    assert len(commands) >= 10 and all(c.startswith("curl ") for c in commands), commands


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_the_readme_curl_examples_run_top_to_bottom(deployment: Deployment,
                                                          worker: Worker) -> None:
    d = deployment
    env = {"SITE": d.settings.site_id, "KEY": d.settings.api_key, "APP": d.settings.app_key,
           "URL": d.url, "PATH": "/usr/bin:/bin:/usr/local/bin"}
    for command in readme_commands():
        writes = any(flag in command for flag in (" -d ", "--data", "-X "))
        shows = next((check for part, check in SHOWN.items() if part in command), None)
        deadline = time.monotonic() + (0 if writes else 30)
        while True:
            done = await asyncio.to_thread(
                subprocess.run, ["bash", "-c", CURL + command], env=env, capture_output=True,
                text=True, timeout=60)
            ok = done.returncode == 0 and (shows is None or shows(orjson.loads(done.stdout)))
            if ok or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.3)
        assert ok, f"{command}\n{done.returncode}\n{done.stdout}\n{done.stderr}"


#: What the README says a read shows (it is retried until it does, within the bound).
SHOWN = {
    "/anonymous/anon-7/": lambda body: body["identified_as"] == "5",
    "/customers/5/activities": lambda body: {"likes_pizza", "purchased", "paid",
                                             "viewed_pricing"} <= {
        a["name"] for a in body["activities"]},
    "/segments/pricing-viewers/membership": lambda body: body["people"] == ["5"],
}
