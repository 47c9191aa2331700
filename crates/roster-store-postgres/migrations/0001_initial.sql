-- Roster, PostgreSQL schema version 1. NEVER EDIT THIS FILE AFTER IT HAS LANDED: add 0002_*.sql.
--
-- This schema mirrors roster-store-sqlite/migrations/0001_initial.sql table by table, column by
-- column, with the same table, column, constraint and index names (a test compares the two for
-- drift). Conventions (design.md "Storage"):
-- * ids are lowercase hyphenated UUID text, as in SQLite, so both backends store, compare and
--   order them identically; timestamps are BIGINT milliseconds since the Unix epoch (UTC);
--   integers are BIGINT (SQLite's INTEGER is 64-bit); booleans are BOOLEAN; JSON documents are
--   TEXT (not JSONB), so a document reads back byte for byte as written, key order included.
-- * every text column that is compared or ordered is COLLATE "C": PostgreSQL then compares bytes,
--   which for UTF-8 is code-point order, exactly like SQLite's BINARY collation, whatever locale
--   the database was created with. (The JSON columns are never compared.)
-- * every table carries account_id, so the schema can be distributed by account later.
-- * every uniqueness rule of people.md (§2.3, §3.5, §4, §8.2) is a named constraint or unique
--   index here. PostgreSQL reports a violation with the constraint's (or index's) name; the store
--   maps that name to a roster_store::Constraint (src/error.rs, UNIQUE_CONSTRAINTS, and a test
--   checks that every unique index of this schema is in that table and the other way round).
-- * JSON columns are checked with the `json` type (not `jsonb`): `json` accepts every document
--   serde_json writes, including "\u0000" escapes, which `jsonb` refuses.

CREATE TABLE accounts (
    id         TEXT COLLATE "C" NOT NULL,
    name       TEXT COLLATE "C" NOT NULL,
    created_at BIGINT           NOT NULL,
    CONSTRAINT accounts_pkey PRIMARY KEY (id)
);

-- people.md §1: one mobile app of an account.
CREATE TABLE applications (
    account_id                  TEXT COLLATE "C" NOT NULL REFERENCES accounts (id),
    id                          TEXT COLLATE "C" NOT NULL,
    name                        TEXT COLLATE "C" NOT NULL,
    application_code            TEXT COLLATE "C" NOT NULL,
    enabled                     BOOLEAN          NOT NULL,
    require_jwt_for_user_data   BOOLEAN          NOT NULL,
    restrict_user_data_from_sdk BOOLEAN          NOT NULL,
    -- provider credentials (management-api.md §7.1), secrets inside
    providers                   TEXT             NOT NULL CHECK (json_typeof(providers::json) IS NOT NULL),
    created_at                  BIGINT           NOT NULL,
    updated_at                  BIGINT           NOT NULL,
    CONSTRAINT applications_pkey PRIMARY KEY (id),
    CONSTRAINT applications_application_code_key UNIQUE (application_code)
);

CREATE INDEX applications_account_created_idx ON applications (account_id, created_at);

-- mobile-api.md §2.2: HS256 keys of an application; they go with it.
CREATE TABLE jwt_keys (
    account_id     TEXT COLLATE "C" NOT NULL,
    application_id TEXT COLLATE "C" NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    kid            TEXT COLLATE "C" NOT NULL,
    secret         BYTEA            NOT NULL,
    created_at     BIGINT           NOT NULL,
    CONSTRAINT jwt_keys_pkey PRIMARY KEY (application_id, kid)
);

-- management-api.md §1.1: only the hash of a key is stored.
CREATE TABLE api_keys (
    account_id   TEXT COLLATE "C" NOT NULL REFERENCES accounts (id),
    id           TEXT COLLATE "C" NOT NULL,
    name         TEXT COLLATE "C" NOT NULL,
    scopes       TEXT             NOT NULL CHECK (json_typeof(scopes::json) = 'array'),
    key_hash     TEXT COLLATE "C" NOT NULL,
    key_prefix   TEXT COLLATE "C" NOT NULL,
    created_at   BIGINT           NOT NULL,
    expires_at   BIGINT,
    last_used_at BIGINT,
    CONSTRAINT api_keys_pkey PRIMARY KEY (id),
    CONSTRAINT api_keys_key_hash_key UNIQUE (key_hash)
);

CREATE INDEX api_keys_account_created_idx ON api_keys (account_id, created_at);

