-- Roster, schema version 7: one index of a person's installations instead of two.
-- NEVER EDIT THIS FILE AFTER IT HAS LANDED: add a new one. (The same file in both backends.)
--
-- 0001 kept a person's installations in two indexes: (account_id, person_id, application_id,
-- created_at) for the store's reads, and (person_id) so that deleting a person does not scan the
-- table for references. One index led by person_id serves both: person ids are unique across
-- accounts, so every read that names the account and the person finds the same rows through it
-- (the account is checked on the row), and it is the index the foreign key check needs. Every
-- installation insert, every change of its person or application, and every installation on disk
-- so pays for one index fewer (docs/decisions.md, "Installations: one index by person").
DROP INDEX installations_account_person_idx;
DROP INDEX installations_person_fk_idx;
CREATE INDEX installations_person_idx ON installations (person_id, application_id, created_at);
