//! The statements behind every `Tx` method, as plain functions over a connection that is inside
//! a transaction. They run inline on the caller's task: each is an indexed single-row (or
//! single-person) operation of a few microseconds. Every statement goes through
//! `prepare_cached`, and every query on an entity that has an account filters by it.

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

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
use rusqlite::{Connection, OptionalExtension, Row, ToSql, named_params, params};
use uuid::Uuid;

use crate::error::map_err;
use crate::rows;

/// Runs a query expected to return at most one row.
pub(crate) fn query_opt<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    decode: fn(&Row<'_>) -> rusqlite::Result<T>,
) -> StoreResult<Option<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(map_err)?;
    stmt.query_row(params, decode).optional().map_err(map_err)
}

/// Runs a query and decodes every row.
pub(crate) fn query_all<T, P: rusqlite::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    decode: fn(&Row<'_>) -> rusqlite::Result<T>,
) -> StoreResult<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(map_err)?;
    let rows = stmt.query_map(params, decode).map_err(map_err)?;
    rows.collect::<rusqlite::Result<Vec<T>>>().map_err(map_err)
}

/// Runs a statement; how many rows it changed.
pub(crate) fn execute<P: rusqlite::Params>(conn: &Connection, sql: &str, params: P) -> StoreResult<usize> {
    let mut stmt = conn.prepare_cached(sql).map_err(map_err)?;
    stmt.execute(params).map_err(map_err)
}

/// `rows` in chunks whose sizes are powers of two, each the largest that fits and at most `max`
/// (a power of two): multi-row statements come in a few sizes only, each prepared and cached
/// once.
pub(crate) fn power_of_two_chunks<T>(rows: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (chunk, after) = rest.split_at(max.min(1 << rest.len().ilog2()));
        rest = after;
        Some(chunk)
    })
}

/// A count.
pub(crate) fn count<P: rusqlite::Params>(conn: &Connection, sql: &str, params: P) -> StoreResult<u64> {
    let mut stmt = conn.prepare_cached(sql).map_err(map_err)?;
    let n: i64 = stmt.query_row(params, |r| r.get(0)).map_err(map_err)?;
    u64::try_from(n).map_err(|_| StoreError::Other(format!("negative count {n}")))
}

/// An UPDATE of one row by key: `NotFound` if there is no such row.
pub(crate) fn expect_one(changed: usize) -> StoreResult<()> {
    match changed {
        0 => Err(StoreError::NotFound),
        _ => Ok(()),
    }
}

// --- accounts -----------------------------------------------------------------------------------

pub(crate) fn default_account(conn: &Connection) -> StoreResult<Option<Account>> {
    query_opt(
        conn,
        concat!(
            "SELECT ",
            account_columns!(),
            " FROM accounts ORDER BY created_at, id LIMIT 1"
        ),
        [],
        rows::account,
    )
}

pub(crate) fn account(conn: &Connection, account_id: Uuid) -> StoreResult<Option<Account>> {
    query_opt(
        conn,
        concat!("SELECT ", account_columns!(), " FROM accounts WHERE id = ?1"),
        [id(account_id)],
        rows::account,
    )
}

pub(crate) fn insert_account(conn: &Connection, account: &Account) -> StoreResult<()> {
    execute(
        conn,
        "INSERT INTO accounts (id, name, created_at) VALUES (?1, ?2, ?3)",
        params![id(account.id), account.name, account.created_at],
    )
    .map(drop)
}

// --- applications and JWT keys --------------------------------------------------------------------

pub(crate) fn application_by_code(conn: &Connection, code: &str) -> StoreResult<Option<Application>> {
    query_opt(
        conn,
        concat!(
            "SELECT ",
            application_columns!(),
            " FROM applications WHERE application_code = ?1"
        ),
        [code],
        rows::application,
    )
}

pub(crate) fn application(conn: &Connection, account_id: Uuid, app_id: Uuid) -> StoreResult<Option<Application>> {
    query_opt(
        conn,
        concat!(
            "SELECT ",
            application_columns!(),
            " FROM applications WHERE account_id = ?1 AND id = ?2"
        ),
        [id(account_id), id(app_id)],
        rows::application,
    )
}

pub(crate) fn applications(conn: &Connection, account_id: Uuid) -> StoreResult<Vec<Application>> {
    query_all(
        conn,
        concat!(
            "SELECT ",
            application_columns!(),
            " FROM applications WHERE account_id = ?1 ORDER BY created_at, id"
        ),
        [id(account_id)],
        rows::application,
    )
}

pub(crate) fn insert_application(conn: &Connection, app: &Application) -> StoreResult<()> {
    execute(
        conn,
        concat!(
            "INSERT INTO applications (",
            application_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        ),
        params![
            id(app.account_id),
            id(app.id),
            app.name,
            app.application_code,
            app.enabled,
            app.require_jwt_for_user_data,
            app.restrict_user_data_from_sdk,
            json(&app.providers)?,
            app.created_at,
            app.updated_at,
        ],
    )
    .map(drop)
}

pub(crate) fn update_application(conn: &Connection, app: &Application) -> StoreResult<()> {
    let changed = execute(
        conn,
        "UPDATE applications SET name = ?3, application_code = ?4, enabled = ?5, \
         require_jwt_for_user_data = ?6, restrict_user_data_from_sdk = ?7, providers = ?8, \
         created_at = ?9, updated_at = ?10 \
         WHERE account_id = ?1 AND id = ?2",
        params![
            id(app.account_id),
            id(app.id),
            app.name,
            app.application_code,
            app.enabled,
            app.require_jwt_for_user_data,
            app.restrict_user_data_from_sdk,
            json(&app.providers)?,
            app.created_at,
            app.updated_at,
        ],
    )?;
    expect_one(changed)
}

pub(crate) fn jwt_key(
    conn: &Connection,
    account_id: Uuid,
    application_id: Uuid,
    kid: &str,
) -> StoreResult<Option<JwtKey>> {
    query_opt(
        conn,
        concat!(
            "SELECT ",
            jwt_key_columns!(),
            " FROM jwt_keys WHERE account_id = ?1 AND application_id = ?2 AND kid = ?3"
        ),
        params![id(account_id), id(application_id), kid],
        rows::jwt_key,
    )
}

