-- Hours of delivery counts (warehouse/rollup.py keeps them): a 30-day range sums 720 hours instead of
-- 43,200 minutes. An hour's count is the sum of its sealed minutes' counts (counts of different minutes add
-- up exactly); the rollup writes it once every minute of the hour is sealed and again whenever a late status
-- makes it count one of those minutes again. Readers take whole hours before 'delivery_hours' from here
-- and everything else from message_status_counts and the live sets.
CREATE TABLE IF NOT EXISTS message_status_hour_counts
(
    phone_number_id LowCardinality(String) COMMENT 'Business phone number id that sent the messages.',
    hour DateTime('UTC') COMMENT 'Start of the hour of the statuses\' `occurred_at`.',
    status LowCardinality(String) COMMENT '`sent`, `delivered`, `read`, `failed` or `played`.',
    error_code UInt32 COMMENT 'Error code of `failed` statuses, 0 otherwise.',
    messages UInt64 COMMENT 'Distinct messages that reached the status in the hour: the sum of the hour\'s minute counts in `message_status_counts`.',
    sealed_at DateTime64(3, 'UTC') COMMENT 'When the rollup counted the hour; the latest count of a key replaces earlier ones.'
)
ENGINE = ReplacingMergeTree(sealed_at)
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, phone_number_id, status, error_code);
