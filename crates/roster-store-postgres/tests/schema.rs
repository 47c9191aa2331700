//! The PostgreSQL schema against the SQLite one (design.md "Storage": a test compares the two
//! for drift): the same tables, the same columns in the same order with the same nullability
//! and corresponding types, the same indexes (name, uniqueness, columns, partial or not).
//! Both schemas are read from their catalogs after the migrations ran, not from the SQL files.

mod common;

use std::collections::BTreeMap;

use common::fresh_url;
use roster_store_postgres::PgStore;
use roster_store_sqlite::SqliteStore;
use sqlx::{Connection, PgConnection};

/// One column: name, the portable type, NOT NULL.
type Column = (String, &'static str, bool);
/// One index: uniqueness, columns in order, partial.
type Index = (bool, Vec<String>, bool);

/// Tables (column lists) and indexes of a schema, the migrations bookkeeping table left out.
#[derive(Debug, PartialEq)]
struct Schema {
    tables: BTreeMap<String, Vec<Column>>,
    indexes: BTreeMap<String, Index>,
}

/// SQLite's declared type as the PostgreSQL type it must correspond to. INTEGER columns are
/// BIGINT, or BOOLEAN where SQLite checks `IN (0, 1)`: told apart by the caller.
fn sqlite_type(declared: &str, is_bool: bool) -> &'static str {
    match (declared, is_bool) {
        ("INTEGER", true) => "boolean",
        ("INTEGER", false) => "bigint",
        ("TEXT", _) => "text",
        ("BLOB", _) => "bytea",
        (other, _) => panic!("unexpected SQLite type {other}"),
    }
}

