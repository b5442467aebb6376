"""What the client commands do against a running worker's HTTP API: ``eventide import``,
``render`` and ``export`` (their options and the shared command-line handling are in
:mod:`app.cli_ops`). Files are streamed both ways, never held whole in memory."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import quote

import orjson

UPLOAD_CHUNK = 256 * 1024


class CommandError(Exception):
    """A failure to report on stderr (exit status 1)."""


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
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

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
    from app.imports.csv_events import (
        CsvFileError,
        RowResult,
        open_csv,
        scan_identifier_kinds,
        write_rejects,
    )

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
