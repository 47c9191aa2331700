//! The audience scenarios of roster-store-tests on PostgreSQL (filters as SQL against the
//! reference semantics, segments), each on a database of its own on the server of
//! `ROSTER_TEST_POSTGRES_URL` (skipped, saying so, without it); and the backfill of the index by
//! the migration that creates it, and the query plans of indexed filters.

mod common;

use roster_store_tests::{TestStore, audience_store_suite};

/// A migrated store on a new database (dropped after the test), or `None` after printing
/// SKIPPED.
async fn fresh() -> Option<TestStore> {
    let (db, store) = common::fresh().await?;
    Some(TestStore::new(store, db))
}

audience_store_suite!("postgres", fresh);
