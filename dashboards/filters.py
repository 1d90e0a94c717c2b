"""Sidebar controls the pages share: the time ranges they offer, and the flow pages' filter."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pandas as pd
import streamlit as st
from clickhouse_connect.driver.client import Client

from dashboards.state import settings
from warehouse import flow_names, flows, queries

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


def flow_filter(client: Client, *, require_version: bool = False, default: str = "Last 24 hours",
                label: str = "Sent in") -> flows.FlowFilter | None:
    """Time range, flow, version and campaign from the sidebar, shared with the other pages and kept in the URL;
    None when no flow is known yet. Call :func:`refreshed` on it in a page's refreshing section."""
    known = flows.flow_versions(client)
    chosen = period(RANGES, default=default, label=label)
    if known.empty:
        return None
    with st.sidebar:
        names = flow_names.flow_names(client)
        flow_ids = sorted(known["flow_id"].unique(), key=lambda f: (names.get(f, "~"), f))
        flow_id = _select("Flow", flow_ids, key="flow", default_index=0,
                          format_func=lambda f: flow_names.label(f, names))
        versions = sorted(known.loc[known["flow_id"] == flow_id, "flow_version"].unique(), key=_version_key)
        options = versions if require_version else [ALL, *versions]
        version = _select("Version", options, key="version", default_index=len(options) - 1 if require_version else 0)
        campaigns = sorted(c for c in known.loc[known["flow_id"] == flow_id, "campaign"].unique() if c)
        campaign = _select("Campaign", [ALL, *campaigns], key="campaign", default_index=0)
    countries = recipient_countries(client)
    start, end = chosen.bounds()
    return flows.FlowFilter(
        start=start, end=end, flow_id=flow_id,
        flow_version="" if version == ALL else version, campaign="" if campaign == ALL else campaign,
        countries=countries, timeout_s=settings().session_timeout_s,
    )


MOST_SENT = "Most sessions sent"


def baseline_version(client: Client, where: flows.FlowFilter) -> str | None:
    """The version others are compared against, chosen in the sidebar (outside the page's refreshing section, so a
    refresh never closes the box while someone is choosing) and kept in the URL; None: the version with the most
    sessions sent in the range (:func:`warehouse.versions.default_baseline`)."""
    known = flows.flow_versions(client)
    versions = sorted(known.loc[known["flow_id"] == where.flow_id, "flow_version"].unique(), key=_version_key)
    with st.sidebar:
        chosen = _select("Baseline version", [MOST_SENT, *versions], key="baseline", default_index=0,
                         help="The version every other is compared against in *Version against version*")
    return None if chosen == MOST_SENT else str(chosen)


def refreshed(where: flows.FlowFilter) -> flows.FlowFilter:
    """``where`` with the bounds of the chosen period now (a preset range moves with the clock)."""
    start, end = current_period().bounds()
    return dataclasses.replace(where, start=start, end=end, now=None)


# --- filters shared by every page and kept in the URL ----------------------------------------------------------

CUSTOM = "Custom range"
TIME_ZONES = ("UTC", "America/Sao_Paulo", "America/Mexico_City", "America/New_York", "Europe/London",
              "Europe/Berlin", "Asia/Kolkata", "Asia/Singapore")
_STORE = "shared_filters"  # session state: the filters chosen on any page, seeded once from the URL
_LIST_KEYS = frozenset({"numbers", "country"})
UNKNOWN_COUNTRY = "unknown"  # how the sidebar and the URL name the country "" (a recipient whose country is unknown)


@dataclass(frozen=True)
class Period:
    """A preset range ending now (``span``), or a custom one (``start``/``end``, naive UTC), and the time zone
    the pages show times in."""

    label: str
    span: timedelta | None
    start: datetime | None
    end: datetime | None
    tz: str

    def bounds(self) -> tuple[datetime, datetime]:
        """(start, end), naive UTC: a preset range ends now."""
        if self.span is not None:
            end = datetime.now(UTC).replace(tzinfo=None)
            return end - self.span, end
        if self.start is None or self.end is None:  # pragma: no cover - a custom period has both
            raise ValueError("a custom period needs a start and an end")
        return self.start, self.end

    def local(self, frame: pd.DataFrame, column: str) -> pd.DataFrame:
        """``frame`` with its naive-UTC time ``column`` shown in the chosen time zone."""
        if frame.empty or self.tz == "UTC":
            return frame
        times = pd.to_datetime(frame[column])
        times = times.dt.tz_localize("UTC") if times.dt.tz is None else times
        return frame.assign(**{column: times.dt.tz_convert(self.tz)})


