"""The one pipeline harness of the tests, ``flowscope chaos`` and ``flowscope bench``.

:func:`isolated_settings` builds settings for a pipeline of its own (fresh secrets, free loopback ports,
its own data directory); :class:`Pipeline` starts its components as separate processes with the same
specs as ``flowscope up``, under a supervisor of its own, and stops every one of them on :meth:`close`;
:func:`poll` waits for a condition with a deadline.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from config.settings import WAREHOUSE_ROLES, Settings
from embedded.exceptions import SupervisorError
from embedded.specs import (
    SEAWEEDFS_PORTS,
    broker_specs,
    dashboards_spec,
    receiver_spec,
    rollup_spec,
    stream_spec,
    warehouse_spec,
)
from embedded.supervisor import ProcessSpec, Supervisor, free_port, free_port_block
from ingest.paths import EVENTS_PATH, WEBHOOK_PATH

logger = logging.getLogger(__name__)

# Components started by name; "broker" is SeaweedFS then tansu when the broker is durable, and
# "stream-<n>" is one of several numbered stream workers.
_SPECS: dict[str, Callable[[Settings], ProcessSpec]] = {
    "warehouse": warehouse_spec,
    "receiver": receiver_spec,
    "stream": stream_spec,
    "dashboards": dashboards_spec,
}


def isolated_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings for a pipeline of its own: fresh secrets, every port free on loopback, data in ``data_dir``.

    The tests and ``flowscope chaos`` run such pipelines side by side with ``flowscope up``.
    """
    values: dict[str, Any] = {
        "app_secret": secrets.token_hex(16),
        "verify_token": secrets.token_hex(8),
        "hash_key": secrets.token_hex(16),
        "events_token": secrets.token_hex(16),
        "data_dir": Path(data_dir),
        "seaweedfs_base_port": free_port_block(len(SEAWEEDFS_PORTS)),
        "kafka_bootstrap": f"127.0.0.1:{free_port()}",
        "warehouse_url": f"http://127.0.0.1:{free_port()}/flowscope",
        **{f"warehouse_{role}_password": secrets.token_hex(12) for role in WAREHOUSE_ROLES},
        "dashboard_password": secrets.token_hex(12),
        "ingest_port": free_port(),
        "stream_metrics_port": free_port(),
        "broker_metrics_port": free_port(),
        "rollup_metrics_port": free_port(),
        "dashboard_port": free_port(),
        "prometheus_port": free_port(),
        "alertmanager_port": free_port(),
        "partitions": 4,
    }
    return Settings.build(**{**values, **overrides})


def poll(check: Callable[[], Any], *, want: Any, deadline_s: float = 60, interval_s: float = 0.2) -> Any:
    """Call ``check`` until it returns ``want`` or the deadline passes; returns the last value."""
    deadline = time.monotonic() + deadline_s
    value = check()
    while value != want and time.monotonic() < deadline:
        time.sleep(interval_s)
        value = check()
    return value


