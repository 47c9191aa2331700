//! [`RetentionTx`] on SQLite: batched deletes over the age indexes of
//! `migrations/0005_retention.sql`. A sweep across every account (retention is the same for all).
//! The single writer makes each batch exclusive: another process's sweep waits for the write
//! lock and then finds the rows gone.

use async_trait::async_trait;
use roster_model::Millis;
use roster_store::{RetentionTx, StoreResult, page_limit};
use rusqlite::params;

use crate::sql::execute;
use crate::tx::SqliteTx;

const PURGE_DELIVERIES: &str = "DELETE FROM deliveries WHERE rowid IN ( \
    SELECT rowid FROM deliveries WHERE status <> 'QUEUED' AND updated_at < ?1 \
    ORDER BY updated_at LIMIT ?2) \
    AND status <> 'QUEUED' AND updated_at < ?1";
const PURGE_MESSAGES: &str = "DELETE FROM messages WHERE rowid IN ( \
    SELECT m.rowid FROM messages m WHERE m.created_at < ?1 \
    AND NOT EXISTS (SELECT 1 FROM deliveries d \
                    WHERE d.account_id = m.account_id AND d.message_id = m.message_id) \
    AND NOT EXISTS (SELECT 1 FROM audience_jobs j \
                    WHERE j.account_id = m.account_id AND j.message_id = m.message_id) \
    ORDER BY m.created_at LIMIT ?2)";
const PURGE_BULKS: &str = "DELETE FROM bulks WHERE (account_id, bulk_id) IN ( \
    SELECT b.account_id, b.bulk_id FROM bulks b WHERE b.created_at < ?1 \
    AND NOT EXISTS (SELECT 1 FROM messages m \
                    WHERE m.account_id = b.account_id AND m.bulk_id = b.bulk_id) \
    ORDER BY b.created_at LIMIT ?2)";
const PURGE_IDEMPOTENCY: &str = "DELETE FROM idempotency_keys WHERE (account_id, idem_key) IN ( \
    SELECT account_id, idem_key FROM idempotency_keys WHERE expires_at < ?1 \
    ORDER BY expires_at LIMIT ?2) \
    AND expires_at < ?1";
const PURGE_MERGE_SNAPSHOTS: &str = "UPDATE merge_log SET \"before\" = NULL WHERE rowid IN ( \
    SELECT rowid FROM merge_log WHERE \"before\" IS NOT NULL AND created_at < ?1 \
    ORDER BY created_at LIMIT ?2)";
const PURGE_MERGE_ENTRIES: &str = "DELETE FROM merge_log WHERE rowid IN ( \
    SELECT rowid FROM merge_log WHERE created_at < ?1 ORDER BY created_at LIMIT ?2)";

/// Every purge statement by name, with the cut-off as `?1` and the batch size as `?2` (for the
/// query-plan test: each must walk its age index, never scan a table).
pub const PURGE_STATEMENTS: &[(&str, &str)] = &[
    ("purge_deliveries", PURGE_DELIVERIES),
    ("purge_messages", PURGE_MESSAGES),
    ("purge_bulks", PURGE_BULKS),
    ("purge_idempotency", PURGE_IDEMPOTENCY),
    ("purge_merge_snapshots", PURGE_MERGE_SNAPSHOTS),
    ("purge_merge_entries", PURGE_MERGE_ENTRIES),
];

#[async_trait]
impl RetentionTx for SqliteTx {
    async fn purge_deliveries(&mut self, changed_before: Millis, limit: u32) -> StoreResult<u64> {
        let n = execute(
            self.conn()?,
            PURGE_DELIVERIES,
            params![changed_before, page_limit(limit)],
        )?;
        Ok(n as u64)
    }

    async fn purge_messages(&mut self, created_before: Millis, limit: u32) -> StoreResult<u64> {
        let n = execute(self.conn()?, PURGE_MESSAGES, params![created_before, page_limit(limit)])?;
        Ok(n as u64)
    }

    async fn purge_bulks(&mut self, created_before: Millis, limit: u32) -> StoreResult<u64> {
        let n = execute(self.conn()?, PURGE_BULKS, params![created_before, page_limit(limit)])?;
        Ok(n as u64)
    }

    async fn purge_idempotency_records(&mut self, expired_before: Millis, limit: u32) -> StoreResult<u64> {
        let n = execute(
            self.conn()?,
            PURGE_IDEMPOTENCY,
            params![expired_before, page_limit(limit)],
        )?;
        Ok(n as u64)
    }

    async fn purge_merge_snapshots(&mut self, created_before: Millis, limit: u32) -> StoreResult<u64> {
        let n = execute(
            self.conn()?,
            PURGE_MERGE_SNAPSHOTS,
            params![created_before, page_limit(limit)],
        )?;
        Ok(n as u64)
    }

    async fn purge_merge_entries(&mut self, created_before: Millis, limit: u32) -> StoreResult<u64> {
        let n = execute(
            self.conn()?,
            PURGE_MERGE_ENTRIES,
            params![created_before, page_limit(limit)],
        )?;
        Ok(n as u64)
    }
}
