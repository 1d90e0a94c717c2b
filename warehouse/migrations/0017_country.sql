-- The recipient's country on the tables the pages read, so that every figure can be filtered by it exactly.
--
-- Delivery: a status's country is the one it carries (`message_statuses.country`); the per-minute sets, the sealed
-- minute and hour counts are kept per country, so counts of different countries add up to the unfiltered ones.
-- Flows: a session's country is its Flow message's recipient's, `outbound_messages.country` (the largest country
-- its statuses carried: duplicates and arrival order never change it), resolved with the session.
-- `warehouse migrate` then backfills these tables from the raw rows already stored, through `warehouse.rebuild`
-- (the derived tables whose columns changed are rebuilt, the sealed counts resealed, the sessions resolved again).

ALTER TABLE message_status_minute
    ADD COLUMN IF NOT EXISTS country LowCardinality(String)
        COMMENT 'Recipient''s ISO 3166 country the statuses carried, empty when unknown.'
        AFTER error_code,
    MODIFY ORDER BY (phone_number_id, minute, status, error_code, country);

DROP VIEW IF EXISTS message_status_minute_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS message_status_minute_mv TO message_status_minute AS
SELECT
    phone_number_id,
    toStartOfMinute(occurred_at) AS minute,
    status,
    error_code,
    country,
    uniqExactState(wamid) AS messages
FROM message_statuses
GROUP BY phone_number_id, minute, status, error_code, country;

ALTER TABLE message_status_counts
    ADD COLUMN IF NOT EXISTS country LowCardinality(String)
        COMMENT 'Recipient''s ISO 3166 country the statuses carried, empty when unknown: counts of different countries add up.'
        AFTER error_code,
    MODIFY ORDER BY (minute, phone_number_id, status, error_code, country);

ALTER TABLE message_status_hour_counts
    ADD COLUMN IF NOT EXISTS country LowCardinality(String)
        COMMENT 'Recipient''s ISO 3166 country the statuses carried, empty when unknown: counts of different countries add up.'
        AFTER error_code,
    MODIFY ORDER BY (hour, phone_number_id, status, error_code, country);

ALTER TABLE messages_read_undelivered
    ADD COLUMN IF NOT EXISTS country LowCardinality(String)
        COMMENT 'Recipient''s ISO 3166 country its read status carried (the largest, if several), empty when unknown.'
        AFTER read_at;

ALTER TABLE message_read_touches
    ADD COLUMN IF NOT EXISTS country LowCardinality(String)
        COMMENT 'Recipient''s ISO 3166 country the read status carried, empty when unknown (or read before it existed).'
        AFTER read_at;

DROP VIEW IF EXISTS message_read_touches_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS message_read_touches_mv TO message_read_touches AS
SELECT now64(3, 'UTC') AS touched_at, phone_number_id, wamid, occurred_at AS read_at, country
FROM message_statuses
WHERE status = 'read';

ALTER TABLE flow_session_rows
    ADD COLUMN IF NOT EXISTS country LowCardinality(String)
        COMMENT 'Recipient''s ISO 3166 country of the Flow message (`outbound_messages.country`), empty when unknown.'
        AFTER campaign;

ALTER TABLE flow_hour_paths
    ADD COLUMN IF NOT EXISTS country LowCardinality(String)
        COMMENT 'Recipient''s ISO 3166 country of the sessions'' Flow messages, empty when unknown.'
        AFTER path,
    MODIFY ORDER BY (flow_id, hour, flow_version, campaign, path, country);

ALTER TABLE flow_hour_visits
    ADD COLUMN IF NOT EXISTS country LowCardinality(String)
        COMMENT 'Recipient''s ISO 3166 country of the sessions'' Flow messages, empty when unknown.'
        AFTER screen,
    MODIFY ORDER BY (flow_id, hour, flow_version, campaign, screen, country);
