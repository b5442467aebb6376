"""Operator subcommands of ``eventide`` that talk to a running worker over HTTP.

    eventide import events FILE.csv [--rejects OUT.csv]   Customer.io CSV event import
    eventide import export FILE.jsonl                     re-create exported people
    eventide render --template FILE --customer ID (--event-id ID | --event-json JSON) [--strict]
    eventide export --customer ID [--format jsonl|csv] [--out FILE]
    eventide export --all --out DIR                       one part-<p>.jsonl per person partition

Every command takes ``--url`` (default ``http://$EVENTIDE_HTTP_HOST:$EVENTIDE_HTTP_PORT``) and
reads the app key from ``--app-key-file`` or ``$EVENTIDE_APP_KEY`` (never from the command line,
where ``ps`` shows it). Files are streamed both ways, never held whole in memory; progress goes to
stderr, results to stdout. Exit status: 0 done, 1 refused or failed, 2 usage, 130 interrupted.

Here: the commands' options, help and exit handling, and the app key; what each command does is
in :mod:`app.cli_client`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable

from app.cli_client import (CommandError, export_command, import_events, import_export,
                            render_template)
from app.local_instance import CREDENTIALS_FILE, data_dir_of


def _default_url() -> str:
    host = os.environ.get("EVENTIDE_HTTP_HOST") or "127.0.0.1"
    port = os.environ.get("EVENTIDE_HTTP_PORT") or "6066"
    return f"http://{host}:{port}"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Wrap the description, keep the epilog's lines (environment tables) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = text.split("\n\n")
        if paragraphs and "\n" not in paragraphs[0].strip():
            paragraphs[0] = textwrap.fill(paragraphs[0], width, initial_indent=indent,
                                          subsequent_indent=indent)
        return "\n\n".join(paragraphs)


def _client_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=None, help="eventide API (default "
                        "http://$EVENTIDE_HTTP_HOST:$EVENTIDE_HTTP_PORT)")
    parser.add_argument("--app-key-file", metavar="FILE", default=None,
                        help="read the bearer app key from this file (default: "
                        "$EVENTIDE_APP_KEY)")
    # Kept for scripts written before --app-key-file; hidden, as the key shows in `ps`.
    parser.add_argument("--app-key", default=None, help=argparse.SUPPRESS)


CLIENT_ENVIRONMENT = """\
environment:
  EVENTIDE_APP_KEY          the bearer app key, unless --app-key-file is given
  EVENTIDE_HTTP_HOST, EVENTIDE_HTTP_PORT   the worker to talk to, unless --url is given
                            (127.0.0.1, 6066)
  EVENTIDE_DATA_DIR         the data dir of a local 'eventide up' (.eventide): the app
                            key and port it keeps there are used when not set

