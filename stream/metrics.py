"""The stream worker's Prometheus metrics, defined once."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter(
    "flowscope_stream_events_total",
    "Events consumed from the broker, by outcome (inserted, duplicate, dead_lettered, undecodable).",
    ["outcome"],
)
MESSAGE_STATUSES_TOTAL = Counter(
    "flowscope_stream_message_statuses_total",
    "Message status updates written to the warehouse, by status, business number and error code.",
    ["status", "phone_number_id", "error_code"],
)
INSERT_LATENCY = Histogram(
    "flowscope_stream_warehouse_insert_duration_seconds",
    "Time to write one batch to the warehouse (all its tables).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
INSERT_FAILURES = Counter(
    "flowscope_stream_warehouse_insert_failures_total",
    "Failed warehouse writes (each is retried until it succeeds).",
    ["table"],
)
BATCH_SIZE = Histogram(
    "flowscope_stream_batch_events",
    "Events per batch written to the warehouse.",
    buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 50000),
)
LAST_EVENT_AGE = Gauge(
    "flowscope_stream_last_event_received_timestamp_seconds",
    "Receive time (at the receiver) of the newest event written to the warehouse.",
)
COMMITTED_OFFSET = Gauge(
    "flowscope_stream_committed_offset",
    "Last committed offset per topic partition.",
    ["topic", "partition"],
)
CONSUMER_LAG = Gauge(
    "flowscope_stream_consumer_lag_messages",
    "Records not yet written to the warehouse per partition this worker owns (high watermark - committed).",
    ["topic", "partition"],
)
FLOW_HEALTH_EVENTS_TOTAL = Counter(
    "flowscope_stream_flow_health_events_total",
    "Meta flows webhooks (status changes, health alerts) written to the warehouse, by event.",
    ["event"],
)

# Gauges refreshed from the warehouse (stream/gauges.py). Every worker reports the same values:
# aggregate them across workers with max(), never sum().
FLOW_SESSIONS = Gauge(
    "flowscope_stream_flow_sessions",
    "Flow sessions in the warehouse by flow and state (ongoing, completed, abandoned, failed).",
    ["flow_id", "state"],
)
FLOW_STATUS = Gauge(
    "flowscope_stream_flow_status",
    "1 for the flow's current status as Meta last reported it (DRAFT, PUBLISHED, DEPRECATED, THROTTLED, "
    "BLOCKED), 0 for the others.",
    ["flow_id", "status"],
)
FLOW_ALERT_ACTIVE = Gauge(
    "flowscope_stream_flow_alert_active",
    "1 while Meta's health alert of a flow is ACTIVATED, 0 once DEACTIVATED.",
    ["flow_id", "alert"],
)
FLOW_CLIENT_ERROR_RATIO = Gauge(
    "flowscope_stream_flow_client_error_ratio",
    "Client error rate of the flow in Meta's latest CLIENT_ERROR_RATE webhook (0..1).",
    ["flow_id"],
)
FLOW_ENDPOINT_ERROR_RATIO = Gauge(
    "flowscope_stream_flow_endpoint_error_ratio",
    "Endpoint error rate of the flow in Meta's latest ENDPOINT_ERROR_RATE webhook (0..1).",
    ["flow_id"],
)
FLOW_ENDPOINT_LATENCY_P90 = Gauge(
    "flowscope_stream_flow_endpoint_latency_p90_seconds",
    "p90 endpoint latency of the flow in Meta's latest ENDPOINT_LATENCY webhook.",
    ["flow_id"],
)
FLOW_ENDPOINT_AVAILABILITY = Gauge(
    "flowscope_stream_flow_endpoint_availability_ratio",
    "Endpoint availability of the flow in Meta's latest ENDPOINT_AVAILABILITY webhook (0..1).",
    ["flow_id"],
)
GAUGES_REFRESHED = Gauge(
    "flowscope_stream_gauges_refreshed_timestamp_seconds",
    "When the warehouse-derived gauges were last refreshed successfully.",
)
OFFSET_HOLES = Counter(
    "flowscope_stream_offset_holes_total",
    "Holes in a partition's offsets met while reading: re-read (the record appeared later) or skipped.",
    ["outcome"],
)
for _outcome in ("reread", "skipped"):
    OFFSET_HOLES.labels(_outcome)
