"""docker-compose.yml, validated by Debian's docker-compose (no Docker engine runs here)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from flowscope.settings import describe

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {"FLOWSCOPE_APP_SECRET": "a", "FLOWSCOPE_VERIFY_TOKEN": "b", "FLOWSCOPE_HASH_KEY": "c",
           "CLICKHOUSE_PASSWORD": "d"}
OURS = ("migrate", "receiver", "stream", "dashboards")


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is missing: make test installs it (scripts/system-deps.sh)"
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS and not k.startswith("FLOWSCOPE_")}
    return subprocess.run([binary, "-f", str(ROOT / "docker-compose.yml"), "config"],
                          env={**clean, **env}, capture_output=True, text=True, timeout=60, cwd=ROOT)


def rendered() -> dict[str, Any]:
    result = compose_config(SECRETS)
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def test_services_are_the_production_shape() -> None:
    services = rendered()["services"]
    assert set(services) == {"kafka", "clickhouse", *OURS}
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    assert {services[name]["image"] for name in OURS} == {"flowscope:latest"}
    assert {services[name]["command"][0] for name in OURS} == {"warehouse", "ingest", "stream", "dashboards"}


def test_every_flowscope_service_is_wired_by_the_same_settings() -> None:
    services = rendered()["services"]
    for name in OURS:
        env = services[name]["environment"]
        assert env["FLOWSCOPE_KAFKA_BOOTSTRAP"] == "kafka:9092"
        assert env["FLOWSCOPE_WAREHOUSE_URL"] == "http://flowscope:d@clickhouse:8123/flowscope"
        secrets = (env["FLOWSCOPE_APP_SECRET"], env["FLOWSCOPE_VERIFY_TOKEN"], env["FLOWSCOPE_HASH_KEY"])
        assert secrets == ("a", "b", "c")


def test_stream_workers_scale() -> None:
    stream = rendered()["services"]["stream"]
    assert "ports" not in stream
    assert "container_name" not in stream
    assert stream["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_secrets_are_required_from_the_environment() -> None:
    for missing in SECRETS:
        result = compose_config({k: v for k, v in SECRETS.items() if k != missing})
        assert result.returncode != 0
        assert f"set {missing}" in result.stderr


def test_compose_uses_only_real_settings() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\b(FLOWSCOPE_[A-Z_]+)\s*:", text))
    known = {key for key, _, _ in describe()}
    assert used - known == set()
    assert {"FLOWSCOPE_KAFKA_BOOTSTRAP", "FLOWSCOPE_WAREHOUSE_URL"} <= used
