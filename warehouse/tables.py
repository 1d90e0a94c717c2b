"""Warehouse tables the stream writes, with their insert columns, built from canonical events.

Columns are produced column-oriented (one list per column), the cheapest shape for
clickhouse-connect's Native inserts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from contract.events import FlowCompletion, FlowHealth, FlowSent, MessageStatus, NodeEvent, RejectedEvent
from contract.flowjson import FlowDefinition

MESSAGE_STATUSES = "message_statuses"
MESSAGE_STATUS_MINUTE = "message_status_minute"
FLOW_COMPLETIONS = "flow_completions"
REJECTED_EVENTS = "rejected_events"
SCHEMA_MIGRATIONS = "schema_migrations"
FLOW_DEFINITIONS = "flow_definitions"
FLOW_SCREENS = "flow_screens"
FLOW_SENDS = "flow_sends"
FLOW_NODE_EVENTS = "flow_node_events"
FLOW_SESSIONS = "flow_sessions"
FLOW_SENDS_BY_TIME = "flow_sends_by_time"
FLOW_SELECTIONS = "flow_selections"
MESSAGE_STATE = "message_state"
FLOW_HEALTH_EVENTS = "flow_health_events"
FLOW_HEALTH_CURRENT = "flow_health_current"

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
FLOW_SEND_COLUMNS = (
    "event_id", "wamid", "flow_id", "flow_version", "flow_token", "campaign", "phone_number_id", "recipient_hash",
    "sent_at", "received_at",
)
NODE_EVENT_COLUMNS = (
    "event_id", "flow_token", "flow_id", "flow_version", "screen", "node_type", "action", "source", "occurred_at",
    "received_at", "field_keys", "fields", "error",
)
FLOW_HEALTH_COLUMNS = (
    "event_id", "waba_id", "flow_id", "event", "occurred_at", "received_at", "message", "old_status", "new_status",
    "alert_state", "error_rate", "threshold", "p50_latency_ms", "p90_latency_ms", "requests_count", "availability",
    "error_types", "error_rates", "error_counts", "raw",
)
FLOW_DEFINITION_COLUMNS = ("flow_id", "flow_version", "flow_json", "registered_at")
FLOW_SCREEN_COLUMNS = (
    "flow_id", "flow_version", "screen", "position", "title", "terminal", "success", "component_types",
    "next_screens", "selection_fields", "registered_at",
)


def _columns(events: Sequence[Any], names: Sequence[str], renames: dict[str, str]) -> list[list[Any]]:
    """Column-oriented insert data: one C-level transpose of the structs' fields (all of one type)."""
    if not events:
        return [[] for _ in names]
    fields = type(events[0]).__struct_fields__
    transposed = list(zip(*map(msgspec.structs.astuple, events), strict=True))
    return [list(transposed[fields.index(renames.get(name, name))]) for name in names]


def status_columns(events: Sequence[MessageStatus]) -> list[list[Any]]:
    return _columns(events, STATUS_COLUMNS, {"received_at": "received_at_ms"})


def completion_columns(events: Sequence[FlowCompletion]) -> list[list[Any]]:
    return _columns(events, COMPLETION_COLUMNS, {"received_at": "received_at_ms"})


def rejected_columns(events: Sequence[RejectedEvent]) -> list[list[Any]]:
    return _columns(events, REJECTED_COLUMNS, {"received_at": "received_at_ms"})


def flow_send_columns(events: Sequence[FlowSent]) -> list[list[Any]]:
    return _columns(events, FLOW_SEND_COLUMNS, {"sent_at": "occurred_at_ms", "received_at": "received_at_ms"})


def node_event_columns(events: Sequence[NodeEvent]) -> list[list[Any]]:
    return _columns(events, NODE_EVENT_COLUMNS, {"occurred_at": "occurred_at_ms", "received_at": "received_at_ms"})


def flow_health_columns(events: Sequence[FlowHealth]) -> list[list[Any]]:
    return _columns(events, FLOW_HEALTH_COLUMNS, {"received_at": "received_at_ms"})


def flow_definition_rows(definition: FlowDefinition, flow_json: str, registered_at_ms: int) -> tuple[
    list[list[Any]], list[list[Any]]
]:
    """(definition row, screen rows) for one registered flow version."""
    definition_rows = [[definition.flow_id, definition.version, flow_json, registered_at_ms]]
    screen_rows = [
        [definition.flow_id, definition.version, screen.id, screen.position, screen.title, int(screen.terminal),
         int(screen.success), list(screen.component_types), list(screen.next_screens),
         list(screen.selection_fields), registered_at_ms]
        for screen in definition.screens
    ]
    return definition_rows, screen_rows
