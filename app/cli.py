"""``eventide``: the one entry point (``eventide --help`` lists the commands).

Service commands live here (up, worker, api, topics, digest, replay, deadletters); the client
commands that talk to a running worker over HTTP (import, render, export) are in
:mod:`app.cli_ops`. Every command's description, environment variables and exit codes are in
:data:`COMMANDS` (and ``cli_ops``), which ``--help`` prints.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shlex
import sys

import secrets
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.request

from pathlib import Path

import orjson
from aiokafka.errors import KafkaConnectionError

from app import cli_ops, local_instance, logging_setup
from app.broker import BrokerError, EmbeddedBroker, claim_data_dir, ensure_topics, stop_orphan
from app.ops import deadletters, digest, migrate, replay
from app.ops.input_log import DURABLE_OFFSETS, InputLog, migrate_archive, slots_of
from app.kafka_clients import kafka_client_options
from app.producer import Producer
from app.settings import Settings, SettingsError, StartupError
from app.topics import build_topics

log = logging.getLogger("eventide")


def _settings_from(args: argparse.Namespace) -> Settings:
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


def _create_topics(settings: Settings) -> None:
    try:
        asyncio.run(ensure_topics(settings.bootstrap_servers, build_topics(settings).all(),
                                  settings.replication_factor,
                                  min_insync_replicas=settings.min_insync_replicas or None,
                                  client_options=kafka_client_options(settings)))
    except KafkaConnectionError as exc:
        raise StartupError(f"cannot reach the broker at {settings.bootstrap_servers} "
                           f"({'embedded' if settings.embedded else 'EVENTIDE_BROKER'}): "
                           f"{exc}", status=1) from exc


def _migrate_state(settings: Settings) -> None:
    """State of an earlier layout is converted before the worker reads it (app/ops/migrate.py)."""
    done = asyncio.run(migrate.migrate_people(settings))
    if done is not None:
        print(f"note: the people tables of state version {settings.state_version} were in "
              f"layout 1 (a value per person); migrated {done.get('people', 0)} histories "
              f"({done.get('records', 0)} records) to layout 2 (a key per event)",
              file=sys.stderr)


def _check_producer(settings: Settings) -> None:
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


def _run_worker(settings: Settings, input_log: InputLog | None = None) -> int:
    from faust.worker import Worker

    from app.wiring import create_app

    (settings.state_dir / "faust").mkdir(parents=True, exist_ok=True)
    app = create_app(settings, input_log=input_log)
    # faust's Worker replaces the root logger's handlers at start: hand it eventide's config.
    worker = Worker(app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False,
                    logging_config=logging_setup.dict_config(json=settings.log_json,
                                                             level=settings.log_level))
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _start_extra_workers(settings: Settings, count: int
                         ) -> tuple[list[subprocess.Popen], list[str]]:
    """Workers 2..N of ``eventide up --workers N``: same broker and group, own port and state.
    Returns the processes and one banner line for each."""
    processes, lines = [], []
    for index in range(1, count + 1):
        port = settings.http_port + index
        data_dir = settings.data_dir / f"worker-{index}"
        data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, EVENTIDE_BROKER=settings.broker_url,
                   EVENTIDE_INPUT_LOG_DIR=str(settings.input_log_dir or ""),
                   EVENTIDE_BROKER_FLAVOR="tansu" if settings.tansu else "kafka",
                   EVENTIDE_HTTP_PORT=str(port), EVENTIDE_DATA_DIR=str(data_dir))
        log_path = settings.data_dir / f"worker-{index}.log"
        processes.append(subprocess.Popen(
            [str(Path(sys.executable).with_name("eventide")), "worker"], env=env,
            stdin=subprocess.DEVNULL, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT))
        lines.append(f"worker {index + 1}:           http://{settings.http_host}:{port} "
                     f"(log {log_path})")
    return processes, lines


#: ``curl`` line of the banner: one event, as the README's first example.
TRY_PATH = "/api/v1/customers/5/events -d name=purchased -d 'data[price]=23.45'"


def banner(settings: Settings, supplied: Settings, *, broker_note: str = "",
           workers: list[str] | tuple[str, ...] = (), kept_in: Path | None = None) -> str:
    """What ``eventide up`` prints once its worker is ready.

    Generated credentials are shown with a copy-paste ``export`` line and a ``curl`` that works
    as printed. Credentials supplied in the environment stay out of terminals, scroll-back and
    logs: shown as "(as set in the environment)" and used by reference (``$EVENTIDE_...``).
    """
    def shown(field: str) -> str:
        return "(as set in the environment)" if getattr(supplied, field) else \
            getattr(settings, field)

    def usable(field: str) -> str:
        variable = local_instance.CREDENTIAL_VARIABLES[field]
        return f"${variable}" if getattr(supplied, field) else shlex.quote(getattr(settings, field))

    lines = [
        "eventide is ready.",
        f"eventide API:       {settings.http_url}",
        f"console:            {settings.http_url}/console/  (sign in with the app key)",
        f"track credentials:  site_id={shown('site_id')}  api_key={shown('api_key')}",
        f"app key (reads):    {shown('app_key')}",
        f"broker:             {settings.bootstrap_servers}{broker_note}",
        *workers,
    ]
    generated = [field for field in local_instance.CREDENTIAL_VARIABLES
                 if not getattr(supplied, field)]
    if generated:
        where = f" in {kept_in}" if kept_in is not None else ""
        lines.append(f"credentials kept{where} (only you can read it): restarts keep them, and "
                     "eventide commands run here find them and this instance.")
        lines.append("for other shells:   export " + " ".join(
            f"{local_instance.CREDENTIAL_VARIABLES[field]}={usable(field)}"
            for field in generated))
    credentials = f"{usable('site_id')}:{usable('api_key')}"
    if any(getattr(supplied, field) for field in ("site_id", "api_key")):
        credentials = f'"{credentials}"'
    lines.append(f"try:  curl -u {credentials} {settings.http_url}{TRY_PATH}")
    return "\n".join(lines)


def announce_when_ready(settings: Settings, text: str, *, interval_s: float = 0.2,
                        note_after_s: float = 30.0) -> threading.Thread:
    """Print ``text`` once the worker's ``/readyz`` answers 200 (joined its group, recovered
    its state); a note on stderr if that takes long. A daemon thread: it ends with the process."""
    host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::", "") else settings.http_host
    url = f"{'https' if settings.tls_cert else 'http'}://{host}:{settings.http_port}/readyz"
    context = ssl._create_unverified_context() if settings.tls_cert else None

    def wait() -> None:
        started, noted = time.monotonic(), False
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2, context=context) as response:
                    if response.status == 200:
                        break
            except (OSError, ValueError):
                pass  # not listening yet, or 503 while joining / recovering
            if not noted and time.monotonic() - started > note_after_s:
                print("note: waiting for the worker to be ready (joining its consumer group, "
                      "recovering state)", file=sys.stderr, flush=True)
                noted = True
            time.sleep(interval_s)
        print(text, flush=True)

    thread = threading.Thread(target=wait, name="eventide-banner", daemon=True)
    thread.start()
    return thread


def _open_input_log(settings: Settings) -> InputLog:
    """Check (and repair) the input log, and load it into the fresh embedded broker."""
    from rich.console import Console
    from rich.progress import Progress

    root = settings.data_dir / "log"
    slots = slots_of(replay.inputs(build_topics(settings)))

    def say(line: str) -> None:
        print(f"note: {line}", file=sys.stderr)

    migrate_archive(root, slots, say=say)
    input_log = InputLog(root, slots, max_bytes=settings.input_log_max_bytes)
    total = input_log.open(say=say)
    if total:
        with Progress(transient=True, console=Console(stderr=True)) as bar:
            task = bar.add_task("loading the input log into the broker", total=total)
            restored = asyncio.run(input_log.restore_into(
                settings.bootstrap_servers, progress=lambda n: bar.update(task, completed=n)))
        print(f"restored {restored} input records from {root}; the worker rebuilds state from "
              "them (progress: /metrics, records_in)", file=sys.stderr)
    input_log.publish_to(root / DURABLE_OFFSETS)
    return input_log


def cmd_up(args: argparse.Namespace) -> int:
    supplied = _settings_from(args)
    # Credentials not in the environment: the ones kept in the data dir, else new ones (kept).
    settings, _ = local_instance.kept_credentials(supplied)
    broker: EmbeddedBroker | None = None
    input_log: InputLog | None = None
    if settings.embedded:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        settings.data_dir.chmod(0o700)  # one created by an earlier version may be 0755
        pid_path = settings.data_dir / "broker.pid"
        orphan = stop_orphan(pid_path, settings.embedded_broker_port)
        if orphan is not None:
            print(f"note: stopped the embedded broker (pid {orphan}) a previous run left behind",
                  file=sys.stderr)
        broker = EmbeddedBroker(settings.embedded_broker_port, settings.data_dir.parent /
                                f"{settings.data_dir.name}-broker.log", pid_path=pid_path)
        broker.start()
        moved = claim_data_dir(settings.data_dir, broker.instance_id)
        if moved is not None:
            print(f"note: state built against the previous broker was moved to {moved}; it is "
                  "rebuilt from the input log", file=sys.stderr)
        settings = settings.replace(input_log_dir=settings.data_dir / "log")
    try:
        _create_topics(settings)
        _check_producer(settings)
        _migrate_state(settings)
        if broker is not None:
            input_log = _open_input_log(settings)
        # The worker reads credentials from the environment like any other setting.
        os.environ.update(EVENTIDE_SITE_ID=settings.site_id, EVENTIDE_API_KEY=settings.api_key,
                          EVENTIDE_APP_KEY=settings.app_key)
        extra, worker_lines = _start_extra_workers(settings, args.workers - 1)
        where = f" (embedded; inputs flushed to {settings.input_log_dir})" if broker else ""
        local_instance.write_instance(settings)
        announce_when_ready(settings, banner(
            settings, supplied, broker_note=where, workers=worker_lines,
            kept_in=settings.data_dir / local_instance.CREDENTIALS_FILE))
        try:
            return _run_worker(settings, input_log)
        finally:
            local_instance.remove_instance(settings)
            for process in extra:
                process.send_signal(signal.SIGTERM)
            for process in extra:
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    process.kill()
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
    _check_producer(settings)
    _migrate_state(settings)
    return _run_worker(settings)


def cmd_api(args: argparse.Namespace) -> int:
    from app import api_tier

    settings = _settings_from(args)
    if not (settings.site_id and settings.api_key and settings.app_key):
        print("error: set EVENTIDE_SITE_ID, EVENTIDE_API_KEY and EVENTIDE_APP_KEY",
              file=sys.stderr)
        return 2
    return asyncio.run(api_tier.serve(settings))


def cmd_digest(args: argparse.Namespace) -> int:
    settings = _settings_from(args)
    if args.state_version:
        settings = settings.replace(state_version=args.state_version)
    for name, value in asyncio.run(digest.digest(settings)).items():
        print(f"{name:20} {value}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress

    base = _settings_from(args)
    version = args.state_version or asyncio.run(replay.next_version(base))
    settings = base.replace(state_version=version)
    if version == base.state_version:
        print(f"error: {version} is the live state version; replay into a fresh one",
              file=sys.stderr)
        return 2
    _create_topics(settings)
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
    settings = _settings_from(args)
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
    settings = _settings_from(args)
    _create_topics(settings)
    for spec in build_topics(settings).all():
        print(f"{spec.name}\t{spec.partitions}\t{'compacted' if spec.compacted else 'log'}")
    return 0


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("eventide")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


DESCRIPTION = """\
eventide: a Kafka-native customer-event processor (Customer.io-compatible track API, exact
deduplication, per-person history, live segments).

