"""The commands on a deployment's topics and state versions: ``eventide topics``, ``digest``,
``replay`` (into a fresh state version) and ``deadletters``."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
from pathlib import Path

import orjson

from app.cli_worker import create_topics, settings_from
from app.ops import deadletters, digest, replay
from app.topics import build_topics


def cmd_digest(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if args.state_version:
        settings = settings.replace(state_version=args.state_version)
    for name, value in asyncio.run(digest.digest(settings)).items():
        print(f"{name:20} {value}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress

    base = settings_from(args)
    version = args.state_version or asyncio.run(replay.next_version(base))
    settings = base.replace(state_version=version)
    if version == base.state_version:
        print(f"error: {version} is the live state version; replay into a fresh one",
              file=sys.stderr)
        return 2
    create_topics(settings)
    if args.since is not None:
        starts = asyncio.run(replay.start_from_time(settings, int(args.since * 1000)))
        print(f"replaying raw topics from {args.since} (offsets {starts})", file=sys.stderr)
    print(f"replaying into state version {version} "
          f"(topics {settings.topic_prefix}.{version}.*)", file=sys.stderr)
    env = dict(os.environ, EVENTIDE_STATE_VERSION=version,
               EVENTIDE_BROKER=settings.broker_url, EVENTIDE_DATA_DIR=str(settings.data_dir),
               EVENTIDE_BROKER_FLAVOR="tansu" if base.tansu else "kafka",
               EVENTIDE_HTTP_PORT=str(args.http_port or _free_port()),
               EVENTIDE_SITE_ID=base.site_id or "replay", EVENTIDE_API_KEY=base.api_key or
               secrets.token_urlsafe(12), EVENTIDE_APP_KEY=base.app_key or
               secrets.token_urlsafe(12))
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.state_dir / "replay-worker.log"
    print(f"replay worker log: {log_path}", file=sys.stderr)
    worker = subprocess.Popen([str(Path(sys.executable).with_name("eventide")), "worker"],
                              env=env, stdin=subprocess.DEVNULL, stdout=open(log_path, "ab"),
                              stderr=subprocess.STDOUT)
    try:
        with Progress(console=Console(stderr=True)) as bar:
            task = bar.add_task(f"rebuilding {version}", total=None)

            def show(state: replay.Progress) -> None:
                if worker.poll() is not None:
                    raise SystemExit(f"the replay worker exited ({worker.returncode}); "
                                     f"see {log_path}")
                bar.update(task, completed=state.done, total=max(state.total, 1))
            asyncio.run(replay.wait_caught_up(settings, show))
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
    for name, value in asyncio.run(digest.digest(settings)).items():
        print(f"{name:20} {value}")
    print(f"done: switch workers to it with EVENTIDE_STATE_VERSION={version}")
    return 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cmd_deadletters(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if args.resubmit:
        with open(args.resubmit, "rb") as lines:
            letters = [orjson.loads(line) for line in lines if line.strip()]
        sent = asyncio.run(deadletters.resubmit(settings, letters))
        print(f"re-submitted {sent} records")
        return 0
    for letter in asyncio.run(deadletters.list_letters(settings))[-args.limit:]:
        print(orjson.dumps(letter).decode())
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    create_topics(settings)
    for spec in build_topics(settings).all():
        print(f"{spec.name}\t{spec.partitions}\t{'compacted' if spec.compacted else 'log'}")
    return 0
