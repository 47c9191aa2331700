//! The statements behind every `Tx` method, as plain functions over a [`Conn`] (a connection
//! inside a transaction). Statements are the SQLite backend's (`roster-store-sqlite/src/sql.rs`)
//! in PostgreSQL's dialect, with the same filters and the same orders, so both backends answer
//! alike; where PostgreSQL allows fewer round trips for the same effect (key lists as arrays,
//! one statement for several child tables) it takes them, since every statement here is a
//! network round trip rather than a function call. Every statement is a `&'static str` with
//! binds (sqlx prepares and caches it per connection), and every query on an entity that has
//! an account filters by it.

use std::collections::HashMap;

use roster_model::validate::email_key;
use roster_model::{
    Account, ApiKey, Application, AttributeDefinition, AttributeScope, Installation, JwtKey, MergeLogEntry, Millis,
    Person, Provider, TokenClearedReason,
};
// Column lists (the schema's column order, in the order the decoders of `rows` read them) and
// the stored form of ids: the same in every backend, from roster-store.
use roster_store::columns::{id, json, opt_json};
use roster_store::{
    RowKind, Snapshot, StoreError, StoreResult, account_columns, api_key_columns, application_columns,
    definition_columns, installation_columns, jwt_key_columns, merge_columns, page_limit, person_columns,
};
use sqlx::Postgres;
use sqlx::postgres::{PgArguments, PgRow};

use crate::error::{aborts_transaction, map_err, replay};
use crate::rows;
use uuid::Uuid;

/// A statement with its binds, ready to run.
pub(crate) type PgQuery = sqlx::query::Query<'static, Postgres, PgArguments>;

/// A transaction's connection, and whether PostgreSQL has aborted the transaction.
pub(crate) struct Conn {
    tx: sqlx::Transaction<'static, Postgres>,
    /// Read-write (`begin`) rather than read-only (`begin_read`): only a write transaction locks
    /// the rows it reads for update.
    write: bool,
    /// After a database error PostgreSQL refuses every statement but ROLLBACK, and answers a
    /// COMMIT with a silent rollback. Kept (as the error to repeat) so that a later statement
    /// fails without a round trip and, above all, a COMMIT is reported as failed instead of
    /// looking successful.
    failed: Option<StoreError>,
}

impl Conn {
    /// Wraps a transaction that has just begun.
    pub(crate) fn new(tx: sqlx::Transaction<'static, Postgres>, write: bool) -> Conn {
        Conn {
            tx,
            write,
            failed: None,
        }
    }

    /// Ends the transaction with COMMIT.
    pub(crate) async fn commit(self) -> StoreResult<()> {
        if let Some(first) = self.failed {
            // COMMIT would roll back and report success: roll back and say why. A failed
            // ROLLBACK only means the connection is gone, which ends the transaction too.
            if let Err(e) = self.tx.rollback().await {
                tracing::warn!(error = %e, "ROLLBACK of an aborted transaction failed");
            }
            return Err(replay(&first));
        }
        if !self.write {
            self.end_read();
            return Ok(());
        }
        self.tx.commit().await.map_err(map_err)
    }

    /// Ends the transaction with ROLLBACK.
    pub(crate) async fn rollback(self) -> StoreResult<()> {
        if !self.write {
            self.end_read();
            return Ok(());
        }
        self.tx.rollback().await.map_err(map_err)
    }

    /// Ends a read-only transaction without waiting for it: it changed nothing and locks no row,
    /// so there is nothing to wait for. Dropping it queues its `ROLLBACK`, and the pool sends
    /// that together with the check it makes of every connection it takes back (sqlx pings on
    /// release). That is one round trip, after the caller has moved on, instead of two. The
    /// connection serves no one until that round trip is done.
    fn end_read(self) {
        debug_assert!(!self.write);
        drop(self.tx);
    }

    /// Maps an error of a statement, remembering whether it aborted the transaction.
    fn note(&mut self, e: sqlx::Error) -> StoreError {
        let aborted = aborts_transaction(&e);
        let mapped = map_err(e);
        if aborted && self.failed.is_none() {
            self.failed = Some(replay(&mapped));
        }
        mapped
    }

    /// Refuses a statement on an aborted transaction.
    fn check(&self) -> StoreResult<()> {
        match &self.failed {
            Some(first) => Err(replay(first)),
            None => Ok(()),
        }
    }

    /// Runs a statement; how many rows it changed.
    pub(crate) async fn execute(&mut self, query: PgQuery) -> StoreResult<u64> {
        self.check()?;
        match query.execute(&mut *self.tx).await {
            Ok(done) => Ok(done.rows_affected()),
            Err(e) => Err(self.note(e)),
        }
    }

    /// Runs a query expected to return at most one row.
    async fn fetch_optional(&mut self, query: PgQuery) -> StoreResult<Option<PgRow>> {
        self.check()?;
        query.fetch_optional(&mut *self.tx).await.map_err(|e| self.note(e))
    }

    /// Runs a query and returns every row.
    async fn fetch_all(&mut self, query: PgQuery) -> StoreResult<Vec<PgRow>> {
        self.check()?;
        query.fetch_all(&mut *self.tx).await.map_err(|e| self.note(e))
    }

    /// Runs a query expected to return at most one row, and decodes it.
    pub(crate) async fn query_opt<T>(
        &mut self,
        query: PgQuery,
        decode: fn(&PgRow) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        self.fetch_optional(query).await?.as_ref().map(decode).transpose()
    }

    /// Runs a query and decodes every row.
    pub(crate) async fn query_all<T>(
        &mut self,
        query: PgQuery,
        decode: fn(&PgRow) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        self.fetch_all(query).await?.iter().map(decode).collect()
    }

    /// A `count(*)`.
    pub(crate) async fn count(&mut self, query: PgQuery) -> StoreResult<u64> {
        let row = self.fetch_optional(query).await?;
        let n: i64 = match row {
            Some(row) => rows::get(&row, 0)?,
            None => return Err(StoreError::Other("count(*) returned no row".into())),
        };
        u64::try_from(n).map_err(|_| StoreError::Other(format!("negative count {n}")))
    }
}

/// An UPDATE of one row by key: `NotFound` if there is no such row.
pub(crate) fn expect_one(changed: u64) -> StoreResult<()> {
    match changed {
        0 => Err(StoreError::NotFound),
        _ => Ok(()),
    }
}

// --- accounts -----------------------------------------------------------------------------------

pub(crate) async fn default_account(c: &mut Conn) -> StoreResult<Option<Account>> {
    c.query_opt(
        sqlx::query(concat!(
            "SELECT ",
            account_columns!(),
            " FROM accounts ORDER BY created_at, id LIMIT 1"
        )),
        rows::account,
    )
    .await
}

pub(crate) async fn account(c: &mut Conn, account_id: Uuid) -> StoreResult<Option<Account>> {
    c.query_opt(
        sqlx::query(concat!("SELECT ", account_columns!(), " FROM accounts WHERE id = $1")).bind(id(account_id)),
        rows::account,
    )
    .await
}

