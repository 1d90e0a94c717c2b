"""Delivery status: sent / delivered / read / failed over time and in total."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pandas as pd
import plotly.express as px
import streamlit as st

from dashboards.filters import DELIVERY_RANGES, not_by_country, period, phone_numbers, recipient_countries
from dashboards.formats import money
from dashboards.state import freshness_caption, warehouse, warehouse_guard
from dashboards.tables import show
from warehouse import audience, costs, queries

STATUS_COLOURS = {"sent": "#8c9eff", "delivered": "#4db6ac", "read": "#2e7d32", "failed": "#e53935"}

NO_CODE_HELP = "0: the failed status carried no error code (no errors[] in Meta's webhook)"

st.title("Delivery status")
with warehouse_guard():
    client = warehouse()
    chosen_period = period(DELIVERY_RANGES, default="Last hour")
    chosen = phone_numbers(queries.phone_number_ids(client))
    countries = recipient_countries(client)
    with st.sidebar:
        refresh_s = st.select_slider("Refresh every (s)", options=[2, 5, 10, 30, 60], value=5)


@st.fragment(run_every=timedelta(seconds=refresh_s))
@warehouse_guard()
def live() -> None:
    start, end = chosen_period.bounds()
    span = end - start
    where = queries.DeliveryFilter(start=start, end=end, phone_number_ids=chosen, countries=countries)
    totals = queries.delivery_totals(client, where)
    sent = totals["sent"]
    cols = st.columns(5)
    cols[0].metric("Sent", f"{sent:,}")
    cols[1].metric(
        "Delivered", f"{totals['delivered_or_read']:,}", help="Delivered, or read without a delivered status"
    )
    cols[2].metric("Read", f"{totals['read']:,}")
    cols[3].metric("Failed", f"{totals['failed']:,}")
    rate = totals["failed"] / sent if sent else 0.0
    cols[4].metric("Failure rate", f"{rate:.1%}")

    bucket = 1 if span <= timedelta(hours=6) else 60 if span <= timedelta(days=7) else 360
    series = queries.delivery_timeseries(client, where, bucket_minutes=bucket)
    if series.empty:
        st.info("No message statuses in this range yet.")
    else:
        figure = px.bar(
            chosen_period.local(series, "bucket"), x="bucket", y="messages", color="status", barmode="group",
            color_discrete_map=STATUS_COLOURS, category_orders={"status": list(STATUS_COLOURS)},
            labels={"bucket": "", "messages": "messages"},
        )
        figure.update_layout(height=360, margin={"l": 0, "r": 0, "t": 10, "b": 0}, legend_title_text="")
        st.plotly_chart(figure, width="stretch")

    left, right = st.columns(2)
    with left:
        st.subheader("Failures by error code")
        failures = queries.failures_by_error_code(client, where)
        if failures.empty:
            st.caption("No failed messages in this range.")
        else:
            show(failures, name="failures_by_error_code",
                 column_config={"error_code": st.column_config.NumberColumn("error_code", help=NO_CODE_HELP,
                                                                            format="%d")})
    with right:
        st.subheader("By business number")
        by_number = queries.delivery_by_phone_number(client, where)
        table = pd.DataFrame(
            [
                {"phone_number_id": pnid, **{s: counts.get(s, 0) for s in queries.DELIVERY_STATUSES}}
                for pnid, counts in sorted(by_number.items())
            ],
            columns=["phone_number_id", *queries.DELIVERY_STATUSES],
        )
        show(table, name="delivery_by_business_number")
    who_and_cost(where)
    account_errors(where)
    st.caption(f"Updated {end:%H:%M:%S} UTC · distinct messages per status · refreshes every {refresh_s} s")
    freshness_caption(client)


SPEND_BY = {"Day": "day", "Pricing category": "pricing_category", "Country": "country", "Campaign": "campaign",
            "Business number": "phone_number_id"}


def who_and_cost(where: queries.DeliveryFilter) -> None:
    """By message sent in the range: people, countries and what the messages cost."""
    st.subheader("Who and what it cost (messages sent in this range)")
    loaded = costs.rate_card(client)
    card = loaded.card if loaded else None
    currency = card.currency if card else ""
    total = costs.spend(client, where, by=(), card=card)
    spent = total["spend"].iloc[0] if not total.empty else Decimal(0)
    cols = st.columns(4)
    cols[0].metric("People messaged", f"{audience.delivery_persons(client, where):,}",
                   help="Distinct people, one person across phone numbers and BSUIDs; groups left out")
    cols[1].metric("Spend", money(spent, currency),
                   help="Delivered billable messages at the rate card's price, each once")
    cols[2].metric("Free messages", f"{int(total['free'].iloc[0]) if not total.empty else 0:,}",
                   help="Delivered messages Meta did not charge: free_customer_service, free_entry_point")
    cols[3].metric("Unpriced", f"{int(total['unpriced'].iloc[0]) if not total.empty else 0:,}",
                   help="Delivered billable messages the rate card has no rate for: not in the spend")
    left, right = st.columns(2)
    with left:
        st.markdown("**By recipient country**")
        countries = audience.delivery_by_country(client, where)
        countries["country"] = [c or "unknown" for c in countries["country"]]
        show(countries, name="delivery_by_country")
    with right:
        label = st.radio("Spend by", list(SPEND_BY), horizontal=True, key="spend_by")
        group = SPEND_BY[label]
        spend = costs.spend(client, where, by=(group,), card=card)
        spend["spend"] = [money(v, currency) for v in spend["spend"]]
        show(spend.drop(columns=["currency"]), name=f"spend_by_{group}")
    st.caption("no rate card loaded: `flowscope ratecard load FILE`" if loaded is None
               else f"rate card {loaded.source}, loaded {loaded.loaded_at:%Y-%m-%d %H:%M} UTC")


def account_errors(where: queries.DeliveryFilter) -> None:
    """Meta's value-level errors: of the account or number, not of one message."""
    errors = queries.webhook_errors(client, where)
    st.subheader(f"Account and number errors ({len(errors):,})")
    not_by_country("Account and number errors are")
    if errors.empty:
        st.caption("Meta reported no error for the account or its numbers in this range.")
    else:
        show(errors, name="account_and_number_errors", column_config={"href": st.column_config.LinkColumn("href")})


live()
