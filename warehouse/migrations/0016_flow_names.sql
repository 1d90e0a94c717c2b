-- Flows by name: the display name a business registers a flow version under (`?name=` on the registration).
ALTER TABLE flow_definitions
    ADD COLUMN IF NOT EXISTS flow_name String
        COMMENT 'Display name the flow was registered under (`flowscope flows register --name`), empty when none was given.';
