-- Roster, schema version 8: a message's delivered and seen counts from indexes of the reported
-- records alone.
-- NEVER EDIT THIS FILE AFTER IT HAS LANDED: add a new one. (The same file in both backends.)
--
-- Reading a message (GET /api/v1/messages/{id}, the portal's live statuses) counts its records
-- by status and the ones a device reported delivered or seen (management-api.md §6.6). The
-- status counts come from deliveries_message_status_idx alone; the two report counts read every
-- record of the message for two columns no index held: at 100,000 records a read took 36 ms
-- instead of 8 (SQLite), and the fan-out benchmark's polls were a tenth of the server's CPU.
-- Only reported records enter these indexes, and only when a device reports them.
CREATE INDEX deliveries_delivered_idx ON deliveries (account_id, message_id) WHERE delivered_at IS NOT NULL;
CREATE INDEX deliveries_seen_idx ON deliveries (account_id, message_id) WHERE seen_at IS NOT NULL;
