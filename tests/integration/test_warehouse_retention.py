"""Retention through `migrate` against a warehouse server: the TTL each table gets from the setting, changed and
removed by migrating again; expired raw rows removed, and no derived row removed while a raw row that fed it
is kept."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from clickhouse_connect.driver.client import Client

from contract.events import FlowCompletion, FlowSent, MessageStatus, NodeEvent, event_id
from tests.conftest import WarehouseServer
from warehouse import writer
from warehouse.client import connect
from warehouse.migrate import migrate
from warehouse.retention import DERIVED, RAW, RETENTIONS, apply_retention, current_ttl

ServerFactory = Callable[..., WarehouseServer]

DATABASE = "flowscope"


def _ttls(client: Client) -> dict[str, str | None]:
    rows = client.query(
        f"SELECT name, engine_full FROM system.tables WHERE database = '{DATABASE}' AND engine != 'MaterializedView'"
    ).result_rows
    return {name: current_ttl(engine_full) for name, engine_full in rows}


def _days(ttl: str | None) -> int | None:
    if ttl is None:
        return None
    match = re.search(r" \+ toIntervalDay\((\d+)\)$", ttl)
    assert match, ttl
    return int(match.group(1))


def test_migrate_sets_changes_and_removes_the_ttls_from_the_setting(warehouse_server_factory: ServerFactory) -> None:
    server = warehouse_server_factory()
    url = server.url_for("admin", DATABASE)
    migrate(url)
    client = server.client(database=DATABASE)
    kept = {r.table for r in RETENTIONS}
    initial = _ttls(client)
    assert {name: initial[name] for name in kept} == dict.fromkeys(kept), "no TTL unless the setting is passed"

    def ttls_after_migrate(days: int) -> dict[str, str | None]:
        """Migrate with ``days``: the retention tables' TTLs are for it; any other keeps the TTL of its DDL."""
        migrate(url, retention_days=days)
        ttls = _ttls(client)
        assert {name: _days(ttls[name]) for name in kept} == dict.fromkeys(kept, days or None)
        assert {name: ttl for name, ttl in ttls.items() if name not in kept} == {
            name: ttl for name, ttl in initial.items() if name not in kept}
        return ttls

    ttls = ttls_after_migrate(30)
    assert ttls["message_statuses"] == "occurred_at + toIntervalDay(30)"
    assert ttls["flow_sessions"] == "last_activity_at + toIntervalDay(30)"
    assert min(_days(ttls[r.table]) or 0 for r in DERIVED) >= max(_days(ttls[r.table]) or 0 for r in RAW)
    admin = connect(url)
    try:
        assert apply_retention(admin, 30) == [], "a TTL already set is left alone"
        migrate(url)
        assert _ttls(client) == ttls, "migrating without the setting leaves the TTLs"

        ttls_after_migrate(45)
        assert ttls_after_migrate(0) == initial
        assert apply_retention(admin, 0) == []
    finally:
        admin.close()


def test_expired_raw_rows_go_and_a_derived_row_stays_while_a_raw_row_that_fed_it_stays(
    warehouse_server_factory: ServerFactory,
) -> None:
    server = warehouse_server_factory()
    migrate(server.url_for("admin", DATABASE), retention_days=10)
    expiry_line = int(time.time()) - 10 * 86400
    old, young = expiry_line - 3600, expiry_line + 3600  # expired an hour ago; expires in an hour
    events = writer.inserts(
        statuses=[_status("wamid.1", "sent", old), _status("wamid.1", "read", young), _status("wamid.2", "sent", old)],
        flow_sends=[FlowSent(event_id=event_id("flow_sent", "wamid.1"), wamid="wamid.1", flow_id="F1", flow_version="1",
                             flow_token="token-1", occurred_at_ms=old * 1000, received_at_ms=old * 1000)],
        node_events=[_node("A", old), _node("B", young)],
        completions=[FlowCompletion(event_id=event_id("nfm_reply", "reply.1"), waba_id="W1", phone_number_id="P1",
                                    wamid="reply.1", flow_wamid="wamid.1", flow_token="token-1", occurred_at=young,
                                    received_at_ms=young * 1000, user_hash="u")],
    )
    writer.write(server.client("writer", database=DATABASE), *events)
    client = server.client(database=DATABASE)
    for table in (r.table for r in RETENTIONS):
        client.command(f"OPTIMIZE TABLE {table} FINAL")  # a merge removes what has expired

    def rows(sql: str) -> list[tuple[object, ...]]:
        return [tuple(row) for row in client.query(sql).result_rows]

    assert rows("SELECT wamid, status FROM message_statuses FINAL") == [("wamid.1", "read")]
    assert rows("SELECT status, uniqExactMerge(messages) FROM message_status_minute GROUP BY status") == [("read", 1)]
    # wamid.1's state stays while its read status does, first sent time included; wamid.2's went with its status.
    assert rows("SELECT wamid, toUnixTimestamp(min(sent_at)), toUnixTimestamp(min(read_at)) FROM message_state "
                "GROUP BY wamid") == [("wamid.1", old, young)]
    assert rows("SELECT count() FROM flow_sends") == rows("SELECT count() FROM flow_sends_by_time") == [(0,)]
    assert rows("SELECT screen FROM flow_node_events FINAL") == [("B",)]
    assert rows("SELECT count() FROM flow_completions FINAL") == [(1,)]
    # The session keeps both screen events while one of them is stored; its send went with the send.
    assert rows("SELECT flow_token, length(groupUniqArrayMerge(node_events)), toUnixTimestamp(min(completed_at)) "
                "FROM flow_sessions GROUP BY flow_token") == [("token-1", 2, young)]


def _status(wamid: str, value: str, at: int) -> MessageStatus:
    return MessageStatus(event_id=event_id("status", wamid, value), waba_id="W1", phone_number_id="P1", wamid=wamid,
                         status=value, occurred_at=at, received_at_ms=at * 1000, recipient_hash="h")


def _node(screen: str, at: int) -> NodeEvent:
    return NodeEvent(event_id=event_id("node", "token-1", screen, "view"), flow_token="token-1", flow_id="F1",
                     flow_version="1", screen=screen, action="view", occurred_at_ms=at * 1000,
                     received_at_ms=at * 1000)
