"""``eventide``: the one entry point (``eventide --help`` lists the commands).

The parser and ``main`` live here; the service commands in :mod:`app.cli_up` (up),
:mod:`app.cli_worker` (worker, api) and :mod:`app.cli_state` (topics, digest, replay,
deadletters); the client commands that talk to a running worker over HTTP (import, render,
export) in :mod:`app.cli_ops`. Every command's description, environment variables and exit codes
are in :data:`COMMANDS` (and ``cli_ops``), which ``--help`` prints.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from aiokafka.errors import KafkaConnectionError

from app import cli_ops, local_instance, logging_setup
from app.broker import BrokerError
from app.cli_state import cmd_deadletters, cmd_digest, cmd_replay, cmd_topics
from app.cli_up import cmd_up
from app.cli_worker import cmd_api, cmd_worker
from app.settings import Settings, SettingsError, StartupError
from tables import torn_fetch


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
    subs["up"].add_argument("--ingest-port", type=int, default=0, metavar="PORT",
                            help="also run the track API in a process of its own (`eventide api`) "
                            "on PORT: senders of heavy load use it, so that request handling "
                            "runs beside the worker instead of on its event loop (default: off)")
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
    if settings.tansu:
        torn_fetch.install()  # every reader here refetches what the broker's tail race skipped
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
