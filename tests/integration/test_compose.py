"""docker-compose.yml, the ClickHouse roles it mounts, and the Dockerfile, validated by Debian's docker-compose.

No Docker engine runs here: ``docker-compose config`` parses, schema-checks and interpolates the file exactly as
``up`` would; the tests then assert facts about what it rendered and about the ClickHouse configuration files it
mounts. docker-compose is a test requirement: when it is missing the tests fail (``make test`` installs it through
scripts/system-deps.sh), they never skip.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from chserver.grants import READER_SETTING_BOUNDS
from config.settings import PREFIX, Settings, describe
from config.settings import SECRETS as SECRET_FIELDS
from embedded.specs import PROCESS_SECRETS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
CLICKHOUSE_DIR = ROOT / "deploy" / "clickhouse"
USERS_FILE = CLICKHOUSE_DIR / "users.d" / "flowscope.xml"
SERVER_FILE = CLICKHOUSE_DIR / "config.d" / "flowscope.xml"
# Every secret setting, as the host provides it.
SECRETS = {PREFIX + name.upper(): f"{name.replace('_', '-')}-from-host" for name in SECRET_FIELDS}
# The alerting webhook (it may carry a token) is a secret of the Alertmanager service only.
ALERT_SECRET = {"FLOWSCOPE_ALERT_WEBHOOK_URL": "https://pager.example/hook?token=from-host"}
RENDER_ENV = {**SECRETS, **ALERT_SECRET}
OURS = {
    "migrate": ["warehouse", "migrate"],
    "receiver": ["ingest"],
    "stream": ["stream"],
    "rollup": ["warehouse", "rollup"],
    "dashboards": ["dashboards"],
}
# The secret settings each service may see: those `flowscope up` gives the same process (migrations run as admin).
SERVICE_SECRETS = {
    "migrate": ("warehouse_admin_password",),
    "receiver": PROCESS_SECRETS["receiver"],
    "stream": PROCESS_SECRETS["stream"],
    "rollup": PROCESS_SECRETS["rollup"],
    "dashboards": PROCESS_SECRETS["dashboards"],
}
# Settings only one service uses (where it listens, how many workers); everything else is the same everywhere.
SERVICE_SETTINGS = {
    "migrate": set(),
    "receiver": {"FLOWSCOPE_INGEST_HOST", "FLOWSCOPE_INGEST_WORKERS"},
    "stream": {"FLOWSCOPE_STREAM_METRICS_HOST"},
    "rollup": {"FLOWSCOPE_STREAM_METRICS_HOST"},
    "dashboards": {"FLOWSCOPE_DASHBOARD_HOST"},
}
DEFAULTS = Settings()
DATABASE = "flowscope"
# What the analyst may change under readonly=1: limits, timeouts, output format and HTTP response options.
ANALYST_ALLOW_LIST = {
    "max_threads", "max_execution_time", "max_result_rows", "max_result_bytes", "result_overflow_mode",
    "receive_timeout", "send_timeout", "http_receive_timeout", "http_send_timeout",
    "output_format_json_quote_64bit_integers", "output_format_json_quote_denormals",
    "output_format_json_named_tuples_as_objects", "output_format_arrow_string_as_string",
    "enable_http_compression", "send_progress_in_http_headers", "http_headers_progress_interval_ms",
    "cancel_http_readonly_queries_on_client_close",
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


def _xml(path: Path) -> ET.Element:
    return ET.parse(path).getroot()  # noqa: S314 - a file of this repository


def _users() -> dict[str, ET.Element]:
    """The users the users file defines (not those it removes)."""
    users = _xml(USERS_FILE).find("users")
    assert users is not None, f"no <users> in {USERS_FILE}"
    return {user.tag: user for user in users if user.get("remove") is None}


def _profile(name: str) -> ET.Element:
    profile = _xml(USERS_FILE).find(f"profiles/{name}")
    assert profile is not None, f"no profile {name!r} in {USERS_FILE}"
    return profile


def _grants(user: ET.Element) -> list[str]:
    return [" ".join((query.text or "").split()) for query in user.findall("grants/query")]


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
    assert env["CLICKHOUSE_DB"] == DATABASE
    # The image creates CLICKHOUSE_USER in place of its password-less `default`: that is the admin.
    assert env["CLICKHOUSE_USER"] == DEFAULTS.warehouse_admin_user
    assert env["CLICKHOUSE_PASSWORD"] == SECRETS["FLOWSCOPE_WAREHOUSE_ADMIN_PASSWORD"]
    assert env["CLICKHOUSE_DEFAULT_ACCESS_MANAGEMENT"] == "0", "nobody creates users beside the users file's"
    assert clickhouse["ulimits"]["nofile"] == {"soft": 262144, "hard": 262144}
    assert any(":/var/lib/clickhouse" in volume for volume in clickhouse["volumes"])
    assert [port for _, port in published(clickhouse)] == [8123]
    assert "8123/ping" in " ".join(clickhouse["healthcheck"]["test"])
    # Single files: the entrypoint writes users.d/default-user.xml (the admin) beside ours.
    mounts = {
        "/etc/clickhouse-server/users.d/flowscope.xml": USERS_FILE,
        "/etc/clickhouse-server/config.d/flowscope.xml": SERVER_FILE,
    }
    assert _mounts(clickhouse) == mounts
    assert _read_only(clickhouse) == set(mounts)


def test_flowscope_services_are_one_image(services: dict[str, dict[str, Any]]) -> None:
    assert {services[name]["image"] for name in OURS} == {"flowscope:latest"}
    assert {Path(services[name]["build"]["context"]) for name in OURS} == {ROOT}
    assert {name: services[name]["command"] for name in OURS} == OURS


def test_clickhouse_sees_only_the_warehouse_passwords(services: dict[str, dict[str, Any]]) -> None:
    # As `flowscope up` gives its warehouse server: the three passwords (the admin's as the image wants it).
    env = environment(services["clickhouse"])
    seen = {key: value for key, value in env.items() if key in SECRETS}
    seen["FLOWSCOPE_WAREHOUSE_ADMIN_PASSWORD"] = env["CLICKHOUSE_PASSWORD"]
    assert seen == {PREFIX + name.upper(): SECRETS[PREFIX + name.upper()] for name in PROCESS_SECRETS["warehouse"]}


def test_every_flowscope_service_is_wired_by_the_same_settings(services: dict[str, dict[str, Any]]) -> None:
    clickhouse = environment(services["clickhouse"])
    wiring = {
        "FLOWSCOPE_KAFKA_BOOTSTRAP": "kafka:9092",
        "FLOWSCOPE_WAREHOUSE_URL": f"http://clickhouse:8123/{clickhouse['CLICKHOUSE_DB']}",
        "FLOWSCOPE_WAREHOUSE_ADMIN_USER": clickhouse["CLICKHOUSE_USER"],
        "FLOWSCOPE_WAREHOUSE_WRITER_USER": DEFAULTS.warehouse_writer_user,
        "FLOWSCOPE_WAREHOUSE_ANALYST_USER": DEFAULTS.warehouse_analyst_user,
        "FLOWSCOPE_PARTITIONS": "12",
        "FLOWSCOPE_FORM_FIELDS_ALLOWLIST": "",
        "FLOWSCOPE_LOG_LEVEL": "INFO",
    }
    for name in OURS:
        env = environment(services[name])
        settings = {key: value for key, value in env.items() if key not in SECRETS}
        assert {key: settings.get(key) for key in wiring} == wiring, name
        assert set(settings) - set(wiring) == SERVICE_SETTINGS[name], name
        url = urlsplit(env["FLOWSCOPE_WAREHOUSE_URL"])
        assert (url.username, url.password) == (None, None), "credentials are per role, never in the shared URL"
        Settings.from_env(env)  # every value parses, and validates


def test_each_service_sees_only_the_secrets_it_uses(services: dict[str, dict[str, Any]]) -> None:
    for name, fields in SERVICE_SECRETS.items():
        env = environment(services[name])
        expected = {PREFIX + field.upper() for field in fields}
        assert {key: value for key, value in env.items() if key in SECRETS} == {
            key: SECRETS[key] for key in expected
        }, name
        settings = Settings.from_env(env)
        for role in ("admin", "writer", "analyst"):
            if f"warehouse_{role}_password" in fields:  # connects as that role: the user and its password
                user = DEFAULTS.warehouse_user(role)[0]
                assert settings.warehouse_user(role) == (user, SECRETS[f"FLOWSCOPE_WAREHOUSE_{role.upper()}_PASSWORD"])
                assert urlsplit(settings.warehouse_url_for(role)).username == user


def test_admin_user_comes_from_the_environment(empty_env_file: Path) -> None:
    env = {**RENDER_ENV, "FLOWSCOPE_WAREHOUSE_ADMIN_USER": "ops_admin"}
    rendered = load(compose(empty_env_file, env))["services"]
    assert environment(rendered["clickhouse"])["CLICKHOUSE_USER"] == "ops_admin"
    for name in OURS:
        assert environment(rendered[name])["FLOWSCOPE_WAREHOUSE_ADMIN_USER"] == "ops_admin", name


def test_clickhouse_has_exactly_the_three_roles_and_no_default_user(services: dict[str, dict[str, Any]]) -> None:
    env = environment(services["clickhouse"])
    users = _xml(USERS_FILE).find("users")
    assert users is not None
    # The image writes users.d/default-user.xml (removing `default`, adding CLICKHOUSE_USER); ours removes
    # `default` again, so a CLICKHOUSE_USER named `default` would leave no admin rather than an open one.
    assert [user.tag for user in users if user.get("remove") == "remove"] == ["default"]
    effective = {env["CLICKHOUSE_USER"], *_users()}
    assert effective == {DEFAULTS.warehouse_admin_user, DEFAULTS.warehouse_writer_user,
                         DEFAULTS.warehouse_analyst_user}
    assert "default" not in effective


def test_no_warehouse_user_is_password_less(services: dict[str, dict[str, Any]]) -> None:
    env = environment(services["clickhouse"])
    assert env["CLICKHOUSE_PASSWORD"]
    auth = {"password", "password_sha256_hex", "password_double_sha1_hex", "password_scram_sha256_hex",
            "no_password", "ldap", "kerberos", "ssl_certificates", "ssh_keys", "http_authentication", "auth_methods"}
    for name, user in _users().items():
        role = {DEFAULTS.warehouse_writer_user: "writer", DEFAULTS.warehouse_analyst_user: "analyst"}[name]
        methods = [child for child in user if child.tag in auth]
        assert [child.tag for child in methods] == ["password"], name
        password = methods[0]
        # From the container's environment, which compose fills only from the host (`:?`): never empty.
        variable = f"FLOWSCOPE_WAREHOUSE_{role.upper()}_PASSWORD"
        assert (password.get("from_env"), (password.text or "").strip()) == (variable, ""), name
        assert env[variable] == SECRETS[variable], name
    server = _xml(SERVER_FILE)
    assert server.findtext("allow_no_password") == "0"


def test_writer_may_only_insert_into_flowscope() -> None:
    writer = _users()[DEFAULTS.warehouse_writer_user]
    # SHOW COLUMNS: clickhouse-connect runs DESCRIBE TABLE before an insert (the structure, never the rows).
    assert _grants(writer) == [f"GRANT INSERT ON {DATABASE}.*", f"GRANT SHOW COLUMNS ON {DATABASE}.*"]
    assert writer.findtext("profile") == "default"
    for key in ("access_management", "allow_databases", "allow_dictionaries", "named_collection_control"):
        assert writer.find(key) is None, key


def test_analyst_is_read_only_with_a_short_allow_list() -> None:
    analyst = _users()[DEFAULTS.warehouse_analyst_user]
    assert _grants(analyst) == [
        f"GRANT SELECT ON {DATABASE}.*",
        *(f"GRANT SELECT ON system.{table}" for table in ("tables", "columns", "parts", "processes", "query_log")),
    ]
    for key in ("access_management", "allow_databases", "allow_dictionaries", "named_collection_control"):
        assert analyst.find(key) is None, key
    profile = _profile(analyst.findtext("profile") or "")
    assert profile.findtext("readonly") == "1"
    constraints = profile.find("constraints")
    assert constraints is not None
    assert {setting.tag: [kind.tag for kind in setting] for setting in constraints} == {
        **{setting: ["changeable_in_readonly"] for setting in ANALYST_ALLOW_LIST},
        "os_thread_priority": ["min", "max", "changeable_in_readonly"],
    }
    # Within the embedded warehouse's bounds: a reader may only lower its own queries' priority.
    bounded = constraints.find("os_thread_priority")
    assert bounded is not None
    assert (int(bounded.findtext("min") or ""), int(bounded.findtext("max") or "")) == \
        READER_SETTING_BOUNDS["os_thread_priority"]
    # changeable_in_readonly is honoured only with this server setting.
    assert _xml(SERVER_FILE).findtext("access_control_improvements/settings_constraints_replace_previous") == "true"


def test_no_role_can_turn_the_audit_off() -> None:
    # The constraints of the `default` profile apply to every user; the admin and the writer use it, and the
    # analyst's readonly=1 changes nothing outside its allow-list.
    constraints = _profile("default").find("constraints")
    assert constraints is not None
    logging_settings = {"log_queries", "log_queries_min_type", "log_queries_min_query_duration_ms",
                        "log_queries_probability"}
    assert {setting.tag: [kind.tag for kind in setting] for setting in constraints} == {
        setting: ["readonly"] for setting in logging_settings
    }
    assert not logging_settings & ANALYST_ALLOW_LIST


def test_the_server_keeps_a_query_log_for_the_audit_retention() -> None:
    server = _xml(SERVER_FILE)
    query_log = server.find("query_log")
    assert query_log is not None
    assert (query_log.findtext("database"), query_log.findtext("table")) == ("system", "query_log")
    days = DEFAULTS.warehouse_audit_retention_days
    assert query_log.findtext("ttl") == f"event_date + INTERVAL {days} DAY DELETE"
    # Reading system tables needs a grant, so only the analyst (and the admin) read the audit.
    assert server.findtext("access_control_improvements/select_from_system_db_requires_grant") == "true"


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
    admin = "FLOWSCOPE_WAREHOUSE_ADMIN_PASSWORD"
    assert environment(raw["clickhouse"])["CLICKHOUSE_PASSWORD"] == f"${{{admin}:?set {admin}}}"
    alertmanager = environment(raw["alertmanager"])["FLOWSCOPE_ALERT_WEBHOOK_URL"]
    assert alertmanager == "${FLOWSCOPE_ALERT_WEBHOOK_URL:?set FLOWSCOPE_ALERT_WEBHOOK_URL}"
    # Not even the development defaults: production has no default secret.
    for path in (COMPOSE_FILE, USERS_FILE, SERVER_FILE):
        text = path.read_text()
        for field in SECRET_FIELDS:
            assert getattr(DEFAULTS, field) not in text, (path, field)


@pytest.mark.parametrize("missing", sorted(RENDER_ENV))
def test_secrets_are_required_from_the_environment(empty_env_file: Path, missing: str) -> None:
    result = compose(empty_env_file, {k: v for k, v in RENDER_ENV.items() if k != missing})
    assert result.returncode != 0
    assert f"set {missing}" in result.stderr, result.stderr


def test_compose_uses_only_real_settings(services: dict[str, dict[str, Any]]) -> None:
    known = {key for key, _, _ in describe()}
    used = set(re.findall(r"\bFLOWSCOPE_[A-Z0-9_]+", COMPOSE_FILE.read_text() + USERS_FILE.read_text()))
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


def _read_only(service: dict[str, Any]) -> set[str]:
    """Container paths of the read-only bind mounts."""
    targets = set()
    for volume in service.get("volumes", []):
        if isinstance(volume, dict) and volume.get("type") == "bind" and volume.get("read_only"):
            targets.add(volume["target"])
        elif isinstance(volume, str) and volume.split(":")[0].startswith(("/", ".")) and volume.endswith(":ro"):
            targets.add(volume.split(":")[1])
    return targets


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
    rollup_port = Settings.from_env(environment(services["rollup"])).rollup_metrics_port
    assert jobs == {
        "flowscope-receiver": {"names": ["receiver"], "type": "A", "port": receiver_port},
        "flowscope-stream": {"names": ["stream"], "type": "A", "port": stream_port},
        "flowscope-rollup": {"names": ["rollup"], "type": "A", "port": rollup_port},
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
