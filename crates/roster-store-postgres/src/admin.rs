//! [`AdminTx`] on PostgreSQL: the deletions of the management API.
//!
//! Locking: `application_for_update` takes the application's row with `FOR UPDATE`, which
//! conflicts with the `FOR KEY SHARE` lock every insert of an installation or message referring
//! to it takes for its foreign key: a registration racing the deletion either committed before
//! (its installation is seen and deleted here) or waits and then fails its foreign-key check.
//! `api_key_for_update` locks the key's row so that two deletions of one key serialise.
//! `delete_attribute_values` locks the holders in id order (`FOR UPDATE`), as one statement, so
//! that a concurrent write of one of them is either seen or waits for this transaction.
//! No schema change: installations and persons take their audience index rows with them
//! (ON DELETE CASCADE), messages their audience jobs and delivery records.

use async_trait::async_trait;
use roster_model::{ApiKey, Application, AttributeScope, Millis};
use roster_store::columns::id;
use roster_store::{AdminTx, StoreError, StoreResult, api_key_columns, application_columns, page_limit};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::rows;
use crate::sql::Conn;
use crate::tx::PgTx;

/// `custom_attributes` without `name`, as stored text.
fn without(attributes: &str, name: &str) -> StoreResult<String> {
    let mut map: Map<String, Value> =
        serde_json::from_str(attributes).map_err(|e| StoreError::Other(format!("corrupt custom_attributes: {e}")))?;
    map.remove(name);
    roster_store::columns::json(&map)
}

fn key_and_text(row: &sqlx::postgres::PgRow) -> StoreResult<(String, String)> {
    Ok((rows::get(row, 0)?, rows::get(row, 1)?))
}

/// The statements of one table for [`strip`]: the holders of attribute `$2` in account `$1`,
/// locked in key order, and the rewrite of one of them (`$2` its key, `$3` now, `$4` the
/// attributes).
struct StripSql {
    select: &'static str,
    update: &'static str,
}

const PERSONS: StripSql = StripSql {
    select: "SELECT id, custom_attributes FROM persons WHERE account_id = $1 \
             AND jsonb_exists(custom_attributes::jsonb, $2) ORDER BY id FOR UPDATE",
    update: "UPDATE persons SET custom_attributes = $4, version = version + 1, updated_at = $3 \
             WHERE account_id = $1 AND id = $2",
};

const INSTALLATIONS: StripSql = StripSql {
    select: "SELECT push_reg_id, custom_attributes FROM installations WHERE account_id = $1 \
             AND jsonb_exists(custom_attributes::jsonb, $2) ORDER BY push_reg_id FOR UPDATE",
    update: "UPDATE installations SET custom_attributes = $4, updated_at = $3 \
             WHERE account_id = $1 AND push_reg_id = $2",
};

/// Removes `name` from `custom_attributes` of the rows holding it; how many rows changed.
async fn strip(conn: &mut Conn, sql: &StripSql, account_id: Uuid, name: &str, now: Millis) -> StoreResult<u64> {
    let holders = conn
        .query_all(
            sqlx::query(sql.select).bind(id(account_id)).bind(name.to_string()),
            key_and_text,
        )
        .await?;
    for (row_key, attributes) in &holders {
        let stripped = without(attributes, name)?;
        conn.execute(
            sqlx::query(sql.update)
                .bind(id(account_id))
                .bind(row_key.clone())
                .bind(now)
                .bind(stripped),
        )
        .await?;
    }
    Ok(holders.len() as u64)
}

#[async_trait]
impl AdminTx for PgTx {
    async fn api_key_for_update(&mut self, account_id: Uuid, key_id: Uuid) -> StoreResult<Option<ApiKey>> {
        let sql = concat!(
            "SELECT ",
            api_key_columns!(),
            " FROM api_keys WHERE account_id = $1 AND id = $2 FOR UPDATE"
        );
        self.conn()?
            .query_opt(sqlx::query(sql).bind(id(account_id)).bind(id(key_id)), rows::api_key)
            .await
    }

    async fn delete_api_key(&mut self, account_id: Uuid, key_id: Uuid) -> StoreResult<bool> {
        self.conn()?
            .execute(
                sqlx::query("DELETE FROM api_keys WHERE account_id = $1 AND id = $2")
                    .bind(id(account_id))
                    .bind(id(key_id)),
            )
            .await
            .map(|n| n > 0)
    }

    async fn touch_api_key(
        &mut self,
        account_id: Uuid,
        key_id: Uuid,
        now: i64,
        min_interval_ms: i64,
    ) -> StoreResult<bool> {
        self.conn()?
            .execute(
                sqlx::query(
                    "UPDATE api_keys SET last_used_at = $3 WHERE account_id = $1 AND id = $2 \
                     AND (last_used_at IS NULL OR last_used_at <= $4)",
                )
                .bind(id(account_id))
                .bind(id(key_id))
                .bind(now)
                .bind(now - min_interval_ms),
            )
            .await
            .map(|n| n > 0)
    }