fn sqlite_schema(path: &std::path::Path) -> Schema {
    let conn = rusqlite::Connection::open(path).unwrap();
    let tables: Vec<(String, String)> = conn
        .prepare(
            "SELECT name, sql FROM sqlite_schema WHERE type = 'table' \
             AND name NOT LIKE 'sqlite_%' AND name <> 'schema_migrations'",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut schema = Schema {
        tables: BTreeMap::new(),
        indexes: BTreeMap::new(),
    };
    for (table, sql) in &tables {
        let columns: Vec<(String, String, bool)> = conn
            .prepare(&format!("PRAGMA table_info({table})"))
            .unwrap()
            .query_map([], |r| Ok((r.get("name")?, r.get("type")?, r.get("notnull")?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let columns = columns
            .into_iter()
            .map(|(name, declared, not_null)| {
                // The SQLite schema spells every boolean's check as `CHECK (<name> IN (0, 1))`.
                let is_bool = sql.contains(&format!("CHECK ({name} IN (0, 1))"));
                let not_null = not_null || is_primary_key_column(&conn, table, &name);
                let ty = sqlite_type(&declared, is_bool);
                (name, ty, not_null)
            })
            .collect();
        schema.tables.insert(table.clone(), columns);
        let indexes: Vec<(String, bool, bool)> = conn
            .prepare(&format!("PRAGMA index_list({table})"))
            .unwrap()
            .query_map([], |r| Ok((r.get("name")?, r.get("unique")?, r.get("partial")?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let named = named_key_constraints(sql);
        for (name, unique, partial) in indexes {
            let columns: Vec<String> = conn
                .prepare(&format!("PRAGMA index_info({name})"))
                .unwrap()
                .query_map([], |r| r.get("name"))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            // SQLite names the index behind a PRIMARY KEY or UNIQUE constraint
            // "sqlite_autoindex_<table>_<n>"; PostgreSQL gives it the constraint's name.
            let name = match named.iter().find(|(_, cols)| *cols == columns) {
                Some((constraint, _)) if name.starts_with("sqlite_autoindex_") => constraint.clone(),
                _ => name,
            };
            schema.indexes.insert(name, (unique, columns, partial));
        }
    }
    schema
}

/// The `CONSTRAINT <name> PRIMARY KEY (...)` and `CONSTRAINT <name> UNIQUE (...)` clauses of a
/// CREATE TABLE statement: each name with its columns.
fn named_key_constraints(create_table: &str) -> Vec<(String, Vec<String>)> {
    let mut found = Vec::new();
    for clause in create_table.split("CONSTRAINT ").skip(1) {
        let mut words = clause.split_whitespace();
        let name = words.next().unwrap_or_default().to_owned();
        let rest = clause.trim_start_matches(&name as &str).trim_start();
        let Some(after) = rest.strip_prefix("PRIMARY KEY").or_else(|| rest.strip_prefix("UNIQUE")) else {
            continue;
        };
        let open = after.find('(').unwrap();
        let close = after.find(')').unwrap();
        let columns = after[open + 1..close].split(',').map(|c| c.trim().to_owned()).collect();
        found.push((name, columns));
    }
    found
}

/// Whether a column is part of the table's primary key (PostgreSQL makes those NOT NULL).
fn is_primary_key_column(conn: &rusqlite::Connection, table: &str, column: &str) -> bool {
    conn.prepare(&format!("PRAGMA table_info({table})"))
        .unwrap()
        .query_map([], |r| Ok((r.get::<_, String>("name")?, r.get::<_, i64>("pk")?)))
        .unwrap()
        .map(Result::unwrap)
        .any(|(name, pk)| name == column && pk > 0)
}

async fn postgres_schema(conn: &mut PgConnection) -> Schema {
    let columns: Vec<(String, String, String, bool)> = sqlx::query_as(
        "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, NULL), a.attnotnull \
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind = 'r' AND n.nspname = current_schema() AND a.attnum > 0 \
         AND NOT a.attisdropped AND c.relname <> 'schema_migrations' \
         ORDER BY c.relname, a.attnum",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let mut schema = Schema {
        tables: BTreeMap::new(),
        indexes: BTreeMap::new(),
    };
    for (table, column, ty, not_null) in columns {
        let ty = match ty.as_str() {
            "bigint" => "bigint",
            "boolean" => "boolean",
            "text" => "text",
            "bytea" => "bytea",
            other => panic!("unexpected PostgreSQL type {other} of {table}.{column}"),
        };
        schema.tables.entry(table).or_default().push((column, ty, not_null));
    }
    let indexes: Vec<(String, bool, Vec<String>, bool)> = sqlx::query_as(
        "SELECT ic.relname::text, i.indisunique, \
         array(SELECT a.attname::text FROM unnest(i.indkey) WITH ORDINALITY AS k (attnum, ord) \
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.ord), \
         i.indpred IS NOT NULL \
         FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid \
         JOIN pg_class tc ON tc.oid = i.indrelid JOIN pg_namespace n ON n.oid = tc.relnamespace \
         WHERE n.nspname = current_schema() AND tc.relname <> 'schema_migrations'",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    for (name, unique, columns, partial) in indexes {
        schema.indexes.insert(name, (unique, columns, partial));
    }
    schema
}

/// Every text column of the PostgreSQL schema that is not a JSON document compares and orders
/// by code point (COLLATE "C"), as every SQLite text column does (BINARY).
async fn non_c_text_columns(conn: &mut PgConnection) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT c.relname || '.' || a.attname FROM pg_attribute a \
         JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_collation co ON co.oid = a.attcollation \
         WHERE c.relkind = 'r' AND n.nspname = current_schema() AND a.attnum > 0 \
         AND NOT a.attisdropped AND a.atttypid = 'text'::regtype \
         AND c.relname <> 'schema_migrations' AND co.collname IS DISTINCT FROM 'C' \
         ORDER BY 1",
    )
    .fetch_all(conn)
    .await
    .unwrap()
}

#[tokio::test]
async fn the_postgres_schema_mirrors_the_sqlite_schema() {
    let Some((url, _db)) = fresh_url().await else { return };
    let store = PgStore::connect(&url).await.unwrap();
    store.close().await;
    let mut conn = PgConnection::connect(&url).await.unwrap();
    let postgres = postgres_schema(&mut conn).await;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drift.db");
    drop(SqliteStore::open(&path).await.unwrap());
    let sqlite = sqlite_schema(&path);

    // Table by table first, for a readable failure.
    assert_eq!(
        postgres.tables.keys().collect::<Vec<_>>(),
        sqlite.tables.keys().collect::<Vec<_>>()
    );
    for (table, columns) in &sqlite.tables {
        assert_eq!(&postgres.tables[table], columns, "columns of {table}");
    }
    assert_eq!(postgres.indexes, sqlite.indexes);
    // Every table carries the account (design.md "Storage"); the accounts table is keyed by it.
    for (table, columns) in postgres.tables.iter().filter(|(t, _)| *t != "accounts") {
        assert!(
            columns.iter().any(|(name, _, _)| name == "account_id"),
            "{table} has no account_id"
        );
    }

    // The JSON documents are the only text columns with the database's default collation.
    assert_eq!(
        non_c_text_columns(&mut conn).await,
        [
            "api_keys.scopes",
            "applications.providers",
            "attribute_definitions.object_schema",
            "audience_jobs.audience_filter",
            "installations.custom_attributes",
            "merge_log.actor",
            "merge_log.before",
            "merge_log.dropped_attributes",
            "merge_log.reversed_by",
            "messages.content",
            "messages.destination",
            "messages.options",
            "persons.custom_attributes",
        ]
    );
    conn.close().await.unwrap();
}