pub(crate) fn jwt_keys(conn: &Connection, account_id: Uuid, application_id: Uuid) -> StoreResult<Vec<JwtKey>> {
    query_all(
        conn,
        concat!(
            "SELECT ",
            jwt_key_columns!(),
            " FROM jwt_keys WHERE account_id = ?1 AND application_id = ?2 ORDER BY created_at, kid"
        ),
        [id(account_id), id(application_id)],
        rows::jwt_key,
    )
}

pub(crate) fn insert_jwt_key(conn: &Connection, key: &JwtKey) -> StoreResult<()> {
    execute(
        conn,
        concat!(
            "INSERT INTO jwt_keys (",
            jwt_key_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5)"
        ),
        params![
            id(key.account_id),
            id(key.application_id),
            key.kid,
            key.secret,
            key.created_at,
        ],
    )
    .map(drop)
}

pub(crate) fn delete_jwt_key(
    conn: &Connection,
    account_id: Uuid,
    application_id: Uuid,
    kid: &str,
) -> StoreResult<bool> {
    execute(
        conn,
        "DELETE FROM jwt_keys WHERE account_id = ?1 AND application_id = ?2 AND kid = ?3",
        params![id(account_id), id(application_id), kid],
    )
    .map(|n| n > 0)
}

// --- API keys -----------------------------------------------------------------------------------

pub(crate) fn insert_api_key(conn: &Connection, key: &ApiKey) -> StoreResult<()> {
    execute(
        conn,
        concat!(
            "INSERT INTO api_keys (",
            api_key_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
        ),
        params![
            id(key.account_id),
            id(key.id),
            key.name,
            json(&key.scopes)?,
            key.key_hash,
            key.key_prefix,
            key.created_at,
            key.expires_at,
            key.last_used_at,
        ],
    )
    .map(drop)
}

pub(crate) fn api_key_by_hash(conn: &Connection, key_hash: &str) -> StoreResult<Option<ApiKey>> {
    query_opt(
        conn,
        concat!("SELECT ", api_key_columns!(), " FROM api_keys WHERE key_hash = ?1"),
        [key_hash],
        rows::api_key,
    )
}

pub(crate) fn api_keys(conn: &Connection, account_id: Uuid) -> StoreResult<Vec<ApiKey>> {
    query_all(
        conn,
        concat!(
            "SELECT ",
            api_key_columns!(),
            " FROM api_keys WHERE account_id = ?1 ORDER BY created_at, id"
        ),
        [id(account_id)],
        rows::api_key,
    )
}

// --- installations ------------------------------------------------------------------------------

pub(crate) fn installation(conn: &Connection, push_reg_id: &str) -> StoreResult<Option<Installation>> {
    query_opt(
        conn,
        concat!(
            "SELECT ",
            installation_columns!(),
            " FROM installations WHERE push_reg_id = ?1"
        ),
        [push_reg_id],
        rows::installation,
    )
}

pub(crate) fn installations_of_person(
    conn: &Connection,
    account_id: Uuid,
    person_id: Uuid,
    application_id: Option<Uuid>,
) -> StoreResult<Vec<Installation>> {
    match application_id {
        Some(app) => query_all(
            conn,
            concat!(
                "SELECT ",
                installation_columns!(),
                " FROM installations WHERE account_id = ?1 AND person_id = ?2 \
                 AND application_id = ?3 ORDER BY created_at, push_reg_id"
            ),
            [id(account_id), id(person_id), id(app)],
            rows::installation,
        ),
        None => query_all(
            conn,
            concat!(
                "SELECT ",
                installation_columns!(),
                " FROM installations WHERE account_id = ?1 AND person_id = ?2 \
                 ORDER BY created_at, push_reg_id"
            ),
            [id(account_id), id(person_id)],
            rows::installation,
        ),
    }
}

/// A statement writing an installation's columns, whose parameters are the column names
/// (`:account_id`, ...: the names of [`write_installation`]'s values), so that the INSERT and
/// the UPDATEs cannot disagree on an order. It may name any subset of them.
///
/// The values are bound by position: which value each of the statement's parameters takes is
/// worked out once per process, from the prepared statement's parameter names. Bound by name
/// on every run instead, each name cost a map lookup, and each name a statement does not hold
/// a scan of its names by SQLite (1.6–2% of `mobile-mix`'s server samples, on the writer's
/// serial path).
pub(crate) struct InstallationSql {
    sql: &'static str,
    /// For each parameter of the statement (`?1` first), the index of its value in
    /// [`write_installation`]'s list (the same list, in the same order, on every call).
    order: OnceLock<Vec<usize>>,
}

impl InstallationSql {
    const fn new(sql: &'static str) -> InstallationSql {
        InstallationSql {
            sql,
            order: OnceLock::new(),
        }
    }

    /// The order of the statement's parameters in `values`, from `stmt` (this statement
    /// prepared) the first time.
    fn order(&self, stmt: &rusqlite::Statement<'_>, values: &[(&str, &dyn ToSql)]) -> StoreResult<&[usize]> {
        if let Some(order) = self.order.get() {
            return Ok(order);
        }
        let order = (1..=stmt.parameter_count())
            .map(|i| {
                let name = stmt.parameter_name(i).unwrap_or("?");
                values
                    .iter()
                    .position(|(n, _)| *n == name)
                    .ok_or_else(|| StoreError::Other(format!("installation statement parameter {name} has no value")))
            })
            .collect::<StoreResult<Vec<usize>>>()?;
        Ok(self.order.get_or_init(|| order))
    }
}

