//! Retention purges (management-api.md §3.3, §6.7; people.md §9.2): batched deletes of rows that
//! have outlived their retention, run by the server's sweeper (roster-server `retention.rs`).
//!
//! Unlike the rest of the store, these methods are a global sweep across accounts: retention is
//! the same for every account, and walking one index by age serves them all. Each call touches
//! at most `limit` rows, chosen by an indexed age column (oldest first), so a sweep is a series
//! of short transactions however much there is to purge. Every statement repeats its age and
//! status conditions on the rows it deletes, so a row that changed since it was chosen is kept;
//! PostgreSQL skips rows that another process's sweep holds (`SKIP LOCKED`), so several
//! processes may sweep at once.

use async_trait::async_trait;
use roster_model::Millis;

use crate::StoreResult;

/// Retention purges inside one transaction (a supertrait of [`Tx`](crate::Tx)). Each returns how
/// many rows it deleted (or changed); fewer than `limit` means nothing older is left.
#[async_trait]
pub trait RetentionTx: Send {
    /// Deletes up to `limit` delivery records whose last change (`updated_at`) is before
    /// `changed_before`. A `QUEUED` record is never deleted, however old.
    async fn purge_deliveries(&mut self, changed_before: Millis, limit: u32) -> StoreResult<u64>;
    /// Deletes up to `limit` messages created before `created_before` that have no delivery
    /// records left and no audience resolution pending.
    async fn purge_messages(&mut self, created_before: Millis, limit: u32) -> StoreResult<u64>;
    /// Deletes up to `limit` bulks created before `created_before` that have no messages left
    /// (their `bulkId` may then be used again).
    async fn purge_bulks(&mut self, created_before: Millis, limit: u32) -> StoreResult<u64>;
    /// Deletes up to `limit` idempotency records that expired (`expires_at`) before `expired_before`.
    async fn purge_idempotency_records(&mut self, expired_before: Millis, limit: u32) -> StoreResult<u64>;
    /// Clears the snapshots (`before`) of up to `limit` merge-log entries created before
    /// `created_before`; the entries stay, no longer reversible.
    async fn purge_merge_snapshots(&mut self, created_before: Millis, limit: u32) -> StoreResult<u64>;
    /// Deletes up to `limit` merge-log entries created before `created_before`.
    async fn purge_merge_entries(&mut self, created_before: Millis, limit: u32) -> StoreResult<u64>;
}
