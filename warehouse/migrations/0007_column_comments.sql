-- Every column carries its meaning as a ClickHouse COMMENT, word for word the meaning in docs/warehouse.md
-- (tests/integration/test_warehouse_dictionary.py keeps the two equal). Materialized views hold no data:
-- the document describes them.

ALTER TABLE message_statuses
    COMMENT COLUMN event_id 'Deterministic id of the status (a hash of wamid and status): a redelivery has the same id.',
    COMMENT COLUMN waba_id 'WhatsApp Business Account id (`entry[].id`).',
    COMMENT COLUMN phone_number_id 'Business phone number id that sent the message (`metadata.phone_number_id`).',
    COMMENT COLUMN wamid 'Id of our outbound message (`statuses[].id`).',
    COMMENT COLUMN status '`sent`, `delivered`, `read`, `failed` or `played`.',
    COMMENT COLUMN occurred_at 'When the status happened: Meta''s `timestamp`, in seconds.',
    COMMENT COLUMN received_at 'When our receiver accepted the webhook.',
    COMMENT COLUMN recipient_hash 'Keyed hash of the user''s phone number (`recipient_id`), never the number.',
    COMMENT COLUMN recipient_type '`individual` or `group`.',
    COMMENT COLUMN error_code 'Code of the first `errors[]` entry of a `failed` status, 0 otherwise.',
    COMMENT COLUMN error_title 'Title of the first `errors[]` entry, empty otherwise.',
    COMMENT COLUMN error_details '`error_data.details` of the first `errors[]` entry, empty otherwise.',
    COMMENT COLUMN pricing_category '`pricing.category` (for example `marketing`, `utility`), empty when absent.',
    COMMENT COLUMN pricing_type '`pricing.type`, empty when absent.',
    COMMENT COLUMN pricing_model '`pricing.pricing_model`, empty when absent.',
    COMMENT COLUMN billable '`pricing.billable`: 1, 0, or -1 when absent.',
    COMMENT COLUMN conversation_id '`conversation.id`, empty when absent (API v24 dropped it).',
    COMMENT COLUMN conversation_origin '`conversation.origin.type`, empty when absent.',
    COMMENT COLUMN biz_opaque_callback_data 'Tracking data we attached to the send, echoed by Meta.',
    COMMENT COLUMN inserted_at 'When the row was written to the warehouse.';

ALTER TABLE message_status_minute
    COMMENT COLUMN phone_number_id 'Business phone number id that sent the messages.',
    COMMENT COLUMN minute 'Start of the minute of the statuses'' `occurred_at`.',
    COMMENT COLUMN status '`sent`, `delivered`, `read`, `failed` or `played`.',
    COMMENT COLUMN error_code 'Error code of `failed` statuses, 0 otherwise.',
    COMMENT COLUMN messages 'Set of the messages'' wamids: `uniqExactMerge(messages)` counts distinct messages.';

ALTER TABLE flow_completions
    COMMENT COLUMN event_id 'Deterministic id of the response (a hash of the reply''s wamid).',
    COMMENT COLUMN waba_id 'WhatsApp Business Account id (`entry[].id`).',
    COMMENT COLUMN phone_number_id 'Business phone number id that received the response.',
    COMMENT COLUMN wamid 'Id of the user''s reply message.',
    COMMENT COLUMN flow_wamid 'Id of the Flow message we sent, which the reply answers (`context.id`).',
    COMMENT COLUMN flow_token 'Session id: the `flow_token` of the response, empty when it carries none.',
    COMMENT COLUMN flow_name '`nfm_reply.name` as Meta sends it.',
    COMMENT COLUMN occurred_at 'When the user sent the response: Meta''s `timestamp`, in seconds.',
    COMMENT COLUMN received_at 'When our receiver accepted the webhook.',
    COMMENT COLUMN user_hash 'Keyed hash of the user''s phone number (`from`), never the number.',
    COMMENT COLUMN response_keys 'Names of every field of the response (`response_json`) except `flow_token`, sorted.',
    COMMENT COLUMN response_fields 'Answers of the allow-listed fields only, as text.',
    COMMENT COLUMN inserted_at 'When the row was written to the warehouse.';

ALTER TABLE rejected_events
    COMMENT COLUMN event_id 'Deterministic id of the rejection (a hash of where, why and what).',
    COMMENT COLUMN source 'Where it came from: `whatsapp_webhook`, `first_party` or `stream`.',
    COMMENT COLUMN reason 'Why it was rejected, in words.',
    COMMENT COLUMN raw 'The rejected fragment as JSON: phone numbers pseudonymised, only allow-listed answers.',
    COMMENT COLUMN waba_id 'WhatsApp Business Account id when known, empty otherwise.',
    COMMENT COLUMN phone_number_id 'Business phone number id when known, empty otherwise.',
    COMMENT COLUMN received_at 'When our receiver accepted it (for the stream''s rejections: when the stream read it).',
    COMMENT COLUMN inserted_at 'When the row was written to the warehouse.';

