-- Roster, SQLite schema version 1. NEVER EDIT THIS FILE AFTER IT HAS LANDED: add 0002_*.sql.
--
-- Conventions (shared with the PostgreSQL backend, design.md "Storage"):
-- * ids are lowercase hyphenated UUID text; timestamps are INTEGER milliseconds since the Unix
--   epoch (UTC); booleans are INTEGER 0/1; JSON documents are TEXT.
-- * every table carries account_id, so the schema can be distributed by account later.
-- * every uniqueness rule of people.md (§2.3, §3.5, §4, §8.2) is a named constraint or unique
--   index here. SQLite reports a violation as "UNIQUE constraint failed: table.col, ..."; the
--   store maps that column list to a roster_store::Constraint (src/error.rs, UNIQUE_CONSTRAINTS,
--   and a test checks that every unique index of this schema is in that table).
-- * tables are STRICT, so a value of the wrong type cannot be stored by accident.

CREATE TABLE accounts (
    id         TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    CONSTRAINT accounts_pkey PRIMARY KEY (id)
) STRICT;

-- people.md §1: one mobile app of an account.
CREATE TABLE applications (
    account_id                  TEXT    NOT NULL REFERENCES accounts (id),
    id                          TEXT    NOT NULL,
    name                        TEXT    NOT NULL,
    application_code            TEXT    NOT NULL,
    enabled                     INTEGER NOT NULL CHECK (enabled IN (0, 1)),
    require_jwt_for_user_data   INTEGER NOT NULL CHECK (require_jwt_for_user_data IN (0, 1)),
    restrict_user_data_from_sdk INTEGER NOT NULL CHECK (restrict_user_data_from_sdk IN (0, 1)),
    -- provider credentials (management-api.md §7.1), secrets inside
    providers                   TEXT    NOT NULL CHECK (json_valid(providers)),
    created_at                  INTEGER NOT NULL,
    updated_at                  INTEGER NOT NULL,
    CONSTRAINT applications_pkey PRIMARY KEY (id),
    CONSTRAINT applications_application_code_key UNIQUE (application_code)
) STRICT;

CREATE INDEX applications_account_created_idx ON applications (account_id, created_at);

-- mobile-api.md §2.2: HS256 keys of an application; they go with it.
CREATE TABLE jwt_keys (
    account_id     TEXT    NOT NULL,
    application_id TEXT    NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    kid            TEXT    NOT NULL,
    secret         BLOB    NOT NULL,
    created_at     INTEGER NOT NULL,
    CONSTRAINT jwt_keys_pkey PRIMARY KEY (application_id, kid)
) STRICT, WITHOUT ROWID;

-- management-api.md §1.1: only the hash of a key is stored.
CREATE TABLE api_keys (
    account_id   TEXT    NOT NULL REFERENCES accounts (id),
    id           TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    scopes       TEXT    NOT NULL CHECK (json_type(scopes) = 'array'),
    key_hash     TEXT    NOT NULL,
    key_prefix   TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    last_used_at INTEGER,
    CONSTRAINT api_keys_pkey PRIMARY KEY (id),
    CONSTRAINT api_keys_key_hash_key UNIQUE (key_hash)
) STRICT;

CREATE INDEX api_keys_account_created_idx ON api_keys (account_id, created_at);

-- people.md §3. Identity keys: external_user_id here (NULLs never collide), phones and emails in
-- their own tables so that each key is one row under one unique constraint.
CREATE TABLE persons (
    account_id        TEXT    NOT NULL REFERENCES accounts (id),
    id                TEXT    NOT NULL,
    external_user_id  TEXT,
    first_name        TEXT,
    middle_name       TEXT,
    last_name         TEXT,
    gender            TEXT    CHECK (gender IN ('Male', 'Female')),
    birthday          TEXT,
    -- canonical values (people.md §8.1), keys sorted
    custom_attributes TEXT    NOT NULL CHECK (json_type(custom_attributes) = 'object'),
    type              TEXT    NOT NULL CHECK (type IN ('LEAD', 'CUSTOMER')),
    version           INTEGER NOT NULL CHECK (version >= 1),
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    CONSTRAINT persons_pkey PRIMARY KEY (id),
    CONSTRAINT persons_external_user_id_key UNIQUE (account_id, external_user_id)
) STRICT;

