"""Flow health state in the real ClickHouse engine (chDB in-process): the newest event of each kind
wins whatever order or how often the events arrive; ties on Meta's one-second time go to the later
receive; the history shows a redelivered event once."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from clickhouse_connect.driver.client import Client

from contract.events import FlowHealth, event_id
from warehouse import health, writer

T0 = 1_790_000_000


def utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)


def status(flow_id: str, new: str, at: int, *, received_ms: int | None = None) -> FlowHealth:
    return FlowHealth(event_id=event_id("h", flow_id, new, str(at), str(received_ms)), waba_id="w", flow_id=flow_id,
                      event="FLOW_STATUS_CHANGE", occurred_at=at, received_at_ms=received_ms or at * 1000,
                      new_status=new)


def availability(flow_id: str, state: str, value: float, at: int) -> FlowHealth:
    return FlowHealth(event_id=event_id("a", flow_id, state, str(at)), waba_id="w", flow_id=flow_id,
                      event="ENDPOINT_AVAILABILITY", occurred_at=at, received_at_ms=at * 1000, alert_state=state,
                      availability=value, threshold=90)


def insert(client: Client, events: list[FlowHealth]) -> None:
    writer.write(client, *writer.inserts(flow_health=events))


EVENTS = [
    status("F", "PUBLISHED", T0), status("F", "THROTTLED", T0 + 60), status("F", "BLOCKED", T0 + 120),
    availability("F", "ACTIVATED", 80, T0 + 30), availability("F", "DEACTIVATED", 95, T0 + 90),
]


@pytest.mark.parametrize("order", list(itertools.permutations(range(len(EVENTS))))[::17])
def test_newest_event_of_each_kind_wins_in_any_order_and_with_duplicates(client: Client,
                                                                          order: tuple[int, ...]) -> None:
    for i in order:
        insert(client, [EVENTS[i]])
    insert(client, EVENTS[:2])  # redelivered
    (state,) = health.flow_states(client)
    assert (state.flow_id, state.status, state.status_since) == ("F", "BLOCKED", utc(T0 + 120))
    assert (state.alerts, state.values) == ({"endpoint_availability": False}, {"endpoint_availability": 0.95})
    rows = health.history(client, start=utc(T0 - 1), end=utc(T0 + 999))
    assert list(rows["new_status"]) == ["BLOCKED", "", "THROTTLED", "", "PUBLISHED"]


def test_same_second_goes_to_the_later_receive(client: Client) -> None:
    insert(client, [status("G", "PUBLISHED", T0, received_ms=T0 * 1000 + 900),
                    status("G", "THROTTLED", T0, received_ms=T0 * 1000 + 100)])
    (state,) = health.flow_states(client)
    assert state.status == "PUBLISHED"