pub(crate) async fn insert_account(c: &mut Conn, account: &Account) -> StoreResult<()> {
    c.execute(
        sqlx::query("INSERT INTO accounts (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(id(account.id))
            .bind(account.name.clone())
            .bind(account.created_at),
    )
    .await
    .map(drop)
}

// --- applications and JWT keys --------------------------------------------------------------------

pub(crate) async fn application_by_code(c: &mut Conn, code: &str) -> StoreResult<Option<Application>> {
    c.query_opt(
        sqlx::query(concat!(
            "SELECT ",
            application_columns!(),
            " FROM applications WHERE application_code = $1"
        ))
        .bind(code.to_owned()),
        rows::application,
    )
    .await
}

pub(crate) async fn application(c: &mut Conn, account_id: Uuid, app_id: Uuid) -> StoreResult<Option<Application>> {
    c.query_opt(
        sqlx::query(concat!(
            "SELECT ",
            application_columns!(),
            " FROM applications WHERE account_id = $1 AND id = $2"
        ))
        .bind(id(account_id))
        .bind(id(app_id)),
        rows::application,
    )
    .await
}

pub(crate) async fn applications(c: &mut Conn, account_id: Uuid) -> StoreResult<Vec<Application>> {
    c.query_all(
        sqlx::query(concat!(
            "SELECT ",
            application_columns!(),
            " FROM applications WHERE account_id = $1 ORDER BY created_at, id"
        ))
        .bind(id(account_id)),
        rows::application,
    )
    .await
}

/// Binds every column of an application, in `application_columns!` order.
fn bind_application(query: PgQuery, app: &Application) -> StoreResult<PgQuery> {
    Ok(query
        .bind(id(app.account_id))
        .bind(id(app.id))
        .bind(app.name.clone())
        .bind(app.application_code.clone())
        .bind(app.enabled)
        .bind(app.require_jwt_for_user_data)
        .bind(app.restrict_user_data_from_sdk)
        .bind(json(&app.providers)?)
        .bind(app.created_at)
        .bind(app.updated_at))
}

pub(crate) async fn insert_application(c: &mut Conn, app: &Application) -> StoreResult<()> {
    let query = sqlx::query(concat!(
        "INSERT INTO applications (",
        application_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    ));
    c.execute(bind_application(query, app)?).await.map(drop)
}

pub(crate) async fn update_application(c: &mut Conn, app: &Application) -> StoreResult<()> {
    let query = sqlx::query(
        "UPDATE applications SET name = $3, application_code = $4, enabled = $5, \
         require_jwt_for_user_data = $6, restrict_user_data_from_sdk = $7, providers = $8, \
         created_at = $9, updated_at = $10 \
         WHERE account_id = $1 AND id = $2",
    );
    let changed = c.execute(bind_application(query, app)?).await?;
    expect_one(changed)
}

pub(crate) async fn jwt_key(
    c: &mut Conn,
    account_id: Uuid,
    application_id: Uuid,
    kid: &str,
) -> StoreResult<Option<JwtKey>> {
    c.query_opt(
        sqlx::query(concat!(
            "SELECT ",
            jwt_key_columns!(),
            " FROM jwt_keys WHERE account_id = $1 AND application_id = $2 AND kid = $3"
        ))
        .bind(id(account_id))
        .bind(id(application_id))
        .bind(kid.to_owned()),
        rows::jwt_key,
    )
    .await
}

pub(crate) async fn jwt_keys(c: &mut Conn, account_id: Uuid, application_id: Uuid) -> StoreResult<Vec<JwtKey>> {
    c.query_all(
        sqlx::query(concat!(
            "SELECT ",
            jwt_key_columns!(),
            " FROM jwt_keys WHERE account_id = $1 AND application_id = $2 ORDER BY created_at, kid"
        ))
        .bind(id(account_id))
        .bind(id(application_id)),
        rows::jwt_key,
    )
    .await
}

pub(crate) async fn insert_jwt_key(c: &mut Conn, key: &JwtKey) -> StoreResult<()> {
    c.execute(
        sqlx::query(concat!(
            "INSERT INTO jwt_keys (",
            jwt_key_columns!(),
            ") VALUES ($1, $2, $3, $4, $5)"
        ))
        .bind(id(key.account_id))
        .bind(id(key.application_id))
        .bind(key.kid.clone())
        .bind(key.secret.clone())
        .bind(key.created_at),
    )
    .await
    .map(drop)
}

pub(crate) async fn delete_jwt_key(
    c: &mut Conn,
    account_id: Uuid,
    application_id: Uuid,
    kid: &str,
) -> StoreResult<bool> {
    c.execute(
        sqlx::query("DELETE FROM jwt_keys WHERE account_id = $1 AND application_id = $2 AND kid = $3")
            .bind(id(account_id))
            .bind(id(application_id))
            .bind(kid.to_owned()),
    )
    .await
    .map(|n| n > 0)
}

// --- API keys -----------------------------------------------------------------------------------

pub(crate) async fn insert_api_key(c: &mut Conn, key: &ApiKey) -> StoreResult<()> {
    c.execute(
        sqlx::query(concat!(
            "INSERT INTO api_keys (",
            api_key_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(id(key.account_id))
        .bind(id(key.id))
        .bind(key.name.clone())
        .bind(json(&key.scopes)?)
        .bind(key.key_hash.clone())
        .bind(key.key_prefix.clone())
        .bind(key.created_at)
        .bind(key.expires_at)
        .bind(key.last_used_at),
    )
    .await
    .map(drop)
}

pub(crate) async fn api_key_by_hash(c: &mut Conn, key_hash: &str) -> StoreResult<Option<ApiKey>> {
    c.query_opt(
        sqlx::query(concat!(
            "SELECT ",
            api_key_columns!(),
            " FROM api_keys WHERE key_hash = $1"
        ))
        .bind(key_hash.to_owned()),
        rows::api_key,
    )
    .await
}

pub(crate) async fn api_keys(c: &mut Conn, account_id: Uuid) -> StoreResult<Vec<ApiKey>> {
    c.query_all(
        sqlx::query(concat!(
            "SELECT ",
            api_key_columns!(),
            " FROM api_keys WHERE account_id = $1 ORDER BY created_at, id"
        ))
        .bind(id(account_id)),
        rows::api_key,
    )
    .await
}

// --- installations ------------------------------------------------------------------------------

/// Never locks: changes to an installation are serialised by the lock on its person's row
/// (`person()` in a write transaction), which the core takes before changing any installation
/// of that person (roster-store `Tx` docs). Locking the row here as well would order the two
/// locks differently in different requests and deadlock.
pub(crate) async fn installation(c: &mut Conn, push_reg_id: &str) -> StoreResult<Option<Installation>> {
    c.query_opt(
        sqlx::query(concat!(
            "SELECT ",
            installation_columns!(),
            " FROM installations WHERE push_reg_id = $1"
        ))
        .bind(push_reg_id.to_owned()),
        rows::installation,
    )
    .await
}

pub(crate) async fn installations_of_person(
    c: &mut Conn,
    account_id: Uuid,
    person_id: Uuid,
    application_id: Option<Uuid>,
) -> StoreResult<Vec<Installation>> {
    let query = match application_id {
        Some(app) => sqlx::query(concat!(
            "SELECT ",
            installation_columns!(),
            " FROM installations WHERE account_id = $1 AND person_id = $2 \
             AND application_id = $3 ORDER BY created_at, push_reg_id"
        ))
        .bind(id(account_id))
        .bind(id(person_id))
        .bind(id(app)),
        None => sqlx::query(concat!(
            "SELECT ",
            installation_columns!(),
            " FROM installations WHERE account_id = $1 AND person_id = $2 \
             ORDER BY created_at, push_reg_id"
        ))
        .bind(id(account_id))
        .bind(id(person_id)),
    };
    c.query_all(query, rows::installation).await
}

/// Binds every column of an installation as `$1`..`$30` (numbered from after whatever `query`
/// already bound), in the order of the INSERT's column list, so that INSERT and UPDATE cannot
/// disagree on the numbering.
fn bind_installation(query: PgQuery, inst: &Installation) -> StoreResult<PgQuery> {
    let s = &inst.system;
    Ok(query
        .bind(id(inst.account_id)) // $1
        .bind(id(inst.application_id)) // $2
        .bind(inst.push_reg_id.clone()) // $3
        .bind(id(inst.person_id)) // $4
        .bind(inst.push_service_type.map(|t| t.as_str())) // $5
        .bind(inst.provider().map(Provider::as_str)) // $6
        .bind(inst.push_service_token.clone()) // $7
        .bind(inst.reg_enabled) // $8
        .bind(inst.is_primary) // $9
        .bind(inst.application_user_id.clone()) // $10
        .bind(json(&inst.custom_attributes)?) // $11
        .bind(s.notifications_enabled) // $12
        .bind(s.sdk_version.clone()) // $13
        .bind(s.app_version.clone()) // $14
        .bind(s.os.clone()) // $15
        .bind(s.os_version.clone()) // $16
        .bind(s.device_manufacturer.clone()) // $17
        .bind(s.device_model.clone()) // $18
        .bind(s.device_name.clone()) // $19
        .bind(s.device_secure) // $20
        .bind(s.language.clone()) // $21
        .bind(s.device_timezone_offset.clone()) // $22
        .bind(s.inappchat) // $23
        .bind(s.inbox) // $24
        .bind(s.webrtcui) // $25
        .bind(inst.created_at) // $26
        .bind(inst.updated_at) // $27
        .bind(inst.last_seen_at) // $28
        .bind(inst.token_cleared_at) // $29
        .bind(inst.token_cleared_reason.map(TokenClearedReason::as_str))) // $30
}

/// Inserts an installation and writes its audience index rows in one statement (one round trip:
/// the row is a CTE of the index statement). The index rows' references to the new row are
/// checked at the end of the statement, when the row is there.
pub(crate) async fn insert_installation(c: &mut Conn, inst: &Installation) -> StoreResult<()> {
    const INSERT: &str = "installation AS (INSERT INTO installations (account_id, application_id, \
         push_reg_id, person_id, push_service_type, provider, push_service_token, reg_enabled, \
         is_primary, application_user_id, custom_attributes, notifications_enabled, sdk_version, \
         app_version, os, os_version, device_manufacturer, device_model, device_name, device_secure, \
         language, device_timezone_offset, inappchat, inbox, webrtcui, created_at, updated_at, \
         last_seen_at, token_cleared_at, token_cleared_reason) \
         VALUES ($23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34, $35, $36, $37, $38, \
         $39, $40, $41, $42, $43, $44, $45, $46, $47, $48, $49, $50, $51, $52)), ";
    let query = crate::audience::replace_installation_query(inst, INSERT);
    c.execute(bind_installation(query, inst)?).await.map(drop)
}

/// Many installations in one statement: every column travels as one array, so a page of an
/// import is one round trip instead of one per row.
pub(crate) async fn insert_installations(c: &mut Conn, insts: &[Installation]) -> StoreResult<()> {
    if insts.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&Installation) -> Option<String>| insts.iter().map(f).collect::<Vec<Option<String>>>();
    let flag = |f: fn(&Installation) -> Option<bool>| insts.iter().map(f).collect::<Vec<Option<bool>>>();
    let number = |f: fn(&Installation) -> Option<i64>| insts.iter().map(f).collect::<Vec<Option<i64>>>();
    let custom_attributes = insts
        .iter()
        .map(|i| json(&i.custom_attributes))
        .collect::<StoreResult<Vec<String>>>()?;
    let query = sqlx::query(
        "INSERT INTO installations (account_id, application_id, push_reg_id, person_id, \
         push_service_type, provider, push_service_token, reg_enabled, is_primary, \
         application_user_id, custom_attributes, notifications_enabled, sdk_version, app_version, \
         os, os_version, device_manufacturer, device_model, device_name, device_secure, language, \
         device_timezone_offset, inappchat, inbox, webrtcui, created_at, updated_at, last_seen_at, \
         token_cleared_at, token_cleared_reason) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
         $7::text[], $8::bool[], $9::bool[], $10::text[], $11::text[], $12::bool[], $13::text[], \
         $14::text[], $15::text[], $16::text[], $17::text[], $18::text[], $19::text[], $20::bool[], \
         $21::text[], $22::text[], $23::bool[], $24::bool[], $25::bool[], $26::int8[], $27::int8[], \
         $28::int8[], $29::int8[], $30::text[])",
    )
    .bind(column(|i| Some(id(i.account_id))))
    .bind(column(|i| Some(id(i.application_id))))
    .bind(column(|i| Some(i.push_reg_id.clone())))
    .bind(column(|i| Some(id(i.person_id))))
    .bind(column(|i| i.push_service_type.map(|t| t.as_str().to_owned())))
    .bind(column(|i| i.provider().map(|p| p.as_str().to_owned())))
    .bind(column(|i| i.push_service_token.clone()))
    .bind(flag(|i| Some(i.reg_enabled)))
    .bind(flag(|i| Some(i.is_primary)))
    .bind(column(|i| i.application_user_id.clone()))
    .bind(custom_attributes)
    .bind(flag(|i| i.system.notifications_enabled))
    .bind(column(|i| i.system.sdk_version.clone()))
    .bind(column(|i| i.system.app_version.clone()))
    .bind(column(|i| i.system.os.clone()))
    .bind(column(|i| i.system.os_version.clone()))
    .bind(column(|i| i.system.device_manufacturer.clone()))
    .bind(column(|i| i.system.device_model.clone()))
    .bind(column(|i| i.system.device_name.clone()))
    .bind(flag(|i| i.system.device_secure))
    .bind(column(|i| i.system.language.clone()))
    .bind(column(|i| i.system.device_timezone_offset.clone()))
    .bind(flag(|i| i.system.inappchat))
    .bind(flag(|i| i.system.inbox))
    .bind(flag(|i| i.system.webrtcui))
    .bind(number(|i| Some(i.created_at)))
    .bind(number(|i| Some(i.updated_at)))
    .bind(number(|i| Some(i.last_seen_at)))
    .bind(number(|i| i.token_cleared_at))
    .bind(column(|i| i.token_cleared_reason.map(|r| r.as_str().to_owned())));
    c.execute(query).await?;
    // The audience index, in the same transaction.
    crate::audience::index_new_installations(c, insts).await
}

pub(crate) async fn update_installation(c: &mut Conn, inst: &Installation) -> StoreResult<()> {
    let query = sqlx::query(
        "UPDATE installations SET application_id = $2, person_id = $4, \
         push_service_type = $5, provider = $6, push_service_token = $7, reg_enabled = $8, \
         is_primary = $9, application_user_id = $10, custom_attributes = $11, \
         notifications_enabled = $12, sdk_version = $13, app_version = $14, os = $15, \
         os_version = $16, device_manufacturer = $17, device_model = $18, device_name = $19, \
         device_secure = $20, language = $21, device_timezone_offset = $22, inappchat = $23, \
         inbox = $24, webrtcui = $25, created_at = $26, updated_at = $27, last_seen_at = $28, \
         token_cleared_at = $29, token_cleared_reason = $30 \
         WHERE account_id = $1 AND push_reg_id = $3",
    );
    let changed = c.execute(bind_installation(query, inst)?).await?;
    expect_one(changed)?;
    // The audience index, in the same transaction.
    crate::audience::replace_installation(c, inst).await
}

pub(crate) async fn delete_installation(c: &mut Conn, account_id: Uuid, push_reg_id: &str) -> StoreResult<bool> {
    c.execute(
        sqlx::query("DELETE FROM installations WHERE account_id = $1 AND push_reg_id = $2")
            .bind(id(account_id))
            .bind(push_reg_id.to_owned()),
    )
    .await
    .map(|n| n > 0)
}

/// people.md §2.3. `updated_at` moves too: the installation's data changed.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn clear_token_holders(
    c: &mut Conn,
    account_id: Uuid,
    application_id: Uuid,
    provider: Provider,
    token: &str,
    except: &str,
    reason: TokenClearedReason,
    now: Millis,
) -> StoreResult<Vec<String>> {
    let rows = c
        .fetch_all(
            sqlx::query(
                "UPDATE installations SET push_service_token = NULL, token_cleared_at = $6, \
                 token_cleared_reason = $7, updated_at = $6 \
                 WHERE account_id = $1 AND application_id = $2 AND provider = $3 \
                 AND push_service_token = $4 AND push_reg_id <> $5 \
                 RETURNING push_reg_id",
            )
            .bind(id(account_id))
            .bind(id(application_id))
            .bind(provider.as_str())
            .bind(token.to_owned())
            .bind(except.to_owned())
            .bind(now)
            .bind(reason.as_str()),
        )
        .await?;
    let mut cleared = rows
        .iter()
        .map(|r| rows::get::<String>(r, 0))
        .collect::<StoreResult<Vec<String>>>()?;
    // RETURNING order is unspecified.
    cleared.sort();
    Ok(cleared)
}

