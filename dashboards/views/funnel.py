"""Engagement funnel: sent → delivered → read → opened → completed, per flow, version and campaign."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from concurrent.futures import Future
from datetime import timedelta
from typing import TypeVar

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from dashboards.filters import (
    baseline_version,
    current_period,
    flow_filter,
    opt_out_window,
    refresh_seconds,
    refreshed,
)
from dashboards.formats import duration, money
from dashboards.state import freshness_caption, warehouse, warehouse_below_the_top, warehouse_guard
from dashboards.tables import show
from warehouse import audience, buckets, costs, flows, versions
from warehouse.audience import Audience, CompletionTimes
from warehouse.costs import LoadedCard
from warehouse.parallel import Fetch

st.title("Engagement funnel")
with warehouse_guard():
    client = warehouse()
    below = warehouse_below_the_top()
    where = flow_filter(client)
    baseline = baseline_version(client, where) if where is not None else None
    window = opt_out_window()
    refresh_s = refresh_seconds()
T = TypeVar("T")
U = TypeVar("U")
STAGE_LABELS = {"sent": "Sent", "delivered": "Delivered", "read": "Read", "opened": "Opened", "completed": "Completed"}


def _rate(part: float, whole: float) -> str:
    return f"{part / whole:.1%}" if whole else "–"


@st.fragment(run_every=timedelta(seconds=refresh_s))
@warehouse_guard()
def live() -> None:
    if where is None:
        if not flows.flow_versions(client).empty:
            st.rerun()  # the first sessions arrived: rebuild the sidebar with them
        st.info("No Flow sessions yet: send `flow_sent` events to POST /events (see the README).")
        return
    figures(refreshed(where))


@dataclasses.dataclass(frozen=True)
class Top:
    """The figures of the top of the page, from one bucketed funnel query that runs first, alone."""

    totals: Future[pd.DataFrame]
    by_version: Future[pd.DataFrame]
    campaigns: Future[pd.DataFrame]
    series: Future[pd.DataFrame]


@dataclasses.dataclass(frozen=True)
class Rest:
    """The queries of the rest of the page, started at once (:mod:`warehouse.parallel`) once the top is drawn."""

    people: Future[dict[tuple[str, ...], Audience]]
    people_by_version: Future[dict[tuple[str, ...], Audience]]
    people_by_country: Future[dict[tuple[str, ...], Audience]]
    times: Future[CompletionTimes]
    stage_times: Future[pd.DataFrame]


def fetch_top(fetch: Fetch, where: flows.FlowFilter, bucket: int) -> Top:
    """One funnel query per page: every version, campaign and time bucket, summed below into the three groupings
    it shows and into the chosen version's series over time."""
    every_version = dataclasses.replace(where, flow_version="")
    finest = fetch.first(flows.funnel, client, every_version, by=("flow_id", "flow_version", "campaign"),
                         bucket_minutes=bucket)
    return Top(
        totals=_regrouped(finest, ("flow_id",), where.flow_version),
        by_version=_regrouped(finest, ("flow_id", "flow_version"), ""),
        campaigns=_regrouped(finest, ("campaign",), where.flow_version),
        series=_then(finest, lambda frame: flows.over_time(frame, flow_version=where.flow_version)),
    )


def fetch_rest(fetch: Fetch, where: flows.FlowFilter, card: LoadedCard | None) -> Rest:
    """The audiences in one query (GROUPING SETS), or two when a version is chosen (by version: every version);
    the times to complete and between stages. Below the top: at a lower priority (``below``)."""
    rates = card.card if card else None
    every_version = dataclasses.replace(where, flow_version="")
    by_version = ("flow_version", "campaign")
    people = fetch(audience.audience_sets, below, where,
                   (("flow_id",), ("country",), *((by_version,) if where.flow_version == "" else ())),
                   window=window, card=rates)
    people_by_version = (people if where.flow_version == "" else
                         fetch(audience.audience_sets, below, every_version, (by_version,), window=window, card=rates))
    return Rest(
        people=_grouping(people, ("flow_id",)),
        people_by_version=_grouping(people_by_version, by_version),
        people_by_country=_grouping(people, ("country",)),
        times=fetch(audience.completion_summary, below, where),
        stage_times=fetch(audience.stage_times, below, where, by=("flow_id",)),
    )


