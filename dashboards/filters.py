"""Sidebar controls the pages share: the time ranges they offer, and the flow pages' filter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import streamlit as st
from clickhouse_connect.driver.client import Client

from dashboards.state import settings
from warehouse import flow_names, flows

# Every time range a page offers, defined once; each page offers its own choice of them, in this order.
SPANS = {
    "Last 15 minutes": timedelta(minutes=15),
    "Last hour": timedelta(hours=1),
    "Last 6 hours": timedelta(hours=6),
    "Last 24 hours": timedelta(days=1),
    "Last 7 days": timedelta(days=7),
    "Last 30 days": timedelta(days=30),
    "Last 90 days": timedelta(days=90),
}
# The flow, health and rejected pages.
RANGES = {label: SPANS[label] for label in (
    "Last hour", "Last 6 hours", "Last 24 hours", "Last 7 days", "Last 30 days", "Last 90 days")}
# The delivery page.
DELIVERY_RANGES = {label: SPANS[label] for label in (
    "Last 15 minutes", "Last hour", "Last 6 hours", "Last 24 hours", "Last 7 days", "Last 30 days")}
ALL = "All"


def flow_filter(client: Client, *, require_version: bool = False) -> flows.FlowFilter | None:
    """Time range, flow, version and campaign from the sidebar; None when no flow is known yet."""
    known = flows.flow_versions(client)
    with st.sidebar:
        range_name = st.selectbox("Sent in", list(RANGES), index=2)
        if known.empty:
            return None
        names = flow_names.flow_names(client)
        flow_ids = sorted(known["flow_id"].unique(), key=lambda f: (names.get(f, "~"), f))
        flow_id = st.selectbox("Flow", flow_ids, format_func=lambda f: flow_names.label(f, names))
        versions = sorted(known.loc[known["flow_id"] == flow_id, "flow_version"].unique(), key=_version_key)
        options = versions if require_version else [ALL, *versions]
        version = st.selectbox("Version", options, index=len(options) - 1 if require_version else 0)
        campaigns = sorted(c for c in known.loc[known["flow_id"] == flow_id, "campaign"].unique() if c)
        campaign = st.selectbox("Campaign", [ALL, *campaigns])
    end = datetime.now(UTC).replace(tzinfo=None)
    return flows.FlowFilter(
        start=end - RANGES[range_name], end=end, flow_id=flow_id,
        flow_version="" if version == ALL else version, campaign="" if campaign == ALL else campaign,
        timeout_s=settings().session_timeout_s,
    )


def opt_out_window() -> timedelta:
    """How long after a Flow message a stop counts as its opt-out (default: FLOWSCOPE_OPT_OUT_WINDOW_H)."""
    with st.sidebar:
        hours = st.number_input("Opt-out window (hours)", min_value=1, max_value=24 * 30,
                                value=settings().opt_out_window_h, step=1)
    return timedelta(hours=int(hours))


def refresh_seconds() -> int:
    with st.sidebar:
        return int(st.select_slider("Refresh every (s)", options=[2, 5, 10, 30, 60], value=5))


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), version) if version.isdigit() else (1 << 30, version)
