"""docker-compose.yml's observability profile, checked without Docker: Prometheus's config
(with `promtool check config` when promtool is installed — Debian's `prometheus` package — and
its structure always), Grafana's provisioning, and every metric the dashboard queries against what
a worker and the ingest tier really export (scraped from their /metrics in-process)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from app.api.server import build_web_app
from app.api_tier import TierRuntime, build_tier_app
from app.clock import ManualClock
from app.ingest.batcher import IngestBatcher
from app.metrics import LatencyHistogram
from app.settings import Settings
from app.topics import build_topics
from tests.support.prometheus import parse

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
PROMETHEUS_YML = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "eventide.json"
SETTINGS = Settings(site_id="site-x", api_key="track-key", app_key="app-key", partitions=4)
APP = {"Authorization": "Bearer app-key"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_profile_services_and_mounted_files(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["observability"], name
        for volume in services[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), volume
    # nothing else is in a profile: `docker compose up` starts the whole pipeline
    assert {n for n, s in services.items() if s.get("profiles")} == {"prometheus", "grafana"}
    entry = " ".join(services["prometheus"]["entrypoint"])
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    for job in config["scrape_configs"]:
        assert job["authorization"]["credentials_file"] in entry, "the key file is written"
    assert "$$EVENTIDE_APP_KEY" in entry


def test_prometheus_scrapes_every_worker_and_the_ingest_tier(compose: dict[str, Any]) -> None:
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    targets = {target for job in config["scrape_configs"]
               for static in job["static_configs"] for target in static["targets"]}
    services = compose["services"]
    expected = {f"{services[name].get('hostname', name)}:6066"
                for name in services if name.startswith("worker-") or name == "ingest"}
    assert targets == expected
    for job in config["scrape_configs"]:
        assert job["metrics_path"] == "/metrics"
        assert job["authorization"]["type"] == "Bearer"


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool not installed (apt-get install prometheus)")
def test_promtool_accepts_the_config() -> None:
    # --syntax-only: the bearer-key file only exists inside the container
    result = subprocess.run(["promtool", "check", "config", "--syntax-only", str(PROMETHEUS_YML)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisioning_points_at_the_dashboard(compose: dict[str, Any]) -> None:
    provisioning = DEPLOY / "grafana" / "provisioning"
    [datasource] = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text()
                                  )["datasources"]
    [provider] = yaml.safe_load((provisioning / "dashboards" / "eventide.yml").read_text()
                                )["providers"]
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"])
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    assert datasource["url"] == "http://prometheus:9090"
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]


async def _scrape(app: Any) -> str:
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/metrics", headers=APP)
        assert response.status == 200
        return await response.text()


def _counter_names_in_code() -> set[str]:
    """Every counter the code increments (``counters["name"]`` / ``counters[f"name:..."]``), or
    that a pure decision returns for its agent to count (``Count("name")``, ``counted("name")``)."""
    names = set()
    for path in [*REPO.glob("app/**/*.py"), *REPO.glob("agents/**/*.py")]:
        names |= set(re.findall(r'(?:counters\[|Count\(|counted\()f?"([a-z_]+)', path.read_text()))
    return names


async def exported_names() -> set[str]:
    """Sample names a worker and the ingest tier export once every counter has counted."""
    counters = Counter({f"{name}:x": 1 for name in _counter_names_in_code()})
    rt = MagicMock()
    rt.settings = SETTINGS
    rt.topics = build_topics(SETTINGS)
    rt.counters, rt.latency = counters, LatencyHistogram()
    rt.state.approximate_size_bytes.return_value = 0
    rt.state.fences, rt.state.void_records, rt.loop_lag_s, rt.loop_lag_max_s = 0, 0, 0.0, 0.0
    rt.state.recovered_records, rt.state.standby_records = 0, 0

    async def lag_probe() -> list[tuple[str, int, int]]:
        return [(rt.topics.person_events.name, 0, 0)]

    worker = await _scrape(build_web_app(rt, lag_probe=lag_probe))
    tier_rt = TierRuntime(settings=SETTINGS, topics=build_topics(SETTINGS), clock=ManualClock(),
                          producer=MagicMock(), batcher=MagicMock(spec=IngestBatcher),
                          counters=Counter({"accepted:event": 1, "http_responses:200": 1}))
    tier = await _scrape(build_tier_app(tier_rt))
    return {sample.name for text in (worker, tier)
            for family in parse(text).values() for sample in family.samples}


def dashboard_metric_names() -> dict[str, set[str]]:
    """Metric names each panel's expressions query (label names and functions left out)."""
    found: dict[str, set[str]] = {}
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel["targets"]:
            expr = re.sub(r"\{[^}]*\}", "", target["expr"])          # label matchers
            expr = re.sub(r"\b(by|without)\s*\([^)]*\)", "", expr)   # grouping labels
            expr = re.sub(r"\[[^\]]*\]", "", expr)                   # range selectors
            names = {match.group() for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr)
                     if not expr[match.end():].lstrip().startswith("(")}  # not a function
            found.setdefault(panel["title"], set()).update(names)
    return found


async def test_every_dashboard_metric_is_exported() -> None:
    exported = await exported_names()
    assert "eventide_processing_latency_seconds_bucket" in exported
    assert "process_resident_memory_bytes" in exported
    missing = {title: sorted(names - exported)
               for title, names in dashboard_metric_names().items() if names - exported}
    assert not missing, f"the dashboard queries metrics nobody exports: {missing}"


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    queried = set().union(*dashboard_metric_names().values())
    for name in ("eventide_accepted_total", "eventide_records_in_total",
                 "eventide_consumer_lag", "eventide_processing_latency_seconds_bucket",
                 "eventide_segment_changes_total", "eventide_deadletters_total",
                 "process_resident_memory_bytes", "eventide_event_loop_lag_seconds"):
        assert name in queried, name
    exprs = [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]
    assert any("histogram_quantile(0.99, sum by (le)" in e for e in exprs)
    assert any("by (topic, partition)" in e for e in exprs)