/// people.md §4: the other installations of the person in the application lose the flag.
pub(crate) async fn demote_primaries(
    c: &mut Conn,
    account_id: Uuid,
    person_id: Uuid,
    application_id: Uuid,
    except: &str,
    now: Millis,
) -> StoreResult<u64> {
    c.execute(
        sqlx::query(
            "UPDATE installations SET is_primary = FALSE, updated_at = $5 \
             WHERE account_id = $1 AND person_id = $2 AND application_id = $3 \
             AND is_primary AND push_reg_id <> $4",
        )
        .bind(id(account_id))
        .bind(id(person_id))
        .bind(id(application_id))
        .bind(except.to_owned())
        .bind(now),
    )
    .await
}

/// A transaction-scoped advisory lock on a 64-bit hash of `key` (released at commit/rollback).
pub(crate) async fn lock_key(c: &mut Conn, key: &str) -> StoreResult<()> {
    c.execute(sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))").bind(key.to_owned()))
        .await
        .map(|_| ())
}

pub(crate) async fn count_installations_of_person(c: &mut Conn, account_id: Uuid, person_id: Uuid) -> StoreResult<u64> {
    c.count(
        sqlx::query("SELECT count(*) FROM installations WHERE account_id = $1 AND person_id = $2")
            .bind(id(account_id))
            .bind(id(person_id)),
    )
    .await
}

