//! Fixtures shared by the PostgreSQL store tests: a fresh database per test, and the domain
//! values of the behaviour suite's fixtures (roster-store-tests).

#![allow(dead_code)] // each test file uses its own subset

use roster_store_postgres::testing::{TestDbGuard, fresh_test_database, test_base_url};
use roster_store_postgres::{PgStore, PgStoreOptions};
#[allow(unused_imports)] // each test file uses its own subset
pub use roster_store_tests::fixtures::*;

/// A migrated store on a database of its own, and the guard that drops the database; `None`
/// (after printing SKIPPED) without `ROSTER_TEST_POSTGRES_URL`. Bind it as `(_db, store)` so
/// that the store is dropped before its database.
pub async fn fresh() -> Option<(TestDbGuard, PgStore)> {
    fresh_with(&small_pool()).await
}

/// As [`fresh`], with explicit options.
pub async fn fresh_with(options: &PgStoreOptions) -> Option<(TestDbGuard, PgStore)> {
    let (url, db) = fresh_url().await?;
    let store = PgStore::connect_with(&url, options).await.unwrap();
    Some((db, store))
}

/// A fresh, empty (unmigrated) database: its URL and guard.
pub async fn fresh_url() -> Option<(String, TestDbGuard)> {
    let base = test_base_url()?;
    let (url, db) = fresh_test_database(&base).await.unwrap();
    Some((url, db))
}

/// Tests run in parallel against one server: a few connections each is plenty.
pub fn small_pool() -> PgStoreOptions {
    PgStoreOptions {
        pool_size: 4,
        ..PgStoreOptions::default()
    }
}