def _store() -> dict[str, Any]:
    """The shared filters of this browser session; the first page it opens reads them from the URL."""
    if _STORE not in st.session_state:
        params = st.query_params
        st.session_state[_STORE] = {
            key: (params.get_all(key) if key in _LIST_KEYS else params.get(key)) for key in params
            if key in {"range", "from", "to", "tz", "numbers", "flow", "version", "campaign", "baseline", "country"}}
    store: dict[str, Any] = st.session_state[_STORE]
    return store


def _remember(key: str, value: Any) -> None:
    """Keep a chosen filter for the other pages and in the URL (so a link opens the same view)."""
    _store()[key] = value
    if value in (None, "", []) or value in (ALL, MOST_SENT):
        if key in st.query_params:
            del st.query_params[key]
    elif isinstance(value, list):
        st.query_params[key] = [str(v) for v in value]
    else:
        st.query_params[key] = str(value)


def _select(label: str, options: list[Any], *, key: str, default_index: int,
            format_func: Any = str, help: str | None = None) -> Any:  # noqa: A002 - Streamlit's name
    wanted = _store().get(key)
    index = options.index(wanted) if wanted in options else min(default_index, len(options) - 1)
    value = st.selectbox(label, options, index=index, format_func=format_func, help=help)
    _remember(key, value)
    return value


def period(ranges: dict[str, timedelta], *, default: str, label: str = "Time range") -> Period:
    """The time range (a preset of ``ranges`` or a custom one) and time zone, in the sidebar."""
    options = [*ranges, CUSTOM]
    with st.sidebar:
        name = _select(label, options, key="range", default_index=options.index(default))
        start = end = None
        if name == CUSTOM:
            today = datetime.now(UTC).date()
            store = _store()
            first = _date(store.get("from")) or today - timedelta(days=7)
            last = _date(store.get("to")) or today
            picked = st.date_input("From – to (UTC days)", value=(first, last), max_value=today)
            if isinstance(picked, tuple) and len(picked) == 2:
                first, last = picked
            _remember("from", first.isoformat())
            _remember("to", last.isoformat())
            start = datetime.combine(first, datetime.min.time())
            end = datetime.combine(last, datetime.min.time()) + timedelta(days=1) - timedelta(seconds=1)
        else:
            _remember("from", None)
            _remember("to", None)
        tz = _select("Time zone", list(TIME_ZONES), key="tz", default_index=0)
    chosen = Period(name, ranges.get(name) if name != CUSTOM else None, start, end, tz)
    st.session_state["current_period"] = chosen
    return chosen


def current_period() -> Period:
    """The period the page chose in its sidebar (this run)."""
    chosen: Period = st.session_state["current_period"]
    return chosen


def phone_numbers(known: list[str]) -> tuple[str, ...]:
    """Business phone numbers to show (none chosen: all), shared and kept in the URL."""
    wanted = list(_store().get("numbers") or [])
    options = sorted({*known, *wanted})  # a number from a link stays chosen even before its data arrives
    with st.sidebar:
        chosen = st.multiselect("Business phone number id", options, default=wanted, placeholder="All numbers")
    _remember("numbers", list(chosen))
    return tuple(chosen)


def recipient_countries(client: Client) -> tuple[str, ...]:
    """Recipient countries to show (ISO 3166 codes, ``""`` for unknown; none chosen: all), shared and kept in the URL
    (key ``country``, ``unknown`` for ``""``); the choices are the countries the warehouse knows."""
    wanted = [str(c) for c in _store().get("country") or []]
    known = [c or UNKNOWN_COUNTRY for c in queries.countries(client)]
    options = sorted({*known, *wanted}, key=lambda c: (c == UNKNOWN_COUNTRY, c))  # a linked one stays chosen
    with st.sidebar:
        chosen = st.multiselect("Recipient country", options, default=[c for c in wanted if c in options],
                                placeholder="All countries",
                                help="ISO 3166 country of the recipient; unknown: no country could be told")
    _remember("country", list(chosen))
    return tuple("" if c == UNKNOWN_COUNTRY else c for c in chosen)


def not_by_country(what: str) -> None:
    """Say that ``what`` is not filtered by the recipient countries chosen on another page (it has no recipient)."""
    if _store().get("country"):
        st.caption(f"{what} not filtered by recipient country: it has no recipient.")


def _date(text: Any) -> date | None:
    try:
        return date.fromisoformat(str(text)) if text else None
    except ValueError:
        return None


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
