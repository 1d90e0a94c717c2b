"""``flowscope up`` and ``flowscope broker``: run the embedded pipeline (or its broker) in the foreground."""

from __future__ import annotations

import dataclasses
import logging
import signal
import socket
import time
from pathlib import Path
from types import FrameType

from config.settings import Settings
from embedded.alerting import alerting_note, alertmanager_spec, missing_binaries, prometheus_spec
from embedded.exceptions import SupervisorError
from embedded.specs import (
    SEAWEEDFS_PORTS,
    broker_specs,
    dashboards_spec,
    flow_simulator_spec,
    receiver_spec,
    rollup_spec,
    simulator_spec,
    stream_spec,
    warehouse_spec,
)
from embedded.supervisor import (
    Supervisor,
)
from flowtools.harness import register_simulated_flows
from flowtools.simulator.flows import ALLOWLIST as SIMULATED_SELECTIONS
from flowtools.simulator.history import send_history
from ingest.paths import EVENTS_PATH, WEBHOOK_PATH

logger = logging.getLogger(__name__)


def _say(message: str) -> None:
    print(message, flush=True)  # noqa: T201 - the command's own console output


def _history(settings: Settings) -> None:
    """Send the simulated history (FLOWSCOPE_SIMULATE_HISTORY_DAYS) through the receiver, with progress."""
    days = settings.simulate_history_days
    base = f"http://127.0.0.1:{settings.ingest_port}"
    _say(f"sending {days} days of simulated history through the pipeline (FLOWSCOPE_SIMULATE_HISTORY_DAYS=0: none)")
    began = time.monotonic()
    failed = send_history(days=days, webhook_url=base + WEBHOOK_PATH, events_url=base + EVENTS_PATH,
                          app_secret=settings.app_secret, events_token=settings.events_token, say=_say,
                          now_s=int(time.time()))
    note = f"; {failed:,} POSTs never landed (see the receiver's log)" if failed else ""
    _say(f"history sent in {time.monotonic() - began:.1f} s{note}; the pages fill as the stream writes it")


def run_up(settings: Settings) -> int:
    """Start the whole embedded pipeline plus simulated traffic; stop everything on Ctrl-C."""
    from config.ratecard import SAMPLE_PATH, RateCard
    from warehouse.client import connect
    from warehouse.costs import store_rate_card
    from warehouse.migrate import migrate

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    # Ctrl-C stops everything, even when started from a shell that ignores SIGINT for background jobs
    # (Python then keeps SIGINT ignored instead of raising KeyboardInterrupt).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    settings = _embedded(settings)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request (registrations, history) buries progress
    if settings.simulate_rate > 0 and not settings.form_fields_allowlist:
        # The simulated flows' selection fields (never free text), so the choices on selection screens show.
        settings = dataclasses.replace(settings, form_fields_allowlist=SIMULATED_SELECTIONS)
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
            applied = migrate(settings.warehouse_url_for("admin"), retention_days=settings.warehouse_retention_days)
            _say(f"warehouse schema ready ({len(applied)} migrations applied)")
            specs = [receiver_spec(settings), stream_spec(settings), rollup_spec(settings), dashboards_spec(settings)]
            if alerting_installed():
                specs += [alertmanager_spec(settings, webhook_url=settings.alert_webhook_url),
                          prometheus_spec(settings)]
            for spec in specs:
                _say(f"starting {spec.name} ...")
                supervisor.start(spec)
            card_path = Path(settings.rate_card) if settings.rate_card else (
                SAMPLE_PATH if settings.simulate_rate > 0 else None)
            if card_path is not None:
                card = RateCard.from_file(card_path)
                store_rate_card(connect(settings.warehouse_url_for("writer")), card, source=card_path.name)
                sample = " (the SAMPLE card: made-up prices, not Meta's)" if card_path == SAMPLE_PATH else ""
                _say(f"rate card {card_path.name} loaded: {len(card.rates)} rates{sample}")
            if settings.simulate_rate > 0:
                names = register_simulated_flows(settings)
                _say(f"registered the simulated flows' Flow JSON: {', '.join(names)}")
                if settings.simulate_history_days > 0:
                    _history(settings)
                for spec in (simulator_spec(settings), flow_simulator_spec(settings)):
                    _say(f"starting {spec.name} ...")
                    supervisor.start(spec)
            _say("")
            _say(f"flowscope is up after {time.monotonic() - started:.1f} s  (logs: {log_dir}/)")
            for child in supervisor.children.values():
                _say(f"  {child.spec.name:<11} {child.spec.url}")
            for line in analyst_access(settings):
                _say(f"  {'':<11} {line}" if line.startswith(("clickhouse", "curl")) else f"  {'sql':<11} {line}")
            note = alerting_note()
            if note:
                _say(f"  {'alerting':<11} {note}")
            _say("Press Ctrl-C to stop everything.\n")
            client = connect(settings.warehouse_url_for("analyst"))
            status = StatusLine(settings)
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
                _say(status.line(stored))
                time.sleep(STATUS_INTERVAL_S)
        except KeyboardInterrupt:
            _say("\nstopping ...")
        except SupervisorError as exc:
            _say(f"error: {exc}")
            return 1
        finally:
            supervisor.stop_all()
    _say("stopped; no flowscope process is left running")
    return 0


STATUS_INTERVAL_S = 5.0
BEHIND_WARNING_S = 10.0  # the status line says "FALLING BEHIND" past this


