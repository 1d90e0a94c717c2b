"""The Overview's figures, in the real ClickHouse engine (chDB in-process): a period against the one before it, trend
buckets over the whole range, the worst screen and the top failure code."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from clickhouse_connect.driver.client import Client

from contract.events import MessageStatus, UserPreference, event_id
from tests.unit.warehouse.test_costs import CARD
from warehouse import overview, writer
from warehouse.parallel import Fetch
from warehouse.rollup import DeliveryRollup

NOW = datetime.now(UTC).replace(tzinfo=None, second=0, microsecond=0)


def status(wamid: str, value: str, at: datetime, *, code: int = 0) -> MessageStatus:
    seconds = int(at.replace(tzinfo=UTC).timestamp())
    priced = value in ("sent", "delivered")
    return MessageStatus(event_id=event_id("status", wamid, value), waba_id="w", phone_number_id="pn", wamid=wamid,
                         status=value, occurred_at=seconds, received_at_ms=seconds * 1000, recipient_hash=f"p{wamid}",
                         person_hash=f"p{wamid}", country="BR", error_code=code,
                         pricing_category="marketing" if priced else "", pricing_type="regular" if priced else "",
                         billable=1 if priced else -1)


class _Counting:
    """A client that notes the flowscope tables its queries name (stands in for the client in one unit test)."""

    def __init__(self, client: Client) -> None:
        self._client, self.tables = client, set[str]()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)
        if name not in ("query", "query_df", "command"):
            return method

        def noted(sql: str, *args: Any, **kwargs: Any) -> Any:
            self.tables |= set(re.findall(r"\b(message_\w+|flow_\w+|outbound_messages|rollup_progress|person_\w+|"
                                          r"opt_\w+|user_\w+)\b", sql))
            return method(sql, *args, **kwargs)
        return noted


def test_a_period_against_the_one_before(client: Client) -> None:
    start, end = NOW - timedelta(hours=1), NOW
    before = NOW - timedelta(hours=1, minutes=30)
    statuses = [
        # this hour: 4 sent, 2 delivered (one also read), 1 read without delivered, 1 failed (131049)
        status("a", "sent", NOW - timedelta(minutes=50)), status("a", "delivered", NOW - timedelta(minutes=49)),
        status("a", "read", NOW - timedelta(minutes=40)),
        status("b", "sent", NOW - timedelta(minutes=30)), status("b", "delivered", NOW - timedelta(minutes=29)),
        status("c", "sent", NOW - timedelta(minutes=20)), status("c", "read", NOW - timedelta(minutes=19)),
        status("d", "sent", NOW - timedelta(minutes=10)),
        status("d", "failed", NOW - timedelta(minutes=9), code=131049),
        # the hour before: 2 sent, 1 delivered
        status("e", "sent", before), status("e", "delivered", before + timedelta(minutes=1)),
        status("f", "sent", before),
    ]
    stop = UserPreference(event_id="s1", waba_id="w", phone_number_id="pn", category="marketing_messages",
                          value="stop", occurred_at=int((NOW - timedelta(minutes=5)).replace(tzinfo=UTC).timestamp()),
                          received_at_ms=0, person_hash="pa")
    writer.write(client, *writer.inserts(statuses=statuses + statuses[:3], preferences=[stop]))
    DeliveryRollup(client, seal_after_s=120, reads_interval_s=0).run_once()  # keeps the reads without delivered

    now = overview.figures(client, start, end, timeout_s=1800, card=CARD, now=NOW)
    assert (now.sent, now.delivered, now.read, now.failed, now.opt_outs) == (4, 3, 2, 1, 1)
    assert (now.delivery_rate, now.read_rate, now.failure_rate, now.completion_rate) == (0.75, 0.5, 0.25, None)
    assert now.spend == Decimal("0.1875")  # a, b, c delivered or read, BR marketing regular at 0.0625
    previous = overview.previous(start, end)
    assert previous == (start - timedelta(hours=1), start - timedelta(seconds=1))
    then = overview.figures(client, *previous, timeout_s=1800, card=CARD, now=NOW)
    assert (then.sent, then.delivered, then.failed, then.opt_outs, then.spend) == (2, 1, 0, 0, Decimal("0.0625"))

    trend = overview.trends(client, start, end, timeout_s=1800, now=NOW)
    assert len(trend) == 13 and trend["bucket"].is_monotonic_increasing  # every 5 minutes of the hour, both ends
    assert int(trend["sent"].sum()) == 4 and int(trend["failed"].sum()) == 1 and int(trend["flow_sessions"].sum()) == 0

    assert overview.top_failure(client, start, end) == (131049, overview.meaning(131049), 1)
    assert overview.top_failure(client, *previous) is None
    assert overview.worst_screen(client, start, end, timeout_s=1800, now=NOW) is None

    # The page runs the same queries side by side: the same figures, trends and callouts.
    shown = overview.page(client, start, end, timeout_s=1800, card=CARD, now=NOW)
    assert (shown.figures, shown.before) == (now, then)
    assert shown.trends.equals(trend)
    assert (shown.worst_screen, shown.top_failure) == (None, (131049, overview.meaning(131049), 1))

    # The page draws the message figures first, from their own queries: the same figures and trends.
    with Fetch() as fetch:
        started = overview.start_page(client, start, end, timeout_s=1800, card=CARD, fetch=fetch, now=NOW)
        messages, messages_before, message_trend = started.deliveries()
        assert (messages.sent, messages.delivered, messages.read, messages.failed) == (4, 3, 2, 1)
        assert (messages_before.sent, messages_before.delivered) == (2, 1)
        assert (messages.delivery_rate, messages.failure_rate) == (now.delivery_rate, now.failure_rate)
        assert message_trend.equals(trend[["bucket", "sent", "delivered", "read", "failed"]])
        figures, figures_before, every_trend = started.figures()
        assert (figures, figures_before) == (now, then) and every_trend.equals(trend)

    # Every query but the message figures' may go to another client (the dashboards': a lower priority): the same
    # figures, the message row from ``client`` alone.
    top, rest = _Counting(client), _Counting(client)
    with Fetch() as fetch:
        started = overview.start_page(top, start, end, timeout_s=1800, card=CARD, fetch=fetch, now=NOW,  # type: ignore[arg-type]
                                      below=rest)  # type: ignore[arg-type]
        assert started.deliveries()[0] == messages
        assert started.figures()[:2] == (now, then)
        assert (started.worst_screen(), started.top_failure()) == (None, (131049, overview.meaning(131049), 1))
    assert top.tables <= {"message_status_counts", "message_status_minute", "message_status_hour_counts",
                          "message_status_touches", "messages_read_undelivered", "message_delivered_index",
                          "message_read_touches", "rollup_progress"}, top.tables
    assert {"flow_session_rows", "outbound_messages"} <= rest.tables, rest.tables