Run "eventide COMMAND --help" for what a command does, the environment variables it reads and
its exit codes."""

EPILOG = """\
Settings come from EVENTIDE_* environment variables (README, "Configuration"); the few options
override them for one run. Secrets (EVENTIDE_API_KEY, EVENTIDE_APP_KEY) are read from the
environment, or by the client commands from --app-key-file: none goes on the command line, where
other users of the machine would see it.

Logs go to stderr, as text or, with EVENTIDE_LOG_FORMAT=json, one JSON object per line
(EVENTIDE_LOG_LEVEL: debug, info, warning, error).

Exit status: 0 done; 1 failed; 2 usage or a missing setting. Each command's --help says more."""

_BROKER_ENV = ("  EVENTIDE_BROKER           kafka://host:port[,host:port] (unset: the embedded "
               "broker\n                            of 'eventide up' on "
               "EVENTIDE_EMBEDDED_BROKER_PORT)\n"
               "  EVENTIDE_TOPIC_PREFIX, EVENTIDE_PARTITIONS, EVENTIDE_STATE_VERSION\n"
               "                            which topics (defaults eventide, 8, v1)\n"
               "  EVENTIDE_DATA_DIR         the data dir of a local 'eventide up' (.eventide):\n"
               "                            what is not set above is taken from it\n")
