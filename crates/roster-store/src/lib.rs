//! The storage trait. Backends store and index; the rules live in roster-core, once.
//!
//! Every uniqueness rule of people.md is also a database constraint in every backend, and a
//! violation surfaces as [`StoreError::Conflict`] naming the [`Constraint`], so the core can map
//! it to the spec's code or retry (people.md §5.1 step 8).

use async_trait::async_trait;
use roster_model::{
    Account, ApiKey, Application, AttributeDefinition, AttributeScope, Installation, JwtKey, MergeLogEntry, Millis,
    Person, Provider, TokenClearedReason,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub mod admin;
pub mod audience;
pub mod people;
pub mod portal;
pub mod push;
pub mod retention;
pub mod sends;
pub use admin::AdminTx;
pub use audience::AudienceTx;
pub use people::{MergeKey, PeopleTx};
pub use portal::{PortalSession, PortalTx};
pub use push::PushTx;
pub use retention::RetentionTx;
pub use sends::SendsTx;

/// The stored schema's column order, identical in every backend (the schema comparison test in
/// roster-store-postgres checks the tables), and the stored form of values that every backend
/// writes alike.
///
/// Each `*_columns!()` macro expands to a string literal (for `concat!` into a statement's
/// `&'static str`): the columns of one table in the order the backends' row decoders read them.
/// They are exported at the crate root: `use roster_store::{account_columns, ...}`.
pub mod columns {
    use uuid::Uuid;

    /// Columns of `accounts`.
    #[macro_export]
    macro_rules! account_columns {
        () => {
            "id, name, created_at"
        };
    }
    /// Columns of `applications`.
    #[macro_export]
    macro_rules! application_columns {
        () => {
            "account_id, id, name, application_code, enabled, require_jwt_for_user_data, \
             restrict_user_data_from_sdk, providers, created_at, updated_at"
        };
    }
    /// Columns of `jwt_keys`.
    #[macro_export]
    macro_rules! jwt_key_columns {
        () => {
            "account_id, application_id, kid, secret, created_at"
        };
    }
    /// Columns of `api_keys`.
    #[macro_export]
    macro_rules! api_key_columns {
        () => {
            "account_id, id, name, scopes, key_hash, key_prefix, created_at, expires_at, last_used_at"
        };
    }
    /// Columns of `persons` (identity keys and tags are child tables).
    #[macro_export]
    macro_rules! person_columns {
        () => {
            "account_id, id, external_user_id, first_name, middle_name, last_name, gender, birthday, \
             custom_attributes, type, version, created_at, updated_at"
        };
    }
    /// Columns of `installations`.
    #[macro_export]
    macro_rules! installation_columns {
        () => {
            "account_id, application_id, push_reg_id, person_id, push_service_type, \
             push_service_token, reg_enabled, is_primary, application_user_id, custom_attributes, \
             notifications_enabled, sdk_version, app_version, os, os_version, device_manufacturer, \
             device_model, device_name, device_secure, language, device_timezone_offset, inappchat, \
             inbox, webrtcui, created_at, updated_at, last_seen_at, token_cleared_at, \
             token_cleared_reason"
        };
    }
    /// Columns of `attribute_definitions`.
    #[macro_export]
    macro_rules! definition_columns {
        () => {
            "account_id, scope, name, type, object_schema, origin, created_at"
        };
    }
    /// Columns of `merge_log` (`"before"` quoted: a keyword).
    #[macro_export]
    macro_rules! merge_columns {
        () => {
            "account_id, id, created_at, actor, push_reg_id, source_person_id, target_person_id, \
             source_deleted, after_forced_depersonalize, dropped_attributes, \"before\", \
             after_target_version, after_source_version, status, reversed_at, reversed_by, redacted"
        };
    }

    /// The stored form of an id: lowercase hyphenated.
    pub fn id(u: Uuid) -> String {
        u.hyphenated().to_string()
    }

    /// A JSON column value (JSON documents are stored as text in every backend).
    pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> crate::StoreResult<String> {
        serde_json::to_string(value).map_err(|e| crate::StoreError::Other(format!("cannot encode JSON column: {e}")))
    }

    /// A nullable JSON column value.
    pub fn opt_json<T: serde::Serialize>(value: Option<&T>) -> crate::StoreResult<Option<String>> {
        value.map(json).transpose()
    }
}

/// A uniqueness rule enforced by the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Constraint {
    /// `externalUserId` unique per account.
    ExternalUserId,
    /// Normalised phone unique per account.
    Phone,
    /// Email comparison key unique per account.
    Email,
    /// One primary installation per (person, application).
    PrimaryInstallation,
    /// One holder per (application, provider, token).
    PushToken,
    /// pushRegId unique across the server.
    PushRegId,
    /// (account, scope, name) of an attribute definition.
    AttributeDefinition,
    /// Application code unique across the server.
    ApplicationCode,
    /// (application, kid) of a JWT key.
    JwtKid,
    /// API key hash.
    ApiKey,
    /// Any other constraint, by its database name.
    Other(String),
}

