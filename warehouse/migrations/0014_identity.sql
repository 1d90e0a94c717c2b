-- Meta's 2026 identity change (business-scoped user ids), marketing preferences and value-level errors.
--
-- A person is keyed by the parent BSUID when present, else the BSUID, else the phone number (each a keyed hash).
-- person_links holds every pair of identifiers seen naming one person; the rollup worker resolves them into
-- person_map (warehouse/identity.py), which maps an identifier to its person across phone numbers and BSUIDs.
ALTER TABLE message_statuses
    ADD COLUMN IF NOT EXISTS recipient_user_id_hash String
        COMMENT 'Keyed hash of the user''s BSUID (`recipient_user_id`, else `contacts[].user_id`), empty when absent.'
        AFTER biz_opaque_callback_data,
    ADD COLUMN IF NOT EXISTS recipient_parent_user_id_hash String
        COMMENT 'Keyed hash of the user''s parent BSUID (`recipient_parent_user_id`), empty when absent.'
        AFTER recipient_user_id_hash,
    ADD COLUMN IF NOT EXISTS person_hash String
        COMMENT 'Person key: the parent BSUID''s hash, else the BSUID''s, else the phone number''s (a group''s id for a group status). Resolve it through `person_map`.'
        AFTER recipient_parent_user_id_hash,
    ADD COLUMN IF NOT EXISTS participant_hash String
        COMMENT 'Group statuses: keyed hash of `recipient_participant_id`, empty otherwise.'
        AFTER person_hash,
    ADD COLUMN IF NOT EXISTS country LowCardinality(String)
        COMMENT 'Recipient''s ISO 3166 country: the BSUID''s prefix, else the phone number''s calling code; empty when unknown.'
        AFTER participant_hash,
    ADD COLUMN IF NOT EXISTS error_message String
        COMMENT '`message` of the first `errors[]` entry of a `failed` status, empty otherwise.'
        AFTER country,
    ADD COLUMN IF NOT EXISTS error_href String
        COMMENT '`href` of the first `errors[]` entry (Meta''s page on the code), empty otherwise.'
        AFTER error_message;

ALTER TABLE flow_completions
    ADD COLUMN IF NOT EXISTS user_id_hash String
        COMMENT 'Keyed hash of the sender''s BSUID (`from_user_id`, else `contacts[].user_id`), empty when absent.'
        AFTER response_fields,
    ADD COLUMN IF NOT EXISTS parent_user_id_hash String
        COMMENT 'Keyed hash of the sender''s parent BSUID (`contacts[].parent_user_id`), empty when absent.'
        AFTER user_id_hash,
    ADD COLUMN IF NOT EXISTS person_hash String
        COMMENT 'Person key: the parent BSUID''s hash, else the BSUID''s, else the phone number''s. Resolve it through `person_map`.'
        AFTER parent_user_id_hash,
    ADD COLUMN IF NOT EXISTS country LowCardinality(String)
        COMMENT 'Sender''s ISO 3166 country: the BSUID''s prefix, else the phone number''s calling code; empty when unknown.'
        AFTER person_hash;

-- Meta's `user_preferences` webhooks: a user stopped or resumed marketing messages.
CREATE TABLE IF NOT EXISTS user_preferences
(
    event_id String COMMENT 'Deterministic id of the preference (a hash of account, person, category, value and time).',
    waba_id LowCardinality(String) COMMENT 'WhatsApp Business Account id (`entry[].id`).',
    phone_number_id LowCardinality(String) COMMENT 'Business phone number id the user told (`metadata.phone_number_id`).',
    category LowCardinality(String) COMMENT 'What the preference is about: `marketing_messages`.',
    value LowCardinality(String) COMMENT '`stop` or `resume`.',
    detail String COMMENT 'Meta''s description of the preference.',
    occurred_at DateTime('UTC') COMMENT 'When the user set the preference: Meta''s `timestamp`.',
    received_at DateTime64(3, 'UTC') COMMENT 'When our receiver accepted the webhook.',
    phone_hash String COMMENT 'Keyed hash of the user''s phone number (`wa_id`), empty when absent.',
    user_id_hash String COMMENT 'Keyed hash of the user''s BSUID (`user_id`), empty when absent.',
    parent_user_id_hash String COMMENT 'Keyed hash of the user''s parent BSUID (`parent_user_id`), empty when absent.',
    person_hash String COMMENT 'Person key: the parent BSUID''s hash, else the BSUID''s, else the phone number''s. Resolve it through `person_map`.',
    country LowCardinality(String) COMMENT 'User''s ISO 3166 country, empty when unknown.',
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3) COMMENT 'When the row was written to the warehouse.'
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (person_hash, category, occurred_at, event_id);

