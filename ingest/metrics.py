"""The receiver's Prometheus metrics, defined once."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

WEBHOOKS = Counter(
    "flowscope_ingest_webhooks_total",
    "Webhook requests received, by outcome.",
    ["outcome"],
)
EVENTS = Counter(
    "flowscope_ingest_events_total",
    "Canonical events written to the broker, by kind.",
    ["kind"],
)
IGNORED = Counter(
    "flowscope_ingest_ignored_total",
    "Webhook parts deliberately not analysed (other fields, other message types), by kind.",
    ["kind"],
)
REQUEST_LATENCY = Histogram(
    "flowscope_ingest_request_duration_seconds",
    "Time from request start to response, for webhook POSTs.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
BROKER_WRITE_LATENCY = Histogram(
    "flowscope_ingest_broker_write_duration_seconds",
    "Time until the broker acknowledged every event of one request.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
