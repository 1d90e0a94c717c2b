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
    recipient_id: str | None,
    conversation: dict[str, Any] | None = None,
    pricing: dict[str, Any] | None = None,
    callback_data: str = "",
    errors: list[dict[str, Any]] | None = None,
    recipient_user_id: str = "",
    recipient_parent_user_id: str = "",
    contacts: list[dict[str, Any]] | None = None,
    recipient_type: str = "",
    recipient_participant_id: str = "",
) -> dict[str, Any]:
    """One status update of an outbound message (optional parts left out when not given).

    ``recipient_id`` None: Meta does not show the phone number (a username user, section 10 of the webhook
    reference); ``recipient_user_id`` / ``recipient_parent_user_id``: the BSUIDs; ``contacts``: the status's own
    ``contacts[]`` (not on ``failed``). A group message: ``recipient_type`` ``"group"``, ``recipient_id`` the group's
    id and ``recipient_participant_id`` the phone number of the member the status is about.
    """
    out: dict[str, Any] = {"id": wamid, "status": status, "timestamp": str(timestamp)}
    if recipient_type:
        out["recipient_type"] = recipient_type
    if recipient_id is not None:
        out["recipient_id"] = recipient_id
    if recipient_participant_id:
        out["recipient_participant_id"] = recipient_participant_id
    if recipient_user_id:
        out["recipient_user_id"] = recipient_user_id
    if recipient_parent_user_id:
        out["recipient_parent_user_id"] = recipient_parent_user_id
    if contacts is not None:
        out["contacts"] = contacts
    if conversation is not None:
        out["conversation"] = conversation
    if pricing is not None:
        out["pricing"] = pricing
    if callback_data:
        out["biz_opaque_callback_data"] = callback_data
    if errors is not None:
        out["errors"] = errors
    return out


_status = status  # for the builders below, whose own ``status`` parameter hides it