    async fn application_for_update(&mut self, account_id: Uuid, app_id: Uuid) -> StoreResult<Option<Application>> {
        let sql = concat!(
            "SELECT ",
            application_columns!(),
            " FROM applications WHERE account_id = $1 AND id = $2 FOR UPDATE"
        );
        self.conn()?
            .query_opt(
                sqlx::query(sql).bind(id(account_id)).bind(id(app_id)),
                rows::application,
            )
            .await
    }

    async fn installation_owners(
        &mut self,
        account_id: Uuid,
        application_id: Uuid,
        limit: u32,
    ) -> StoreResult<Vec<Uuid>> {
        self.conn()?
            .query_all(
                sqlx::query(
                    "SELECT DISTINCT person_id FROM installations WHERE application_id = $1 AND account_id = $2 \
                     ORDER BY person_id LIMIT $3",
                )
                .bind(id(application_id))
                .bind(id(account_id))
                .bind(page_limit(limit)),
                |r| rows::uuid_at(r, 0),
            )
            .await
    }

    async fn delete_installations_of_owners(
        &mut self,
        account_id: Uuid,
        application_id: Uuid,
        persons: &[Uuid],
    ) -> StoreResult<u64> {
        let persons: Vec<String> = persons.iter().map(|p| id(*p)).collect();
        self.conn()?
            .execute(
                sqlx::query(
                    "DELETE FROM installations WHERE account_id = $1 AND application_id = $2 \
                     AND person_id = ANY($3)",
                )
                .bind(id(account_id))
                .bind(id(application_id))
                .bind(persons),
            )
            .await
    }

    async fn delete_application(&mut self, account_id: Uuid, app_id: Uuid) -> StoreResult<bool> {
        let conn = self.conn()?;
        let (account, app) = (id(account_id), id(app_id));
        // Audience jobs and delivery records go with their messages (ON DELETE CASCADE); the
        // bulks of the deleted messages go when no other message is left in them.
        conn.execute(
            sqlx::query(
                "WITH gone AS (DELETE FROM messages WHERE application_id = $1 AND account_id = $2 \
                               RETURNING bulk_id) \
                 DELETE FROM bulks b WHERE b.account_id = $2 AND b.bulk_id IN (SELECT bulk_id FROM gone) \
                 AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.account_id = $2 AND m.bulk_id = b.bulk_id \
                                 AND m.application_id <> $1)",
            )
            .bind(app.clone())
            .bind(account.clone()),
        )
        .await?;
        conn.execute(
            sqlx::query("DELETE FROM jwt_keys WHERE application_id = $1 AND account_id = $2")
                .bind(app.clone())
                .bind(account.clone()),
        )
        .await?;
        conn.execute(
            sqlx::query("DELETE FROM applications WHERE id = $1 AND account_id = $2")
                .bind(app)
                .bind(account),
        )
        .await
        .map(|n| n > 0)
    }

    async fn delete_attribute_values(
        &mut self,
        account_id: Uuid,
        scope: AttributeScope,
        name: &str,
        now: Millis,
    ) -> StoreResult<u64> {
        let conn = self.conn()?;
        // Custom attribute names never start with '$' (people.md §8.2), the reserved rows of the
        // person index always do: deleting by name touches only the attribute's rows.
        let (changed, table) = match scope {
            AttributeScope::Person => (
                strip(conn, &PERSONS, account_id, name, now).await?,
                "person_attribute_values",
            ),
            AttributeScope::Installation => (
                strip(conn, &INSTALLATIONS, account_id, name, now).await?,
                "installation_attribute_values",
            ),
        };
        // One statement per kind of row, each through its partial index (no index holds all of
        // an attribute's rows, migration 0009).
        for kind in roster_store::audience::index::CUSTOM_ROW_KINDS {
            let sql = format!("DELETE FROM {table} WHERE account_id = $1 AND name = $2 AND {kind}");
            conn.execute(
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id(account_id))
                    .bind(name.to_string()),
            )
            .await?;
        }
        Ok(changed)
    }

    async fn delete_attribute_definition(
        &mut self,
        account_id: Uuid,
        scope: AttributeScope,
        name: &str,
    ) -> StoreResult<bool> {
        self.conn()?
            .execute(
                sqlx::query("DELETE FROM attribute_definitions WHERE account_id = $1 AND scope = $2 AND name = $3")
                    .bind(id(account_id))
                    .bind(scope.as_str())
                    .bind(name.to_string()),
            )
            .await
            .map(|n| n > 0)
    }
}
