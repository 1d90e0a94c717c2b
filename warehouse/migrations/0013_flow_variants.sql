-- Every (flow, version, campaign) ever sent, one row each: the dashboards' flow and version pickers read
-- this instead of every send.
CREATE TABLE IF NOT EXISTS flow_variants
(
    flow_id LowCardinality(String) COMMENT 'Meta''s Flow id.',
    flow_version LowCardinality(String) COMMENT 'Version label of the Flow JSON sent.',
    campaign LowCardinality(String) COMMENT 'Campaign of the sends (empty when none).',
    last_sent_at DateTime64(3, 'UTC') COMMENT 'Latest send of the variant seen; the latest row of a key wins.'
)
ENGINE = ReplacingMergeTree(last_sent_at)
ORDER BY (flow_id, flow_version, campaign);

CREATE MATERIALIZED VIEW IF NOT EXISTS flow_variants_mv TO flow_variants AS
SELECT flow_id, flow_version, campaign, max(sent_at) AS last_sent_at
FROM flow_sends
WHERE flow_id != ''
GROUP BY flow_id, flow_version, campaign;
