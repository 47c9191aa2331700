//! A transaction on the writer connection (read-write) or on a pooled reader (read-only).

use std::sync::Arc;

use async_trait::async_trait;
use roster_model::{
    Account, ApiKey, Application, AttributeDefinition, AttributeScope, Installation, JwtKey, MergeLogEntry, Millis,
    Person, Provider, TokenClearedReason,
};
use roster_store::{RowKind, Snapshot, StoreError, StoreResult, Tx};
use rusqlite::Connection;
use tokio::sync::OwnedMutexGuard;
use uuid::Uuid;

use crate::PooledReader;
use crate::error::map_err;
use crate::group::{self, Writer};
use crate::memindex::IndexState;
use crate::sql;

/// The connection a transaction runs on.
pub(crate) enum Handle {
    /// The writer, held for the whole transaction (a savepoint in a group-commit batch).
    Writer(OwnedMutexGuard<Writer>),
    /// A reader of the pool.
    Reader(PooledReader),
}

impl std::ops::Deref for Handle {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        match self {
            Handle::Writer(guard) => &guard.conn,
            Handle::Reader(reader) => reader,
        }
    }
}

/// Runs one transaction-control statement (`BEGIN`, `COMMIT`, ...).
pub(crate) fn run(conn: &Connection, sql: &str) -> StoreResult<()> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute([]))
        .map(drop)
        .map_err(map_err)
}

/// Rolls back whatever transaction is open on `conn`, logging (not returning) a failure: used on
/// paths that already report an error or cannot report one (Drop).
pub(crate) fn rollback_quietly(conn: &Connection) {
    if conn.is_autocommit() {
        return;
    }
    if let Err(e) = conn.execute_batch("ROLLBACK") {
        tracing::error!(error = %e, "SQLite ROLLBACK failed");
    }
}

/// Ends the transaction on `conn` with `COMMIT`; if that fails the transaction is rolled back,
/// so the connection is clean for the next one either way.
fn commit_on(conn: &Connection) -> StoreResult<()> {
    if conn.is_autocommit() {
        // SQLite already rolled the transaction back (it does so by itself on some I/O and
        // out-of-memory errors): nothing of it can be committed.
        return Err(StoreError::Other(
            "the transaction was rolled back by SQLite before commit".into(),
        ));
    }
    let committed = run(conn, "COMMIT");
    if committed.is_err() {
        rollback_quietly(conn);
    }
    committed
}

/// A SQLite transaction. Dropping it while open rolls it back.
pub(crate) struct SqliteTx {
    /// `None` once committed or rolled back.
    handle: Option<Handle>,
    /// The store's in-memory audience index, if it keeps one.
    index: Option<Arc<IndexState>>,
}

impl SqliteTx {
    /// Wraps a connection on which `BEGIN` has just run.
    pub(crate) fn new(handle: Handle) -> SqliteTx {
        SqliteTx {
            handle: Some(handle),
            index: None,
        }
    }

    /// A transaction of a store with the in-memory audience index `index`.
    pub(crate) fn with_index(mut self, index: Option<Arc<IndexState>>) -> SqliteTx {
        self.index = index;
        self
    }

    /// The in-memory audience index this transaction's previews may use: a read transaction's
    /// (a write transaction's own changes are not in the index).
    pub(crate) fn audience_index(&self) -> Option<&Arc<IndexState>> {
        match self.handle.as_ref()? {
            Handle::Reader(_) => self.index.as_ref(),
            Handle::Writer(_) => None,
        }
    }

    /// The in-memory audience index that audience resolution may use (read and write
    /// transactions: a resolution lists committed data, docs/decisions.md).
    pub(crate) fn resolution_index(&self) -> Option<Arc<IndexState>> {
        self.index.clone()
    }

    /// The connection, as long as the transaction is still open.
    pub(crate) fn conn(&self) -> StoreResult<&Connection> {
        let handle = self
            .handle
            .as_ref()
            .ok_or_else(|| StoreError::Other("transaction already finished".into()))?;
        // After SQLite rolled back by itself, further statements would run in autocommit mode,
        // each durable on its own: refuse them, the transaction is lost.
        if handle.is_autocommit() {
            return Err(StoreError::Other("the transaction was rolled back by SQLite".into()));
        }
        Ok(handle)
    }
}

