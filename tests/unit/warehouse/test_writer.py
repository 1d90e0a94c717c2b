"""The write path in the real ClickHouse engine (chDB in-process): each kind of event lands in its table,
every column in its place, and a Flow registration is parsed once into its definition and screen rows."""

from __future__ import annotations

from typing import Any

import orjson
from clickhouse_connect.driver.client import Client

from contract.events import (
    SOURCE_WHATSAPP,
    FlowCompletion,
    FlowDefinitionRegistered,
    FlowHealth,
    FlowSent,
    IdentityLink,
    MessageStatus,
    NodeEvent,
    RejectedEvent,
    UserPreference,
    WebhookError,
)
from contract.limits import MAX_ERROR_CODE
from tests.samples import FLOW_JSON
from warehouse import tables, writer

T0 = 1_790_000_000


def registered(flow_json: str, *, flow_id: str = "F1", version: str = "1") -> FlowDefinitionRegistered:
    return FlowDefinitionRegistered(event_id=f"def.{flow_id}.{version}", flow_id=flow_id, flow_version=version,
                                    flow_json=flow_json, received_at_ms=T0 * 1000)


def one_of_each() -> dict[str, Any]:
    registration = writer.FlowRegistration.parse(registered(orjson.dumps(FLOW_JSON).decode()))
    return {
        "statuses": [MessageStatus(event_id="s1", waba_id="waba", phone_number_id="p", wamid="w1", status="failed",
                                   occurred_at=T0, received_at_ms=T0 * 1000 + 5, recipient_hash="h",
                                   recipient_user_id_hash="b", person_hash="b", country="BR",
                                   error_code=131049, error_message="undeliverable", error_href="https://e",
                                   billable=0)],
        "completions": [FlowCompletion(event_id="c1", waba_id="waba", phone_number_id="p", wamid="r1",
                                       flow_wamid="w1", flow_token="tok1", occurred_at=T0, received_at_ms=T0 * 1000,
                                       user_hash="u", response_keys=["plan"], response_fields={"plan": "pro"})],
        "flow_sends": [FlowSent(event_id="f1", wamid="w1", flow_id="F1", flow_version="1", flow_token="tok1",
                                campaign="spring", occurred_at_ms=T0 * 1000 - 60_000, received_at_ms=T0 * 1000)],
        "node_events": [NodeEvent(event_id="n1", flow_token="tok1", flow_id="F1", flow_version="1", screen="B",
                                  node_type="form", action="submit", occurred_at_ms=T0 * 1000 - 30_000,
                                  received_at_ms=T0 * 1000, source="endpoint", field_keys=["plan"],
                                  fields={"plan": "pro"})],
        "definitions": [registration],
        "flow_health": [FlowHealth(event_id="h1", waba_id="waba", flow_id="F1", event="ENDPOINT_LATENCY",
                                   occurred_at=T0, received_at_ms=T0 * 1000, alert_state="ACTIVATED",
                                   p90_latency_ms=6200.0)],
        "preferences": [UserPreference(event_id="u1", waba_id="waba", phone_number_id="p",
                                       category="marketing_messages", value="stop", occurred_at=T0,
                                       received_at_ms=T0 * 1000, user_id_hash="b", person_hash="b", country="BR")],
        "identity_links": [IdentityLink(event_id="l1", waba_id="waba", kind="user_id_update", from_hash="b",
                                        to_hash="b2", occurred_at=T0, received_at_ms=T0 * 1000)],
        "webhook_errors": [WebhookError(event_id="e1", waba_id="waba", phone_number_id="p", field="messages",
                                        code=131056, title="Pair rate limit hit", occurred_at=T0,
                                        received_at_ms=T0 * 1000)],
        "rejected": [RejectedEvent(event_id="x1", source=SOURCE_WHATSAPP, reason="status without id", raw="{}",
                                   received_at_ms=T0 * 1000)],
    }


