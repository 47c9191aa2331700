//! [`PortalTx`] on PostgreSQL: the `portal_sessions` table of `migrations/0006_portal.sql`.

use async_trait::async_trait;
use roster_model::{ApiKey, Millis};
use roster_store::{PortalSession, PortalTx, StoreResult, api_key_columns, columns, page_limit};
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::rows::{self, get, uuid_at};
use crate::tx::PgTx;

fn session(row: &PgRow) -> StoreResult<PortalSession> {
    Ok(PortalSession {
        account_id: uuid_at(row, 0)?,
        id_hash: get(row, 1)?,
        api_key_id: uuid_at(row, 2)?,
        created_at: get(row, 3)?,
        last_seen_at: get(row, 4)?,
        expires_at: get(row, 5)?,
        flash: get(row, 6)?,
    })
}

#[async_trait]
impl PortalTx for PgTx {
    async fn insert_portal_session(&mut self, s: &PortalSession) -> StoreResult<()> {
        self.conn()?
            .execute(
                sqlx::query(
                    "INSERT INTO portal_sessions (account_id, id_hash, api_key_id, created_at, \
                     last_seen_at, expires_at, flash) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(columns::id(s.account_id))
                .bind(s.id_hash.clone())
                .bind(columns::id(s.api_key_id))
                .bind(s.created_at)
                .bind(s.last_seen_at)
                .bind(s.expires_at)
                .bind(s.flash.clone()),
            )
            .await?;
        Ok(())
    }

    async fn portal_session(&mut self, id_hash: &str) -> StoreResult<Option<(PortalSession, ApiKey)>> {
        let conn = self.conn()?;
        let found = conn
            .query_opt(
                sqlx::query(
                    "SELECT account_id, id_hash, api_key_id, created_at, last_seen_at, expires_at, flash \
                     FROM portal_sessions WHERE id_hash = $1",
                )
                .bind(id_hash.to_owned()),
                session,
            )
            .await?;
        let Some(found) = found else {
            return Ok(None);
        };
        let key = conn
            .query_opt(
                sqlx::query(concat!(
                    "SELECT ",
                    api_key_columns!(),
                    " FROM api_keys WHERE account_id = $1 AND id = $2"
                ))
                .bind(columns::id(found.account_id))
                .bind(columns::id(found.api_key_id)),
                rows::api_key,
            )
            .await?;
        Ok(key.map(|key| (found, key)))
    }

    async fn touch_portal_session(&mut self, id_hash: &str, now: Millis, min_interval: Millis) -> StoreResult<()> {
        self.conn()?
            .execute(
                sqlx::query("UPDATE portal_sessions SET last_seen_at = $2 WHERE id_hash = $1 AND last_seen_at < $3")
                    .bind(id_hash.to_owned())
                    .bind(now)
                    .bind(now - min_interval),
            )
            .await?;
        Ok(())
    }

    async fn set_portal_flash(&mut self, id_hash: &str, flash: Option<&str>) -> StoreResult<()> {
        self.conn()?
            .execute(
                sqlx::query("UPDATE portal_sessions SET flash = $2 WHERE id_hash = $1")
                    .bind(id_hash.to_owned())
                    .bind(flash.map(str::to_owned)),
            )
            .await?;
        Ok(())
    }

    async fn delete_portal_session(&mut self, id_hash: &str) -> StoreResult<bool> {
        let n = self
            .conn()?
            .execute(sqlx::query("DELETE FROM portal_sessions WHERE id_hash = $1").bind(id_hash.to_owned()))
            .await?;
        Ok(n > 0)
    }

    async fn delete_ended_portal_sessions(
        &mut self,
        account_id: Uuid,
        idle_before: Millis,
        now: Millis,
        limit: u32,
    ) -> StoreResult<u64> {
        self.conn()?
            .execute(
                sqlx::query(
                    // Chosen once (a MATERIALIZED CTE), as the sweeps of retention.rs.
                    "WITH old AS MATERIALIZED (SELECT id_hash FROM portal_sessions WHERE account_id = $1 \
                     AND (last_seen_at < $2 OR expires_at <= $3) LIMIT $4 FOR UPDATE SKIP LOCKED) \
                     DELETE FROM portal_sessions WHERE id_hash IN (SELECT id_hash FROM old)",
                )
                .bind(columns::id(account_id))
                .bind(idle_before)
                .bind(now)
                .bind(page_limit(limit)),
            )
            .await
    }
}