impl Constraint {
    /// Whether the constraint is an identity key (a concurrent personalize may retry on it).
    pub fn is_identity(&self) -> bool {
        matches!(self, Constraint::ExternalUserId | Constraint::Phone | Constraint::Email)
    }
}

/// Errors of a store operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A row that the operation needed does not exist.
    #[error("not found")]
    NotFound,
    /// A uniqueness constraint was violated; the transaction must be rolled back.
    #[error("uniqueness conflict on {constraint:?}")]
    Conflict { constraint: Constraint },
    /// A foreign key was violated: a written row refers to a row that does not exist, or a
    /// deleted row is still referred to. Either a concurrent transaction deleted the referenced
    /// row (an application deleted while an installation of it is inserted) or the caller has
    /// a bug; the caller knows which.
    #[error("foreign key violated: {0}")]
    ForeignKey(String),
    /// The database cannot be reached or is busy beyond its timeout: transient.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The transaction lost against a concurrent one (serialization failure, deadlock, lock
    /// timeout) and must be rolled back and run again from the start.
    #[error("transaction must be retried: {0}")]
    Retry(String),
    /// Anything else (corrupt row, bug).
    #[error("store error: {0}")]
    Other(String),
}

/// Shorthand for store results.
pub type StoreResult<T> = Result<T, StoreError>;

/// Everything in a store, for the invariant checker, export and import.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub accounts: Vec<Account>,
    pub applications: Vec<Application>,
    pub jwt_keys: Vec<JwtKey>,
    pub api_keys: Vec<ApiKey>,
    pub persons: Vec<Person>,
    pub installations: Vec<Installation>,
    pub attribute_definitions: Vec<AttributeDefinition>,
    pub merge_log: Vec<MergeLogEntry>,
    /// Segments, by (account, id).
    #[serde(default)]
    pub segments: Vec<audience::Segment>,
    /// Push bulks, by (account, bulkId).
    #[serde(default)]
    pub bulks: Vec<push::Bulk>,
    /// Push messages, by (account, messageId).
    #[serde(default)]
    pub messages: Vec<push::Message>,
    /// Audience-resolution jobs, by (account, messageId).
    #[serde(default)]
    pub audience_jobs: Vec<push::AudienceJob>,
    /// Delivery records, by (account, deliveryId).
    #[serde(default)]
    pub deliveries: Vec<push::Delivery>,
    /// Idempotency records (expired ones included), by (account, key).
    #[serde(default)]
    pub idempotency_records: Vec<push::IdempotencyRecord>,
}

/// The kinds of rows an account owns, in dependency order: a row refers only to rows of kinds
/// before its own (and to its account). Export writes and import reads them in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RowKind {
    Application,
    JwtKey,
    ApiKey,
    AttributeDefinition,
    Person,
    Installation,
    MergeLogEntry,
}

impl RowKind {
    /// Every kind, in dependency order.
    pub const ALL: [RowKind; 7] = [
        RowKind::Application,
        RowKind::JwtKey,
        RowKind::ApiKey,
        RowKind::AttributeDefinition,
        RowKind::Person,
        RowKind::Installation,
        RowKind::MergeLogEntry,
    ];
}

