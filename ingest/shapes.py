"""The common Meta webhook, typed: a ``messages`` change carrying statuses only (see ``WebhookParser.parse``).

``msgspec`` decodes a body into these shapes in C, much faster than walking it in Python; a body
of any other shape (inbound messages, errors, other fields, a value of an unexpected type) fails the conversion and
takes the parser's general walk. Only the fields the parser reads are declared; the others are ignored.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Pricing(msgspec.Struct):
    billable: bool | None = None
    category: str | None = None
    type: str | None = None
    pricing_model: str | None = None


class Origin(msgspec.Struct):
    type: str | None = None


class Conversation(msgspec.Struct):
    id: str | None = None
    origin: Origin | None = None


class Contact(msgspec.Struct):
    wa_id: str | None = None
    user_id: str | None = None
    parent_user_id: str | None = None


class Status(msgspec.Struct):
    id: str
    status: str
    timestamp: str | int
    recipient_id: str | None = None
    recipient_user_id: str | None = None
    recipient_parent_user_id: str | None = None
    recipient_participant_id: str | None = None
    recipient_type: str | None = None
    contacts: list[Contact] | None = None
    pricing: Pricing | None = None
    conversation: Conversation | None = None
    biz_opaque_callback_data: str | None = None
    errors: list[Any] | None = None


class Metadata(msgspec.Struct):
    phone_number_id: str | None = None


class StatusesValue(msgspec.Struct):
    metadata: Metadata | None = None
    statuses: list[Status] | None = None
    messages: list[Any] | None = None
    errors: list[Any] | None = None


class StatusesChange(msgspec.Struct):
    value: StatusesValue
    field: str | None = None


class StatusesEntry(msgspec.Struct):
    changes: list[StatusesChange]
    id: str | None = None


class StatusesWebhook(msgspec.Struct):
    entry: list[StatusesEntry]
    object: str | None = None


# Decodes a raw body straight into the shape: one pass in C, no intermediate dicts.
decode_statuses_webhook = msgspec.json.Decoder(StatusesWebhook).decode
