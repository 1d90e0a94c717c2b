"""docker-compose.yml and the Dockerfile, validated by Debian's docker-compose (no Docker engine runs here).

``docker-compose config`` parses, schema-checks and interpolates the file exactly as ``up`` would; the
tests then assert facts about what it rendered. docker-compose is a test requirement: when it is
missing the tests fail (``make test`` installs it through scripts/system-deps.sh), they never skip.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from config.settings import Settings, describe

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SECRETS = {
    "FLOWSCOPE_APP_SECRET": "app-secret-from-host",
    "FLOWSCOPE_VERIFY_TOKEN": "verify-token-from-host",
    "FLOWSCOPE_HASH_KEY": "hash-key-from-host",
    "CLICKHOUSE_PASSWORD": "clickhouse-password-from-host",
}
# The alerting webhook (it may carry a token) is a secret of the Alertmanager service only.
ALERT_SECRET = {"FLOWSCOPE_ALERT_WEBHOOK_URL": "https://pager.example/hook?token=from-host"}
RENDER_ENV = {**SECRETS, **ALERT_SECRET}
OURS = {
    "migrate": ["warehouse", "migrate"],
    "receiver": ["ingest"],
    "stream": ["stream"],
    "dashboards": ["dashboards"],
}
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - what a container must bind to be reachable
# Variables of the host that would change what the file renders to.
HOST_KEYS = ("CLICKHOUSE_", "FLOWSCOPE_", "COMPOSE_", "DOCKER_")


@pytest.fixture(scope="module")
def empty_env_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # A developer's .env next to docker-compose.yml must not leak into what is asserted here.
    path = tmp_path_factory.mktemp("compose") / "empty.env"
    path.write_text("")
    yield path


def compose(env_file: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail(
            "docker-compose is not installed: it validates docker-compose.yml. Install the Debian package "
            "`docker-compose` (apt-get install -y docker-compose), or run `make system-deps`."
        )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(HOST_KEYS)}
    return subprocess.run(
        [binary, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config", *args],
        env={**clean, **env}, capture_output=True, text=True, timeout=120, cwd=ROOT, check=False,
    )


def load(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


@pytest.fixture(scope="module")
def services(empty_env_file: Path) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = load(compose(empty_env_file, RENDER_ENV))["services"]
    return result


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):  # KEY=VALUE form
        env = dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def published(service: dict[str, Any]) -> list[tuple[str, int]]:
    """(host address or "", container port) of every published port, in either syntax."""
    ports = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ports.append((str(port.get("host_ip", "")), int(port["target"])))
        else:
            parts = str(port).split("/")[0].split(":")
            ports.append((parts[0] if len(parts) == 3 else "", int(parts[-1])))
    return ports


def test_services_are_the_production_shape(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == {"kafka", "clickhouse", "prometheus", "alertmanager", *OURS}


def test_kafka_is_a_single_kraft_node(services: dict[str, dict[str, Any]]) -> None:
    kafka = services["kafka"]
    assert re.fullmatch(r"apache/kafka:(3\.9|4\.\d+)\.\d+", kafka["image"]), kafka["image"]
    env = environment(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["CLUSTER_ID"]
    node = env["KAFKA_NODE_ID"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node}@kafka:9093"
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    listeners = {item.split("://")[0] for item in env["KAFKA_LISTENERS"].split(",")}
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert listeners == set(protocols)
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners - set(advertised)
    assert advertised[env["KAFKA_INTER_BROKER_LISTENER_NAME"]] == "kafka:9092"
    assert len(advertised) == 2, "one listener for the compose network, one for the host"
    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"):
        assert env[key] == "1", key
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false", "the application creates its topics"
    assert any(volume.endswith(f":{env['KAFKA_LOG_DIRS']}:rw") or volume.endswith(f":{env['KAFKA_LOG_DIRS']}")
               for volume in kafka["volumes"])
    assert "kafka-broker-api-versions.sh" in " ".join(kafka["healthcheck"]["test"])


def test_clickhouse_server(services: dict[str, dict[str, Any]]) -> None:
    clickhouse = services["clickhouse"]
    assert re.fullmatch(r"clickhouse/clickhouse-server:2[56]\.\d+(\.\d+)*", clickhouse["image"])
    env = environment(clickhouse)
    assert env["CLICKHOUSE_DB"] == "flowscope"
    assert env["CLICKHOUSE_USER"] == "flowscope"
    assert env["CLICKHOUSE_PASSWORD"] == SECRETS["CLICKHOUSE_PASSWORD"]
    assert env["CLICKHOUSE_DEFAULT_ACCESS_MANAGEMENT"] == "1"
    assert clickhouse["ulimits"]["nofile"] == {"soft": 262144, "hard": 262144}
    assert any(":/var/lib/clickhouse" in volume for volume in clickhouse["volumes"])
    assert [port for _, port in published(clickhouse)] == [8123]
    assert "8123/ping" in " ".join(clickhouse["healthcheck"]["test"])


def test_flowscope_services_are_one_image(services: dict[str, dict[str, Any]]) -> None:
    assert {services[name]["image"] for name in OURS} == {"flowscope:latest"}
    assert {Path(services[name]["build"]["context"]) for name in OURS} == {ROOT}
    assert {name: services[name]["command"] for name in OURS} == OURS


def test_every_flowscope_service_is_wired_by_the_same_settings(services: dict[str, dict[str, Any]]) -> None:
    clickhouse = environment(services["clickhouse"])
    for name in OURS:
        env = environment(services[name])
        assert env["FLOWSCOPE_KAFKA_BOOTSTRAP"] == "kafka:9092", name
        url = urlsplit(env["FLOWSCOPE_WAREHOUSE_URL"])
        assert (url.scheme, url.hostname, url.port) == ("http", "clickhouse", 8123), name
        assert url.path.strip("/") == clickhouse["CLICKHOUSE_DB"], name
        assert (url.username, url.password) == (clickhouse["CLICKHOUSE_USER"], clickhouse["CLICKHOUSE_PASSWORD"])
        assert {key: env[key] for key in SECRETS if key.startswith("FLOWSCOPE_")} == {
            key: value for key, value in SECRETS.items() if key.startswith("FLOWSCOPE_")
        }, name
        assert env["FLOWSCOPE_PARTITIONS"] == "12", name
        Settings.from_env(env)  # every value parses, and validates


def test_clickhouse_user_comes_from_the_environment(empty_env_file: Path) -> None:
    rendered = load(compose(empty_env_file, {**RENDER_ENV, "CLICKHOUSE_USER": "analyst"}))["services"]
    assert environment(rendered["clickhouse"])["CLICKHOUSE_USER"] == "analyst"
    for name in OURS:
        assert urlsplit(environment(rendered[name])["FLOWSCOPE_WAREHOUSE_URL"]).username == "analyst"


def test_published_processes_listen_beyond_the_container(services: dict[str, dict[str, Any]]) -> None:
    defaults = Settings()
    receiver, dashboards = services["receiver"], services["dashboards"]
    assert environment(receiver)["FLOWSCOPE_INGEST_HOST"] == ALL_INTERFACES
    assert [port for _, port in published(receiver)] == [defaults.ingest_port]
    assert "/healthz" in " ".join(receiver["healthcheck"]["test"])
    assert environment(dashboards)["FLOWSCOPE_DASHBOARD_HOST"] == ALL_INTERFACES
    assert [port for _, port in published(dashboards)] == [defaults.dashboard_port]
    # Not published (so it scales), but a scraper on the compose network must reach /metrics.
    assert environment(services["stream"])["FLOWSCOPE_STREAM_METRICS_HOST"] == ALL_INTERFACES


def test_start_order(services: dict[str, dict[str, Any]]) -> None:
    def conditions(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}

    assert conditions("migrate") == {"clickhouse": "service_healthy"}
    assert services["migrate"]["restart"] == "no"
    assert conditions("receiver") == {"kafka": "service_healthy"}
    assert conditions("stream") == {"kafka": "service_healthy", "migrate": "service_completed_successfully"}
    assert conditions("dashboards") == {"migrate": "service_completed_successfully"}


def test_stream_workers_scale(services: dict[str, dict[str, Any]]) -> None:
    stream = services["stream"]
    assert "ports" not in stream
    assert "container_name" not in stream
    assert "hostname" not in stream


def test_secrets_are_not_in_the_file(empty_env_file: Path) -> None:
    raw = load(compose(empty_env_file, {}, "--no-interpolate"))["services"]
    for name in [*OURS, "clickhouse"]:
        for key, value in environment(raw[name]).items():
            if key in SECRETS:
                assert value == f"${{{key}:?set {key}}}", (name, key, value)
    alertmanager = environment(raw["alertmanager"])["FLOWSCOPE_ALERT_WEBHOOK_URL"]
    assert alertmanager == "${FLOWSCOPE_ALERT_WEBHOOK_URL:?set FLOWSCOPE_ALERT_WEBHOOK_URL}"
    text = COMPOSE_FILE.read_text()
    for value in (Settings().app_secret, Settings().verify_token, Settings().hash_key):
        assert value not in text


@pytest.mark.parametrize("missing", sorted(RENDER_ENV))
def test_secrets_are_required_from_the_environment(empty_env_file: Path, missing: str) -> None:
    result = compose(empty_env_file, {k: v for k, v in RENDER_ENV.items() if k != missing})
    assert result.returncode != 0
    assert f"set {missing}" in result.stderr, result.stderr


def test_compose_uses_only_real_settings(services: dict[str, dict[str, Any]]) -> None:
    known = {key for key, _, _ in describe()}
    used = set(re.findall(r"\bFLOWSCOPE_[A-Z0-9_]+", COMPOSE_FILE.read_text()))
    for service in services.values():
        used |= {key for key in environment(service) if key.startswith("FLOWSCOPE_")}
    assert used - known == set()
    assert {"FLOWSCOPE_KAFKA_BOOTSTRAP", "FLOWSCOPE_WAREHOUSE_URL", "FLOWSCOPE_STREAM_METRICS_HOST"} <= used


def test_dockerfile_is_one_slim_non_root_image_without_the_embedded_stack() -> None:
    lines = [
        line.strip() for line in (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert lines[0] == "FROM python:3.11-slim"
    assert [line for line in lines if line.startswith("FROM ")] == [lines[0]]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in {"root", "0"}
    installs = [line for line in lines if "pip install" in line]
    assert any(re.search(r"pip install --no-cache-dir \.(\s|$)", line) for line in installs), installs
    assert not any("embedded" in line for line in installs)
    assert any(re.search(r"\bPYTHONUNBUFFERED=1\b", line) for line in lines if line.startswith("ENV "))
    assert lines[[line.split()[0] for line in lines].index("ENTRYPOINT")] == 'ENTRYPOINT ["flowscope"]'
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".venv", ".git", "data", ".env"} <= ignored


def _mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path → host path of every bind mount."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict) and volume.get("type") == "bind":
            mounts[volume["target"]] = Path(volume["source"])
        elif isinstance(volume, str) and volume.split(":")[0].startswith(("/", ".")):
            source, target = volume.split(":")[:2]
            mounts[target] = (ROOT / source).resolve()
    return mounts


def _tool(name: str) -> str:
    binary = shutil.which(name)
    if binary is None:
        pytest.fail(f"{name} is missing: `make test` installs Debian's prometheus and prometheus-alertmanager")
    return binary


def test_prometheus_loads_the_shipped_rules_and_scrapes_every_flowscope_process(
    services: dict[str, dict[str, Any]],
) -> None:
    prometheus = services["prometheus"]
    mounts = _mounts(prometheus)
    config_path = mounts["/etc/prometheus/prometheus.yml"]
    assert config_path == ROOT / "deploy" / "prometheus" / "prometheus.yml"
    assert mounts["/etc/prometheus/rules"] == ROOT / "deploy" / "prometheus" / "rules"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    config = yaml.safe_load(config_path.read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules/*.yml"]
    assert config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["alertmanager:9093"]
    # DNS discovery finds every container of a service, so scaled stream workers are all scraped.
    jobs = {job["job_name"]: job["dns_sd_configs"][0] for job in config["scrape_configs"]}
    receiver_port = Settings.from_env(environment(services["receiver"])).ingest_port
    stream_port = Settings.from_env(environment(services["stream"])).stream_metrics_port
    assert jobs == {
        "flowscope-receiver": {"names": ["receiver"], "type": "A", "port": receiver_port},
        "flowscope-stream": {"names": ["stream"], "type": "A", "port": stream_port},
    }
    checked = subprocess.run([_tool("promtool"), "check", "config", "--syntax-only", str(config_path)],
                             capture_output=True, text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_alertmanager_posts_to_the_webhook_from_the_environment(services: dict[str, dict[str, Any]],
                                                                tmp_path: Path) -> None:
    alertmanager = services["alertmanager"]
    assert environment(alertmanager)["FLOWSCOPE_ALERT_WEBHOOK_URL"] == ALERT_SECRET["FLOWSCOPE_ALERT_WEBHOOK_URL"]
    shipped = _mounts(alertmanager)["/etc/alertmanager/alertmanager.yml"]
    assert shipped == ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
    # Run the entrypoint's substitution as the container would (compose's "$$" is a literal "$"),
    # with a URL full of characters that sed would mangle.
    url = ALERT_SECRET["FLOWSCOPE_ALERT_WEBHOOK_URL"] + "&route=a|b"
    substitution, _, start = alertmanager["command"][0].replace("$$", "$").partition(" && exec ")
    assert start == "/bin/alertmanager --config.file=/alertmanager/alertmanager.yml --storage.path=/alertmanager"
    program, separator, output = substitution.rpartition(" /etc/alertmanager/alertmanager.yml > ")
    assert (separator, output) == (" /etc/alertmanager/alertmanager.yml > ", "/alertmanager/alertmanager.yml")
    rendered = tmp_path / "alertmanager.yml"
    script = f"{program} {shipped} > {rendered}"
    subprocess.run(["/bin/sh", "-c", script], env={"FLOWSCOPE_ALERT_WEBHOOK_URL": url}, check=True, timeout=30)  # noqa: S603
    checked = subprocess.run([_tool("amtool"), "check-config", str(rendered)], capture_output=True, text=True,
                             timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = yaml.safe_load(rendered.read_text())
    hooks = [hook for receiver in config["receivers"] for hook in receiver.get("webhook_configs", [])]
    assert hooks == [{"url": url, "send_resolved": True}]
