"""What the pages share: which errors mean the warehouse is not answering, the page it then shows (a message and
Retry, never a traceback), and the freshness line."""

from __future__ import annotations

from datetime import datetime

import pytest
from clickhouse_connect.driver import exceptions as driver
from streamlit.testing.v1 import AppTest

from dashboards.state import freshness_text, trouble
from warehouse.exceptions import QueryError, WarehouseUnavailableError
from warehouse.freshness import Freshness

NO_CONNECTION = "The warehouse is unreachable (no connection): the figures will come back when it answers."


@pytest.mark.parametrize(("error", "reason"), [
    (WarehouseUnavailableError("connection refused"), "no connection"),
    (driver.OperationalError("Error executing HTTP request attempt 1"), "no connection"),
    (ConnectionRefusedError(111, "Connection refused"), "no connection"),
    (TimeoutError("timed out"), "no connection"),
    (QueryError("Code: 241", code=241, name="MEMORY_LIMIT_EXCEEDED"), "ClickHouse error 241 MEMORY_LIMIT_EXCEEDED"),
    (QueryError("Code: 159", code=159), "ClickHouse error 159"),
    (QueryError("no code"), "it answered with an error"),
    (driver.DatabaseError("Code: 60", code=60, name="UNKNOWN_TABLE"), "ClickHouse error 60 UNKNOWN_TABLE"),
    (driver.OperationalError("Code: 202", code=202, name="TOO_MANY_SIMULTANEOUS_QUERIES"),
     "ClickHouse error 202 TOO_MANY_SIMULTANEOUS_QUERIES"),
])
def test_errors_of_the_warehouse_get_a_message(error: Exception, reason: str) -> None:
    assert trouble(error) == f"The warehouse is unreachable ({reason}): the figures will come back when it answers."


@pytest.mark.parametrize("error", [ValueError("bad"), KeyError("rate"), FileNotFoundError("x"), ZeroDivisionError()])
def test_other_errors_are_bugs_and_get_none(error: Exception) -> None:
    assert trouble(error) is None


def unreachable_page() -> None:
    import streamlit as st

    from dashboards.state import warehouse_guard
    from warehouse.exceptions import WarehouseUnavailableError

    st.title("A page")
    with warehouse_guard():
        st.write("before")
        raise WarehouseUnavailableError("connection refused")
    st.write("never")


def unreachable_fragment() -> None:
    import streamlit as st

    from dashboards.state import warehouse_guard
    from warehouse.exceptions import QueryError

    @st.fragment
    @warehouse_guard()
    def live() -> None:
        raise QueryError("Code: 241", code=241, name="MEMORY_LIMIT_EXCEEDED")

    live()


def buggy_page() -> None:
    from dashboards.state import warehouse_guard

    with warehouse_guard():
        raise ValueError("a bug")


def test_an_unreachable_warehouse_shows_a_message_and_retry_not_a_traceback() -> None:
    app = AppTest.from_function(unreachable_page).run()
    assert not app.exception
    assert [e.value for e in app.error] == [NO_CONNECTION]
    assert [m.value for m in app.markdown] == ["before"]
    assert [b.label for b in app.button] == ["Retry"]
    app.button[0].click().run()  # retried, still unreachable: the same page again
    assert not app.exception
    assert [e.value for e in app.error] == [NO_CONNECTION]


def test_a_fragment_guarded_by_the_decorator_shows_the_servers_code() -> None:
    app = AppTest.from_function(unreachable_fragment).run()
    assert not app.exception
    assert [e.value for e in app.error] == [
        "The warehouse is unreachable (ClickHouse error 241 MEMORY_LIMIT_EXCEEDED): the figures will come back "
        "when it answers."]
    assert [b.label for b in app.button] == ["Retry"]


def test_a_bug_is_not_hidden() -> None:
    app = AppTest.from_function(buggy_page).run()
    assert [e.message for e in app.exception] == ["a bug"]
    assert not app.error


def test_the_freshness_line() -> None:
    fresh = Freshness(latest_event_at=datetime(2026, 3, 1, 11, 59, 51), latest_insert_at=datetime(2026, 3, 1, 12, 0, 3),
                      behind_s=5.2, event_age_s=12.4)
    assert freshness_text(fresh) == "Data updated 12:00:03 UTC (5 s ago) · newest event 12 s ago"
    stale = Freshness(latest_event_at=datetime(2026, 3, 1, 9, 0), latest_insert_at=datetime(2026, 3, 1, 9, 0),
                      behind_s=3 * 3600.0, event_age_s=3 * 3600.0)
    assert freshness_text(stale) == "Data updated 09:00:00 UTC (3.0 h ago) · newest event 3.0 h ago"
    assert freshness_text(Freshness(None, None, None, None)) == "No event stored yet."
