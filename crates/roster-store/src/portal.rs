//! Sessions of the People portal (roster-server `portal`): a signed-in browser holds a random
//! session secret in a cookie; the store keeps only the secret's SHA-256 hash, the API key the
//! session acts as, and its timestamps. Kept in the database (not in a server's memory) so that
//! several server processes on one PostgreSQL share sessions, and so that deleting the API key
//! ends its sessions (the rows go with the key: `ON DELETE CASCADE`).

use async_trait::async_trait;
use roster_model::{ApiKey, Millis};
use uuid::Uuid;

use crate::StoreResult;

/// One signed-in portal session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalSession {
    /// The account of the API key (every session query filters by it where it can).
    pub account_id: Uuid,
    /// Lowercase hex SHA-256 of the session secret (the cookie's value); the secret itself is
    /// never stored.
    pub id_hash: String,
    /// The API key the session acts as.
    pub api_key_id: Uuid,
    /// When the session was created.
    pub created_at: Millis,
    /// The last request of the session (recorded at most once a minute); idle expiry counts
    /// from here.
    pub last_seen_at: Millis,
    /// The absolute end of the session, whatever its activity.
    pub expires_at: Millis,
    /// A one-time message for the next page (set by an action before its redirect).
    pub flash: Option<String>,
}

/// Portal session storage inside one transaction (a supertrait of [`Tx`](crate::Tx)).
#[async_trait]
pub trait PortalTx: Send {
    /// Inserts a session.
    async fn insert_portal_session(&mut self, session: &PortalSession) -> StoreResult<()>;
    /// A session by the hash of its secret, with the API key it acts as (`None` when either
    /// is gone). Expiry is the caller's rule.
    async fn portal_session(&mut self, id_hash: &str) -> StoreResult<Option<(PortalSession, ApiKey)>>;
    /// Records activity: sets `last_seen_at` to `now` unless it was recorded less than
    /// `min_interval` ago (one write a minute for a busy session, not one per request).
    async fn touch_portal_session(&mut self, id_hash: &str, now: Millis, min_interval: Millis) -> StoreResult<()>;
    /// Sets (or clears) the one-time message of a session.
    async fn set_portal_flash(&mut self, id_hash: &str, flash: Option<&str>) -> StoreResult<()>;
    /// Deletes a session; whether it existed.
    async fn delete_portal_session(&mut self, id_hash: &str) -> StoreResult<bool>;
    /// Deletes up to `limit` sessions of the account that ended: idle since before
    /// `idle_before`, or past their `expires_at` at `now`. Returns how many went.
    async fn delete_ended_portal_sessions(
        &mut self,
        account_id: Uuid,
        idle_before: Millis,
        now: Millis,
        limit: u32,
    ) -> StoreResult<u64>;
}
