"""The canonical event contract: the one shape every stage (ingest, stream, warehouse) shares.

Events are msgspec structs encoded as JSON on Kafka, tagged by ``kind``. Every event carries a
deterministic ``event_id`` derived from its source identity (for a status: wamid + status), so any
stage can drop a duplicate, however many times Meta or the broker delivers it.

How events travel on Kafka is :mod:`contract.codec`.

Versioning: ``SCHEMA_VERSION`` rises when a field is added (new fields always get defaults, so older
events still decode); a field is never renamed or given a new meaning.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import msgspec

SCHEMA_VERSION = 3  # 2: BSUIDs, person key, country; preferences, identity changes, value-level errors; 3: flow names

MessageStatusValue = Literal["sent", "delivered", "read", "failed", "played"]
MESSAGE_STATUSES: tuple[str, ...] = ("sent", "delivered", "read", "failed", "played")

SOURCE_WHATSAPP = "whatsapp_webhook"
SOURCE_FIRST_PARTY = "first_party"

NODE_ACTIONS: tuple[str, ...] = ("view", "submit", "back", "error")
NODE_TYPES: tuple[str, ...] = ("buttons", "list", "form", "media", "logic", "other")
# Where a node event comes from (NodeEvent.source): the Flow's runtime events, or data-endpoint requests.
SOURCE_NODE = "node"  # a screen event the Flow's own client reported
SOURCE_ENDPOINT = "endpoint"  # a decrypted data-endpoint request
NODE_SOURCES: tuple[str, ...] = (SOURCE_NODE, SOURCE_ENDPOINT)
# Data-endpoint actions (decrypted requests) and what they mean for a session.
ENDPOINT_ACTIONS = {"INIT": "view", "data_exchange": "submit", "BACK": "back"}


def event_id(*parts: str) -> str:
    """Deterministic id of an event from the parts that identify it at its source."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16)
    return digest.hexdigest()


class MessageStatus(msgspec.Struct, tag="message_status", kw_only=True, frozen=True):
    """One status update of one outbound message (``value.statuses[]``)."""

    event_id: str
    schema_version: int = SCHEMA_VERSION
    waba_id: str
    phone_number_id: str
    wamid: str
    status: str
    occurred_at: int  # Unix seconds, Meta's timestamp
    received_at_ms: int  # when the receiver accepted the webhook
    recipient_hash: str  # keyed hash of recipient_id; never the number itself
    recipient_type: str = "individual"
    error_code: int = 0
    error_title: str = ""
    error_details: str = ""
    pricing_category: str = ""
    pricing_type: str = ""
    pricing_model: str = ""
    billable: int = -1  # -1 unknown, 0 false, 1 true
    conversation_id: str = ""
    conversation_origin: str = ""
    biz_opaque_callback_data: str = ""
    # Since schema 2 (Meta's BSUIDs, see ingest.identity). recipient_hash is the phone number's hash, empty when
    # Meta left the number out; the person key is the parent BSUID, else the BSUID, else the phone number.
    recipient_user_id_hash: str = ""  # keyed hash of recipient_user_id (or contacts[].user_id)
    recipient_parent_user_id_hash: str = ""  # keyed hash of recipient_parent_user_id (or contacts[].parent_user_id)
    person_hash: str = ""
    participant_hash: str = ""  # group statuses: keyed hash of recipient_participant_id
    country: str = ""  # ISO 3166 alpha-2 of the recipient, from the BSUID prefix or the phone's calling code
    error_message: str = ""
    error_href: str = ""

    @property
    def key(self) -> bytes:
        # All events of one message land in one partition, in order.
        return self.wamid.encode()


