//! The store behaviour suite (roster-store-tests) on PostgreSQL: every scenario on a database of
//! its own on the server of `ROSTER_TEST_POSTGRES_URL`. Without the variable each test prints
//! `SKIPPED: ROSTER_TEST_POSTGRES_URL not set` and passes; with it each prints that it ran on
//! postgres.

mod common;

use roster_store_tests::{TestStore, store_behaviour_suite};

/// A migrated store on a new database (dropped after the test), or `None` after printing
/// SKIPPED (`roster_store_postgres::testing`).
async fn fresh() -> Option<TestStore> {
    let (db, store) = common::fresh().await?;
    Some(TestStore::new(store, db))
}

store_behaviour_suite!("postgres", fresh);
