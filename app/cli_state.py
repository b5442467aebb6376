"""The commands on a deployment's topics and state versions: ``eventide topics``, ``digest``,
``replay`` (into a fresh state version) and ``deadletters``."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import sys

import orjson

from app.cli_worker import create_topics, settings_from
from app.listen import hand_down, take_port
from app.ops import deadletters, digest, replay, replay_tally
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
    # The replay worker's port, taken first and handed to it: a port in use is one line before
    # anything starts, and no other process can take it in between.
    listener = take_port("127.0.0.1", args.http_port or 0, setting="--http-port")
    port = int(listener.getsockname()[1])
    create_topics(settings)
    if args.since is not None:
        offsets = asyncio.run(replay.start_from_time(settings, int(args.since * 1000)))
        print(f"replaying raw topics from {args.since} (offsets {offsets})", file=sys.stderr)
    print(f"replaying into state version {version} "
          f"(topics {settings.topic_prefix}.{version}.*)", file=sys.stderr)
    starts = asyncio.run(replay_tally.starts(settings))
    app_key = base.app_key or secrets.token_urlsafe(12)
    env = dict(os.environ, EVENTIDE_STATE_VERSION=version,
               EVENTIDE_BROKER=settings.broker_url, EVENTIDE_DATA_DIR=str(settings.data_dir),
               EVENTIDE_BROKER_FLAVOR="tansu" if base.tansu else "kafka",
               EVENTIDE_HTTP_HOST="127.0.0.1", EVENTIDE_HTTP_PORT=str(port),
               EVENTIDE_SITE_ID=base.site_id or "replay",
               EVENTIDE_API_KEY=base.api_key or secrets.token_urlsafe(12),
               EVENTIDE_APP_KEY=app_key)
    worker_url = settings.replace(http_host="127.0.0.1", http_port=port).http_url
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.state_dir / "replay-worker.log"
    print(f"replay worker log: {log_path}", file=sys.stderr)
    worker = hand_down(listener, "worker", env, log_path)
    try:
        with Progress(console=Console(stderr=True)) as bar:
            task = bar.add_task(f"rebuilding {version}", total=None)

            def show(state: replay.Progress) -> None:
                if worker.poll() is not None:
                    raise SystemExit(f"the replay worker exited ({worker.returncode}); "
                                     f"see {log_path}")
                bar.update(task, completed=state.done, total=max(state.total, 1))
            asyncio.run(replay.wait_caught_up(settings, show))
        # Committed offsets at the ends are not proof that every record was processed.
        tally = replay_tally.wait_committed_all(
            starts, replay_tally.ends_now(settings, list(starts)),
            lambda: replay_tally.scrape(worker_url, app_key))
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
    print(tally.summary(settings.topic_prefix), file=sys.stderr)
    for name, value in asyncio.run(digest.digest(settings)).items():
        print(f"{name:20} {value}")
    if tally.short:
        print(f"error: the replay worker did not take every input record (short of "
              f"{tally.short}) while its group's offsets passed them; do not switch to "
              f"{version}. See {log_path}", file=sys.stderr)
        return 1
    print(f"done: switch workers to it with EVENTIDE_STATE_VERSION={version}")
    return 0


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