_CREDENTIALS_ENV = ("  EVENTIDE_SITE_ID, EVENTIDE_API_KEY   track credentials (HTTP Basic)\n"
                    "  EVENTIDE_APP_KEY          bearer key for reads, /metrics and the console\n")
_HTTP_ENV = ("  EVENTIDE_HTTP_HOST, EVENTIDE_HTTP_PORT   where the HTTP API listens "
             "(127.0.0.1, 6066)\n")

#: name -> (one-line help, description, environment, exit codes)
COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "up": (
        "run everything on one machine: embedded broker + worker(s) + HTTP API",
        "Start the embedded Kafka-protocol broker (unless EVENTIDE_BROKER is set), create the "
        "topics, load the input log kept in the data directory, then run a worker with its HTTP "
        "API in the foreground until Ctrl-C or SIGTERM. Credentials that are not set in the "
        "environment are generated and printed. The embedded broker needs the 'embedded' extra "
        "(pip install 'eventide[embedded]'; 'make run' installs it).",
        _BROKER_ENV + "  EVENTIDE_EMBEDDED_BROKER_PORT   port of the embedded broker (9092)\n"
        + _HTTP_ENV + "  EVENTIDE_DATA_DIR         state and input log (.eventide)\n"
        + _CREDENTIALS_ENV + "                            (generated when unset)\n"
        "  and every other EVENTIDE_* setting of README \"Configuration\"",
        "0 stopped (Ctrl-C or SIGTERM); 1 the broker or the worker failed"),
    "worker": (
        "run one worker (and its HTTP API) against EVENTIDE_BROKER",
        "Run one stream-processing worker of the consumer group <prefix>-<state version>, with "
        "its HTTP API (track, reads, console, /metrics, /healthz), in the foreground until "
        "SIGTERM. Creates missing topics first. Start as many as there are partitions to share.",
        _BROKER_ENV + _HTTP_ENV + "  EVENTIDE_DATA_DIR         local state (RocksDB) of this "
        "worker (.eventide)\n" + _CREDENTIALS_ENV + "                            (all three "
        "required)\n  and every other EVENTIDE_* setting of README \"Configuration\"",
        "0 stopped cleanly; 1 failed; 2 a credential is not set"),
    "api": (
        "run the stateless HTTP ingest tier alone (scale it out)",
        "Serve the track API (and /healthz, /metrics) without processing: validate each request "
        "and produce it to the raw topics, keeping no state. Run several behind a load balancer; "
        "workers do the processing.",
        _BROKER_ENV + _HTTP_ENV + _CREDENTIALS_ENV + "                            (all three "
        "required)",
        "0 stopped cleanly; 1 failed; 2 a credential is not set"),
    "topics": (
        "create every topic with its partition count, print them, exit",
        "Create every topic eventide uses (raw inputs, derived streams, changelogs) with its "
        "partition count and config, leave existing ones as they are, and print one line per "
        "topic: name, partitions, log or compacted. Run it once before the workers when the "
        "cluster does not auto-create topics.",
        _BROKER_ENV + "  EVENTIDE_REPLICATION_FACTOR, EVENTIDE_MIN_INSYNC_REPLICAS   "
        "replication of new topics",
        "0 done; 1 a topic exists with another partition count, or the broker is unreachable"),
    "digest": (
        "print a stable digest of a state version's derived state",
        "Read every changelog of a state version and print a digest per table and overall. It "
        "does not depend on partition layout or processing timing: two replays of the same input "
        "give equal digests.",
        _BROKER_ENV,
        "0 done; 1 failed (broker unreachable, no such state version)"),
    "replay": (
        "rebuild all derived state into a fresh state version",
        "Rebuild every derived table and stream from the raw input topics into a fresh state "
        "version (v2, v3, ...: its own consumer group, topics and local state) with a worker of "
        "its own, show progress, then print the new version's digest. The live version is "
        "untouched; switch workers to the new one with EVENTIDE_STATE_VERSION. Without --since "
        "every input record is replayed.",
        _BROKER_ENV + "  EVENTIDE_DATA_DIR         where the replay worker keeps its state "
        "(.eventide)\n" + _CREDENTIALS_ENV + "                            (passed to the replay "
        "worker; made up when unset)",
        "0 done; 1 the replay worker failed (see its log); 2 the version named is the live one"),
    "deadletters": (
        "list dead letters, or re-submit fixed ones",
        "Print the dead letters (origin topic, partition, offset, item, error) as JSON lines, "
        "newest last; with --resubmit, send edited letters back to their raw topic.",
        _BROKER_ENV,
        "0 done; 1 failed (broker unreachable, a line of the file is not JSON)"),
}