/// Most rows one `*_page` call returns, whatever the caller asks for: pages exist to keep memory
/// flat, so a page is never the whole table.
pub const MAX_PAGE: u32 = 10_000;

/// The row count of a page request as the backends bind it: `limit` capped at [`MAX_PAGE`].
pub fn page_limit(limit: u32) -> i64 {
    i64::from(limit.min(MAX_PAGE))
}

/// A store backend, chosen at start-up from the database URL and held as `Arc<dyn Store>`.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;
    /// Starts a read-write transaction. Dropping it without `commit` rolls back.
    async fn begin(&self) -> StoreResult<Box<dyn Tx>>;
    /// Starts a read-only transaction over a consistent snapshot; writes on it fail.
    async fn begin_read(&self) -> StoreResult<Box<dyn Tx>>;
    /// Checks that the database answers (for `/healthz`).
    async fn ping(&self) -> StoreResult<()>;
    /// The in-memory audience index of this process's store, for `/metrics`: `None` when the
    /// backend keeps none (PostgreSQL) or it is turned off.
    fn audience_index(&self) -> Option<AudienceIndexStatus> {
        None
    }
    /// The time this process's write transactions held the store's one writer, for
    /// `/metrics`: `None` when the backend has no single writer (PostgreSQL).
    fn writer_stats(&self) -> Option<WriterStats> {
        None
    }
}

/// How a single-writer store's writer (SQLite's one write connection) was used since the store
/// was opened in this process. Its write rate is bounded by how long each write transaction
/// holds the writer: `held_seconds` growing by about one per second means the writer is
/// saturated.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WriterStats {
    /// Seconds the writer was held by write transactions (from getting it to merging into the
    /// write batch or rolling back) and by the commits of write batches.
    pub held_seconds: f64,
    /// Write transactions begun on it.
    pub transactions: u64,
    /// Write batches committed (each one `COMMIT` and fsync for all its transactions).
    pub batches: u64,
}

/// What an in-memory audience index of a store holds and did since the store was opened in this
/// process (`roster_store::audience::memory`, kept by a backend that has one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AudienceIndexStatus {
    /// Built, current, and answering segment previews (until then previews run as SQL).
    pub ready: bool,
    /// Persons it holds (those of the last build, plus the changes applied since).
    pub persons: u64,
    /// Builds completed: the one at open, and one per rebuild after another process wrote.
    pub builds: u64,
    /// Segment previews it answered.
    pub answered: u64,
    /// Segment previews that ran as SQL while it was ready (a filter it cannot answer).
    pub fallbacks: u64,
}

/// Domain-level primitives inside one transaction.
///
/// In a write transaction, `person` locks the row it returns until commit (`SELECT ... FOR
/// UPDATE` where the backend has row locks; SQLite has one writer). `installation` never locks:
/// the core locks an installation's person before changing the installation, so that every
/// change to a person and its installations serialises on one lock, taken in one order. After any error the caller
/// rolls the transaction back (PostgreSQL cannot continue an aborted transaction). A task that
/// holds a write transaction must not begin another one (SQLite's single writer would wait
/// for itself). Every method filters by account where the
/// entity has one. Finders return `Ok(None)` for a missing row.
#[async_trait]
pub trait Tx: AdminTx + AudienceTx + PeopleTx + PortalTx + PushTx + RetentionTx + SendsTx + Send {
    /// Makes every write of the transaction durable, or fails and keeps none of them.
    async fn commit(self: Box<Self>) -> StoreResult<()>;
    /// Discards every write of the transaction.
    async fn rollback(self: Box<Self>) -> StoreResult<()>;

    /// Whether this is a write transaction that runs alone: no other transaction can write
    /// between its first statement and its end (SQLite's one writer, which it holds throughout).
    /// Nothing it reads can then change but by its own writes, so the core neither locks a
    /// person nor reads again what it read before such a lock (`roster_core::resolve`). False
    /// where writers run concurrently under row locks (PostgreSQL), and for read transactions.
    fn writes_alone(&self) -> bool {
        false
    }