def _grouping(sets: Future[dict[tuple[str, ...], dict[tuple[str, ...], Audience]]],
              by: tuple[str, ...]) -> Future[dict[tuple[str, ...], Audience]]:
    return _then(sets, lambda figures: figures[by])


def _regrouped(finest: Future[pd.DataFrame], by: tuple[str, ...], flow_version: str) -> Future[pd.DataFrame]:
    """The finest funnel summed into groups of ``by`` (:func:`warehouse.flows.regroup`), once it arrives."""
    return _then(finest, lambda frame: flows.regroup(frame, by, flow_version=flow_version))


def _then(future: Future[T], then: Callable[[T], U]) -> Future[U]:
    """A future of ``then`` applied to ``future``'s result (its error, if it failed)."""
    out: Future[U] = Future()

    def done(finished: Future[T]) -> None:
        try:
            out.set_result(then(finished.result()))
        except Exception as exc:  # noqa: BLE001 - raised where the result is read, as the query's own error
            out.set_exception(exc)

    future.add_done_callback(done)
    return out


def figures(where: flows.FlowFilter) -> None:
    loaded = costs.rate_card(client)
    bucket = buckets.over_time_bucket_minutes(where.end - where.start)
    with Fetch() as fetch:
        top = fetch_top(fetch, where, bucket)
        totals = top.totals.result()
        if totals.empty:
            st.info("No sessions sent in this range.")
            return
        chart = sessions_now(where, totals.iloc[0])
        # Started only once the numbers are drawn, at a lower priority: on two cores they would share the CPU with
        # drawing them, here and, on one machine, in the browser.
        rest = fetch_rest(fetch, where, loaded)
        with chart:  # Plotly's drawing holds the browser's paint: after the numbers
            st.plotly_chart(funnel_chart(totals.iloc[0]), width="stretch")
        draw_rest(where, loaded, bucket, top, rest)


def sessions_now(where: flows.FlowFilter, row: pd.Series) -> DeltaGenerator:
    """The sessions now, at the right of the top; returns the empty place of the funnel chart at its left."""
    left, right = st.columns([3, 2])
    with right:
        st.subheader("Sessions now")
        a, b = st.columns(2)
        a.metric("Completed", f"{int(row['completed']):,}", help="A completion (nfm_reply) arrived")
        b.metric("Abandoned", f"{int(row['abandoned']):,}",
                 help=f"No activity for {where.timeout_s // 60} min and not completed")
        a.metric("In progress", f"{int(row['ongoing']):,}",
                 help=f"Not completed, active within the last {where.timeout_s // 60} min: never counted as dropped")
        b.metric("Failed to deliver", f"{int(row['failed']):,}")
        st.metric("Completion rate (of sent)", _rate(row["completed"], row["sent"]))
        st.metric("Completion rate (of opened)", _rate(row["completed"], row["opened"]))
    return left


def funnel_chart(row: pd.Series) -> go.Figure:
    figure = go.Figure(go.Funnel(
        y=list(STAGE_LABELS.values()), x=[int(row[stage]) for stage in flows.STAGES], textinfo="value+percent initial",
        marker={"color": ["#8c9eff", "#4db6ac", "#2e7d32", "#f9a825", "#6a1b9a"]},
    ))
    figure.update_layout(height=380, margin={"l": 0, "r": 0, "t": 10, "b": 0})
    return figure


def draw_rest(where: flows.FlowFilter, loaded: LoadedCard | None, bucket: int, top: Top, page: Rest) -> None:
    st.subheader("Version against version")
    by_version = top.by_version.result()
    if not by_version.empty:
        version_against_version(by_version)

    people_cost_and_opt_outs(page, loaded)
    times_to_complete(page)

    st.subheader("By campaign")
    campaigns = top.campaigns.result()
    campaigns["completion rate (of sent)"] = [
        _rate(c, s) for c, s in zip(campaigns["completed"], campaigns["sent"], strict=True)]
    show(campaigns, name="funnel_by_campaign")

    series = top.series.result()
    if not series.empty:
        st.subheader("Over time (by send time)")
        # Every bucket of the range, 0 where nothing was sent: one active bucket still draws a line across it.
        series = current_period().local(
            buckets.every_bucket(series, start=where.start, end=where.end, bucket_minutes=bucket), "bucket")
        long = pd.melt(series, id_vars=["bucket"], value_vars=list(flows.STAGES), var_name="stage",
                       value_name="sessions")
        chart = px.line(long, x="bucket", y="sessions", color="stage", markers=True,
                        category_orders={"stage": list(flows.STAGES)},
                        labels={"bucket": f"sent, per {_bucket_name(bucket)}"})
        chart.update_xaxes(type="date")
        chart.update_yaxes(rangemode="tozero")
        chart.update_layout(height=300, margin={"l": 0, "r": 0, "t": 10, "b": 0}, legend_title_text="")
        st.plotly_chart(chart, width="stretch")
    st.caption(f"Sessions = flow tokens · refreshes every {refresh_s} s")
    freshness_caption(client)


