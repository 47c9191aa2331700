//! [`PeopleTx`] on PostgreSQL: the SQLite backend's statements (`roster-store-sqlite/src/people.rs`)
//! in PostgreSQL's dialect, with the same filters and orders. No schema change: the merge-log
//! indexes of `0001_initial.sql` serve every statement.

use async_trait::async_trait;
use roster_model::MergeLogEntry;
use roster_store::columns::id;
use roster_store::{MergeKey, PeopleTx, StoreResult, merge_columns, page_limit};
use uuid::Uuid;

use crate::rows;
use crate::tx::PgTx;

#[async_trait]
impl PeopleTx for PgTx {
    async fn merge_entries_newest_first(
        &mut self,
        account_id: Uuid,
        person: Option<Uuid>,
        before: Option<MergeKey>,
        limit: u32,
    ) -> StoreResult<Vec<MergeLogEntry>> {
        // As on SQLite: the first page starts before a key greater than every stored one (ids
        // are COLLATE "C" text, and "~" sorts after every character of a lowercase UUID).
        let (at, last_id) = match before {
            Some((at, entry)) => (at, id(entry)),
            None => (i64::MAX, "~".to_string()),
        };
        let conn = self.conn()?;
        match person {
            None => {
                conn.query_all(
                    sqlx::query(concat!(
                        "SELECT ",
                        merge_columns!(),
                        " FROM merge_log WHERE account_id = $1 AND (created_at, id) < ($2, $3) \
                         ORDER BY created_at DESC, id DESC LIMIT $4"
                    ))
                    .bind(id(account_id))
                    .bind(at)
                    .bind(last_id)
                    .bind(page_limit(limit)),
                    rows::merge_entry,
                )
                .await
            }
            Some(person) => {
                conn.query_all(
                    sqlx::query(concat!(
                        "SELECT ",
                        merge_columns!(),
                        " FROM merge_log WHERE account_id = $1 \
                         AND (source_person_id = $2 OR target_person_id = $2) \
                         AND (created_at, id) < ($3, $4) \
                         ORDER BY created_at DESC, id DESC LIMIT $5"
                    ))
                    .bind(id(account_id))
                    .bind(id(person))
                    .bind(at)
                    .bind(last_id)
                    .bind(page_limit(limit)),
                    rows::merge_entry,
                )
                .await
            }
        }
    }

    async fn merge_entries_naming(&mut self, account_id: Uuid, person_id: Uuid) -> StoreResult<Vec<MergeLogEntry>> {
        self.conn()?
            .query_all(
                sqlx::query(concat!(
                    "SELECT ",
                    merge_columns!(),
                    " FROM merge_log WHERE account_id = $1 \
                     AND (source_person_id = $2 OR target_person_id = $2) ORDER BY created_at, id"
                ))
                .bind(id(account_id))
                .bind(id(person_id)),
                rows::merge_entry,
            )
            .await
    }

    async fn redact_merge_entries(&mut self, account_id: Uuid, person_id: Uuid) -> StoreResult<u64> {
        self.conn()?
            .execute(
                sqlx::query(
                    "UPDATE merge_log SET \"before\" = NULL, redacted = TRUE, \
                     source_person_id = CASE WHEN source_person_id = $2 THEN NULL ELSE source_person_id END, \
                     target_person_id = CASE WHEN target_person_id = $2 THEN NULL ELSE target_person_id END \
                     WHERE account_id = $1 AND (source_person_id = $2 OR target_person_id = $2)",
                )
                .bind(id(account_id))
                .bind(id(person_id)),
            )
            .await
    }
}