    /// Serialises this transaction with every other one that locks the same `key`, until commit
    /// or rollback (PostgreSQL: a transaction-scoped advisory lock; SQLite, which has one
    /// writer, does nothing). Used before rules that read-then-write a set of rows no single
    /// row lock covers: token hygiene per (application, provider, token) and the primary rule
    /// per (person, application).
    async fn lock_key(&mut self, key: &str) -> StoreResult<()>;

    // --- accounts -------------------------------------------------------------------------
    /// The default account (the first one created), if the store has one.
    async fn default_account(&mut self) -> StoreResult<Option<Account>>;
    /// An account by id.
    async fn account(&mut self, id: Uuid) -> StoreResult<Option<Account>>;
    /// Inserts an account.
    async fn insert_account(&mut self, account: &Account) -> StoreResult<()>;

    // --- applications and their JWT keys ----------------------------------------------------
    /// An application by its (lowercase) code, in any account.
    async fn application_by_code(&mut self, code: &str) -> StoreResult<Option<Application>>;
    /// An application of an account by id.
    async fn application(&mut self, account_id: Uuid, id: Uuid) -> StoreResult<Option<Application>>;
    /// The applications of an account, by `createdAt` then `id`.
    async fn applications(&mut self, account_id: Uuid) -> StoreResult<Vec<Application>>;
    /// Inserts an application (`Conflict(ApplicationCode)` if the code exists).
    async fn insert_application(&mut self, app: &Application) -> StoreResult<()>;
    /// Writes every field of an existing application.
    async fn update_application(&mut self, app: &Application) -> StoreResult<()>;
    /// A JWT key of an application of the account.
    async fn jwt_key(&mut self, account_id: Uuid, application_id: Uuid, kid: &str) -> StoreResult<Option<JwtKey>>;
    /// The JWT keys of an application of the account, by `createdAt`, then kid.
    async fn jwt_keys(&mut self, account_id: Uuid, application_id: Uuid) -> StoreResult<Vec<JwtKey>>;
    /// Inserts a JWT key (`Conflict(JwtKid)` if the kid exists in the application).
    async fn insert_jwt_key(&mut self, key: &JwtKey) -> StoreResult<()>;
    /// Deletes a JWT key of an application of the account; whether it existed.
    async fn delete_jwt_key(&mut self, account_id: Uuid, application_id: Uuid, kid: &str) -> StoreResult<bool>;

    // --- API keys ---------------------------------------------------------------------------
    /// Inserts an API key.
    async fn insert_api_key(&mut self, key: &ApiKey) -> StoreResult<()>;
    /// An API key by the hash of its secret.
    async fn api_key_by_hash(&mut self, key_hash: &str) -> StoreResult<Option<ApiKey>>;
    /// The API keys of an account, by `createdAt`.
    async fn api_keys(&mut self, account_id: Uuid) -> StoreResult<Vec<ApiKey>>;

