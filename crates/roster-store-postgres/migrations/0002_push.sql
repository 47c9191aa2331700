-- Roster, PostgreSQL schema version 2: push sending and delivery (management-api.md §5, §6) and
-- idempotency records (§3.3). NEVER EDIT THIS FILE AFTER IT HAS LANDED: add a new one.
--
-- Mirrors roster-store-sqlite/migrations/0002_push.sql table by table, column by column, with the
-- same names, under the conventions of 0001 (ids as lowercase text COLLATE "C", times BIGINT
-- milliseconds, booleans BOOLEAN, JSON as TEXT checked with the json type). Keys lead with
-- account_id so that the tables can be distributed by account later.

-- One POST /push/3/messages: bulkId unique per account.
CREATE TABLE bulks (
    account_id TEXT COLLATE "C" NOT NULL REFERENCES accounts (id),
    bulk_id    TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL,
    CONSTRAINT bulks_pkey PRIMARY KEY (account_id, bulk_id)
);

-- One destination of one message (§5.4); deleted with its application (§7.1).
CREATE TABLE messages (
    account_id          TEXT COLLATE "C" NOT NULL,
    message_id          TEXT COLLATE "C" NOT NULL,
    bulk_id             TEXT COLLATE "C" NOT NULL,
    position            BIGINT NOT NULL,
    application_id      TEXT COLLATE "C" NOT NULL REFERENCES applications (id) ON DELETE CASCADE,
    -- the destination as received, echoed by the API
    destination         TEXT             NOT NULL CHECK (json_typeof(destination::json) = 'object'),
    content             TEXT             NOT NULL CHECK (json_typeof(content::json) = 'object'),
    options             TEXT             NOT NULL CHECK (json_typeof(options::json) = 'object'),
    target_only_primary BOOLEAN          NOT NULL,
    submission_status   TEXT COLLATE "C" NOT NULL CHECK (submission_status IN ('PENDING_ACCEPTED',
                                    'REJECTED_DESTINATION_NOT_FOUND', 'REJECTED_NO_DELIVERABLE_INSTALLATION')),
    audience_state      TEXT COLLATE "C" NOT NULL CHECK (audience_state IN ('RESOLVING', 'RESOLVED')),
    audience_count      BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    expires_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    CONSTRAINT messages_pkey PRIMARY KEY (account_id, message_id),
    CONSTRAINT messages_bulk_fkey FOREIGN KEY (account_id, bulk_id) REFERENCES bulks (account_id, bulk_id)
);

-- GET /api/v1/messages?bulkId= in request order.
CREATE INDEX messages_bulk_idx ON messages (account_id, bulk_id, position);
-- Deleting an application deletes its messages.
CREATE INDEX messages_application_idx ON messages (application_id);

-- §6.1: the background resolution of a MULTIPLE destination, one chunk per transaction;
-- after_push_reg_id is the cursor (NULL before the first chunk).
CREATE TABLE audience_jobs (
    account_id          TEXT COLLATE "C" NOT NULL,
    message_id          TEXT COLLATE "C" NOT NULL,
    application_id      TEXT COLLATE "C" NOT NULL,
    audience_filter     TEXT             NOT NULL CHECK (json_typeof(audience_filter::json) = 'object'),
    target_only_primary BOOLEAN          NOT NULL,
    after_push_reg_id   TEXT COLLATE "C",
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    CONSTRAINT audience_jobs_pkey PRIMARY KEY (account_id, message_id),
    CONSTRAINT audience_jobs_message_fkey FOREIGN KEY (account_id, message_id)
        REFERENCES messages (account_id, message_id) ON DELETE CASCADE
);

-- Jobs take turns: the one that waited longest goes next.
CREATE INDEX audience_jobs_updated_idx ON audience_jobs (updated_at);

-- For the audience walk: an application's installations in pushRegId order.
CREATE INDEX installations_application_idx ON installations (application_id, push_reg_id);

-- §6.2: one (message, installation) pair; the durable send queue. push_reg_id and person_id
-- are not foreign keys: records outlive installations (and are anonymised by GDPR erase).
-- While QUEUED, next_attempt_at is when the record is due; a claim moves it to the end of the
-- claim's lease, so a claim whose worker died becomes due again by itself.
CREATE TABLE deliveries (
    account_id           TEXT COLLATE "C" NOT NULL,
    delivery_id          TEXT COLLATE "C" NOT NULL,
    message_id           TEXT COLLATE "C" NOT NULL,
    application_id       TEXT COLLATE "C" NOT NULL,
    push_reg_id          TEXT COLLATE "C",
    person_id            TEXT COLLATE "C",
    provider             TEXT COLLATE "C" NOT NULL CHECK (provider IN ('FCM', 'APNS', 'HMS')),
    status               TEXT COLLATE "C" NOT NULL CHECK (status IN ('QUEUED', 'ACCEPTED', 'REJECTED',
                                     'UNREGISTERED', 'EXPIRED', 'FAILED')),
    attempts             BIGINT NOT NULL CHECK (attempts >= 0),
    provider_http_status BIGINT,
    provider_reason      TEXT COLLATE "C",
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL,
    last_attempt_at      BIGINT,
    next_attempt_at      BIGINT NOT NULL,
    claim_id             TEXT COLLATE "C",
    delivered_at         BIGINT,
    seen_at              BIGINT,
    CONSTRAINT deliveries_pkey PRIMARY KEY (account_id, delivery_id),
    -- §6.1: no installation gets two records for the same message.
    CONSTRAINT deliveries_message_installation_key UNIQUE (account_id, message_id, push_reg_id),
    CONSTRAINT deliveries_message_fkey FOREIGN KEY (account_id, message_id)
        REFERENCES messages (account_id, message_id) ON DELETE CASCADE
);

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
    account_id      TEXT COLLATE "C" NOT NULL REFERENCES accounts (id),
    idem_key        TEXT COLLATE "C" NOT NULL,
    fingerprint     TEXT COLLATE "C" NOT NULL,
    owner           TEXT COLLATE "C" NOT NULL,
    state           TEXT COLLATE "C" NOT NULL CHECK (state IN ('RUNNING', 'DONE')),
    response_status BIGINT,
    response_body   BYTEA,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    CONSTRAINT idempotency_keys_pkey PRIMARY KEY (account_id, idem_key)
);

-- Purging expired records.
CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys (expires_at);