impl Drop for SqliteTx {
    fn drop(&mut self) {
        // A rollback writes nothing durable (no fsync), so it is fine here on whatever thread
        // drops the transaction; the writer lock is released right after.
        match self.handle.take() {
            Some(Handle::Writer(mut writer)) => {
                if let Err(e) = group::rollback(&mut writer) {
                    tracing::error!(error = %e, "rolling back a dropped SQLite transaction failed");
                }
            }
            Some(Handle::Reader(reader)) => rollback_quietly(&reader),
            None => {}
        }
    }
}

#[async_trait]
impl Tx for SqliteTx {
    fn writes_alone(&self) -> bool {
        // The writer is held from `begin` to commit or rollback, and the file's write lock with
        // it (BEGIN IMMEDIATE): no other transaction of any process writes meanwhile.
        matches!(self.handle, Some(Handle::Writer(_)))
    }

    async fn commit(mut self: Box<Self>) -> StoreResult<()> {
        match self.handle.take() {
            // Durable when this returns: the batch it joined was committed (group.rs).
            Some(Handle::Writer(writer)) => group::commit(writer).await,
            // Ending a read transaction writes nothing.
            Some(Handle::Reader(reader)) => commit_on(&reader),
            None => Err(StoreError::Other("transaction already finished".into())),
        }
    }

    async fn rollback(mut self: Box<Self>) -> StoreResult<()> {
        match self
            .handle
            .take()
            .ok_or_else(|| StoreError::Other("transaction already finished".into()))?
        {
            Handle::Writer(mut writer) => group::rollback(&mut writer),
            Handle::Reader(reader) => {
                if reader.is_autocommit() {
                    return Ok(());
                }
                let rolled_back = run(&reader, "ROLLBACK");
                if rolled_back.is_err() {
                    // Try once more so that the connection goes back clean; report the first
                    // failure.
                    rollback_quietly(&reader);
                }
                rolled_back
            }
        }
    }

    async fn default_account(&mut self) -> StoreResult<Option<Account>> {
        sql::default_account(self.conn()?)
    }

    async fn account(&mut self, id: Uuid) -> StoreResult<Option<Account>> {
        sql::account(self.conn()?, id)
    }

    async fn insert_account(&mut self, account: &Account) -> StoreResult<()> {
        sql::insert_account(self.conn()?, account)
    }

    async fn application_by_code(&mut self, code: &str) -> StoreResult<Option<Application>> {
        sql::application_by_code(self.conn()?, code)
    }

    async fn application(&mut self, account_id: Uuid, id: Uuid) -> StoreResult<Option<Application>> {
        sql::application(self.conn()?, account_id, id)
    }

    async fn applications(&mut self, account_id: Uuid) -> StoreResult<Vec<Application>> {
        sql::applications(self.conn()?, account_id)
    }

    async fn insert_application(&mut self, app: &Application) -> StoreResult<()> {
        sql::insert_application(self.conn()?, app)
    }

    async fn update_application(&mut self, app: &Application) -> StoreResult<()> {
        sql::update_application(self.conn()?, app)
    }

    async fn jwt_key(&mut self, account_id: Uuid, application_id: Uuid, kid: &str) -> StoreResult<Option<JwtKey>> {
        sql::jwt_key(self.conn()?, account_id, application_id, kid)
    }

    async fn jwt_keys(&mut self, account_id: Uuid, application_id: Uuid) -> StoreResult<Vec<JwtKey>> {
        sql::jwt_keys(self.conn()?, account_id, application_id)
    }

    async fn insert_jwt_key(&mut self, key: &JwtKey) -> StoreResult<()> {
        sql::insert_jwt_key(self.conn()?, key)
    }