// --- persons ------------------------------------------------------------------------------------

/// Which child table a row of `load_person_keys` comes from.
const PHONE: i32 = 0;
const EMAIL: i32 = 1;
const TAG: i32 = 2;

/// Reads a person's phones, emails and tags into it, in one round trip.
async fn load_person_keys(c: &mut Conn, person: &mut Person) -> StoreResult<()> {
    let rows = c
        .fetch_all(
            sqlx::query(
                "SELECT 0, position, number FROM person_phones WHERE account_id = $1 AND person_id = $2 \
                 UNION ALL \
                 SELECT 1, position, address FROM person_emails WHERE account_id = $1 AND person_id = $2 \
                 UNION ALL \
                 SELECT 2, 0, tag FROM person_tags WHERE account_id = $1 AND person_id = $2 \
                 ORDER BY 1, 2",
            )
            .bind(id(person.account_id))
            .bind(id(person.id)),
        )
        .await?;
    person.phones.clear();
    person.emails.clear();
    person.tags.clear();
    for row in &rows {
        let kind: i32 = rows::get(row, 0)?;
        let value: String = rows::get(row, 2)?;
        match kind {
            PHONE => person.phones.push(value),
            EMAIL => person.emails.push(value),
            TAG => {
                person.tags.insert(value);
            }
            other => return Err(StoreError::Other(format!("unknown person key kind {other}"))),
        }
    }
    Ok(())
}

/// Inserts a person's phones, emails and tags (the person has none stored): one statement per
/// non-empty list, the list travelling as an array. Positions are 0-based, as in SQLite.
async fn insert_person_keys(c: &mut Conn, person: &Person) -> StoreResult<()> {
    let (account_id, person_id) = (id(person.account_id), id(person.id));
    if !person.phones.is_empty() {
        c.execute(
            sqlx::query(
                "INSERT INTO person_phones (account_id, person_id, position, number) \
                 SELECT $1, $2, k.ord - 1, k.number \
                 FROM UNNEST($3::text[]) WITH ORDINALITY AS k (number, ord) ORDER BY k.ord",
            )
            .bind(account_id.clone())
            .bind(person_id.clone())
            .bind(person.phones.clone()),
        )
        .await?;
    }
    if !person.emails.is_empty() {
        c.execute(
            sqlx::query(
                "INSERT INTO person_emails (account_id, person_id, position, address, email_key) \
                 SELECT $1, $2, k.ord - 1, k.address, k.email_key \
                 FROM UNNEST($3::text[], $4::text[]) WITH ORDINALITY AS k (address, email_key, ord) \
                 ORDER BY k.ord",
            )
            .bind(account_id.clone())
            .bind(person_id.clone())
            .bind(person.emails.clone())
            .bind(person.emails.iter().map(|e| email_key(e)).collect::<Vec<String>>()),
        )
        .await?;
    }
    if !person.tags.is_empty() {
        c.execute(
            sqlx::query(
                "INSERT INTO person_tags (account_id, person_id, tag) \
                 SELECT $1, $2, k.tag FROM UNNEST($3::text[]) AS k (tag)",
            )
            .bind(account_id)
            .bind(person_id)
            .bind(person.tags.iter().cloned().collect::<Vec<String>>()),
        )
        .await?;
    }
    Ok(())
}

