//! Roster's scale-out storage backend: PostgreSQL through a sqlx connection pool (design.md
//! "Storage", "Scale-out"). Several `roster serve` processes may share one database.
//!
//! It behaves like the SQLite backend (`roster-store-sqlite`), which is the reference: the same
//! schema (table, column, constraint and index names), the same statements in PostgreSQL's
//! dialect, the same orders. Concurrency comes from PostgreSQL itself rather than from one
//! writer: a read-write transaction is READ COMMITTED and locks the person rows it reads
//! (`SELECT ... FOR UPDATE`); the core locks a person before it changes any of that person's
//! installations, so concurrent read-modify-writes serialise per person;
//! every uniqueness rule is a constraint in `migrations/`, and the loser of a race on one gets
//! `StoreError::Conflict` (mapped by name in `error.rs`); a deadlock, serialization failure or
//! lock wait beyond `lock_timeout` is `StoreError::Retry`. A read-only transaction is REPEATABLE
//! READ: one snapshot, taken at `begin_read`.

#![warn(missing_docs)]

mod admin;
mod audience;
mod error;
mod people;
mod portal;
mod push;
mod retention;
mod rows;
mod sends;
mod sql;
mod statistics;
pub mod testing;
mod tx;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use roster_store::{Store, StoreError, StoreResult, Tx};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::error::map_err;
use crate::sql::Conn;
use crate::tx::PgTx;

pub use retention::PURGE_STATEMENTS;

/// The schema migrations, in order: `(version, SQL)`. Applied at connect; a landed file is never
/// edited, a change is a new file with the next version (the SQLite backend's scheme, with its
/// own folder).
pub const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_initial.sql")),
    (2, include_str!("../migrations/0002_push.sql")),
    (3, include_str!("../migrations/0003_audience.sql")),
    (4, include_str!("../migrations/0004_push_erase.sql")),
    (5, include_str!("../migrations/0005_retention.sql")),
    (6, include_str!("../migrations/0006_portal.sql")),
    (7, include_str!("../migrations/0007_installation_indexes.sql")),
    (8, include_str!("../migrations/0008_delivery_report_indexes.sql")),
    (9, include_str!("../migrations/0009_value_indexes.sql")),
];

/// Connections in the pool unless configured otherwise.
pub const DEFAULT_POOL_SIZE: u32 = 10;

/// The advisory lock key that serialises migrations between processes starting at once
/// ("roster" in ASCII).
const MIGRATION_LOCK: i64 = 0x726f_7374_6572;

/// Tunables of a [`PgStore`].
#[derive(Debug, Clone)]
pub struct PgStoreOptions {
    /// Most connections the pool opens (each one transaction at a time).
    pub pool_size: u32,
    /// How long `begin` waits for a free connection (or a new one to open) before
    /// `StoreError::Unavailable`.
    pub acquire_timeout: Duration,
    /// How long a statement waits for a row lock held by another transaction before it fails
    /// with `StoreError::Retry` (PostgreSQL's `lock_timeout`). Without it a transaction stuck
    /// behind a forgotten one would wait forever; deadlocks are detected regardless.
    pub lock_timeout: Duration,
}

impl Default for PgStoreOptions {
    fn default() -> Self {
        PgStoreOptions {
            pool_size: DEFAULT_POOL_SIZE,
            // The SQLite backend's busy timeout: the same patience before answering 503.
            acquire_timeout: Duration::from_secs(5),
            lock_timeout: Duration::from_secs(5),
        }
    }
}

/// The PostgreSQL store, shared by the whole process as `Arc<dyn Store>`.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Analyzes new tables once they have rows (statistics.rs); stops with the last clone.
    _statistics: Arc<statistics::Statistics>,
}

impl std::fmt::Debug for PgStore {
    // The connect options hold the password: never in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("pool_size", &self.pool.size())
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to the database named by a `postgres://` (or `postgresql://`) URL with the
    /// default options, and applies the pending migrations.
    pub async fn connect(url: &str) -> StoreResult<PgStore> {
        PgStore::connect_with(url, &PgStoreOptions::default()).await
    }

