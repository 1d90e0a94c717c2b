"""Meta-shaped webhook bodies: the one builder of statuses, Flow replies, changes and whole POSTs."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from ingest.parsing import WHATSAPP_OBJECT
from ingest.signatures import SIGNATURE_HEADER, sign

ERROR_HREF = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"


def wamid(user: str, hex_id: str, *, inbound: bool) -> str:
    """A message id shaped like Meta's: base64 of a small protobuf holding the user's number and a hex id."""
    kind = b"\x12" if inbound else b"\x11"
    raw = (
        b"\x1c\x18"
        + bytes([len(user)])
        + user.encode()
        + b"\x15\x02\x00"
        + kind
        + b"\x18\x14"
        + hex_id.encode()
        + b"\x00"
    )
    return "wamid." + base64.b64encode(raw).decode()


def status(
    *,
    wamid: str,
    status: str,
    timestamp: int,
    recipient_id: str,
    conversation: dict[str, Any] | None = None,
    pricing: dict[str, Any] | None = None,
    callback_data: str = "",
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One status update of an outbound message (optional parts left out when not given)."""
    out: dict[str, Any] = {"id": wamid, "status": status, "timestamp": str(timestamp), "recipient_id": recipient_id}
    if conversation is not None:
        out["conversation"] = conversation
    if pricing is not None:
        out["pricing"] = pricing
    if callback_data:
        out["biz_opaque_callback_data"] = callback_data
    if errors is not None:
        out["errors"] = errors
    return out


def conversation(*, conversation_id: str, category: str, expires: int | None = None) -> dict[str, Any]:
    """A status's conversation object; ``expires`` (Unix seconds) only on the one that opens it."""
    out: dict[str, Any] = {"id": conversation_id}
    if expires is not None:
        out["expiration_timestamp"] = str(expires)
    out["origin"] = {"type": category}
    return out


def pricing(*, pricing_type: str, category: str) -> dict[str, Any]:
    """A status's pricing object (per-message pricing)."""
    return {"billable": pricing_type == "regular", "pricing_model": "PMP", "type": pricing_type, "category": category}


def error(*, code: int, title: str, details: str) -> dict[str, Any]:
    """One entry of a failed status's ``errors``."""
    return {"code": code, "title": title, "message": title, "error_data": {"details": details}, "href": ERROR_HREF}


def flow_reply(
    *, wamid: str, user: str, business_number: str, flow_wamid: str, timestamp: int, response: dict[str, Any]
) -> dict[str, Any]:
    """An inbound ``nfm_reply`` message: the user completed the Flow sent in ``flow_wamid``."""
    return {
        "context": {"from": business_number, "id": flow_wamid},
        "from": user,
        "id": wamid,
        "timestamp": str(timestamp),
        "type": "interactive",
        "interactive": {
            "type": "nfm_reply",
            "nfm_reply": {"name": "flow", "body": "Sent", "response_json": orjson.dumps(response).decode()},
        },
    }


def contact(*, wa_id: str, name: str) -> dict[str, Any]:
    """The sender of an inbound message, as listed in the change's ``contacts``."""
    return {"profile": {"name": name}, "wa_id": wa_id}


def change(
    *,
    phone_number_id: str,
    display_phone_number: str | None = None,
    contacts: list[dict[str, Any]] | None = None,
    statuses: list[dict[str, Any]] | None = None,
    messages: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One ``messages`` change of a business phone number, carrying what is given."""
    metadata: dict[str, Any] = {}
    if display_phone_number is not None:
        metadata["display_phone_number"] = display_phone_number
    metadata["phone_number_id"] = phone_number_id
    value: dict[str, Any] = {"messaging_product": "whatsapp", "metadata": metadata}
    if contacts is not None:
        value["contacts"] = contacts
    if statuses is not None:
        value["statuses"] = statuses
    if messages is not None:
        value["messages"] = messages
    return {"value": value, "field": "messages"}


def entry(*, waba_id: str, changes: list[dict[str, Any]]) -> dict[str, Any]:
    """One WABA's entry of a POST."""
    return {"id": waba_id, "changes": changes}


def webhook_body(entries: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """A whole webhook POST body."""
    return {"object": WHATSAPP_OBJECT, "entry": list(entries)}


def encode(body: dict[str, Any]) -> bytes:
    """The bytes POSTed (and signed) for ``body``."""
    return orjson.dumps(body)


def status_post(*, waba_id: str, phone_number_id: str, statuses: list[dict[str, Any]]) -> bytes:
    """The bytes of a POST carrying ``statuses`` of one phone number, nothing else (probes, sentinels)."""
    changes = [change(phone_number_id=phone_number_id, statuses=statuses)]
    return encode(webhook_body([entry(waba_id=waba_id, changes=changes)]))


@dataclass(frozen=True, slots=True, kw_only=True)
class Webhook:
    """One scheduled POST: the body (serialised once, so the signature covers exactly ``raw``)."""

    seq: int  # position in the send schedule
    at: float  # seconds after the start when it is due
    post_id: int  # a re-sent POST shares the post_id (and the bytes) of the original
    duplicate: bool  # True for a re-send of an earlier POST
    body: dict[str, Any]
    raw: bytes
    status_updates: int
    completions: int

    @property
    def digest(self) -> bytes:
        """Identity of the bytes: equal for a re-send (and for two POSTs that happen to be identical)."""
        return hashlib.blake2b(self.raw, digest_size=16).digest()

    def signature(self, app_secret: str) -> str:
        return sign(self.raw, app_secret)

    def headers(self, app_secret: str) -> dict[str, str]:
        return {"Content-Type": "application/json", SIGNATURE_HEADER: self.signature(app_secret)}