class FlowCompletion(msgspec.Struct, tag="flow_completion", kw_only=True, frozen=True):
    """A Flow response (``interactive.type = nfm_reply``): the user completed the Flow."""

    event_id: str
    schema_version: int = SCHEMA_VERSION
    waba_id: str
    phone_number_id: str
    wamid: str  # id of the reply message
    flow_wamid: str  # context.id: the Flow message we sent
    flow_token: str
    occurred_at: int
    received_at_ms: int
    user_hash: str
    flow_name: str = ""
    response_keys: list[str] = msgspec.field(default_factory=list)
    response_fields: dict[str, str] = msgspec.field(default_factory=dict)  # allow-listed answers only
    # Since schema 2: user_hash is the phone number's (``from``), empty when Meta left it out.
    user_id_hash: str = ""  # keyed hash of from_user_id (or contacts[].user_id)
    parent_user_id_hash: str = ""
    person_hash: str = ""
    country: str = ""

    @property
    def key(self) -> bytes:
        # Keyed by the Flow message, so it shares a partition with that message's statuses.
        return (self.flow_wamid or self.wamid).encode()


class RejectedEvent(msgspec.Struct, tag="rejected", kw_only=True, frozen=True):
    """A well-formed webhook part that cannot be used: goes to the dead-letter topic, never dropped."""

    event_id: str
    schema_version: int = SCHEMA_VERSION
    source: str
    reason: str
    raw: str  # the offending fragment as JSON, phone numbers already pseudonymised
    received_at_ms: int
    waba_id: str = ""
    phone_number_id: str = ""

    @property
    def key(self) -> bytes:
        return self.event_id.encode()


class FlowSent(msgspec.Struct, tag="flow_sent", kw_only=True, frozen=True):
    """First party: the business sent a Flow message. Ties a wamid and a flow_token to a flow version."""

    event_id: str
    schema_version: int = SCHEMA_VERSION
    wamid: str
    flow_id: str
    flow_version: str
    flow_token: str
    campaign: str = ""
    phone_number_id: str = ""
    recipient_hash: str = ""
    occurred_at_ms: int
    received_at_ms: int

    @property
    def key(self) -> bytes:
        # Same partition as the message's statuses and completion.
        return self.wamid.encode()


class NodeEvent(msgspec.Struct, tag="node", kw_only=True, frozen=True):
    """First party: something happened on one screen (node) of a Flow session."""

    event_id: str
    schema_version: int = SCHEMA_VERSION
    flow_token: str
    flow_id: str
    flow_version: str
    screen: str  # empty for an endpoint INIT: the stream resolves the entry screen
    node_type: str = "other"
    action: str  # view, submit, back, error
    occurred_at_ms: int
    received_at_ms: int
    source: str = "node"  # node (runtime events) or endpoint (data-endpoint requests)
    field_keys: list[str] = msgspec.field(default_factory=list)
    fields: dict[str, str] = msgspec.field(default_factory=dict)  # allow-listed answers only
    error: str = ""

    @property
    def key(self) -> bytes:
        return self.flow_token.encode()


class FlowDefinitionRegistered(msgspec.Struct, tag="flow_definition", kw_only=True, frozen=True):
    """A Flow JSON registered for a flow version (through the receiver's HTTP endpoint)."""

    event_id: str
    schema_version: int = SCHEMA_VERSION
    flow_id: str
    flow_version: str
    flow_json: str
    received_at_ms: int
    flow_name: str = ""  # since schema 3: the display name the business registered the flow under

    @property
    def key(self) -> bytes:
        return self.flow_id.encode()


# Meta's ``flows`` webhook events (``value.event``) we know, and what each one reports.
FLOW_HEALTH_EVENTS: tuple[str, ...] = (
    "FLOW_STATUS_CHANGE", "CLIENT_ERROR_RATE", "ENDPOINT_ERROR_RATE", "ENDPOINT_LATENCY", "ENDPOINT_AVAILABILITY",
    "FLOW_VERSION_EXPIRY_WARNING",
)
FLOW_STATUSES: tuple[str, ...] = ("DRAFT", "PUBLISHED", "DEPRECATED", "THROTTLED", "BLOCKED")
# Alerting events → the alert name flowscope exposes for them.
FLOW_ALERTS = {
    "CLIENT_ERROR_RATE": "client_error_rate",
    "ENDPOINT_ERROR_RATE": "endpoint_error_rate",
    "ENDPOINT_LATENCY": "endpoint_latency",
    "ENDPOINT_AVAILABILITY": "endpoint_availability",
}