-- people.md §3. Identity keys: external_user_id here (NULLs never collide), phones and emails in
-- their own tables so that each key is one row under one unique constraint.
CREATE TABLE persons (
    account_id        TEXT COLLATE "C" NOT NULL REFERENCES accounts (id),
    id                TEXT COLLATE "C" NOT NULL,
    external_user_id  TEXT COLLATE "C",
    first_name        TEXT COLLATE "C",
    middle_name       TEXT COLLATE "C",
    last_name         TEXT COLLATE "C",
    gender            TEXT COLLATE "C" CHECK (gender IN ('Male', 'Female')),
    birthday          TEXT COLLATE "C",
    -- canonical values (people.md §8.1), keys sorted
    custom_attributes TEXT             NOT NULL CHECK (json_typeof(custom_attributes::json) = 'object'),
    type              TEXT COLLATE "C" NOT NULL CHECK (type IN ('LEAD', 'CUSTOMER')),
    version           BIGINT           NOT NULL CHECK (version >= 1),
    created_at        BIGINT           NOT NULL,
    updated_at        BIGINT           NOT NULL,
    CONSTRAINT persons_pkey PRIMARY KEY (id),
    CONSTRAINT persons_external_user_id_key UNIQUE (account_id, external_user_id)
);

-- people.md §3.2, §3.5: normalised E.164 digits, unique per account.
CREATE TABLE person_phones (
    account_id TEXT COLLATE "C" NOT NULL,
    person_id  TEXT COLLATE "C" NOT NULL REFERENCES persons (id) ON DELETE CASCADE,
    position   BIGINT           NOT NULL,
    number     TEXT COLLATE "C" NOT NULL,
    CONSTRAINT person_phones_pkey PRIMARY KEY (person_id, position),
    CONSTRAINT person_phones_number_key UNIQUE (account_id, number)
);

-- people.md §3.3, §3.5: the address as given, and its comparison key (computed by the caller
-- with the Unicode lowercase mapping: SQL lower() is not that mapping), unique per account.
CREATE TABLE person_emails (
    account_id TEXT COLLATE "C" NOT NULL,
    person_id  TEXT COLLATE "C" NOT NULL REFERENCES persons (id) ON DELETE CASCADE,
    position   BIGINT           NOT NULL,
    address    TEXT COLLATE "C" NOT NULL,
    email_key  TEXT COLLATE "C" NOT NULL,
    CONSTRAINT person_emails_pkey PRIMARY KEY (person_id, position),
    CONSTRAINT person_emails_email_key_key UNIQUE (account_id, email_key)
);

CREATE TABLE person_tags (
    account_id TEXT COLLATE "C" NOT NULL,
    person_id  TEXT COLLATE "C" NOT NULL REFERENCES persons (id) ON DELETE CASCADE,
    tag        TEXT COLLATE "C" NOT NULL,
    CONSTRAINT person_tags_pkey PRIMARY KEY (person_id, tag)
);

-- For segment queries ("persons tagged X in account A").
CREATE INDEX person_tags_account_tag_idx ON person_tags (account_id, tag);

-- people.md §2. The provider column is derived from push_service_type (checked below) so that
-- token uniqueness (§2.3) can be a constraint.
CREATE TABLE installations (
    account_id             TEXT COLLATE "C" NOT NULL,
    -- lower() under COLLATE "C" folds ASCII only, like SQLite's lower().
    push_reg_id            TEXT COLLATE "C" NOT NULL CHECK (push_reg_id = lower(push_reg_id)),
    application_id         TEXT COLLATE "C" NOT NULL REFERENCES applications (id),
    person_id              TEXT COLLATE "C" NOT NULL REFERENCES persons (id),
    push_service_type      TEXT COLLATE "C" CHECK (push_service_type IN ('Firebase', 'GCM', 'HMS', 'APNS')),
    -- (named: PostgreSQL would call it installations_provider_check, the name of the table
    -- constraint below, which SQLite gives to that one)
    provider               TEXT COLLATE "C" CONSTRAINT installations_provider_in_check
                                            CHECK (provider IN ('FCM', 'APNS', 'HMS')),
    push_service_token     TEXT COLLATE "C",
    reg_enabled            BOOLEAN          NOT NULL,
    is_primary             BOOLEAN          NOT NULL,
    application_user_id    TEXT COLLATE "C",
    custom_attributes      TEXT             NOT NULL CHECK (json_typeof(custom_attributes::json) = 'object'),
    notifications_enabled  BOOLEAN,
    sdk_version            TEXT COLLATE "C",
    app_version            TEXT COLLATE "C",
    os                     TEXT COLLATE "C",
    os_version             TEXT COLLATE "C",
    device_manufacturer    TEXT COLLATE "C",
    device_model           TEXT COLLATE "C",
    device_name            TEXT COLLATE "C",
    device_secure          BOOLEAN,
    language               TEXT COLLATE "C",
    device_timezone_offset TEXT COLLATE "C",
    inappchat              BOOLEAN,
    inbox                  BOOLEAN,
    webrtcui               BOOLEAN,
    created_at             BIGINT           NOT NULL,
    updated_at             BIGINT           NOT NULL,
    last_seen_at           BIGINT           NOT NULL,
    token_cleared_at       BIGINT,
    token_cleared_reason   TEXT COLLATE "C" CHECK (token_cleared_reason IN ('TAKEN_OVER', 'UNREGISTERED', 'DEVICE')),
    CONSTRAINT installations_pkey PRIMARY KEY (push_reg_id),
    -- people.md §2.3 / invariant 11: one holder per (application, provider, token); NULL tokens
    -- (cleared) never collide.
    CONSTRAINT installations_push_token_key UNIQUE (application_id, provider, push_service_token),
    CONSTRAINT installations_provider_check CHECK (provider IS NOT DISTINCT FROM (CASE push_service_type
        WHEN 'Firebase' THEN 'FCM'
        WHEN 'GCM' THEN 'FCM'
        WHEN 'HMS' THEN 'HMS'
        WHEN 'APNS' THEN 'APNS'
    END))
);

