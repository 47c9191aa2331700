//! [`PortalTx`] on SQLite: the `portal_sessions` table of `migrations/0006_portal.sql`.

use async_trait::async_trait;
use roster_model::{ApiKey, Millis};
use roster_store::{PortalSession, PortalTx, StoreResult, api_key_columns, columns, page_limit};
use rusqlite::{Row, params};
use uuid::Uuid;

use crate::rows::{self, uuid_at};
use crate::sql::{execute, query_opt};
use crate::tx::SqliteTx;

const SESSION_COLUMNS: &str = "account_id, id_hash, api_key_id, created_at, last_seen_at, expires_at, flash";

fn session(row: &Row<'_>) -> rusqlite::Result<PortalSession> {
    Ok(PortalSession {
        account_id: uuid_at(row, 0)?,
        id_hash: row.get(1)?,
        api_key_id: uuid_at(row, 2)?,
        created_at: row.get(3)?,
        last_seen_at: row.get(4)?,
        expires_at: row.get(5)?,
        flash: row.get(6)?,
    })
}

#[async_trait]
impl PortalTx for SqliteTx {
    async fn insert_portal_session(&mut self, s: &PortalSession) -> StoreResult<()> {
        execute(
            self.conn()?,
            "INSERT INTO portal_sessions (account_id, id_hash, api_key_id, created_at, last_seen_at, \
             expires_at, flash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                columns::id(s.account_id),
                s.id_hash,
                columns::id(s.api_key_id),
                s.created_at,
                s.last_seen_at,
                s.expires_at,
                s.flash
            ],
        )?;
        Ok(())
    }

    async fn portal_session(&mut self, id_hash: &str) -> StoreResult<Option<(PortalSession, ApiKey)>> {
        let conn = self.conn()?;
        let found = query_opt(
            conn,
            &format!("SELECT {SESSION_COLUMNS} FROM portal_sessions WHERE id_hash = ?1"),
            params![id_hash],
            session,
        )?;
        let Some(found) = found else {
            return Ok(None);
        };
        let key = query_opt(
            conn,
            concat!(
                "SELECT ",
                api_key_columns!(),
                " FROM api_keys WHERE account_id = ?1 AND id = ?2"
            ),
            params![columns::id(found.account_id), columns::id(found.api_key_id)],
            rows::api_key,
        )?;
        Ok(key.map(|key| (found, key)))
    }

    async fn touch_portal_session(&mut self, id_hash: &str, now: Millis, min_interval: Millis) -> StoreResult<()> {
        execute(
            self.conn()?,
            "UPDATE portal_sessions SET last_seen_at = ?2 WHERE id_hash = ?1 AND last_seen_at < ?3",
            params![id_hash, now, now - min_interval],
        )?;
        Ok(())
    }

    async fn set_portal_flash(&mut self, id_hash: &str, flash: Option<&str>) -> StoreResult<()> {
        execute(
            self.conn()?,
            "UPDATE portal_sessions SET flash = ?2 WHERE id_hash = ?1",
            params![id_hash, flash],
        )?;
        Ok(())
    }

    async fn delete_portal_session(&mut self, id_hash: &str) -> StoreResult<bool> {
        let n = execute(
            self.conn()?,
            "DELETE FROM portal_sessions WHERE id_hash = ?1",
            params![id_hash],
        )?;
        Ok(n > 0)
    }

    async fn delete_ended_portal_sessions(
        &mut self,
        account_id: Uuid,
        idle_before: Millis,
        now: Millis,
        limit: u32,
    ) -> StoreResult<u64> {
        let n = execute(
            self.conn()?,
            "DELETE FROM portal_sessions WHERE id_hash IN ( \
             SELECT id_hash FROM portal_sessions WHERE account_id = ?1 \
             AND (last_seen_at < ?2 OR expires_at <= ?3) LIMIT ?4)",
            params![columns::id(account_id), idle_before, now, page_limit(limit)],
        )?;
        Ok(n as u64)
    }
}