    async fn delete_jwt_key(&mut self, account_id: Uuid, application_id: Uuid, kid: &str) -> StoreResult<bool> {
        sql::delete_jwt_key(self.conn()?, account_id, application_id, kid)
    }

    async fn insert_api_key(&mut self, key: &ApiKey) -> StoreResult<()> {
        sql::insert_api_key(self.conn()?, key)
    }

    async fn api_key_by_hash(&mut self, key_hash: &str) -> StoreResult<Option<ApiKey>> {
        sql::api_key_by_hash(self.conn()?, key_hash)
    }

    async fn api_keys(&mut self, account_id: Uuid) -> StoreResult<Vec<ApiKey>> {
        sql::api_keys(self.conn()?, account_id)
    }

    async fn installation(&mut self, push_reg_id: &str) -> StoreResult<Option<Installation>> {
        sql::installation(self.conn()?, push_reg_id)
    }

    async fn installations_of_person(
        &mut self,
        account_id: Uuid,
        person_id: Uuid,
        application_id: Option<Uuid>,
    ) -> StoreResult<Vec<Installation>> {
        sql::installations_of_person(self.conn()?, account_id, person_id, application_id)
    }

    async fn insert_installation(&mut self, inst: &Installation) -> StoreResult<()> {
        sql::insert_installation(self.conn()?, inst)
    }

    async fn update_installation(&mut self, inst: &Installation) -> StoreResult<()> {
        sql::update_installation(self.conn()?, inst)
    }

    async fn update_installation_from(&mut self, before: &Installation, after: &Installation) -> StoreResult<()> {
        sql::update_installation_from(self.conn()?, before, after)
    }

    async fn delete_installation(&mut self, account_id: Uuid, push_reg_id: &str) -> StoreResult<bool> {
        sql::delete_installation(self.conn()?, account_id, push_reg_id)
    }

    async fn clear_token_holders(
        &mut self,
        account_id: Uuid,
        application_id: Uuid,
        provider: Provider,
        token: &str,
        except: &str,
        reason: TokenClearedReason,
        now: Millis,
    ) -> StoreResult<Vec<String>> {
        sql::clear_token_holders(
            self.conn()?,
            account_id,
            application_id,
            provider,
            token,
            except,
            reason,
            now,
        )
    }

    async fn demote_primaries(
        &mut self,
        account_id: Uuid,
        person_id: Uuid,
        application_id: Uuid,
        except: &str,
        now: Millis,
    ) -> StoreResult<u64> {
        sql::demote_primaries(self.conn()?, account_id, person_id, application_id, except, now)
    }

    async fn lock_key(&mut self, _key: &str) -> StoreResult<()> {
        // One writer connection: write transactions are already serialised.
        self.conn()?;
        Ok(())
    }

    async fn count_installations_of_person(&mut self, account_id: Uuid, person_id: Uuid) -> StoreResult<u64> {
        sql::count_installations_of_person(self.conn()?, account_id, person_id)
    }

    async fn person(&mut self, account_id: Uuid, id: Uuid) -> StoreResult<Option<Person>> {
        sql::person(self.conn()?, account_id, id)
    }

    async fn persons_owning(
        &mut self,
        account_id: Uuid,
        external_user_id: Option<&str>,
        phones: &[String],
        email_keys: &[String],
    ) -> StoreResult<Vec<Uuid>> {
        sql::persons_owning(self.conn()?, account_id, external_user_id, phones, email_keys)
    }

    async fn insert_person(&mut self, person: &Person) -> StoreResult<()> {
        sql::insert_person(self.conn()?, person)
    }

    async fn update_person(&mut self, person: &Person) -> StoreResult<()> {
        sql::update_person(self.conn()?, person)
    }

    async fn update_person_from(&mut self, before: &Person, after: &Person) -> StoreResult<()> {
        sql::update_person_from(self.conn()?, before, after)
    }

    async fn delete_person(&mut self, account_id: Uuid, id: Uuid) -> StoreResult<bool> {
        sql::delete_person(self.conn()?, account_id, id)
    }

