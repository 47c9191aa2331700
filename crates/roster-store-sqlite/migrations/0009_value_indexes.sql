-- Roster, schema version 9: the audience value tables' text indexes hold only rows with text.
-- NEVER EDIT THIS FILE AFTER IT HAS LANDED: add a new one. (The same file in both backends.)
--
-- Every value row used to have an entry in its table's text index, although only strings,
-- dates and date-times have text: a seeded person's ~8.4 rows (reserved lowercased copies,
-- tags, numbers, booleans) held ~6 entries nobody looks up by text, each repeating the account
-- and owner ids (docs/benchmarks.md, "footprint"). The text index now holds the rows with
-- text; booleans and list headers, which filters and the attribute deletion found through it,
-- get small indexes of their own. Every row of a custom attribute is exactly one of: text,
-- number, boolean, list header (roster_store::audience::index::CUSTOM_ROW_KINDS).
DROP INDEX person_attribute_values_text_idx;
CREATE INDEX person_attribute_values_text_idx
    ON person_attribute_values (account_id, name, field, value_text, person_id) WHERE value_text IS NOT NULL;
CREATE INDEX person_attribute_values_bool_idx
    ON person_attribute_values (account_id, name, field, value_bool, person_id) WHERE value_bool IS NOT NULL;
CREATE INDEX person_attribute_values_header_idx
    ON person_attribute_values (account_id, name, person_id) WHERE field = '' AND item >= 0 AND value_lower IS NULL;

DROP INDEX installation_attribute_values_text_idx;
CREATE INDEX installation_attribute_values_text_idx
    ON installation_attribute_values (account_id, name, field, value_text, push_reg_id) WHERE value_text IS NOT NULL;
CREATE INDEX installation_attribute_values_bool_idx
    ON installation_attribute_values (account_id, name, field, value_bool, push_reg_id) WHERE value_bool IS NOT NULL;
CREATE INDEX installation_attribute_values_header_idx
    ON installation_attribute_values (account_id, name, push_reg_id) WHERE field = '' AND item >= 0 AND value_lower IS NULL;