def test_every_insert_has_its_tables_columns_and_registrations_come_first() -> None:
    batch = writer.inserts(**one_of_each())
    expected = {
        tables.FLOW_DEFINITIONS_TABLE: tables.FLOW_DEFINITION_COLUMNS,
        tables.FLOW_SCREENS_TABLE: tables.FLOW_SCREEN_COLUMNS,
        tables.FLOW_SENDS_TABLE: tables.FLOW_SEND_COLUMNS,
        tables.FLOW_NODE_EVENTS_TABLE: tables.NODE_EVENT_COLUMNS,
        tables.MESSAGE_STATUSES_TABLE: tables.STATUS_COLUMNS,
        tables.FLOW_COMPLETIONS_TABLE: tables.COMPLETION_COLUMNS,
        tables.FLOW_HEALTH_EVENTS_TABLE: tables.FLOW_HEALTH_COLUMNS,
        tables.USER_PREFERENCES_TABLE: tables.USER_PREFERENCE_COLUMNS,
        tables.IDENTITY_LINKS_TABLE: tables.IDENTITY_LINK_COLUMNS,
        tables.WEBHOOK_ERRORS_TABLE: tables.WEBHOOK_ERROR_COLUMNS,
        tables.REJECTED_EVENTS_TABLE: tables.REJECTED_COLUMNS,
    }
    assert [insert.table for insert in batch] == list(expected)
    for insert in batch:
        assert insert.columns == expected[insert.table]
        assert len(insert.data) == len(insert.columns)
        assert {len(column) for column in insert.data} == {insert.rows}
    assert [insert.rows for insert in batch] == [1, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    assert writer.inserts() == []


def test_each_kind_lands_in_its_table_column_by_column(client: Client) -> None:
    writer.write(client, *writer.inserts(**one_of_each()))

    def rows(sql: str) -> list[tuple[object, ...]]:
        return [tuple(row) for row in client.query(sql).result_rows]

    assert rows(f"SELECT wamid, status, error_code, billable, toUnixTimestamp64Milli(received_at), "
                f"recipient_user_id_hash, person_hash, country, error_message, error_href "
                f"FROM {tables.MESSAGE_STATUSES_TABLE}") == [
        ("w1", "failed", 131049, 0, T0 * 1000 + 5, "b", "b", "BR", "undeliverable", "https://e")]
    assert rows(f"SELECT category, value, person_hash, country FROM {tables.USER_PREFERENCES_TABLE}") == [
        ("marketing_messages", "stop", "b", "BR")]
    assert rows(f"SELECT kind, from_hash, to_hash FROM {tables.IDENTITY_LINKS_TABLE}") == [
        ("user_id_update", "b", "b2")]
    assert rows(f"SELECT field, code, title FROM {tables.WEBHOOK_ERRORS_TABLE}") == [
        ("messages", 131056, "Pair rate limit hit")]
    # The phone number seen beside the BSUID, and the BSUID's change, are links to resolve people from.
    assert rows(f"SELECT identifier, person FROM {tables.PERSON_LINKS_TABLE} FINAL ORDER BY 1") == [
        ("b", "b2"), ("h", "b")]
    assert rows(f"SELECT flow_token, campaign, toUnixTimestamp64Milli(sent_at) FROM {tables.FLOW_SENDS_TABLE}") == [
        ("tok1", "spring", T0 * 1000 - 60_000)]
    assert rows(f"SELECT screen, action, source, fields FROM {tables.FLOW_NODE_EVENTS_TABLE}") == [
        ("B", "submit", "endpoint", {"plan": "pro"})]
    assert rows(f"SELECT flow_wamid, response_fields FROM {tables.FLOW_COMPLETIONS_TABLE}") == [("w1", {"plan": "pro"})]
    assert rows(f"SELECT event, alert_state, p90_latency_ms FROM {tables.FLOW_HEALTH_EVENTS_TABLE}") == [
        ("ENDPOINT_LATENCY", "ACTIVATED", 6200.0)]
    assert rows(f"SELECT source, reason FROM {tables.REJECTED_EVENTS_TABLE}") == [
        (SOURCE_WHATSAPP, "status without id")]
    assert rows(f"SELECT flow_id, flow_version FROM {tables.FLOW_DEFINITIONS_TABLE}") == [("F1", "1")]
    screens = f"SELECT screen, position, terminal, selection_fields FROM {tables.FLOW_SCREENS_TABLE} ORDER BY 2"
    assert rows(screens) == [("A", 0, 0, []), ("B", 1, 0, ["plan"]), ("C", 2, 1, [])]


def test_a_registration_is_parsed_once_and_an_invalid_one_is_none() -> None:
    flow_json = orjson.dumps(FLOW_JSON).decode()
    registration = writer.FlowRegistration.parse(registered(flow_json, flow_id="F2", version="3"))
    assert registration is not None
    assert (registration.definition.flow_id, registration.definition.version) == ("F2", "3")
    assert (registration.definition.entry, registration.flow_json, registration.registered_at_ms) == (
        "A", flow_json, T0 * 1000)
    assert writer.FlowRegistration.parse(registered('{"screens": []}')) is None
    assert writer.FlowRegistration.parse(registered("not json")) is None


def test_the_warehouse_holds_every_error_code_the_contract_allows(client: Client) -> None:
    largest = MessageStatus(event_id="s2", waba_id="waba", phone_number_id="p", wamid="w2", status="failed",
                            occurred_at=T0, received_at_ms=T0 * 1000, recipient_hash="h", error_code=MAX_ERROR_CODE)
    writer.write(client, *writer.inserts(statuses=[largest]))
    stored = client.query(f"SELECT error_code FROM {tables.MESSAGE_STATUSES_TABLE}").result_rows
    assert stored == [(MAX_ERROR_CODE,)]
