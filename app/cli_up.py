"""``eventide up``: everything on one machine (embedded broker, input log, worker(s)), and the
banner it prints once the worker is ready."""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from app import local_instance
from app.broker import EmbeddedBroker, claim_data_dir, stop_orphan
from app.broker_load import watch_load
from app.cli_worker import check_producer, create_topics, migrate_state, run_worker, settings_from
from app.listen import hand_down, listener_for, take_port
from app.ops import replay
from app.ops.durable_offsets import DURABLE_OFFSETS
from app.ops.input_log import InputLog, migrate_archive, slots_of
from app.settings import Settings
from app.topics import build_topics


def _start_extra_workers(settings: Settings, listeners: list[socket.socket]
                         ) -> tuple[list[subprocess.Popen], list[str]]:
    """Workers 2..N of ``eventide up --workers N``: same broker and group, own port (one of
    ``listeners``, taken at ``up``'s start) and state. Returns the processes and one banner
    line for each."""
    processes, lines = [], []
    for index, listener in enumerate(listeners, start=1):
        port = int(listener.getsockname()[1])
        data_dir = settings.data_dir / f"worker-{index}"
        data_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, EVENTIDE_BROKER=settings.broker_url,
                   EVENTIDE_INPUT_LOG_DIR=str(settings.input_log_dir or ""),
                   EVENTIDE_BROKER_FLAVOR="tansu" if settings.tansu else "kafka",
                   EVENTIDE_HTTP_PORT=str(port), EVENTIDE_DATA_DIR=str(data_dir))
        log_path = settings.data_dir / f"worker-{index}.log"
        processes.append(hand_down(listener, "worker", env, log_path))
        lines.append(f"worker {index + 1}:           http://{settings.http_host}:{port} "
                     f"(log {log_path})")
    return processes, lines


def _start_ingest_tier(settings: Settings, listener: socket.socket
                       ) -> tuple[subprocess.Popen, str]:
    """``up --ingest-port``: the track API in a process of its own (``eventide api``), beside
    the worker, serving on ``listener``. Its ``200`` waits for the instance's input log like a
    worker's does (it is given ``EVENTIDE_INPUT_LOG_DIR``); the worker keeps serving
    everything, the track API included, on its own port. Returns the process and its banner
    line."""
    port = int(listener.getsockname()[1])
    env = dict(os.environ, EVENTIDE_BROKER=settings.broker_url,
               EVENTIDE_INPUT_LOG_DIR=str(settings.input_log_dir or ""),
               EVENTIDE_BROKER_FLAVOR="tansu" if settings.tansu else "kafka",
               EVENTIDE_HTTP_PORT=str(port))
    log_path = settings.data_dir / "ingest.log"
    process = hand_down(listener, "api", env, log_path)
    scheme = "https" if settings.tls_cert else "http"
    return process, (f"ingest tier:        {scheme}://{settings.http_host}:{port} (track API "
                     f"only, in its own process; log {log_path})")


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


#: How long the worker may take to stop on its own once its embedded broker is gone. faust's
#: graceful stop retries its commits against the missing broker for longer than that (over 20 s
#: measured); a hard exit loses nothing acknowledged (the input log is on disk, and RocksDB
#: recovers as after a SIGKILL).
BROKER_GONE_GRACE_S = 5.0


def _stop_for_the_broker(settings: Settings, returncode: int, stopped_for: list[int]) -> None:
    """The embedded broker exited under a running instance (killed, crashed). Its log was in
    memory, so the worker cannot go on against anything: stop it, saying so, and exit non-zero.
    Nothing acknowledged is lost: every accepted input is in the input log on disk, and the
    next ``eventide up`` loads it into a new broker."""
    stopped_for.append(returncode)
    print(f"error: the embedded broker exited ({returncode}); stopping. Run `eventide up` again: "
          f"it starts a new broker and reloads every accepted input from "
          f"{settings.input_log_dir}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(BROKER_GONE_GRACE_S)  # a daemon thread: only reached if the worker hangs
    print("error: the worker did not stop on its own; exiting", file=sys.stderr, flush=True)
    os._exit(1)


def _say_broker_saturated(share: float) -> None:
    """The embedded broker took most of a core for a minute (:mod:`app.broker_load`)."""
    print(f"warning: the embedded broker used {share:.0%} of a core over the last minute. "
          "Under steady traffic it does: every read lists each batch the partition ever "
          "received, so reads cost more the longer it runs, and the pipeline's latency grows "
          "with them. Restarting `eventide up` resets it (the input log is reloaded in large "
          "batches); sustained load belongs on Kafka (EVENTIDE_BROKER). See docs/architecture.md, "
          "\"The embedded broker\".", file=sys.stderr, flush=True)


def cmd_up(args: argparse.Namespace) -> int:
    # The main worker's port first (handed down by a parent, or taken now), so one in use is a
    # line before the broker or any worker starts.
    listener, supplied = listener_for(settings_from(args))
    worker_ports = range(supplied.http_port, supplied.http_port + args.workers)
    if args.ingest_port and args.ingest_port in worker_ports:
        print(f"error: --ingest-port {args.ingest_port} is a worker's port (the workers use "
              f"{worker_ports.start}-{worker_ports.stop - 1}); nothing was started",
              file=sys.stderr)
        return 2
    # Every other port too; the main worker keeps its socket, the others' are handed to their
    # processes.
    extra_listeners = [take_port(supplied.http_host, port,
                                 setting=f"EVENTIDE_HTTP_PORT (or --port): --workers "
                                 f"{args.workers} uses it and the {args.workers - 1} after it")
                       for port in worker_ports[1:]]
    tier_listener = (take_port(supplied.http_host, args.ingest_port, setting="--ingest-port")
                     if args.ingest_port else None)
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
        create_topics(settings)
        check_producer(settings)
        migrate_state(settings)
        if broker is not None:
            input_log = _open_input_log(settings)
        # The worker reads credentials from the environment like any other setting.
        os.environ.update(EVENTIDE_SITE_ID=settings.site_id, EVENTIDE_API_KEY=settings.api_key,
                          EVENTIDE_APP_KEY=settings.app_key)
        extra, worker_lines = _start_extra_workers(settings, extra_listeners)
        if tier_listener is not None:
            tier, tier_line = _start_ingest_tier(settings, tier_listener)
            # Stopped with the extra workers, after the worker: a request still waiting for
            # the input log then answers 503, never a 200. (Ctrl-C reaches every process of the
            # group at once, so the tier drains while the input log still runs.)
            extra.insert(0, tier)
            worker_lines.append(tier_line)
        where = f" (embedded; inputs flushed to {settings.input_log_dir})" if broker else ""
        local_instance.write_instance(settings)
        announce_when_ready(settings, banner(
            settings, supplied, broker_note=where, workers=worker_lines,
            kept_in=settings.data_dir / local_instance.CREDENTIALS_FILE))
        stopped_for: list[int] = []
        if broker is not None:
            broker.watch(lambda returncode: _stop_for_the_broker(settings, returncode,
                                                                 stopped_for))
            watch_load(broker.pid, _say_broker_saturated)
        try:
            code = run_worker(settings, listener, input_log)
            return 1 if stopped_for else code
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
