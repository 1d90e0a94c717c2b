-- Meta's `flows` webhooks: every status change and health alert of a Flow, one row per event.
-- ReplacingMergeTree drops a redelivered webhook at merge time (same event_id); read with FINAL.
CREATE TABLE IF NOT EXISTS flow_health_events
(
    event_id String,
    waba_id LowCardinality(String),
    flow_id LowCardinality(String),
    event LowCardinality(String),
    occurred_at DateTime('UTC'),
    received_at DateTime64(3, 'UTC'),
    message String,
    old_status LowCardinality(String),
    new_status LowCardinality(String),
    alert_state LowCardinality(String),
    error_rate Float64,
    threshold Float64,
    p50_latency_ms Float64,
    p90_latency_ms Float64,
    requests_count Int64,
    availability Float64,
    error_types Array(LowCardinality(String)),
    error_rates Array(Float64),
    error_counts Array(Int64),
    raw String,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (flow_id, event, occurred_at, event_id);

-- The latest event of each kind per flow: argMax states are idempotent and order-independent, so a
-- duplicate or a late, older webhook never replaces a newer state. Ties on occurred_at (Meta's
-- entry.time has one-second resolution) go to the later receive time.
CREATE TABLE IF NOT EXISTS flow_health_current
(
    flow_id LowCardinality(String),
    event LowCardinality(String),
    latest AggregateFunction(argMax,
        Tuple(DateTime('UTC'), String, String, String, Float64, Float64, Float64, Float64, Int64, Float64, String),
        Tuple(DateTime('UTC'), DateTime64(3, 'UTC'), String)),
    events AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree
ORDER BY (flow_id, event);

CREATE MATERIALIZED VIEW IF NOT EXISTS flow_health_current_mv TO flow_health_current AS
SELECT
    flow_id,
    event,
    argMaxState(
        (occurred_at, new_status, alert_state, message, error_rate, threshold, p50_latency_ms, p90_latency_ms,
         requests_count, availability, waba_id),
        (occurred_at, received_at, event_id)) AS latest,
    uniqExactState(event_id) AS events
FROM flow_health_events
GROUP BY flow_id, event;
