"""``eventide worker`` and ``eventide api``, and the steps every command that starts a worker
takes first: settings with the command line's overrides, topics, a producer check, state
migration."""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys
from pathlib import Path

from aiokafka.errors import KafkaConnectionError

from app import event_loop, logging_setup
from app.broker import ensure_topics
from app.kafka_clients import kafka_client_options
from app.listen import listener_for
from app.ops import migrate
from app.ops.input_log import InputLog
from app.producer import Producer
from app.settings import Settings, StartupError
from app.topics import build_topics


def settings_from(args: argparse.Namespace) -> Settings:
    # Read and checked once, in main(); a direct caller reads the environment itself.
    settings = getattr(args, "settings", None) or Settings.from_env()
    overrides = {}
    if getattr(args, "broker", None):
        overrides["broker"] = args.broker
    if getattr(args, "port", None):
        overrides["http_port"] = args.port
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = Path(args.data_dir)
    return settings.replace(**overrides) if overrides else settings


def create_topics(settings: Settings) -> None:
    try:
        asyncio.run(ensure_topics(settings.bootstrap_servers, build_topics(settings).all(),
                                  settings.replication_factor,
                                  min_insync_replicas=settings.min_insync_replicas or None,
                                  client_options=kafka_client_options(settings)))
    except KafkaConnectionError as exc:
        raise StartupError(f"cannot reach the broker at {settings.bootstrap_servers} "
                           f"({'embedded' if settings.embedded else 'EVENTIDE_BROKER'}): "
                           f"{exc}", status=1) from exc


def migrate_state(settings: Settings) -> None:
    """State of an earlier layout is converted before the worker reads it (app/ops/migrate.py)."""
    done = asyncio.run(migrate.migrate_people(settings))
    if done is not None:
        print(f"note: the people tables of state version {settings.state_version} were in "
              f"layout 1 (a value per person); migrated {done.get('people', 0)} histories "
              f"({done.get('records', 0)} records) to layout 2 (a key per event)",
              file=sys.stderr)


def check_producer(settings: Settings) -> None:
    """Start and stop the producer once before anything else starts: a broker that refuses it
    (an idempotent producer on Tansu or some managed services) is then one line, not a worker
    crashing mid-start."""
    async def check() -> None:
        producer = Producer(settings)
        try:
            await producer.start()
        finally:
            await producer.stop()
    # aiokafka logs the refusal as an error of its own; the StartupError says it, with the fix.
    sender_log = logging.getLogger("aiokafka.producer.sender")
    level = sender_log.level
    sender_log.setLevel(logging.CRITICAL)
    try:
        asyncio.run(check())
    except KafkaConnectionError as exc:
        raise StartupError(f"cannot reach the broker at {settings.bootstrap_servers}: {exc}",
                           status=1) from exc
    finally:
        sender_log.setLevel(level)


def run_worker(settings: Settings, listener: socket.socket,
               input_log: InputLog | None = None) -> int:
    """Run a worker until it stops. ``listener``: its HTTP port, taken first
    (:func:`app.listen.listener_for`), so a port in use stops it before it joins its group."""
    from faust.worker import Worker

    from app.wiring import create_app

    (settings.state_dir / "faust").mkdir(parents=True, exist_ok=True)
    event_loop.install(settings.event_loop)  # before faust's app or worker makes a loop
    app = create_app(settings, input_log=input_log, listener=listener)
    # faust's Worker replaces the root logger's handlers at start: hand it eventide's config.
    worker = Worker(app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False,
                    logging_config=logging_setup.dict_config(json=settings.log_json,
                                                             level=settings.log_level))
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _credentials_missing(settings: Settings) -> bool:
    """A worker and the ingest tier need all three credentials: say so when one is not set."""
    if settings.site_id and settings.api_key and settings.app_key:
        return False
    print("error: set EVENTIDE_SITE_ID, EVENTIDE_API_KEY and EVENTIDE_APP_KEY", file=sys.stderr)
    return True


def cmd_worker(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if _credentials_missing(settings):
        return 2
    listener, settings = listener_for(settings)
    create_topics(settings)
    check_producer(settings)
    migrate_state(settings)
    return run_worker(settings, listener)


def cmd_api(args: argparse.Namespace) -> int:
    from app import api_tier

    settings = settings_from(args)
    if _credentials_missing(settings):
        return 2
    event_loop.install(settings.event_loop)
    return asyncio.run(api_tier.serve(settings))