-- people.md §4 / invariant 9: one primary installation per (person, application).
CREATE UNIQUE INDEX installations_primary_key ON installations (person_id, application_id)
    WHERE is_primary;

-- A person's installations, oldest first (installations_of_person, count, demote_primaries).
CREATE INDEX installations_account_person_idx
    ON installations (account_id, person_id, application_id, created_at);

-- PostgreSQL checks "no installation references this person" on every person delete; without an
-- index led by person_id that check would scan the table.
CREATE INDEX installations_person_fk_idx ON installations (person_id);

-- people.md §8.2: one namespace per account and scope; concurrent first definitions race here.
CREATE TABLE attribute_definitions (
    account_id    TEXT COLLATE "C" NOT NULL REFERENCES accounts (id),
    scope         TEXT COLLATE "C" NOT NULL CHECK (scope IN ('PERSON', 'INSTALLATION')),
    name          TEXT COLLATE "C" NOT NULL,
    type          TEXT COLLATE "C" NOT NULL CHECK (type IN ('STRING', 'DECIMAL', 'BOOLEAN', 'DATE', 'DATE_TIME', 'LIST_OF_OBJECTS')),
    object_schema TEXT             CHECK (object_schema IS NULL OR json_typeof(object_schema::json) = 'array'),
    origin        TEXT COLLATE "C" NOT NULL CHECK (origin IN ('AUTO', 'API')),
    created_at    BIGINT           NOT NULL,
    CONSTRAINT attribute_definitions_pkey PRIMARY KEY (account_id, scope, name)
);

-- people.md §9.2. Person ids are not foreign keys: entries outlive the persons they name.
CREATE TABLE merge_log (
    account_id                 TEXT COLLATE "C" NOT NULL,
    id                         TEXT COLLATE "C" NOT NULL,
    created_at                 BIGINT           NOT NULL,
    actor                      TEXT             NOT NULL CHECK (json_typeof(actor::json) IS NOT NULL),
    push_reg_id                TEXT COLLATE "C" NOT NULL,
    source_person_id           TEXT COLLATE "C",
    target_person_id           TEXT COLLATE "C",
    source_deleted             BOOLEAN          NOT NULL,
    after_forced_depersonalize BOOLEAN          NOT NULL,
    dropped_attributes         TEXT             NOT NULL CHECK (json_typeof(dropped_attributes::json) = 'array'),
    -- the before images; NULL once purged (retention, GDPR erase)
    "before"                   TEXT             CHECK ("before" IS NULL OR json_typeof("before"::json) = 'object'),
    after_target_version       BIGINT           NOT NULL,
    after_source_version       BIGINT,
    status                     TEXT COLLATE "C" NOT NULL CHECK (status IN ('APPLIED', 'REVERSED')),
    reversed_at                BIGINT,
    reversed_by                TEXT             CHECK (reversed_by IS NULL OR json_typeof(reversed_by::json) IS NOT NULL),
    redacted                   BOOLEAN          NOT NULL,
    CONSTRAINT merge_log_pkey PRIMARY KEY (id)
);

-- Retention purges (people.md §9.2) walk entries by age.
CREATE INDEX merge_log_account_created_idx ON merge_log (account_id, created_at);
-- A GDPR erase purges the snapshots of every entry naming the person.
CREATE INDEX merge_log_source_idx ON merge_log (account_id, source_person_id);
CREATE INDEX merge_log_target_idx ON merge_log (account_id, target_person_id);