    async fn attribute_definition(
        &mut self,
        account_id: Uuid,
        scope: AttributeScope,
        name: &str,
    ) -> StoreResult<Option<AttributeDefinition>> {
        sql::attribute_definition(self.conn()?, account_id, scope, name)
    }

    async fn attribute_definitions(
        &mut self,
        account_id: Uuid,
        scope: Option<AttributeScope>,
    ) -> StoreResult<Vec<AttributeDefinition>> {
        sql::attribute_definitions(self.conn()?, account_id, scope)
    }

    async fn count_attribute_definitions(&mut self, account_id: Uuid, scope: AttributeScope) -> StoreResult<u64> {
        sql::count_attribute_definitions(self.conn()?, account_id, scope)
    }

    async fn insert_attribute_definition(&mut self, def: &AttributeDefinition) -> StoreResult<()> {
        sql::insert_attribute_definition(self.conn()?, def)
    }

    async fn define_attribute(&mut self, def: &AttributeDefinition) -> StoreResult<(AttributeDefinition, bool)> {
        sql::define_attribute(self.conn()?, def)
    }

    async fn insert_merge_entry(&mut self, entry: &MergeLogEntry) -> StoreResult<()> {
        sql::insert_merge_entry(self.conn()?, entry)
    }

    async fn merge_entry(&mut self, account_id: Uuid, id: Uuid) -> StoreResult<Option<MergeLogEntry>> {
        sql::merge_entry(self.conn()?, account_id, id)
    }

    async fn update_merge_entry(&mut self, entry: &MergeLogEntry) -> StoreResult<()> {
        sql::update_merge_entry(self.conn()?, entry)
    }

    async fn count_accounts(&mut self) -> StoreResult<u64> {
        sql::count_accounts(self.conn()?)
    }

    async fn count_rows(&mut self, account_id: Uuid, kind: RowKind) -> StoreResult<u64> {
        sql::count_rows(self.conn()?, account_id, kind)
    }

    async fn accounts_page(&mut self, after: Option<Uuid>, limit: u32) -> StoreResult<Vec<Account>> {
        sql::accounts_page(self.conn()?, after, limit)
    }

    async fn applications_page(
        &mut self,
        account_id: Uuid,
        after: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<Application>> {
        sql::applications_page(self.conn()?, account_id, after, limit)
    }

    async fn jwt_keys_page(
        &mut self,
        account_id: Uuid,
        after: Option<(Uuid, &str)>,
        limit: u32,
    ) -> StoreResult<Vec<JwtKey>> {
        sql::jwt_keys_page(self.conn()?, account_id, after, limit)
    }

    async fn api_keys_page(&mut self, account_id: Uuid, after: Option<Uuid>, limit: u32) -> StoreResult<Vec<ApiKey>> {
        sql::api_keys_page(self.conn()?, account_id, after, limit)
    }

    async fn attribute_definitions_page(
        &mut self,
        account_id: Uuid,
        after: Option<(AttributeScope, &str)>,
        limit: u32,
    ) -> StoreResult<Vec<AttributeDefinition>> {
        sql::attribute_definitions_page(self.conn()?, account_id, after, limit)
    }

    async fn persons_page(&mut self, account_id: Uuid, after: Option<Uuid>, limit: u32) -> StoreResult<Vec<Person>> {
        sql::persons_page(self.conn()?, account_id, after, limit)
    }

    async fn installations_page(
        &mut self,
        account_id: Uuid,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Installation>> {
        sql::installations_page(self.conn()?, account_id, after, limit)
    }

    async fn merge_entries_page(
        &mut self,
        account_id: Uuid,
        after: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<MergeLogEntry>> {
        sql::merge_entries_page(self.conn()?, account_id, after, limit)
    }

    async fn snapshot(&mut self) -> StoreResult<Snapshot> {
        let conn = self.conn()?;
        let mut snapshot = sql::snapshot(conn)?;
        crate::audience::snapshot_into(conn, &mut snapshot)?;
        crate::push::snapshot_into(conn, &mut snapshot)?;
        Ok(snapshot)
    }
}
