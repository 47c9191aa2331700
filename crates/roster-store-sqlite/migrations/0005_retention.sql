-- Roster, SQLite schema version 5: indexes of the retention purges (management-api.md §3.3, §6.7;
-- people.md §9.2), which sweep every account by age. NEVER EDIT THIS FILE AFTER IT HAS LANDED:
-- add a new one. (The same file in both backends.)

-- Delivery records 30 days after their last change; QUEUED records are never purged.
CREATE INDEX deliveries_retention_idx ON deliveries (updated_at) WHERE status <> 'QUEUED';
-- Messages (once none of their records remain) and then their bulks, by age.
CREATE INDEX messages_created_idx ON messages (created_at);
CREATE INDEX bulks_created_idx ON bulks (created_at);
-- Merge-log snapshots after the image retention, entries after the entry retention.
CREATE INDEX merge_log_snapshot_created_idx ON merge_log (created_at) WHERE "before" IS NOT NULL;
CREATE INDEX merge_log_created_idx ON merge_log (created_at);
