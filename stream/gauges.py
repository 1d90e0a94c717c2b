"""Gauges read from the warehouse: Flow session counts and each flow's health as Meta reported it.

A worker refreshes them every ``gauge_refresh_s``. They describe the warehouse, not the worker, so
with several workers every one reports the same values: aggregate them with ``max()``. A label set
that disappears from the warehouse (a flow with no session left in range, say) is removed, never
left at a stale value.

Why they stay in the worker for now, said plainly: each worker runs the same two queries every
``gauge_refresh_s`` — an all-history ``funnel`` (it merges every session) and ``flow_states`` — so N workers
cost N identical queries for one set of values. One exporter process would cost one. Moving them renames the
metrics (``flowscope_stream_*`` is the component prefix), the Prometheus job the alert rules and their
promtool tests select, and the process set of ``flowscope up`` and docker-compose; the re-layout keeps
behaviour, so that move belongs with the issue that makes the funnel a read of pre-aggregated sessions
(dashboards at 100M events), when the exporter's query also becomes cheap.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import mode
from prometheus_client import Gauge

from config.settings import Settings
from contract.events import FLOW_STATUSES
from stream import metrics
from warehouse.client import connect
from warehouse.exceptions import WarehouseError
from warehouse.flows import STATES, FlowFilter, funnel
from warehouse.health import FlowState, flow_states

logger = logging.getLogger(__name__)

# Sessions counted since this date: every session the warehouse holds.
_EPOCH = datetime(2000, 1, 1)
_VALUE_GAUGES = {
    "client_error_rate": metrics.FLOW_CLIENT_ERROR_RATIO,
    "endpoint_error_rate": metrics.FLOW_ENDPOINT_ERROR_RATIO,
    "endpoint_latency": metrics.FLOW_ENDPOINT_LATENCY_P90,
    "endpoint_availability": metrics.FLOW_ENDPOINT_AVAILABILITY,
}


@dataclass
class GaugeValues:
    """One refresh's values: gauge → {label values → value}."""

    values: dict[Gauge, dict[tuple[str, ...], float]] = field(default_factory=dict)

    def set(self, gauge: Gauge, labels: tuple[str, ...], value: float) -> None:
        self.values.setdefault(gauge, {})[labels] = value


def session_values(counts: Iterable[tuple[str, dict[str, int]]], into: GaugeValues) -> None:
    for flow_id, by_state in counts:
        for state in STATES:
            into.set(metrics.FLOW_SESSIONS, (flow_id, state), by_state.get(state, 0))


def health_values(states: Iterable[FlowState], into: GaugeValues) -> None:
    for state in states:
        if state.status:
            for status in FLOW_STATUSES:
                into.set(metrics.FLOW_STATUS, (state.flow_id, status), 1 if state.status == status else 0)
        for alert, active in state.alerts.items():
            into.set(metrics.FLOW_ALERT_ACTIVE, (state.flow_id, alert), 1 if active else 0)
        for alert, value in state.values.items():
            into.set(_VALUE_GAUGES[alert], (state.flow_id,), value)


class GaugePublisher:
    """Applies refreshes to the gauges, removing label sets the latest refresh no longer has."""

    GAUGES = (metrics.FLOW_SESSIONS, metrics.FLOW_STATUS, metrics.FLOW_ALERT_ACTIVE, *_VALUE_GAUGES.values())

    def __init__(self) -> None:
        self._published: dict[Gauge, set[tuple[str, ...]]] = {gauge: set() for gauge in self.GAUGES}

    def publish(self, values: GaugeValues) -> None:
        for gauge in self.GAUGES:
            new = values.values.get(gauge, {})
            for labels, value in new.items():
                gauge.labels(*labels).set(value)
            for labels in self._published[gauge] - new.keys():
                gauge.remove(*labels)
            self._published[gauge] = set(new)


def read_values(settings: Settings) -> GaugeValues:
    """Query the warehouse for every gauge's current values (blocking; run it in a thread)."""
    client = connect(settings.warehouse_url_for("analyst"), send_receive_timeout=30)
    try:
        now = datetime.now(UTC).replace(tzinfo=None)
        where = FlowFilter(start=_EPOCH, end=now + timedelta(days=1), timeout_s=settings.session_timeout_s, now=now)
        frame = funnel(client, where, by=("flow_id",))
        values = GaugeValues()
        session_values(
            ((str(row["flow_id"]), {state: int(row[state]) for state in STATES}) for _, row in frame.iterrows()),
            values,
        )
        health_values(flow_states(client), values)
        return values
    finally:
        client.close()


class WarehouseGauges(mode.Service):
    """Refreshes the warehouse-derived gauges every ``gauge_refresh_s``; a failed refresh keeps the old values."""

    def __init__(self, *, settings: Settings, read: Callable[[Settings], GaugeValues] = read_values,
                 **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.settings = settings
        self.read = read
        self.publisher = GaugePublisher()

    @mode.Service.task
    async def _refresh(self) -> None:
        interval = self.settings.gauge_refresh_s
        while not self.should_stop:
            try:
                values = await asyncio.wait_for(asyncio.to_thread(self.read, self.settings), timeout=60)
            except (WarehouseError, TimeoutError) as exc:  # warehouse down or slow: keep the last values, retry later
                logger.warning("refreshing warehouse gauges failed (%r); retrying in %.0f s", exc, interval)
            else:
                self.publisher.publish(values)
                metrics.GAUGES_REFRESHED.set(time.time())
            await self.sleep(interval)

