-- Roster, PostgreSQL schema version 4: the delivery records of an installation, for the GDPR export
-- and erase (management-api.md §8). NEVER EDIT THIS FILE AFTER IT HAS LANDED: add a new one.
-- (The same file in both backends.)

CREATE INDEX deliveries_installation_idx ON deliveries (account_id, push_reg_id);