-- people.md §3.2, §3.5: normalised E.164 digits, unique per account.
CREATE TABLE person_phones (
    account_id TEXT    NOT NULL,
    person_id  TEXT    NOT NULL REFERENCES persons (id) ON DELETE CASCADE,
    position   INTEGER NOT NULL,
    number     TEXT    NOT NULL,
    CONSTRAINT person_phones_pkey PRIMARY KEY (person_id, position),
    CONSTRAINT person_phones_number_key UNIQUE (account_id, number)
) STRICT, WITHOUT ROWID;

-- people.md §3.3, §3.5: the address as given, and its comparison key (computed by the caller
-- with the Unicode lowercase mapping: SQL lower() is ASCII-only), unique per account.
CREATE TABLE person_emails (
    account_id TEXT    NOT NULL,
    person_id  TEXT    NOT NULL REFERENCES persons (id) ON DELETE CASCADE,
    position   INTEGER NOT NULL,
    address    TEXT    NOT NULL,
    email_key  TEXT    NOT NULL,
    CONSTRAINT person_emails_pkey PRIMARY KEY (person_id, position),
    CONSTRAINT person_emails_email_key_key UNIQUE (account_id, email_key)
) STRICT, WITHOUT ROWID;

CREATE TABLE person_tags (
    account_id TEXT NOT NULL,
    person_id  TEXT NOT NULL REFERENCES persons (id) ON DELETE CASCADE,
    tag        TEXT NOT NULL,
    CONSTRAINT person_tags_pkey PRIMARY KEY (person_id, tag)
) STRICT, WITHOUT ROWID;

-- For segment queries ("persons tagged X in account A").
CREATE INDEX person_tags_account_tag_idx ON person_tags (account_id, tag);

-- people.md §2. The provider column is derived from push_service_type (checked below) so that
-- token uniqueness (§2.3) can be a constraint.
CREATE TABLE installations (
    account_id             TEXT    NOT NULL,
    push_reg_id            TEXT    NOT NULL CHECK (push_reg_id = lower(push_reg_id)),
    application_id         TEXT    NOT NULL REFERENCES applications (id),
    person_id              TEXT    NOT NULL REFERENCES persons (id),
    push_service_type      TEXT    CHECK (push_service_type IN ('Firebase', 'GCM', 'HMS', 'APNS')),
    provider               TEXT    CHECK (provider IN ('FCM', 'APNS', 'HMS')),
    push_service_token     TEXT,
    reg_enabled            INTEGER NOT NULL CHECK (reg_enabled IN (0, 1)),
    is_primary             INTEGER NOT NULL CHECK (is_primary IN (0, 1)),
    application_user_id    TEXT,
    custom_attributes      TEXT    NOT NULL CHECK (json_type(custom_attributes) = 'object'),
    notifications_enabled  INTEGER CHECK (notifications_enabled IN (0, 1)),
    sdk_version            TEXT,
    app_version            TEXT,
    os                     TEXT,
    os_version             TEXT,
    device_manufacturer    TEXT,
    device_model           TEXT,
    device_name            TEXT,
    device_secure          INTEGER CHECK (device_secure IN (0, 1)),
    language               TEXT,
    device_timezone_offset TEXT,
    inappchat              INTEGER CHECK (inappchat IN (0, 1)),
    inbox                  INTEGER CHECK (inbox IN (0, 1)),
    webrtcui               INTEGER CHECK (webrtcui IN (0, 1)),
    created_at             INTEGER NOT NULL,
    updated_at             INTEGER NOT NULL,
    last_seen_at           INTEGER NOT NULL,
    token_cleared_at       INTEGER,
    token_cleared_reason   TEXT    CHECK (token_cleared_reason IN ('TAKEN_OVER', 'UNREGISTERED', 'DEVICE')),
    CONSTRAINT installations_pkey PRIMARY KEY (push_reg_id),
    -- people.md §2.3 / invariant 11: one holder per (application, provider, token); NULL tokens
    -- (cleared) never collide.
    CONSTRAINT installations_push_token_key UNIQUE (application_id, provider, push_service_token),
    CONSTRAINT installations_provider_check CHECK (provider IS (CASE push_service_type
        WHEN 'Firebase' THEN 'FCM'
        WHEN 'GCM' THEN 'FCM'
        WHEN 'HMS' THEN 'HMS'
        WHEN 'APNS' THEN 'APNS'
    END))
) STRICT;

