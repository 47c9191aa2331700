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

mod index {
    use roster_model::filter::Filter;
    use roster_store::Store;
    use roster_store::audience::Scope;
    use roster_store::audience::translate::{Bind, Dialect, Statement, preview_counts};
    use roster_store_postgres::PgStore;
    use roster_store_tests::audience::{Vocab, check_filters, random_filters, seed_population};
    use serde_json::json;
    use sqlx::{AssertSqlSafe, Connection, PgConnection};

    use super::common::{fresh_url, small_pool};

    const INDEX_TABLES: [&str; 3] = [
        "person_attribute_values",
        "installation_attribute_values",
        "installation_search",
    ];

    /// Every row of a table, in a stable order, as text.
    async fn dump(conn: &mut PgConnection, table: &str) -> Vec<String> {
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT t::text FROM {table} t ORDER BY 1")))
            .fetch_all(conn)
            .await
            .unwrap()
    }

    /// A database from before the audience index (the tables of 0003 dropped and its version
    /// forgotten) gets the index filled by the migration when the store connects: the same rows
    /// the write paths had written, and filters that agree with the reference.
    #[tokio::test]
    async fn the_migration_backfills_the_index_of_existing_rows() {
        let Some((url, _db)) = fresh_url().await else { return };
        let store = PgStore::connect_with(&url, &small_pool()).await.unwrap();
        let pop = seed_population(&store, 0xBAC4_F111, 80).await;
        store.close().await;
        let mut conn = PgConnection::connect(&url).await.unwrap();
        let mut written = Vec::new();
        for t in INDEX_TABLES {
            written.push(dump(&mut conn, t).await);
        }
        assert!(written.iter().all(|rows| !rows.is_empty()));
        sqlx::raw_sql(
            "DROP TABLE person_attribute_values; DROP TABLE installation_attribute_values; \
             DROP TABLE installation_search; DROP TABLE segments; \
             DELETE FROM schema_migrations WHERE version = 3;",
        )
        .execute(&mut conn)
        .await
        .unwrap();

        let store = PgStore::connect_with(&url, &small_pool()).await.unwrap();
        let mut backfilled = Vec::new();
        for t in INDEX_TABLES {
            backfilled.push(dump(&mut conn, t).await);
        }
        assert_eq!(backfilled, written);
        conn.close().await.unwrap();
        let mut tx = store.begin_read().await.unwrap();
        let vocab = Vocab::of(&tx.snapshot().await.unwrap(), pop.account.id);
        tx.rollback().await.unwrap();
        let filters = random_filters(7, &vocab, 60);
        assert!(check_filters(&store, &pop, &filters).await > 20);
        store.close().await;
    }

    async fn explain(conn: &mut PgConnection, st: &Statement) -> String {
        let mut q = sqlx::query_scalar::<_, String>(AssertSqlSafe(format!("EXPLAIN {}", st.sql)));
        for b in &st.binds {
            q = match b {
                Bind::Text(s) => q.bind(s.clone()),
                Bind::Int(n) => q.bind(*n),
                Bind::Bool(v) => q.bind(*v),
                Bind::TextList(v) => q.bind(v.clone()),
                Bind::IntList(v) => q.bind(v.clone()),
            };
        }
        assert!(!st.sql.contains("custom_attributes"), "no JSON is read: {}", st.sql);
        q.fetch_all(conn).await.unwrap().join("\n")
    }

    /// Tag, custom-attribute range, case-insensitive prefix and installation-attribute filters
    /// can be answered from their indexes: with sequential scans made unattractive (a small test
    /// table would be scanned anyway), the plan reads each condition's index and never scans
    /// persons.
    #[tokio::test]
    async fn indexed_filters_use_the_indexes() {
        let Some((url, _db)) = fresh_url().await else { return };
        let store = PgStore::connect_with(&url, &small_pool()).await.unwrap();
        let pop = seed_population(&store, 0x9_1A45, 300).await;
        let mut conn = PgConnection::connect(&url).await.unwrap();
        sqlx::raw_sql("ANALYZE; SET enable_seqscan = off;")
            .execute(&mut conn)
            .await
            .unwrap();
        let cases = [
            (json!({"tags": "vip"}), "person_tags_account_tag_idx"),
            (
                json!({"score": {"$gte": 2, "$lt": 100}}),
                "person_attribute_values_num_idx",
            ),
            (
                json!({"firstName": {"$startsWith": "an"}}),
                "person_attribute_values_lower_idx",
            ),
            (
                json!({"tags": {"$startsWith": "Be"}}),
                "person_attribute_values_lower_idx",
            ),
            (
                json!({"since": {"$gt": "2000-01-01"}}),
                "person_attribute_values_text_idx",
            ),
            (
                json!({"installation.customAttributes.segmentNo": {"$lte": 3}}),
                "installation_attribute_values_num_idx",
            ),
            (
                json!({"phones": {"$startsWith": "+3859100001"}}),
                "person_phones_number_key",
            ),
        ];
        for (f, index) in &cases {
            let filter = Filter::parse(f, &pop.definitions, "filter").unwrap();
            for app in [None, Some(pop.apps[0].id)] {
                let scope = Scope {
                    account_id: pop.account.id,
                    application_id: app,
                };
                let plan = explain(&mut conn, &preview_counts(Dialect::Postgres, scope, &filter, false)).await;
                let reads_index = plan
                    .lines()
                    .any(|l| l.contains("Index") && (l.contains(&format!(" {index} ")) || l.ends_with(index)));
                assert!(reads_index, "{f}: expected {index} in\n{plan}");
                assert!(!plan.contains("Seq Scan on persons"), "{f}:\n{plan}");
            }
        }
        conn.close().await.unwrap();
        store.close().await;
    }
}

/// Not part of the timed suite: how long a preview and a search page take over 100,000 persons
/// (about 150,000 installations) on PostgreSQL. `cargo test -p roster-store-postgres --test
/// audience -- --ignored --nocapture` with `ROSTER_TEST_POSTGRES_URL` set.
#[tokio::test]
#[ignore]
async fn preview_timings_over_100k_people() {
    let Some((db, store)) = common::fresh().await else {
        return;
    };
    let started = std::time::Instant::now();
    let pop = roster_store_tests::audience::seed_bulk(&store, 42, 100_000).await;
    println!("seeded in {:.1} s", started.elapsed().as_secs_f64());
    let mut tx = roster_store::Store::begin(&store).await.unwrap();
    tx.refresh_statistics().await.unwrap();
    tx.commit().await.unwrap();
    roster_store_tests::audience::time_previews(&store, &pop).await;
    store.close().await;
    drop(db);
}
