-- The rollup's set of messages read without a delivered status, kept up to date per pass in time proportional
-- to the new reads (not to the history): each new read is looked up by key in an index of delivered messages.

-- Every message with a delivered status, by wamid: a key-value table, so that looking up a few thousand
-- wamids costs a few thousand key reads whatever the history holds.
CREATE TABLE IF NOT EXISTS message_delivered_index
(
    wamid String COMMENT 'Meta''s message id of a message with a delivered status.',
    phone_number_id String COMMENT 'Business phone number id that sent the message.'
)
ENGINE = EmbeddedRocksDB
PRIMARY KEY wamid;

CREATE MATERIALIZED VIEW IF NOT EXISTS message_delivered_index_mv TO message_delivered_index AS
SELECT wamid, phone_number_id FROM message_statuses WHERE status = 'delivered';

INSERT INTO message_delivered_index SELECT wamid, phone_number_id FROM message_statuses WHERE status = 'delivered';

-- Every read status as it is inserted, and when: the rollup checks the reads since its previous pass.
CREATE TABLE IF NOT EXISTS message_read_touches
(
    touched_at DateTime64(3, 'UTC') COMMENT 'When the insert ran (the warehouse''s clock).',
    phone_number_id LowCardinality(String) COMMENT 'Business phone number id that sent the message.',
    wamid String COMMENT 'Meta''s message id.',
    read_at DateTime('UTC') COMMENT 'Time of the read status.'
)
ENGINE = MergeTree
ORDER BY touched_at
TTL toDateTime(touched_at) + INTERVAL 1 DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS message_read_touches_mv TO message_read_touches AS
SELECT now64(3, 'UTC') AS touched_at, phone_number_id, wamid, occurred_at AS read_at
FROM message_statuses
WHERE status = 'read';
