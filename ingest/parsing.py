"""Meta webhook payloads → canonical events.

A body whose envelope cannot be read raises :class:`MalformedPayloadError` (the request gets 400).
Inside a readable envelope, each status or message stands alone: a usable one becomes a canonical
event, an unusable one a :class:`RejectedEvent` carrying the reason and its pseudonymised fragment,
and kinds we do not analyse (yet) are only counted, so nothing disappears without a trace.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
import orjson

from contract.events import (
    MESSAGE_STATUSES,
    SOURCE_WHATSAPP,
    FlowCompletion,
    MessageStatus,
    RejectedEvent,
    WebhookError,
    event_id,
)
from contract.limits import MAX_DEPTH, deeper_than, raw_deeper_than
from contract.privacy import Pseudonymiser
from ingest.exceptions import MalformedPayloadError
from ingest.flow_webhooks import flow_health
from ingest.identity import NOBODY, Identity, identifier, identity
from ingest.payload import (
    MetaError,
    ParseResult,
    as_object,
    contact_of,
    contacts_of,
    known,
    list_of,
    phone_number_id,
    timestamp,
)
from ingest.people import PeopleParser
from ingest.shapes import StatusesWebhook, decode_statuses_webhook

WHATSAPP_OBJECT = "whatsapp_business_account"
# Names we count ignored parts by; anything else is counted as "other" (metric labels stay bounded).
KNOWN_FIELDS = frozenset(
    {"flows", "message_template_status_update", "message_template_quality_update",
     "account_update", "phone_number_quality_update", "business_capability_update", "security",
     "template_category_update", "history", "smb_message_echoes", "account_alerts"}
)
# The ``field`` label of a webhook request: the one field its changes carry, else "mixed".
FIELD_LABELS = frozenset({"messages", "flows", "user_preferences"})
_MESSAGE_STATUSES = frozenset(MESSAGE_STATUSES)
KNOWN_MESSAGE_TYPES = frozenset(
    {"text", "image", "audio", "video", "document", "sticker", "location", "contacts", "button",
     "interactive", "reaction", "order", "system", "unsupported", "request_welcome"}
)


class WebhookParser:
    """Turns one webhook body into canonical events; phone numbers leave it only as keyed hashes."""

    def __init__(self, *, pseudonymise: Pseudonymiser, form_fields_allowlist: tuple[str, ...] = (),
                 typed_statuses: bool = True) -> None:
        """``typed_statuses``: read statuses-only webhooks through their typed shape (the same events, faster);
        False walks every body in general (tests compare the two)."""
        self._hash = pseudonymise
        self._allow = frozenset(form_fields_allowlist)
        self._typed_statuses = typed_statuses
        self._people = PeopleParser(pseudonymise=pseudonymise, reject=self._reject)

    def parse(self, body: bytes, *, received_at_ms: int | None = None) -> ParseResult:
        received = int(time.time() * 1000) if received_at_ms is None else received_at_ms
        # The common webhook decoded straight from the bytes. Only for a body that cannot nest deeper than
        # MAX_DEPTH (bracket count, as raw_deeper_than), since fields the shape skips are not depth-checked; any
        # body the shape does not fit, valid or not, takes the general path, which gives the exact 400 reason.
        shallow = body.count(b"{") + body.count(b"[") <= MAX_DEPTH
        # ASCII only: msgspec does not validate the UTF-8 of what the shape skips, and orjson refuses invalid UTF-8
        # anywhere; a body with other bytes takes the general path and its exact answer.
        if self._typed_statuses and shallow and body.isascii():
            try:
                webhook: StatusesWebhook | None = decode_statuses_webhook(body)
            except msgspec.MsgspecError:
                webhook = None
            if webhook is not None and webhook.object == WHATSAPP_OBJECT:
                typed = self._statuses_only(webhook, received)
                if typed is not None:
                    return typed
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise MalformedPayloadError(f"body is not valid JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise MalformedPayloadError("body must be a JSON object")
        if raw_deeper_than(body, payload):
            raise MalformedPayloadError(f"body is nested deeper than {MAX_DEPTH} levels")
        obj = payload.get("object")
        if obj != WHATSAPP_OBJECT:
            raise MalformedPayloadError(f"unsupported object {obj!r}, expected {WHATSAPP_OBJECT!r}")
        if self._typed_statuses and not shallow:
            try:
                typed = self._statuses_only(msgspec.convert(payload, StatusesWebhook), received)
            except msgspec.ValidationError:
                typed = None
            if typed is not None:
                return typed
        entries = list_of(payload, "entry", "body")
        result = ParseResult()
        for i, entry in enumerate(entries):
            where = f"entry[{i}]"
            if not isinstance(entry, dict):
                raise MalformedPayloadError(f"{where} must be an object")
            waba_id = str(entry.get("id") or "")
            for j, change in enumerate(list_of(entry, "changes", where)):
                cwhere = f"{where}.changes[{j}]"
                if not isinstance(change, dict):
                    raise MalformedPayloadError(f"{cwhere} must be an object")
                value = change.get("value")
                if not isinstance(value, dict):
                    raise MalformedPayloadError(f"{cwhere}.value must be an object")
                field_name = change.get("field")
                result.fields.add(field_name if isinstance(field_name, str) and field_name in FIELD_LABELS
                                  else "other")
                if field_name == "messages":
                    self._messages_change(value, waba_id, entry.get("time"), received, cwhere, result)
                elif field_name == "user_preferences":
                    self._people.preferences(value, waba_id, received, cwhere, result)
                    self._value_errors(list_of(value, "errors", f"{cwhere}.value", required=False),
                                       "user_preferences", waba_id, phone_number_id(value), entry.get("time"),
                                       received, result)
                elif field_name == "user_id_update":
                    self._people.user_id_update(value, waba_id, entry.get("time"), received, result)
                elif field_name == "flows":
                    flow_health(value, waba_id, entry.get("time"), received, result, self._reject)
                else:
                    result.ignore(f"field:{known(field_name, KNOWN_FIELDS)}")
        return result

    def _statuses_only(self, webhook: StatusesWebhook, received: int) -> ParseResult | None:
        """The result of a webhook carrying only usable statuses, exactly as the general walk makes it; None
        for any other body (a status to reject, messages, errors, other fields)."""
        result = ParseResult()
        events = result.events
        hash_phone = self._hash
        for entry in webhook.entry:
            waba_id = entry.id or ""
            for change in entry.changes:
                value = change.value
                if change.field != "messages" or value.messages or value.errors:
                    return None
                statuses = value.statuses
                result.fields.add("messages")
                if not statuses:
                    continue
                metadata = value.metadata
                pnid = (metadata.phone_number_id or "") if metadata is not None else ""
                if not pnid:
                    return None
                for status in statuses:
                    wamid, status_value = status.id, status.status
                    occurred_at, problem = timestamp(status.timestamp, received)
                    if problem or not wamid or status_value not in _MESSAGE_STATUSES or status.errors:
                        return None
                    pricing, conversation = status.pricing, status.conversation
                    origin = conversation.origin if conversation is not None else None
                    contact = status.contacts[0] if status.contacts else None
                    who, recipient_hash = self._recipient(
                        status.recipient_type, status.recipient_id, status.recipient_user_id,
                        status.recipient_parent_user_id, contact.wa_id if contact is not None else None,
                        contact.user_id if contact is not None else None,
                        contact.parent_user_id if contact is not None else None)
                    events.append(
                        MessageStatus(
                            event_id=event_id("status", wamid, status_value),
                            waba_id=waba_id,
                            phone_number_id=pnid,
                            wamid=wamid,
                            status=status_value,
                            occurred_at=occurred_at,
                            received_at_ms=received,
                            recipient_hash=recipient_hash,
                            recipient_type=status.recipient_type or "individual",
                            pricing_category=(pricing.category or "") if pricing is not None else "",
                            pricing_type=(pricing.type or "") if pricing is not None else "",
                            pricing_model=(pricing.pricing_model or "") if pricing is not None else "",
                            billable=-1 if pricing is None or pricing.billable is None else int(pricing.billable),
                            conversation_id=(conversation.id or "") if conversation is not None else "",
                            conversation_origin=(origin.type or "") if origin is not None else "",
                            biz_opaque_callback_data=status.biz_opaque_callback_data or "",
                            recipient_user_id_hash=who.user_id_hash,
                            recipient_parent_user_id_hash=who.parent_user_id_hash,
                            person_hash=who.person_hash or recipient_hash,
                            participant_hash=hash_phone(status.recipient_participant_id or ""),
                            country=who.country,
                        )
                    )
        return result

    def _recipient(self, recipient_type: Any, phone: Any, user_id: Any, parent_user_id: Any, contact_phone: Any,
                   contact_user_id: Any, contact_parent: Any) -> tuple[Identity, str]:
        """Who a status is about, and the hash of its ``recipient_id`` (a group's id for a group status, whose
        person key is the group's). The status's own fields first, then its ``contacts[]`` entry."""
        if recipient_type == "group":
            return NOBODY, self._hash(identifier(phone))
        who = identity(self._hash, phone or contact_phone, user_id or contact_user_id,
                       parent_user_id or contact_parent)
        return who, who.phone_hash

    # --- field "messages" ----------------------------------------------------------------------

    def _messages_change(
        self, value: dict[str, Any], waba_id: str, entry_time: Any, received: int, where: str, result: ParseResult
    ) -> None:
        statuses = list_of(value, "statuses", f"{where}.value", required=False)
        messages = list_of(value, "messages", f"{where}.value", required=False)
        errors = list_of(value, "errors", f"{where}.value", required=False)
        contacts = contacts_of(value, f"{where}.value")
        pnid = phone_number_id(value)
        if not pnid and (statuses or messages):
            result.rejected.append(
                self._reject("change without metadata.phone_number_id", value, received, waba_id, "")
            )
            return
        for status in statuses:
            self._status(status, waba_id, pnid, received, result)
        for message in messages:
            self._message(message, contacts, waba_id, pnid, received, result)
        self._value_errors(errors, "messages", waba_id, pnid, entry_time, received, result)

    def _value_errors(self, errors: list[Any], field_name: str, waba_id: str, pnid: str, entry_time: Any,
                      received: int, result: ParseResult) -> None:
        """``value.errors[]``: errors of the account or number, not of one message; each one kept."""
        if not errors:
            return
        occurred_at, problem = (received // 1000, "") if entry_time is None else timestamp(entry_time, received)
        if problem:
            occurred_at = received // 1000  # the error is real whatever the envelope's clock says
        for raw in errors:
            if not isinstance(raw, dict):
                result.rejected.append(self._reject("value error is not an object", raw, received, waba_id, pnid))
                continue
            error = MetaError.of(raw)
            fragment = orjson.dumps(raw, option=orjson.OPT_SORT_KEYS).decode()
            result.events.append(WebhookError(
                event_id=event_id("webhook_error", waba_id, pnid, field_name, str(occurred_at), fragment),
                waba_id=waba_id, phone_number_id=pnid, field=field_name, code=error.code, title=error.title,
                message=error.message, details=error.details, href=error.href, occurred_at=occurred_at,
                received_at_ms=received,
            ))

    # --- field "messages", continued -----------------------------------------------------------

    def _status(self, raw: Any, waba_id: str, pnid: str, received: int, result: ParseResult) -> None:
        if not isinstance(raw, dict):
            result.rejected.append(self._reject("status is not an object", raw, received, waba_id, pnid))
            return
        wamid = raw.get("id")
        status = raw.get("status")
        occurred_at, problem = timestamp(raw.get("timestamp"), received)
        if not isinstance(status, str) or status not in MESSAGE_STATUSES:
            problem = f"unknown status value {status!r}"
        if not isinstance(wamid, str) or not wamid:
            problem = "status without id"
        if problem or not isinstance(wamid, str) or not isinstance(status, str):
            result.rejected.append(self._reject(problem, raw, received, waba_id, pnid))
            return
        error = MetaError()
        errors = raw.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            error = MetaError.of(errors[0])
        contacts = raw.get("contacts")
        contact = as_object(contacts[0]) if isinstance(contacts, list) and contacts else {}
        who, recipient_hash = self._recipient(
            raw.get("recipient_type"), raw.get("recipient_id"), raw.get("recipient_user_id"),
            raw.get("recipient_parent_user_id"), contact.get("wa_id"), contact.get("user_id"),
            contact.get("parent_user_id"))
        pricing = as_object(raw.get("pricing"))
        conversation = as_object(raw.get("conversation"))
        origin = as_object(conversation.get("origin"))
        billable = pricing.get("billable")
        result.events.append(
            MessageStatus(
                event_id=event_id("status", wamid, status),
                waba_id=waba_id,
                phone_number_id=pnid,
                wamid=wamid,
                status=status,
                occurred_at=occurred_at,
                received_at_ms=received,
                recipient_hash=recipient_hash,
                recipient_type=str(raw.get("recipient_type") or "individual"),
                error_code=error.code,
                error_title=error.title,
                error_details=error.details,
                pricing_category=str(pricing.get("category") or ""),
                pricing_type=str(pricing.get("type") or ""),
                pricing_model=str(pricing.get("pricing_model") or ""),
                billable=-1 if not isinstance(billable, bool) else int(billable),
                conversation_id=str(conversation.get("id") or ""),
                conversation_origin=str(origin.get("type") or ""),
                biz_opaque_callback_data=str(raw.get("biz_opaque_callback_data") or ""),
                recipient_user_id_hash=who.user_id_hash,
                recipient_parent_user_id_hash=who.parent_user_id_hash,
                person_hash=who.person_hash or recipient_hash,
                participant_hash=self._hash(identifier(raw.get("recipient_participant_id"))),
                country=who.country,
                error_message=error.message,
                error_href=error.href,
            )
        )

    def _message(self, raw: Any, contacts: list[dict[str, Any]], waba_id: str, pnid: str, received: int,
                 result: ParseResult) -> None:
        if not isinstance(raw, dict):
            result.rejected.append(self._reject("message is not an object", raw, received, waba_id, pnid))
            return
        kind = raw.get("type")
        if kind == "system":
            self._people.system(raw, waba_id, pnid, received, result)
            return
        contact = contact_of(contacts, raw.get("from"), raw.get("from_user_id"))
        who = identity(self._hash, raw.get("from") or contact.get("wa_id"),
                       raw.get("from_user_id") or contact.get("user_id"), contact.get("parent_user_id"))
        interactive = raw.get("interactive")
        if kind != "interactive" or not isinstance(interactive, dict) or interactive.get("type") != "nfm_reply":
            result.ignore(f"message:{known(kind, KNOWN_MESSAGE_TYPES)}" if kind != "interactive"
                          or not isinstance(interactive, dict) else "interactive:other")
            occurred_at, problem = timestamp(raw.get("timestamp"), received)
            if not problem:
                self._people.contact(who, waba_id, pnid, occurred_at, received, result)
            return
        completion, problem = self._completion(raw, interactive, who, waba_id, pnid, received)
        if completion is None:
            result.rejected.append(self._reject(problem, raw, received, waba_id, pnid))
        else:
            result.events.append(completion)

    def _completion(
        self, raw: dict[str, Any], interactive: dict[str, Any], who: Identity, waba_id: str, pnid: str, received: int
    ) -> tuple[FlowCompletion | None, str]:
        wamid = raw.get("id")
        if not isinstance(wamid, str) or not wamid:
            return None, "nfm_reply without id"
        context = raw.get("context")
        flow_wamid = context.get("id") if isinstance(context, dict) else None
        if not isinstance(flow_wamid, str) or not flow_wamid:
            return None, "nfm_reply without context.id"
        occurred_at, ts_problem = timestamp(raw.get("timestamp"), received)
        if ts_problem:
            return None, ts_problem
        reply = interactive.get("nfm_reply")
        if not isinstance(reply, dict):
            return None, "nfm_reply without nfm_reply object"
        response_json = reply.get("response_json")
        try:
            response = orjson.loads(response_json) if isinstance(response_json, str) else None
        except orjson.JSONDecodeError:
            response = None
        if not isinstance(response, dict):
            return None, "nfm_reply.response_json is not a JSON object string"
        if deeper_than(response):
            return None, f"nfm_reply.response_json is nested deeper than {MAX_DEPTH} levels"
        flow_token = response.get("flow_token")
        keys = sorted(k for k in response if k != "flow_token")
        fields = {k: _answer(response[k]) for k in keys if k in self._allow}
        return (
            FlowCompletion(
                event_id=event_id("nfm_reply", wamid),
                waba_id=waba_id,
                phone_number_id=pnid,
                wamid=wamid,
                flow_wamid=flow_wamid,
                flow_token=flow_token if isinstance(flow_token, str) else "",
                occurred_at=occurred_at,
                received_at_ms=received,
                user_hash=who.phone_hash,
                flow_name=str(reply.get("name") or ""),
                response_keys=keys,
                response_fields=fields,
                user_id_hash=who.user_id_hash,
                parent_user_id_hash=who.parent_user_id_hash,
                person_hash=who.person_hash,
                country=who.country,
            ),
            "",
        )

    def _reject(self, reason: str, fragment: Any, received: int, waba_id: str, pnid: str) -> RejectedEvent:
        scrubbed = self._scrub_fragment(fragment)
        raw = orjson.dumps(scrubbed, option=orjson.OPT_SORT_KEYS).decode()
        return RejectedEvent(
            event_id=event_id("rejected", SOURCE_WHATSAPP, reason, raw),
            source=SOURCE_WHATSAPP,
            reason=reason,
            raw=raw,
            received_at_ms=received,
            waba_id=waba_id,
            phone_number_id=pnid,
        )

    def _scrub_fragment(self, fragment: Any) -> Any:
        scrubbed = self._hash.scrub(fragment)
        # Form answers are personal data: keep only allow-listed values of a response_json.
        reply = _dig(scrubbed, "interactive", "nfm_reply")
        if isinstance(reply, dict) and isinstance(reply.get("response_json"), str):
            try:
                response = orjson.loads(reply["response_json"])
            except orjson.JSONDecodeError:
                response = None
            if isinstance(response, dict) and not deeper_than(response):
                kept = {k: v for k, v in response.items() if k == "flow_token" or k in self._allow}
                reply["response_json"] = orjson.dumps(kept).decode()
            else:
                reply["response_json"] = "<unparseable, withheld>"
        return scrubbed








def _answer(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _dig(node: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node
