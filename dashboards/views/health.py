"""Flow health: each flow's status and Meta's health alerts now, and the history of Meta's flows webhooks."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import streamlit as st

from dashboards.filters import RANGES, not_by_country, period
from dashboards.state import freshness_caption, warehouse, warehouse_guard
from dashboards.tables import show
from warehouse import health

ALERT_TITLES = {
    "client_error_rate": "Client errors",
    "endpoint_error_rate": "Endpoint errors",
    "endpoint_latency": "Endpoint latency (p90)",
    "endpoint_availability": "Endpoint availability",
}

st.title("Flow health")
st.caption(
    "From Meta's `flows` webhooks: status changes (DRAFT, PUBLISHED, THROTTLED, BLOCKED, DEPRECATED) and the "
    "client error rate, endpoint error rate, latency and availability alerts. The same state is exported as "
    "Prometheus gauges (`flowscope_stream_flow_status`, `flowscope_stream_flow_alert_active`), which page on-call."
)
with warehouse_guard():
    client = warehouse()

chosen_period = period(RANGES, default="Last 30 days", label="History of")
not_by_country("Flow health is")
with st.sidebar:
    refresh_s = int(st.select_slider("Refresh every (s)", options=[2, 5, 10, 30, 60], value=5))


def _value(alert: str, value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2f} s" if alert == "endpoint_latency" else f"{value:.1%}"


@st.fragment(run_every=timedelta(seconds=refresh_s))
@warehouse_guard()
def live() -> None:
    figures()
    freshness_caption(client)


def figures() -> None:
    states = health.flow_states(client)
    if not states:
        st.info("No flows webhook received yet. Subscribe the app to the `flows` webhook field in Meta's "
                "App Dashboard; status changes and health alerts appear here within seconds.")
        return
    blocked = [s.flow_id for s in states if s.status == "BLOCKED"]
    throttled = [s.flow_id for s in states if s.status == "THROTTLED"]
    alerting = [s.flow_id for s in states if any(s.alerts.values())]
    cols = st.columns(4)
    cols[0].metric("Flows reported", len(states))
    cols[1].metric("Blocked", len(blocked))
    cols[2].metric("Throttled", len(throttled))
    cols[3].metric("With an active alert", len(alerting))
    if blocked:
        st.error(f"Blocked (nothing can be sent or opened): {', '.join(blocked)}")
    if throttled:
        st.warning(f"Throttled (at most 10 new messages per hour): {', '.join(throttled)}")

    st.subheader("Current state")
    rows = []
    for state in states:
        row: dict[str, object] = {
            "flow_id": state.flow_id,
            "status": state.status or "unknown",
            "status since": state.status_since,
        }
        for alert, title in ALERT_TITLES.items():
            active = state.alerts.get(alert)
            mark = "–" if active is None else "ACTIVE" if active else "ok"
            row[title] = f"{mark} ({_value(alert, state.values.get(alert))})" if active is not None else mark
        row["last webhook"] = state.updated_at
        rows.append(row)
    show(pd.DataFrame(rows), name="flow_states")

    st.subheader("History")
    start, end = chosen_period.bounds()
    flow_ids = ["All", *(s.flow_id for s in states)]
    chosen = st.selectbox("Flow", flow_ids, key="health_flow")
    events = health.history(client, start=start, end=end,
                            flow_id="" if chosen == "All" else chosen)
    if events.empty:
        st.caption("No flows webhook in this range.")
    else:
        shown = events.assign(
            error_types=[", ".join(types) for types in events["error_types"]],
            error_counts=[", ".join(map(str, counts)) for counts in events["error_counts"]],
        ).replace({-1: None})
        show(shown, name="flow_health_history")
    st.caption(f"Updated {end:%H:%M:%S} UTC · refreshes every {refresh_s} s")


live()
