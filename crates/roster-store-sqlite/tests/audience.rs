//! The audience scenarios of roster-store-tests on SQLite (filters as SQL against the reference
//! semantics, segments), and what only SQLite has: the backfill of the index by the migration that
//! creates it, and the query plans of indexed filters.

use roster_store_sqlite::SqliteStore;
use roster_store_tests::{TestStore, audience_store_suite};

/// A migrated store on a new file.
async fn fresh() -> Option<TestStore> {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("roster.db")).await.unwrap();
    Some(TestStore::new(store, dir))
}

audience_store_suite!("sqlite", fresh);
