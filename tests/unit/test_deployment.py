"""The deployment files, checked without Docker (none on the development machines or in CI):
docker-compose.yml's structure, the replicated topic configs it relies on, the producer it gets."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.producer import Producer
from app.settings import Settings
from app.topics import TopicSpec, build_topics

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


def test_three_combined_kraft_nodes_with_a_three_voter_quorum(compose: dict[str, Any]) -> None:
    nodes = kafka_nodes(compose)
    assert len(nodes) == 3
    ids, voters, clusters = set(), set(), set()
    for name, service in nodes.items():
        assert service["image"] == "apache/kafka:3.9.0"
        env = env_of(service)
        ids.add(env["KAFKA_NODE_ID"])
        assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
        voters.add(env["KAFKA_CONTROLLER_QUORUM_VOTERS"])
        clusters.add(env["CLUSTER_ID"])
        hostname = service.get("hostname", name)
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{hostname}:9092"
        assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
        # each node its own data volume
        [volume] = service["volumes"]
        assert volume.endswith(":/var/lib/kafka/data")
    assert len(ids) == 3, "node ids must be distinct"
    assert len(voters) == 1 and len(clusters) == 1, "one quorum, one cluster id for all"
    [quorum] = voters
    parsed = dict(voter.split("@") for voter in quorum.split(","))
    assert set(parsed) == ids
    hosts = {service.get("hostname", name) for name, service in nodes.items()}
    assert {address.rsplit(":", 1)[0] for address in parsed.values()} == hosts
    assert len({service["volumes"][0].split(":")[0] for service in nodes.values()}) == 3


def test_topics_service_creates_replicated_topics(compose: dict[str, Any]) -> None:
    topics = compose["services"]["topics"]
    assert topics["command"] == ["topics"]
    env = env_of(topics)
    assert env["EVENTIDE_REPLICATION_FACTOR"] == "3"
    assert env["EVENTIDE_MIN_INSYNC_REPLICAS"] == "2"
    assert set(topics["depends_on"]) == set(kafka_nodes(compose))
    settings = Settings.from_env(env)
    assert settings.replication_factor == 3 and settings.min_insync_replicas == 2
    for spec in build_topics(settings).all():
        config = spec.config(settings.replication_factor, settings.min_insync_replicas)
        assert config["min.insync.replicas"] == "2", spec.name


def test_ingest_tier_and_scalable_workers(compose: dict[str, Any]) -> None:
    services = compose["services"]
    ingest, worker = services["ingest"], services["worker"]
    assert ingest["command"] == ["api"]
    assert "eventide worker" in " ".join(worker.get("entrypoint") or worker.get("command"))
    assert worker["deploy"]["replicas"] >= 2
    for service in (ingest, worker):
        assert service["depends_on"]["topics"]["condition"] == "service_completed_successfully"
        env = env_of(service)
        settings = Settings.from_env({k: v for k, v in env.items() if "${" not in v})
        assert not settings.embedded and not settings.tansu  # real Kafka: acks=all, idempotent
        assert settings.bootstrap_servers.count(",") == 2   # all three brokers to bootstrap from
        assert env["EVENTIDE_LOG_FORMAT"] == "json"
        assert "/readyz" in " ".join(service["healthcheck"]["test"])
        for key in ("EVENTIDE_SITE_ID", "EVENTIDE_API_KEY", "EVENTIDE_APP_KEY"):
            assert env[key].startswith("${" + key + ":?"), "credentials come from the caller"
    # Each worker advertises its own container hostname for forwarded reads.
    assert "EVENTIDE_ADVERTISED_URL=http://$$(hostname):6066" in " ".join(worker["entrypoint"])
    # Scaled replicas must not share one RocksDB directory.
    assert not any(":/var/lib/eventide" in str(v) for v in worker.get("volumes", []))


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
    assert {name for name, _ in published} <= {"ingest", "worker"}
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
