//! [`PeopleTx`] on SQLite: the merge log read by person, newest first, and its GDPR redaction.
//! No schema change: the indexes of `0001_initial.sql` on `(account_id, created_at)`,
//! `(account_id, source_person_id)` and `(account_id, target_person_id)` serve every statement.

use async_trait::async_trait;
use roster_model::MergeLogEntry;
use roster_store::columns::id;
use roster_store::{MergeKey, PeopleTx, StoreResult, merge_columns, page_limit};
use rusqlite::params;
use uuid::Uuid;

use crate::rows;
use crate::sql::{execute, query_all};
use crate::tx::SqliteTx;

#[async_trait]
impl PeopleTx for SqliteTx {
    async fn merge_entries_newest_first(
        &mut self,
        account_id: Uuid,
        person: Option<Uuid>,
        before: Option<MergeKey>,
        limit: u32,
    ) -> StoreResult<Vec<MergeLogEntry>> {
        // The first page starts "before" a key greater than every stored one (i64::MAX, and an
        // id text that sorts after every lowercase UUID), so one statement serves every page.
        let (at, last_id) = match before {
            Some((at, entry)) => (at, id(entry)),
            None => (i64::MAX, "~".to_string()),
        };
        let conn = self.conn()?;
        match person {
            None => query_all(
                conn,
                concat!(
                    "SELECT ",
                    merge_columns!(),
                    " FROM merge_log WHERE account_id = ?1 AND (created_at, id) < (?2, ?3) \
                     ORDER BY created_at DESC, id DESC LIMIT ?4"
                ),
                params![id(account_id), at, last_id, page_limit(limit)],
                rows::merge_entry,
            ),
            Some(person) => query_all(
                conn,
                concat!(
                    "SELECT ",
                    merge_columns!(),
                    " FROM merge_log WHERE account_id = ?1 \
                     AND (source_person_id = ?2 OR target_person_id = ?2) \
                     AND (created_at, id) < (?3, ?4) \
                     ORDER BY created_at DESC, id DESC LIMIT ?5"
                ),
                params![id(account_id), id(person), at, last_id, page_limit(limit)],
                rows::merge_entry,
            ),
        }
    }

    async fn merge_entries_naming(&mut self, account_id: Uuid, person_id: Uuid) -> StoreResult<Vec<MergeLogEntry>> {
        query_all(
            self.conn()?,
            concat!(
                "SELECT ",
                merge_columns!(),
                " FROM merge_log WHERE account_id = ?1 \
                 AND (source_person_id = ?2 OR target_person_id = ?2) ORDER BY created_at, id"
            ),
            params![id(account_id), id(person_id)],
            rows::merge_entry,
        )
    }

    async fn redact_merge_entries(&mut self, account_id: Uuid, person_id: Uuid) -> StoreResult<u64> {
        let changed = execute(
            self.conn()?,
            "UPDATE merge_log SET \"before\" = NULL, redacted = 1, \
             source_person_id = CASE WHEN source_person_id = ?2 THEN NULL ELSE source_person_id END, \
             target_person_id = CASE WHEN target_person_id = ?2 THEN NULL ELSE target_person_id END \
             WHERE account_id = ?1 AND (source_person_id = ?2 OR target_person_id = ?2)",
            params![id(account_id), id(person_id)],
        )?;
        Ok(changed as u64)
    }
}
