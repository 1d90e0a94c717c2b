"""Meta webhook payloads → canonical events.

A body whose envelope cannot be read raises :class:`MalformedPayloadError` (the request gets 400).
Inside a readable envelope, each status or message stands alone: a usable one becomes a canonical
event, an unusable one a :class:`RejectedEvent` carrying the reason and its pseudonymised fragment,
and kinds we do not analyse (yet) are only counted, so nothing disappears without a trace.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
import orjson

from contract.events import (
    MESSAGE_STATUSES,
    SOURCE_WHATSAPP,
    CanonicalEvent,
    FlowCompletion,
    FlowHealth,
    MessageStatus,
    RejectedEvent,
    event_id,
)
from contract.limits import MAX_DEPTH, MAX_ERROR_CODE, deeper_than, raw_deeper_than
from contract.privacy import Pseudonymiser
from ingest.exceptions import MalformedPayloadError
from ingest.shapes import StatusesWebhook, decode_statuses_webhook

WHATSAPP_OBJECT = "whatsapp_business_account"
# Statuses stamped before this are not WhatsApp Cloud API events (2014-01-01).
EARLIEST_TIMESTAMP = 1_388_534_400
# Clock skew tolerated for timestamps ahead of ours.
MAX_FUTURE_SKEW_S = 3600
# Names we count ignored parts by; anything else is counted as "other" (metric labels stay bounded).
KNOWN_FIELDS = frozenset(
    {"flows", "message_template_status_update", "message_template_quality_update", "user_preferences",
     "account_update", "phone_number_quality_update", "business_capability_update", "security",
     "template_category_update", "history", "smb_message_echoes", "account_alerts"}
)
# The ``field`` label of a webhook request: the one field its changes carry, else "mixed".
FIELD_LABELS = frozenset({"messages", "flows"})
# Meta's event names are upper-case identifiers; anything else in ``value.event`` is not a flows event.
_EVENT_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_MESSAGE_STATUSES = frozenset(MESSAGE_STATUSES)
KNOWN_MESSAGE_TYPES = frozenset(
    {"text", "image", "audio", "video", "document", "sticker", "location", "contacts", "button",
     "interactive", "reaction", "order", "system", "unsupported", "request_welcome"}
)


@dataclass(slots=True)
class ParseResult:
    events: list[CanonicalEvent] = field(default_factory=list)
    rejected: list[RejectedEvent] = field(default_factory=list)
    ignored: dict[str, int] = field(default_factory=dict)  # what we skip on purpose, by kind
    fields: set[str] = field(default_factory=set)  # the changes' ``field`` values, bounded (see FIELD_LABELS)

    @property
    def field_label(self) -> str:
        """The request's ``field`` metric label: messages, flows, other, or mixed."""
        if len(self.fields) == 1:
            return next(iter(self.fields))
        return "mixed" if self.fields else "other"

    def ignore(self, kind: str) -> None:
        self.ignored[kind] = self.ignored.get(kind, 0) + 1


