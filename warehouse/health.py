"""Flow health from Meta's ``flows`` webhooks: the current state per flow and the history of events.

The current state comes from ``flow_health_current`` (argMax states per flow and event kind), never
from a rescan of the raw events; the history reads ``flow_health_events`` with FINAL, so a
redelivered webhook appears once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
from clickhouse_connect.driver.client import Client

from contract.events import FLOW_ALERTS
from warehouse.tables import FLOW_HEALTH_CURRENT_TABLE, FLOW_HEALTH_EVENTS_TABLE

LATEST_COLUMNS = (
    "flow_id", "event", "occurred_at", "new_status", "alert_state", "message", "error_rate", "threshold",
    "p50_latency_ms", "p90_latency_ms", "requests_count", "availability", "waba_id", "events",
)
HISTORY_COLUMNS = (
    "occurred_at", "flow_id", "event", "old_status", "new_status", "alert_state", "error_rate", "threshold",
    "p50_latency_ms", "p90_latency_ms", "requests_count", "availability", "error_types", "error_counts", "message",
)


@dataclass(frozen=True)
class FlowState:
    """What Meta last said about one flow: its status and each health alert's state and value."""

    flow_id: str
    status: str  # "" until a FLOW_STATUS_CHANGE arrived
    status_since: datetime | None
    alerts: dict[str, bool]  # client_error_rate, endpoint_error_rate, ... → active
    values: dict[str, float]  # latest value per alert: a ratio (0..1), or seconds for endpoint_latency
    updated_at: datetime


def latest(client: Client) -> pd.DataFrame:
    """One row per flow and event kind: Meta's latest event of that kind, with its figures."""
    sql = f"""
        SELECT flow_id, event, l.1, l.2, l.3, l.4, l.5, l.6, l.7, l.8, l.9, l.10, l.11, n
        FROM (
            SELECT flow_id, event, argMaxMerge(latest) AS l, uniqExactMerge(events) AS n
            FROM {FLOW_HEALTH_CURRENT_TABLE}
            GROUP BY flow_id, event
        )
        ORDER BY flow_id, event
    """
    result = client.query(sql)
    return pd.DataFrame(result.result_rows, columns=list(LATEST_COLUMNS))


def flow_states(client: Client) -> list[FlowState]:
    """The current state of every flow Meta has reported on, ordered by flow_id."""
    frame = latest(client)
    states = []
    for flow_id, rows in frame.groupby("flow_id", sort=True):
        status, since = "", None
        alerts: dict[str, bool] = {}
        values: dict[str, float] = {}
        for row in rows.itertuples(index=False):
            if row.event == "FLOW_STATUS_CHANGE":
                status, since = row.new_status, row.occurred_at
            alert = FLOW_ALERTS.get(row.event)
            if alert is None:
                continue
            alerts[alert] = row.alert_state == "ACTIVATED"
            value = _alert_value(row.event, row)
            if value is not None:
                values[alert] = value
        states.append(FlowState(str(flow_id), status, since, alerts, values, rows["occurred_at"].max()))
    return states


def history(client: Client, *, start: datetime, end: datetime, flow_id: str = "") -> pd.DataFrame:
    """Every flows webhook in [start, end] (UTC), newest first, optionally of one flow."""
    sql = f"""
        SELECT {", ".join(HISTORY_COLUMNS)}
        FROM {FLOW_HEALTH_EVENTS_TABLE} FINAL
        WHERE occurred_at >= {{start:DateTime('UTC')}} AND occurred_at <= {{end:DateTime('UTC')}}
          AND ({{flow_id:String}} = '' OR flow_id = {{flow_id:String}})
        ORDER BY occurred_at DESC, received_at DESC
    """
    parameters: dict[str, Any] = {"start": start, "end": end, "flow_id": flow_id}
    result = client.query(sql, parameters=parameters)
    return pd.DataFrame(result.result_rows, columns=list(HISTORY_COLUMNS))


def _alert_value(event: str, row: Any) -> float | None:
    """The figure an alert is about, as a ratio or seconds; None when Meta did not send it."""
    if event in ("CLIENT_ERROR_RATE", "ENDPOINT_ERROR_RATE"):
        raw = row.error_rate
    elif event == "ENDPOINT_AVAILABILITY":
        raw = row.availability
    else:
        raw = row.p90_latency_ms
    if raw is None or raw < 0:
        return None
    return float(raw) / (1000 if event == "ENDPOINT_LATENCY" else 100)
