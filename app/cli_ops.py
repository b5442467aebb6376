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
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable
from urllib.parse import quote

import orjson

from app.local_instance import CREDENTIALS_FILE, data_dir_of

UPLOAD_CHUNK = 256 * 1024


class CommandError(Exception):
    """A failure to report on stderr (exit status 1)."""


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


# --- HTTP helpers --------------------------------------------------------------------------------


def _session(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    import aiohttp

    # Uploads and server-side imports can take long; only connecting is bounded.
    return aiohttp.ClientSession(
        headers={"Authorization": f"Bearer {args.app_key}"},
        timeout=aiohttp.ClientTimeout(total=None, connect=30, sock_connect=30))


async def _error_of(response: Any) -> CommandError:
    text = await response.text()
    try:
        errors = orjson.loads(text)["meta"]["errors"]
        message = "; ".join(str(e) for e in errors)
    except (orjson.JSONDecodeError, KeyError, TypeError):
        message = text.strip()[:500]
    return CommandError(f"HTTP {response.status}: {message}")


def _unreachable(args: argparse.Namespace, exc: Exception) -> CommandError:
    return CommandError(f"cannot reach {args.url}: {exc} (is `eventide up` running? for "
                        "another instance set EVENTIDE_HTTP_PORT or pass --url)")


def _progress(*columns: Any):  # type: ignore[no-untyped-def]
    from rich.console import Console
    from rich.progress import (BarColumn, Progress, SpinnerColumn, TextColumn,
                               TimeElapsedColumn)

    return Progress(SpinnerColumn(), TextColumn("[progress.description]{task.description}"),
                    BarColumn(), *columns, TimeElapsedColumn(),
                    console=Console(stderr=True), transient=False)


async def _upload(args: argparse.Namespace, path: Path, endpoint: str, content_type: str,
                  unit: str) -> dict[str, Any]:
    """Stream ``path`` to ``endpoint`` with a progress bar; return the JSON answer."""
    import aiohttp
    from rich.progress import DownloadColumn, TextColumn

    size = path.stat().st_size
    started = time.monotonic()
    counted = {"lines": 0}

    progress = _progress(DownloadColumn(), TextColumn("{task.fields[lines]}"))
    with progress:
        task = progress.add_task(f"uploading {path.name}", total=size or 1, lines="")

        async def chunks() -> AsyncIterator[bytes]:
            with open(path, "rb") as source:
                while True:
                    chunk = await asyncio.to_thread(source.read, UPLOAD_CHUNK)
                    if not chunk:
                        break
                    counted["lines"] += chunk.count(b"\n")
                    elapsed = max(time.monotonic() - started, 1e-6)
                    progress.update(task, advance=len(chunk), lines=(
                        f"~{counted['lines']:,} {unit} ({counted['lines'] / elapsed:,.0f} "
                        f"{unit}/s)"))
                    yield chunk

        try:
            async with _session(args) as session:
                async with session.post(args.url + endpoint, data=chunks(),
                                        headers={"Content-Type": content_type}) as response:
                    progress.update(task, description=f"imported {path.name}")
                    if response.status != 200:
                        raise await _error_of(response)
                    return await response.json()
        except aiohttp.ClientError as exc:
            raise _unreachable(args, exc) from None


# --- import events -------------------------------------------------------------------------------


async def import_events(args: argparse.Namespace) -> int:
    from app.imports.csv_events import (CsvFileError, RowResult, open_csv,
                                        scan_identifier_kinds, write_rejects)

    path = Path(args.file)
    if not path.is_file():
        raise CommandError(f"{path}: no such file")

    def scan() -> str:
        with open_csv(path) as lines:
            return scan_identifier_kinds(lines)

    try:
        kind = await asyncio.to_thread(scan)
    except CsvFileError as exc:
        raise CommandError(f"{path}: {exc}; nothing was sent") from None
    except UnicodeDecodeError as exc:
        raise CommandError(f"{path}: not valid UTF-8 ({exc.reason}); nothing was sent") from None
    print(f"{path.name}: customers identified by {'email' if kind == 'email' else 'id'}",
          file=sys.stderr)
    summary = await _upload(args, path, "/api/v1/imports/events", "text/csv", "rows")
    by_reason = summary.get("rejected_by_reason") or {}
    reasons = ", ".join(f"{code}: {n}" for code, n in sorted(by_reason.items()))
    print(f"accepted: {summary['accepted']}")
    print(f"rejected: {summary['rejected']}" + (f" ({reasons})" if reasons else ""))
    rejects = summary.get("rejects") or []
    for reject in rejects[:10]:
        print(f"  row {reject['row']}: {reject['reason']}")
    if len(rejects) > 10:
        print(f"  ... {len(rejects) - 10} more")
    if summary["rejected"] > len(rejects):
        print(f"note: only the first {len(rejects)} rejected rows are listed")
    if args.rejects:
        written = write_rejects(args.rejects, (RowResult(int(r["row"]), None, str(r["reason"]))
                                               for r in rejects))
        print(f"rejects written to {args.rejects} ({written} rows)")
    return 0


async def import_export(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise CommandError(f"{path}: no such file")
    summary = await _upload(args, path, "/api/v1/imports/export", "application/x-ndjson",
                            "lines")
    print(f"people: {summary['people']} (identifies sent: {summary['identifies']})")
    print(f"events: {summary['events']}")
    skipped = summary.get("skipped") or {}
    if any(skipped.values()):
        print("skipped: " + ", ".join(f"{k}: {v}" for k, v in sorted(skipped.items()) if v))
    return 0


# --- render --------------------------------------------------------------------------------------


async def render_template(args: argparse.Namespace) -> int:
    import aiohttp

    if args.template == "-":
        template = sys.stdin.read()
    else:
        try:
            template = Path(args.template).read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"{args.template}: {exc.strerror}") from None
    body: dict[str, Any] = {"template": template, "customer_id": args.customer,
                            "strict": bool(args.strict)}
    if args.event_id:
        body["event_id"] = args.event_id
    else:
        try:
            body["event"] = orjson.loads(args.event_json)
        except orjson.JSONDecodeError as exc:
            raise CommandError(f"--event-json: not JSON ({exc.msg})") from None
        if not isinstance(body["event"], dict):
            raise CommandError("--event-json: must be a JSON object (the event's data)")
    try:
        async with _session(args) as session:
            async with session.post(args.url + "/api/v1/render", json=body) as response:
                if response.status != 200:
                    raise await _error_of(response)
                output = (await response.json())["output"]
    except aiohttp.ClientError as exc:
        raise _unreachable(args, exc) from None
    sys.stdout.write(output)
    if output and not output.endswith("\n") and sys.stdout.isatty():
        sys.stdout.write("\n")
    return 0


# --- export --------------------------------------------------------------------------------------


async def export_command(args: argparse.Namespace) -> int:
    if args.all:
        if not args.out:
            raise CommandError("--all needs --out DIR")
        return await _export_all(args, Path(args.out))
    return await _export_customer(args)


async def _export_customer(args: argparse.Namespace) -> int:
    import aiohttp

    url = f"{args.url}/api/v1/customers/{quote(args.customer, safe='')}/export"
    out_path = Path(args.out) if args.out else None
    partial = out_path.with_name(out_path.name + ".partial") if out_path else None
    try:
        async with _session(args) as session:
            async with session.get(url, params={"format": args.format}) as response:
                if response.status != 200:
                    raise await _error_of(response)
                sink = open(partial, "wb") if partial else sys.stdout.buffer
                try:
                    async for chunk in response.content.iter_chunked(UPLOAD_CHUNK):
                        sink.write(chunk)
                finally:
                    if partial:
                        sink.close()
                    else:
                        sink.flush()
    except aiohttp.ClientError as exc:
        if partial:
            partial.unlink(missing_ok=True)
        raise _unreachable(args, exc) from None
    if partial and out_path:
        partial.replace(out_path)
        print(f"wrote {out_path}", file=sys.stderr)
    return 0


async def _export_all(args: argparse.Namespace, directory: Path) -> int:
    import aiohttp
    from rich.progress import MofNCompleteColumn, TextColumn

    directory.mkdir(parents=True, exist_ok=True)
    people = 0
    try:
        async with _session(args) as session:
            async with session.get(args.url + "/api/v1/export/partitions") as response:
                if response.status != 200:
                    raise await _error_of(response)
                count = int((await response.json())["partitions"])
            progress = _progress(MofNCompleteColumn(), TextColumn("{task.fields[people]}"))
            with progress:
                task = progress.add_task("exporting partitions", total=count, people="0 people")
                for partition in range(count):
                    target = directory / f"part-{partition}.jsonl"
                    partial = target.with_name(target.name + ".partial")
                    url = f"{args.url}/api/v1/export/partitions/{partition}"
                    try:
                        async with session.get(url) as response:
                            if response.status != 200:
                                raise await _error_of(response)
                            with open(partial, "wb") as sink:
                                async for line in _lines(response.content):
                                    sink.write(line)
                                    if line.startswith(b'{"kind":"profile"'):
                                        people += 1
                                        if people % 100 == 0:
                                            progress.update(task, people=f"{people:,} people")
                    except BaseException:
                        partial.unlink(missing_ok=True)
                        raise
                    partial.replace(target)
                    progress.update(task, advance=1, people=f"{people:,} people")
    except aiohttp.ClientError as exc:
        raise _unreachable(args, exc) from None
    print(f"exported {people} people in {count} partitions to {directory}")
    return 0


async def _lines(content: Any) -> AsyncIterator[bytes]:
    """Lines of a streamed body, however long (``readline`` refuses lines past its limit)."""
    pending = b""
    async for chunk in content.iter_chunked(UPLOAD_CHUNK):
        pending += chunk
        if b"\n" not in chunk:
            continue
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line + b"\n"
    if pending:
        yield pending