def user_status(
    *,
    wamid: str,
    status: str,
    timestamp: int,
    phone: str | None,
    user_id: str,
    parent_user_id: str = "",
    username: str = "",
    conversation: dict[str, Any] | None = None,
    pricing: dict[str, Any] | None = None,
    callback_data: str = "",
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A status of a message to a user as Meta names them since 2026 (section 10 of the webhook reference).

    ``phone`` None: Meta does not show the number. A ``failed`` status has no ``contacts[]`` and names the number
    alone when it is shown (the message was sent to a number), else the BSUIDs alone; the others name the number when
    shown, the BSUIDs, and a ``contacts[]`` entry with them (``username`` on ``delivered`` / ``read`` only).
    """
    parts: dict[str, Any] = {"conversation": conversation, "pricing": pricing, "callback_data": callback_data,
                             "errors": errors}
    if status == "failed":
        if phone is not None:
            return _status(wamid=wamid, status=status, timestamp=timestamp, recipient_id=phone, **parts)
        return _status(wamid=wamid, status=status, timestamp=timestamp, recipient_id=None,
                       recipient_user_id=user_id, recipient_parent_user_id=parent_user_id, **parts)
    entry = contact(wa_id=phone or "", user_id=user_id, parent_user_id=parent_user_id,
                    username=username if status in ("delivered", "read") else "")
    return _status(wamid=wamid, status=status, timestamp=timestamp, recipient_id=phone, recipient_user_id=user_id,
                   recipient_parent_user_id=parent_user_id, contacts=[entry], **parts)


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
    """One entry of a failed status's ``errors`` (or of a change value's ``errors``: the same shape)."""
    return {"code": code, "title": title, "message": title, "error_data": {"details": details}, "href": ERROR_HREF}


def flow_reply(
    *, wamid: str, user: str | None, business_number: str, flow_wamid: str, timestamp: int, response: dict[str, Any],
    user_id: str = "",
) -> dict[str, Any]:
    """An inbound ``nfm_reply`` message: the user completed the Flow sent in ``flow_wamid``.

    ``user``: the phone number (``from``; None when Meta does not show it); ``user_id``: the BSUID (``from_user_id``).
    """
    out: dict[str, Any] = {"context": {"from": business_number, "id": flow_wamid}}
    if user is not None:
        out["from"] = user
    if user_id:
        out["from_user_id"] = user_id
    out |= {
        "id": wamid,
        "timestamp": str(timestamp),
        "type": "interactive",
        "interactive": {
            "type": "nfm_reply",
            "nfm_reply": {"name": "flow", "body": "Sent", "response_json": orjson.dumps(response).decode()},
        },
    }
    return out


def contact(
    *, wa_id: str = "", name: str = "", user_id: str = "", parent_user_id: str = "", username: str = ""
) -> dict[str, Any]:
    """A user as a ``contacts[]`` entry names them (a change's, or a status's): each part only when given."""
    out: dict[str, Any] = {}
    profile = {k: v for k, v in (("name", name), ("username", username)) if v}
    if profile:
        out["profile"] = profile
    for key, value in (("wa_id", wa_id), ("user_id", user_id), ("parent_user_id", parent_user_id)):
        if value:
            out[key] = value
    return out


def identity_change(
    *, wamid: str, timestamp: int, previous_phone: str | None, previous_user_id: str, phone: str | None,
    user_id: str, parent_user_id: str = "",
) -> dict[str, Any]:
    """A system message (sent without ``contacts[]``): the user changed phone number (``user_changed_number``: from
    the previous number, with the new number and the new BSUID), or, with no number shown, their BSUID
    (``user_changed_user_id``). A parent BSUID, when the user has one, is named on both sides."""
    kind = "user_changed_number" if phone is not None else "user_changed_user_id"
    system: dict[str, Any] = {"body": "User changed their number" if phone is not None else "User changed their id",
                              "type": kind}
    if phone is not None:
        system["wa_id"] = phone
    system["user_id"] = user_id
    system["previous_user_id"] = previous_user_id
    if parent_user_id:
        system["parent_user_id"] = parent_user_id
        system["previous_parent_user_id"] = parent_user_id
    out: dict[str, Any] = {}
    if previous_phone is not None:
        out["from"] = previous_phone
    out |= {"from_user_id": previous_user_id, "id": wamid, "timestamp": str(timestamp), "type": "system",
            "system": system}
    return out


def user_preference(
    *, value: str, timestamp: int, user_id: str, wa_id: str | None = None, parent_user_id: str = "",
    category: str = "marketing_messages",
) -> dict[str, Any]:
    """One ``user_preferences[]`` entry: the user stopped (``stop``) or resumed (``resume``) marketing messages."""
    out: dict[str, Any] = {}
    if wa_id is not None:
        out["wa_id"] = wa_id
    out["user_id"] = user_id
    if parent_user_id:
        out["parent_user_id"] = parent_user_id
    detail = "User requested to stop marketing messages" if value == "stop" else "User resumed marketing messages"
    out |= {"detail": detail, "category": category, "value": value, "timestamp": timestamp}
    return out


def preferences_change(
    *, phone_number_id: str, display_phone_number: str | None = None, contacts: list[dict[str, Any]],
    preferences: list[dict[str, Any]],
) -> dict[str, Any]:
    """One ``user_preferences`` change of a business phone number."""
    metadata: dict[str, Any] = {}
    if display_phone_number is not None:
        metadata["display_phone_number"] = display_phone_number
    metadata["phone_number_id"] = phone_number_id
    value = {"messaging_product": "whatsapp", "metadata": metadata, "contacts": contacts,
             "user_preferences": preferences}
    return {"value": value, "field": "user_preferences"}


def change(
    *,
    phone_number_id: str,
    display_phone_number: str | None = None,
    contacts: list[dict[str, Any]] | None = None,
    statuses: list[dict[str, Any]] | None = None,
    messages: list[dict[str, Any]] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One ``messages`` change of a business phone number, carrying what is given (``errors``: value-level errors,
    not tied to one message)."""
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
    if errors is not None:
        value["errors"] = errors
    return {"value": value, "field": "messages"}


def entry(*, waba_id: str, changes: list[dict[str, Any]], time: int | None = None) -> dict[str, Any]:
    """One WABA's entry of a POST (``time``: Unix seconds, as Meta adds to some)."""
    out: dict[str, Any] = {"id": waba_id}
    if time is not None:
        out["time"] = time
    out["changes"] = changes
    return out


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
