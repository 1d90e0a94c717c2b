"""Rejected events: what the receiver could not use, by source and reason, and the latest ones with their raw data."""

from __future__ import annotations

from datetime import timedelta

import streamlit as st

from contract.events import SOURCE_FIRST_PARTY, SOURCE_WHATSAPP
from dashboards.filters import RANGES, not_by_country, period, refresh_seconds
from dashboards.state import freshness_caption, warehouse, warehouse_guard
from dashboards.tables import show
from warehouse import rejected

LATEST_LIMIT = 200

st.title("Rejected events")
st.caption(
    "Well-formed input the receiver could not use: a status with an unknown value, no id or an impossible "
    "timestamp, a completion without its Flow message, a first-party event failing validation. Nothing is "
    "dropped silently: each one is kept here with the reason and its raw data (phone numbers pseudonymised). "
    "Requests that could not be read at all were answered 400/401/413/415 and are counted in "
    "`flowscope_ingest_webhooks_total`."
)
with warehouse_guard():
    client = warehouse()

chosen_period = period(RANGES, default="Last 24 hours", label="Received in")
not_by_country("Rejected events are")
refresh_s = refresh_seconds()


@st.fragment(run_every=timedelta(seconds=refresh_s))
@warehouse_guard()
def live() -> None:
    figures()
    freshness_caption(client)


def figures() -> None:
    start, end = chosen_period.bounds()
    counts = rejected.by_reason(client, start, end)
    cols = st.columns(4)
    cols[0].metric("Rejected", int(counts["events"].sum()))
    cols[1].metric("From WhatsApp webhooks", int(counts.loc[counts["source"] == SOURCE_WHATSAPP, "events"].sum()))
    cols[2].metric("From first-party events", int(counts.loc[counts["source"] == SOURCE_FIRST_PARTY, "events"].sum()))
    cols[3].metric("Distinct reasons", len(counts))
    if counts.empty:
        st.info("No rejected event in this range.")
        st.caption(f"Updated {end:%H:%M:%S} UTC · refreshes every {refresh_s} s")
        return

    st.subheader("By source and reason")
    show(counts, name="rejected_by_reason")

    st.subheader("Latest rejected events")
    latest = rejected.latest(client, start, end, LATEST_LIMIT)
    show(latest[["received_at", "source", "reason", "raw"]], name="rejected_latest",
         column_config={"raw": st.column_config.TextColumn("raw", width="large")})
    st.caption(f"The {min(len(latest), LATEST_LIMIT)} newest · updated {end:%H:%M:%S} UTC · "
               f"refreshes every {refresh_s} s")


live()
