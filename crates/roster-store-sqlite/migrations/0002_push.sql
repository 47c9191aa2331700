-- Roster, SQLite schema version 2: push sending and delivery (management-api.md §5, §6) and
-- idempotency records (§3.3). NEVER EDIT THIS FILE AFTER IT HAS LANDED: add a new one.
--
-- Same conventions as 0001 (ids lowercase text, times INTEGER milliseconds, JSON as TEXT, every
-- table with account_id, STRICT). The PostgreSQL backend's 0002_push.sql has the same tables,
-- columns, constraint and index names. Keys lead with account_id so that the tables can be
-- distributed by account later.

-- One POST /push/3/messages: bulkId unique per account.
CREATE TABLE bulks (
    account_id TEXT    NOT NULL REFERENCES accounts (id),
    bulk_id    TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    CONSTRAINT bulks_pkey PRIMARY KEY (account_id, bulk_id)
) STRICT, WITHOUT ROWID;

-- One destination of one message (§5.4); deleted with its application (§7.1).
CREATE TABLE messages (
    account_id          TEXT    NOT NULL,
    message_id          TEXT    NOT NULL,
    bulk_id             TEXT    NOT NULL,
    position            INTEGER NOT NULL,
    application_id      TEXT    NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    -- the destination as received, echoed by the API
    destination         TEXT    NOT NULL CHECK (json_type(destination) = 'object'),
    content             TEXT    NOT NULL CHECK (json_type(content) = 'object'),
    options             TEXT    NOT NULL CHECK (json_type(options) = 'object'),
    target_only_primary INTEGER NOT NULL CHECK (target_only_primary IN (0, 1)),
    submission_status   TEXT    NOT NULL CHECK (submission_status IN ('PENDING_ACCEPTED',
                                    'REJECTED_DESTINATION_NOT_FOUND', 'REJECTED_NO_DELIVERABLE_INSTALLATION')),
    audience_state      TEXT    NOT NULL CHECK (audience_state IN ('RESOLVING', 'RESOLVED')),
    audience_count      INTEGER NOT NULL,
    created_at          INTEGER NOT NULL,
    expires_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    CONSTRAINT messages_pkey PRIMARY KEY (account_id, message_id),
    CONSTRAINT messages_bulk_fkey FOREIGN KEY (account_id, bulk_id) REFERENCES bulks (account_id, bulk_id)
) STRICT;

-- GET /api/v1/messages?bulkId= in request order.
CREATE INDEX messages_bulk_idx ON messages (account_id, bulk_id, position);
-- Deleting an application deletes its messages.
CREATE INDEX messages_application_idx ON messages (application_id);

-- §6.1: the background resolution of a MULTIPLE destination, one chunk per transaction;
-- after_push_reg_id is the cursor (NULL before the first chunk).
CREATE TABLE audience_jobs (
    account_id          TEXT    NOT NULL,
    message_id          TEXT    NOT NULL,
    application_id      TEXT    NOT NULL,
    audience_filter     TEXT    NOT NULL CHECK (json_type(audience_filter) = 'object'),
    target_only_primary INTEGER NOT NULL CHECK (target_only_primary IN (0, 1)),
    after_push_reg_id   TEXT,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    CONSTRAINT audience_jobs_pkey PRIMARY KEY (account_id, message_id),
    CONSTRAINT audience_jobs_message_fkey FOREIGN KEY (account_id, message_id)
        REFERENCES messages (account_id, message_id) ON DELETE CASCADE
) STRICT;

-- Jobs take turns: the one that waited longest goes next.
CREATE INDEX audience_jobs_updated_idx ON audience_jobs (updated_at);

-- For the audience walk: an application's installations in pushRegId order.
CREATE INDEX installations_application_idx ON installations (application_id, push_reg_id);

-- §6.2: one (message, installation) pair; the durable send queue. push_reg_id and person_id
-- are not foreign keys: records outlive installations (and are anonymised by GDPR erase).
-- While QUEUED, next_attempt_at is when the record is due; a claim moves it to the end of the
-- claim's lease, so a claim whose worker died becomes due again by itself.
CREATE TABLE deliveries (
    account_id           TEXT    NOT NULL,
    delivery_id          TEXT    NOT NULL,
    message_id           TEXT    NOT NULL,
    application_id       TEXT    NOT NULL,
    push_reg_id          TEXT,
    person_id            TEXT,
    provider             TEXT    NOT NULL CHECK (provider IN ('FCM', 'APNS', 'HMS')),
    status               TEXT    NOT NULL CHECK (status IN ('QUEUED', 'ACCEPTED', 'REJECTED',
                                     'UNREGISTERED', 'EXPIRED', 'FAILED')),
    attempts             INTEGER NOT NULL CHECK (attempts >= 0),
    provider_http_status INTEGER,
    provider_reason      TEXT,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    last_attempt_at      INTEGER,
    next_attempt_at      INTEGER NOT NULL,
    claim_id             TEXT,
    delivered_at         INTEGER,
    seen_at              INTEGER,
    CONSTRAINT deliveries_pkey PRIMARY KEY (account_id, delivery_id),
    -- §6.1: no installation gets two records for the same message.
    CONSTRAINT deliveries_message_installation_key UNIQUE (account_id, message_id, push_reg_id),
    CONSTRAINT deliveries_message_fkey FOREIGN KEY (account_id, message_id)
        REFERENCES messages (account_id, message_id) ON DELETE CASCADE
) STRICT;

-- The queue: due records, most overdue first.
CREATE INDEX deliveries_due_idx ON deliveries (next_attempt_at) WHERE status = 'QUEUED';
-- A message's records by id (optionally of one status), and its counts per status.
CREATE INDEX deliveries_message_idx ON deliveries (account_id, message_id, delivery_id);
CREATE INDEX deliveries_message_status_idx ON deliveries (account_id, message_id, status);
-- GDPR erase anonymises a person's records.
CREATE INDEX deliveries_person_idx ON deliveries (account_id, person_id);

-- §3.3: Idempotency-Key per account; RUNNING while the first request runs, then DONE with its
-- answer until expires_at.
CREATE TABLE idempotency_keys (
    account_id      TEXT    NOT NULL REFERENCES accounts (id),
    idem_key        TEXT    NOT NULL,
    fingerprint     TEXT    NOT NULL,
    owner           TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('RUNNING', 'DONE')),
    response_status INTEGER,
    response_body   BLOB,
    created_at      INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    CONSTRAINT idempotency_keys_pkey PRIMARY KEY (account_id, idem_key)
) STRICT, WITHOUT ROWID;

-- Purging expired records.
CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys (expires_at);
