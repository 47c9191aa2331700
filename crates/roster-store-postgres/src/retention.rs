//! [`RetentionTx`] on PostgreSQL: batched deletes over the age indexes of
//! `migrations/0005_retention.sql`. A sweep across every account (retention is the same for all).
//! Each batch locks the rows it chose with `FOR UPDATE SKIP LOCKED`, so sweeps of several
//! processes share the work instead of waiting for one another. The batch is chosen once, in a
//! `MATERIALIZED` CTE: as a subquery the planner may run it again for every row of a nested
//! loop, and each run would lock further rows (the delivery claim in push.rs did that).

use async_trait::async_trait;
use roster_model::Millis;
use roster_store::{RetentionTx, StoreResult, page_limit};

use crate::tx::PgTx;

const PURGE_DELIVERIES: &str = "WITH old AS MATERIALIZED ( \
    SELECT account_id, delivery_id FROM deliveries WHERE status <> 'QUEUED' AND updated_at < $1 \
    ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
    DELETE FROM deliveries d USING old \
    WHERE d.account_id = old.account_id AND d.delivery_id = old.delivery_id \
    AND d.status <> 'QUEUED' AND d.updated_at < $1";
const PURGE_MESSAGES: &str = "WITH old AS MATERIALIZED ( \
    SELECT o.account_id, o.message_id FROM messages o WHERE o.created_at < $1 \
    AND NOT EXISTS (SELECT 1 FROM deliveries d \
                    WHERE d.account_id = o.account_id AND d.message_id = o.message_id) \
    AND NOT EXISTS (SELECT 1 FROM audience_jobs j \
                    WHERE j.account_id = o.account_id AND j.message_id = o.message_id) \
    ORDER BY o.created_at LIMIT $2 FOR UPDATE OF o SKIP LOCKED) \
    DELETE FROM messages m USING old \
    WHERE m.account_id = old.account_id AND m.message_id = old.message_id";
const PURGE_BULKS: &str = "WITH old AS MATERIALIZED ( \
    SELECT o.account_id, o.bulk_id FROM bulks o WHERE o.created_at < $1 \
    AND NOT EXISTS (SELECT 1 FROM messages m \
                    WHERE m.account_id = o.account_id AND m.bulk_id = o.bulk_id) \
    ORDER BY o.created_at LIMIT $2 FOR UPDATE OF o SKIP LOCKED) \
    DELETE FROM bulks b USING old \
    WHERE b.account_id = old.account_id AND b.bulk_id = old.bulk_id";
const PURGE_IDEMPOTENCY: &str = "WITH old AS MATERIALIZED ( \
    SELECT account_id, idem_key FROM idempotency_keys WHERE expires_at < $1 \
    ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
    DELETE FROM idempotency_keys k USING old \
    WHERE k.account_id = old.account_id AND k.idem_key = old.idem_key AND k.expires_at < $1";
const PURGE_MERGE_SNAPSHOTS: &str = "WITH old AS MATERIALIZED ( \
    SELECT id FROM merge_log WHERE \"before\" IS NOT NULL AND created_at < $1 \
    ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
    UPDATE merge_log e SET \"before\" = NULL FROM old \
    WHERE e.id = old.id";
const PURGE_MERGE_ENTRIES: &str = "WITH old AS MATERIALIZED ( \
    SELECT id FROM merge_log WHERE created_at < $1 \
    ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
    DELETE FROM merge_log e USING old \
    WHERE e.id = old.id";

/// Every purge statement by name, with the cut-off as `$1` and the batch size as `$2` (for the
/// query-plan test: each must be able to walk its age index).
pub const PURGE_STATEMENTS: &[(&str, &str)] = &[
    ("purge_deliveries", PURGE_DELIVERIES),
    ("purge_messages", PURGE_MESSAGES),
    ("purge_bulks", PURGE_BULKS),
    ("purge_idempotency", PURGE_IDEMPOTENCY),
    ("purge_merge_snapshots", PURGE_MERGE_SNAPSHOTS),
    ("purge_merge_entries", PURGE_MERGE_ENTRIES),
];

impl PgTx {
    /// Runs one purge statement with the cut-off as `$1` and the batch size as `$2`.
    async fn purge(&mut self, sql: &'static str, before: Millis, limit: u32) -> StoreResult<u64> {
        self.conn()?
            .execute(sqlx::query(sql).bind(before).bind(page_limit(limit)))
            .await
    }
}

#[async_trait]
impl RetentionTx for PgTx {
    async fn purge_deliveries(&mut self, changed_before: Millis, limit: u32) -> StoreResult<u64> {
        self.purge(PURGE_DELIVERIES, changed_before, limit).await
    }

    async fn purge_messages(&mut self, created_before: Millis, limit: u32) -> StoreResult<u64> {
        self.purge(PURGE_MESSAGES, created_before, limit).await
    }

    async fn purge_bulks(&mut self, created_before: Millis, limit: u32) -> StoreResult<u64> {
        self.purge(PURGE_BULKS, created_before, limit).await
    }

    async fn purge_idempotency_records(&mut self, expired_before: Millis, limit: u32) -> StoreResult<u64> {
        self.purge(PURGE_IDEMPOTENCY, expired_before, limit).await
    }

    async fn purge_merge_snapshots(&mut self, created_before: Millis, limit: u32) -> StoreResult<u64> {
        self.purge(PURGE_MERGE_SNAPSHOTS, created_before, limit).await
    }

    async fn purge_merge_entries(&mut self, created_before: Millis, limit: u32) -> StoreResult<u64> {
        self.purge(PURGE_MERGE_ENTRIES, created_before, limit).await
    }
}