def version_against_version(funnel: pd.DataFrame) -> None:
    """Per version: the stages, then the completion rate with its 95% interval against a baseline version."""
    table = funnel[["flow_version", *flows.STAGES, "abandoned"]].copy()
    table["open rate"] = [_rate(o, r) for o, r in zip(table["opened"], table["read"], strict=True)]
    table["completion rate (of sent)"] = [_rate(c, s) for c, s in zip(table["completed"], table["sent"], strict=True)]
    show(table, name="funnel_by_version")
    long = funnel.melt(id_vars=["flow_version"], value_vars=list(flows.STAGES), var_name="stage",
                       value_name="sessions")
    chart = px.bar(long, x="stage", y="sessions", color="flow_version", barmode="group",
                   category_orders={"stage": list(flows.STAGES)})
    chart.update_layout(height=300, margin={"l": 0, "r": 0, "t": 10, "b": 0}, legend_title_text="version")
    st.plotly_chart(chart, width="stretch")

    counts = versions.from_funnel(funnel)
    # The sidebar's baseline, unless it sent nothing in this range: then the version with the most sessions sent.
    chosen = baseline if baseline in {c.version for c in counts} else versions.default_baseline(counts)
    st.caption(f"Baseline: version {chosen}" + ("" if chosen == baseline else " (the most sessions sent)")
               + " · choose another in the sidebar")
    rows = versions.compare(counts, baseline=chosen)
    show(pd.DataFrame({
        "version": [r.version for r in rows],
        "decided sessions": [r.decided for r in rows],
        "completion rate (of decided)": [_share(r.rate) for r in rows],
        "95% CI": [f"{_share(r.low)}–{_share(r.high)}" if r.low is not None else "–" for r in rows],
        "vs baseline": [f"{r.difference * 100:+.1f} pts" if r.difference is not None else "–" for r in rows],
        "p-value": [f"{r.p_value:.3g}" if r.p_value is not None else "–" for r in rows],
        "significant": ["–" if r.p_value is None else "yes" if r.significant else "no" for r in rows],
        "sessions still needed": ["–" if r.significant or r.p_value is None else
                                  "cannot be estimated" if r.more_sessions is None else f"{r.more_sessions:,}"
                                  for r in rows],
    }), name="versions_compared")
    for row in rows:
        if row.version != chosen:
            st.markdown(f"- {row.verdict}")
    rated = [(r.version, r.rate, r.low, r.high) for r in rows
             if r.rate is not None and r.low is not None and r.high is not None]
    if rated:
        bars = go.Figure(go.Bar(
            x=[version for version, *_ in rated], y=[rate * 100 for _, rate, _, _ in rated],
            error_y={"type": "data", "symmetric": False, "array": [(high - rate) * 100 for _, rate, _, high in rated],
                     "arrayminus": [(rate - low) * 100 for _, rate, low, _ in rated]},
            marker={"color": ["#6a1b9a" if version == chosen else "#8c9eff" for version, *_ in rated]},
        ))
        bars.update_xaxes(type="category", title_text="version")
        bars.update_yaxes(title_text="completion rate (%), 95% CI", rangemode="tozero")
        bars.update_layout(height=300, margin={"l": 0, "r": 0, "t": 10, "b": 0})
        st.plotly_chart(bars, width="stretch")
    st.caption("Completion rate = completed / decided sessions (sent − still in progress): sessions still in "
               "progress are not decided yet, so they count neither as completed nor as dropped. Interval: 95% "
               "Wilson score; p-value: two-sided two-proportion z-test (pooled); significant when p < 0.05; "
               "sessions still needed: per version, to detect the observed difference with 80% power at α = 0.05.")


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _bucket_name(minutes: int) -> str:
    return "day" if minutes == 24 * 60 else "hour" if minutes == 60 else f"{minutes} minutes"


