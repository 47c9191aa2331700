-- Roster, SQLite schema version 3: the audience index (filters of management-api.md §4 as indexed
-- SQL) and segments (§7.6). NEVER EDIT THIS FILE AFTER IT HAS LANDED: add a new one.
--
-- Same conventions as 0001 (ids lowercase text, times INTEGER milliseconds, JSON as TEXT, every
-- table with account_id, STRICT). The PostgreSQL backend's 0003_audience.sql has the same tables,
-- columns, constraint and index names.
--
-- The index rows are computed in Rust (roster_store::audience::index) and written by the store in
-- the same transaction as every person and installation write; they go with their owner
-- (ON DELETE CASCADE). Rows that existed before this migration are filled in by the store right
-- after it, in the same transaction (roster-store-sqlite/src/audience.rs, `backfill`): the
-- lowercased copies must come from Rust's Unicode mapping, which SQL lower() is not.

-- One row per value: a scalar custom attribute (item -1, field ''), a list-of-objects item's
-- header row (item = position, field '', no value) and each of its fields (field = name), and the
-- reserved rows of a person ('$firstName', '$tags', ...: lowercased copies only).
-- value_num is the order-preserving integer of the number (roster_store::audience::index::num_key).
CREATE TABLE person_attribute_values (
    account_id  TEXT    NOT NULL,
    person_id   TEXT    NOT NULL REFERENCES persons (id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    item        INTEGER NOT NULL,
    field       TEXT    NOT NULL,
    value_text  TEXT,
    value_lower TEXT,
    value_num   INTEGER,
    value_bool  INTEGER CHECK (value_bool IN (0, 1)),
    CONSTRAINT person_attribute_values_pkey PRIMARY KEY (person_id, name, item, field)
) STRICT, WITHOUT ROWID;

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
    account_id  TEXT    NOT NULL,
    push_reg_id TEXT    NOT NULL REFERENCES installations (push_reg_id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    item        INTEGER NOT NULL,
    field       TEXT    NOT NULL,
    value_text  TEXT,
    value_lower TEXT,
    value_num   INTEGER,
    value_bool  INTEGER CHECK (value_bool IN (0, 1)),
    CONSTRAINT installation_attribute_values_pkey PRIMARY KEY (push_reg_id, name, item, field)
) STRICT, WITHOUT ROWID;

CREATE INDEX installation_attribute_values_text_idx
    ON installation_attribute_values (account_id, name, field, value_text, push_reg_id);
CREATE INDEX installation_attribute_values_num_idx
    ON installation_attribute_values (account_id, name, field, value_num, push_reg_id) WHERE value_num IS NOT NULL;
CREATE INDEX installation_attribute_values_lower_idx
    ON installation_attribute_values (account_id, name, field, value_lower, push_reg_id) WHERE value_lower IS NOT NULL;

-- One row per installation: lowercased copies of the STRING and VERSION system fields
-- ($startsWith / $contains) and the VERSION sort keys ($gt, ... in version order).
CREATE TABLE installation_search (
    account_id                   TEXT NOT NULL,
    push_reg_id                  TEXT NOT NULL REFERENCES installations (push_reg_id) ON DELETE CASCADE,
    os_lower                     TEXT,
    device_manufacturer_lower    TEXT,
    device_model_lower           TEXT,
    device_name_lower            TEXT,
    language_lower               TEXT,
    device_timezone_offset_lower TEXT,
    application_user_id_lower    TEXT,
    os_version_lower             TEXT,
    app_version_lower            TEXT,
    sdk_version_lower            TEXT,
    os_version_key               TEXT,
    app_version_key              TEXT,
    sdk_version_key              TEXT,
    CONSTRAINT installation_search_pkey PRIMARY KEY (push_reg_id)
) STRICT, WITHOUT ROWID;

-- management-api.md §7.6: a saved filter; name unique per account.
CREATE TABLE segments (
    account_id  TEXT    NOT NULL REFERENCES accounts (id),
    id          TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    description TEXT,
    filter      TEXT    NOT NULL CHECK (json_type(filter) = 'object'),
    valid       INTEGER NOT NULL CHECK (valid IN (0, 1)),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    CONSTRAINT segments_pkey PRIMARY KEY (id),
    CONSTRAINT segments_account_name_key UNIQUE (account_id, name)
) STRICT;
