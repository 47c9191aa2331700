-- Roster, PostgreSQL schema version 3: the audience index (filters of management-api.md §4 as indexed
-- SQL) and segments (§7.6). NEVER EDIT THIS FILE AFTER IT HAS LANDED: add a new one.
--
-- Mirrors roster-store-sqlite/migrations/0003_audience.sql table by table, column by column,
-- with the same constraint and index names, and the conventions of 0001 (text COLLATE "C" so that
-- both backends compare and order alike, BIGINT integers, BOOLEAN booleans).
--
-- The index rows are computed in Rust (roster_store::audience::index) and written by the store in
-- the same transaction as every person and installation write; they go with their owner
-- (ON DELETE CASCADE). Rows that existed before this migration are filled in by the store right
-- after it, in the same transaction (roster-store-postgres/src/audience.rs, `backfill`): the
-- lowercased copies must come from Rust's Unicode mapping, which SQL lower() is not.

-- One row per value: a scalar custom attribute (item -1, field ''), a list-of-objects item's
-- header row (item = position, field '', no value) and each of its fields (field = name), and the
-- reserved rows of a person ('$firstName', '$tags', ...: lowercased copies only).
-- value_num is the order-preserving integer of the number (roster_store::audience::index::num_key).
CREATE TABLE person_attribute_values (
    account_id TEXT COLLATE "C" NOT NULL,
    person_id TEXT COLLATE "C" NOT NULL REFERENCES persons (id) ON DELETE CASCADE,
    name TEXT COLLATE "C" NOT NULL,
    item BIGINT NOT NULL,
    field TEXT COLLATE "C" NOT NULL,
    value_text TEXT COLLATE "C",
    value_lower TEXT COLLATE "C",
    value_num BIGINT,
    value_bool BOOLEAN,
    CONSTRAINT person_attribute_values_pkey PRIMARY KEY (person_id, name, item, field)
);

-- Equality, ranges and presence on (account, attribute, field); the owner last, so that the
-- index alone answers "which persons".
CREATE INDEX person_attribute_values_text_idx
    ON person_attribute_values (account_id, name, field, value_text, person_id);
CREATE INDEX person_attribute_values_num_idx
    ON person_attribute_values (account_id, name, field, value_num, person_id) WHERE value_num IS NOT NULL;
-- $startsWith as a range on the lowercased copy.
CREATE INDEX person_attribute_values_lower_idx
    ON person_attribute_values (account_id, name, field, value_lower, person_id) WHERE value_lower IS NOT NULL;

CREATE TABLE installation_attribute_values (
    account_id TEXT COLLATE "C" NOT NULL,
    push_reg_id TEXT COLLATE "C" NOT NULL REFERENCES installations (push_reg_id) ON DELETE CASCADE,
    name TEXT COLLATE "C" NOT NULL,
    item BIGINT NOT NULL,
    field TEXT COLLATE "C" NOT NULL,
    value_text TEXT COLLATE "C",
    value_lower TEXT COLLATE "C",
    value_num BIGINT,
    value_bool BOOLEAN,
    CONSTRAINT installation_attribute_values_pkey PRIMARY KEY (push_reg_id, name, item, field)
);

CREATE INDEX installation_attribute_values_text_idx
    ON installation_attribute_values (account_id, name, field, value_text, push_reg_id);
CREATE INDEX installation_attribute_values_num_idx
    ON installation_attribute_values (account_id, name, field, value_num, push_reg_id) WHERE value_num IS NOT NULL;
CREATE INDEX installation_attribute_values_lower_idx
    ON installation_attribute_values (account_id, name, field, value_lower, push_reg_id) WHERE value_lower IS NOT NULL;

-- One row per installation: lowercased copies of the STRING and VERSION system fields
-- ($startsWith / $contains) and the VERSION sort keys ($gt, ... in version order).
CREATE TABLE installation_search (
    account_id TEXT COLLATE "C" NOT NULL,
    push_reg_id TEXT COLLATE "C" NOT NULL REFERENCES installations (push_reg_id) ON DELETE CASCADE,
    os_lower TEXT COLLATE "C",
    device_manufacturer_lower TEXT COLLATE "C",
    device_model_lower TEXT COLLATE "C",
    device_name_lower TEXT COLLATE "C",
    language_lower TEXT COLLATE "C",
    device_timezone_offset_lower TEXT COLLATE "C",
    application_user_id_lower TEXT COLLATE "C",
    os_version_lower TEXT COLLATE "C",
    app_version_lower TEXT COLLATE "C",
    sdk_version_lower TEXT COLLATE "C",
    os_version_key TEXT COLLATE "C",
    app_version_key TEXT COLLATE "C",
    sdk_version_key TEXT COLLATE "C",
    CONSTRAINT installation_search_pkey PRIMARY KEY (push_reg_id)
);

-- management-api.md §7.6: a saved filter; name unique per account.
CREATE TABLE segments (
    account_id TEXT COLLATE "C" NOT NULL REFERENCES accounts (id),
    id TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    description TEXT COLLATE "C",
    -- a JSON document, never compared; COLLATE "C" like every other text column of this file
    filter TEXT COLLATE "C" NOT NULL CHECK (json_typeof(filter::json) = 'object'),
    valid BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CONSTRAINT segments_pkey PRIMARY KEY (id),
    CONSTRAINT segments_account_name_key UNIQUE (account_id, name)
);
