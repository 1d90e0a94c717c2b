-- Hours of resolved Flow sessions (warehouse/flow_hours.py keeps them): a 30-day flow query sums a few rows
-- per hour instead of reading every session of the range. The rollup sums, per (flow, hour of the send), the
-- resolved rows of flow_session_rows whenever it resolves a session of that hour. Readers take the sums of
-- whole hours that nothing touched since the rollup's last pass and whose sessions not completed and not
-- failed are all past the abandonment timeout (so "open" means "abandoned"); every other session they read
-- from flow_session_rows (or merge live), as before.
CREATE TABLE IF NOT EXISTS flow_hour_paths
(
    flow_id LowCardinality(String) COMMENT 'Meta''s Flow id.',
    hour DateTime('UTC') COMMENT 'Start of the hour of the sessions'' send (`sent_at`).',
    flow_version LowCardinality(String) COMMENT 'Version label of the Flow JSON sent.',
    campaign LowCardinality(String) COMMENT 'Campaign of the send (empty when none).',
    path String COMMENT 'The sessions'' visits, screen ids joined by `>` (empty for sessions without a screen event).',
    sessions UInt64 COMMENT 'Sessions sent in the hour with this path.',
    delivered UInt64 COMMENT 'Of them, sessions whose Flow message has a delivered or a read status.',
    read UInt64 COMMENT 'Of them, sessions whose Flow message has a read status.',
    opened UInt64 COMMENT 'Of them, sessions with a screen event or a completion.',
    completed UInt64 COMMENT 'Of them, sessions with a completion.',
    failed UInt64 COMMENT 'Of them, sessions whose Flow message has a failed status.',
    open UInt64 COMMENT 'Of them, sessions neither completed nor failed: abandoned once `open_last_activity` is older than the timeout.',
    open_last_activity DateTime64(3, 'UTC') COMMENT 'Latest `last_activity` of the open sessions (1970 when none).',
    last_activity DateTime64(3, 'UTC') COMMENT 'Latest `last_activity` of the sessions (retention counts from it).',
    computed_at DateTime64(3, 'UTC') COMMENT 'When the rollup summed the hour; the latest row of a key wins.',
    is_deleted UInt8 COMMENT '1 on a row whose key no session has any more (FINAL leaves it out).'
)
ENGINE = ReplacingMergeTree(computed_at, is_deleted)
PARTITION BY toYYYYMM(hour)
ORDER BY (flow_id, hour, flow_version, campaign, path);

CREATE TABLE IF NOT EXISTS flow_hour_visits
(
    flow_id LowCardinality(String) COMMENT 'Meta''s Flow id.',
    hour DateTime('UTC') COMMENT 'Start of the hour of the sessions'' send (`sent_at`).',
    flow_version LowCardinality(String) COMMENT 'Version label of the Flow JSON sent.',
    campaign LowCardinality(String) COMMENT 'Campaign of the send (empty when none).',
    screen LowCardinality(String) COMMENT 'Screen id of the visits.',
    visit_ms Array(Int64) COMMENT 'The distinct lengths in milliseconds of the visits of known length to the screen by those sessions, ascending (see `flow_session_rows.visit_ms`).',
    visit_counts Array(UInt64) COMMENT 'Visits of each length in `visit_ms` (same positions).',
    last_activity DateTime64(3, 'UTC') COMMENT 'Latest `last_activity` of the sessions (retention counts from it).',
    computed_at DateTime64(3, 'UTC') COMMENT 'When the rollup summed the hour; the latest row of a key wins.',
    is_deleted UInt8 COMMENT '1 on a row whose key no visit has any more (FINAL leaves it out).'
)
ENGINE = ReplacingMergeTree(computed_at, is_deleted)
PARTITION BY toYYYYMM(hour)
ORDER BY (flow_id, hour, flow_version, campaign, screen);
