"""What every page shares: settings, one read-only (analyst) warehouse client, and how a page says how it is.

How the warehouse is: a page shows how fresh its data is (:func:`freshness_caption`), and when the warehouse
does not answer, a clear message and a Retry button instead of a traceback (:func:`warehouse_guard`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st
from clickhouse_connect.driver import exceptions as driver
from clickhouse_connect.driver.client import Client

from config.settings import Settings
from dashboards.formats import duration
from warehouse.client import connect, translate
from warehouse.exceptions import QueryError, WarehouseError
from warehouse.freshness import Freshness, freshness

logger = logging.getLogger(__name__)


@st.cache_resource
def settings() -> Settings:
    return Settings.from_env()


# The nice value of the warehouse threads running the queries of what a page draws below its top: they yield the
# CPU to the query behind a top (any page's, any user's) and, on one machine, to the browser drawing it.
BELOW_THE_TOP_PRIORITY = 10


@st.cache_resource
def warehouse() -> Client:
    return connect(settings().warehouse_url_for("analyst"), autogenerate_session_id=False)


@st.cache_resource
def warehouse_below_the_top() -> Client:
    """The warehouse for the queries of what a page draws below its top (see BELOW_THE_TOP_PRIORITY)."""
    return connect(settings().warehouse_url_for("analyst"), autogenerate_session_id=False,
                   settings={"os_thread_priority": BELOW_THE_TOP_PRIORITY})


def trouble(exc: BaseException) -> str | None:
    """The message a page shows for an error of the warehouse (unreachable, or answering with an error), or None
    for any other error: that one is a bug, and is left to raise."""
    if not isinstance(exc, WarehouseError | driver.Error | ConnectionError | TimeoutError):
        return None
    error = translate(exc)
    if isinstance(error, QueryError):
        reason = f"ClickHouse error {error.code} {error.name}".rstrip() if error.code else "it answered with an error"
    else:
        reason = "no connection"
    return f"The warehouse is unreachable ({reason}): the figures will come back when it answers."


@contextmanager
def warehouse_guard() -> Iterator[None]:
    """Runs a page's body (``with warehouse_guard():``, or ``@warehouse_guard()`` on a fragment); when the
    warehouse fails it, shows :func:`trouble`'s message and a Retry button, and stops the run there."""
    try:
        yield
    except Exception as exc:
        message = trouble(exc)
        if message is None:
            raise
        logger.warning("page stopped, warehouse error: %s (%s)", type(exc).__name__, message)
        st.error(message, icon=":material/cloud_off:")
        if st.button("Retry", key="warehouse_retry"):
            st.rerun()
        st.stop()


def freshness_text(fresh: Freshness) -> str:
    """``Data updated 12:00:03 UTC (5 s ago) · newest event 12 s ago``, or that nothing is stored yet."""
    if fresh.latest_insert_at is None or fresh.behind_s is None or fresh.event_age_s is None:
        return "No event stored yet."
    return (f"Data updated {fresh.latest_insert_at:%H:%M:%S} UTC ({_ago(fresh.behind_s)}) · "
            f"newest event {_ago(fresh.event_age_s)}")


def _ago(seconds: float) -> str:
    return f"{duration(seconds * 1000)} ago"


def freshness_caption(client: Client) -> None:
    """The caption at the foot of a page: when data was last stored, and how old the newest event is."""
    st.caption(freshness_text(freshness(client)),
               help="Across the stored statuses, screen events, Flow sends and completions, by the warehouse's clock")

