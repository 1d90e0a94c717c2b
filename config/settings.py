"""One settings object for every flowscope process, read from the environment once at start.

Every key is ``FLOWSCOPE_<NAME>``; the defaults are the embedded (one machine, no Docker) mode.
Production sets the URLs (and the secrets) and nothing else changes.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse, urlsplit, urlunsplit

from config.exceptions import SettingsError

PREFIX = "FLOWSCOPE_"

# Development-only secrets, so that `make up` works on a fresh clone. `Settings.dev_secrets_in_use`
# names the keys still at these values, and every process warns about them at start.
DEV_APP_SECRET = "dev-app-secret"  # noqa: S105
DEV_VERIFY_TOKEN = "dev-verify-token"  # noqa: S105
DEV_HASH_KEY = "dev-pseudonymisation-key"
DEV_EVENTS_TOKEN = "dev-events-token"  # noqa: S105
DEV_WAREHOUSE_PASSWORDS = {  # noqa: S105
    "admin": "dev-warehouse-admin", "writer": "dev-warehouse-writer", "analyst": "dev-warehouse-analyst",
}
DEV_DASHBOARD_PASSWORD = "dev-dashboard-password"  # noqa: S105

# Producer linger with durable broker storage, where every write becomes one S3 object: few, large batches.
DURABLE_PRODUCER_LINGER_MS = 50

# The warehouse's roles: admin (migrations, the only one allowed DDL), writer (the stream worker: INSERT into
# our tables), analyst (read-only: dashboards and data teams).
WAREHOUSE_ROLES = ("admin", "writer", "analyst")


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected a boolean, got {raw!r}")


def _parse_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


_PARSERS: dict[str, Callable[[str], Any]] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": _parse_bool,
    "tuple[str, ...]": _parse_list,
    "Path": Path,
}


def _bootstrap_address(bootstrap: str) -> tuple[str, int]:
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    if not port.isdigit():
        raise ValueError(f"{PREFIX}KAFKA_BOOTSTRAP needs host:port, got {bootstrap!r}")
    return host or "127.0.0.1", int(port)


# Keys of earlier versions that duplicated a URL; a clear error instead of silently ignoring them.
REPLACED = {
    PREFIX + "BROKER_PORT": f"the embedded broker listens on the port of {PREFIX}KAFKA_BOOTSTRAP",
    PREFIX + "WAREHOUSE_HOST": f"the embedded warehouse listens on the host of {PREFIX}WAREHOUSE_URL",
    PREFIX + "WAREHOUSE_PORT": f"the embedded warehouse listens on the port of {PREFIX}WAREHOUSE_URL",
}


def _setting(default: Any, doc: str, *, secret: bool = False) -> Any:
    return field(default=default, metadata={"doc": doc, "secret": secret})


@dataclass(frozen=True)
class Settings:
    """Typed, frozen configuration. Build it with :meth:`from_env`; never read ``os.environ`` elsewhere."""

    # --- secrets -------------------------------------------------------------------------------
    app_secret: str = _setting(DEV_APP_SECRET, "Meta app secret: HMAC key of X-Hub-Signature-256.", secret=True)
    verify_token: str = _setting(DEV_VERIFY_TOKEN, "Token Meta echoes in the GET verification handshake.", secret=True)
    hash_key: str = _setting(DEV_HASH_KEY, "Key of the keyed hash that pseudonymises phone numbers.", secret=True)
    events_token: str = _setting(
        DEV_EVENTS_TOKEN, "Bearer token (and HMAC key) authenticating first-party events and flow registration.",
        secret=True,
    )
    # --- where things are ----------------------------------------------------------------------
    kafka_bootstrap: str = _setting(
        "127.0.0.1:9092", "Kafka bootstrap servers, comma separated; the embedded broker listens on the first."
    )
    warehouse_url: str = _setting(
        "http://127.0.0.1:8123/flowscope",
        "ClickHouse HTTP URL (database in the path) every component connects to, each as its role's user; "
        "the embedded warehouse server listens on its host and port.",
    )
    warehouse_admin_user: str = _setting("flowscope_admin", "Warehouse user of migrations: the only one allowed DDL.")
    warehouse_admin_password: str = _setting(
        DEV_WAREHOUSE_PASSWORDS["admin"], "Password of the warehouse admin.", secret=True
    )
    warehouse_writer_user: str = _setting(
        "flowscope_writer", "Warehouse user of the stream workers: INSERT into flowscope's tables, nothing else."
    )
    warehouse_writer_password: str = _setting(
        DEV_WAREHOUSE_PASSWORDS["writer"], "Password of the warehouse writer.", secret=True
    )
    warehouse_analyst_user: str = _setting(
        "flowscope_analyst", "Read-only warehouse user of the dashboards and of data teams."
    )
    warehouse_analyst_password: str = _setting(
        DEV_WAREHOUSE_PASSWORDS["analyst"], "Password of the read-only warehouse analyst.", secret=True
    )
    warehouse_audit_retention_days: int = _setting(
        30, "Days the embedded warehouse keeps its audit log of queries (audit.query_log)."
    )
    warehouse_retention_days: int = _setting(
        400, "Days the warehouse keeps raw events, derived tables at least as long (TTLs set at every migrate; "
             "docs/warehouse.md); 0 = forever."
    )
    topic_prefix: str = _setting("flowscope", "Prefix of every Kafka topic name.")
    partitions: int = _setting(4, "Partitions of each topic, when the application creates it.")
    replication_factor: int = _setting(1, "Replication factor of topics the application creates.")
    # --- receiver ------------------------------------------------------------------------------
    ingest_host: str = _setting("127.0.0.1", "Receiver bind address.")
    ingest_port: int = _setting(8000, "Receiver port (webhooks, /healthz, /metrics).")
    ingest_workers: int = _setting(1, "Receiver worker processes; metrics are summed across them (multiprocess).")
    max_body_bytes: int = _setting(3 * 1024 * 1024, "Largest webhook body accepted (Meta: up to 3 MB).")
    producer_linger_ms: int = _setting(
        -1, "Least age (ms) of a producer batch before it is written; 0: group commit (as soon as the previous "
            "write finished); -1: by broker storage, 0 in memory, 50 durable (few, large S3 objects)."
    )
    producer_timeout_s: float = _setting(10.0, "Longest wait for the broker to acknowledge a request's events.")
    producer_connections: int = _setting(
        4, "Receiver connections to the broker, each with one write in flight: writes overlap their round trips."
    )
    # --- stream worker -------------------------------------------------------------------------
    consumer_group: str = _setting("flowscope-stream", "Consumer group of the stream workers.")
    batch_max_records: int = _setting(50000, "Most events one warehouse insert carries.")
    batch_max_wait_ms: int = _setting(250, "Longest a fetched event waits before its batch is inserted.")
    broker_session_timeout_s: float = _setting(6.0, "Consumer group session timeout (tansu holds joins half of it).")
    stream_metrics_host: str = _setting("127.0.0.1", "Bind address of the stream worker's /metrics endpoint.")
    stream_metrics_port: int = _setting(9102, "Port of the stream worker's /metrics endpoint (0 = off).")
    gauge_refresh_s: float = _setting(15.0, "How often a stream worker refreshes its warehouse-derived gauges.")
    session_timeout_s: int = _setting(1800, "A session with no activity for this long, not completed, is abandoned.")
    rate_card: str = _setting("", "CSV rate card `flowscope up` loads (config/ratecard.py); empty: the sample card "
                                  "when simulating traffic, else none (load one with `flowscope ratecard load`).")
    opt_out_window_h: int = _setting(48, "Opt-outs count when a user stops marketing messages this many hours after "
                                         "a Flow message (the dashboards' default window).")
    catalog_refresh_s: float = _setting(10.0, "Least time between two reloads of registered flow definitions.")
    dedup_window: int = _setting(1_000_000, "Event ids each worker remembers to drop duplicates before insert.")
    rollup_interval_s: float = _setting(5.0, "Seconds between two passes of the warehouse rollup.")
    rollup_seal_after_s: int = _setting(
        120, "Minutes of delivery counts this old are sealed into sums (a later status reseals its minute)."
    )
    rollup_reads_interval_s: float = _setting(
        5.0, "Seconds between two refreshes of the messages read without a delivered status."
    )
    rollup_metrics_port: int = _setting(9104, "Port of the warehouse rollup's /metrics endpoint (0 = off).")
    # --- embedded stack ------------------------------------------------------------------------
    data_dir: Path = _setting(Path("data"), "Where the embedded stack keeps its data (warehouse, broker).")
    broker_storage: str = _setting(
        "durable", "Embedded broker storage: durable (tansu on a local SeaweedFS S3) or memory (lost when it stops)."
    )
    seaweedfs_base_port: int = _setting(
        18330, "First of 10 consecutive loopback ports of the embedded SeaweedFS (durable broker; S3 = base + 6)."
    )
    broker_retention_s: float = _setting(
        86400.0, "Durable broker: records older than this are removed, consumed or not (Kafka's retention.ms)."
    )
    broker_retention_bytes: int = _setting(
        1024**3, "Durable broker: most bytes of records kept per partition; the oldest go first (retention.bytes)."
    )
    broker_retention_consumed_s: float = _setting(
        10.0, "Durable broker: records every consumer group committed past are removed after this many seconds."
    )
    broker_retention_interval_s: float = _setting(2.0, "Durable broker: seconds between two retention sweeps.")
    broker_retention_meta_log_s: float = _setting(
        600.0, "Durable broker: seconds SeaweedFS's metadata change log is kept (only replication reads it)."
    )
    broker_metrics_port: int = _setting(9103, "Port of the durable broker's retention /metrics endpoint (0 = off).")
    dashboard_host: str = _setting("127.0.0.1", "Streamlit dashboards bind address.")
    dashboard_port: int = _setting(8501, "Streamlit dashboards port.")
    dashboard_password: str = _setting(DEV_DASHBOARD_PASSWORD, "Password of the dashboards' login page.", secret=True)
    prometheus_port: int = _setting(9090, "Port of the Prometheus `flowscope up` runs when it is installed.")
    alertmanager_port: int = _setting(9093, "Port of the Alertmanager `flowscope up` runs when it is installed.")
    alert_webhook_url: str = _setting("", "Where `flowscope up`'s Alertmanager posts alerts (empty: only its UI).")
    simulate_rate: float = _setting(200.0, "Webhook POSTs per second that `flowscope up` simulates (0 = none).")
    simulate_history_days: int = _setting(14, "Days of simulated history `flowscope up` sends through the pipeline "
                                              "before its live traffic, so every page is full at once (0 = none).")
    # --- privacy -------------------------------------------------------------------------------
    form_fields_allowlist: tuple[str, ...] = _setting(
        (), "Flow response fields whose values may be stored (comma separated); other answers are dropped."
    )
    log_level: str = _setting("INFO", "Log level of every process.")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ
        for key, instead in REPLACED.items():
            if key in env:
                raise SettingsError(f"{key} is no longer read: {instead}")
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            key = PREFIX + f.name.upper()
            if key not in env:
                continue
            parser = _PARSERS[str(f.type)]
            try:
                values[f.name] = parser(env[key])
            except ValueError as exc:
                raise SettingsError(f"{key}: {exc}") from exc
        values.update(overrides)
        settings = cls(**values)
        settings.validate()
        return settings

    @classmethod
    def build(cls, **values: Any) -> Settings:
        """Settings from typed values (the defaults for the rest), validated: for code that composes pipelines."""
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.producer_connections < 1:
            raise SettingsError(f"{PREFIX}PRODUCER_CONNECTIONS must be at least 1, got {self.producer_connections}")
        if self.partitions < 1:
            raise SettingsError(f"{PREFIX}PARTITIONS must be at least 1, got {self.partitions}")
        if self.warehouse_retention_days < 0:
            raise SettingsError(f"{PREFIX}WAREHOUSE_RETENTION_DAYS must be 0 (keep forever) or more, "
                                f"got {self.warehouse_retention_days}")
        if self.producer_linger_ms < -1:
            raise SettingsError(f"{PREFIX}PRODUCER_LINGER_MS must be -1 (by broker storage) or more, "
                                f"got {self.producer_linger_ms}")
        if self.broker_storage not in {"durable", "memory"}:
            raise SettingsError(f"{PREFIX}BROKER_STORAGE must be 'durable' or 'memory', got {self.broker_storage!r}")
        for name in ("broker_retention_s", "broker_retention_bytes", "broker_retention_consumed_s",
                     "broker_retention_interval_s", "broker_retention_meta_log_s"):
            if not getattr(self, name) > 0:
                raise SettingsError(f"{PREFIX}{name.upper()} must be greater than 0, got {getattr(self, name)}")
        if not self.hash_key:
            raise SettingsError(f"{PREFIX}HASH_KEY must not be empty")
        if not self.app_secret:
            raise SettingsError(f"{PREFIX}APP_SECRET must not be empty")
        for role in WAREHOUSE_ROLES:
            if not getattr(self, f"warehouse_{role}_password"):
                raise SettingsError(f"{PREFIX}WAREHOUSE_{role.upper()}_PASSWORD must not be empty: no warehouse user "
                                    "is password-less")
        if len({getattr(self, f"warehouse_{role}_user") for role in WAREHOUSE_ROLES}) != len(WAREHOUSE_ROLES):
            raise SettingsError("the warehouse admin, writer and analyst must be three different users")
        try:
            self.broker_port, self.warehouse_port  # noqa: B018 - both URLs must name a port
        except ValueError as exc:
            raise SettingsError(str(exc)) from exc

    # The embedded broker and warehouse server listen where the URLs every component uses point: one fact each.
    @property
    def broker_host(self) -> str:
        return _bootstrap_address(self.kafka_bootstrap)[0]

    @property
    def broker_port(self) -> int:
        return _bootstrap_address(self.kafka_bootstrap)[1]

    @property
    def warehouse_host(self) -> str:
        return urlparse(self.warehouse_url).hostname or "127.0.0.1"

    @property
    def warehouse_port(self) -> int:
        url = urlparse(self.warehouse_url)
        try:
            return url.port or (8443 if url.scheme == "https" else 8123)
        except ValueError as exc:
            raise ValueError(f"{PREFIX}WAREHOUSE_URL has no valid port: {self.warehouse_url!r}") from exc

    @property
    def dev_secrets_in_use(self) -> list[str]:
        dev = {"app_secret": DEV_APP_SECRET, "verify_token": DEV_VERIFY_TOKEN, "hash_key": DEV_HASH_KEY,
               "events_token": DEV_EVENTS_TOKEN, "dashboard_password": DEV_DASHBOARD_PASSWORD,
               **{f"warehouse_{role}_password": password for role, password in DEV_WAREHOUSE_PASSWORDS.items()}}
        return [PREFIX + name.upper() for name, value in dev.items() if getattr(self, name) == value]

    def warehouse_user(self, role: str) -> tuple[str, str]:
        """(user, password) of a warehouse role: admin, writer or analyst."""
        if role not in WAREHOUSE_ROLES:
            raise SettingsError(f"unknown warehouse role {role!r}; expected one of {', '.join(WAREHOUSE_ROLES)}")
        return getattr(self, f"warehouse_{role}_user"), getattr(self, f"warehouse_{role}_password")

    def warehouse_url_for(self, role: str) -> str:
        """The warehouse URL with a role's credentials: what that role's processes connect with."""
        user, password = self.warehouse_user(role)
        url = urlsplit(self.warehouse_url)
        netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{url.hostname}"
        if url.port:
            netloc += f":{url.port}"
        return urlunsplit((url.scheme, netloc, url.path, url.query, url.fragment))

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}.{name}"

    @property
    def resolved_producer_linger_ms(self) -> int:
        """The producer linger in use: ``producer_linger_ms``, or its broker storage's default when it is -1."""
        if self.producer_linger_ms >= 0:
            return self.producer_linger_ms
        return DURABLE_PRODUCER_LINGER_MS if self.broker_storage == "durable" else 0

    @property
    def events_topic(self) -> str:
        return self.topic("events")

    @property
    def dead_letter_topic(self) -> str:
        return self.topic("dead-letter")

    def as_env(self, *, secrets: Collection[str] | None = None) -> dict[str, str]:
        """The environment that reproduces these settings in a child process.

        ``secrets``: the secret settings the child may see (by field name); every other secret is left out, so
        the child runs with its development default. ``None`` passes them all (a child that is the same program).
        """
        unknown = set(secrets or ()) - set(SECRETS)
        if unknown:
            raise SettingsError(f"not secret settings: {sorted(unknown)}")
        env: dict[str, str] = {}
        for f in dataclasses.fields(self):
            if secrets is not None and f.metadata.get("secret") and f.name not in secrets:
                continue
            value = getattr(self, f.name)
            env[PREFIX + f.name.upper()] = ",".join(value) if isinstance(value, tuple) else str(value)
        return env


SECRETS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Settings) if f.metadata.get("secret"))


def describe() -> list[tuple[str, str, str]]:
    """(variable, default, description) for every setting: the README table is generated from this."""
    rows = []
    for f in dataclasses.fields(Settings):
        default = f.default
        shown = ",".join(default) if isinstance(default, tuple) else str(default)
        rows.append((PREFIX + f.name.upper(), shown, str(f.metadata.get("doc", ""))))
    return rows