exit status:
  0 done
  1 refused by the server, unreachable, or a file problem (one line on stderr)
  2 usage error, or no app key
  130 interrupted"""


def _command(parent: "argparse._SubParsersAction[argparse.ArgumentParser]", name: str,
             help_: str, description: str) -> argparse.ArgumentParser:
    return parent.add_parser(name, help=help_, description=description,
                             epilog=CLIENT_ENVIRONMENT, formatter_class=HelpFormatter)


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add operator subcommands to the ``eventide`` parser."""
    importer = _command(
        commands, "import", "import a CSV event file or an eventide export",
        "Send a file to a running worker, streamed with a progress bar: 'import events' for a "
        "Customer.io CSV event file, 'import export' to re-create people from a jsonl file "
        "written by 'eventide export'. Run 'eventide import KIND --help' for each.")
    kinds = importer.add_subparsers(dest="import_kind", required=True, metavar="KIND",
                                    title="kinds")
    events = _command(
        kinds, "events", "Customer.io CSV event import",
        "Import a Customer.io CSV event file (columns _cio_name, _cio_customer_id and optionally "
        "_cio_timestamp, _cio_id, then event data). The people must exist; one identifier kind "
        "(id or email) per file; re-importing a file with _cio_id is safe. Prints accepted and "
        "rejected counts, with reasons.")
    events.add_argument("file", help="CSV: _cio_name,_cio_customer_id[,_cio_timestamp,_cio_id,...]")
    events.add_argument("--rejects", help="write rejected rows here as CSV (row,reason)")
    _client_options(events)
    events.set_defaults(handler=_runner(import_events))
    export_file = _command(
        kinds, "export", "re-create people from an eventide jsonl export",
        "Load a jsonl file written by 'eventide export' (profiles and events) into this "
        "instance, e.g. to move people between deployments.")
    export_file.add_argument("file", help="jsonl written by 'eventide export'")
    _client_options(export_file)
    export_file.set_defaults(handler=_runner(import_export))

    render = _command(
        commands, "render", "render a liquid template for a person and event",
        "Render a liquid template on the worker with \"customer\" (the person's attributes) and "
        "\"event\" (a stored event, or data given as JSON) in scope, and print the result.")
    render.add_argument("--template", required=True, help="template file ('-' for stdin)")
    render.add_argument("--customer", required=True, help="customer id")
    event = render.add_mutually_exclusive_group(required=True)
    event.add_argument("--event-id", help="id of an event in the customer's history")
    event.add_argument("--event-json", help="the event's data as a JSON object")
    render.add_argument("--strict", action="store_true",
                        help="fail on undefined variables instead of printing nothing")
    _client_options(render)
    render.set_defaults(handler=_runner(render_template))

    export = _command(
        commands, "export", "export a person, or everyone, as jsonl/csv",
        "Export one person (--customer: profile and events as jsonl, or events as CSV) to a file "
        "or stdout, or everyone (--all: one part-<p>.jsonl per person partition into a "
        "directory). 'eventide import export' loads the files back.")
    who = export.add_mutually_exclusive_group(required=True)
    who.add_argument("--customer", help="customer id")
    who.add_argument("--all", action="store_true",
                     help="every person, one part-<p>.jsonl per partition into --out DIR")
    export.add_argument("--format", choices=("jsonl", "csv"), default="jsonl",
                        help="with --customer: jsonl (profile + events) or csv (events)")
    export.add_argument("--out", help="file (--customer; default stdout) or directory (--all)")
    _client_options(export)
    export.set_defaults(handler=_runner(export_command))


def _runner(command: Callable[[argparse.Namespace], Any]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        args.url = (args.url or _default_url()).rstrip("/")
        try:
            args.app_key = app_key_of(args)
        except CommandError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        try:
            return int(asyncio.run(command(args)) or 0)
        except CommandError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
    return run


def app_key_of(args: argparse.Namespace, environ: dict[str, str] | None = None) -> str:
    """The app key: ``--app-key-file``, else ``$EVENTIDE_APP_KEY`` (else the hidden, deprecated
    ``--app-key``, with a warning). Raises :class:`CommandError` when there is none."""
    environ = os.environ if environ is None else environ
    if args.app_key_file:
        try:
            key = Path(args.app_key_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"--app-key-file {args.app_key_file}: "
                               f"{getattr(exc, 'strerror', None) or exc}") from None
        if not key:
            raise CommandError(f"--app-key-file {args.app_key_file}: the file is empty")
        return key
    if args.app_key:
        print("warning: --app-key shows the key to every user of this machine (ps); set "
              "EVENTIDE_APP_KEY or use --app-key-file", file=sys.stderr)
        return str(args.app_key)
    key = environ.get("EVENTIDE_APP_KEY") or ""
    if not key:
        raise CommandError("set EVENTIDE_APP_KEY or pass --app-key-file FILE (no local "
                           "instance's key found: `eventide up` keeps it in "
                           f"{data_dir_of(environ) / CREDENTIALS_FILE})")
    return key
