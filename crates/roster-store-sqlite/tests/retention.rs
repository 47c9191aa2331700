//! The retention scenarios of roster-store-tests on SQLite, each on a database file of its own.

use roster_store_sqlite::SqliteStore;
use roster_store_tests::{TestStore, retention_store_suite};

/// A migrated store on a new file in a temporary directory.
async fn fresh() -> Option<TestStore> {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("roster.db")).await.unwrap();
    Some(TestStore::new(store, dir))
}

retention_store_suite!("sqlite", fresh);

/// Every purge walks its age index (oldest first) and finds the rows of a batch by key: no
/// statement scans a table, however large the table grows.
#[tokio::test]
async fn purges_walk_their_age_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plans.db");
    drop(SqliteStore::open(&path).await.unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let expected = [
        ("purge_deliveries", "deliveries_retention_idx"),
        ("purge_messages", "messages_created_idx"),
        ("purge_bulks", "bulks_created_idx"),
        ("purge_idempotency", "idempotency_keys_expires_idx"),
        ("purge_merge_snapshots", "merge_log_snapshot_created_idx"),
        ("purge_merge_entries", "merge_log_created_idx"),
    ];
    assert_eq!(roster_store_sqlite::PURGE_STATEMENTS.len(), expected.len());
    for ((name, sql), (expected_name, index)) in roster_store_sqlite::PURGE_STATEMENTS.iter().zip(expected) {
        assert_eq!(*name, expected_name);
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let plan: Vec<String> = stmt
            .query_map(rusqlite::params![1_000_i64, 500_i64], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter().any(|l| l.contains(index)),
            "{name} does not use {index}: {plan:?}"
        );
        assert!(!plan.iter().any(|l| l.starts_with("SCAN")), "{name} scans: {plan:?}");
    }
}
