"""Overview: the numbers a manager asks first, each against the period of the same length before it."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import streamlit as st

from config.ratecard import RateCard
from dashboards.filters import RANGES, period, recipient_countries
from dashboards.formats import money
from dashboards.state import freshness_caption, settings, warehouse, warehouse_below_the_top, warehouse_guard
from warehouse import costs, flow_names, overview
from warehouse.parallel import Fetch

st.title("Overview")
with warehouse_guard():
    client = warehouse()
    chosen_period = period(RANGES, default="Last 24 hours", label="Period")
    countries = recipient_countries(client)
    with st.sidebar:
        refresh_s = int(st.select_slider("Refresh every (s)", options=[5, 10, 30, 60], value=10))


def _percent(rate: float | None) -> str:
    return "–" if rate is None else f"{rate:.1%}"


def _points(now: float | None, before: float | None) -> str | None:
    """The change of a rate in percentage points, None when either period has none."""
    if now is None or before is None:
        return None
    return f"{(now - before) * 100:+.1f} pts"


def _change(now: int, before: int) -> str | None:
    if before == 0:
        return None if now == 0 else "new"
    return f"{(now - before) / before:+.1%}"


@st.fragment(run_every=timedelta(seconds=refresh_s))
@warehouse_guard()
def live() -> None:
    start, end = chosen_period.bounds()
    before_start, before_end = overview.previous(start, end)
    timeout_s = settings().session_timeout_s
    loaded = costs.rate_card(client)
    card = loaded.card if loaded else None
    with Fetch() as fetch:
        shown = overview.start_page(client, start, end, timeout_s=timeout_s, card=card, fetch=fetch, now=end,
                                    countries=countries, below=warehouse_below_the_top())
        draw(shown, card, timeout_s)
    card_note = "no rate card loaded" if loaded is None else f"rate card {loaded.source}"
    st.caption(f"{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC against {before_start:%Y-%m-%d %H:%M} – "
               f"{before_end:%Y-%m-%d %H:%M} · {card_note} · refreshes every {refresh_s} s")
    freshness_caption(client)


def _rate_trend(trend: pd.DataFrame, part: str, whole: str) -> list[float]:
    return [p / w if w else 0.0 for p, w in zip(trend[part], trend[whole], strict=True)]


def draw(shown: overview.Started, card: RateCard | None, timeout_s: int) -> None:
    """The message figures as soon as their (cheap) queries are in, then the Flow, spend and opt-out figures, then
    the callouts: each row waits only for its own queries."""
    messages, messages_before, trend = shown.deliveries()
    row = st.columns(4)
    row[0].metric("Messages sent", f"{messages.sent:,}", _change(messages.sent, messages_before.sent),
                  chart_data=list(trend["sent"]),
                  help="Distinct messages with a sent status in the period; the change is against the period "
                       "of the same length before it")
    row[1].metric("Delivery rate", _percent(messages.delivery_rate),
                  _points(messages.delivery_rate, messages_before.delivery_rate),
                  chart_data=_rate_trend(trend, "delivered", "sent"), help="Delivered (or read) of sent")
    row[2].metric("Read rate", _percent(messages.read_rate), _points(messages.read_rate, messages_before.read_rate),
                  chart_data=_rate_trend(trend, "read", "sent"))
    row[3].metric("Failure rate", _percent(messages.failure_rate),
                  _points(messages.failure_rate, messages_before.failure_rate),
                  delta_color="inverse", chart_data=_rate_trend(trend, "failed", "sent"))
    now, before, trend = shown.figures()
    row = st.columns(4)
    row[0].metric("Flow completion rate", _percent(now.completion_rate),
                  _points(now.completion_rate, before.completion_rate),
                  chart_data=_rate_trend(trend, "flow_completed", "flow_sessions"),
                  help="Completed of the Flow sessions sent in the period")
    row[1].metric("Flow sessions", f"{now.flow_sessions:,}", _change(now.flow_sessions, before.flow_sessions),
                  chart_data=list(trend["flow_sessions"]))
    row[2].metric("Spend", money(now.spend, card.currency if card else ""),
                  _change(int(now.spend * 100), int(before.spend * 100)) if card else None, delta_color="off",
                  help="Messages first sent in the period, delivered and billable, at the rate card's price")
    row[3].metric("Opt-outs", f"{now.opt_outs:,}", _change(now.opt_outs, before.opt_outs), delta_color="inverse",
                  help="People who stopped marketing messages in the period")

    left, right = st.columns(2)
    with left:
        st.subheader("Worst Flow screen")
        worst = shown.worst_screen()
        if worst is None:
            st.caption(f"No screen reached by {overview.MIN_REACHED}+ sessions lost any yet (a session is abandoned "
                       f"after {timeout_s // 60} min without activity).")
        else:
            flow = flow_names.label(worst.flow_id, flow_names.flow_names(client))
            st.markdown(f"**{worst.screen}** of flow {flow} version {worst.flow_version} loses "
                        f"**{worst.drop_rate:.1%}** of the sessions that reach it ({worst.dropped:,} of "
                        f"{worst.reached:,}).")
            st.page_link("views/nodes.py", label="Node performance", icon=":material/account_tree:")
    with right:
        st.subheader("Top failure code")
        top = shown.top_failure()
        if top is None:
            st.caption("No failed message in the period.")
        else:
            code, text, failed = top
            st.markdown(f"**{code}** — {text}: **{failed:,}** failed messages "
                        f"({failed / now.sent:.1%} of sent)." if now.sent else f"**{code}** — {text}: {failed:,}.")
            st.page_link("views/delivery.py", label="Delivery status", icon=":material/mark_email_read:")


live()
