//! The admin scenarios of the store behaviour suite (roster-store-tests `admin`) on SQLite:
//! every scenario on a database file of its own in a temporary directory.

use roster_store_sqlite::SqliteStore;
use roster_store_tests::{TestStore, admin_store_suite};

/// A migrated store on a new file.
async fn fresh() -> Option<TestStore> {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("roster.db")).await.unwrap();
    Some(TestStore::new(store, dir))
}

admin_store_suite!("sqlite", fresh);
