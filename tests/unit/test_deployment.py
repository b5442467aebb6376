"""The deployment files, checked without Docker (none on the development machines or in CI):
docker-compose.yml's structure, the replicated topic configs it relies on, the producer it gets."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.producer import Producer
from app.settings import Settings
from app.topics import TopicSpec, build_topics
from app.wiring import faust_options

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def kafka_nodes(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: service for name, service in compose["services"].items()
            if str(service.get("image", "")).startswith("apache/kafka:")}


def nodes_with_role(compose: dict[str, Any], role: str) -> dict[str, dict[str, Any]]:
    return {name: service for name, service in kafka_nodes(compose).items()
            if env_of(service)["KAFKA_PROCESS_ROLES"] == role}


def workers(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: service for name, service in compose["services"].items()
            if name.startswith("worker-")}


def test_three_dedicated_controllers_and_three_dedicated_brokers(
        compose: dict[str, Any]) -> None:
    nodes = kafka_nodes(compose)
    controllers, brokers = nodes_with_role(compose, "controller"), nodes_with_role(compose, "broker")
    assert len(controllers) == 3 and len(brokers) == 3 and len(nodes) == 6
    ids, voters, clusters = set(), set(), set()
    for name, service in nodes.items():
        assert service["image"] == "apache/kafka:3.9.0"
        env = env_of(service)
        ids.add(env["KAFKA_NODE_ID"])
        voters.add(env["KAFKA_CONTROLLER_QUORUM_VOTERS"])
        clusters.add(env["CLUSTER_ID"])
        assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] == "CONTROLLER"
        # each node its own data volume
        [volume] = service["volumes"]
        assert volume.endswith(":/var/lib/kafka/data")
    for name, service in brokers.items():
        env = env_of(service)
        hostname = service.get("hostname", name)
        assert env["KAFKA_LISTENERS"] == "PLAINTEXT://:9092"
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{hostname}:9092"
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
        assert set(service["depends_on"]) == set(controllers)
    for name, service in controllers.items():
        env = env_of(service)
        assert env["KAFKA_LISTENERS"] == "CONTROLLER://:9093"
        assert "KAFKA_ADVERTISED_LISTENERS" not in env
    assert len(ids) == 6, "node ids must be distinct"
    assert len(voters) == 1 and len(clusters) == 1, "one quorum, one cluster id for all"
    [quorum] = voters
    parsed = dict(voter.split("@") for voter in quorum.split(","))
    assert set(parsed) == {env_of(c)["KAFKA_NODE_ID"] for c in controllers.values()}
    hosts = {service.get("hostname", name) for name, service in controllers.items()}
    assert {address.rsplit(":", 1)[0] for address in parsed.values()} == hosts
    assert len({service["volumes"][0].split(":")[0] for service in nodes.values()}) == 6
    # the bootstrap list names the brokers, never a controller
    bootstrap = env_of(compose["services"]["topics"])["EVENTIDE_BROKER"]
    assert {hp.split(":")[0] for hp in bootstrap.removeprefix("kafka://").split(",")} == {
        service.get("hostname", name) for name, service in brokers.items()}


def _listen_check(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    return test[1]


def test_kafka_healthchecks_start_no_jvm_and_see_a_listener(compose: dict[str, Any]) -> None:
    """The check reads the kernel's socket table: run it here against a socket we listen on
    (and one we don't), with the port swapped for ours."""
    for name, service in kafka_nodes(compose).items():
        command = _listen_check(service)
        assert "kafka-" not in command.split()[0] and ".sh" not in command, name
        assert "java" not in command, name
        role = env_of(service)["KAFKA_PROCESS_ROLES"]
        port = 9092 if role == "broker" else 9093
        assert f":{port:04X} " in command, (name, command)
        interval = service["healthcheck"]["interval"]
        assert int(interval.rstrip("s")) >= 10, "a long interval: nothing runs every 5 s"
    command = _listen_check(compose["services"]["kafka-1"])
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        ours = command.replace(":2384 ", f":{port:04X} ")
        assert subprocess.run(["sh", "-c", ours]).returncode == 0
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as unused:
            unused.bind(("127.0.0.1", 0))  # bound, not listening
            other = unused.getsockname()[1]
            assert subprocess.run(["sh", "-c", command.replace(":2384 ", f":{other:04X} ")]
                                  ).returncode != 0


def test_topics_service_creates_replicated_topics(compose: dict[str, Any]) -> None:
    topics = compose["services"]["topics"]
    # `eventide topics`, retried: a broker that listens may not serve yet
    assert "eventide topics && exit 0" in " ".join(topics["entrypoint"])
    env = env_of(topics)
    assert env["EVENTIDE_REPLICATION_FACTOR"] == "3"
    assert env["EVENTIDE_MIN_INSYNC_REPLICAS"] == "2"
    assert set(topics["depends_on"]) == set(nodes_with_role(compose, "broker"))
    assert all(dep["condition"] == "service_healthy" for dep in topics["depends_on"].values())
    settings = Settings.from_env(env)
    assert settings.replication_factor == 3 and settings.min_insync_replicas == 2
    for spec in build_topics(settings).all():
        config = spec.config(settings.replication_factor, settings.min_insync_replicas)
        assert config["min.insync.replicas"] == "2", spec.name


def test_ingest_tier_and_three_explicit_workers(compose: dict[str, Any]) -> None:
    services = compose["services"]
    ingest, scaled = services["ingest"], workers(compose)
    assert ingest["command"] == ["api"]
    # explicit services, which Compose v1 and v2 both start (v1 ignores deploy.replicas)
    assert sorted(scaled) == ["worker-1", "worker-2", "worker-3"]
    hosts, volumes, ports = set(), set(), set()
    for name, worker in scaled.items():
        assert worker["command"] == ["worker"] and "deploy" not in worker, name
        env = env_of(worker)
        hostname = worker["hostname"]
        hosts.add(hostname)
        # each worker advertises its own hostname for forwarded reads
        assert env["EVENTIDE_ADVERTISED_URL"] == f"http://{hostname}:6066"
        [volume] = worker["volumes"]
        assert volume.endswith(":" + env["EVENTIDE_DATA_DIR"])
        volumes.add(volume.split(":")[0])
        [port] = worker["ports"]
        ports.add(port)
        assert worker["stop_grace_period"] == "60s"
    assert len(hosts) == len(volumes) == len(ports) == 3, "no shared RocksDB, no shared port"
    assert set(volumes) <= set(compose["volumes"])
    for service in (ingest, *scaled.values()):
        assert service["depends_on"]["topics"]["condition"] == "service_completed_successfully"
        env = env_of(service)
        settings = Settings.from_env({k: v for k, v in env.items() if "${" not in v})
        assert not settings.embedded and not settings.tansu  # real Kafka: acks=all, idempotent
        assert settings.bootstrap_servers.count(",") == 2   # all three brokers to bootstrap from
        assert env["EVENTIDE_LOG_FORMAT"] == "json"
        assert "/readyz" in " ".join(service["healthcheck"]["test"])
        for key in ("EVENTIDE_SITE_ID", "EVENTIDE_API_KEY", "EVENTIDE_APP_KEY"):
            assert env[key].startswith("${" + key + ":?"), "credentials come from the caller"


def test_faust_leader_topic_is_disabled_and_unused() -> None:
    """faust's `<app id>-__assignor-__leader` would never exist (topics are not declared and
    auto-create is off): eventide turns it off, which is right only while nothing uses it."""
    assert faust_options(Settings())["topic_disable_leader"] is True
    for path in [*REPO.glob("app/**/*.py"), *REPO.glob("agents/**/*.py"),
                 *REPO.glob("tables/**/*.py")]:
        code = [line for line in path.read_text().splitlines()
                if not line.lstrip().startswith("#")]
        assert not [line for line in code if "is_leader(" in line or "on_leader=" in line], path


def test_no_port_is_published_beyond_localhost(compose: dict[str, Any]) -> None:
    published = []
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            if isinstance(port, dict):
                assert port.get("host_ip") == "127.0.0.1", (name, port)
                published.append((name, str(port.get("published"))))
                continue
            parts = str(port).split(":")
            assert len(parts) == 3 and parts[0] == "127.0.0.1", (name, port)
            published.append((name, parts[1]))
    assert ("ingest", "6066") in published
    assert {name for name, _ in published} <= {"ingest", *workers(compose),
                                               "prometheus", "grafana"}
    assert not any(service.get("ports") for service in kafka_nodes(compose).values())


def test_compose_uses_only_defined_anchors_and_valid_durations(compose: dict[str, Any]) -> None:
    text = (REPO / "docker-compose.yml").read_text()
    for service in compose["services"].values():
        for key in ("stop_grace_period",):
            if key in service:
                assert re.fullmatch(r"[0-9]+(ms|s|m|h)", service[key])
    assert "version:" not in text  # obsolete in the compose spec


def test_replicated_topics_get_min_insync_replicas() -> None:
    spec = TopicSpec("t", 8, "key")
    assert "min.insync.replicas" not in spec.config()
    assert "min.insync.replicas" not in spec.config(1, 2)
    assert spec.config(3)["min.insync.replicas"] == "2"
    assert spec.config(3, 3)["min.insync.replicas"] == "3"
    assert spec.config(2)["min.insync.replicas"] == "1"
    compacted = TopicSpec("c", 8, "key", compacted=True).config(3, 2)
    assert compacted == {"cleanup.policy": "compact", "retention.ms": "-1",
                         "min.insync.replicas": "2"}
    with pytest.raises(ValueError):
        spec.config(3, 4)


def test_kafka_flavor_producer_is_idempotent_with_acks_all() -> None:
    kafka = Producer(Settings(broker="kafka://k1:9092,k2:9092"))._options
    assert kafka["acks"] == "all" and kafka["enable_idempotence"] is True
    tansu = Producer(Settings())._options
    assert tansu["acks"] == "all" and "enable_idempotence" not in tansu


def test_advertised_url_defaults_to_http_url() -> None:
    settings = Settings.from_env({"EVENTIDE_HTTP_PORT": "7000"})
    assert settings.advertised_url == settings.http_url == "http://127.0.0.1:7000"
    other = Settings.from_env({"EVENTIDE_ADVERTISED_URL": "http://worker-3:6066"})
    assert other.advertised_url == "http://worker-3:6066"


def test_log_format_setting() -> None:
    assert Settings.from_env({"EVENTIDE_LOG_FORMAT": "json"}).log_json
    assert not Settings.from_env({}).log_json


async def test_ensure_topics_creates_replicated_topics_with_min_isr(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """What `eventide topics` sends with EVENTIDE_REPLICATION_FACTOR=3 (no broker needed)."""
    import app.broker as broker

    created: list = []

    class FakeAdmin:
        def __init__(self, **kwargs: object) -> None:
            pass

        async def start(self) -> None:
            pass

        async def close(self) -> None:
            pass

        async def list_topics(self) -> list[str]:
            return []

        async def create_topics(self, topics: list) -> None:
            created.extend(topics)

        async def describe_topics(self, names: list[str]) -> list[dict]:
            return [{"topic": t.name, "partitions": [{}] * t.num_partitions} for t in created]

    monkeypatch.setattr(broker, "AIOKafkaAdminClient", FakeAdmin)
    settings = Settings(broker="kafka://k:9092", replication_factor=3, min_insync_replicas=2)
    specs = build_topics(settings).all()
    await broker.ensure_topics(settings.bootstrap_servers, specs, settings.replication_factor,
                               min_insync_replicas=settings.min_insync_replicas or None)
    assert len(created) == len(specs)
    for topic in created:
        assert topic.replication_factor == 3
        assert topic.topic_configs["min.insync.replicas"] == "2"


def _compose_binary() -> list[str] | None:
    """`docker-compose` (v1, `pip install docker-compose`) or `docker compose` (v2), if here."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"],
                                                 capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return None


@pytest.mark.skipif(_compose_binary() is None,
                    reason="no docker-compose binary (pip install docker-compose into a venv)")
def test_docker_compose_config_accepts_the_file() -> None:
    binary = _compose_binary()
    assert binary is not None
    env = {**os.environ, "EVENTIDE_SITE_ID": "s", "EVENTIDE_API_KEY": "k",
           "EVENTIDE_APP_KEY": "a"}
    for profile in ([], ["--profile", "observability"]):
        result = subprocess.run([*binary, "-f", str(REPO / "docker-compose.yml"), *profile,
                                 "config", "--services"],
                                capture_output=True, text=True, env=env, cwd=REPO)
        assert result.returncode == 0, result.stderr
        services = set(result.stdout.split())
        assert {"kafka-1", "controller-3", "topics", "ingest", "worker-3"} <= services
    # without the credentials it refuses, naming the variable
    bare = {k: v for k, v in env.items() if not k.startswith("EVENTIDE_")}
    result = subprocess.run([*binary, "-f", str(REPO / "docker-compose.yml"), "config", "-q"],
                            capture_output=True, text=True, env=bare, cwd=REPO)
    assert result.returncode != 0 and "EVENTIDE_SITE_ID" in result.stderr


def test_an_existing_topics_cleanup_policy_that_differs_is_named_with_its_fix() -> None:
    import app.broker as broker
    specs = [TopicSpec("defs", 1, "segment id"), TopicSpec("members", 4, "k", compacted=True),
             TopicSpec("raw", 4, "k"), TopicSpec("unknown", 1, "k")]
    lines = broker.policy_mismatches(specs, {"defs": "compact", "members": "delete",
                                             "raw": "delete"})
    assert [line.split(":")[0] for line in lines] == [
        "topic defs has cleanup.policy=compact, not delete",
        "topic members has cleanup.policy=delete, not compact"]
    assert lines[0].endswith("--entity-name defs --add-config cleanup.policy=delete,"
                             "retention.ms=-1")
    assert broker.policy_mismatches(specs, {"members": "compact,delete"}) == []
