"""``flowscope warehouse rebuild`` in the real ClickHouse engine (chDB in-process): derived tables recomputed from
the raw tables equal what the views made live; twice changes nothing; broken rows are repaired; a range
rebuild touches only its range (and whole entities)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client

from contract.events import (
    FlowCompletion,
    FlowHealth,
    FlowSent,
    IdentityLink,
    MessageStatus,
    NodeEvent,
    UserPreference,
)
from warehouse import message_hours, tables, writer
from warehouse.migrate import backfill_new_derived_tables
from warehouse.queries import DeliveryFilter, delivery_totals
from warehouse.rebuild import DERIVED, plan, rebuild
from warehouse.resolution import SessionRollup
from warehouse.rollup import REBUILDING, DeliveryRollup, progress, server_now

T0 = (int(time.time()) - 7200) // 60 * 60  # two hours ago, on a minute
ALL = DeliveryFilter(start=datetime(2014, 1, 1), end=datetime(2100, 1, 1))
DB = "flowscope"


def at(seconds: int) -> datetime:
    return datetime.utcfromtimestamp(T0 + seconds)  # noqa: DTZ004 - naive UTC, as the warehouse's parameters


def events() -> dict[str, list[Any]]:
    statuses, sends, nodes, completions = [], [], [], []
    for i in range(12):
        sent = T0 + 60 * i
        wamid, token = f"w{i}", f"tok{i}"
        # Users known by phone number, by BSUID, or both (which links the two).
        phone, bsuid = f"ph{i % 5}" if i % 3 else "", f"bs{i % 5}" if i % 2 else ""
        statuses.append(MessageStatus(event_id=f"{wamid}.s", waba_id="waba", phone_number_id=f"p{i % 2}",
                                      wamid=wamid, status="sent", occurred_at=sent, received_at_ms=sent * 1000,
                                      recipient_hash=phone, recipient_user_id_hash=bsuid,
                                      person_hash=bsuid or phone or "h"))
        statuses.append(MessageStatus(event_id=f"{wamid}.d", waba_id="waba", phone_number_id=f"p{i % 2}",
                                      wamid=wamid, status="delivered" if i % 4 else "failed", occurred_at=sent + 5,
                                      received_at_ms=sent * 1000, error_code=0 if i % 4 else 131049,
                                      recipient_hash="h"))
        sends.append(FlowSent(event_id=f"send.{i}", wamid=wamid, flow_id="F1", flow_version=str(1 + i % 2),
                              flow_token=token, campaign="spring", occurred_at_ms=sent * 1000 - 1000,
                              received_at_ms=sent * 1000))
        for k, screen in enumerate(("A", "B")[: 1 + i % 2]):
            nodes.append(NodeEvent(event_id=f"node.{i}.{k}", flow_token=token, flow_id="F1",
                                   flow_version=str(1 + i % 2), screen=screen, node_type="form", action="submit",
                                   occurred_at_ms=(sent + 30 + k) * 1000, received_at_ms=(sent + 30) * 1000,
                                   source="endpoint", field_keys=["plan"], fields={"plan": f"p{i % 3}"}))
        if i % 3 == 0:
            completions.append(FlowCompletion(event_id=f"done.{i}", waba_id="waba", phone_number_id="p0",
                                              wamid=f"r{i}", flow_wamid=wamid, flow_token=token,
                                              occurred_at=sent + 50, received_at_ms=(sent + 50) * 1000,
                                              user_hash="u", response_keys=[], response_fields={}))
    health = [FlowHealth(event_id=f"h{i}", waba_id="waba", flow_id="F1", event="ENDPOINT_LATENCY",
                         occurred_at=T0 + 100 * i, received_at_ms=(T0 + 100 * i) * 1000,
                         alert_state="ACTIVATED" if i % 2 else "DEACTIVATED", p90_latency_ms=100.0 * i)
              for i in range(3)]
    preferences = [UserPreference(event_id=f"pref{i}", waba_id="waba", phone_number_id="p0",
                                  category="marketing_messages", value="stop", occurred_at=T0 + 60 * i,
                                  received_at_ms=(T0 + 60 * i) * 1000, phone_hash=f"ph{i}", user_id_hash=f"bs{i + 1}",
                                  person_hash=f"bs{i + 1}") for i in range(3)]
    links = [IdentityLink(event_id="link0", waba_id="waba", kind="user_changed_user_id", from_hash="bs1",
                          to_hash="bs9", occurred_at=T0 + 400, received_at_ms=(T0 + 400) * 1000)]
    return {"statuses": statuses, "flow_sends": sends, "node_events": nodes, "completions": completions,
            "flow_health": health, "preferences": preferences, "identity_links": links}


def store(client: Client) -> None:
    writer.write(client, *writer.inserts(**events()))


FIGURES = {
    tables.MESSAGE_STATUS_MINUTE_TABLE:
        "SELECT phone_number_id, minute, status, error_code, uniqExactMerge(messages) FROM {t} "
        "GROUP BY ALL ORDER BY ALL",
    tables.FLOW_SENDS_BY_TIME_TABLE: "SELECT DISTINCT flow_id, sent_at, flow_token FROM {t} ORDER BY ALL",
    tables.FLOW_VARIANTS_TABLE: "SELECT flow_id, flow_version, campaign, max(last_sent_at) FROM {t} GROUP BY ALL "
                                "ORDER BY ALL",
    tables.MESSAGE_STATE_TABLE:
        "SELECT wamid, min(sent_at), min(delivered_at), min(read_at), min(failed_at), max(error_code) FROM {t} "
        "GROUP BY wamid ORDER BY wamid",
    tables.FLOW_SESSIONS_TABLE:
        "SELECT flow_token, max(flow_id), max(flow_version), max(campaign), max(wamid), max(phone_number_id), "
        "min(sent_at), min(completed_at), max(last_activity_at), arraySort(groupUniqArrayMerge(node_events)) "
        "FROM {t} GROUP BY flow_token ORDER BY flow_token",
    tables.FLOW_SELECTIONS_TABLE:
        "SELECT flow_id, flow_version, screen, field, value, uniqExactMerge(sessions) FROM {t} "
        "GROUP BY ALL ORDER BY ALL",
    tables.FLOW_HEALTH_CURRENT_TABLE:
        "SELECT flow_id, event, argMaxMerge(latest), uniqExactMerge(events) FROM {t} GROUP BY ALL ORDER BY ALL",
    tables.MESSAGE_DELIVERED_INDEX_TABLE: "SELECT wamid, phone_number_id FROM {t} ORDER BY ALL",
    tables.PERSON_LINKS_TABLE: "SELECT identifier, person, max(seen_at) FROM {t} GROUP BY ALL ORDER BY ALL",
    tables.OUTBOUND_MESSAGES_TABLE:
        "SELECT wamid, max(phone_number_id), min(first_at), max(last_at), groupBitOr(reached), max(recipient_type), "
        "max(person_hash), max(country), max(pricing_category), max(pricing_type), max(billable), max(callback) "
        "FROM {t} GROUP BY wamid ORDER BY wamid",
    tables.FLOW_SESSION_OPENS_TABLE:
        "SELECT flow_token, min(opened_at) FROM {t} GROUP BY flow_token ORDER BY flow_token",
}


def figures(client: Client) -> dict[str, Any]:
    found: dict[str, Any] = {table: client.query(sql.format(t=table)).result_rows for table, sql in FIGURES.items()}
    found["delivery"] = delivery_totals(client, ALL)
    found["resolved"] = client.query(RESOLVED).result_rows
    found["messages"] = client.query(MESSAGES).result_rows
    found["message_hours"] = client.query(MESSAGE_HOURS).result_rows
    found["people"] = client.query(PEOPLE).result_rows
    return found


RESOLVED = (f"SELECT flow_token, flow_id, flow_version, campaign, wamid, sent_at, completed_at, last_activity, "
            f"has_events, delivered, read, failed, reached, last_screen, visit_screens, visit_ms "
            f"FROM {tables.FLOW_SESSION_ROWS_TABLE} FINAL ORDER BY ALL")
MESSAGES = f"SELECT {', '.join(message_hours.ROW_COLUMNS)} FROM {tables.MESSAGE_ROWS_TABLE} FINAL ORDER BY ALL"
MESSAGE_HOURS = (f"SELECT {', '.join(message_hours.COUNT_COLUMNS)} FROM {tables.MESSAGE_HOUR_COUNTS_TABLE} FINAL "
                 "ORDER BY ALL")
# Each hour's sets of people, as the people (numbers are arbitrary).
PEOPLE = (f"SELECT s.hour, s.level, s.phone_number_id, s.country, arraySort(groupArray(i.person)) "
          f"FROM (SELECT hour, level, phone_number_id, country, arrayJoin(bitmapToArray(persons)) AS id "
          f"      FROM {tables.PERSON_HOUR_SETS_TABLE} FINAL) AS s "
          f"JOIN {tables.PERSON_IDS_TABLE} AS i ON i.id = s.id GROUP BY ALL ORDER BY ALL")


def test_every_derived_table_is_rebuilt(client: Client) -> None:
    assert {d.table for d in DERIVED} == set(FIGURES)
    targets = {step.what.split(":")[0].split(" ←")[0].split(",")[0] for step in plan(client, DB)}
    assert targets == {*FIGURES, tables.FLOW_SESSION_ROWS_TABLE, tables.FLOW_SESSION_KEYS_TABLE,
                       tables.FLOW_HOUR_PATHS_TABLE, tables.FLOW_HOUR_VISITS_TABLE, tables.MESSAGE_ROWS_TABLE,
                       tables.MESSAGE_HOUR_COUNTS_TABLE, tables.PERSON_IDS_TABLE, tables.PERSON_KEY_HOURS_TABLE,
                       tables.PERSON_HOUR_SETS_TABLE}


def test_a_rebuild_gives_what_the_views_made_and_twice_changes_nothing(client: Client) -> None:
    store(client)
    DeliveryRollup(client, seal_after_s=120, reads_interval_s=0).run_once()
    SessionRollup(client).run_once(server_now(client))
    message_hours.MessageRollup(client).run_once(server_now(client))
    live = figures(client)
    assert len(live["resolved"]) == 12
    assert len(live["messages"]) == 12 and sum(row[-5] for row in live["message_hours"]) == 12
    assert live["people"]  # every hour's people, at each level
    assert all(live[table] for table in FIGURES)  # every derived table has rows to compare
    lines: list[str] = []
    assert rebuild(client, DB, say=lines.append) > len(FIGURES)
    assert lines[0].startswith("rebuild [1/") and lines[-1].startswith("rebuild done")
    assert figures(client) == live
    rebuild(client, DB, say=lambda _: None)
    assert figures(client) == live
    assert progress(client, REBUILDING) == datetime(1970, 1, 1)  # the rollup may run again


def test_a_rebuild_repairs_broken_derived_rows(client: Client) -> None:
    store(client)
    roll = DeliveryRollup(client, seal_after_s=120, reads_interval_s=0)
    roll.run_once()
    SessionRollup(client).run_once(server_now(client))
    message_hours.MessageRollup(client).run_once(server_now(client))
    live = figures(client)
    client.command(f"DELETE FROM {tables.FLOW_SESSION_ROWS_TABLE} WHERE flow_token = 'tok5'")
    client.command(f"TRUNCATE TABLE {tables.MESSAGE_STATE_TABLE}")
    client.command(f"DELETE FROM {tables.FLOW_SESSIONS_TABLE} WHERE flow_token IN ('tok1', 'tok2')")
    client.command(f"INSERT INTO {tables.MESSAGE_STATUS_MINUTE_TABLE} SELECT 'p9', toDateTime('{at(0)}'), 'sent', 0, "
                   "'', uniqExactState('bogus')")
    client.command(f"INSERT INTO {tables.MESSAGE_STATUS_COUNTS_TABLE} VALUES ('p9', '{at(0)}', 'sent', 0, '', 5, "
                   f"'{at(1)}')")
    assert figures(client) != live
    rebuild(client, DB, say=lambda _: None)
    assert figures(client) == live
    assert roll.run_once().waited is False


def test_a_range_rebuild_touches_its_range_and_whole_entities_only(client: Client) -> None:
    store(client)
    DeliveryRollup(client, seal_after_s=120, reads_interval_s=0).run_once()
    SessionRollup(client).run_once(server_now(client))
    message_hours.MessageRollup(client).run_once(server_now(client))
    live = figures(client)
    client.command(f"DELETE FROM {tables.FLOW_SESSION_ROWS_TABLE} WHERE flow_token IN ('tok4', 'tok9')")
    client.command(f"DELETE FROM {tables.MESSAGE_ROWS_TABLE} WHERE wamid IN ('w4', 'w9')")
    # Broken inside the range (minutes 3..5): a minute's sets and a session; outside it: a bogus minute.
    client.command(f"DELETE FROM {tables.MESSAGE_STATUS_MINUTE_TABLE} WHERE minute = '{at(240)}'")
    client.command(f"DELETE FROM {tables.FLOW_SESSIONS_TABLE} WHERE flow_token = 'tok4'")
    client.command(f"DELETE FROM {tables.MESSAGE_STATE_TABLE} WHERE wamid = 'w3'")
    client.command(f"INSERT INTO {tables.MESSAGE_STATUS_MINUTE_TABLE} SELECT 'p9', toDateTime('{at(600)}'), 'sent', 0, "
                   "'', uniqExactState('bogus')")
    rebuild(client, DB, since=at(180), until=at(360) + timedelta(seconds=30), say=lambda _: None)
    repaired = figures(client)
    bogus = ("p9", at(600), "sent", 0, 1)
    assert bogus in repaired[tables.MESSAGE_STATUS_MINUTE_TABLE]  # outside the range: left alone
    repaired[tables.MESSAGE_STATUS_MINUTE_TABLE].remove(bogus)
    assert {table: repaired[table] for table in FIGURES} == {table: live[table] for table in FIGURES}
    # tok4 (events in the range) is resolved again; tok9 (outside it) stays missing.
    assert [row for row in live["resolved"] if row[0] != "tok9"] == repaired["resolved"]
    assert [row for row in live["messages"] if row[1] != "w9"] == repaired["messages"]


def test_the_rollup_waits_while_a_rebuild_holds_the_lease(client: Client) -> None:
    store(client)
    client.insert(tables.ROLLUP_PROGRESS_TABLE, [(REBUILDING, datetime(2100, 1, 1), datetime(2026, 1, 1))],
                  column_names=["task", "until", "updated_at"])
    done = DeliveryRollup(client, seal_after_s=120, reads_interval_s=0).run_once()
    assert done.waited and done.sealed_minutes == 0
    assert client.command(f"SELECT count() FROM {tables.MESSAGE_STATUS_COUNTS_TABLE}") == 0


def test_a_migration_that_adds_a_derived_table_backfills_it_from_the_stored_history(client: Client) -> None:
    assert backfill_new_derived_tables(client, DB, created={tables.MESSAGE_STATE_TABLE}) == []  # no history yet
    store(client)
    live = figures(client)
    client.command(f"TRUNCATE TABLE {tables.MESSAGE_STATE_TABLE}")  # as a migration that just created it
    assert backfill_new_derived_tables(client, DB, created={tables.MESSAGE_STATE_TABLE, "other"}) == [
        tables.MESSAGE_STATE_TABLE]
    assert figures(client) == live