    // --- installations ----------------------------------------------------------------------
    /// An installation by its lowercase pushRegId, in any application.
    async fn installation(&mut self, push_reg_id: &str) -> StoreResult<Option<Installation>>;
    /// A person's installations, in one application or in all, oldest first (`createdAt`, then
    /// pushRegId).
    async fn installations_of_person(
        &mut self,
        account_id: Uuid,
        person_id: Uuid,
        application_id: Option<Uuid>,
    ) -> StoreResult<Vec<Installation>>;
    /// Inserts an installation (`Conflict(PushRegId | PushToken | PrimaryInstallation)`).
    async fn insert_installation(&mut self, inst: &Installation) -> StoreResult<()>;
    /// Inserts installations as [`Tx::insert_installation`] does each, in as few statements as the
    /// backend allows (import of a whole store); a conflict on any of them fails the call.
    async fn insert_installations(&mut self, insts: &[Installation]) -> StoreResult<()> {
        for inst in insts {
            self.insert_installation(inst).await?;
        }
        Ok(())
    }
    /// Writes every field of an existing installation (including its person).
    async fn update_installation(&mut self, inst: &Installation) -> StoreResult<()>;
    /// [`Tx::update_installation`] given `before`, the installation exactly as it is stored now
    /// (as this transaction read it, with no write to it since): a backend may then write only
    /// the difference without reading the stored row and index rows again. The outcome is the
    /// same; the default ignores `before`.
    async fn update_installation_from(&mut self, before: &Installation, after: &Installation) -> StoreResult<()> {
        let _ = before;
        self.update_installation(after).await
    }
    /// Deletes an installation; whether it existed.
    async fn delete_installation(&mut self, account_id: Uuid, push_reg_id: &str) -> StoreResult<bool>;
    /// Token hygiene (people.md §2.3): clears `token` from every installation of the application
    /// and provider other than `except`, setting the reason and time. Returns their pushRegIds.
    /// The token is compared exactly (APNs tokens are stored lowercase).
    #[allow(clippy::too_many_arguments)]
    async fn clear_token_holders(
        &mut self,
        account_id: Uuid,
        application_id: Uuid,
        provider: Provider,
        token: &str,
        except: &str,
        reason: TokenClearedReason,
        now: Millis,
    ) -> StoreResult<Vec<String>>;
    /// Clears `isPrimary` on the person's installations in the application other than `except`
    /// (people.md §4). Returns how many were demoted.
    async fn demote_primaries(
        &mut self,
        account_id: Uuid,
        person_id: Uuid,
        application_id: Uuid,
        except: &str,
        now: Millis,
    ) -> StoreResult<u64>;
    /// How many installations (of any application) a person owns.
    async fn count_installations_of_person(&mut self, account_id: Uuid, person_id: Uuid) -> StoreResult<u64>;

    // --- persons ----------------------------------------------------------------------------
    /// A person by id.
    async fn person(&mut self, account_id: Uuid, id: Uuid) -> StoreResult<Option<Person>>;
    /// The distinct persons owning `external_user_id` or any of the phones or email keys.
    async fn persons_owning(
        &mut self,
        account_id: Uuid,
        external_user_id: Option<&str>,
        phones: &[String],
        email_keys: &[String],
    ) -> StoreResult<Vec<Uuid>>;
    /// Inserts a person with its identity keys and tags.
    async fn insert_person(&mut self, person: &Person) -> StoreResult<()>;
    /// Inserts persons as [`Tx::insert_person`] does each, in as few statements as the backend
    /// allows (import of a whole store); a conflict on any of them fails the call.
    async fn insert_persons(&mut self, persons: &[Person]) -> StoreResult<()> {
        for person in persons {
            self.insert_person(person).await?;
        }
        Ok(())
    }
    /// Writes every field of an existing person, replacing its identity keys and tags.
    /// Identity keys released by this write are free for others after commit.
    async fn update_person(&mut self, person: &Person) -> StoreResult<()>;
    /// [`Tx::update_person`] given `before`, the person exactly as it is stored now (as this
    /// transaction read it, keys included, with no write to it since): a backend may then write
    /// only the difference without reading the stored keys and index rows again. The outcome is
    /// the same; the default ignores `before`.
    async fn update_person_from(&mut self, before: &Person, after: &Person) -> StoreResult<()> {
        let _ = before;
        self.update_person(after).await
    }
    /// Deletes a person and its identity keys; whether it existed. Its installations must have
    /// been moved or deleted first.
    async fn delete_person(&mut self, account_id: Uuid, id: Uuid) -> StoreResult<bool>;

    // --- attribute definitions ---------------------------------------------------------------
    /// A definition by scope and name.
    async fn attribute_definition(
        &mut self,
        account_id: Uuid,
        scope: AttributeScope,
        name: &str,
    ) -> StoreResult<Option<AttributeDefinition>>;
    /// The definitions of an account (optionally one scope), by scope then name.
    async fn attribute_definitions(
        &mut self,
        account_id: Uuid,
        scope: Option<AttributeScope>,
    ) -> StoreResult<Vec<AttributeDefinition>>;
    /// How many definitions an account has in a scope.
    async fn count_attribute_definitions(&mut self, account_id: Uuid, scope: AttributeScope) -> StoreResult<u64>;
    /// Inserts a definition exactly as given (`Conflict(AttributeDefinition)` if one of that scope
    /// and name exists): for import, where a duplicate is an error rather than a race to lose.
    async fn insert_attribute_definition(&mut self, def: &AttributeDefinition) -> StoreResult<()>;
    /// Inserts a definition unless one of that scope and name exists; returns the definition that
    /// is stored afterwards (the new one, or the one that won a concurrent first write,
    /// people.md §8.2) and whether it was inserted by this call.
    async fn define_attribute(&mut self, def: &AttributeDefinition) -> StoreResult<(AttributeDefinition, bool)>;