    /// Connects with explicit options, and applies the pending migrations.
    pub async fn connect_with(url: &str, options: &PgStoreOptions) -> StoreResult<PgStore> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StoreError::Other("not a postgres:// URL".into()));
        }
        // The URL is not repeated in the error: it may hold a password.
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Other(format!("invalid PostgreSQL URL: {e}")))?
            .application_name("roster")
            .options([("lock_timeout", format!("{}ms", options.lock_timeout.as_millis()))]);
        let pool = PgPoolOptions::new()
            .max_connections(options.pool_size.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(map_err)?;
        let _statistics = statistics::spawn(pool.clone());
        let store = PgStore { pool, _statistics };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies every migration of [`MIGRATIONS`] that the database has not recorded yet, each in
    /// its own transaction; safe to run again and from several processes at once.
    pub async fn migrate(&self) -> StoreResult<()> {
        let newest_known = MIGRATIONS.iter().map(|(v, _)| *v).max().unwrap_or(0);
        for (version, script) in MIGRATIONS {
            let mut tx = self.pool.begin().await.map_err(map_err)?;
            // Held until this transaction ends: a second process waits here, then sees the
            // version recorded by the first (DDL is transactional in PostgreSQL).
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            sqlx::raw_sql(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                     version    BIGINT NOT NULL PRIMARY KEY,
                     applied_at BIGINT NOT NULL
                 )",
            )
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
            let newest_applied: Option<i64> = sqlx::query_scalar("SELECT max(version) FROM schema_migrations")
                .fetch_one(&mut *tx)
                .await
                .map_err(map_err)?;
            if let Some(applied) = newest_applied.filter(|v| *v > newest_known) {
                return Err(StoreError::Other(format!(
                    "the database has schema version {applied}, newer than this build knows \
                     ({newest_known}): upgrade roster"
                )));
            }
            let done: Option<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                .bind(*version)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_err)?;
            if done.is_some() {
                continue;
            }
            sqlx::raw_sql(*script).execute(&mut *tx).await.map_err(map_err)?;
            if *version == audience::INDEX_MIGRATION {
                audience::backfill(&mut tx).await?;
            }
            sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(*version)
                .bind(roster_model::now_millis())
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
            tx.commit().await.map_err(map_err)?;
            tracing::info!(version, "applied PostgreSQL migration");
        }
        Ok(())
    }

    /// Closes every connection of the pool, waiting for those in use to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn begin(&self) -> StoreResult<Box<dyn Tx>> {
        // Explicit, so that a server whose default_transaction_isolation was changed does not
        // change the semantics the row locks rely on.
        let tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE")
            .await
            .map_err(map_err)?;
        Ok(Box::new(PgTx::new(Conn::new(tx, true))))
    }

    async fn begin_read(&self) -> StoreResult<Box<dyn Tx>> {
        // REPEATABLE READ takes its snapshot at the first statement: take it now, so that the
        // snapshot is the database as of `begin_read` (as on SQLite). Both statements go in one
        // simple-protocol message, one round trip (sqlx reads up to the end of both).
        let tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT 1")
            .await
            .map_err(map_err)?;
        Ok(Box::new(PgTx::new(Conn::new(tx, false))))
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(map_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_versions_increase() {
        let versions: Vec<i64> = MIGRATIONS.iter().map(|(v, _)| *v).collect();
        let mut sorted = versions.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(versions, sorted);
        assert_eq!(versions.first(), Some(&1));
    }

    #[tokio::test]
    async fn refuses_other_urls() {
        for url in ["sqlite://x.db", "mysql://localhost/x", ""] {
            assert!(matches!(PgStore::connect(url).await, Err(StoreError::Other(_))));
        }
    }

    /// Every unique index of the migrated schema (constraints are backed by one) is in
    /// `UNIQUE_CONSTRAINTS`, so its violation maps to the right `Constraint`, and every entry
    /// there exists in the schema.
    #[tokio::test]
    async fn constraint_table_matches_the_catalog() {
        let Some(base) = testing::test_base_url() else {
            return;
        };
        let (url, db) = testing::fresh_test_database(&base).await.unwrap();
        let store = PgStore::connect(&url).await.unwrap();
        let mut in_schema: Vec<String> = sqlx::query_scalar(
            "SELECT ic.relname::text FROM pg_index i \
             JOIN pg_class ic ON ic.oid = i.indexrelid \
             JOIN pg_class tc ON tc.oid = i.indrelid \
             JOIN pg_namespace n ON n.oid = tc.relnamespace \
             WHERE i.indisunique AND n.nspname = current_schema() \
             AND tc.relname <> 'schema_migrations'",
        )
        .fetch_all(&store.pool)
        .await
        .unwrap();
        in_schema.sort();
        let mut in_table: Vec<String> = error::UNIQUE_CONSTRAINTS
            .iter()
            .map(|(name, _)| (*name).to_owned())
            .collect();
        in_table.sort();
        assert_eq!(in_schema, in_table);
        store.close().await;
        db.cleanup().await.unwrap();
    }
}
