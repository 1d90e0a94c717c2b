"""Node performance: per screen reached, dropped, time on screen; the worst screen; how sessions move."""

from __future__ import annotations

from concurrent.futures import Future
from datetime import timedelta

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboards.filters import flow_filter, not_by_country, refresh_seconds, refreshed
from dashboards.state import freshness_caption, warehouse, warehouse_below_the_top, warehouse_guard
from dashboards.tables import DROP_RATE_AMBER, DROP_RATE_RED, drop_rate_style, show
from warehouse import flows, screens
from warehouse.parallel import Fetch

st.title("Node performance")
with warehouse_guard():
    client = warehouse()
    below = warehouse_below_the_top()
    where = flow_filter(client, require_version=True)
refresh_s = refresh_seconds()
EXITS = {"completed": "#2e7d32", "dropped": "#e53935", "ongoing": "#9e9e9e"}


def screen_table(where: flows.FlowFilter, stats: pd.DataFrame, registered: pd.DataFrame) -> pd.DataFrame:
    """Every screen of the version in routing order, reached or not, with its figures."""
    stats = stats[stats["flow_version"] == where.flow_version].drop(columns=["flow_id", "flow_version"])
    if registered.empty:
        table = stats.assign(title=stats["screen"], components="")
    else:
        table = registered[["screen", "title", "component_types"]].merge(stats, on="screen", how="left")
        table["components"] = [", ".join(types) for types in table.pop("component_types")]
    for column in ("reached", "dropped", "completed_after", "visits"):
        table[column] = table[column].fillna(0).astype(int)
    table["drop rate"] = [d / r if r else 0.0 for d, r in zip(table["dropped"], table["reached"], strict=True)]
    table["median s"] = table["median_ms"] / 1000
    table["p90 s"] = table["p90_ms"] / 1000
    columns = ["screen", "title", "components", "reached", "dropped", "drop rate", "completed_after", "median s",
               "p90 s"]
    return table[columns]


def sankey(moves: pd.DataFrame) -> go.Figure:
    labels: list[str] = []
    index: dict[tuple[int, str], int] = {}
    colours: list[str] = []

    def node(step: int, name: str) -> int:
        key = (step, name) if name not in EXITS else (-1, name)
        if key not in index:
            index[key] = len(labels)
            labels.append(name if name in EXITS else f"{step}. {name}")
            colours.append(EXITS.get(name, "#5c6bc0"))
        return index[key]

    sources, targets, values = [], [], []
    for step, source, target, sessions in moves.itertuples(index=False, name=None):
        sources.append(node(step, source))
        targets.append(node(step + 1, target))
        values.append(sessions)
    figure = go.Figure(go.Sankey(
        node={"label": labels, "color": colours, "pad": 18, "thickness": 14},
        link={"source": sources, "target": targets, "value": values,
              "color": ["rgba(46,125,50,0.35)" if labels[t] == "completed" else "rgba(229,57,53,0.35)"
                        if labels[t] == "dropped" else "rgba(92,107,192,0.25)" for t in targets]},
    ))
    figure.update_layout(height=420, margin={"l": 0, "r": 0, "t": 10, "b": 0})
    return figure


@st.fragment(run_every=timedelta(seconds=refresh_s))
@warehouse_guard()
def live() -> None:
    figures()
    freshness_caption(client)


def figures() -> None:
    if where is None:
        if not flows.flow_versions(client).empty:
            st.rerun()  # the first sessions arrived: rebuild the sidebar with them
        st.info("No Flow sessions yet: register a Flow JSON and send events (see the README).")
        return
    figures_of(refreshed(where))


def figures_of(where: flows.FlowFilter) -> None:
    """The page's queries start at once (:mod:`warehouse.parallel`); each section is drawn when its result is in."""
    with Fetch() as fetch:
        registered = fetch(screens.flow_screens, client, where.flow_id, where.flow_version)
        stats = fetch.first(flows.node_stats, client, where)  # the screen table tops the page: it runs first
        # The rest below it, at a lower priority: on two cores it shares the CPU with drawing the table, here and,
        # on one machine, in the browser.
        moves = fetch(flows.transitions, below, where)
        top = fetch(flows.paths, below, where, limit=15)
        chosen = fetch(flows.selections, below, flow_id=where.flow_id, flow_version=where.flow_version)
        draw(where, screen_table(where, stats.result(), registered.result()), moves, top, chosen)


def draw(where: flows.FlowFilter, table: pd.DataFrame, moves: Future[pd.DataFrame], top: Future[pd.DataFrame],
         chosen: Future[pd.DataFrame]) -> None:
    if table.empty:
        st.info("No screen events for this version in this range.")
        return
    reached = table[table["dropped"] > 0]
    if reached.empty:
        st.info(f"No drop-offs yet: a session counts as abandoned after {where.timeout_s // 60} min without activity.")
    else:
        worst = reached.sort_values(["drop rate", "dropped"], ascending=False).iloc[0]
        st.error(
            f"Worst screen: **{worst['title']}** (`{worst['screen']}`) loses {worst['drop rate']:.1%} of the "
            f"sessions that reach it ({int(worst['dropped']):,} of {int(worst['reached']):,})."
        )
    styled = table.style.format({"drop rate": "{:.1%}", "median s": "{:.1f}", "p90 s": "{:.1f}"}).map(
        drop_rate_style, subset=["drop rate"]
    )
    show(styled, name=f"screens_{where.flow_id}_v{where.flow_version}")
    st.caption(f"Drop rate shaded amber from {DROP_RATE_AMBER:.0%} and red from {DROP_RATE_RED:.0%} of the sessions "
               "that reach the screen.")

    st.subheader("Paths between screens")
    if moves.result().empty:
        st.caption("No moves yet.")
    else:
        st.plotly_chart(sankey(moves.result()), width="stretch")

    left, right = st.columns(2)
    with left:
        st.subheader("Top paths")
        show(top.result().drop(columns=["flow_id", "flow_version"]), name="top_paths")
    with right:
        st.subheader("Choices on selection screens")
        not_by_country("Choices are")
        if chosen.result().empty:
            st.caption("No allow-listed selections (FLOWSCOPE_FORM_FIELDS_ALLOWLIST) submitted yet.")
        else:
            show(chosen.result().drop(columns=["flow_version"]), name="selections")
    st.caption(f"Flow {where.flow_id}, version {where.flow_version} · refreshes every {refresh_s} s")


live()
