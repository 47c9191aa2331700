//! [`AdminTx`] on SQLite: the deletions of the management API. SQLite has one writer, so a write
//! transaction already excludes every concurrent change: the `*_for_update` reads are plain reads.
//! No schema change: deleting an installation or a person takes its audience index rows with it
//! (ON DELETE CASCADE), deleting a message takes its audience job and delivery records.

use async_trait::async_trait;
use roster_model::{ApiKey, Application, AttributeScope, Millis};
use roster_store::columns::id;
use roster_store::{AdminTx, StoreError, StoreResult, api_key_columns, application_columns, page_limit};
use rusqlite::{Connection, params};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::rows;
use crate::sql::{execute, query_all, query_opt};
use crate::tx::SqliteTx;

/// `custom_attributes` without `name`, as stored text.
fn without(attributes: &str, name: &str) -> StoreResult<String> {
    let mut map: Map<String, Value> =
        serde_json::from_str(attributes).map_err(|e| StoreError::Other(format!("corrupt custom_attributes: {e}")))?;
    map.remove(name);
    roster_store::columns::json(&map)
}

/// Rewrites `custom_attributes` of the rows of `table` (keyed by `key`) of the account that hold
/// `name`, with `set` (extra assignments, `?3` is `now`); how many rows changed.
fn strip(
    conn: &Connection,
    table: &str,
    key: &str,
    set: &str,
    account_id: Uuid,
    name: &str,
    now: Millis,
) -> StoreResult<u64> {
    let select = format!(
        "SELECT {key}, custom_attributes FROM {table} WHERE account_id = ?1 \
         AND EXISTS (SELECT 1 FROM json_each({table}.custom_attributes) WHERE key = ?2)"
    );
    let holders: Vec<(String, String)> = query_all(conn, &select, params![id(account_id), name], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    let update = format!("UPDATE {table} SET custom_attributes = ?4, {set} WHERE account_id = ?1 AND {key} = ?2");
    for (row_key, attributes) in &holders {
        let stripped = without(attributes, name)?;
        execute(conn, &update, params![id(account_id), row_key, now, stripped])?;
    }
    Ok(holders.len() as u64)
}

#[async_trait]
impl AdminTx for SqliteTx {
    async fn api_key_for_update(&mut self, account_id: Uuid, key_id: Uuid) -> StoreResult<Option<ApiKey>> {
        query_opt(
            self.conn()?,
            concat!(
                "SELECT ",
                api_key_columns!(),
                " FROM api_keys WHERE account_id = ?1 AND id = ?2"
            ),
            [id(account_id), id(key_id)],
            rows::api_key,
        )
    }

    async fn delete_api_key(&mut self, account_id: Uuid, key_id: Uuid) -> StoreResult<bool> {
        execute(
            self.conn()?,
            "DELETE FROM api_keys WHERE account_id = ?1 AND id = ?2",
            [id(account_id), id(key_id)],
        )
        .map(|n| n > 0)
    }

    async fn touch_api_key(
        &mut self,
        account_id: Uuid,
        key_id: Uuid,
        now: i64,
        min_interval_ms: i64,
    ) -> StoreResult<bool> {
        execute(
            self.conn()?,
            "UPDATE api_keys SET last_used_at = ?3 WHERE account_id = ?1 AND id = ?2 \
             AND (last_used_at IS NULL OR last_used_at <= ?4)",
            rusqlite::params![id(account_id), id(key_id), now, now - min_interval_ms],
        )
        .map(|n| n > 0)
    }

    async fn application_for_update(&mut self, account_id: Uuid, app_id: Uuid) -> StoreResult<Option<Application>> {
        query_opt(
            self.conn()?,
            concat!(
                "SELECT ",
                application_columns!(),
                " FROM applications WHERE account_id = ?1 AND id = ?2"
            ),
            [id(account_id), id(app_id)],
            rows::application,
        )
    }

    async fn installation_owners(
        &mut self,
        account_id: Uuid,
        application_id: Uuid,
        limit: u32,
    ) -> StoreResult<Vec<Uuid>> {
        query_all(
            self.conn()?,
            "SELECT DISTINCT person_id FROM installations WHERE application_id = ?1 AND account_id = ?2 \
             ORDER BY person_id LIMIT ?3",
            params![id(application_id), id(account_id), page_limit(limit)],
            |r| rows::uuid_at(r, 0),
        )
    }

    async fn delete_installations_of_owners(
        &mut self,
        account_id: Uuid,
        application_id: Uuid,
        persons: &[Uuid],
    ) -> StoreResult<u64> {
        let conn = self.conn()?;
        let mut deleted = 0;
        for person in persons {
            deleted += execute(
                conn,
                "DELETE FROM installations WHERE account_id = ?1 AND person_id = ?2 AND application_id = ?3",
                [id(account_id), id(*person), id(application_id)],
            )? as u64;
        }
        Ok(deleted)
    }

    async fn delete_application(&mut self, account_id: Uuid, app_id: Uuid) -> StoreResult<bool> {
        let conn = self.conn()?;
        let (account, app) = (id(account_id), id(app_id));
        let bulks: Vec<String> = query_all(
            conn,
            "SELECT DISTINCT bulk_id FROM messages WHERE application_id = ?1 AND account_id = ?2",
            [&app, &account],
            |r| r.get(0),
        )?;
        // Audience jobs and delivery records go with their messages (ON DELETE CASCADE).
        execute(
            conn,
            "DELETE FROM messages WHERE application_id = ?1 AND account_id = ?2",
            [&app, &account],
        )?;
        for bulk in &bulks {
            execute(
                conn,
                "DELETE FROM bulks WHERE account_id = ?1 AND bulk_id = ?2 \
                 AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.account_id = ?1 AND m.bulk_id = ?2)",
                [&account, bulk],
            )?;
        }
        execute(
            conn,
            "DELETE FROM jwt_keys WHERE application_id = ?1 AND account_id = ?2",
            [&app, &account],
        )?;
        execute(
            conn,
            "DELETE FROM applications WHERE id = ?1 AND account_id = ?2",
            [&app, &account],
        )
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
        match scope {
            AttributeScope::Person => {
                let changed = strip(
                    conn,
                    "persons",
                    "id",
                    "version = version + 1, updated_at = ?3",
                    account_id,
                    name,
                    now,
                )?;
                delete_value_rows(conn, "person_attribute_values", account_id, name)?;
                Ok(changed)
            }
            AttributeScope::Installation => {
                let changed = strip(
                    conn,
                    "installations",
                    "push_reg_id",
                    "updated_at = ?3",
                    account_id,
                    name,
                    now,
                )?;
                delete_value_rows(conn, "installation_attribute_values", account_id, name)?;
                Ok(changed)
            }
        }
    }

    async fn delete_attribute_definition(
        &mut self,
        account_id: Uuid,
        scope: AttributeScope,
        name: &str,
    ) -> StoreResult<bool> {
        execute(
            self.conn()?,
            "DELETE FROM attribute_definitions WHERE account_id = ?1 AND scope = ?2 AND name = ?3",
            params![id(account_id), scope.as_str(), name],
        )
        .map(|n| n > 0)
    }
}

/// Deletes every value row of the custom attribute `name`: one statement per kind of row, each
/// through its partial index (no index holds all of an attribute's rows, migration 0009).
fn delete_value_rows(conn: &Connection, table: &str, account_id: Uuid, name: &str) -> StoreResult<()> {
    for kind in roster_store::audience::index::CUSTOM_ROW_KINDS {
        execute(
            conn,
            &format!("DELETE FROM {table} WHERE account_id = ?1 AND name = ?2 AND {kind}"),
            [id(account_id), name.to_string()],
        )?;
    }
    Ok(())
}
