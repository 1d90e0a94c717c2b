"""Warehouse tables the stream writes, with their insert columns, built from canonical events.

Columns are produced column-oriented (one list per column), the cheapest shape for
clickhouse-connect's Native inserts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flowscope.contract import FlowCompletion, MessageStatus, RejectedEvent

MESSAGE_STATUSES = "message_statuses"
MESSAGE_STATUS_MINUTE = "message_status_minute"
FLOW_COMPLETIONS = "flow_completions"
REJECTED_EVENTS = "rejected_events"
SCHEMA_MIGRATIONS = "schema_migrations"

STATUS_COLUMNS = (
    "event_id", "waba_id", "phone_number_id", "wamid", "status", "occurred_at", "received_at",
    "recipient_hash", "recipient_type", "error_code", "error_title", "error_details", "pricing_category",
    "pricing_type", "pricing_model", "billable", "conversation_id", "conversation_origin",
    "biz_opaque_callback_data",
)
COMPLETION_COLUMNS = (
    "event_id", "waba_id", "phone_number_id", "wamid", "flow_wamid", "flow_token", "flow_name", "occurred_at",
    "received_at", "user_hash", "response_keys", "response_fields",
)
REJECTED_COLUMNS = ("event_id", "source", "reason", "raw", "waba_id", "phone_number_id", "received_at")


def _columns(events: Sequence[Any], names: Sequence[str], renames: dict[str, str]) -> list[list[Any]]:
    return [[getattr(e, renames.get(name, name)) for e in events] for name in names]


def status_columns(events: Sequence[MessageStatus]) -> list[list[Any]]:
    return _columns(events, STATUS_COLUMNS, {"received_at": "received_at_ms"})


def completion_columns(events: Sequence[FlowCompletion]) -> list[list[Any]]:
    return _columns(events, COMPLETION_COLUMNS, {"received_at": "received_at_ms"})


def rejected_columns(events: Sequence[RejectedEvent]) -> list[list[Any]]:
    return _columns(events, REJECTED_COLUMNS, {"received_at": "received_at_ms"})
