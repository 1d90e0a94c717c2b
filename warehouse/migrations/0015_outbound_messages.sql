-- One row per outbound message with what its statuses say of it beyond the status: who it went to (the person
-- key and country), what Meta priced it as, and which statuses it reached. Costs, distinct persons, countries and
-- opt-outs read these rows instead of the raw statuses. Every column is an aggregate of the message's statuses,
-- so duplicates, replays and any order of arrival give the same row.
CREATE TABLE IF NOT EXISTS outbound_messages
(
    wamid String COMMENT 'Id of our outbound message.',
    phone_number_id SimpleAggregateFunction(max, String) COMMENT 'Business phone number id that sent it.',
    first_at SimpleAggregateFunction(min, DateTime('UTC')) COMMENT 'Earliest status time: when it was sent, in practice (the day its price is taken from).',
    last_at SimpleAggregateFunction(max, DateTime('UTC')) COMMENT 'Latest status time (retention counts from it).',
    reached SimpleAggregateFunction(groupBitOr, UInt8) COMMENT 'Statuses it reached, as bits: 1 sent, 2 delivered, 4 read, 8 failed, 16 played.',
    recipient_type SimpleAggregateFunction(max, String) COMMENT '`individual`, or `group` for a message to a group.',
    person_hash SimpleAggregateFunction(max, String) COMMENT 'A person key its individual statuses named (empty for a group); any of them resolves to the same person through `person_map`.',
    country SimpleAggregateFunction(max, String) COMMENT 'Recipient''s ISO 3166 country from its statuses, empty when unknown.',
    pricing_category SimpleAggregateFunction(max, String) COMMENT 'Meta''s `pricing.category`, empty when no status carried pricing.',
    pricing_type SimpleAggregateFunction(max, String) COMMENT 'Meta''s `pricing.type` (`regular`, `free_customer_service`, `free_entry_point`).',
    billable SimpleAggregateFunction(max, Int8) COMMENT 'Meta''s `pricing.billable`: 1 true, 0 false, -1 no status said.',
    callback SimpleAggregateFunction(max, String) COMMENT 'The `biz_opaque_callback_data` the business sent it with (campaign and flow tags).'
)
ENGINE = AggregatingMergeTree
ORDER BY wamid;

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
    max(biz_opaque_callback_data) AS callback
FROM (SELECT *, if(recipient_type = 'group', '', person_hash) AS individual_person FROM message_statuses)
GROUP BY wamid;

INSERT INTO outbound_messages
SELECT
    wamid,
    max(phone_number_id),
    min(occurred_at),
    max(occurred_at),
    groupBitOr(toUInt8(multiIf(status = 'sent', 1, status = 'delivered', 2, status = 'read', 4, status = 'failed', 8,
                               status = 'played', 16, 0))),
    max(recipient_type),
    max(if(recipient_type = 'group', '', person_hash)),
    max(country),
    max(pricing_category),
    max(pricing_type),
    max(billable),
    max(biz_opaque_callback_data)
FROM message_statuses
GROUP BY wamid;

-- The user's rate card (config/ratecard.py): each load adds the whole card with its load time; the latest load is
-- the card in force.
CREATE TABLE IF NOT EXISTS rate_card
(
    market LowCardinality(String) COMMENT 'Recipient''s ISO 3166 country, or `*` for every country without its own rate.',
    category LowCardinality(String) COMMENT 'Meta''s pricing category the rate is for (`marketing`, `utility`, ...).',
    pricing_type LowCardinality(String) COMMENT 'Meta''s pricing type the rate is for (`regular`), or `*` for any.',
    currency LowCardinality(String) COMMENT 'ISO 4217 currency of the price.',
    price Decimal(18, 6) COMMENT 'Price of one delivered message.',
    effective_from Date COMMENT 'First day (UTC) the rate applies, until a later rate of the same market, category and type.',
    source String COMMENT 'The file the card was loaded from.',
    loaded_at DateTime64(3, 'UTC') COMMENT 'When the card was loaded; the latest load is the card in force.'
)
ENGINE = MergeTree
ORDER BY (loaded_at, market, category, pricing_type, effective_from);

-- When each session was first opened (its first screen event), so that stage times never rescan screen events.
CREATE TABLE IF NOT EXISTS flow_session_opens
(
    flow_token String COMMENT 'The session.',
    opened_at SimpleAggregateFunction(min, DateTime64(3, 'UTC')) COMMENT 'Time of its first screen event.'
)
ENGINE = AggregatingMergeTree
ORDER BY flow_token;

CREATE MATERIALIZED VIEW IF NOT EXISTS flow_session_opens_mv TO flow_session_opens AS
SELECT flow_token, min(occurred_at) AS opened_at
FROM flow_node_events
GROUP BY flow_token;

INSERT INTO flow_session_opens SELECT flow_token, min(occurred_at) FROM flow_node_events GROUP BY flow_token;
