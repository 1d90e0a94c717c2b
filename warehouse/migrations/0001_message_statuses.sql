-- Every status update of every outbound message, one row per (wamid, status).
-- ReplacingMergeTree drops duplicate deliveries at merge time; read with FINAL for exact raw counts.
CREATE TABLE IF NOT EXISTS message_statuses
(
    event_id String,
    waba_id LowCardinality(String),
    phone_number_id LowCardinality(String),
    wamid String,
    status LowCardinality(String),
    occurred_at DateTime('UTC'),
    received_at DateTime64(3, 'UTC'),
    recipient_hash String,
    recipient_type LowCardinality(String),
    error_code UInt32,
    error_title String,
    error_details String,
    pricing_category LowCardinality(String),
    pricing_type LowCardinality(String),
    pricing_model LowCardinality(String),
    billable Int8,
    conversation_id String,
    conversation_origin LowCardinality(String),
    biz_opaque_callback_data String,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (phone_number_id, wamid, status);

-- Distinct messages per status and minute. uniqExact states make the counts exact and
-- idempotent: a duplicate status inserted again adds nothing.
CREATE TABLE IF NOT EXISTS message_status_minute
(
    phone_number_id LowCardinality(String),
    minute DateTime('UTC'),
    status LowCardinality(String),
    error_code UInt32,
    messages AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (phone_number_id, minute, status, error_code);

CREATE MATERIALIZED VIEW IF NOT EXISTS message_status_minute_mv TO message_status_minute AS
SELECT
    phone_number_id,
    toStartOfMinute(occurred_at) AS minute,
    status,
    error_code,
    uniqExactState(wamid) AS messages
FROM message_statuses
GROUP BY phone_number_id, minute, status, error_code;
