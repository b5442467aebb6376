"""``eventide up`` in a scratch directory for a benchmark: its own embedded broker and data dir."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import AsyncIterator

from app.testing.harness import EVENTIDE, free_port, wait_healthy

#: The credentials every benchmark instance runs with.
CREDENTIALS = {"EVENTIDE_SITE_ID": "s", "EVENTIDE_API_KEY": "k", "EVENTIDE_APP_KEY": "a"}


@contextlib.asynccontextmanager
async def running_instance(name: str, env: dict[str, str] | None = None,
                           tree: Path | None = None, args: tuple[str, ...] = (),
                           also_ready: tuple[str, ...] = ()) -> AsyncIterator[tuple[str, int]]:
    """Yield ``(url, pid)`` of a healthy ``eventide up [args]``; ``tree``: run that checkout's
    code; ``also_ready``: more URLs of the instance (``--ingest-port``'s tier) that must answer
    ``/healthz`` first."""
    root = Path(tempfile.mkdtemp(prefix=f"eventide-{name}-bench-"))
    port = free_port()
    full_env = dict(os.environ, EVENTIDE_EMBEDDED_BROKER_PORT=str(free_port()),
                    EVENTIDE_HTTP_PORT=str(port), EVENTIDE_DATA_DIR=str(root / "data"),
                    EVENTIDE_LOG_LEVEL="warning", **CREDENTIALS, **(env or {}))
    full_env.pop("EVENTIDE_BROKER", None)
    if tree is not None:
        full_env["PYTHONPATH"] = str(tree)
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([EVENTIDE, "up", *args], env=full_env, cwd=root,
                               stdout=open(root / "up.log", "ab"), stderr=subprocess.STDOUT)
    try:
        for ready in (url, *also_ready):
            await wait_healthy(ready, process, lambda: (root / "up.log").read_text()[-2000:],
                               timeout_s=120)
        yield url, process.pid
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(root, ignore_errors=True)