ALTER TABLE flow_definitions
    COMMENT COLUMN flow_id 'Meta''s Flow id.',
    COMMENT COLUMN flow_version 'Version label under which the Flow JSON was registered.',
    COMMENT COLUMN flow_json 'The Flow JSON as registered.',
    COMMENT COLUMN registered_at 'When the receiver accepted the registration.';

ALTER TABLE flow_screens
    COMMENT COLUMN flow_id 'Meta''s Flow id.',
    COMMENT COLUMN flow_version 'Version label under which the Flow JSON was registered.',
    COMMENT COLUMN screen 'Screen id in the Flow JSON.',
    COMMENT COLUMN position 'Order in which a user meets the screen: 0 is the entry, breadth-first, unreachable screens last.',
    COMMENT COLUMN title 'The screen''s `title`.',
    COMMENT COLUMN terminal '1 when the screen is `terminal` (it can complete the Flow), else 0.',
    COMMENT COLUMN success '1 when the screen is marked `success`, else 0.',
    COMMENT COLUMN component_types 'Types of the components on the screen, distinct and sorted.',
    COMMENT COLUMN next_screens 'Screens a user can go to next (`routing_model`, else the `navigate` actions).',
    COMMENT COLUMN selection_fields 'Names of the screen''s selection fields (radio buttons, checkboxes, dropdowns, chips, navigation lists).',
    COMMENT COLUMN registered_at 'When the receiver accepted the registration.';

ALTER TABLE flow_sends
    COMMENT COLUMN event_id 'Deterministic id of the send (a hash of the wamid).',
    COMMENT COLUMN wamid 'Id of the Flow message, as the Cloud API returned it on send.',
    COMMENT COLUMN flow_id 'Meta''s Flow id.',
    COMMENT COLUMN flow_version 'Version label of the Flow JSON sent (as registered).',
    COMMENT COLUMN flow_token 'Session id: the `flow_token` the message carried, one per send.',
    COMMENT COLUMN campaign 'Campaign label the sender gave, empty when none.',
    COMMENT COLUMN phone_number_id 'Business phone number id that sent it, empty when not given.',
    COMMENT COLUMN recipient_hash 'Keyed hash of the recipient''s phone number, empty when not given.',
    COMMENT COLUMN sent_at 'When the message was sent: the event''s timestamp, else when it was received.',
    COMMENT COLUMN received_at 'When our receiver accepted the event.',
    COMMENT COLUMN inserted_at 'When the row was written to the warehouse.';

ALTER TABLE flow_node_events
    COMMENT COLUMN event_id 'Deterministic id of the screen event (a hash of flow_token, screen, action and time).',
    COMMENT COLUMN flow_token 'Session id: the `flow_token` of the Flow message.',
    COMMENT COLUMN flow_id 'Meta''s Flow id.',
    COMMENT COLUMN flow_version 'Version label of the Flow JSON.',
    COMMENT COLUMN screen 'Screen id in the Flow JSON.',
    COMMENT COLUMN node_type '`buttons`, `list`, `form`, `media`, `logic` or `other`, as the sender reported it.',
    COMMENT COLUMN action '`view`, `submit`, `back` or `error`.',
    COMMENT COLUMN source '`node` (the Flow''s own screen event) or `endpoint` (a decrypted data-endpoint request).',
    COMMENT COLUMN occurred_at 'When it happened: the event''s timestamp, else when it was received.',
    COMMENT COLUMN received_at 'When our receiver accepted the event.',
    COMMENT COLUMN field_keys 'Names of every data field sent with the event, sorted.',
    COMMENT COLUMN fields 'Answers of the allow-listed fields only, as text.',
    COMMENT COLUMN error 'Error text of an `error` event (at most 500 characters), empty otherwise.',
    COMMENT COLUMN inserted_at 'When the row was written to the warehouse.';

ALTER TABLE flow_sessions
    COMMENT COLUMN flow_token 'Session id: the `flow_token` of the Flow message.',
    COMMENT COLUMN flow_id 'Meta''s Flow id, from the send or the screen events.',
    COMMENT COLUMN flow_version 'Version label, from the send or the screen events.',
    COMMENT COLUMN campaign 'Campaign label of the send, empty when none.',
    COMMENT COLUMN wamid 'Id of the Flow message, from the send or the completion.',
    COMMENT COLUMN phone_number_id 'Business phone number id, from the send or the completion.',
    COMMENT COLUMN sent_at 'When the Flow message was sent; 2200-01-01 00:00:00.000 means no send seen (yet).',
    COMMENT COLUMN completed_at 'First completion (`nfm_reply`); 2200-01-01 00:00:00.000 means not completed.',
    COMMENT COLUMN last_activity_at 'Latest time of its send, screen events and completion.',
    COMMENT COLUMN node_events 'Set of its screen events as (time, screen, action): `arraySort(groupUniqArrayMerge(node_events))` lists them in order.';