/// Writes columns of an installation with each statement of `statements` in turn. The values
/// are computed once for all of them. The rows each statement changed.
fn write_installation<const N: usize>(
    conn: &Connection,
    statements: [&InstallationSql; N],
    inst: &Installation,
) -> StoreResult<[usize; N]> {
    let s = &inst.system;
    let values: &[(&str, &dyn ToSql)] = named_params! {
            ":account_id": id(inst.account_id),
            ":application_id": id(inst.application_id),
            ":push_reg_id": inst.push_reg_id,
            ":person_id": id(inst.person_id),
            ":push_service_type": inst.push_service_type.map(|t| t.as_str()),
            ":provider": inst.provider().map(Provider::as_str),
            ":push_service_token": inst.push_service_token,
            ":reg_enabled": inst.reg_enabled,
            ":is_primary": inst.is_primary,
            ":application_user_id": inst.application_user_id,
            ":custom_attributes": json(&inst.custom_attributes)?,
            ":notifications_enabled": s.notifications_enabled,
            ":sdk_version": s.sdk_version,
            ":app_version": s.app_version,
            ":os": s.os,
            ":os_version": s.os_version,
            ":device_manufacturer": s.device_manufacturer,
            ":device_model": s.device_model,
            ":device_name": s.device_name,
            ":device_secure": s.device_secure,
            ":language": s.language,
            ":device_timezone_offset": s.device_timezone_offset,
            ":inappchat": s.inappchat,
            ":inbox": s.inbox,
            ":webrtcui": s.webrtcui,
            ":created_at": inst.created_at,
            ":updated_at": inst.updated_at,
            ":last_seen_at": inst.last_seen_at,
            ":token_cleared_at": inst.token_cleared_at,
            ":token_cleared_reason": inst.token_cleared_reason.map(TokenClearedReason::as_str),
    };
    let mut changed = [0; N];
    for (statement, changed) in statements.into_iter().zip(&mut changed) {
        let mut stmt = conn.prepare_cached(statement.sql).map_err(map_err)?;
        let order = statement.order(&stmt, values)?;
        for (i, &value) in order.iter().enumerate() {
            stmt.raw_bind_parameter(i + 1, values[value].1).map_err(map_err)?;
        }
        *changed = stmt.raw_execute().map_err(map_err)?;
    }
    Ok(changed)
}

/// The installation `INSERT`.
static INSERT_INSTALLATION: InstallationSql = InstallationSql::new(
    "INSERT INTO installations (account_id, application_id, push_reg_id, person_id, \
     push_service_type, provider, push_service_token, reg_enabled, is_primary, \
     application_user_id, custom_attributes, notifications_enabled, sdk_version, app_version, \
     os, os_version, device_manufacturer, device_model, device_name, device_secure, language, \
     device_timezone_offset, inappchat, inbox, webrtcui, created_at, updated_at, last_seen_at, \
     token_cleared_at, token_cleared_reason) \
     VALUES (:account_id, :application_id, :push_reg_id, :person_id, :push_service_type, \
     :provider, :push_service_token, :reg_enabled, :is_primary, :application_user_id, \
     :custom_attributes, :notifications_enabled, :sdk_version, :app_version, :os, \
     :os_version, :device_manufacturer, :device_model, :device_name, :device_secure, \
     :language, :device_timezone_offset, :inappchat, :inbox, :webrtcui, :created_at, \
     :updated_at, :last_seen_at, :token_cleared_at, :token_cleared_reason)",
);

pub(crate) fn insert_installation(conn: &Connection, inst: &Installation) -> StoreResult<()> {
    write_installation(conn, [&INSERT_INSTALLATION], inst)?;
    // The audience index, in the same transaction.
    crate::audience::index_installation(conn, inst, crate::audience::Stored::Nothing)
}

/// The columns of an installation no index reads (written on every update).
static UPDATE_INSTALLATION_UNINDEXED: InstallationSql = InstallationSql::new(
    "UPDATE installations SET reg_enabled = :reg_enabled, \
         application_user_id = :application_user_id, \
         custom_attributes = :custom_attributes, notifications_enabled = :notifications_enabled, \
         sdk_version = :sdk_version, app_version = :app_version, os = :os, \
         os_version = :os_version, device_manufacturer = :device_manufacturer, \
         device_model = :device_model, device_name = :device_name, \
         device_secure = :device_secure, language = :language, \
         device_timezone_offset = :device_timezone_offset, inappchat = :inappchat, \
         inbox = :inbox, webrtcui = :webrtcui, updated_at = :updated_at, \
         last_seen_at = :last_seen_at, token_cleared_at = :token_cleared_at, \
         token_cleared_reason = :token_cleared_reason \
         WHERE account_id = :account_id AND push_reg_id = :push_reg_id",
);

/// The columns an index, a partial index or the provider `CHECK` reads (written when one of them
/// differs).
static UPDATE_INSTALLATION_INDEXED: InstallationSql = InstallationSql::new(
    "UPDATE installations SET application_id = :application_id, person_id = :person_id, \
         push_service_type = :push_service_type, provider = :provider, \
         push_service_token = :push_service_token, is_primary = :is_primary, \
         created_at = :created_at \
         WHERE account_id = :account_id AND push_reg_id = :push_reg_id \
         AND (application_id IS NOT :application_id OR person_id IS NOT :person_id \
         OR push_service_type IS NOT :push_service_type OR provider IS NOT :provider \
         OR push_service_token IS NOT :push_service_token OR is_primary IS NOT :is_primary \
         OR created_at IS NOT :created_at)",
);

/// Rewrites an installation. Two statements, because SQLite rewrites an index entry whenever
/// the `SET` list names one of its columns, changed or not (measured: `SET a = a` dirties the
/// index page of `a`): the columns no index holds are written every time, the ones the
/// installations' indexes and their partial-index and provider `CHECK`s read
/// (`application_id`, `person_id`, `push_service_type`, `provider`, `push_service_token`,
/// `is_primary`, `created_at`) only when one of them changed. A `PATCH` or a `lastSeenAt`
/// refresh so dirties the row's page, not a page of each of its five indexes.
pub(crate) fn update_installation(conn: &Connection, inst: &Installation) -> StoreResult<()> {
    let [changed, _] = write_installation(
        conn,
        [&UPDATE_INSTALLATION_UNINDEXED, &UPDATE_INSTALLATION_INDEXED],
        inst,
    )?;
    expect_one(changed)?;
    // The audience index, in the same transaction.
    crate::audience::index_installation(conn, inst, crate::audience::Stored::Unknown)
}

