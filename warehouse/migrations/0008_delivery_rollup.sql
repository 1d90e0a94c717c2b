-- Delivery figures over long ranges without merging sets of messages (warehouse/rollup.py keeps these).
--
-- A message reaches each status once, at one timestamp (Meta retries repeat it), so the per-minute sets
-- of message_status_minute never share a message for one status: counts of sealed minutes add up exactly.
-- The rollup counts each minute once it is rollup_seal_after_s old ("sealed"), and counts a sealed minute
-- again when a late status lands in it. Readers sum sealed counts and merge sets only for later minutes.
CREATE TABLE IF NOT EXISTS message_status_counts
(
    phone_number_id LowCardinality(String) COMMENT 'Business phone number id that sent the messages.',
    minute DateTime('UTC') COMMENT 'Start of the minute of the statuses\' `occurred_at`.',
    status LowCardinality(String) COMMENT '`sent`, `delivered`, `read`, `failed` or `played`.',
    error_code UInt32 COMMENT 'Error code of `failed` statuses, 0 otherwise.',
    messages UInt64 COMMENT 'Distinct messages that reached the status in the minute; a message reaches a status once, so counts of different minutes add up.',
    sealed_at DateTime64(3, 'UTC') COMMENT 'When the rollup counted the minute; the latest count of a key replaces earlier ones.'
)
ENGINE = ReplacingMergeTree(sealed_at)
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, phone_number_id, status, error_code);

-- Which (phone number, minute) each insert of statuses touched, and when: a touch of a sealed minute
-- makes the rollup count it again. Kept a day; the rollup reads only the last passes' touches.
CREATE TABLE IF NOT EXISTS message_status_touches
(
    touched_at DateTime64(3, 'UTC') COMMENT 'When the insert ran (the warehouse\'s clock).',
    phone_number_id LowCardinality(String) COMMENT 'Business phone number id of the inserted statuses.',
    minute DateTime('UTC') COMMENT 'Start of the minute of the inserted statuses\' `occurred_at`.'
)
ENGINE = MergeTree
ORDER BY touched_at
TTL toDateTime(touched_at) + INTERVAL 1 DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS message_status_touches_mv TO message_status_touches AS
SELECT now64(3, 'UTC') AS touched_at, phone_number_id, toStartOfMinute(occurred_at) AS minute
FROM message_statuses
GROUP BY phone_number_id, minute;

-- Messages with a read status and no delivered status at all (read implies delivered): "delivered" in
-- a range counts the delivered statuses in it plus these, by the minute of their read. The rollup
-- refreshes the set; a message that gets its delivered status later is marked deleted.
CREATE TABLE IF NOT EXISTS messages_read_undelivered
(
    phone_number_id LowCardinality(String) COMMENT 'Business phone number id that sent the message.',
    wamid String COMMENT 'Meta\'s message id.',
    read_at DateTime('UTC') COMMENT 'Time of the read status.',
    version DateTime64(3, 'UTC') COMMENT 'When the rollup wrote the row; the latest row of a message wins.',
    is_deleted UInt8 COMMENT '1 once the message has a delivered status (the row then leaves `FINAL` reads).'
)
ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (phone_number_id, wamid);

-- How far each rollup task got: delivery counts are sealed for every minute before 'delivery_sealed'.
CREATE TABLE IF NOT EXISTS rollup_progress
(
    task LowCardinality(String) COMMENT 'Name of the rollup task.',
    until DateTime64(3, 'UTC') COMMENT 'How far the task got (its meaning depends on the task).',
    updated_at DateTime64(3, 'UTC') COMMENT 'When the rollup wrote the row; the latest row of a task wins.'
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY task;