/// Deletes a person's phones, emails and tags, in one statement (data-modifying CTEs always run
/// to completion).
async fn delete_person_keys(c: &mut Conn, account_id: Uuid, person_id: Uuid) -> StoreResult<()> {
    c.execute(
        sqlx::query(
            "WITH phones AS (DELETE FROM person_phones WHERE account_id = $1 AND person_id = $2), \
             emails AS (DELETE FROM person_emails WHERE account_id = $1 AND person_id = $2) \
             DELETE FROM person_tags WHERE account_id = $1 AND person_id = $2",
        )
        .bind(id(account_id))
        .bind(id(person_id)),
    )
    .await
    .map(drop)
}

/// In a write transaction the person's row stays locked until commit (`FOR UPDATE`): every
/// write of a person's data and keys goes through its row, so a concurrent read-modify-write of
/// the same person waits here and then reads the committed result.
pub(crate) async fn person(c: &mut Conn, account_id: Uuid, person_id: Uuid) -> StoreResult<Option<Person>> {
    let sql = if c.write {
        concat!(
            "SELECT ",
            person_columns!(),
            " FROM persons WHERE account_id = $1 AND id = $2 FOR UPDATE"
        )
    } else {
        concat!(
            "SELECT ",
            person_columns!(),
            " FROM persons WHERE account_id = $1 AND id = $2"
        )
    };
    let found = c
        .query_opt(sqlx::query(sql).bind(id(account_id)).bind(id(person_id)), rows::person)
        .await?;
    match found {
        Some(mut person) => {
            load_person_keys(c, &mut person).await?;
            Ok(Some(person))
        }
        None => Ok(None),
    }
}

/// people.md §5.1 step 2: the distinct owners of any of the keys, by id. The key lists travel as
/// one array parameter each, so one prepared statement serves every list length.
pub(crate) async fn persons_owning(
    c: &mut Conn,
    account_id: Uuid,
    external_user_id: Option<&str>,
    phones: &[String],
    email_keys: &[String],
) -> StoreResult<Vec<Uuid>> {
    c.query_all(
        sqlx::query(
            "SELECT id FROM persons WHERE account_id = $1 AND external_user_id = $2 \
             UNION \
             SELECT person_id FROM person_phones WHERE account_id = $1 AND number = ANY ($3) \
             UNION \
             SELECT person_id FROM person_emails WHERE account_id = $1 AND email_key = ANY ($4) \
             ORDER BY 1",
        )
        .bind(id(account_id))
        .bind(external_user_id.map(str::to_owned))
        .bind(phones.to_vec())
        .bind(email_keys.to_vec()),
        |r| rows::uuid_at(r, 0),
    )
    .await
}

/// Binds every column of a person row, in `person_columns!` order.
fn bind_person(query: PgQuery, person: &Person) -> StoreResult<PgQuery> {
    Ok(query
        .bind(id(person.account_id))
        .bind(id(person.id))
        .bind(person.external_user_id.clone())
        .bind(person.first_name.clone())
        .bind(person.middle_name.clone())
        .bind(person.last_name.clone())
        .bind(person.gender.map(|g| g.as_str()))
        .bind(person.birthday.clone())
        .bind(json(&person.custom_attributes)?)
        .bind(person.person_type.as_str())
        .bind(person.version)
        .bind(person.created_at)
        .bind(person.updated_at))
}

pub(crate) async fn insert_person(c: &mut Conn, person: &Person) -> StoreResult<()> {
    let query = sqlx::query(concat!(
        "INSERT INTO persons (",
        person_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
    ));
    c.execute(bind_person(query, person)?).await?;
    insert_person_keys(c, person).await?;
    // The audience index, in the same transaction.
    crate::audience::index_new_persons(c, std::slice::from_ref(person)).await
}

/// Many persons in four statements (persons, phones, emails, tags), every column travelling as
/// one array: a page of an import is four round trips instead of up to four per person.
pub(crate) async fn insert_persons(c: &mut Conn, persons: &[Person]) -> StoreResult<()> {
    if persons.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&Person) -> Option<String>| persons.iter().map(f).collect::<Vec<Option<String>>>();
    let number = |f: fn(&Person) -> i64| persons.iter().map(f).collect::<Vec<i64>>();
    let custom_attributes = persons
        .iter()
        .map(|p| json(&p.custom_attributes))
        .collect::<StoreResult<Vec<String>>>()?;
    c.execute(
        sqlx::query(concat!(
            "INSERT INTO persons (",
            person_columns!(),
            ") SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
             $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::int8[], $12::int8[], \
             $13::int8[])"
        ))
        .bind(column(|p| Some(id(p.account_id))))
        .bind(column(|p| Some(id(p.id))))
        .bind(column(|p| p.external_user_id.clone()))
        .bind(column(|p| p.first_name.clone()))
        .bind(column(|p| p.middle_name.clone()))
        .bind(column(|p| p.last_name.clone()))
        .bind(column(|p| p.gender.map(|g| g.as_str().to_owned())))
        .bind(column(|p| p.birthday.clone()))
        .bind(custom_attributes)
        .bind(column(|p| Some(p.person_type.as_str().to_owned())))
        .bind(number(|p| p.version))
        .bind(number(|p| p.created_at))
        .bind(number(|p| p.updated_at)),
    )
    .await?;
    // The child rows of every person, flattened; positions 0-based, as in `insert_person_keys`.
    let (mut owners, mut positions, mut values, mut keys) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for p in persons {
        for (position, number) in p.phones.iter().enumerate() {
            owners.push((id(p.account_id), id(p.id)));
            positions.push(position as i64);
            values.push(number.clone());
        }
    }
    if !values.is_empty() {
        let (accounts, person_ids): (Vec<String>, Vec<String>) = owners.drain(..).unzip();
        c.execute(
            sqlx::query(
                "INSERT INTO person_phones (account_id, person_id, position, number) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[])",
            )
            .bind(accounts)
            .bind(person_ids)
            .bind(std::mem::take(&mut positions))
            .bind(std::mem::take(&mut values)),
        )
        .await?;
    }
    for p in persons {
        for (position, address) in p.emails.iter().enumerate() {
            owners.push((id(p.account_id), id(p.id)));
            positions.push(position as i64);
            values.push(address.clone());
            keys.push(email_key(address));
        }
    }
    if !values.is_empty() {
        let (accounts, person_ids): (Vec<String>, Vec<String>) = owners.drain(..).unzip();
        c.execute(
            sqlx::query(
                "INSERT INTO person_emails (account_id, person_id, position, address, email_key) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[])",
            )
            .bind(accounts)
            .bind(person_ids)
            .bind(std::mem::take(&mut positions))
            .bind(std::mem::take(&mut values))
            .bind(keys),
        )
        .await?;
    }
    for p in persons {
        for tag in &p.tags {
            owners.push((id(p.account_id), id(p.id)));
            values.push(tag.clone());
        }
    }
    if !values.is_empty() {
        let (accounts, person_ids): (Vec<String>, Vec<String>) = owners.drain(..).unzip();
        c.execute(
            sqlx::query(
                "INSERT INTO person_tags (account_id, person_id, tag) \
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[])",
            )
            .bind(accounts)
            .bind(person_ids)
            .bind(values),
        )
        .await?;
    }
    // The audience index, in the same transaction.
    crate::audience::index_new_persons(c, persons).await
}

