//! The account's recent sends, newest first (`GET /api/v1/messages` without `bulkId`, the
//! portal's page of recent sends).

use async_trait::async_trait;
use roster_model::Millis;
use uuid::Uuid;

use crate::StoreResult;
use crate::push::Message;

/// Reading an account's messages by creation time.
#[async_trait]
pub trait SendsTx {
    /// Up to `limit` messages of the account (at most [`MAX_PAGE`](crate::MAX_PAGE)), newest
    /// first: ordered by `created_at` then `message_id`, both descending, strictly before
    /// `before` (`(created_at, message_id)`) when given.
    async fn recent_messages(
        &mut self,
        account_id: Uuid,
        before: Option<(Millis, String)>,
        limit: u32,
    ) -> StoreResult<Vec<Message>>;
}
