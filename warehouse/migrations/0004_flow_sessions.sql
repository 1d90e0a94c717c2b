-- Flow definitions registered per flow version, and their screens in routing order.
CREATE TABLE IF NOT EXISTS flow_definitions
(
    flow_id String,
    flow_version String,
    flow_json String,
    registered_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(registered_at)
ORDER BY (flow_id, flow_version);

CREATE TABLE IF NOT EXISTS flow_screens
(
    flow_id String,
    flow_version String,
    screen String,
    position UInt16,
    title String,
    terminal UInt8,
    success UInt8,
    component_types Array(String),
    next_screens Array(String),
    selection_fields Array(String),
    registered_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(registered_at)
ORDER BY (flow_id, flow_version, screen);

-- First party: which wamid and flow_token a Flow message had, for which flow version and campaign.
CREATE TABLE IF NOT EXISTS flow_sends
(
    event_id String,
    wamid String,
    flow_id LowCardinality(String),
    flow_version LowCardinality(String),
    flow_token String,
    campaign LowCardinality(String),
    phone_number_id LowCardinality(String),
    recipient_hash String,
    sent_at DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (flow_id, flow_token, wamid);

-- First party: every screen event of every session (answers only for allow-listed fields).
CREATE TABLE IF NOT EXISTS flow_node_events
(
    event_id String,
    flow_token String,
    flow_id LowCardinality(String),
    flow_version LowCardinality(String),
    screen LowCardinality(String),
    node_type LowCardinality(String),
    action LowCardinality(String),
    source LowCardinality(String),
    occurred_at DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    field_keys Array(String),
    fields Map(String, String),
    error String,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (flow_id, flow_version, flow_token, occurred_at, event_id);

-- One row per session (flow_token) once merged. Every source adds what it knows; max/min/set
-- merges are commutative and idempotent, so arrival order and duplicates never change a session.
-- '2200-01-01' stands for "never".
CREATE TABLE IF NOT EXISTS flow_sessions
(
    flow_token String,
    flow_id SimpleAggregateFunction(max, String),
    flow_version SimpleAggregateFunction(max, String),
    campaign SimpleAggregateFunction(max, String),
    wamid SimpleAggregateFunction(max, String),
    phone_number_id SimpleAggregateFunction(max, String),
    sent_at SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    completed_at SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_activity_at SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    node_events AggregateFunction(groupUniqArray, Tuple(DateTime64(3, 'UTC'), String, String))
)
ENGINE = AggregatingMergeTree
ORDER BY flow_token;

CREATE MATERIALIZED VIEW IF NOT EXISTS flow_sessions_from_sends_mv TO flow_sessions AS
SELECT
    flow_token,
    max(flow_id) AS flow_id,
    max(flow_version) AS flow_version,
    max(campaign) AS campaign,
    max(wamid) AS wamid,
    max(phone_number_id) AS phone_number_id,
    min(send_time) AS sent_at,
    toDateTime64('2200-01-01 00:00:00', 3, 'UTC') AS completed_at,
    max(send_time) AS last_activity_at,
    groupUniqArrayStateIf((send_time, '', ''), 0) AS node_events
FROM (SELECT *, sent_at AS send_time FROM flow_sends)
GROUP BY flow_token;

CREATE MATERIALIZED VIEW IF NOT EXISTS flow_sessions_from_nodes_mv TO flow_sessions AS
SELECT
    flow_token,
    max(flow_id) AS flow_id,
    max(flow_version) AS flow_version,
    '' AS campaign,
    '' AS wamid,
    '' AS phone_number_id,
    toDateTime64('2200-01-01 00:00:00', 3, 'UTC') AS sent_at,
    toDateTime64('2200-01-01 00:00:00', 3, 'UTC') AS completed_at,
    max(event_time) AS last_activity_at,
    groupUniqArrayState((event_time, toString(screen), toString(action))) AS node_events
FROM (SELECT *, occurred_at AS event_time FROM flow_node_events)
GROUP BY flow_token;

CREATE MATERIALIZED VIEW IF NOT EXISTS flow_sessions_from_completions_mv TO flow_sessions AS
SELECT
    flow_token,
    '' AS flow_id,
    '' AS flow_version,
    '' AS campaign,
    max(flow_wamid) AS wamid,
    max(phone_number_id) AS phone_number_id,
    toDateTime64('2200-01-01 00:00:00', 3, 'UTC') AS sent_at,
    min(completion_time) AS completed_at,
    max(completion_time) AS last_activity_at,
    groupUniqArrayStateIf((completion_time, '', ''), 0) AS node_events
FROM (SELECT *, toDateTime64(occurred_at, 3, 'UTC') AS completion_time FROM flow_completions)
WHERE flow_token NOT IN ('', 'unused')
GROUP BY flow_token;

-- Per outbound message: when it was first sent, delivered, read, failed ('2106-01-01' = never).
CREATE TABLE IF NOT EXISTS message_state
(
    wamid String,
    sent_at SimpleAggregateFunction(min, DateTime('UTC')),
    delivered_at SimpleAggregateFunction(min, DateTime('UTC')),
    read_at SimpleAggregateFunction(min, DateTime('UTC')),
    failed_at SimpleAggregateFunction(min, DateTime('UTC')),
    error_code SimpleAggregateFunction(max, UInt32)
)
ENGINE = AggregatingMergeTree
ORDER BY wamid;

CREATE MATERIALIZED VIEW IF NOT EXISTS message_state_mv TO message_state AS
SELECT
    wamid,
    min(if(status = 'sent', occurred_at, toDateTime('2106-01-01 00:00:00', 'UTC'))) AS sent_at,
    min(if(status = 'delivered', occurred_at, toDateTime('2106-01-01 00:00:00', 'UTC'))) AS delivered_at,
    min(if(status = 'read', occurred_at, toDateTime('2106-01-01 00:00:00', 'UTC'))) AS read_at,
    min(if(status = 'failed', occurred_at, toDateTime('2106-01-01 00:00:00', 'UTC'))) AS failed_at,
    max(error_code) AS error_code
FROM message_statuses
GROUP BY wamid;

-- Sessions per submitted answer of allow-listed selection fields.
CREATE TABLE IF NOT EXISTS flow_selections
(
    flow_id LowCardinality(String),
    flow_version LowCardinality(String),
    screen LowCardinality(String),
    field LowCardinality(String),
    value String,
    sessions AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree
ORDER BY (flow_id, flow_version, screen, field, value);

CREATE MATERIALIZED VIEW IF NOT EXISTS flow_selections_mv TO flow_selections AS
SELECT flow_id, flow_version, screen, field, value, uniqExactState(flow_token) AS sessions
FROM flow_node_events
ARRAY JOIN mapKeys(fields) AS field, mapValues(fields) AS value
WHERE action = 'submit'
GROUP BY flow_id, flow_version, screen, field, value;