class WebhookParser:
    """Turns one webhook body into canonical events; phone numbers leave it only as keyed hashes."""

    def __init__(self, *, pseudonymise: Pseudonymiser, form_fields_allowlist: tuple[str, ...] = (),
                 typed_statuses: bool = True) -> None:
        """``typed_statuses``: read statuses-only webhooks through their typed shape (the same events, faster);
        False walks every body in general (tests compare the two)."""
        self._hash = pseudonymise
        self._allow = frozenset(form_fields_allowlist)
        self._typed_statuses = typed_statuses

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
        entries = _list(payload, "entry", "body")
        result = ParseResult()
        for i, entry in enumerate(entries):
            where = f"entry[{i}]"
            if not isinstance(entry, dict):
                raise MalformedPayloadError(f"{where} must be an object")
            waba_id = str(entry.get("id") or "")
            for j, change in enumerate(_list(entry, "changes", where)):
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
                    self._messages_change(value, waba_id, received, cwhere, result)
                elif field_name == "flows":
                    self._flows_change(value, waba_id, entry.get("time"), received, result)
                else:
                    result.ignore(f"field:{_known(field_name, KNOWN_FIELDS)}")
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
                    occurred_at, problem = _timestamp(status.timestamp, received)
                    if problem or not wamid or status_value not in _MESSAGE_STATUSES or status.errors:
                        return None
                    pricing, conversation = status.pricing, status.conversation
                    origin = conversation.origin if conversation is not None else None
                    events.append(
                        MessageStatus(
                            event_id=event_id("status", wamid, status_value),
                            waba_id=waba_id,
                            phone_number_id=pnid,
                            wamid=wamid,
                            status=status_value,
                            occurred_at=occurred_at,
                            received_at_ms=received,
                            recipient_hash=hash_phone(status.recipient_id or ""),
                            recipient_type=status.recipient_type or "individual",
                            pricing_category=(pricing.category or "") if pricing is not None else "",
                            pricing_type=(pricing.type or "") if pricing is not None else "",
                            pricing_model=(pricing.pricing_model or "") if pricing is not None else "",
                            billable=-1 if pricing is None or pricing.billable is None else int(pricing.billable),
                            conversation_id=(conversation.id or "") if conversation is not None else "",
                            conversation_origin=(origin.type or "") if origin is not None else "",
                            biz_opaque_callback_data=status.biz_opaque_callback_data or "",
                        )
                    )
        return result

    # --- field "messages" ----------------------------------------------------------------------

    def _messages_change(
        self, value: dict[str, Any], waba_id: str, received: int, where: str, result: ParseResult
    ) -> None:
        statuses = _list(value, "statuses", f"{where}.value", required=False)
        messages = _list(value, "messages", f"{where}.value", required=False)
        errors = _list(value, "errors", f"{where}.value", required=False)
        metadata = value.get("metadata")
        phone_number_id = str(metadata.get("phone_number_id") or "") if isinstance(metadata, dict) else ""
        if not phone_number_id and (statuses or messages):
            result.rejected.append(
                self._reject("change without metadata.phone_number_id", value, received, waba_id, "")
            )
            return
        for status in statuses:
            self._status(status, waba_id, phone_number_id, received, result)
        for message in messages:
            self._message(message, waba_id, phone_number_id, received, result)
        for _ in errors:
            result.ignore("value.errors")

    # --- field "flows" -------------------------------------------------------------------------

    def _flows_change(self, value: dict[str, Any], waba_id: str, entry_time: Any, received: int,
                      result: ParseResult) -> None:
        """A Flow's status change or health alert (section 4 of the webhook reference)."""
        flow_id = value.get("flow_id")
        event = value.get("event")
        problem = ""
        if entry_time is None:
            occurred_at = received // 1000
        else:
            occurred_at, problem = _timestamp(entry_time, received)
            problem = problem and f"entry.time: {problem}"
        if not isinstance(event, str) or not _EVENT_NAME.fullmatch(event):
            problem = f"flows webhook with unknown event {event!r}"
        if not isinstance(flow_id, str) or not flow_id.strip():
            problem = "flows webhook without flow_id"
        if problem or not isinstance(flow_id, str) or not isinstance(event, str):
            result.rejected.append(self._reject(problem, value, received, waba_id, ""))
            return
        errors = [e for e in value.get("errors") or () if isinstance(e, dict)] if isinstance(
            value.get("errors"), list) else []
        raw = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
        result.events.append(
            FlowHealth(
                event_id=event_id("flow_health", waba_id, flow_id, event, str(occurred_at), raw),
                waba_id=waba_id,
                flow_id=flow_id,
                event=event,
                occurred_at=occurred_at,
                received_at_ms=received,
                message=str(value.get("message") or value.get("warning") or ""),
                old_status=_upper(value.get("old_status")),
                new_status=_upper(value.get("new_status")),
                alert_state=_upper(value.get("alert_state")),
                error_rate=_number(value.get("error_rate")),
                threshold=_number(value.get("threshold")),
                p50_latency_ms=_number(value.get("p50_latency")),
                p90_latency_ms=_number(value.get("p90_latency")),
                requests_count=int(_number(value.get("requests_count"))),
                availability=_number(value.get("availability")),
                error_types=[_error_type(e.get("error_type")) for e in errors],
                error_rates=[_number(e.get("error_rate")) for e in errors],
                error_counts=[int(_number(e.get("error_count"))) for e in errors],
                raw=raw,
            )
        )

    # --- field "messages", continued -----------------------------------------------------------

    def _status(self, raw: Any, waba_id: str, pnid: str, received: int, result: ParseResult) -> None:
        if not isinstance(raw, dict):
            result.rejected.append(self._reject("status is not an object", raw, received, waba_id, pnid))
            return
        wamid = raw.get("id")
        status = raw.get("status")
        occurred_at, problem = _timestamp(raw.get("timestamp"), received)
        if not isinstance(status, str) or status not in MESSAGE_STATUSES:
            problem = f"unknown status value {status!r}"
        if not isinstance(wamid, str) or not wamid:
            problem = "status without id"
        if problem or not isinstance(wamid, str) or not isinstance(status, str):
            result.rejected.append(self._reject(problem, raw, received, waba_id, pnid))
            return
        error_code, error_title, error_details = 0, "", ""
        errors = raw.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            first = errors[0]
            code = first.get("code")
            error_code = code if isinstance(code, int) and not isinstance(code, bool) and (
                0 <= code <= MAX_ERROR_CODE) else 0
            error_title = str(first.get("title") or first.get("message") or "")
            data = first.get("error_data")
            error_details = str(data.get("details") or "") if isinstance(data, dict) else ""
        pricing = _object(raw.get("pricing"))
        conversation = _object(raw.get("conversation"))
        origin = _object(conversation.get("origin"))
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
                recipient_hash=self._hash(str(raw.get("recipient_id") or "")),
                recipient_type=str(raw.get("recipient_type") or "individual"),
                error_code=error_code,
                error_title=error_title,
                error_details=error_details,
                pricing_category=str(pricing.get("category") or ""),
                pricing_type=str(pricing.get("type") or ""),
                pricing_model=str(pricing.get("pricing_model") or ""),
                billable=-1 if not isinstance(billable, bool) else int(billable),
                conversation_id=str(conversation.get("id") or ""),
                conversation_origin=str(origin.get("type") or ""),
                biz_opaque_callback_data=str(raw.get("biz_opaque_callback_data") or ""),
            )
        )

    def _message(self, raw: Any, waba_id: str, pnid: str, received: int, result: ParseResult) -> None:
        if not isinstance(raw, dict):
            result.rejected.append(self._reject("message is not an object", raw, received, waba_id, pnid))
            return
        interactive = raw.get("interactive")
        if raw.get("type") != "interactive" or not isinstance(interactive, dict):
            result.ignore(f"message:{_known(raw.get('type'), KNOWN_MESSAGE_TYPES)}")
            return
        if interactive.get("type") != "nfm_reply":
            result.ignore("interactive:other")
            return
        completion, problem = self._completion(raw, interactive, waba_id, pnid, received)
        if completion is None:
            result.rejected.append(self._reject(problem, raw, received, waba_id, pnid))
        else:
            result.events.append(completion)

    def _completion(
        self, raw: dict[str, Any], interactive: dict[str, Any], waba_id: str, pnid: str, received: int
    ) -> tuple[FlowCompletion | None, str]:
        wamid = raw.get("id")
        if not isinstance(wamid, str) or not wamid:
            return None, "nfm_reply without id"
        context = raw.get("context")
        flow_wamid = context.get("id") if isinstance(context, dict) else None
        if not isinstance(flow_wamid, str) or not flow_wamid:
            return None, "nfm_reply without context.id"
        occurred_at, ts_problem = _timestamp(raw.get("timestamp"), received)
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
                user_hash=self._hash(str(raw.get("from") or "")),
                flow_name=str(reply.get("name") or ""),
                response_keys=keys,
                response_fields=fields,
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


