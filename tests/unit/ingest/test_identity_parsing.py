"""Every payload shape of section 10 of shared/reference/whatsapp-webhooks.md (BSUIDs, usernames, parent BSUIDs,
groups, system identity changes, user_id_update, user_preferences, value-level errors), parsed."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from contract.codec import decode, encode
from contract.events import IdentityLink, MessageStatus, RejectedEvent, UserPreference, WebhookError, event_id
from contract.privacy import Pseudonymiser
from ingest.identity import bsuid_country, phone_country
from ingest.parsing import WebhookParser

RECEIVED_MS = 1_767_010_000_000
HASH = Pseudonymiser("test-key")
WABA, PNID = "880011223344556", "990000000000001"
METADATA = {"display_phone_number": "15550001111", "phone_number_id": PNID}
PHONE, BSUID, PARENT = "5511999990000", "BR.1502576394655843", "US.ENT.11815799212886844830"
PRICING = {"billable": True, "pricing_model": "PMP", "type": "regular", "category": "marketing"}


def parse(payload: dict[str, Any], *, typed: bool = True) -> Any:
    parser = WebhookParser(pseudonymise=HASH, typed_statuses=typed)
    return parser.parse(orjson.dumps(payload), received_at_ms=RECEIVED_MS)


def change(field: str, value: dict[str, Any], *, entry_time: int | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": WABA, "changes": [{"field": field, "value": value}]}
    if entry_time is not None:
        entry["time"] = entry_time
    return {"object": "whatsapp_business_account", "entry": [entry]}


def statuses(*items: dict[str, Any]) -> dict[str, Any]:
    return change("messages", {"messaging_product": "whatsapp", "metadata": METADATA, "statuses": list(items)})


def status(value: str = "delivered", **fields: Any) -> dict[str, Any]:
    return {"id": "wamid.HBgM1", "status": value, "timestamp": "1767000001", **fields}


def only_status(payload: dict[str, Any]) -> MessageStatus:
    """The one status of ``payload``, the same through the typed shape and the general walk."""
    typed, walked = parse(payload), parse(payload, typed=False)
    assert (typed.events, typed.rejected) == (walked.events, walked.rejected)
    (event,) = typed.events
    assert isinstance(event, MessageStatus)
    return event


def test_status_of_a_username_user_has_no_phone_and_is_keyed_on_the_bsuid() -> None:
    event = only_status(statuses(status(
        recipient_user_id=BSUID, contacts=[{"user_id": BSUID, "profile": {"username": "@ana"}}], pricing=PRICING)))
    assert (event.recipient_hash, event.recipient_user_id_hash, event.recipient_parent_user_id_hash) == (
        "", HASH(BSUID), "")
    assert (event.person_hash, event.country) == (HASH(BSUID), "BR")


def test_status_with_phone_bsuid_and_parent_is_keyed_on_the_parent_and_keeps_all_three_hashed() -> None:
    event = only_status(statuses(status(recipient_id=PHONE, recipient_user_id=BSUID, recipient_parent_user_id=PARENT)))
    assert (event.recipient_hash, event.recipient_user_id_hash, event.recipient_parent_user_id_hash) == (
        HASH(PHONE), HASH(BSUID), HASH(PARENT))
    assert (event.person_hash, event.country) == (HASH(PARENT), "BR")  # the BSUID's country first


def test_identifiers_only_in_the_status_contacts_are_read_from_there() -> None:
    event = only_status(statuses(status(contacts=[{"wa_id": PHONE, "user_id": BSUID, "parent_user_id": PARENT}])))
    assert (event.recipient_hash, event.recipient_user_id_hash, event.person_hash) == (
        HASH(PHONE), HASH(BSUID), HASH(PARENT))


def test_failed_status_sent_to_a_phone_number_is_keyed_on_the_number_and_keeps_the_whole_error() -> None:
    error = {"code": 131026, "title": "Message undeliverable", "message": "Message undeliverable.",
             "error_data": {"details": "Unable to deliver."}, "href": "https://developers.facebook.com/docs/x"}
    event = only_status(statuses(status("failed", recipient_id="447700900123", errors=[error])))
    assert (event.person_hash, event.recipient_user_id_hash, event.country) == (HASH("447700900123"), "", "GB")
    assert (event.error_code, event.error_title, event.error_message, event.error_details, event.error_href) == (
        131026, "Message undeliverable", "Message undeliverable.", "Unable to deliver.",
        "https://developers.facebook.com/docs/x")


def test_group_status_keeps_the_hashed_participant_and_is_keyed_on_the_group() -> None:
    event = only_status(statuses(status(recipient_id="120363044", recipient_type="group",
                                        recipient_participant_id=PHONE)))
    assert (event.recipient_type, event.recipient_hash, event.participant_hash) == (
        "group", HASH("120363044"), HASH(PHONE))
    assert (event.person_hash, event.country) == (HASH("120363044"), "")


def test_no_identifier_or_username_leaves_the_parser_in_clear() -> None:
    payloads = [
        statuses(status(recipient_id=PHONE, recipient_user_id=BSUID, recipient_parent_user_id=PARENT,
                        contacts=[{"wa_id": PHONE, "user_id": BSUID, "profile": {"username": "@ana"}}])),
        change("user_preferences", {"metadata": METADATA, "contacts": [{"wa_id": PHONE, "user_id": BSUID}],
                                    "user_preferences": [{"wa_id": PHONE, "user_id": BSUID, "value": "stop",
                                                          "category": "marketing_messages", "timestamp": 1767003600}]}),
        change("messages", {"metadata": METADATA, "messages": [
            {"from": PHONE, "id": "wamid.S", "timestamp": "1767000000", "type": "system",
             "system": {"type": "user_changed_number", "wa_id": "5511911112222", "user_id": "BR.777",
                        "previous_user_id": BSUID}}]}),
        change("messages", {"metadata": METADATA, "contacts": [{"wa_id": PHONE, "user_id": BSUID,
                                                                "profile": {"username": "@ana"}}],
                            "messages": [{"from": PHONE, "from_user_id": BSUID, "id": "wamid.T",
                                          "timestamp": "1767000000", "type": "text", "text": {"body": "hi"}}]}),
    ]
    for payload in payloads:
        result = parse(payload)
        encoded = b"".join(encode(e) for e in [*result.events, *result.rejected])
        assert result.events
        for secret in (PHONE.encode(), b"1502576394655843", b"11815799212886844830", b"@ana", b"5511911112222"):
            assert secret not in encoded


def test_an_inbound_message_naming_phone_and_bsuid_links_them_and_stays_ignored() -> None:
    payload = change("messages", {"metadata": METADATA, "contacts": [{"wa_id": PHONE, "user_id": BSUID}],
                                  "messages": [{"from": PHONE, "from_user_id": BSUID, "id": "wamid.T",
                                                "timestamp": "1767000000", "type": "text", "text": {"body": "hi"}}]})
    result = parse(payload)
    assert result.ignored == {"message:text": 1}
    assert result.events == [IdentityLink(
        event_id=event_id("identity_link", WABA, "contact", HASH(PHONE), HASH(BSUID)), waba_id=WABA,
        phone_number_id=PNID, kind="contact", from_hash=HASH(PHONE), to_hash=HASH(BSUID), occurred_at=1767000000,
        received_at_ms=RECEIVED_MS, country="BR")]
    # A message naming its sender one way only links nothing.
    del payload["entry"][0]["changes"][0]["value"]["contacts"][0]["user_id"]
    del payload["entry"][0]["changes"][0]["value"]["messages"][0]["from_user_id"]
    assert parse(payload).events == []


def test_flow_completion_of_a_username_user_is_keyed_on_the_bsuid() -> None:
    payload = change("messages", {"metadata": METADATA,
                                  "contacts": [{"user_id": BSUID, "parent_user_id": PARENT,
                                                "profile": {"username": "@ana"}}],
                                  "messages": [{"context": {"id": "wamid.AAA111"}, "from_user_id": BSUID,
                                                "id": "wamid.C", "timestamp": "1767000310", "type": "interactive",
                                                "interactive": {"type": "nfm_reply", "nfm_reply": {
                                                    "name": "flow", "response_json": '{"flow_token":"ft_1"}'}}}]})
    (completion,) = parse(payload).events
    assert (completion.user_hash, completion.user_id_hash, completion.parent_user_id_hash) == (
        "", HASH(BSUID), HASH(PARENT))
    assert (completion.person_hash, completion.country) == (HASH(PARENT), "BR")


@pytest.mark.parametrize(("system", "from_user_id", "links"), [
    # A new number, and with it a new BSUID (previous one reported beside it).
    ({"type": "user_changed_number", "wa_id": "5511911112222", "user_id": "BR.777", "previous_user_id": BSUID},
     None, [(BSUID, "BR.777"), (PHONE, "BR.777"), ("5511911112222", "BR.777")]),
    # A new BSUID only; the previous one in system.previous_user_id.
    ({"type": "user_changed_user_id", "user_id": "BR.777", "previous_user_id": BSUID}, None,
     [(BSUID, "BR.777"), (PHONE, "BR.777")]),
    # The previous BSUID only as the message's from_user_id, and a parent on both sides.
    ({"type": "user_changed_user_id", "user_id": "BR.777", "parent_user_id": "US.ENT.9",
      "previous_parent_user_id": PARENT}, BSUID,
     [(PARENT, "US.ENT.9"), (BSUID, "US.ENT.9"), (PHONE, "US.ENT.9"), ("BR.777", "US.ENT.9")]),
])
def test_system_identity_changes_link_every_previous_identifier_to_the_new_person(
        system: dict[str, Any], from_user_id: str | None, links: list[tuple[str, str]]) -> None:
    message: dict[str, Any] = {"from": PHONE, "id": "wamid.S", "timestamp": "1767000000", "type": "system",
                               "system": {"body": "changed", **system}}
    if from_user_id:
        message["from_user_id"] = from_user_id
    result = parse(change("messages", {"metadata": METADATA, "messages": [message]}))
    assert result.rejected == []
    assert [(e.kind, e.from_hash, e.to_hash) for e in result.events] == [
        (system["type"], HASH(a), HASH(b)) for a, b in links]
    assert all(decode(encode(e)) == e for e in result.events)


def test_system_message_of_another_kind_is_ignored_and_one_without_the_new_id_is_rejected() -> None:
    other = {"from": PHONE, "id": "wamid.S", "timestamp": "1767000000", "type": "system",
             "system": {"type": "customer_identity_changed"}}
    assert parse(change("messages", {"metadata": METADATA, "messages": [other]})).ignored == {"message:system": 1}
    lacking = {**other, "system": {"type": "user_changed_user_id"}}
    (rejected,) = parse(change("messages", {"metadata": METADATA, "messages": [lacking]})).rejected
    assert rejected.reason == "user_changed_user_id system message without the previous and the new identifier"


def test_user_id_update_field_links_the_previous_bsuid_to_the_new_one() -> None:
    value = {"metadata": METADATA, "user_id_update": [{"previous_user_id": BSUID, "user_id": "BR.777",
                                                       "timestamp": "1767000000"}]}
    (link,) = parse(change("user_id_update", value)).events
    assert (link.kind, link.from_hash, link.to_hash, link.occurred_at) == (
        "user_id_update", HASH(BSUID), HASH("BR.777"), 1767000000)
    (rejected,) = parse(change("user_id_update", {"user_id": "BR.777"})).rejected
    assert rejected.reason == "user_id_update without both the previous and the new user id"


def test_user_preferences_stop_and_resume_are_events_keyed_on_the_person() -> None:
    value = {"messaging_product": "whatsapp", "metadata": METADATA,
             "contacts": [{"profile": {"name": "Ana"}, "wa_id": PHONE, "user_id": BSUID}],
             "user_preferences": [
                 {"wa_id": PHONE, "user_id": BSUID, "detail": "User requested to stop marketing messages",
                  "category": "marketing_messages", "value": "stop", "timestamp": 1767003600},
                 {"user_id": BSUID, "category": "marketing_messages", "value": "resume", "timestamp": 1767007200}]}
    result = parse(change("user_preferences", value))
    assert (result.rejected, result.field_label) == ([], "user_preferences")
    stop, resume = result.events
    assert stop == UserPreference(
        event_id=event_id("user_preference", WABA, HASH(BSUID), "marketing_messages", "stop", "1767003600"),
        waba_id=WABA, phone_number_id=PNID, category="marketing_messages", value="stop",
        detail="User requested to stop marketing messages", occurred_at=1767003600, received_at_ms=RECEIVED_MS,
        phone_hash=HASH(PHONE), user_id_hash=HASH(BSUID), person_hash=HASH(BSUID), country="BR")
    assert (resume.value, resume.person_hash, resume.phone_hash) == ("resume", HASH(BSUID), HASH(PHONE))


@pytest.mark.parametrize(("preference", "reason"), [
    ({"wa_id": PHONE, "category": "marketing_messages", "value": "maybe", "timestamp": 1767003600},
     "user preference with unknown value 'maybe'"),
    ({"wa_id": PHONE, "value": "stop", "timestamp": 1767003600}, "user preference without category"),
    ({"category": "marketing_messages", "value": "stop", "timestamp": 1767003600},
     "user preference without wa_id or user_id"),
    ({"wa_id": PHONE, "category": "marketing_messages", "value": "stop"}, "missing or non-numeric timestamp"),
])
def test_unusable_user_preference_is_rejected_with_its_reason(preference: dict[str, Any], reason: str) -> None:
    result = parse(change("user_preferences", {"metadata": METADATA, "user_preferences": [preference]}))
    assert result.events == []
    (rejected,) = result.rejected
    assert isinstance(rejected, RejectedEvent)
    assert rejected.reason == reason
    assert PHONE not in rejected.raw


def test_value_level_errors_are_kept_whole_beside_statuses() -> None:
    error = {"code": 131000, "title": "Something went wrong", "message": "Something went wrong",
             "error_data": {"details": "Unknown error, retry later."},
             "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"}
    payload = change("messages", {"metadata": METADATA, "errors": [error],
                                  "statuses": [status(recipient_id=PHONE)]}, entry_time=1767000100)
    result = parse(payload)
    status_event, error_event = result.events
    assert isinstance(status_event, MessageStatus)
    assert error_event == WebhookError(
        event_id=event_id("webhook_error", WABA, PNID, "messages", "1767000100",
                          orjson.dumps(error, option=orjson.OPT_SORT_KEYS).decode()),
        waba_id=WABA, phone_number_id=PNID, field="messages", code=131000, title="Something went wrong",
        message="Something went wrong", details="Unknown error, retry later.", href=error["href"],
        occurred_at=1767000100, received_at_ms=RECEIVED_MS)
    # Without entry.time: stamped when received. Alone in a change without metadata: still kept.
    (alone,) = parse(change("messages", {"errors": [error]})).events
    assert (alone.occurred_at, alone.phone_number_id) == (RECEIVED_MS // 1000, "")


@pytest.mark.parametrize(("phone", "country"), [
    ("5511999990000", "BR"), ("447700900123", "GB"), ("919876543210", "IN"), ("12425551234", "BS"),
    ("15550001111", "US"), ("77012345678", "KZ"), ("79161234567", "RU"), ("+5511999990000", "BR"),
    ("80012345678", ""), ("12", ""), ("not-a-number", ""),
])
def test_country_of_a_phone_number(phone: str, country: str) -> None:
    assert phone_country(phone) == country


@pytest.mark.parametrize(("bsuid", "country"), [
    (BSUID, "BR"), (PARENT, "US"), ("1502576394655843", ""), ("br.1502", ""), ("", "")])
def test_country_of_a_bsuid(bsuid: str, country: str) -> None:
    assert bsuid_country(bsuid) == country
