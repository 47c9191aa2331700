-- Roster, SQLite schema version 6: sessions of the People portal (roster-server `portal`).
-- NEVER EDIT THIS FILE AFTER IT HAS LANDED: add a new one. (The same file in both backends.)

-- A signed-in browser: only the SHA-256 of its secret is kept. A session acts as one API key and
-- goes with it (deleting the key ends its sessions).
CREATE TABLE portal_sessions (
    account_id   TEXT    NOT NULL REFERENCES accounts (id),
    id_hash      TEXT    NOT NULL,
    api_key_id   TEXT    NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    flash        TEXT,
    CONSTRAINT portal_sessions_pkey PRIMARY KEY (id_hash)
) STRICT;

-- The cascade from api_keys, and the clean-up of ended sessions per account.
CREATE INDEX portal_sessions_api_key_idx ON portal_sessions (api_key_id);
CREATE INDEX portal_sessions_account_seen_idx ON portal_sessions (account_id, last_seen_at);
