"""Warehouse tables: every table name, and the insert columns of the tables the stream writes.

Names and columns live here only: the write path (:mod:`warehouse.writer`), the typed queries and
the tools all take them from this module. The DDL is in ``migrations/``. Every table name ends in
``_TABLE``, so it never shares a name with a list of values (``contract.events.MESSAGE_STATUSES``)
or a metric (``stream.metrics.MESSAGE_STATUSES_TOTAL``).
"""

from __future__ import annotations

MESSAGE_STATUSES_TABLE = "message_statuses"
MESSAGE_STATUS_MINUTE_TABLE = "message_status_minute"
FLOW_COMPLETIONS_TABLE = "flow_completions"
REJECTED_EVENTS_TABLE = "rejected_events"
SCHEMA_MIGRATIONS_TABLE = "schema_migrations"
FLOW_DEFINITIONS_TABLE = "flow_definitions"
FLOW_SCREENS_TABLE = "flow_screens"
FLOW_SENDS_TABLE = "flow_sends"
FLOW_NODE_EVENTS_TABLE = "flow_node_events"
FLOW_SESSIONS_TABLE = "flow_sessions"
FLOW_SENDS_BY_TIME_TABLE = "flow_sends_by_time"
FLOW_SELECTIONS_TABLE = "flow_selections"
MESSAGE_STATE_TABLE = "message_state"
FLOW_HEALTH_EVENTS_TABLE = "flow_health_events"
FLOW_HEALTH_CURRENT_TABLE = "flow_health_current"
MESSAGE_STATUS_COUNTS_TABLE = "message_status_counts"
MESSAGE_STATUS_HOUR_COUNTS_TABLE = "message_status_hour_counts"
MESSAGE_STATUS_TOUCHES_TABLE = "message_status_touches"
MESSAGES_READ_UNDELIVERED_TABLE = "messages_read_undelivered"
ROLLUP_PROGRESS_TABLE = "rollup_progress"
MESSAGE_DELIVERED_INDEX_TABLE = "message_delivered_index"
MESSAGE_READ_TOUCHES_TABLE = "message_read_touches"
FLOW_MESSAGE_INDEX_TABLE = "flow_message_index"
FLOW_SESSION_TOUCHES_TABLE = "flow_session_touches"
FLOW_SESSION_ROWS_TABLE = "flow_session_rows"
FLOW_SESSION_KEYS_TABLE = "flow_session_keys"
FLOW_HOUR_PATHS_TABLE = "flow_hour_paths"
FLOW_HOUR_VISITS_TABLE = "flow_hour_visits"
FLOW_VARIANTS_TABLE = "flow_variants"
USER_PREFERENCES_TABLE = "user_preferences"
IDENTITY_LINKS_TABLE = "identity_links"
WEBHOOK_ERRORS_TABLE = "webhook_errors"
PERSON_LINKS_TABLE = "person_links"
PERSON_MAP_TABLE = "person_map"
OUTBOUND_MESSAGES_TABLE = "outbound_messages"
RATE_CARD_TABLE = "rate_card"
FLOW_SESSION_OPENS_TABLE = "flow_session_opens"
MESSAGE_TOUCHES_TABLE = "message_touches"
MESSAGE_ROWS_TABLE = "message_rows"
MESSAGE_HOUR_COUNTS_TABLE = "message_hour_counts"
PERSON_IDS_TABLE = "person_ids"
PERSON_HOUR_SETS_TABLE = "person_hour_sets"
PERSON_HOUR_INPUT_TABLE = "person_hour_input"
PERSON_KEY_HOURS_TABLE = "person_key_hours"

# "Never" in the time columns of migration 0004, which the flow queries compare against: the sessions'
# DateTime64 columns hold 2200-01-01; message_state's DateTime columns hold 2106-01-01, since a DateTime
# (seconds in a UInt32) ends on 2106-02-07. Applied migrations never change: these follow them, and
# tests/unit/warehouse/test_migrations.py fails if they disagree.
NEVER_DATETIME64 = "2200-01-01 00:00:00"
NEVER_DATETIME = "2106-01-01 00:00:00"

STATUS_COLUMNS = (
    "event_id", "waba_id", "phone_number_id", "wamid", "status", "occurred_at", "received_at",
    "recipient_hash", "recipient_type", "error_code", "error_title", "error_details", "pricing_category",
    "pricing_type", "pricing_model", "billable", "conversation_id", "conversation_origin",
    "biz_opaque_callback_data", "recipient_user_id_hash", "recipient_parent_user_id_hash", "person_hash",
    "participant_hash", "country", "error_message", "error_href",
)
COMPLETION_COLUMNS = (
    "event_id", "waba_id", "phone_number_id", "wamid", "flow_wamid", "flow_token", "flow_name", "occurred_at",
    "received_at", "user_hash", "response_keys", "response_fields", "user_id_hash", "parent_user_id_hash",
    "person_hash", "country",
)
USER_PREFERENCE_COLUMNS = (
    "event_id", "waba_id", "phone_number_id", "category", "value", "detail", "occurred_at", "received_at",
    "phone_hash", "user_id_hash", "parent_user_id_hash", "person_hash", "country",
)
IDENTITY_LINK_COLUMNS = (
    "event_id", "waba_id", "phone_number_id", "kind", "from_hash", "to_hash", "occurred_at", "received_at", "country",
)
WEBHOOK_ERROR_COLUMNS = (
    "event_id", "waba_id", "phone_number_id", "field", "code", "title", "message", "details", "href", "occurred_at",
    "received_at",
)
RATE_CARD_COLUMNS = ("market", "category", "pricing_type", "currency", "price", "effective_from", "source", "loaded_at")
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
FLOW_DEFINITION_COLUMNS = ("flow_id", "flow_version", "flow_json", "registered_at", "flow_name")
FLOW_SCREEN_COLUMNS = (
    "flow_id", "flow_version", "screen", "position", "title", "terminal", "success", "component_types",
    "next_screens", "selection_fields", "registered_at",
)