ALTER TABLE message_state
    COMMENT COLUMN wamid 'Id of our outbound message.',
    COMMENT COLUMN sent_at 'First `sent` status time; 2106-01-01 00:00:00 means never.',
    COMMENT COLUMN delivered_at 'First `delivered` status time; 2106-01-01 00:00:00 means never.',
    COMMENT COLUMN read_at 'First `read` status time; 2106-01-01 00:00:00 means never.',
    COMMENT COLUMN failed_at 'First `failed` status time; 2106-01-01 00:00:00 means never.',
    COMMENT COLUMN error_code 'Largest error code of its statuses, 0 when none failed.';

ALTER TABLE flow_selections
    COMMENT COLUMN flow_id 'Meta''s Flow id.',
    COMMENT COLUMN flow_version 'Version label of the Flow JSON.',
    COMMENT COLUMN screen 'Screen the answer was submitted on.',
    COMMENT COLUMN field 'Name of the allow-listed field.',
    COMMENT COLUMN value 'The submitted answer, as text.',
    COMMENT COLUMN sessions 'Set of the sessions (flow_tokens) that submitted it: `uniqExactMerge(sessions)` counts them.';

ALTER TABLE flow_health_events
    COMMENT COLUMN event_id 'Deterministic id of the webhook event (a hash of WABA, flow, event, time and payload).',
    COMMENT COLUMN waba_id 'WhatsApp Business Account id (`entry[].id`).',
    COMMENT COLUMN flow_id 'Meta''s Flow id.',
    COMMENT COLUMN event 'Meta''s event name, for example `FLOW_STATUS_CHANGE`, `CLIENT_ERROR_RATE`, `ENDPOINT_LATENCY`.',
    COMMENT COLUMN occurred_at 'Meta''s `entry.time`, in seconds, else when it was received.',
    COMMENT COLUMN received_at 'When our receiver accepted the webhook.',
    COMMENT COLUMN message 'Meta''s `message` (or `warning`), empty when absent.',
    COMMENT COLUMN old_status 'Status before a status change (`DRAFT`, `PUBLISHED`, `DEPRECATED`, `THROTTLED`, `BLOCKED`), empty otherwise.',
    COMMENT COLUMN new_status 'Status after a status change, empty otherwise.',
    COMMENT COLUMN alert_state '`ACTIVATED` or `DEACTIVATED` for a health alert, empty otherwise.',
    COMMENT COLUMN error_rate 'Error rate in percent, as Meta sends it; -1 when absent.',
    COMMENT COLUMN threshold 'The alert''s threshold, as Meta sends it; -1 when absent.',
    COMMENT COLUMN p50_latency_ms 'Median latency of the Flow''s endpoint in milliseconds; -1 when absent.',
    COMMENT COLUMN p90_latency_ms '90th percentile latency of the Flow''s endpoint in milliseconds; -1 when absent.',
    COMMENT COLUMN requests_count 'Requests the alert counted; -1 when absent.',
    COMMENT COLUMN availability 'Availability of the Flow''s endpoint in percent; -1 when absent.',
    COMMENT COLUMN error_types '`errors[].error_type`, in lower case with underscores.',
    COMMENT COLUMN error_rates '`errors[].error_rate`, in the order of `error_types`.',
    COMMENT COLUMN error_counts '`errors[].error_count`, in the order of `error_types`.',
    COMMENT COLUMN raw 'The webhook''s `value` object as JSON.',
    COMMENT COLUMN inserted_at 'When the row was written to the warehouse.';

ALTER TABLE flow_health_current
    COMMENT COLUMN flow_id 'Meta''s Flow id.',
    COMMENT COLUMN event 'Meta''s event name, for example `FLOW_STATUS_CHANGE`.',
    COMMENT COLUMN latest 'The latest event as (occurred_at, new_status, alert_state, message, error_rate, threshold, p50_latency_ms, p90_latency_ms, requests_count, availability, waba_id), latest by (occurred_at, received_at, event_id): read with `argMaxMerge(latest)`.',
    COMMENT COLUMN events 'Set of the event ids: `uniqExactMerge(events)` counts the events of this kind.';

ALTER TABLE flow_sends_by_time
    COMMENT COLUMN flow_id 'Meta''s Flow id.',
    COMMENT COLUMN sent_at 'When the Flow message was sent.',
    COMMENT COLUMN flow_token 'Session id: the `flow_token` of the Flow message.';

ALTER TABLE schema_migrations
    COMMENT COLUMN version 'Number of the migration (the `NNNN` of its file name).',
    COMMENT COLUMN name 'File name of the migration.',
    COMMENT COLUMN applied_at 'When it was applied.';
