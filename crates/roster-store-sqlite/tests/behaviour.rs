//! The store behaviour suite (roster-store-tests) on SQLite: every scenario on a database file of
//! its own in a temporary directory.

use roster_store_sqlite::SqliteStore;
use roster_store_tests::{TestStore, store_behaviour_suite};

/// A migrated store on a new file in a directory that does not exist yet.
async fn fresh() -> Option<TestStore> {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("nested/dir/roster.db"))
        .await
        .unwrap();
    Some(TestStore::new(store, dir))
}

store_behaviour_suite!("sqlite", fresh);
