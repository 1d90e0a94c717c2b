"""Engagement funnel: sent → delivered → read → opened → completed, per flow, version and campaign."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from dashboards.filters import flow_filter, refresh_seconds
from dashboards.state import warehouse
from warehouse import flows

st.title("Engagement funnel")
client = warehouse()
where = flow_filter(client)
refresh_s = refresh_seconds()
STAGE_LABELS = {"sent": "Sent", "delivered": "Delivered", "read": "Read", "opened": "Opened", "completed": "Completed"}


def _rate(part: float, whole: float) -> str:
    return f"{part / whole:.1%}" if whole else "–"


@st.fragment(run_every=timedelta(seconds=refresh_s))
def live() -> None:
    if where is None:
        if not flows.flow_versions(client).empty:
            st.rerun()  # the first sessions arrived: rebuild the sidebar with them
        st.info("No Flow sessions yet: send `flow_sent` events to POST /events (see the README).")
        return
    totals = flows.funnel(client, where, by=("flow_id",))
    if totals.empty:
        st.info("No sessions sent in this range.")
        return
    row = totals.iloc[0]
    stages = [int(row[stage]) for stage in flows.STAGES]
    figure = go.Figure(go.Funnel(
        y=list(STAGE_LABELS.values()), x=stages, textinfo="value+percent initial",
        marker={"color": ["#8c9eff", "#4db6ac", "#2e7d32", "#f9a825", "#6a1b9a"]},
    ))
    figure.update_layout(height=380, margin={"l": 0, "r": 0, "t": 10, "b": 0})
    left, right = st.columns([3, 2])
    with left:
        st.plotly_chart(figure, width="stretch")
    with right:
        st.subheader("Sessions now")
        a, b = st.columns(2)
        a.metric("Completed", f"{int(row['completed']):,}", help="A completion (nfm_reply) arrived")
        b.metric("Abandoned", f"{int(row['abandoned']):,}",
                 help=f"No activity for {where.timeout_s // 60} min and not completed")
        a.metric("Ongoing", f"{int(row['ongoing']):,}")
        b.metric("Failed to deliver", f"{int(row['failed']):,}")
        st.metric("Completion rate (of sent)", _rate(row["completed"], row["sent"]))
        st.metric("Completion rate (of opened)", _rate(row["completed"], row["opened"]))

    st.subheader("Version against version")
    versions = flows.funnel(client, dataclasses.replace(where, flow_version=""))
    if not versions.empty:
        table = versions[["flow_version", *flows.STAGES, "abandoned"]].copy()
        table["open rate"] = [_rate(o, r) for o, r in zip(table["opened"], table["read"], strict=True)]
        table["completion rate"] = [_rate(c, s) for c, s in zip(table["completed"], table["sent"], strict=True)]
        st.dataframe(table, hide_index=True, width="stretch")
        long = versions.melt(id_vars=["flow_version"], value_vars=list(flows.STAGES), var_name="stage",
                             value_name="sessions")
        chart = px.bar(long, x="stage", y="sessions", color="flow_version", barmode="group",
                       category_orders={"stage": list(flows.STAGES)})
        chart.update_layout(height=300, margin={"l": 0, "r": 0, "t": 10, "b": 0}, legend_title_text="version")
        st.plotly_chart(chart, width="stretch")

    st.subheader("By campaign")
    campaigns = flows.funnel(client, where, by=("campaign",))
    campaigns["completion rate"] = [_rate(c, s) for c, s in zip(campaigns["completed"], campaigns["sent"], strict=True)]
    st.dataframe(campaigns, hide_index=True, width="stretch")

    span = where.end - where.start
    bucket = 5 if span <= timedelta(hours=6) else 60 if span <= timedelta(days=7) else 24 * 60
    series = flows.funnel_over_time(client, where, bucket_minutes=bucket)
    if not series.empty:
        st.subheader("Over time (by send time)")
        long = pd.melt(series, id_vars=["bucket"], value_vars=list(flows.STAGES), var_name="stage",
                       value_name="sessions")
        chart = px.line(long, x="bucket", y="sessions", color="stage", category_orders={"stage": list(flows.STAGES)})
        chart.update_layout(height=300, margin={"l": 0, "r": 0, "t": 10, "b": 0}, legend_title_text="")
        st.plotly_chart(chart, width="stretch")
    st.caption(f"Sessions = flow tokens · refreshes every {refresh_s} s")


live()
