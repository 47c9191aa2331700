//! Storage primitives of the people side of the management API (management-api.md §7.4, §7.8,
//! §8): the merge log read by person, newest first, and the GDPR redaction of the entries that
//! name a person. A supertrait of [`Tx`](crate::Tx), so every transaction has them.

use async_trait::async_trait;
use roster_model::{MergeLogEntry, Millis};
use uuid::Uuid;

use crate::StoreResult;

/// The position of a merge-log entry in the newest-first order: `(createdAt, id)`.
pub type MergeKey = (Millis, Uuid);

/// Merge-log reads and redaction, inside one transaction. Every method filters by account.
#[async_trait]
pub trait PeopleTx: Send {
    /// Merge-log entries of an account, newest first (`createdAt` descending, then `id`
    /// descending), at most `limit` (capped at [`MAX_PAGE`](crate::MAX_PAGE)). With `person`,
    /// only the entries naming it as source or target. With `before`, only the entries that
    /// come after that key in this order (keyset paging: pass the last entry's key).
    async fn merge_entries_newest_first(
        &mut self,
        account_id: Uuid,
        person: Option<Uuid>,
        before: Option<MergeKey>,
        limit: u32,
    ) -> StoreResult<Vec<MergeLogEntry>>;

    /// Every merge-log entry naming the person as source or target, oldest first (`createdAt`,
    /// then `id`): for the GDPR export (management-api.md §8.1).
    async fn merge_entries_naming(&mut self, account_id: Uuid, person_id: Uuid) -> StoreResult<Vec<MergeLogEntry>>;

    /// GDPR erase step 4 (management-api.md §8.2): in every entry naming the person, purges
    /// both snapshots (`before`), replaces the person's id by `NULL` and sets `redacted`.
    /// Returns how many entries were changed.
    async fn redact_merge_entries(&mut self, account_id: Uuid, person_id: Uuid) -> StoreResult<u64>;
}