/// Replaces every field and key of a person. The old keys are deleted before the new ones are
/// inserted, so a key released by this person can be taken by another one later in the same
/// transaction, and a key this person already had is simply written again.
pub(crate) async fn update_person(c: &mut Conn, person: &Person) -> StoreResult<()> {
    let query = sqlx::query(
        "UPDATE persons SET external_user_id = $3, first_name = $4, middle_name = $5, \
         last_name = $6, gender = $7, birthday = $8, custom_attributes = $9, type = $10, \
         version = $11, created_at = $12, updated_at = $13 \
         WHERE account_id = $1 AND id = $2",
    );
    let changed = c.execute(bind_person(query, person)?).await?;
    expect_one(changed)?;
    delete_person_keys(c, person.account_id, person.id).await?;
    insert_person_keys(c, person).await?;
    // The audience index, in the same transaction.
    crate::audience::replace_person(c, person).await
}

/// Deletes a person; its keys and tags go with it (ON DELETE CASCADE). An installation still
/// referencing it makes this fail (foreign key): the core must move or delete those first.
pub(crate) async fn delete_person(c: &mut Conn, account_id: Uuid, person_id: Uuid) -> StoreResult<bool> {
    c.execute(
        sqlx::query("DELETE FROM persons WHERE account_id = $1 AND id = $2")
            .bind(id(account_id))
            .bind(id(person_id)),
    )
    .await
    .map(|n| n > 0)
}

// --- attribute definitions ----------------------------------------------------------------------

/// In a write transaction the definition's row is share-locked until commit (`FOR SHARE`): a
/// write that types a value by it holds it, so a concurrent `DELETE` of the definition waits and
/// then removes that value too, and a write that comes after a deletion began waits for it and
/// finds no definition (people.md §11, invariant 14; docs/decisions.md).
pub(crate) async fn attribute_definition(
    c: &mut Conn,
    account_id: Uuid,
    scope: AttributeScope,
    name: &str,
) -> StoreResult<Option<AttributeDefinition>> {
    let sql = if c.write {
        concat!(
            "SELECT ",
            definition_columns!(),
            " FROM attribute_definitions WHERE account_id = $1 AND scope = $2 AND name = $3 FOR SHARE"
        )
    } else {
        concat!(
            "SELECT ",
            definition_columns!(),
            " FROM attribute_definitions WHERE account_id = $1 AND scope = $2 AND name = $3"
        )
    };
    c.query_opt(
        sqlx::query(sql)
            .bind(id(account_id))
            .bind(scope.as_str())
            .bind(name.to_owned()),
        rows::attribute_definition,
    )
    .await
}

/// By scope (PERSON before INSTALLATION, the order of `AttributeScope`), then name in code-point
/// order (the column is COLLATE "C": byte order, which for UTF-8 is code-point order).
pub(crate) async fn attribute_definitions(
    c: &mut Conn,
    account_id: Uuid,
    scope: Option<AttributeScope>,
) -> StoreResult<Vec<AttributeDefinition>> {
    let query = match scope {
        Some(scope) => sqlx::query(concat!(
            "SELECT ",
            definition_columns!(),
            " FROM attribute_definitions WHERE account_id = $1 AND scope = $2 ORDER BY name"
        ))
        .bind(id(account_id))
        .bind(scope.as_str()),
        None => sqlx::query(concat!(
            "SELECT ",
            definition_columns!(),
            " FROM attribute_definitions WHERE account_id = $1 \
             ORDER BY CASE scope WHEN 'PERSON' THEN 0 ELSE 1 END, name"
        ))
        .bind(id(account_id)),
    };
    c.query_all(query, rows::attribute_definition).await
}

pub(crate) async fn count_attribute_definitions(
    c: &mut Conn,
    account_id: Uuid,
    scope: AttributeScope,
) -> StoreResult<u64> {
    c.count(
        sqlx::query("SELECT count(*) FROM attribute_definitions WHERE account_id = $1 AND scope = $2")
            .bind(id(account_id))
            .bind(scope.as_str()),
    )
    .await
}

/// Binds every column of a definition, in `definition_columns!` order.
fn bind_definition(query: PgQuery, def: &AttributeDefinition) -> StoreResult<PgQuery> {
    Ok(query
        .bind(id(def.account_id))
        .bind(def.scope.as_str())
        .bind(def.name.clone())
        .bind(def.attr_type.as_str())
        .bind(opt_json(def.object_schema.as_ref())?)
        .bind(def.origin.as_str())
        .bind(def.created_at))
}

/// A plain insert: a definition of the same scope and name is a conflict.
pub(crate) async fn insert_attribute_definition(c: &mut Conn, def: &AttributeDefinition) -> StoreResult<()> {
    let query = sqlx::query(concat!(
        "INSERT INTO attribute_definitions (",
        definition_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7)"
    ));
    c.execute(bind_definition(query, def)?).await.map(drop)
}

/// people.md §8.2: the first definition of a name wins; a later one reads the winner back. Under
/// READ COMMITTED an insert that meets a concurrent, uncommitted definition of the same name
/// waits for it; if it commits, DO NOTHING applies and the SELECT (a new statement, a new
/// snapshot) reads the winner.
pub(crate) async fn define_attribute(
    c: &mut Conn,
    def: &AttributeDefinition,
) -> StoreResult<(AttributeDefinition, bool)> {
    let query = sqlx::query(concat!(
        "INSERT INTO attribute_definitions (",
        definition_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (account_id, scope, name) DO NOTHING"
    ));
    let inserted = c.execute(bind_definition(query, def)?).await? > 0;
    match attribute_definition(c, def.account_id, def.scope, &def.name).await? {
        Some(stored) => Ok((stored, inserted)),
        None => Err(StoreError::Other(format!(
            "attribute definition {:?} missing right after its insert",
            def.name
        ))),
    }
}

// --- merge log ----------------------------------------------------------------------------------

/// Binds every column of a merge-log entry, in `merge_columns!` order.
fn bind_merge_entry(query: PgQuery, e: &MergeLogEntry) -> StoreResult<PgQuery> {
    Ok(query
        .bind(id(e.account_id))
        .bind(id(e.id))
        .bind(e.created_at)
        .bind(json(&e.actor)?)
        .bind(e.push_reg_id.clone())
        .bind(e.source_person_id.map(id))
        .bind(e.target_person_id.map(id))
        .bind(e.source_deleted)
        .bind(e.after_forced_depersonalize)
        .bind(json(&e.dropped_attributes)?)
        .bind(opt_json(e.before.as_ref())?)
        .bind(e.after_target_version)
        .bind(e.after_source_version)
        .bind(e.status.as_str())
        .bind(e.reversed_at)
        .bind(opt_json(e.reversed_by.as_ref())?)
        .bind(e.redacted))
}