/// [`update_installation`] from `before`, the installation as stored (`Tx::update_installation_from`):
/// the indexed columns are written only if one of them differs, the search row only if it
/// differs, and the value rows are diffed against those of `before`, with nothing read.
pub(crate) fn update_installation_from(
    conn: &Connection,
    before: &Installation,
    after: &Installation,
) -> StoreResult<()> {
    #[cfg(debug_assertions)]
    crate::audience::assert_stored_installation(conn, before);
    if before.push_reg_id != after.push_reg_id || before.account_id != after.account_id {
        return Err(StoreError::Other(
            "an update cannot change an installation's identity".into(),
        ));
    }
    let indexed_changed = (
        before.application_id,
        before.person_id,
        before.push_service_type,
        &before.push_service_token,
        before.is_primary,
        before.created_at,
    ) != (
        after.application_id,
        after.person_id,
        after.push_service_type,
        &after.push_service_token,
        after.is_primary,
        after.created_at,
    );
    if indexed_changed {
        let [changed, _] = write_installation(
            conn,
            [&UPDATE_INSTALLATION_UNINDEXED, &UPDATE_INSTALLATION_INDEXED],
            after,
        )?;
        expect_one(changed)?;
    } else {
        let [changed] = write_installation(conn, [&UPDATE_INSTALLATION_UNINDEXED], after)?;
        expect_one(changed)?;
    }
    crate::audience::index_installation_from(conn, before, after)
}

pub(crate) fn delete_installation(conn: &Connection, account_id: Uuid, push_reg_id: &str) -> StoreResult<bool> {
    execute(
        conn,
        "DELETE FROM installations WHERE account_id = ?1 AND push_reg_id = ?2",
        params![id(account_id), push_reg_id],
    )
    .map(|n| n > 0)
}

/// people.md §2.3. `updated_at` moves too: the installation's data changed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn clear_token_holders(
    conn: &Connection,
    account_id: Uuid,
    application_id: Uuid,
    provider: Provider,
    token: &str,
    except: &str,
    reason: TokenClearedReason,
    now: Millis,
) -> StoreResult<Vec<String>> {
    let mut stmt = conn
        .prepare_cached(
            "UPDATE installations SET push_service_token = NULL, token_cleared_at = ?6, \
             token_cleared_reason = ?7, updated_at = ?6 \
             WHERE account_id = ?1 AND application_id = ?2 AND provider = ?3 \
             AND push_service_token = ?4 AND push_reg_id <> ?5 \
             RETURNING push_reg_id",
        )
        .map_err(map_err)?;
    let cleared = stmt
        .query_map(
            params![
                id(account_id),
                id(application_id),
                provider.as_str(),
                token,
                except,
                now,
                reason.as_str(),
            ],
            |r| r.get::<_, String>(0),
        )
        .map_err(map_err)?;
    let mut cleared = cleared.collect::<rusqlite::Result<Vec<String>>>().map_err(map_err)?;
    // RETURNING order is unspecified.
    cleared.sort();
    Ok(cleared)
}

/// people.md §4: the other installations of the person in the application lose the flag.
pub(crate) fn demote_primaries(
    conn: &Connection,
    account_id: Uuid,
    person_id: Uuid,
    application_id: Uuid,
    except: &str,
    now: Millis,
) -> StoreResult<u64> {
    let n = execute(
        conn,
        "UPDATE installations SET is_primary = 0, updated_at = ?5 \
         WHERE account_id = ?1 AND person_id = ?2 AND application_id = ?3 \
         AND is_primary = 1 AND push_reg_id <> ?4",
        params![id(account_id), id(person_id), id(application_id), except, now],
    )?;
    Ok(n as u64)
}

pub(crate) fn count_installations_of_person(conn: &Connection, account_id: Uuid, person_id: Uuid) -> StoreResult<u64> {
    count(
        conn,
        "SELECT count(*) FROM installations WHERE account_id = ?1 AND person_id = ?2",
        [id(account_id), id(person_id)],
    )
}

// --- persons ------------------------------------------------------------------------------------

/// Reads a person's phones, emails and tags into it.
fn load_person_keys(conn: &Connection, person: &mut Person) -> StoreResult<()> {
    (person.phones, person.emails, person.tags) = stored_person_keys(conn, person.account_id, person.id)?;
    Ok(())
}

/// A person's stored phones and emails (in position order) and tags, in one statement: it runs
/// on every read of a person and again before every write of one. `+account_id`: each table is
/// read by its primary key (person_id, ...), not by an index led by the account, which would read
/// every key of the account.
fn stored_person_keys(
    conn: &Connection,
    account_id: Uuid,
    person_id: Uuid,
) -> StoreResult<(Vec<String>, Vec<String>, BTreeSet<String>)> {
    let mut rows: Vec<(i64, i64, String)> = query_all(
        conn,
        "SELECT 0, position, number FROM person_phones WHERE person_id = ?2 AND +account_id = ?1 \
         UNION ALL \
         SELECT 1, position, address FROM person_emails WHERE person_id = ?2 AND +account_id = ?1 \
         UNION ALL \
         SELECT 2, 0, tag FROM person_tags WHERE person_id = ?2 AND +account_id = ?1",
        (id(account_id), id(person_id)),
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    // Sorted here: an ORDER BY would sort each arm in a temporary B-tree.
    rows.sort_unstable_by_key(|&(kind, position, _)| (kind, position));
    let (mut phones, mut emails, mut tags) = (Vec::new(), Vec::new(), BTreeSet::new());
    for (kind, _, key) in rows {
        match kind {
            0 => phones.push(key),
            1 => emails.push(key),
            _ => {
                tags.insert(key);
            }
        }
    }
    Ok((phones, emails, tags))
}

/// Inserts a person's phones, emails and tags (the person has none stored).
fn insert_person_keys(conn: &Connection, person: &Person) -> StoreResult<()> {
    insert_keys(
        conn,
        person,
        0..person.phones.len(),
        0..person.emails.len(),
        person.tags.iter(),
    )
}

/// Inserts the person's phones and emails at `phones` and `emails` (positions; those past the
/// end of its lists are skipped) and the tags `tags`.
fn insert_keys<'a>(
    conn: &Connection,
    person: &Person,
    phones: impl IntoIterator<Item = usize>,
    emails: impl IntoIterator<Item = usize>,
    tags: impl IntoIterator<Item = &'a String>,
) -> StoreResult<()> {
    let (account_id, person_id) = (id(person.account_id), id(person.id));
    for position in phones {
        if let Some(number) = person.phones.get(position) {
            execute(
                conn,
                "INSERT INTO person_phones (account_id, person_id, position, number) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![account_id, person_id, position as i64, number],
            )?;
        }
    }
    for position in emails {
        if let Some(address) = person.emails.get(position) {
            execute(
                conn,
                "INSERT INTO person_emails (account_id, person_id, position, address, email_key) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![account_id, person_id, position as i64, address, email_key(address)],
            )?;
        }
    }
    for tag in tags {
        execute(
            conn,
            "INSERT INTO person_tags (account_id, person_id, tag) VALUES (?1, ?2, ?3)",
            params![account_id, person_id, tag],
        )?;
    }
    Ok(())
}

