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

mod index {
    use roster_model::filter::Filter;
    use roster_store::Store;
    use roster_store::audience::Scope;
    use roster_store::audience::translate::{Bind, Dialect, preview_counts, search_people};
    use roster_store_sqlite::SqliteStore;
    use roster_store_tests::audience::{Vocab, check_filters, random_filters, seed_population};
    use rusqlite::Connection;
    use rusqlite::types::Value as SqlValue;
    use serde_json::json;

    const INDEX_TABLES: [&str; 3] = [
        "person_attribute_values",
        "installation_attribute_values",
        "installation_search",
    ];

    /// Every row of a table, in a stable order, as text.
    fn dump(conn: &Connection, table: &str) -> Vec<String> {
        let mut stmt = conn.prepare(&format!("SELECT * FROM {table}")).unwrap();
        let n = stmt.column_count();
        let mut rows: Vec<String> = stmt
            .query_map([], |r| {
                Ok((0..n)
                    .map(|i| format!("{:?}", r.get::<_, SqlValue>(i).unwrap()))
                    .collect::<Vec<_>>()
                    .join("|"))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        rows.sort();
        rows
    }

    /// A database from before the audience index (the tables of 0003 dropped and its version
    /// forgotten) gets the index filled by the migration when opened: the same rows the write
    /// paths had written, and filters that agree with the reference.
    #[tokio::test]
    async fn the_migration_backfills_the_index_of_existing_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let store = SqliteStore::open(&path).await.unwrap();
        let pop = seed_population(&store, 0xBAC4_F111, 80).await;
        drop(store);
        let conn = Connection::open(&path).unwrap();
        let written: Vec<Vec<String>> = INDEX_TABLES.iter().map(|t| dump(&conn, t)).collect();
        assert!(written.iter().all(|rows| !rows.is_empty()));
        conn.execute_batch(
            "DROP TABLE person_attribute_values; DROP TABLE installation_attribute_values; \
             DROP TABLE installation_search; DROP TABLE segments; \
             DELETE FROM schema_migrations WHERE version = 3;",
        )
        .unwrap();
        drop(conn);

        let store = SqliteStore::open(&path).await.unwrap();
        let conn = Connection::open(&path).unwrap();
        let backfilled: Vec<Vec<String>> = INDEX_TABLES.iter().map(|t| dump(&conn, t)).collect();
        assert_eq!(backfilled, written);
        let mut tx = store.begin_read().await.unwrap();
        let vocab = Vocab::of(&tx.snapshot().await.unwrap(), pop.account.id);
        tx.rollback().await.unwrap();
        let filters = random_filters(7, &vocab, 60);
        assert!(check_filters(&store, &pop, &filters).await > 20);
    }

    /// Deleting a custom attribute's values removes every row of it (scalars of every type,
    /// list headers and item fields) and nothing else, each kind through an index (migration
    /// 0009: no index holds all of an attribute's rows).
    #[tokio::test]
    async fn attribute_deletion_removes_every_row_through_indexes() {
        use roster_model::AttributeScope;
        use roster_store::audience::index::CUSTOM_ROW_KINDS;

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("delete.db");
        let store = SqliteStore::open(&path).await.unwrap();
        let pop = seed_population(&store, 0xDE1E_7E00, 120).await;
        let conn = Connection::open(&path).unwrap();
        let count = |table: &str, name: &str| -> i64 {
            conn.query_row(&format!("SELECT count(*) FROM {table} WHERE name = ?1"), [name], |r| {
                r.get(0)
            })
            .unwrap()
        };
        for table in ["person_attribute_values", "installation_attribute_values"] {
            for kind in CUSTOM_ROW_KINDS {
                let sql =
                    format!("EXPLAIN QUERY PLAN DELETE FROM {table} WHERE account_id = ?1 AND name = ?2 AND {kind}");
                let plan: Vec<String> = conn
                    .prepare(&sql)
                    .unwrap()
                    .query_map(["a", "b"], |r| r.get::<_, String>(3))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                let plan = plan.join("\n");
                assert!(plan.contains("USING") && plan.contains("INDEX"), "{kind}: {plan}");
            }
        }
        for def in &pop.definitions {
            let table = match def.scope {
                AttributeScope::Person => "person_attribute_values",
                AttributeScope::Installation => "installation_attribute_values",
            };
            let others = |conn: &Connection| -> i64 {
                conn.query_row(
                    &format!("SELECT count(*) FROM {table} WHERE name <> ?1"),
                    [&def.name],
                    |r| r.get(0),
                )
                .unwrap()
            };
            let before = others(&conn);
            assert!(count(table, &def.name) > 0, "{} has rows to delete", def.name);
            let mut tx = store.begin().await.unwrap();
            tx.delete_attribute_values(pop.account.id, def.scope, &def.name, 1)
                .await
                .unwrap();
            tx.commit().await.unwrap();
            assert_eq!(count(table, &def.name), 0, "{}", def.name);
            assert_eq!(others(&conn), before, "{}: only its rows", def.name);
        }
    }

    /// `EXPLAIN QUERY PLAN` of the preview query of each filter.
    fn plan(conn: &Connection, filter: &Filter, scope: Scope) -> String {
        let st = preview_counts(Dialect::Sqlite, scope, filter, false);
        let binds: Vec<SqlValue> = st
            .binds
            .iter()
            .map(|b| match b {
                Bind::Text(s) => SqlValue::Text(s.clone()),
                Bind::Int(n) => SqlValue::Integer(*n),
                Bind::Bool(b) => SqlValue::Integer(i64::from(*b)),
                Bind::TextList(v) => SqlValue::Text(serde_json::to_string(v).unwrap()),
                Bind::IntList(v) => SqlValue::Text(serde_json::to_string(v).unwrap()),
            })
            .collect();
        assert!(!st.sql.contains("custom_attributes"), "no JSON is read: {}", st.sql);
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {}", st.sql)).unwrap();
        let lines: Vec<String> = stmt
            .query_map(rusqlite::params_from_iter(binds), |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        lines.join("\n")
    }

    /// Tag, custom-attribute range, case-insensitive prefix and installation-attribute filters
    /// are answered from their indexes (search by index, never a scan of persons), with and
    /// without statistics.
    #[tokio::test]
    async fn indexed_filters_use_the_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plans.db");
        let store = SqliteStore::open(&path).await.unwrap();
        let pop = seed_population(&store, 0x9_1A45, 300).await;
        let conn = Connection::open(&path).unwrap();
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
            // Migration 0009: the text index holds only rows with text; booleans and list
            // headers have indexes of their own.
            (json!({"nick": "ana"}), "person_attribute_values_text_idx"),
            (json!({"since": {"$exists": true}}), "person_attribute_values_text_idx"),
            (json!({"vip": true}), "person_attribute_values_bool_idx"),
            (
                json!({"installation.customAttributes.beta": false}),
                "installation_attribute_values_bool_idx",
            ),
            (
                json!({"orders": {"$exists": true}}),
                "person_attribute_values_header_idx",
            ),
            (
                json!({"installation.customAttributes.items": {"$exists": true}}),
                "installation_attribute_values_header_idx",
            ),
            // The unique constraint's index (SQLite names it itself): a range on the number.
            (
                json!({"phones": {"$startsWith": "+3859100001"}}),
                "person_phones USING INDEX sqlite_autoindex_person_phones_2 (account_id=? AND number>? AND number<?)",
            ),
        ];
        for analyzed in [false, true] {
            if analyzed {
                conn.execute_batch("ANALYZE").unwrap();
            }
            for (f, index) in &cases {
                let filter = Filter::parse(f, &pop.definitions, "filter").unwrap();
                for app in [None, Some(pop.apps[0].id)] {
                    let scope = Scope {
                        account_id: pop.account.id,
                        application_id: app,
                    };
                    let plan = plan(&conn, &filter, scope);
                    assert!(plan.contains(index), "{f}: expected {index} in\n{plan}");
                    assert!(
                        !plan.contains("SCAN p\n") && !plan.contains("SCAN persons"),
                        "{f}:\n{plan}"
                    );
                }
            }
        }
        // The search statement reads persons by their primary key order, and the tag index.
        let filter = Filter::parse(&json!({"tags": "vip"}), &pop.definitions, "filter").unwrap();
        let scope = Scope {
            account_id: pop.account.id,
            application_id: None,
        };
        let st = search_people(Dialect::Sqlite, scope, &filter, None, 50);
        let binds: Vec<SqlValue> = st
            .binds
            .iter()
            .map(|b| match b {
                Bind::Text(s) => SqlValue::Text(s.clone()),
                Bind::Int(n) => SqlValue::Integer(*n),
                _ => SqlValue::Null,
            })
            .collect();
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {}", st.sql)).unwrap();
        let plan: Vec<String> = stmt
            .query_map(rusqlite::params_from_iter(binds), |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(plan.join("\n").contains("person_tags_account_tag_idx"), "{plan:?}");
    }
}

/// Not part of the timed suite: how long a preview and a search page take over 100,000 persons
/// (about 150,000 installations) on SQLite. `cargo test -p roster-store-sqlite --test audience
/// -- --ignored --nocapture`.
#[tokio::test]
#[ignore]
async fn preview_timings_over_100k_people() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("big.db")).await.unwrap();
    let started = std::time::Instant::now();
    let pop = roster_store_tests::audience::seed_bulk(&store, 42, 100_000).await;
    println!("seeded in {:.1} s", started.elapsed().as_secs_f64());
    roster_store_tests::audience::time_previews(&store, &pop).await;
}
