//! Storage primitives of the management API's deletions (management-api.md §7.1–§7.3): API
//! keys, applications with everything that hangs on them, and attribute definitions with every
//! stored value of them. A supertrait of [`Tx`](crate::Tx), so every transaction has them.
//!
//! The rules (last admin key, which persons go with an application, which segments become
//! invalid) live in roster-core; these methods only read, lock and delete rows.

use async_trait::async_trait;
use roster_model::{ApiKey, Application, AttributeScope, Millis};
use uuid::Uuid;

use crate::StoreResult;

/// Deletions of the management API inside one write transaction (the locking reads fail in a
/// `begin_read` one on PostgreSQL). Every method filters by account.
#[async_trait]
pub trait AdminTx: Send {
    /// An API key of the account by id, locked until commit (`FOR UPDATE` where the backend has
    /// row locks).
    async fn api_key_for_update(&mut self, account_id: Uuid, id: Uuid) -> StoreResult<Option<ApiKey>>;
    /// Deletes an API key of the account; whether it existed.
    async fn delete_api_key(&mut self, account_id: Uuid, id: Uuid) -> StoreResult<bool>;
    /// management-api.md §1.1: sets the key's `lastUsedAt` to `now` unless it was set less than
    /// `min_interval_ms` ago (so a busy key costs one write per interval); whether it wrote.
    async fn touch_api_key(&mut self, account_id: Uuid, id: Uuid, now: i64, min_interval_ms: i64) -> StoreResult<bool>;

    /// An application of the account, locked until commit (`FOR UPDATE` where the backend has
    /// row locks: no installation or message referring to it can be
    /// inserted by another transaction until this one ends).
    async fn application_for_update(&mut self, account_id: Uuid, id: Uuid) -> StoreResult<Option<Application>>;
    /// The distinct owners of the application's installations, by id, at most `limit` (capped at
    /// [`MAX_PAGE`](crate::MAX_PAGE)).
    async fn installation_owners(
        &mut self,
        account_id: Uuid,
        application_id: Uuid,
        limit: u32,
    ) -> StoreResult<Vec<Uuid>>;
    /// Deletes the installations of the application owned by the given persons (with their
    /// audience index rows); how many were deleted.
    async fn delete_installations_of_owners(
        &mut self,
        account_id: Uuid,
        application_id: Uuid,
        persons: &[Uuid],
    ) -> StoreResult<u64>;
    /// Deletes an application with its JWT keys, its messages, their audience jobs and delivery
    /// records, and the bulks left without messages; whether it existed. Its installations must
    /// have been deleted first.
    async fn delete_application(&mut self, account_id: Uuid, id: Uuid) -> StoreResult<bool>;

    /// Removes the custom attribute `name` from every person (scope `PERSON`: their `version`
    /// goes up by one and `updatedAt` becomes `now`) or installation (scope `INSTALLATION`:
    /// `updatedAt` becomes `now`) of the account that holds it, with its audience index rows.
    /// Returns how many persons or installations changed.
    async fn delete_attribute_values(
        &mut self,
        account_id: Uuid,
        scope: AttributeScope,
        name: &str,
        now: Millis,
    ) -> StoreResult<u64>;
    /// Deletes an attribute definition; whether it existed.
    async fn delete_attribute_definition(
        &mut self,
        account_id: Uuid,
        scope: AttributeScope,
        name: &str,
    ) -> StoreResult<bool>;
}
