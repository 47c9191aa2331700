//! A transaction on a pooled connection: read-write (READ COMMITTED, rows read for update are
//! locked) or read-only (REPEATABLE READ: one snapshot for the whole transaction).

use async_trait::async_trait;
use roster_model::{
    Account, ApiKey, Application, AttributeDefinition, AttributeScope, Installation, JwtKey, MergeLogEntry, Millis,
    Person, Provider, TokenClearedReason,
};
use roster_store::{RowKind, Snapshot, StoreError, StoreResult, Tx};
use uuid::Uuid;

use crate::sql::{self, Conn};

/// A PostgreSQL transaction. Dropping it while open rolls it back: sqlx queues a ROLLBACK that
/// is sent before the connection goes back to the pool, releasing its row locks.
pub(crate) struct PgTx {
    /// `None` once committed or rolled back.
    conn: Option<Conn>,
}

impl PgTx {
    /// Wraps a transaction that has just begun.
    pub(crate) fn new(conn: Conn) -> PgTx {
        PgTx { conn: Some(conn) }
    }

    /// The connection, as long as the transaction is still open.
    pub(crate) fn conn(&mut self) -> StoreResult<&mut Conn> {
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError::Other("transaction already finished".into()))
    }

    /// The transaction, taken out to end it.
    fn take(&mut self) -> StoreResult<Conn> {
        self.conn
            .take()
            .ok_or_else(|| StoreError::Other("transaction already finished".into()))
    }
}

#[async_trait]
impl Tx for PgTx {
    async fn commit(mut self: Box<Self>) -> StoreResult<()> {
        self.take()?.commit().await
    }

    async fn rollback(mut self: Box<Self>) -> StoreResult<()> {
        self.take()?.rollback().await
    }

    async fn default_account(&mut self) -> StoreResult<Option<Account>> {
        sql::default_account(self.conn()?).await
    }

    async fn account(&mut self, id: Uuid) -> StoreResult<Option<Account>> {
        sql::account(self.conn()?, id).await
    }

    async fn insert_account(&mut self, account: &Account) -> StoreResult<()> {
        sql::insert_account(self.conn()?, account).await
    }

    async fn application_by_code(&mut self, code: &str) -> StoreResult<Option<Application>> {
        sql::application_by_code(self.conn()?, code).await
    }

    async fn application(&mut self, account_id: Uuid, id: Uuid) -> StoreResult<Option<Application>> {
        sql::application(self.conn()?, account_id, id).await
    }

    async fn applications(&mut self, account_id: Uuid) -> StoreResult<Vec<Application>> {
        sql::applications(self.conn()?, account_id).await
    }

    async fn insert_application(&mut self, app: &Application) -> StoreResult<()> {
        sql::insert_application(self.conn()?, app).await
    }

    async fn update_application(&mut self, app: &Application) -> StoreResult<()> {
        sql::update_application(self.conn()?, app).await
    }

    async fn jwt_key(&mut self, account_id: Uuid, application_id: Uuid, kid: &str) -> StoreResult<Option<JwtKey>> {
        sql::jwt_key(self.conn()?, account_id, application_id, kid).await
    }

    async fn jwt_keys(&mut self, account_id: Uuid, application_id: Uuid) -> StoreResult<Vec<JwtKey>> {
        sql::jwt_keys(self.conn()?, account_id, application_id).await
    }

    async fn insert_jwt_key(&mut self, key: &JwtKey) -> StoreResult<()> {
        sql::insert_jwt_key(self.conn()?, key).await
    }

    async fn delete_jwt_key(&mut self, account_id: Uuid, application_id: Uuid, kid: &str) -> StoreResult<bool> {
        sql::delete_jwt_key(self.conn()?, account_id, application_id, kid).await
    }

    async fn insert_api_key(&mut self, key: &ApiKey) -> StoreResult<()> {
        sql::insert_api_key(self.conn()?, key).await
    }

    async fn api_key_by_hash(&mut self, key_hash: &str) -> StoreResult<Option<ApiKey>> {
        sql::api_key_by_hash(self.conn()?, key_hash).await
    }

    async fn api_keys(&mut self, account_id: Uuid) -> StoreResult<Vec<ApiKey>> {
        sql::api_keys(self.conn()?, account_id).await
    }

    async fn installation(&mut self, push_reg_id: &str) -> StoreResult<Option<Installation>> {
        sql::installation(self.conn()?, push_reg_id).await
    }

    async fn installations_of_person(
        &mut self,
        account_id: Uuid,
        person_id: Uuid,
        application_id: Option<Uuid>,
    ) -> StoreResult<Vec<Installation>> {
        sql::installations_of_person(self.conn()?, account_id, person_id, application_id).await
    }

    async fn insert_installation(&mut self, inst: &Installation) -> StoreResult<()> {
        sql::insert_installation(self.conn()?, inst).await
    }

    async fn insert_installations(&mut self, insts: &[Installation]) -> StoreResult<()> {
        sql::insert_installations(self.conn()?, insts).await
    }

    async fn update_installation(&mut self, inst: &Installation) -> StoreResult<()> {
        sql::update_installation(self.conn()?, inst).await
    }

    async fn delete_installation(&mut self, account_id: Uuid, push_reg_id: &str) -> StoreResult<bool> {
        sql::delete_installation(self.conn()?, account_id, push_reg_id).await
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
        .await
    }

    async fn demote_primaries(
        &mut self,
        account_id: Uuid,
        person_id: Uuid,
        application_id: Uuid,
        except: &str,
        now: Millis,
    ) -> StoreResult<u64> {
        sql::demote_primaries(self.conn()?, account_id, person_id, application_id, except, now).await
    }

