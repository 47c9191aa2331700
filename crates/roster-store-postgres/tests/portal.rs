//! The portal session scenarios of roster-store-tests on PostgreSQL, each on a database of its own on
//! the server of `ROSTER_TEST_POSTGRES_URL` (skipped, saying so, without it).

mod common;

use roster_store_tests::{TestStore, portal_store_suite};

/// A migrated store on a new database (dropped after the test), or `None` after printing
/// SKIPPED.
async fn fresh() -> Option<TestStore> {
    let (db, store) = common::fresh().await?;
    Some(TestStore::new(store, db))
}

portal_store_suite!("postgres", fresh);