-- people.md §4 / invariant 9: one primary installation per (person, application).
CREATE UNIQUE INDEX installations_primary_key ON installations (person_id, application_id)
    WHERE is_primary = 1;

-- A person's installations, oldest first (installations_of_person, count, demote_primaries).
CREATE INDEX installations_account_person_idx
    ON installations (account_id, person_id, application_id, created_at);

-- SQLite checks "no installation references this person" on every person delete; without an
-- index led by person_id that check would scan the table.
CREATE INDEX installations_person_fk_idx ON installations (person_id);

-- people.md §8.2: one namespace per account and scope; concurrent first definitions race here.
CREATE TABLE attribute_definitions (
    account_id    TEXT    NOT NULL REFERENCES accounts (id),
    scope         TEXT    NOT NULL CHECK (scope IN ('PERSON', 'INSTALLATION')),
    name          TEXT    NOT NULL,
    type          TEXT    NOT NULL CHECK (type IN ('STRING', 'DECIMAL', 'BOOLEAN', 'DATE', 'DATE_TIME', 'LIST_OF_OBJECTS')),
    object_schema TEXT    CHECK (object_schema IS NULL OR json_type(object_schema) = 'array'),
    origin        TEXT    NOT NULL CHECK (origin IN ('AUTO', 'API')),
    created_at    INTEGER NOT NULL,
    CONSTRAINT attribute_definitions_pkey PRIMARY KEY (account_id, scope, name)
) STRICT, WITHOUT ROWID;

-- people.md §9.2. Person ids are not foreign keys: entries outlive the persons they name.
CREATE TABLE merge_log (
    account_id                 TEXT    NOT NULL,
    id                         TEXT    NOT NULL,
    created_at                 INTEGER NOT NULL,
    actor                      TEXT    NOT NULL CHECK (json_valid(actor)),
    push_reg_id                TEXT    NOT NULL,
    source_person_id           TEXT,
    target_person_id           TEXT,
    source_deleted             INTEGER NOT NULL CHECK (source_deleted IN (0, 1)),
    after_forced_depersonalize INTEGER NOT NULL CHECK (after_forced_depersonalize IN (0, 1)),
    dropped_attributes         TEXT    NOT NULL CHECK (json_type(dropped_attributes) = 'array'),
    -- the before images; NULL once purged (retention, GDPR erase)
    "before"                   TEXT    CHECK ("before" IS NULL OR json_type("before") = 'object'),
    after_target_version       INTEGER NOT NULL,
    after_source_version       INTEGER,
    status                     TEXT    NOT NULL CHECK (status IN ('APPLIED', 'REVERSED')),
    reversed_at                INTEGER,
    reversed_by                TEXT    CHECK (reversed_by IS NULL OR json_valid(reversed_by)),
    redacted                   INTEGER NOT NULL CHECK (redacted IN (0, 1)),
    CONSTRAINT merge_log_pkey PRIMARY KEY (id)
) STRICT;

-- Retention purges (people.md §9.2) walk entries by age.
CREATE INDEX merge_log_account_created_idx ON merge_log (account_id, created_at);
-- A GDPR erase purges the snapshots of every entry naming the person.
CREATE INDEX merge_log_source_idx ON merge_log (account_id, source_person_id);
CREATE INDEX merge_log_target_idx ON merge_log (account_id, target_person_id);
