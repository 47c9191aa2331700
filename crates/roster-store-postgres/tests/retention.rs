//! The retention scenarios of roster-store-tests on PostgreSQL, each on a database of its own on
//! the server of `ROSTER_TEST_POSTGRES_URL` (skipped, saying so, without it).

mod common;

use roster_store_tests::{TestStore, retention_store_suite};

/// A migrated store on a new database (dropped after the test), or `None` after printing
/// SKIPPED.
async fn fresh() -> Option<TestStore> {
    let (db, store) = common::fresh().await?;
    Some(TestStore::new(store, db))
}

retention_store_suite!("postgres", fresh);

/// Every purge can walk its age index (oldest first) and finds the rows of a batch by key: with
/// sequential scans priced out, no statement scans a table.
#[tokio::test]
async fn purges_walk_their_age_indexes() {
    use sqlx::{AssertSqlSafe, Connection, PgConnection};

    let Some((url, _db)) = common::fresh_url().await else {
        return;
    };
    drop(roster_store_postgres::PgStore::connect(&url).await.unwrap());
    let mut conn = PgConnection::connect(&url).await.unwrap();
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut conn)
        .await
        .unwrap();
    let expected = [
        ("purge_deliveries", "deliveries_retention_idx"),
        ("purge_messages", "messages_created_idx"),
        ("purge_bulks", "bulks_created_idx"),
        ("purge_idempotency", "idempotency_keys_expires_idx"),
        ("purge_merge_snapshots", "merge_log_snapshot_created_idx"),
        ("purge_merge_entries", "merge_log_created_idx"),
    ];
    assert_eq!(roster_store_postgres::PURGE_STATEMENTS.len(), expected.len());
    for ((name, sql), (expected_name, index)) in roster_store_postgres::PURGE_STATEMENTS.iter().zip(expected) {
        assert_eq!(*name, expected_name);
        let plan: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!("EXPLAIN {sql}")))
            .bind(1_000_i64)
            .bind(500_i64)
            .fetch_all(&mut conn)
            .await
            .unwrap();
        assert!(
            plan.iter().any(|l| l.contains(index)),
            "{name} does not use {index}: {plan:#?}"
        );
        assert!(!plan.iter().any(|l| l.contains("Seq Scan")), "{name} scans: {plan:#?}");
    }
}