pub(crate) fn person(conn: &Connection, account_id: Uuid, person_id: Uuid) -> StoreResult<Option<Person>> {
    let found = query_opt(
        conn,
        concat!(
            "SELECT ",
            person_columns!(),
            " FROM persons WHERE account_id = ?1 AND id = ?2"
        ),
        [id(account_id), id(person_id)],
        rows::person,
    )?;
    match found {
        Some(mut person) => {
            load_person_keys(conn, &mut person)?;
            Ok(Some(person))
        }
        None => Ok(None),
    }
}

/// people.md §5.1 step 2: the distinct owners of any of the keys, by id. The key lists travel as
/// one JSON array parameter each (`json_each`), so one cached statement serves every list length.
pub(crate) fn persons_owning(
    conn: &Connection,
    account_id: Uuid,
    external_user_id: Option<&str>,
    phones: &[String],
    email_keys: &[String],
) -> StoreResult<Vec<Uuid>> {
    let owners = query_all(
        conn,
        "SELECT id FROM persons WHERE account_id = ?1 AND external_user_id = ?2 \
         UNION \
         SELECT person_id FROM person_phones WHERE account_id = ?1 \
         AND number IN (SELECT value FROM json_each(?3)) \
         UNION \
         SELECT person_id FROM person_emails WHERE account_id = ?1 \
         AND email_key IN (SELECT value FROM json_each(?4)) \
         ORDER BY 1",
        params![id(account_id), external_user_id, json(phones)?, json(email_keys)?],
        |r| rows::uuid_at(r, 0),
    )?;
    Ok(owners)
}

pub(crate) fn insert_person(conn: &Connection, person: &Person) -> StoreResult<()> {
    execute(
        conn,
        concat!(
            "INSERT INTO persons (",
            person_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
        ),
        params![
            id(person.account_id),
            id(person.id),
            person.external_user_id,
            person.first_name,
            person.middle_name,
            person.last_name,
            person.gender.map(|g| g.as_str()),
            person.birthday,
            json(&person.custom_attributes)?,
            person.person_type.as_str(),
            person.version,
            person.created_at,
            person.updated_at,
        ],
    )?;
    insert_person_keys(conn, person)?;
    // The audience index, in the same transaction.
    crate::audience::index_person(conn, person, crate::audience::Stored::Nothing)
}

/// Replaces every field and key of a person, writing only what changed: SQLite rewrites an
/// index entry whenever the `SET` list names one of its columns, so `external_user_id` (the only
/// indexed column of `persons` that can change) is set by its own statement when it differs, and
/// the keys and tags are compared with the stored ones ([`replace_person_keys`]).
pub(crate) fn update_person(conn: &Connection, person: &Person) -> StoreResult<()> {
    write_person_row(conn, person)?;
    write_external_user_id(conn, person)?;
    replace_person_keys(conn, person)?;
    // The audience index, in the same transaction.
    crate::audience::index_person(conn, person, crate::audience::Stored::Unknown)
}

/// The person's row but `external_user_id` (the one indexed column an update can change).
fn write_person_row(conn: &Connection, person: &Person) -> StoreResult<()> {
    let changed = execute(
        conn,
        "UPDATE persons SET first_name = ?3, middle_name = ?4, \
         last_name = ?5, gender = ?6, birthday = ?7, custom_attributes = ?8, type = ?9, \
         version = ?10, created_at = ?11, updated_at = ?12 \
         WHERE account_id = ?1 AND id = ?2",
        params![
            id(person.account_id),
            id(person.id),
            person.first_name,
            person.middle_name,
            person.last_name,
            person.gender.map(|g| g.as_str()),
            person.birthday,
            json(&person.custom_attributes)?,
            person.person_type.as_str(),
            person.version,
            person.created_at,
            person.updated_at,
        ],
    )?;
    expect_one(changed)
}

/// The person's `external_user_id`, where it differs.
fn write_external_user_id(conn: &Connection, person: &Person) -> StoreResult<()> {
    execute(
        conn,
        "UPDATE persons SET external_user_id = ?3 \
         WHERE account_id = ?1 AND id = ?2 AND external_user_id IS NOT ?3",
        params![id(person.account_id), id(person.id), person.external_user_id],
    )
    .map(drop)
}

/// [`update_person`] from `before`, the person as stored (`Tx::update_person_from`): its keys and
/// value rows are diffed against those of `before`, and `external_user_id` written only if it
/// differs, with nothing read.
pub(crate) fn update_person_from(conn: &Connection, before: &Person, after: &Person) -> StoreResult<()> {
    #[cfg(debug_assertions)]
    crate::audience::assert_stored_person(conn, before);
    if before.id != after.id || before.account_id != after.account_id {
        return Err(StoreError::Other("an update cannot change a person's identity".into()));
    }
    write_person_row(conn, after)?;
    if before.external_user_id != after.external_user_id {
        write_external_user_id(conn, after)?;
    }
    write_person_keys(conn, after, (&before.phones, &before.emails, &before.tags))?;
    crate::audience::index_person_from(conn, before, after)
}

