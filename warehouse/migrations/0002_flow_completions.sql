-- Flow responses (nfm_reply): one row per reply message. Answers only for allow-listed fields.
CREATE TABLE IF NOT EXISTS flow_completions
(
    event_id String,
    waba_id LowCardinality(String),
    phone_number_id LowCardinality(String),
    wamid String,
    flow_wamid String,
    flow_token String,
    flow_name LowCardinality(String),
    occurred_at DateTime('UTC'),
    received_at DateTime64(3, 'UTC'),
    user_hash String,
    response_keys Array(String),
    response_fields Map(String, String),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (phone_number_id, flow_wamid, wamid);