class FlowHealth(msgspec.Struct, tag="flow_health", kw_only=True, frozen=True):
    """Meta's ``flows`` webhook: a Flow's status changed, or one of its health alerts (de)activated.

    Rates and availability are percentages as Meta sends them; latencies are milliseconds. A field
    the event does not carry is -1 (numbers) or empty (strings).
    """

    event_id: str
    schema_version: int = SCHEMA_VERSION
    waba_id: str
    flow_id: str
    event: str  # FLOW_STATUS_CHANGE, CLIENT_ERROR_RATE, ... (upper case, as Meta sends it)
    occurred_at: int  # entry.time (Unix seconds), else the receive time
    received_at_ms: int
    message: str = ""
    old_status: str = ""
    new_status: str = ""
    alert_state: str = ""  # ACTIVATED / DEACTIVATED
    error_rate: float = -1.0
    threshold: float = -1.0
    p50_latency_ms: float = -1.0
    p90_latency_ms: float = -1.0
    requests_count: int = -1
    availability: float = -1.0
    error_types: list[str] = msgspec.field(default_factory=list)  # normalised: lower case, underscores
    error_rates: list[float] = msgspec.field(default_factory=list)
    error_counts: list[int] = msgspec.field(default_factory=list)
    raw: str = ""  # the webhook's value object as JSON

    @property
    def key(self) -> bytes:
        return self.flow_id.encode()


class UserPreference(msgspec.Struct, tag="user_preference", kw_only=True, frozen=True):
    """A user stopped or resumed marketing messages from the business (``field: "user_preferences"``)."""

    event_id: str
    schema_version: int = SCHEMA_VERSION
    waba_id: str
    phone_number_id: str
    category: str  # marketing_messages
    value: str  # stop, resume
    detail: str = ""
    occurred_at: int
    received_at_ms: int
    phone_hash: str = ""
    user_id_hash: str = ""
    parent_user_id_hash: str = ""
    person_hash: str
    country: str = ""

    @property
    def key(self) -> bytes:
        return self.person_hash.encode()


# Why two identifiers name one person (IdentityLink.kind): both in one inbound message's contact, or a change Meta
# reported (a BSUID replaced; a phone number replaced, which also replaces the BSUID).
IDENTITY_LINK_KINDS: tuple[str, ...] = ("contact", "user_id_update", "user_changed_user_id", "user_changed_number")


class IdentityLink(msgspec.Struct, tag="identity_link", kw_only=True, frozen=True):
    """Two identifiers (keyed hashes) of one person, seen together outside a status (which links its own)."""

    event_id: str
    schema_version: int = SCHEMA_VERSION
    waba_id: str
    phone_number_id: str = ""
    kind: str  # one of IDENTITY_LINK_KINDS
    from_hash: str  # the identifier the user had, or the weaker one (a phone number beside its BSUID)
    to_hash: str  # the identifier the user has now, or the person key
    occurred_at: int
    received_at_ms: int
    country: str = ""

    @property
    def key(self) -> bytes:
        return self.from_hash.encode()


class WebhookError(msgspec.Struct, tag="webhook_error", kw_only=True, frozen=True):
    """An error Meta reported for the account or number, not for one message (``value.errors[]``)."""

    event_id: str
    schema_version: int = SCHEMA_VERSION
    waba_id: str
    phone_number_id: str = ""
    field: str  # the change's field (messages, ...)
    code: int = 0
    title: str = ""
    message: str = ""
    details: str = ""
    href: str = ""
    occurred_at: int  # entry.time when Meta sends it, else the receive time
    received_at_ms: int

    @property
    def key(self) -> bytes:
        return (self.phone_number_id or self.waba_id).encode()


CanonicalEvent = (
    MessageStatus | FlowCompletion | FlowSent | NodeEvent | FlowDefinitionRegistered | FlowHealth | UserPreference
    | IdentityLink | WebhookError
)
AnyEvent = (
    MessageStatus | FlowCompletion | FlowSent | NodeEvent | FlowDefinitionRegistered | FlowHealth | UserPreference
    | IdentityLink | WebhookError | RejectedEvent
)
