-- The people messaged, as exact sets per hour kept by the rollup (warehouse/message_persons.py), so that distinct
-- people over long ranges union a few compressed sets an hour instead of resolving and hashing every message's
-- recipient. Every person gets a dense number (person_ids); an hour's set holds the numbers of the people its
-- messages went to, per business number and country. Messages the rollup has not resolved since their last touch,
-- and hours with a recipient whose person changed since, are resolved live by the queries instead.
-- `warehouse migrate` backfills message_rows' new column and the sets through warehouse.rebuild.

ALTER TABLE message_rows
    ADD COLUMN IF NOT EXISTS person_hash String
        COMMENT 'Person key of its recipient (the parent BSUID''s hash, else the BSUID''s, else the phone number''s), empty when no individual status named one. Resolve it through `person_map`.'
        AFTER country;

-- A dense number for every person met in message_rows (the value person_map resolves a person key to).
CREATE TABLE IF NOT EXISTS person_ids
(
    person String COMMENT 'A person: what `person_map` resolves a person key to (the key itself when it has no row there).',
    id UInt32 COMMENT 'Its number: dense from 1, given by the rollup when it first meets the person, never changed or reused.'
)
ENGINE = ReplacingMergeTree
ORDER BY person;

-- The people each hour's messages went to: every number and country (level 0), per country (1), per business number
-- (2), per both (3). The latest computation of a key wins; a key the hour no longer has gets a deleted row.
CREATE TABLE IF NOT EXISTS person_hour_sets
(
    hour DateTime('UTC') COMMENT 'Start of the hour of the messages'' first status.',
    level UInt8 COMMENT 'What the row is split by: 0 nothing, 1 country, 2 business number, 3 both.',
    phone_number_id LowCardinality(String) COMMENT 'Business phone number id that sent them (empty at levels 0 and 1).',
    country LowCardinality(String) COMMENT 'Recipient''s ISO 3166 country, empty when unknown (and at levels 0 and 2).',
    persons AggregateFunction(groupBitmap, UInt32) COMMENT 'The `person_ids` of the people those messages went to (their person keys resolved through `person_map` when computed).',
    last_at DateTime('UTC') COMMENT 'Latest status time of those messages (retention counts from it).',
    computed_at DateTime64(3, 'UTC') COMMENT 'When the rollup computed the set; the latest row of a key wins.',
    is_deleted UInt8 COMMENT '1 when the hour no longer has messages with these fields; FINAL leaves it out.'
)
ENGINE = ReplacingMergeTree(computed_at, is_deleted)
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, level, phone_number_id, country);

-- What the rollup inserts (it writes data, never queries): each set as an array of numbers, turned into the set by a
-- view. Nothing is stored here.
CREATE TABLE IF NOT EXISTS person_hour_input
(
    hour DateTime('UTC') COMMENT 'As in person_hour_sets.',
    level UInt8 COMMENT 'As in person_hour_sets.',
    phone_number_id String COMMENT 'As in person_hour_sets.',
    country String COMMENT 'As in person_hour_sets.',
    ids Array(UInt32) COMMENT 'The `person_ids` of the set.',
    last_at DateTime('UTC') COMMENT 'As in person_hour_sets.',
    computed_at DateTime64(3, 'UTC') COMMENT 'As in person_hour_sets.',
    is_deleted UInt8 COMMENT 'As in person_hour_sets.'
)
ENGINE = Null;

CREATE MATERIALIZED VIEW IF NOT EXISTS person_hour_sets_mv TO person_hour_sets AS
SELECT hour, level, phone_number_id, country, arrayReduce('groupBitmapState', ids) AS persons, last_at, computed_at,
       is_deleted
FROM person_hour_input;

-- The hours each person key has messages in, so that the hours of a key whose person changed are found without a
-- scan. Fed by message_rows' inserts. Keyed by a hash of the key (half the bytes of the key itself): a pair left by a
-- message that moved away, or two keys with one hash, only cost a needless recomputation.
CREATE TABLE IF NOT EXISTS person_key_hours
(
    key_hash UInt64 COMMENT '`cityHash64` of the person key of a message''s recipient (`message_rows.person_hash`).',
    hour DateTime('UTC') COMMENT 'An hour message_rows has (or had) a message to it in.',
    last_at DateTime('UTC') COMMENT 'Latest status time of such a message (retention counts from it).'
)
ENGINE = ReplacingMergeTree(last_at)
ORDER BY (key_hash, hour);

CREATE MATERIALIZED VIEW IF NOT EXISTS person_key_hours_mv TO person_key_hours AS
SELECT cityHash64(person_hash) AS key_hash, hour, last_at FROM message_rows WHERE person_hash != '' AND is_deleted = 0;
