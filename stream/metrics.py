"""The stream worker's Prometheus metrics, defined once."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter(
    "flowscope_stream_events_total",
    "Events consumed from the broker, by outcome (inserted, duplicate, dead_lettered, undecodable).",
    ["outcome"],
)
MESSAGE_STATUSES = Counter(
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