    async fn lock_key(&mut self, key: &str) -> StoreResult<()> {
        sql::lock_key(self.conn()?, key).await
    }

    async fn count_installations_of_person(&mut self, account_id: Uuid, person_id: Uuid) -> StoreResult<u64> {
        sql::count_installations_of_person(self.conn()?, account_id, person_id).await
    }

    async fn person(&mut self, account_id: Uuid, id: Uuid) -> StoreResult<Option<Person>> {
        sql::person(self.conn()?, account_id, id).await
    }

    async fn persons_owning(
        &mut self,
        account_id: Uuid,
        external_user_id: Option<&str>,
        phones: &[String],
        email_keys: &[String],
    ) -> StoreResult<Vec<Uuid>> {
        sql::persons_owning(self.conn()?, account_id, external_user_id, phones, email_keys).await
    }

    async fn insert_person(&mut self, person: &Person) -> StoreResult<()> {
        sql::insert_person(self.conn()?, person).await
    }

    async fn insert_persons(&mut self, persons: &[Person]) -> StoreResult<()> {
        sql::insert_persons(self.conn()?, persons).await
    }

    async fn update_person(&mut self, person: &Person) -> StoreResult<()> {
        sql::update_person(self.conn()?, person).await
    }

    async fn delete_person(&mut self, account_id: Uuid, id: Uuid) -> StoreResult<bool> {
        sql::delete_person(self.conn()?, account_id, id).await
    }

    async fn attribute_definition(
        &mut self,
        account_id: Uuid,
        scope: AttributeScope,
        name: &str,
    ) -> StoreResult<Option<AttributeDefinition>> {
        sql::attribute_definition(self.conn()?, account_id, scope, name).await
    }

    async fn attribute_definitions(
        &mut self,
        account_id: Uuid,
        scope: Option<AttributeScope>,
    ) -> StoreResult<Vec<AttributeDefinition>> {
        sql::attribute_definitions(self.conn()?, account_id, scope).await
    }

    async fn count_attribute_definitions(&mut self, account_id: Uuid, scope: AttributeScope) -> StoreResult<u64> {
        sql::count_attribute_definitions(self.conn()?, account_id, scope).await
    }

    async fn insert_attribute_definition(&mut self, def: &AttributeDefinition) -> StoreResult<()> {
        sql::insert_attribute_definition(self.conn()?, def).await
    }

    async fn define_attribute(&mut self, def: &AttributeDefinition) -> StoreResult<(AttributeDefinition, bool)> {
        sql::define_attribute(self.conn()?, def).await
    }

    async fn insert_merge_entry(&mut self, entry: &MergeLogEntry) -> StoreResult<()> {
        sql::insert_merge_entry(self.conn()?, entry).await
    }

    async fn merge_entry(&mut self, account_id: Uuid, id: Uuid) -> StoreResult<Option<MergeLogEntry>> {
        sql::merge_entry(self.conn()?, account_id, id).await
    }

    async fn update_merge_entry(&mut self, entry: &MergeLogEntry) -> StoreResult<()> {
        sql::update_merge_entry(self.conn()?, entry).await
    }

    async fn refresh_statistics(&mut self) -> StoreResult<()> {
        sql::refresh_statistics(self.conn()?).await
    }

    async fn count_accounts(&mut self) -> StoreResult<u64> {
        sql::count_accounts(self.conn()?).await
    }

    async fn count_rows(&mut self, account_id: Uuid, kind: RowKind) -> StoreResult<u64> {
        sql::count_rows(self.conn()?, account_id, kind).await
    }

    async fn accounts_page(&mut self, after: Option<Uuid>, limit: u32) -> StoreResult<Vec<Account>> {
        sql::accounts_page(self.conn()?, after, limit).await
    }

    async fn applications_page(
        &mut self,
        account_id: Uuid,
        after: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<Application>> {
        sql::applications_page(self.conn()?, account_id, after, limit).await
    }

    async fn jwt_keys_page(
        &mut self,
        account_id: Uuid,
        after: Option<(Uuid, &str)>,
        limit: u32,
    ) -> StoreResult<Vec<JwtKey>> {
        sql::jwt_keys_page(self.conn()?, account_id, after, limit).await
    }

    async fn api_keys_page(&mut self, account_id: Uuid, after: Option<Uuid>, limit: u32) -> StoreResult<Vec<ApiKey>> {
        sql::api_keys_page(self.conn()?, account_id, after, limit).await
    }

    async fn attribute_definitions_page(
        &mut self,
        account_id: Uuid,
        after: Option<(AttributeScope, &str)>,
        limit: u32,
    ) -> StoreResult<Vec<AttributeDefinition>> {
        sql::attribute_definitions_page(self.conn()?, account_id, after, limit).await
    }

    async fn persons_page(&mut self, account_id: Uuid, after: Option<Uuid>, limit: u32) -> StoreResult<Vec<Person>> {
        sql::persons_page(self.conn()?, account_id, after, limit).await
    }

    async fn installations_page(
        &mut self,
        account_id: Uuid,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Installation>> {
        sql::installations_page(self.conn()?, account_id, after, limit).await
    }

    async fn merge_entries_page(
        &mut self,
        account_id: Uuid,
        after: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<MergeLogEntry>> {
        sql::merge_entries_page(self.conn()?, account_id, after, limit).await
    }

    async fn snapshot(&mut self) -> StoreResult<Snapshot> {
        let conn = self.conn()?;
        let mut snapshot = sql::snapshot(conn).await?;
        crate::audience::snapshot_into(conn, &mut snapshot).await?;
        crate::push::snapshot_into(conn, &mut snapshot).await?;
        Ok(snapshot)
    }
}
