"""Freshness in the real ClickHouse engine (chDB in-process): the newest event and insert across the raw event
tables, their ages, nothing when empty, and an event dated in the future capped at its insert."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from clickhouse_connect.driver.client import Client

from contract.events import FlowCompletion, FlowSent, MessageStatus, NodeEvent, event_id
from warehouse import writer
from warehouse.freshness import Freshness, freshness

T0 = int(time.time()) - 3600


def utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def status(at: int) -> MessageStatus:
    return MessageStatus(event_id=event_id("status", "w1", "sent"), waba_id="waba", phone_number_id="pn",
                         wamid="w1", status="sent", occurred_at=at, received_at_ms=at * 1000, recipient_hash="h")


def screen(at_ms: int) -> NodeEvent:
    return NodeEvent(event_id=event_id("node", "tok1", "A", "view"), flow_token="tok1", flow_id="F1",
                     flow_version="1", screen="A", action="view", occurred_at_ms=at_ms, received_at_ms=at_ms)


def send(at_ms: int) -> FlowSent:
    return FlowSent(event_id=event_id("flow_sent", "w1"), wamid="w1", flow_id="F1", flow_version="1",
                    flow_token="tok1", campaign="", occurred_at_ms=at_ms, received_at_ms=at_ms)


def completion(at: int) -> FlowCompletion:
    return FlowCompletion(event_id=event_id("nfm_reply", "r1"), waba_id="waba", phone_number_id="pn", wamid="r1",
                          flow_wamid="w1", flow_token="tok1", occurred_at=at, received_at_ms=at * 1000, user_hash="")


def test_nothing_stored_is_no_freshness(client: Client) -> None:
    assert freshness(client) == Freshness(latest_event_at=None, latest_insert_at=None, behind_s=None,
                                          event_age_s=None)


def test_the_newest_event_and_insert_across_the_event_tables(client: Client) -> None:
    before = now()
    writer.write(client, *writer.inserts(statuses=[status(T0)], node_events=[screen(T0 * 1000 + 250)],
                                         flow_sends=[send((T0 - 60) * 1000)], completions=[completion(T0 - 10)]))
    after = now()
    found = freshness(client)
    assert found.latest_event_at == utc(T0)  # the newest event, to the second (the parts' min-max index)
    assert found.latest_insert_at is not None
    assert before - timedelta(seconds=1) <= found.latest_insert_at <= after + timedelta(seconds=1)
    assert found.behind_s is not None and 0 <= found.behind_s <= (now() - before).total_seconds() + 1
    assert found.event_age_s is not None
    assert (before - utc(T0)).total_seconds() - 1 <= found.event_age_s
    assert found.event_age_s <= (now() - utc(T0)).total_seconds() + 1


def test_an_event_dated_after_its_insert_counts_as_inserted_then(client: Client) -> None:
    writer.write(client, *writer.inserts(statuses=[status(T0)]))
    writer.write(client, *writer.inserts(completions=[completion(T0 + 86_400)]))  # a sender's clock a day ahead
    found = freshness(client)
    assert found.latest_event_at is not None and found.latest_event_at < utc(T0 + 86_400)
    assert found.latest_event_at == found.latest_insert_at
    assert found.event_age_s == found.behind_s