class Pipeline:
    """A pipeline of its own: its settings, and a supervisor owning every process it starts.

    Components are started by name (``broker``, ``warehouse``, ``receiver``, ``stream``, ``stream-<n>``,
    ``dashboards``); faults are injected by process name (``seaweedfs``, ``broker``, ``warehouse``, ...).
    Use it as a context manager, or call :meth:`close`, so that every process stops.
    """

    def __init__(self, settings: Settings, supervisor: Supervisor | None = None) -> None:
        self.settings = settings
        self.supervisor = supervisor if supervisor is not None else Supervisor(log_dir=settings.data_dir / "logs")
        self.specs: dict[str, ProcessSpec] = {}  # every process started, by name: what restart() starts again

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- where it answers ----------------------------------------------------------------------

    @property
    def receiver_url(self) -> str:
        return f"http://{self.settings.ingest_host}:{self.settings.ingest_port}"

    @property
    def webhook_url(self) -> str:
        return self.receiver_url + WEBHOOK_PATH

    @property
    def events_url(self) -> str:
        return self.receiver_url + EVENTS_PATH

    # --- processes -----------------------------------------------------------------------------

    def specs_of(self, component: str) -> list[ProcessSpec]:
        """The processes that run ``component``, in start order."""
        if component == "broker":  # with its storage (SeaweedFS) when durable
            return broker_specs(self.settings)
        if component.startswith("stream-"):
            return [stream_spec(self.settings, name=component)]
        if component not in _SPECS:
            raise ValueError(f"unknown component {component!r}: one of broker, stream-<n>, {', '.join(_SPECS)}")
        return [_SPECS[component](self.settings)]

    def start(self, *components: str) -> None:
        """Start each component and wait until it is ready; a started warehouse gets its migrations and its
        rollup (process ``rollup``)."""
        for component in components:
            for spec in self.specs_of(component):
                self.run(spec)
            if component == "warehouse":
                from warehouse.migrate import migrate

                migrate(self.settings.warehouse_url_for("admin"),
                        retention_days=self.settings.warehouse_retention_days)
                if "rollup" not in self.specs:
                    self.run(rollup_spec(self.settings))

    def run(self, spec: ProcessSpec) -> None:
        """Start a process of the caller's own (a benchmark's no-op endpoint, say) and wait until it is ready."""
        self.specs[spec.name] = spec
        self.supervisor.start(spec)

    def stop(self, *names: str) -> None:
        """Stop each named process (SIGTERM, then SIGKILL after a grace period)."""
        for name in names:
            self.supervisor.stop(name)

    def kill(self, name: str) -> float:
        """SIGKILL the process ``name`` at once; returns when (``time.monotonic()``)."""
        self.supervisor.kill(name)
        return time.monotonic()

    def restart(self, name: str) -> float:
        """Start the process ``name`` again and wait until it is ready; returns when it was started."""
        started = time.monotonic()
        self.supervisor.start(self.specs[name])
        return started

    def pause(self, name: str) -> None:
        """SIGSTOP the process ``name`` (a consumer falling behind, say)."""
        self.supervisor.pause(name)

    def resume(self, name: str) -> None:
        self.supervisor.resume(name)

    def close(self) -> None:
        """Stop every process this pipeline started, in reverse start order."""
        self.supervisor.stop_all()


def register_simulated_flows(settings: Settings, *, deadline_s: float = 60.0) -> list[str]:
    """PUT the Flow JSON of every flow version the simulator plays to the receiver, as a business would.

    The one write path of flow definitions: receiver, broker, stream worker, warehouse; all four must run.
    Returns once the worker has stored every version, so sessions that follow are checked against their
    flow's screens from the first event.
    """
    from flowtools.registration import register_flow_json
    from flowtools.simulator.flows import FLOWS, write_flow_jsons
    from warehouse.client import connect
    from warehouse.exceptions import WarehouseError
    from warehouse.screens import load_catalog

    names, keys = [], set()
    display = {flow.flow_id: flow.name.replace("_", " ").capitalize() for flow in FLOWS}  # "Lead form"
    for flow_id, version, path in write_flow_jsons(settings.data_dir / "flows"):
        register_flow_json(settings, flow_id=flow_id, version=version, flow_json=path.read_bytes(),
                           name=display[flow_id])
        names.append(f"{flow_id} v{version}")
        keys.add((flow_id, version))
    client = connect(settings.warehouse_url_for("analyst"))
    try:
        deadline = time.monotonic() + deadline_s
        while True:
            try:
                if keys <= load_catalog(client).keys():
                    return names
            except WarehouseError:
                pass  # busy: ask again
            if time.monotonic() > deadline:
                raise SupervisorError(f"the stream worker did not store the registered flows within {deadline_s:.0f} s")
            time.sleep(0.2)
    finally:
        client.close()