class StatusLine:
    """One line every few seconds: what is stored, how fast, and how far the warehouse is behind.

    *Behind* is the age of the newest event the stream worker wrote (now minus the time the receiver took
    it in): under steady traffic, the pipeline's freshness; growing, a backlog. Lag is the records the
    worker has yet to write; broker objects are what the durable broker's fetches list (bounded by retention).
    """

    def __init__(self, settings: Settings) -> None:
        self.stream = f"http://127.0.0.1:{settings.stream_metrics_port}/metrics"
        self.broker = (f"http://127.0.0.1:{settings.broker_metrics_port}/metrics"
                       if settings.broker_storage == "durable" and settings.broker_metrics_port else None)
        self.previous: tuple[float, int] | None = None

    def line(self, stored: int) -> str:
        from embedded.scrape import metric_sum

        now = time.monotonic()
        parts = [f"[{time.strftime('%H:%M:%S')}] message statuses stored: {stored:,}"]
        if self.previous is not None and now > self.previous[0]:
            parts.append(f"+{max(0, stored - self.previous[1]) / (now - self.previous[0]):,.0f}/s")
        self.previous = (now, stored)
        newest = metric_sum(self.stream, "flowscope_stream_last_event_received_timestamp_seconds")
        if newest:
            behind = max(0.0, time.time() - newest)
            parts.append(f"behind {behind:.1f} s" + (" FALLING BEHIND" if behind > BEHIND_WARNING_S else ""))
        lag = metric_sum(self.stream, "flowscope_stream_consumer_lag_messages")
        if lag is not None:
            parts.append(f"lag {lag:,.0f} records")
        if self.broker is not None:
            objects = metric_sum(self.broker, "flowscope_broker_record_objects")
            if objects is not None:
                parts.append(f"broker {objects:,.0f} objects")
        return " · ".join(parts)


def _stored(client: object) -> int:
    from warehouse.exceptions import WarehouseError
    from warehouse.queries import stored_status_count

    try:
        return stored_status_count(client)  # type: ignore[arg-type]
    except WarehouseError:  # the warehouse may be busy; the next tick tries again
        return 0


def _embedded(settings: Settings) -> Settings:
    """Settings of ``flowscope up``: an absolute data directory, and the simulated flows' fields allow-listed."""
    import dataclasses

    allowlist = settings.form_fields_allowlist
    if not allowlist and settings.simulate_rate > 0:
        from flowtools.simulator.flows import ALLOWLIST

        allowlist = ALLOWLIST  # the simulated flows' selection fields
    return dataclasses.replace(
        settings,
        form_fields_allowlist=tuple(allowlist),
        data_dir=Path(settings.data_dir).resolve(),
    )


def analyst_access(settings: Settings) -> list[str]:
    """How a data person reaches the warehouse read-only: the analyst's credentials and two ways to connect."""
    user, password = settings.warehouse_user("analyst")
    server = settings.warehouse_url.rstrip("/").rsplit("/", 1)[0]
    return [
        f"{settings.warehouse_url} as the read-only analyst: user {user}, password {password}",
        f'clickhouse-connect: clickhouse_connect.get_client(dsn="{settings.warehouse_url_for("analyst")}")',
        f"curl: curl -u '{user}:{password}' '{server}/' --data-binary 'SELECT count() FROM flowscope.message_statuses'",
    ]


def main_broker(settings: Settings) -> int:
    """Run only the embedded broker (and its storage, when durable) in the foreground."""
    specs = broker_specs(settings)
    with Supervisor(log_dir=settings.data_dir / "logs") as supervisor:
        for spec in specs:
            supervisor.start(spec)
        broker = next(spec for spec in specs if spec.name == "broker")
        _say(f"broker listening: {broker.url}; Ctrl-C stops it")
        try:
            while not supervisor.exited():
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0


def _check_free(settings: Settings) -> None:
    wanted = {
        "FLOWSCOPE_KAFKA_BOOTSTRAP": (settings.broker_host, settings.broker_port),
        **({f"FLOWSCOPE_SEAWEEDFS_BASE_PORT (+{offset}, {flag})": ("127.0.0.1", settings.seaweedfs_base_port + offset)
            for flag, offset in SEAWEEDFS_PORTS.items()} if settings.broker_storage == "durable" else {}),
        "FLOWSCOPE_WAREHOUSE_URL": (settings.warehouse_host, settings.warehouse_port),
        "FLOWSCOPE_INGEST_PORT": (settings.ingest_host, settings.ingest_port),
        "FLOWSCOPE_STREAM_METRICS_PORT": ("127.0.0.1", settings.stream_metrics_port),
        "FLOWSCOPE_ROLLUP_METRICS_PORT": ("127.0.0.1", settings.rollup_metrics_port),
        **({"FLOWSCOPE_BROKER_METRICS_PORT": ("127.0.0.1", settings.broker_metrics_port)}
           if settings.broker_storage == "durable" and settings.broker_metrics_port else {}),
        "FLOWSCOPE_DASHBOARD_PORT": ("127.0.0.1", settings.dashboard_port),
    }
    if alerting_installed():
        wanted["FLOWSCOPE_PROMETHEUS_PORT"] = ("127.0.0.1", settings.prometheus_port)
        wanted["FLOWSCOPE_ALERTMANAGER_PORT"] = ("127.0.0.1", settings.alertmanager_port)
    for key, (host, port) in wanted.items():
        if not port:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # As the servers bind: connections of a previous run in TIME_WAIT do not make the port busy.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError as exc:
                raise SupervisorError(f"port {port} is busy ({exc.strerror}); set {key} to another port") from exc


def alerting_installed() -> bool:
    return not missing_binaries()


