-- Well-formed input we could not use, with the reason and the (pseudonymised) raw payload.
CREATE TABLE IF NOT EXISTS rejected_events
(
    event_id String,
    source LowCardinality(String),
    reason String,
    raw String,
    waba_id LowCardinality(String),
    phone_number_id LowCardinality(String),
    received_at DateTime64(3, 'UTC'),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (source, reason, event_id);