def people_cost_and_opt_outs(page: Rest, loaded: LoadedCard | None) -> None:
    st.subheader("People, cost and opt-outs")
    currency = loaded.card.currency if loaded else ""
    total = page.people.result()
    if not total:
        st.caption("No sessions sent in this range.")
        return
    figures = next(iter(total.values()))
    cols = st.columns(5)
    cols[0].metric("People reached", f"{figures.persons:,}",
                   help="Distinct people the Flow messages went to, one person across phone numbers and BSUIDs")
    cols[1].metric("Spend", money(figures.spend.spend, currency),
                   help="Delivered billable Flow messages at the rate card's price; free messages cost 0")
    cols[2].metric("Cost per completed", money(figures.cost_per("completed"), currency, places=4))
    cols[3].metric("Cost per opened", money(figures.cost_per("opened"), currency, places=4))
    cols[4].metric("Opt-out rate", f"{figures.opt_out_rate:.1%}",
                   help=f"People who stopped marketing messages within {window.total_seconds() / 3600:g} h after a "
                        "Flow message, of the people reached")
    by_version = audience.audience_frame(page.people_by_version.result(), ("flow_version", "campaign"), currency)
    show(_money_columns(by_version, currency), name="audience_by_version_campaign")
    st.markdown("**By recipient country**")
    by_country = audience.audience_frame(page.people_by_country.result(), ("country",), currency)
    by_country["country"] = [c or "unknown" for c in by_country["country"]]
    show(_money_columns(by_country, currency), name="audience_by_country")
    notes = [f"{figures.spend.free:,} free (free_customer_service, free_entry_point or not billable)"]
    if figures.spend.unpriced:
        notes.append(f"{figures.spend.unpriced:,} billable messages the rate card has no rate for (not in the spend)")
    if loaded is None:
        notes.append("no rate card loaded: `flowscope ratecard load FILE`")
    else:
        notes.append(f"rate card {loaded.source}, loaded {loaded.loaded_at:%Y-%m-%d %H:%M} UTC")
    st.caption(" · ".join(notes))


def _money_columns(frame: pd.DataFrame, currency: str) -> pd.DataFrame:
    out = frame.drop(columns=["currency"])
    out["opt_out_rate"] = [f"{r:.1%}" for r in out["opt_out_rate"]]
    out["sessions_per_person"] = ["–" if pd.isna(v) else f"{v:.2f}" for v in out["sessions_per_person"]]
    out["spend"] = [money(v, currency) for v in out["spend"]]
    for column in ("cost_per_delivered", "cost_per_read", "cost_per_opened", "cost_per_completed"):
        out[column] = [money(v, currency, places=4) for v in out[column]]
    return out


def times_to_complete(page: Rest) -> None:
    st.subheader("Time to complete")
    summary = page.times.result()
    times = summary.by_version
    if times.empty or summary.overall.empty:
        st.caption("No completed sessions in this range.")
        return
    overall = summary.overall.iloc[0]
    a, b, c = st.columns(3)
    a.metric("Median time to complete", duration(overall["p50_ms"]), help="From the send to the completion")
    b.metric("p90 time to complete", duration(overall["p90_ms"]))
    c.metric("Completions timed", f"{int(overall['completions']):,}")
    left, right = st.columns([2, 3])
    with left:
        table = times.drop(columns=["flow_id"]).assign(
            p50=[duration(ms) for ms in times["p50_ms"]], p90=[duration(ms) for ms in times["p90_ms"]])
        show(table[["flow_version", "completions", "p50", "p90"]], name="time_to_complete")
        gaps = page.stage_times.result()
        if not gaps.empty:
            gaps = gaps.assign(median=[duration(ms) for ms in gaps["median_ms"]],
                               p90=[duration(ms) for ms in gaps["p90_ms"]])
            order = {f"{a}→{b}": n for n, (a, b) in enumerate(audience.STAGE_GAPS)}
            gaps = gaps.sort_values("gap", key=lambda g: g.map(order))
            show(gaps[["gap", "sessions", "median", "p90"]], name="stage_times")
    with right:
        spread = summary.spread
        spread["up to"] = [duration(s * 1000) if s else "longer" for s in spread["up_to_s"]]
        chart = px.bar(spread, x="up to", y="sessions", color="flow_version", barmode="group",
                       labels={"up to": "time to complete, up to"})
        chart.update_layout(height=280, margin={"l": 0, "r": 0, "t": 10, "b": 0}, legend_title_text="version")
        st.plotly_chart(chart, width="stretch")



live()