/// Makes a person's stored phones, emails and tags those of `person`. Every key to go is deleted
/// before any new one is inserted, so a key released by this person can be taken by another one
/// later in the same transaction, and one this person moves between positions is free when it
/// is written again; a key that stays where it was is not touched.
fn replace_person_keys(conn: &Connection, person: &Person) -> StoreResult<()> {
    let (phones, emails, tags) = stored_person_keys(conn, person.account_id, person.id)?;
    write_person_keys(conn, person, (&phones, &emails, &tags))
}

/// [`replace_person_keys`] given the stored phones, emails and tags.
fn write_person_keys(
    conn: &Connection,
    person: &Person,
    (stored_phones, stored_emails, stored_tags): (&[String], &[String], &BTreeSet<String>),
) -> StoreResult<()> {
    let person_id = id(person.id);
    // The positions whose key differs (or exists on one side only).
    let moved = |old: &[String], new: &[String]| -> Vec<usize> {
        (0..old.len().max(new.len()))
            .filter(|&i| old.get(i) != new.get(i))
            .collect()
    };
    let phones = moved(stored_phones, &person.phones);
    let emails = moved(stored_emails, &person.emails);
    for &position in &phones {
        execute(
            conn,
            "DELETE FROM person_phones WHERE person_id = ?1 AND position = ?2",
            params![person_id, position as i64],
        )?;
    }
    for &position in &emails {
        execute(
            conn,
            "DELETE FROM person_emails WHERE person_id = ?1 AND position = ?2",
            params![person_id, position as i64],
        )?;
    }
    for tag in stored_tags.difference(&person.tags) {
        execute(
            conn,
            "DELETE FROM person_tags WHERE person_id = ?1 AND tag = ?2",
            params![person_id, tag],
        )?;
    }
    insert_keys(conn, person, phones, emails, person.tags.difference(stored_tags))
}

/// Deletes a person; its keys and tags go with it (ON DELETE CASCADE). An installation still
/// referencing it makes this fail (foreign key): the core must move or delete those first.
pub(crate) fn delete_person(conn: &Connection, account_id: Uuid, person_id: Uuid) -> StoreResult<bool> {
    execute(
        conn,
        "DELETE FROM persons WHERE account_id = ?1 AND id = ?2",
        [id(account_id), id(person_id)],
    )
    .map(|n| n > 0)
}

// --- attribute definitions ----------------------------------------------------------------------

pub(crate) fn attribute_definition(
    conn: &Connection,
    account_id: Uuid,
    scope: AttributeScope,
    name: &str,
) -> StoreResult<Option<AttributeDefinition>> {
    query_opt(
        conn,
        concat!(
            "SELECT ",
            definition_columns!(),
            " FROM attribute_definitions WHERE account_id = ?1 AND scope = ?2 AND name = ?3"
        ),
        params![id(account_id), scope.as_str(), name],
        rows::attribute_definition,
    )
}

/// By scope (PERSON before INSTALLATION, the order of `AttributeScope`), then name in code-point
/// order (SQLite's BINARY collation compares UTF-8 bytes, which is code-point order).
pub(crate) fn attribute_definitions(
    conn: &Connection,
    account_id: Uuid,
    scope: Option<AttributeScope>,
) -> StoreResult<Vec<AttributeDefinition>> {
    match scope {
        Some(scope) => query_all(
            conn,
            concat!(
                "SELECT ",
                definition_columns!(),
                " FROM attribute_definitions WHERE account_id = ?1 AND scope = ?2 ORDER BY name"
            ),
            params![id(account_id), scope.as_str()],
            rows::attribute_definition,
        ),
        None => query_all(
            conn,
            concat!(
                "SELECT ",
                definition_columns!(),
                " FROM attribute_definitions WHERE account_id = ?1 \
                 ORDER BY CASE scope WHEN 'PERSON' THEN 0 ELSE 1 END, name"
            ),
            [id(account_id)],
            rows::attribute_definition,
        ),
    }
}

pub(crate) fn count_attribute_definitions(
    conn: &Connection,
    account_id: Uuid,
    scope: AttributeScope,
) -> StoreResult<u64> {
    count(
        conn,
        "SELECT count(*) FROM attribute_definitions WHERE account_id = ?1 AND scope = ?2",
        params![id(account_id), scope.as_str()],
    )
}

/// Writes every column of a definition with `sql` (positional, in `definition_columns!` order).
fn write_definition(conn: &Connection, sql: &str, def: &AttributeDefinition) -> StoreResult<usize> {
    execute(
        conn,
        sql,
        params![
            id(def.account_id),
            def.scope.as_str(),
            def.name,
            def.attr_type.as_str(),
            opt_json(def.object_schema.as_ref())?,
            def.origin.as_str(),
            def.created_at,
        ],
    )
}

/// A plain insert: a definition of the same scope and name is a conflict.
pub(crate) fn insert_attribute_definition(conn: &Connection, def: &AttributeDefinition) -> StoreResult<()> {
    write_definition(
        conn,
        concat!(
            "INSERT INTO attribute_definitions (",
            definition_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
        ),
        def,
    )
    .map(drop)
}

/// people.md §8.2: the first definition of a name wins; a later one reads the winner back.
pub(crate) fn define_attribute(
    conn: &Connection,
    def: &AttributeDefinition,
) -> StoreResult<(AttributeDefinition, bool)> {
    let inserted = write_definition(
        conn,
        concat!(
            "INSERT INTO attribute_definitions (",
            definition_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
             ON CONFLICT (account_id, scope, name) DO NOTHING"
        ),
        def,
    )? > 0;
    match attribute_definition(conn, def.account_id, def.scope, &def.name)? {
        Some(stored) => Ok((stored, inserted)),
        None => Err(StoreError::Other(format!(
            "attribute definition {:?} missing right after its insert",
            def.name
        ))),
    }
}

// --- merge log ----------------------------------------------------------------------------------