-- Identifiers of one person seen together outside a status: an inbound message's contact, or a change Meta
-- reported (system messages `user_changed_number` / `user_changed_user_id`, field `user_id_update`).
CREATE TABLE IF NOT EXISTS identity_links
(
    event_id String COMMENT 'Deterministic id of the link (a hash of account, kind and both identifiers).',
    waba_id LowCardinality(String) COMMENT 'WhatsApp Business Account id (`entry[].id`).',
    phone_number_id LowCardinality(String) COMMENT 'Business phone number id of the webhook, empty when absent.',
    kind LowCardinality(String) COMMENT '`contact`, `user_changed_number`, `user_changed_user_id` or `user_id_update`.',
    from_hash String COMMENT 'Keyed hash of the identifier the user had, or of the weaker one (a phone number beside a BSUID).',
    to_hash String COMMENT 'Keyed hash of the identifier the user has now: the person key.',
    occurred_at DateTime('UTC') COMMENT 'When the message or change happened: Meta''s timestamp.',
    received_at DateTime64(3, 'UTC') COMMENT 'When our receiver accepted the webhook.',
    country LowCardinality(String) COMMENT 'User''s ISO 3166 country, empty when unknown.',
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3) COMMENT 'When the row was written to the warehouse.'
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (from_hash, to_hash, event_id);

-- Meta's value-level `errors[]`: errors of the account or number, not of one message.
CREATE TABLE IF NOT EXISTS webhook_errors
(
    event_id String COMMENT 'Deterministic id of the error (a hash of account, number, field, time and the error).',
    waba_id LowCardinality(String) COMMENT 'WhatsApp Business Account id (`entry[].id`).',
    phone_number_id LowCardinality(String) COMMENT 'Business phone number id of the webhook, empty when absent.',
    field LowCardinality(String) COMMENT 'The webhook field that carried the error (`messages`, `user_preferences`).',
    code UInt32 COMMENT 'Meta''s error `code`.',
    title String COMMENT 'Error `title`.',
    message String COMMENT 'Error `message`.',
    details String COMMENT '`error_data.details`.',
    href String COMMENT 'Error `href` (Meta''s page on the code).',
    occurred_at DateTime('UTC') COMMENT 'The envelope''s `entry[].time`, else when our receiver accepted the webhook.',
    received_at DateTime64(3, 'UTC') COMMENT 'When our receiver accepted the webhook.',
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3) COMMENT 'When the row was written to the warehouse.'
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (phone_number_id, occurred_at, event_id);

-- Every pair of identifiers seen naming one person, with the latest time it was seen.
CREATE TABLE IF NOT EXISTS person_links
(
    identifier String COMMENT 'Keyed hash of a phone number or BSUID.',
    person String COMMENT 'Keyed hash of the person key it was seen with (or changed into).',
    seen_at DateTime('UTC') COMMENT 'Latest time of an event naming both; the latest row of a pair replaces earlier ones.',
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3) COMMENT 'When the row was written (the rollup reads the links written since its last pass).'
)
ENGINE = ReplacingMergeTree(seen_at)
PARTITION BY toYYYYMM(seen_at)
ORDER BY (identifier, person);

CREATE MATERIALIZED VIEW IF NOT EXISTS person_links_from_statuses_mv TO person_links AS
SELECT identifier, person_hash AS person, max(occurred_at) AS seen_at
FROM message_statuses
ARRAY JOIN [recipient_hash, recipient_user_id_hash] AS identifier
WHERE recipient_type != 'group' AND person_hash != '' AND identifier != '' AND identifier != person_hash
GROUP BY identifier, person;

CREATE MATERIALIZED VIEW IF NOT EXISTS person_links_from_completions_mv TO person_links AS
SELECT identifier, person_hash AS person, max(occurred_at) AS seen_at
FROM flow_completions
ARRAY JOIN [user_hash, user_id_hash] AS identifier
WHERE person_hash != '' AND identifier != '' AND identifier != person_hash
GROUP BY identifier, person;

CREATE MATERIALIZED VIEW IF NOT EXISTS person_links_from_preferences_mv TO person_links AS
SELECT identifier, person_hash AS person, max(occurred_at) AS seen_at
FROM user_preferences
ARRAY JOIN [phone_hash, user_id_hash] AS identifier
WHERE person_hash != '' AND identifier != '' AND identifier != person_hash
GROUP BY identifier, person;

CREATE MATERIALIZED VIEW IF NOT EXISTS person_links_from_identity_links_mv TO person_links AS
SELECT from_hash AS identifier, to_hash AS person, max(occurred_at) AS seen_at
FROM identity_links
WHERE from_hash != '' AND to_hash != '' AND from_hash != to_hash
GROUP BY identifier, person;

-- Each linked identifier's person: one representative of everything linked to it, directly or through other
-- identifiers (the smallest hash of the group). Identifiers never linked have no row: they are their own person.
CREATE TABLE IF NOT EXISTS person_map
(
    identifier String COMMENT 'Keyed hash of a phone number, BSUID or person key seen in a link.',
    person String COMMENT 'The person it belongs to: one identifier of its group, the same for all of them.',
    resolved_at DateTime64(3, 'UTC') COMMENT 'When the rollup resolved it; the latest row of an identifier replaces earlier ones.'
)
ENGINE = ReplacingMergeTree(resolved_at)
ORDER BY identifier;
