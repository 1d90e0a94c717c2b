-- One resolved row per Flow session, kept by the rollup (warehouse/resolution.py), so that flow queries
-- aggregate rows instead of merging every session's screen events and joining its message's statuses.
-- A session touched since the rollup's last pass is merged live by the queries instead (warehouse/flows.py).

-- Which session each Flow message belongs to, by wamid: statuses find their session by key.
CREATE TABLE IF NOT EXISTS flow_message_index
(
    wamid String COMMENT 'Meta''s message id of a Flow message.',
    flow_token String COMMENT 'The session (flow_token) the Flow message opened.'
)
ENGINE = EmbeddedRocksDB
PRIMARY KEY wamid;

CREATE MATERIALIZED VIEW IF NOT EXISTS flow_message_index_mv TO flow_message_index AS
SELECT wamid, flow_token FROM flow_sends WHERE wamid != '';

INSERT INTO flow_message_index SELECT wamid, flow_token FROM flow_sends WHERE wamid != '';

-- Every session touched by an insert (a send, a screen event, a completion, a status of its message), and when.
CREATE TABLE IF NOT EXISTS flow_session_touches
(
    touched_at DateTime64(3, 'UTC') COMMENT 'When the insert ran (the warehouse''s clock).',
    flow_token String COMMENT 'The session touched.'
)
ENGINE = MergeTree
ORDER BY touched_at
TTL toDateTime(touched_at) + INTERVAL 7 DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS flow_session_touches_from_sends_mv TO flow_session_touches AS
SELECT DISTINCT now64(3, 'UTC') AS touched_at, flow_token FROM flow_sends;

CREATE MATERIALIZED VIEW IF NOT EXISTS flow_session_touches_from_nodes_mv TO flow_session_touches AS
SELECT DISTINCT now64(3, 'UTC') AS touched_at, flow_token FROM flow_node_events;

CREATE MATERIALIZED VIEW IF NOT EXISTS flow_session_touches_from_completions_mv TO flow_session_touches AS
SELECT DISTINCT now64(3, 'UTC') AS touched_at, flow_token FROM flow_completions
WHERE flow_token NOT IN ('', 'unused');

CREATE MATERIALIZED VIEW IF NOT EXISTS flow_session_touches_from_statuses_mv TO flow_session_touches AS
SELECT DISTINCT now64(3, 'UTC') AS touched_at, f.flow_token AS flow_token
FROM message_statuses AS s
INNER JOIN flow_message_index AS f ON s.wamid = f.wamid;

-- Resolved sessions, one row each (the latest resolution wins; a moved row leaves a deleted one behind).
CREATE TABLE IF NOT EXISTS flow_session_rows
(
    flow_token String COMMENT 'The session: the flow_token of its Flow message.',
    flow_id LowCardinality(String) COMMENT 'Meta''s Flow id.',
    flow_version LowCardinality(String) COMMENT 'Version label of the Flow JSON sent.',
    campaign LowCardinality(String) COMMENT 'Campaign of the send (empty when none).',
    wamid String COMMENT 'Meta''s message id of the Flow message.',
    sent_at DateTime64(3, 'UTC') COMMENT 'When the Flow message was sent (its flow_sent).',
    completed_at DateTime64(3, 'UTC') COMMENT 'First completion (nfm_reply), 2200-01-01 when none.',
    last_activity DateTime64(3, 'UTC') COMMENT 'Latest of the send, the screen events, the completion, the delivered and read statuses: abandonment counts from it.',
    has_events UInt8 COMMENT '1 when the session has at least one screen event.',
    delivered UInt8 COMMENT '1 when the Flow message has a delivered or a read status.',
    read UInt8 COMMENT '1 when the Flow message has a read status.',
    failed UInt8 COMMENT '1 when the Flow message has a failed status.',
    reached Array(LowCardinality(String)) COMMENT 'Screens the session had an event on, each once.',
    last_screen LowCardinality(String) COMMENT 'Screen of its last screen event (empty when none): where an abandoned session dropped.',
    visit_screens Array(LowCardinality(String)) COMMENT 'Its visits in order: runs of consecutive screen events on one screen (BACK makes a new visit).',
    visit_ms Array(Int64) COMMENT 'Milliseconds of each visit: until the next visit starts, or until the completion after the last visit; -1 when unknown (the last visit of a session not completed).',
    resolved_at DateTime64(3, 'UTC') COMMENT 'When the rollup resolved the session; the latest row of a key wins.',
    is_deleted UInt8 COMMENT '1 on a row left where the session no longer is (its send moved); FINAL leaves it out.'
)
ENGINE = ReplacingMergeTree(resolved_at, is_deleted)
PARTITION BY toYYYYMM(sent_at)
ORDER BY (flow_id, sent_at, flow_token);

-- Where each session's row is: the key of its current row, so that a session whose send moves leaves no row behind.
CREATE TABLE IF NOT EXISTS flow_session_keys
(
    flow_token String COMMENT 'The session.',
    flow_id String COMMENT 'Flow id of its current row in flow_session_rows.',
    sent_at DateTime64(3, 'UTC') COMMENT 'Send time of its current row in flow_session_rows.'
)
ENGINE = EmbeddedRocksDB
PRIMARY KEY flow_token;