/// Writes every column of a merge-log entry with `sql` (positional, in `merge_columns!` order).
fn write_merge_entry(conn: &Connection, sql: &str, e: &MergeLogEntry) -> StoreResult<usize> {
    execute(
        conn,
        sql,
        params![
            id(e.account_id),
            id(e.id),
            e.created_at,
            json(&e.actor)?,
            e.push_reg_id,
            e.source_person_id.map(id),
            e.target_person_id.map(id),
            e.source_deleted,
            e.after_forced_depersonalize,
            json(&e.dropped_attributes)?,
            opt_json(e.before.as_ref())?,
            e.after_target_version,
            e.after_source_version,
            e.status.as_str(),
            e.reversed_at,
            opt_json(e.reversed_by.as_ref())?,
            e.redacted,
        ],
    )
}

pub(crate) fn insert_merge_entry(conn: &Connection, entry: &MergeLogEntry) -> StoreResult<()> {
    write_merge_entry(
        conn,
        concat!(
            "INSERT INTO merge_log (",
            merge_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
        ),
        entry,
    )
    .map(drop)
}

pub(crate) fn merge_entry(conn: &Connection, account_id: Uuid, entry_id: Uuid) -> StoreResult<Option<MergeLogEntry>> {
    query_opt(
        conn,
        concat!(
            "SELECT ",
            merge_columns!(),
            " FROM merge_log WHERE account_id = ?1 AND id = ?2"
        ),
        [id(account_id), id(entry_id)],
        rows::merge_entry,
    )
}

pub(crate) fn update_merge_entry(conn: &Connection, entry: &MergeLogEntry) -> StoreResult<()> {
    let changed = write_merge_entry(
        conn,
        "UPDATE merge_log SET created_at = ?3, actor = ?4, push_reg_id = ?5, \
         source_person_id = ?6, target_person_id = ?7, source_deleted = ?8, \
         after_forced_depersonalize = ?9, dropped_attributes = ?10, \"before\" = ?11, \
         after_target_version = ?12, after_source_version = ?13, status = ?14, \
         reversed_at = ?15, reversed_by = ?16, redacted = ?17 \
         WHERE account_id = ?1 AND id = ?2",
        entry,
    )?;
    expect_one(changed)
}

// --- streaming every row -----------------------------------------------------------------------
//
// Keyset pages in primary-key order: each statement is a range scan of the table's primary key
// (`id`, `push_reg_id`, `(application_id, kid)`, `(account_id, scope, name)`) starting after the
// cursor, filtered by account. The first page starts after "" (every stored key is greater)
// rather than under an `?2 IS NULL OR ...` condition, which would keep SQLite from seeking the
// index and make every page scan from the start. `+account_id` keeps the account filter out of
// index selection: without statistics SQLite would otherwise read the whole account through an
// index led by account_id and sort it for every page, instead of seeking the primary key. In a store with one account (the usual case) that is exact; with
// several, a page also steps over other accounts' rows in the same key range.

pub(crate) fn count_accounts(conn: &Connection) -> StoreResult<u64> {
    count(conn, "SELECT count(*) FROM accounts", [])
}

pub(crate) fn count_rows(conn: &Connection, account_id: Uuid, kind: RowKind) -> StoreResult<u64> {
    let sql = match kind {
        RowKind::Application => "SELECT count(*) FROM applications WHERE account_id = ?1",
        RowKind::JwtKey => "SELECT count(*) FROM jwt_keys WHERE account_id = ?1",
        RowKind::ApiKey => "SELECT count(*) FROM api_keys WHERE account_id = ?1",
        RowKind::AttributeDefinition => "SELECT count(*) FROM attribute_definitions WHERE account_id = ?1",
        RowKind::Person => "SELECT count(*) FROM persons WHERE account_id = ?1",
        RowKind::Installation => "SELECT count(*) FROM installations WHERE account_id = ?1",
        RowKind::MergeLogEntry => "SELECT count(*) FROM merge_log WHERE account_id = ?1",
    };
    count(conn, sql, [id(account_id)])
}

pub(crate) fn accounts_page(conn: &Connection, after: Option<Uuid>, limit: u32) -> StoreResult<Vec<Account>> {
    query_all(
        conn,
        concat!(
            "SELECT ",
            account_columns!(),
            " FROM accounts WHERE id > ?1 ORDER BY id LIMIT ?2"
        ),
        params![after.map(id).unwrap_or_default(), page_limit(limit)],
        rows::account,
    )
}

pub(crate) fn applications_page(
    conn: &Connection,
    account_id: Uuid,
    after: Option<Uuid>,
    limit: u32,
) -> StoreResult<Vec<Application>> {
    query_all(
        conn,
        concat!(
            "SELECT ",
            application_columns!(),
            " FROM applications WHERE +account_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
        ),
        params![id(account_id), after.map(id).unwrap_or_default(), page_limit(limit)],
        rows::application,
    )
}

pub(crate) fn jwt_keys_page(
    conn: &Connection,
    account_id: Uuid,
    after: Option<(Uuid, &str)>,
    limit: u32,
) -> StoreResult<Vec<JwtKey>> {
    let (after_app, after_kid) = after.map_or((String::new(), ""), |(app, kid)| (id(app), kid));
    query_all(
        conn,
        concat!(
            "SELECT ",
            jwt_key_columns!(),
            " FROM jwt_keys WHERE account_id = ?1 AND (application_id, kid) > (?2, ?3) \
             ORDER BY application_id, kid LIMIT ?4"
        ),
        params![id(account_id), after_app, after_kid, page_limit(limit)],
        rows::jwt_key,
    )
}

pub(crate) fn api_keys_page(
    conn: &Connection,
    account_id: Uuid,
    after: Option<Uuid>,
    limit: u32,
) -> StoreResult<Vec<ApiKey>> {
    query_all(
        conn,
        concat!(
            "SELECT ",
            api_key_columns!(),
            " FROM api_keys WHERE +account_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
        ),
        params![id(account_id), after.map(id).unwrap_or_default(), page_limit(limit)],
        rows::api_key,
    )
}

pub(crate) fn attribute_definitions_page(
    conn: &Connection,
    account_id: Uuid,
    after: Option<(AttributeScope, &str)>,
    limit: u32,
) -> StoreResult<Vec<AttributeDefinition>> {
    let (after_scope, after_name) = after.map_or(("", ""), |(scope, name)| (scope.as_str(), name));
    query_all(
        conn,
        concat!(
            "SELECT ",
            definition_columns!(),
            " FROM attribute_definitions WHERE account_id = ?1 \
             AND (scope, name) > (?2, ?3) ORDER BY scope, name LIMIT ?4"
        ),
        params![id(account_id), after_scope, after_name, page_limit(limit)],
        rows::attribute_definition,
    )
}

