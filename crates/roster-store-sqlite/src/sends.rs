//! [`SendsTx`] on SQLite: recent messages by `messages_created_idx`.

use async_trait::async_trait;
use roster_model::Millis;
use roster_store::columns::id;
use roster_store::push::Message;
use roster_store::{SendsTx, StoreResult, message_columns, page_limit};
use rusqlite::params;
use uuid::Uuid;

use crate::push::message_row;
use crate::sql::query_all;
use crate::tx::SqliteTx;

#[async_trait]
impl SendsTx for SqliteTx {
    async fn recent_messages(
        &mut self,
        account_id: Uuid,
        before: Option<(Millis, String)>,
        limit: u32,
    ) -> StoreResult<Vec<Message>> {
        // No cursor: before the end of time.
        let (at, message_id) = before.unwrap_or((Millis::MAX, String::new()));
        query_all(
            self.conn()?,
            concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE account_id = ?1 AND (created_at < ?2 OR (created_at = ?2 AND message_id < ?3)) \
                 ORDER BY created_at DESC, message_id DESC LIMIT ?4"
            ),
            params![id(account_id), at, message_id, page_limit(limit)],
            message_row,
        )
    }
}