pub(crate) async fn insert_merge_entry(c: &mut Conn, entry: &MergeLogEntry) -> StoreResult<()> {
    let query = sqlx::query(concat!(
        "INSERT INTO merge_log (",
        merge_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
    ));
    c.execute(bind_merge_entry(query, entry)?).await.map(drop)
}

pub(crate) async fn merge_entry(c: &mut Conn, account_id: Uuid, entry_id: Uuid) -> StoreResult<Option<MergeLogEntry>> {
    c.query_opt(
        sqlx::query(concat!(
            "SELECT ",
            merge_columns!(),
            " FROM merge_log WHERE account_id = $1 AND id = $2"
        ))
        .bind(id(account_id))
        .bind(id(entry_id)),
        rows::merge_entry,
    )
    .await
}

pub(crate) async fn update_merge_entry(c: &mut Conn, entry: &MergeLogEntry) -> StoreResult<()> {
    let query = sqlx::query(
        "UPDATE merge_log SET created_at = $3, actor = $4, push_reg_id = $5, \
         source_person_id = $6, target_person_id = $7, source_deleted = $8, \
         after_forced_depersonalize = $9, dropped_attributes = $10, \"before\" = $11, \
         after_target_version = $12, after_source_version = $13, status = $14, \
         reversed_at = $15, reversed_by = $16, redacted = $17 \
         WHERE account_id = $1 AND id = $2",
    );
    let changed = c.execute(bind_merge_entry(query, entry)?).await?;
    expect_one(changed)
}

// --- streaming every row -----------------------------------------------------------------------
//
// Keyset pages in primary-key order, filtered by account: the statements of the SQLite backend.
// The first page starts after "" (every stored key is greater under COLLATE "C"), so each
// statement is a plain range condition the planner can serve from the primary key index.

/// `ANALYZE` of the whole schema, inside the transaction (so it sees the transaction's rows).
pub(crate) async fn refresh_statistics(c: &mut Conn) -> StoreResult<()> {
    c.execute(sqlx::query("ANALYZE")).await.map(drop)
}

pub(crate) async fn count_accounts(c: &mut Conn) -> StoreResult<u64> {
    c.count(sqlx::query("SELECT count(*) FROM accounts")).await
}

pub(crate) async fn count_rows(c: &mut Conn, account_id: Uuid, kind: RowKind) -> StoreResult<u64> {
    let sql = match kind {
        RowKind::Application => "SELECT count(*) FROM applications WHERE account_id = $1",
        RowKind::JwtKey => "SELECT count(*) FROM jwt_keys WHERE account_id = $1",
        RowKind::ApiKey => "SELECT count(*) FROM api_keys WHERE account_id = $1",
        RowKind::AttributeDefinition => "SELECT count(*) FROM attribute_definitions WHERE account_id = $1",
        RowKind::Person => "SELECT count(*) FROM persons WHERE account_id = $1",
        RowKind::Installation => "SELECT count(*) FROM installations WHERE account_id = $1",
        RowKind::MergeLogEntry => "SELECT count(*) FROM merge_log WHERE account_id = $1",
    };
    c.count(sqlx::query(sql).bind(id(account_id))).await
}

pub(crate) async fn accounts_page(c: &mut Conn, after: Option<Uuid>, limit: u32) -> StoreResult<Vec<Account>> {
    c.query_all(
        sqlx::query(concat!(
            "SELECT ",
            account_columns!(),
            " FROM accounts WHERE id > $1 ORDER BY id LIMIT $2"
        ))
        .bind(after.map(id).unwrap_or_default())
        .bind(page_limit(limit)),
        rows::account,
    )
    .await
}