/// The persons of the page, then their phones, emails and tags: one range scan per child table
/// over the page's id range (whose rows of this account are exactly the page's persons).
pub(crate) fn persons_page(
    conn: &Connection,
    account_id: Uuid,
    after: Option<Uuid>,
    limit: u32,
) -> StoreResult<Vec<Person>> {
    let mut persons = query_all(
        conn,
        concat!(
            "SELECT ",
            person_columns!(),
            " FROM persons WHERE +account_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
        ),
        params![id(account_id), after.map(id).unwrap_or_default(), page_limit(limit)],
        rows::person,
    )?;
    let (Some(first), Some(last)) = (persons.first(), persons.last()) else {
        return Ok(persons);
    };
    let range = (id(account_id), id(first.id), id(last.id));
    let child = |sql: &str| -> StoreResult<HashMap<Uuid, Vec<String>>> {
        let pairs = query_all(conn, sql, (&range.0, &range.1, &range.2), |r| {
            Ok((rows::uuid_at(r, 0)?, r.get(1)?))
        })?;
        let mut by_person: HashMap<Uuid, Vec<String>> = HashMap::new();
        for (person_id, value) in pairs {
            by_person.entry(person_id).or_default().push(value);
        }
        Ok(by_person)
    };
    let mut phones = child(
        "SELECT person_id, number FROM person_phones WHERE +account_id = ?1 \
         AND person_id >= ?2 AND person_id <= ?3 ORDER BY person_id, position",
    )?;
    let mut emails = child(
        "SELECT person_id, address FROM person_emails WHERE +account_id = ?1 \
         AND person_id >= ?2 AND person_id <= ?3 ORDER BY person_id, position",
    )?;
    let mut tags = child(
        "SELECT person_id, tag FROM person_tags WHERE +account_id = ?1 \
         AND person_id >= ?2 AND person_id <= ?3 ORDER BY person_id, tag",
    )?;
    attach_person_keys(&mut persons, &mut phones, &mut emails, &mut tags);
    Ok(persons)
}

pub(crate) fn installations_page(
    conn: &Connection,
    account_id: Uuid,
    after: Option<&str>,
    limit: u32,
) -> StoreResult<Vec<Installation>> {
    query_all(
        conn,
        concat!(
            "SELECT ",
            installation_columns!(),
            " FROM installations WHERE +account_id = ?1 AND push_reg_id > ?2 \
             ORDER BY push_reg_id LIMIT ?3"
        ),
        params![id(account_id), after.unwrap_or_default(), page_limit(limit)],
        rows::installation,
    )
}

pub(crate) fn merge_entries_page(
    conn: &Connection,
    account_id: Uuid,
    after: Option<Uuid>,
    limit: u32,
) -> StoreResult<Vec<MergeLogEntry>> {
    query_all(
        conn,
        concat!(
            "SELECT ",
            merge_columns!(),
            " FROM merge_log WHERE +account_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
        ),
        params![id(account_id), after.map(id).unwrap_or_default(), page_limit(limit)],
        rows::merge_entry,
    )
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
fn grouped(conn: &Connection, sql: &str) -> StoreResult<HashMap<Uuid, Vec<String>>> {
    let pairs = query_all(conn, sql, [], |r| Ok((rows::uuid_at(r, 0)?, r.get(1)?)))?;
    let mut by_person: HashMap<Uuid, Vec<String>> = HashMap::new();
    for (person_id, value) in pairs {
        by_person.entry(person_id).or_default().push(value);
    }
    Ok(by_person)
}

/// Everything, ordered by primary key (ids compare as their lowercase text, which is also
/// `Uuid`'s order); a person's phones and emails in position order.
pub(crate) fn snapshot(conn: &Connection) -> StoreResult<Snapshot> {
    let accounts = query_all(
        conn,
        concat!("SELECT ", account_columns!(), " FROM accounts ORDER BY id"),
        [],
        rows::account,
    )?;
    let applications = query_all(
        conn,
        concat!("SELECT ", application_columns!(), " FROM applications ORDER BY id"),
        [],
        rows::application,
    )?;
    let jwt_keys = query_all(
        conn,
        concat!(
            "SELECT ",
            jwt_key_columns!(),
            " FROM jwt_keys ORDER BY application_id, kid"
        ),
        [],
        rows::jwt_key,
    )?;
    let api_keys = query_all(
        conn,
        concat!("SELECT ", api_key_columns!(), " FROM api_keys ORDER BY id"),
        [],
        rows::api_key,
    )?;
    let mut persons = query_all(
        conn,
        concat!("SELECT ", person_columns!(), " FROM persons ORDER BY id"),
        [],
        rows::person,
    )?;
    let mut phones = grouped(
        conn,
        "SELECT person_id, number FROM person_phones ORDER BY person_id, position",
    )?;
    let mut emails = grouped(
        conn,
        "SELECT person_id, address FROM person_emails ORDER BY person_id, position",
    )?;
    let mut tags = grouped(conn, "SELECT person_id, tag FROM person_tags ORDER BY person_id, tag")?;
    attach_person_keys(&mut persons, &mut phones, &mut emails, &mut tags);
    let installations = query_all(
        conn,
        concat!(
            "SELECT ",
            installation_columns!(),
            " FROM installations ORDER BY push_reg_id"
        ),
        [],
        rows::installation,
    )?;
    let attribute_definitions = query_all(
        conn,
        concat!(
            "SELECT ",
            definition_columns!(),
            " FROM attribute_definitions \
             ORDER BY account_id, CASE scope WHEN 'PERSON' THEN 0 ELSE 1 END, name"
        ),
        [],
        rows::attribute_definition,
    )?;
    let merge_log = query_all(
        conn,
        concat!("SELECT ", merge_columns!(), " FROM merge_log ORDER BY id"),
        [],
        rows::merge_entry,
    )?;
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
