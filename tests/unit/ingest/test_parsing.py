"""Parsing of every payload example in shared/reference/whatsapp-webhooks.md, and of bad ones."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from contract.codec import decode, encode
from contract.events import FlowCompletion, FlowHealth, MessageStatus, event_id
from contract.privacy import Pseudonymiser
from ingest.exceptions import MalformedPayloadError
from ingest.parsing import WebhookParser

RECEIVED_MS = 1_767_000_500_000
HASH = Pseudonymiser("test-key")

STATUSES_EXAMPLE: dict[str, Any] = {
    "object": "whatsapp_business_account",
    "entry": [{"id": "880011223344556", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": "990000000000001"},
        "statuses": [
            {"id": "wamid.AAA111", "status": "sent", "timestamp": "1767000000",
             "recipient_id": "5511999990000", "biz_opaque_callback_data": "flow=lead_v2;tok=ft_7f3a",
             "pricing": {"billable": True, "pricing_model": "PMP", "type": "regular", "category": "marketing"}},
            {"id": "wamid.BBB222", "status": "failed", "timestamp": "1767000042",
             "recipient_id": "5511988887777",
             "errors": [{"code": 131049,
                         "title": "This message was not delivered to maintain healthy ecosystem engagement.",
                         "message": "This message was not delivered to maintain healthy ecosystem engagement.",
                         "error_data": {"details": "Not delivered, to keep engagement healthy."},
                         "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"}]},
        ]}}]}],
}

NFM_REPLY_EXAMPLE: dict[str, Any] = {
    "object": "whatsapp_business_account",
    "entry": [{"id": "880011223344556", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": "990000000000001"},
        "contacts": [{"profile": {"name": "Ana"}, "wa_id": "5511999990000"}],
        "messages": [{
            "context": {"from": "15550001111", "id": "wamid.AAA111"},
            "from": "5511999990000", "id": "wamid.CCC333", "timestamp": "1767000310",
            "type": "interactive",
            "interactive": {"type": "nfm_reply", "nfm_reply": {
                "name": "flow", "body": "Sent",
                "response_json": "{\"flow_token\":\"ft_7f3a\",\"plan\":\"pro\",\"seats\":5}"}},
        }]}}]}],
}

ENVELOPE_EXAMPLE: dict[str, Any] = {
    "object": "whatsapp_business_account",
    "entry": [{"id": "880011223344556", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001111", "phone_number_id": "990000000000001"},
        "contacts": [{"profile": {"name": "Ana"}, "wa_id": "5511999990000", "user_id": "BR.8812345"}],
        "messages": [],
    }}]}],
}

FLOWS_VALUES: list[dict[str, Any]] = [
    {"event": "ENDPOINT_ERROR_RATE", "message": "The flow endpoint request error rate has reached the 10% threshold.",
     "flow_id": "1234567890123456", "error_rate": 12.5, "threshold": 10, "alert_state": "ACTIVATED",
     "errors": [{"error_type": "TIMEOUT", "error_rate": 60.0, "error_count": 3},
                {"error_type": "CAPABILITY_ERROR", "error_rate": 40.0, "error_count": 2}]},
    {"event": "FLOW_STATUS_CHANGE", "message": "...", "flow_id": "123", "old_status": "DRAFT",
     "new_status": "PUBLISHED"},
    {"event": "CLIENT_ERROR_RATE", "message": "...", "flow_id": "123", "error_rate": 7.1, "threshold": 5,
     "alert_state": "ACTIVATED", "errors": [{"error_type": "INVALID_SCREEN_TRANSITION", "error_rate": 100,
                                              "error_count": 3}]},
    {"event": "ENDPOINT_LATENCY", "message": "...", "flow_id": "123", "p90_latency": 6200, "p50_latency": 900,
     "requests_count": 41, "threshold": 5000, "alert_state": "ACTIVATED"},
    {"event": "ENDPOINT_AVAILABILITY", "message": "...", "flow_id": "123", "alert_state": "DEACTIVATED",
     "availability": 96, "threshold": 90},
    {"event": "FLOW_VERSION_EXPIRY_WARNING", "flow_id": "123", "warning": "...will freeze in 21 days..."},
]


def parse(payload: Any, *, allow: tuple[str, ...] = ()) -> Any:
    parser = WebhookParser(pseudonymise=HASH, form_fields_allowlist=allow)
    return parser.parse(orjson.dumps(payload), received_at_ms=RECEIVED_MS)


def status_payload(*statuses: dict[str, Any]) -> dict[str, Any]:
    return {"object": "whatsapp_business_account", "entry": [{"id": "880011223344556", "changes": [
        {"field": "messages", "value": {"messaging_product": "whatsapp",
                                        "metadata": {"phone_number_id": "990000000000001"},
                                        "statuses": list(statuses)}}]}]}


def test_status_example_gives_two_canonical_statuses() -> None:
    result = parse(STATUSES_EXAMPLE)
    assert result.rejected == []
    sent, failed = result.events
    assert sent == MessageStatus(
        event_id=event_id("status", "wamid.AAA111", "sent"),
        waba_id="880011223344556",
        phone_number_id="990000000000001",
        wamid="wamid.AAA111",
        status="sent",
        occurred_at=1_767_000_000,
        received_at_ms=RECEIVED_MS,
        recipient_hash=HASH("5511999990000"),
        pricing_category="marketing",
        pricing_type="regular",
        pricing_model="PMP",
        billable=1,
        biz_opaque_callback_data="flow=lead_v2;tok=ft_7f3a",
        person_hash=HASH("5511999990000"),
        country="BR",
    )
    assert isinstance(failed, MessageStatus)
    assert (failed.status, failed.error_code, failed.occurred_at) == ("failed", 131049, 1_767_000_042)
    assert failed.error_title == "This message was not delivered to maintain healthy ecosystem engagement."
    assert failed.error_message == "This message was not delivered to maintain healthy ecosystem engagement."
    assert failed.error_href == "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"
    assert failed.error_details == "Not delivered, to keep engagement healthy."
    assert (failed.person_hash, failed.country) == (HASH("5511988887777"), "BR")
    assert failed.billable == -1


def test_no_phone_number_leaves_the_parser() -> None:
    result = parse(STATUSES_EXAMPLE)
    encoded = b"".join(encode(e) for e in [*result.events, *result.rejected])
    assert b"5511999990000" not in encoded
    assert b"5511988887777" not in encoded


def test_event_id_is_the_same_for_a_duplicate_delivery() -> None:
    first = parse(STATUSES_EXAMPLE).events
    again = parse(STATUSES_EXAMPLE).events
    assert [e.event_id for e in first] == [e.event_id for e in again]
    assert len({e.event_id for e in first}) == 2


def test_nfm_reply_example_gives_a_completion_with_allow_listed_answers_only() -> None:
    result = parse(NFM_REPLY_EXAMPLE, allow=("plan",))
    assert result.rejected == []
    assert result.events == [
        FlowCompletion(
            event_id=event_id("nfm_reply", "wamid.CCC333"),
            waba_id="880011223344556",
            phone_number_id="990000000000001",
            wamid="wamid.CCC333",
            flow_wamid="wamid.AAA111",
            flow_token="ft_7f3a",
            occurred_at=1_767_000_310,
            received_at_ms=RECEIVED_MS,
            user_hash=HASH("5511999990000"),
            flow_name="flow",
            response_keys=["plan", "seats"],
            response_fields={"plan": "pro"},
            person_hash=HASH("5511999990000"),
            country="BR",
        )
    ]


def test_nfm_reply_without_allow_list_stores_no_answer() -> None:
    (completion,) = parse(NFM_REPLY_EXAMPLE).events
    assert isinstance(completion, FlowCompletion)
    assert completion.response_fields == {}
    assert completion.response_keys == ["plan", "seats"]


def test_envelope_example_with_empty_messages_gives_nothing() -> None:
    result = parse(ENVELOPE_EXAMPLE)
    assert (result.events, result.rejected, result.ignored) == ([], [], {})


def flows_payload(value: dict[str, Any], *, entry_time: Any = 1767001000) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": "880011223344556", "changes": [{"field": "flows", "value": value}]}
    if entry_time is not None:
        entry["time"] = entry_time
    return {"object": "whatsapp_business_account", "entry": [entry]}


@pytest.mark.parametrize("value", FLOWS_VALUES, ids=[v["event"] for v in FLOWS_VALUES])
def test_every_flows_webhook_example_becomes_one_flow_health_event(value: dict[str, Any]) -> None:
    result = parse(flows_payload(value))
    assert (result.rejected, result.ignored, result.field_label) == ([], {}, "flows")
    (event,) = result.events
    assert isinstance(event, FlowHealth)
    assert (event.flow_id, event.event, event.waba_id, event.occurred_at) == (
        value["flow_id"], value["event"], "880011223344556", 1767001000)
    assert orjson.loads(event.raw) == value
    assert decode(encode(event)) == event


def test_flows_webhook_figures_and_error_types_are_normalised() -> None:
    error_rate, status, latency, availability = (parse(flows_payload(FLOWS_VALUES[i])).events[0] for i in (0, 1, 3, 4))
    assert (error_rate.error_rate, error_rate.threshold, error_rate.alert_state) == (12.5, 10.0, "ACTIVATED")
    assert (error_rate.error_types, error_rate.error_rates, error_rate.error_counts) == (
        ["timeout", "capability_error"], [60.0, 40.0], [3, 2])
    assert (status.old_status, status.new_status, status.error_rate, status.availability) == (
        "DRAFT", "PUBLISHED", -1.0, -1.0)
    assert (latency.p90_latency_ms, latency.p50_latency_ms, latency.requests_count) == (6200.0, 900.0, 41)
    assert (availability.availability, availability.alert_state) == (96.0, "DEACTIVATED")
    spelled = dict(FLOWS_VALUES[2], errors=[{"error_type": "invalid-screen-transition", "error_rate": "100",
                                               "error_count": 3}])
    (client,) = parse(flows_payload(spelled)).events
    assert (client.error_types, client.error_rates) == (["invalid_screen_transition"], [100.0])


def test_redelivered_flows_webhook_keeps_its_event_id_and_a_changed_one_does_not() -> None:
    first = parse(flows_payload(FLOWS_VALUES[1])).events[0]
    again = parse(flows_payload(FLOWS_VALUES[1])).events[0]
    later = parse(flows_payload(FLOWS_VALUES[1], entry_time=1767001001)).events[0]
    assert first.event_id == again.event_id != later.event_id


def test_flows_webhook_without_entry_time_takes_the_receive_time() -> None:
    (event,) = parse(flows_payload(FLOWS_VALUES[1], entry_time=None)).events
    assert event.occurred_at == RECEIVED_MS // 1000


@pytest.mark.parametrize(
    ("value", "entry_time", "reason"),
    [
        ({"event": "FLOW_STATUS_CHANGE", "new_status": "BLOCKED"}, 1767001000, "flows webhook without flow_id"),
        ({"event": "FLOW_STATUS_CHANGE", "flow_id": " "}, 1767001000, "flows webhook without flow_id"),
        ({"flow_id": "1"}, 1767001000, "flows webhook with unknown event None"),
        ({"flow_id": "1", "event": "drop table"}, 1767001000, "flows webhook with unknown event 'drop table'"),
        ({"flow_id": "1", "event": "FLOW_STATUS_CHANGE"}, 1867001000,
         "entry.time: timestamp 1867001000 is in the future"),
        ({"flow_id": "1", "event": "FLOW_STATUS_CHANGE"}, "soon", "entry.time: missing or non-numeric timestamp"),
    ],
)
def test_unusable_flows_webhooks_are_rejected_with_a_reason(value: dict[str, Any], entry_time: Any,
                                                            reason: str) -> None:
    result = parse(flows_payload(value, entry_time=entry_time))
    assert result.events == []
    (rejected,) = result.rejected
    assert (rejected.reason, orjson.loads(rejected.raw)) == (reason, value)


def test_field_label_of_a_request_with_several_fields_is_mixed() -> None:
    payload = flows_payload(FLOWS_VALUES[1])
    payload["entry"].append(STATUSES_EXAMPLE["entry"][0])
    assert parse(payload).field_label == "mixed"
    assert parse(STATUSES_EXAMPLE).field_label == "messages"


def test_unknown_field_is_counted_under_other() -> None:
    payload = {"object": "whatsapp_business_account",
               "entry": [{"id": "1", "changes": [{"field": "brand_new_thing", "value": {}}]}]}
    assert parse(payload).ignored == {"field:other": 1}


def test_other_message_types_are_ignored() -> None:
    payload = {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
        "metadata": {"phone_number_id": "9"},
        "messages": [{"from": "5511", "id": "wamid.T", "timestamp": "1767000000", "type": "text",
                      "text": {"body": "hi"}}]}}]}]}
    result = parse(payload)
    assert (result.events, result.rejected, result.ignored) == ([], [], {"message:text": 1})


def test_read_is_accepted_without_delivered_and_int_timestamp() -> None:
    result = parse(status_payload({"id": "wamid.X", "status": "read", "timestamp": 1767000100}))
    (status,) = result.events
    assert isinstance(status, MessageStatus)
    assert (status.status, status.occurred_at) == ("read", 1_767_000_100)


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        ({"status": "sent", "timestamp": "1767000000"}, "status without id"),
        ({"id": "", "status": "sent", "timestamp": "1767000000"}, "status without id"),
        ({"id": "wamid.X", "status": "opened", "timestamp": "1767000000"}, "unknown status value 'opened'"),
        ({"id": "wamid.X", "timestamp": "1767000000"}, "unknown status value None"),
        ({"id": "wamid.X", "status": "sent"}, "missing or non-numeric timestamp"),
        ({"id": "wamid.X", "status": "sent", "timestamp": "soon"}, "missing or non-numeric timestamp"),
        ({"id": "wamid.X", "status": "sent", "timestamp": "100"}, "timestamp 100 is before 2014"),
        ({"id": "wamid.X", "status": "sent", "timestamp": "1867000000"}, "timestamp 1867000000 is in the future"),
    ],
)
def test_unusable_status_is_rejected_with_reason(status: dict[str, Any], reason: str) -> None:
    result = parse(status_payload({**status, "recipient_id": "5511999990000"}))
    assert result.events == []
    (rejected,) = result.rejected
    assert rejected.reason == reason
    assert rejected.source == "whatsapp_webhook"
    assert rejected.phone_number_id == "990000000000001"
    raw = orjson.loads(rejected.raw)
    assert raw["recipient_id"] == HASH("5511999990000")


def test_rejection_keeps_good_siblings() -> None:
    result = parse(status_payload(
        {"id": "wamid.OK", "status": "delivered", "timestamp": "1767000000"},
        {"id": "wamid.BAD", "status": "teleported", "timestamp": "1767000000"},
    ))
    assert [e.wamid for e in result.events if isinstance(e, MessageStatus)] == ["wamid.OK"]
    assert [r.reason for r in result.rejected] == ["unknown status value 'teleported'"]


def test_change_without_phone_number_id_is_rejected() -> None:
    payload = status_payload({"id": "wamid.X", "status": "sent", "timestamp": "1767000000"})
    del payload["entry"][0]["changes"][0]["value"]["metadata"]
    result = parse(payload)
    assert [r.reason for r in result.rejected] == ["change without metadata.phone_number_id"]


def test_nfm_reply_with_broken_response_json_is_rejected_and_answers_withheld() -> None:
    payload = orjson.loads(orjson.dumps(NFM_REPLY_EXAMPLE))
    message = payload["entry"][0]["changes"][0]["value"]["messages"][0]
    message["interactive"]["nfm_reply"]["response_json"] = "{not json"
    (rejected,) = parse(payload).rejected
    assert rejected.reason == "nfm_reply.response_json is not a JSON object string"
    raw = orjson.loads(rejected.raw)
    assert raw["from"] == HASH("5511999990000")
    assert raw["interactive"]["nfm_reply"]["response_json"] == "<unparseable, withheld>"


def test_nfm_reply_without_context_is_rejected_without_leaking_answers() -> None:
    payload = orjson.loads(orjson.dumps(NFM_REPLY_EXAMPLE))
    del payload["entry"][0]["changes"][0]["value"]["messages"][0]["context"]
    (rejected,) = parse(payload).rejected
    assert rejected.reason == "nfm_reply without context.id"
    assert orjson.loads(orjson.loads(rejected.raw)["interactive"]["nfm_reply"]["response_json"]) == {
        "flow_token": "ft_7f3a"
    }


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "body is not valid JSON"),
        (b'{"object": "whatsapp_business_account", "entry": [', "body is not valid JSON"),
        (b"\xff\xfe{}", "body is not valid JSON"),
        (b"[]", "body must be a JSON object"),
        (b'{"object": "page", "entry": []}', "unsupported object 'page'"),
        (b'{"object": "whatsapp_business_account"}', "body.entry must be a list"),
        (b'{"object": "whatsapp_business_account", "entry": [1]}', "entry[0] must be an object"),
        (b'{"object": "whatsapp_business_account", "entry": [{"changes": {}}]}', "entry[0].changes must be a list"),
        (b'{"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages"}]}]}',
         "entry[0].changes[0].value must be an object"),
        (b'{"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", '
         b'"value": {"statuses": {}}}]}]}', "entry[0].changes[0].value.statuses must be a list"),
        (b"[" * 2000 + b"]" * 2000, "body is not valid JSON"),
    ],
)
def test_malformed_body_raises_with_reason(body: bytes, reason: str) -> None:
    parser = WebhookParser(pseudonymise=HASH)
    with pytest.raises(MalformedPayloadError) as info:
        parser.parse(body, received_at_ms=RECEIVED_MS)
    assert info.value.reason.startswith(reason)
