-- Resolved messages and their hour sums, kept by the rollup (warehouse/message_hours.py), so that spend and
-- per-message delivery figures over long ranges add up a few rows an hour instead of merging every message's
-- statuses. A message touched since the rollup's last pass is merged live by the queries instead (warehouse/costs.py).
-- `warehouse migrate` backfills both tables from the statuses already stored, through warehouse.rebuild.

-- When a message was last touched by an insert: a status of it (outbound_messages.touched_at, kept by the view that
-- already merges its statuses, so statuses cost no extra view), or the first-party send that tags it
-- (message_touches).
CREATE TABLE IF NOT EXISTS message_touches
(
    touched_at DateTime64(3, 'UTC') COMMENT 'When the insert of the send ran (the warehouse''s clock).',
    wamid String COMMENT 'The message its first-party send tags.'
)
ENGINE = MergeTree
ORDER BY touched_at
TTL toDateTime(touched_at) + INTERVAL 7 DAY;

ALTER TABLE outbound_messages
    ADD COLUMN IF NOT EXISTS touched_at SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
        COMMENT 'When an insert last brought a status of it (the warehouse''s clock).',
    ADD INDEX IF NOT EXISTS touched_at_minmax touched_at TYPE minmax GRANULARITY 1;

DROP VIEW IF EXISTS outbound_messages_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS outbound_messages_mv TO outbound_messages AS
SELECT
    wamid,
    max(phone_number_id) AS phone_number_id,
    min(occurred_at) AS first_at,
    max(occurred_at) AS last_at,
    groupBitOr(toUInt8(multiIf(status = 'sent', 1, status = 'delivered', 2, status = 'read', 4, status = 'failed', 8,
                               status = 'played', 16, 0))) AS reached,
    max(recipient_type) AS recipient_type,
    max(individual_person) AS person_hash,
    max(country) AS country,
    max(pricing_category) AS pricing_category,
    max(pricing_type) AS pricing_type,
    max(billable) AS billable,
    max(biz_opaque_callback_data) AS callback,
    now64(3, 'UTC') AS touched_at
FROM (SELECT *, if(recipient_type = 'group', '', person_hash) AS individual_person FROM message_statuses)
GROUP BY wamid;

CREATE MATERIALIZED VIEW IF NOT EXISTS message_touches_from_sends_mv TO message_touches AS
SELECT DISTINCT now64(3, 'UTC') AS touched_at, wamid FROM flow_sends WHERE wamid != '';

-- Resolved messages, one row each at the hour of its first status (the latest resolution wins; a message whose
-- first status moved earlier leaves a deleted row at its old hour).
CREATE TABLE IF NOT EXISTS message_rows
(
    hour DateTime('UTC') COMMENT 'Start of the hour of its first status (`first_at`).',
    wamid String COMMENT 'Id of our outbound message.',
    first_at DateTime('UTC') COMMENT 'Earliest status time: when it was sent, in practice (the day its price is taken from).',
    last_at DateTime('UTC') COMMENT 'Latest status time (retention counts from it).',
    phone_number_id LowCardinality(String) COMMENT 'Business phone number id that sent it.',
    country LowCardinality(String) COMMENT 'Recipient''s ISO 3166 country from its statuses, empty when unknown.',
    pricing_category LowCardinality(String) COMMENT 'Meta''s `pricing.category`, empty when no status carried pricing.',
    pricing_type LowCardinality(String) COMMENT 'Meta''s `pricing.type` (`regular`, `free_customer_service`, `free_entry_point`).',
    billable Int8 COMMENT 'Meta''s `pricing.billable`: 1 true, 0 false, -1 no status said.',
    campaign LowCardinality(String) COMMENT 'Campaign: the first-party send''s, else the `campaign=` tag of its callback data (empty when none).',
    flow_id LowCardinality(String) COMMENT 'Flow id: the first-party send''s, else the `flow_id=` tag of its callback data (empty when none).',
    reached UInt8 COMMENT 'Statuses it reached, as bits: 1 sent, 2 delivered, 4 read, 8 failed, 16 played.',
    resolved_at DateTime64(3, 'UTC') COMMENT 'When the rollup resolved the message; the latest row of a key wins.',
    is_deleted UInt8 COMMENT '1 on a row left at an hour the message is no longer in (its first status moved); FINAL leaves it out.'
)
ENGINE = ReplacingMergeTree(resolved_at, is_deleted)
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, wamid);

-- Resolved messages summed per hour of their first status and everything a price or a filter depends on.
CREATE TABLE IF NOT EXISTS message_hour_counts
(
    hour DateTime('UTC') COMMENT 'Start of the hour of the messages'' first status.',
    phone_number_id LowCardinality(String) COMMENT 'Business phone number id that sent them.',
    country LowCardinality(String) COMMENT 'Recipient''s ISO 3166 country, empty when unknown.',
    pricing_category LowCardinality(String) COMMENT 'Meta''s `pricing.category`, empty when no status carried pricing.',
    pricing_type LowCardinality(String) COMMENT 'Meta''s `pricing.type`, empty when no status carried pricing.',
    billable Int8 COMMENT 'Meta''s `pricing.billable`: 1 true, 0 false, -1 no status said.',
    campaign LowCardinality(String) COMMENT 'Campaign of the messages (empty when none).',
    flow_id LowCardinality(String) COMMENT 'Flow id of the messages (empty when none).',
    messages UInt64 COMMENT 'Messages first seen in the hour with these fields.',
    delivered UInt64 COMMENT 'Of them, messages with a delivered or a read status (the ones charged, unless free).',
    read UInt64 COMMENT 'Of them, messages with a read status.',
    failed UInt64 COMMENT 'Of them, messages with a failed status.',
    last_at DateTime('UTC') COMMENT 'Latest status time of those messages (retention counts from it).',
    computed_at DateTime64(3, 'UTC') COMMENT 'When the rollup summed the hour; the latest row of a key wins.',
    is_deleted UInt8 COMMENT '1 when the hour no longer has messages with these fields; FINAL leaves it out.'
)
ENGINE = ReplacingMergeTree(computed_at, is_deleted)
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, phone_number_id, country, pricing_category, pricing_type, billable, campaign, flow_id);
