"""``eventide``: the one entry point.

    eventide up       embedded broker + worker + HTTP API (prints URL and credentials)
    eventide worker   a worker (and its HTTP API) against EVENTIDE_BROKER
    eventide topics   create every topic with its partition count, then exit
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from app import cli_ops
from app.broker import EmbeddedBroker, claim_data_dir, ensure_topics
from app.settings import Settings
from app.topics import build_topics

log = logging.getLogger("eventide")


def _settings_from(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    overrides = {}
    if getattr(args, "broker", None):
        overrides["broker"] = args.broker
    if getattr(args, "port", None):
        overrides["http_port"] = args.port
    if getattr(args, "data_dir", None):
        from pathlib import Path
        overrides["data_dir"] = Path(args.data_dir)
    return settings.replace(**overrides) if overrides else settings


def _create_topics(settings: Settings) -> None:
    asyncio.run(ensure_topics(settings.bootstrap_servers, build_topics(settings).all(),
                              settings.replication_factor))


def _run_worker(settings: Settings) -> int:
    from faust.worker import Worker

    from app.wiring import create_app

    (settings.state_dir / "faust").mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    worker = Worker(app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    settings = _settings_from(args).with_generated_credentials()
    broker: EmbeddedBroker | None = None
    if settings.embedded:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        broker = EmbeddedBroker(settings.embedded_broker_port, settings.data_dir.parent /
                                f"{settings.data_dir.name}-broker.log")
        broker.start()
        moved = claim_data_dir(settings.data_dir, broker.instance_id)
        if moved is not None:
            print(f"warning: {settings.data_dir} held state built against an earlier broker; "
                  f"it was moved to {moved} and this run starts clean", file=sys.stderr)
        print("note: the embedded broker keeps its log in memory; stopping it loses the log. "
              "Point EVENTIDE_BROKER at Kafka for durable storage.", file=sys.stderr)
    try:
        _create_topics(settings)
        print(f"eventide API:       {settings.http_url}")
        print(f"track credentials:  site_id={settings.site_id}  api_key={settings.api_key}")
        print(f"app key (reads):    {settings.app_key}")
        print(f"broker:             {settings.bootstrap_servers}"
              f"{' (embedded, in memory)' if broker else ''}")
        print("try:  curl -u SITE_ID:API_KEY " + settings.http_url +
              "/api/v1/customers/5/events -d name=purchased -d data[price]=23.45", flush=True)
        # The worker reads credentials from the environment like any other setting.
        os.environ.update(EVENTIDE_SITE_ID=settings.site_id, EVENTIDE_API_KEY=settings.api_key,
                          EVENTIDE_APP_KEY=settings.app_key)
        return _run_worker(settings)
    finally:
        if broker is not None:
            broker.stop()


def cmd_worker(args: argparse.Namespace) -> int:
    settings = _settings_from(args)
    if not (settings.site_id and settings.api_key and settings.app_key):
        print("error: set EVENTIDE_SITE_ID, EVENTIDE_API_KEY and EVENTIDE_APP_KEY",
              file=sys.stderr)
        return 2
    _create_topics(settings)
    return _run_worker(settings)


def cmd_topics(args: argparse.Namespace) -> int:
    settings = _settings_from(args)
    _create_topics(settings)
    for spec in build_topics(settings).all():
        print(f"{spec.name}\t{spec.partitions}\t{'compacted' if spec.compacted else 'log'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="eventide", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, handler, help_ in (("up", cmd_up, "embedded broker + worker + HTTP API"),
                                 ("worker", cmd_worker, "a worker against EVENTIDE_BROKER"),
                                 ("topics", cmd_topics, "create all topics")):
        sub = commands.add_parser(name, help=help_)
        sub.add_argument("--broker", help="kafka://host:port (overrides EVENTIDE_BROKER)")
        sub.add_argument("--port", type=int, help="HTTP port (overrides EVENTIDE_HTTP_PORT)")
        sub.add_argument("--data-dir", help="state directory (overrides EVENTIDE_DATA_DIR)")
        sub.set_defaults(handler=handler)
    cli_ops.register(commands)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