def _list(node: dict[str, Any], key: str, where: str, *, required: bool = True) -> list[Any]:
    value = node.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise MalformedPayloadError(f"{where}.{key} must be a list")
    return value


def _timestamp(raw: Any, received_ms: int) -> tuple[int, str]:
    """Meta's Unix-seconds timestamp (a string, sometimes an int) → (seconds, problem)."""
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 18:  # int() refuses 4,300+ digits
        seconds = int(raw)
    elif isinstance(raw, int) and not isinstance(raw, bool):
        seconds = raw
    else:
        return 0, "missing or non-numeric timestamp"
    if seconds < EARLIEST_TIMESTAMP:
        return 0, f"timestamp {seconds} is before 2014"
    if seconds > received_ms // 1000 + MAX_FUTURE_SKEW_S:
        return 0, f"timestamp {seconds} is in the future"
    return seconds, ""


def _number(value: Any) -> float:
    """A non-negative number Meta sent (possibly as a string), else -1."""
    if isinstance(value, bool):
        return -1.0
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return -1.0
    else:
        return -1.0
    return number if 0 <= number < 1e15 else -1.0


def _upper(value: Any) -> str:
    return value.strip().upper() if isinstance(value, str) else ""


def _error_type(value: Any) -> str:
    """Meta spells error types both ``INVALID_SCREEN_TRANSITION`` and ``invalid-screen-transition``."""
    if not isinstance(value, str):
        return "unknown"
    return re.sub(r"[^a-z0-9]+", "_", value.strip().lower()).strip("_") or "unknown"


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _known(name: Any, known: frozenset[str]) -> str:
    return name if isinstance(name, str) and name in known else "other"


def _answer(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _dig(node: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node
