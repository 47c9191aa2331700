//! The portal session scenarios of roster-store-tests on SQLite, each on a database file of its own.

use roster_store_sqlite::SqliteStore;
use roster_store_tests::{TestStore, portal_store_suite};

/// A migrated store on a new file in a temporary directory.
async fn fresh() -> Option<TestStore> {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("roster.db")).await.unwrap();
    Some(TestStore::new(store, dir))
}

portal_store_suite!("sqlite", fresh);