    // --- merge log --------------------------------------------------------------------------
    /// Inserts a merge-log entry.
    async fn insert_merge_entry(&mut self, entry: &MergeLogEntry) -> StoreResult<()>;
    /// A merge-log entry by id.
    async fn merge_entry(&mut self, account_id: Uuid, id: Uuid) -> StoreResult<Option<MergeLogEntry>>;
    /// Writes every field of an existing entry.
    async fn update_merge_entry(&mut self, entry: &MergeLogEntry) -> StoreResult<()>;

    // --- streaming every row (export, `roster migrate-store`) -------------------------------
    //
    // Keyset pages: each returns up to `limit` rows (at most [`MAX_PAGE`]) of one account whose
    // primary key is greater than `after` (`None`: from the start), ordered by that key, so a
    // caller walks a table of any size with flat memory by passing the last key of one page as
    // `after` of the next, and an empty page ends the walk. Inside one `begin_read` transaction
    // the pages of all kinds are one consistent state of the store.

    /// After a bulk load in this transaction (an import): brings the query planner's statistics
    /// up to date with the new rows, committed with them (PostgreSQL: `ANALYZE`, which may run
    /// in a transaction; without it the planner sizes fresh tables as nearly empty and may walk
    /// the account index and sort a whole account for every page of a later export). SQLite
    /// does nothing: its page statements pin their index.
    async fn refresh_statistics(&mut self) -> StoreResult<()> {
        Ok(())
    }
    /// How many accounts the store holds.
    async fn count_accounts(&mut self) -> StoreResult<u64>;
    /// How many rows of `kind` an account owns.
    async fn count_rows(&mut self, account_id: Uuid, kind: RowKind) -> StoreResult<u64>;
    /// Accounts by id.
    async fn accounts_page(&mut self, after: Option<Uuid>, limit: u32) -> StoreResult<Vec<Account>>;
    /// An account's applications by id.
    async fn applications_page(
        &mut self,
        account_id: Uuid,
        after: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<Application>>;
    /// An account's JWT keys by (application id, kid).
    async fn jwt_keys_page(
        &mut self,
        account_id: Uuid,
        after: Option<(Uuid, &str)>,
        limit: u32,
    ) -> StoreResult<Vec<JwtKey>>;
    /// An account's API keys by id.
    async fn api_keys_page(&mut self, account_id: Uuid, after: Option<Uuid>, limit: u32) -> StoreResult<Vec<ApiKey>>;
    /// An account's attribute definitions by (scope as stored text, name): `INSTALLATION` before
    /// `PERSON`, names in code-point order.
    async fn attribute_definitions_page(
        &mut self,
        account_id: Uuid,
        after: Option<(AttributeScope, &str)>,
        limit: u32,
    ) -> StoreResult<Vec<AttributeDefinition>>;
    /// An account's persons by id, each with its identity keys and tags.
    async fn persons_page(&mut self, account_id: Uuid, after: Option<Uuid>, limit: u32) -> StoreResult<Vec<Person>>;
    /// An account's installations by pushRegId.
    async fn installations_page(
        &mut self,
        account_id: Uuid,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Installation>>;
    /// An account's merge-log entries by id.
    async fn merge_entries_page(
        &mut self,
        account_id: Uuid,
        after: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<MergeLogEntry>>;

    // --- whole store ------------------------------------------------------------------------
    /// Everything in the store (all accounts), in a deterministic order: for the invariant
    /// checker, export and tests. Not for request paths.
    async fn snapshot(&mut self) -> StoreResult<Snapshot>;
}