def _add_command(commands: "argparse._SubParsersAction[argparse.ArgumentParser]",
                 name: str) -> argparse.ArgumentParser:
    help_, description, environment, exits = COMMANDS[name]
    return commands.add_parser(
        name, help=help_, description=description,
        epilog=f"environment:\n{environment.rstrip()}\n\nexit status:\n{exit_lines(exits)}",
        formatter_class=cli_ops.HelpFormatter)


def exit_lines(exits: str) -> str:
    """``"0 done; 1 failed"`` as one indented line per status, with 2 (usage) added."""
    lines = [f"  {item.strip()}" for item in exits.split(";")]
    if any(line.startswith("  2 ") for line in lines):
        return "\n".join(line + (", or a usage error" if line.startswith("  2 ") else "")
                         for line in lines)
    return "\n".join(lines + ["  2 usage error"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eventide", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version",
                        version=f"eventide {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     title="commands")
    handlers = {"up": cmd_up, "worker": cmd_worker, "api": cmd_api, "topics": cmd_topics,
                "digest": cmd_digest, "replay": cmd_replay, "deadletters": cmd_deadletters}
    subs = {}
    for name, handler in handlers.items():
        sub = subs[name] = _add_command(commands, name)
        sub.add_argument("--broker", metavar="kafka://HOST:PORT",
                         help="the Kafka cluster (overrides EVENTIDE_BROKER)")
        sub.set_defaults(handler=handler)
    for name in ("up", "worker", "api"):
        subs[name].add_argument("--port", type=int,
                                help="HTTP port (overrides EVENTIDE_HTTP_PORT)")
    for name in ("up", "worker", "replay"):
        subs[name].add_argument("--data-dir", help="state directory (overrides "
                                "EVENTIDE_DATA_DIR)")
    subs["up"].add_argument("--workers", type=int, default=1,
                            help="worker processes in the group, each on the next HTTP port and "
                            "with its own state (default 1)")
    for name, meaning in (("digest", "state version to digest (default: the live one, "
                                     "EVENTIDE_STATE_VERSION)"),
                          ("replay", "name of the new state version (default: the next free vN)")):
        subs[name].add_argument("--state-version", dest="state_version", metavar="VERSION",
                                help=meaning)
        # The option's earlier spelling, kept for scripts; `eventide --version` is the program's.
        subs[name].add_argument("--version", dest="state_version", help=argparse.SUPPRESS)
    subs["replay"].add_argument("--since", type=float, metavar="UNIX_TIME",
                                help="replay only input records from this time on "
                                "(default: every record)")
    subs["replay"].add_argument("--http-port", type=int, default=0,
                                help="HTTP port of the replay worker (default: any free one)")
    subs["deadletters"].add_argument("--limit", type=int, default=100,
                                     help="list at most this many, the newest (default 100)")
    subs["deadletters"].add_argument("--resubmit", metavar="FILE.jsonl",
                                     help="re-submit letters (as listed, values fixed)")
    cli_ops.register(commands)
    return parser


#: Commands that use a running instance: they find a local one (``eventide up`` in this
#: directory, or in EVENTIDE_DATA_DIR) when the environment does not say where it is.
LOCAL_CLIENT_COMMANDS = ("topics", "digest", "replay", "deadletters", "import", "render",
                         "export")


def use_local_instance(args: argparse.Namespace) -> None:
    """Fill the process environment with what it lacks of the local instance's settings
    (credentials, HTTP port, broker, topic layout: see :mod:`app.local_instance`)."""
    environ = dict(os.environ)
    if getattr(args, "data_dir", None):
        environ["EVENTIDE_DATA_DIR"] = str(args.data_dir)
    for name, value in local_instance.environment(environ).items():
        if not os.environ.get(name) and name != "EVENTIDE_DATA_DIR":
            os.environ[name] = value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("up", "worker", "api", "replay"):
        # State, the input log and anything else these write hold customer data and keys:
        # readable by this user only (directories 0700, files 0600).
        os.umask(0o077)
    quiet = args.command not in ("up", "worker", "api")
    if args.command in LOCAL_CLIENT_COMMANDS:
        use_local_instance(args)
    try:
        args.settings = settings = Settings.from_env()
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        print("eventide: nothing was started; fix the settings above (see the Configuration "
              "table in README.md)", file=sys.stderr)
        return 2
    logging_setup.configure(json=settings.log_json,
                            level="warning" if quiet else settings.log_level)
    if quiet and settings.log_level != "debug":
        # A one-shot command says what failed in one line (below); the client library's
        # connection errors and unclosed-consumer reports would repeat it as noise.
        for name in ("aiokafka", "asyncio"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        return int(args.handler(args))
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.status
    except BrokerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KafkaConnectionError:
        print(f"error: {unreachable_broker(settings)}", file=sys.stderr)
        return 1


def unreachable_broker(settings: Settings) -> str:
    """One line: which broker could not be reached and what to set."""
    if settings.embedded:
        return (f"cannot reach the embedded broker at {settings.bootstrap_servers}: start "
                "`eventide up` in this directory (or set EVENTIDE_DATA_DIR to its data dir), or "
                "set EVENTIDE_BROKER=kafka://HOST:PORT")
    return (f"cannot reach the broker at {settings.bootstrap_servers} (EVENTIDE_BROKER): is it "
            "running? set EVENTIDE_BROKER=kafka://HOST:PORT to use another")


if __name__ == "__main__":
    sys.exit(main())
