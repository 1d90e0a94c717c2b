-- Which sessions were sent when: the funnel and node queries read flow_sessions only for the
-- flow_tokens sent in the chosen range (and flow), instead of merging every session ever sent.
-- ReplacingMergeTree: a replayed send adds nothing once merged; readers only ask "which tokens".
CREATE TABLE IF NOT EXISTS flow_sends_by_time
(
    flow_id LowCardinality(String),
    sent_at DateTime64(3, 'UTC'),
    flow_token String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(sent_at)
ORDER BY (flow_id, sent_at, flow_token);

CREATE MATERIALIZED VIEW IF NOT EXISTS flow_sends_by_time_mv TO flow_sends_by_time AS
SELECT flow_id, sent_at, flow_token FROM flow_sends;

INSERT INTO flow_sends_by_time SELECT flow_id, sent_at, flow_token FROM flow_sends;