pub(crate) async fn applications_page(
    c: &mut Conn,
    account_id: Uuid,
    after: Option<Uuid>,
    limit: u32,
) -> StoreResult<Vec<Application>> {
    c.query_all(
        sqlx::query(concat!(
            "SELECT ",
            application_columns!(),
            " FROM applications WHERE account_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        ))
        .bind(id(account_id))
        .bind(after.map(id).unwrap_or_default())
        .bind(page_limit(limit)),
        rows::application,
    )
    .await
}

pub(crate) async fn jwt_keys_page(
    c: &mut Conn,
    account_id: Uuid,
    after: Option<(Uuid, &str)>,
    limit: u32,
) -> StoreResult<Vec<JwtKey>> {
    let (after_app, after_kid) = after.map_or((String::new(), String::new()), |(app, kid)| (id(app), kid.to_owned()));
    c.query_all(
        sqlx::query(concat!(
            "SELECT ",
            jwt_key_columns!(),
            " FROM jwt_keys WHERE account_id = $1 AND (application_id, kid) > ($2, $3) \
             ORDER BY application_id, kid LIMIT $4"
        ))
        .bind(id(account_id))
        .bind(after_app)
        .bind(after_kid)
        .bind(page_limit(limit)),
        rows::jwt_key,
    )
    .await
}

pub(crate) async fn api_keys_page(
    c: &mut Conn,
    account_id: Uuid,
    after: Option<Uuid>,
    limit: u32,
) -> StoreResult<Vec<ApiKey>> {
    c.query_all(
        sqlx::query(concat!(
            "SELECT ",
            api_key_columns!(),
            " FROM api_keys WHERE account_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        ))
        .bind(id(account_id))
        .bind(after.map(id).unwrap_or_default())
        .bind(page_limit(limit)),
        rows::api_key,
    )
    .await
}

pub(crate) async fn attribute_definitions_page(
    c: &mut Conn,
    account_id: Uuid,
    after: Option<(AttributeScope, &str)>,
    limit: u32,
) -> StoreResult<Vec<AttributeDefinition>> {
    let (after_scope, after_name) =
        after.map_or(("", String::new()), |(scope, name)| (scope.as_str(), name.to_owned()));
    c.query_all(
        sqlx::query(concat!(
            "SELECT ",
            definition_columns!(),
            " FROM attribute_definitions WHERE account_id = $1 AND (scope, name) > ($2, $3) \
             ORDER BY scope, name LIMIT $4"
        ))
        .bind(id(account_id))
        .bind(after_scope)
        .bind(after_name)
        .bind(page_limit(limit)),
        rows::attribute_definition,
    )
    .await
}

/// The persons of the page, then their phones, emails and tags in one round trip: a range scan
/// of each child table's primary key over the page's id range (whose rows of this account are
/// exactly the page's persons).
pub(crate) async fn persons_page(
    c: &mut Conn,
    account_id: Uuid,
    after: Option<Uuid>,
    limit: u32,
) -> StoreResult<Vec<Person>> {
    let mut persons = c
        .query_all(
            sqlx::query(concat!(
                "SELECT ",
                person_columns!(),
                " FROM persons WHERE account_id = $1 AND id > $2 ORDER BY id LIMIT $3"
            ))
            .bind(id(account_id))
            .bind(after.map(id).unwrap_or_default())
            .bind(page_limit(limit)),
            rows::person,
        )
        .await?;
    let (Some(first), Some(last)) = (persons.first(), persons.last()) else {
        return Ok(persons);
    };
    let rows = c
        .fetch_all(
            sqlx::query(
                "SELECT 0, person_id, position, number FROM person_phones \
                 WHERE account_id = $1 AND person_id >= $2 AND person_id <= $3 \
                 UNION ALL \
                 SELECT 1, person_id, position, address FROM person_emails \
                 WHERE account_id = $1 AND person_id >= $2 AND person_id <= $3 \
                 UNION ALL \
                 SELECT 2, person_id, 0, tag FROM person_tags \
                 WHERE account_id = $1 AND person_id >= $2 AND person_id <= $3 \
                 ORDER BY 1, 2, 3, 4",
            )
            .bind(id(account_id))
            .bind(id(first.id))
            .bind(id(last.id)),
        )
        .await?;
    let (mut phones, mut emails, mut tags) = (HashMap::new(), HashMap::new(), HashMap::new());
    for row in &rows {
        let kind: i32 = rows::get(row, 0)?;
        let person_id = rows::uuid_at(row, 1)?;
        let value: String = rows::get(row, 3)?;
        let into: &mut HashMap<Uuid, Vec<String>> = match kind {
            PHONE => &mut phones,
            EMAIL => &mut emails,
            TAG => &mut tags,
            other => return Err(StoreError::Other(format!("unknown person key kind {other}"))),
        };
        into.entry(person_id).or_default().push(value);
    }
    attach_person_keys(&mut persons, &mut phones, &mut emails, &mut tags);
    Ok(persons)
}

pub(crate) async fn installations_page(
    c: &mut Conn,
    account_id: Uuid,
    after: Option<&str>,
    limit: u32,
) -> StoreResult<Vec<Installation>> {
    c.query_all(
        sqlx::query(concat!(
            "SELECT ",
            installation_columns!(),
            " FROM installations WHERE account_id = $1 AND push_reg_id > $2 ORDER BY push_reg_id LIMIT $3"
        ))
        .bind(id(account_id))
        .bind(after.unwrap_or_default().to_owned())
        .bind(page_limit(limit)),
        rows::installation,
    )
    .await
}

pub(crate) async fn merge_entries_page(
    c: &mut Conn,
    account_id: Uuid,
    after: Option<Uuid>,
    limit: u32,
) -> StoreResult<Vec<MergeLogEntry>> {
    c.query_all(
        sqlx::query(concat!(
            "SELECT ",
            merge_columns!(),
            " FROM merge_log WHERE account_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        ))
        .bind(id(account_id))
        .bind(after.map(id).unwrap_or_default())
        .bind(page_limit(limit)),
        rows::merge_entry,
    )
    .await
}

/// Moves each person's phones, emails and tags from the grouped child rows into it (a person
/// without rows in a child table simply has none: the decoder starts empty).
fn attach_person_keys(
    persons: &mut [Person],
    phones: &mut HashMap<Uuid, Vec<String>>,
    emails: &mut HashMap<Uuid, Vec<String>>,
    tags: &mut HashMap<Uuid, Vec<String>>,
) {
    for person in persons {
        if let Some(list) = phones.remove(&person.id) {
            person.phones = list;
        }
        if let Some(list) = emails.remove(&person.id) {
            person.emails = list;
        }
        if let Some(list) = tags.remove(&person.id) {
            person.tags = list.into_iter().collect();
        }
    }
}

// --- whole store --------------------------------------------------------------------------------

/// Rows of a person-keyed child table, grouped by person, in the statement's order.
async fn grouped(c: &mut Conn, sql: &'static str) -> StoreResult<HashMap<Uuid, Vec<String>>> {
    let rows = c.fetch_all(sqlx::query(sql)).await?;
    let mut by_person: HashMap<Uuid, Vec<String>> = HashMap::new();
    for row in &rows {
        let person_id = rows::uuid_at(row, 0)?;
        by_person.entry(person_id).or_default().push(rows::get(row, 1)?);
    }
    Ok(by_person)
}

/// Everything, ordered by primary key (ids compare as their lowercase text, which is also
/// `Uuid`'s order); a person's phones and emails in position order: the SQLite backend's order.
///
/// The statements of a READ COMMITTED transaction each see the latest commits, so in a write
/// transaction every table is first locked in SHARE mode: concurrent writers wait until this
/// transaction ends, and all the reads see one state, as on SQLite's single writer. A
/// `begin_read` transaction reads one snapshot (REPEATABLE READ) and locks nothing.
pub(crate) async fn snapshot(c: &mut Conn) -> StoreResult<Snapshot> {
    if c.write {
        c.execute(sqlx::query(
            "LOCK TABLE accounts, applications, jwt_keys, api_keys, persons, person_phones, \
             person_emails, person_tags, installations, attribute_definitions, merge_log \
             IN SHARE MODE",
        ))
        .await?;
    }
    let accounts = c
        .query_all(
            sqlx::query(concat!("SELECT ", account_columns!(), " FROM accounts ORDER BY id")),
            rows::account,
        )
        .await?;
    let applications = c
        .query_all(
            sqlx::query(concat!(
                "SELECT ",
                application_columns!(),
                " FROM applications ORDER BY id"
            )),
            rows::application,
        )
        .await?;
    let jwt_keys = c
        .query_all(
            sqlx::query(concat!(
                "SELECT ",
                jwt_key_columns!(),
                " FROM jwt_keys ORDER BY application_id, kid"
            )),
            rows::jwt_key,
        )
        .await?;
    let api_keys = c
        .query_all(
            sqlx::query(concat!("SELECT ", api_key_columns!(), " FROM api_keys ORDER BY id")),
            rows::api_key,
        )
        .await?;
    let mut persons = c
        .query_all(
            sqlx::query(concat!("SELECT ", person_columns!(), " FROM persons ORDER BY id")),
            rows::person,
        )
        .await?;
    let mut phones = grouped(
        c,
        "SELECT person_id, number FROM person_phones ORDER BY person_id, position",
    )
    .await?;
    let mut emails = grouped(
        c,
        "SELECT person_id, address FROM person_emails ORDER BY person_id, position",
    )
    .await?;
    let mut tags = grouped(c, "SELECT person_id, tag FROM person_tags ORDER BY person_id, tag").await?;
    attach_person_keys(&mut persons, &mut phones, &mut emails, &mut tags);
    let installations = c
        .query_all(
            sqlx::query(concat!(
                "SELECT ",
                installation_columns!(),
                " FROM installations ORDER BY push_reg_id"
            )),
            rows::installation,
        )
        .await?;
    let attribute_definitions = c
        .query_all(
            sqlx::query(concat!(
                "SELECT ",
                definition_columns!(),
                " FROM attribute_definitions \
                 ORDER BY account_id, CASE scope WHEN 'PERSON' THEN 0 ELSE 1 END, name"
            )),
            rows::attribute_definition,
        )
        .await?;
    let merge_log = c
        .query_all(
            sqlx::query(concat!("SELECT ", merge_columns!(), " FROM merge_log ORDER BY id")),
            rows::merge_entry,
        )
        .await?;
    Ok(Snapshot {
        accounts,
        applications,
        jwt_keys,
        api_keys,
        persons,
        installations,
        attribute_definitions,
        merge_log,
        ..Snapshot::default()
    })
}
