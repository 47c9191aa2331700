//! What only the SQLite store does, against real database files in temporary directories: a
//! second store (another process) on the same file, the busy timeout, the migrations' bookkeeping
//! and WAL mode, rows written behind the store's back. What every backend does is the behaviour
//! suite (roster-store-tests), run by `tests/behaviour.rs`.

use std::time::{Duration, Instant};

use roster_store::{Store, StoreError};
use roster_store_sqlite::{MIGRATIONS, SqliteStore};
use roster_store_tests::fixtures::{account, installation, person, seeded};

// --- files, processes, migrations -----------------------------------------------------------------

#[tokio::test]
async fn a_second_store_on_the_same_file_waits_for_the_lock_and_sees_commits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let first = SqliteStore::open(&path).await.unwrap();
    // As another process would: its own connections, its own writer mutex.
    let second = SqliteStore::open_url(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let (acc, app) = seeded(&first).await;

    // The first store holds the write lock for a while; the second one's writer waits for it
    // (busy_timeout) instead of failing.
    let p1 = person(acc.id);
    let mut tx1 = first.begin().await.unwrap();
    tx1.insert_person(&p1).await.unwrap();
    let p2 = person(acc.id);
    let started = Instant::now();
    let writer = tokio::spawn({
        let p2 = p2.clone();
        async move {
            let mut tx2 = second.begin().await.unwrap();
            tx2.insert_person(&p2).await.unwrap();
            tx2.insert_installation(&installation(&app, p2.id, 1)).await.unwrap();
            tx2.commit().await.unwrap();
            (second, started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!writer.is_finished());
    tx1.commit().await.unwrap();
    let (second, waited) = writer.await.unwrap();
    assert!(waited >= Duration::from_millis(250), "waited {waited:?}");

    // Each sees the other's commits.
    let mut r1 = first.begin_read().await.unwrap();
    let mut r2 = second.begin_read().await.unwrap();
    for r in [&mut r1, &mut r2] {
        assert_eq!(r.person(acc.id, p1.id).await.unwrap(), Some(p1.clone()));
        assert_eq!(r.person(acc.id, p2.id).await.unwrap(), Some(p2.clone()));
    }
}

#[tokio::test]
async fn a_lock_held_past_the_busy_timeout_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy.db");
    let store = SqliteStore::open(&path).await.unwrap();
    // Another process holding the write lock for longer than busy_timeout (5 s).
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let started = Instant::now();
    let result = store.begin().await;
    assert!(matches!(result, Err(StoreError::Unavailable(_))), "{:?}", result.err());
    assert!(started.elapsed() >= Duration::from_secs(4));
    // Reads go on meanwhile (WAL).
    let mut r = store.begin_read().await.unwrap();
    assert!(r.default_account().await.unwrap().is_none());
    drop(r);
    other.execute_batch("ROLLBACK").unwrap();
    // And the writer recovers once the lock is released.
    let mut tx = store.begin().await.unwrap();
    tx.insert_account(&account(1)).await.unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn migrations_apply_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.db");
    let first = SqliteStore::open(&path).await.unwrap();
    let (acc, _app) = seeded(&first).await;
    drop(first);
    // Reopening, and two stores migrating at once, apply nothing again and lose nothing.
    let (a, b) = tokio::join!(SqliteStore::open(&path), SqliteStore::open(&path));
    let (a, b) = (a.unwrap(), b.unwrap());
    a.migrate().await.unwrap();
    b.migrate().await.unwrap();
    let mut tx = a.begin_read().await.unwrap();
    assert_eq!(tx.account(acc.id).await.unwrap(), Some(acc));
    drop(tx);

    let raw = rusqlite::Connection::open(&path).unwrap();
    let versions: Vec<i64> = raw
        .prepare("SELECT version FROM schema_migrations ORDER BY version")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(versions, MIGRATIONS.iter().map(|(v, _)| *v).collect::<Vec<_>>());
    let mode: String = raw.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");

    // A database migrated by a newer build is refused rather than misread.
    raw.execute(
        "INSERT INTO schema_migrations (version, applied_at) VALUES (9999, 0)",
        [],
    )
    .unwrap();
    drop((a, b));
    assert!(matches!(SqliteStore::open(&path).await, Err(StoreError::Other(_))));
}

/// A new store at `path` with one person and its installation.
async fn store_with_installation(path: &std::path::Path) -> (SqliteStore, roster_model::Installation) {
    let store = SqliteStore::open(path).await.unwrap();
    let (acc, app) = seeded(&store).await;
    let p = person(acc.id);
    let inst = installation(&app, p.id, 1);
    let mut tx = store.begin().await.unwrap();
    tx.insert_person(&p).await.unwrap();
    tx.insert_installation(&inst).await.unwrap();
    tx.commit().await.unwrap();
    (store, inst)
}

#[tokio::test]
async fn a_corrupt_row_is_an_error_not_a_default() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let (store, inst) = store_with_installation(&path).await;

    // Another writer with foreign keys off stores an id that is no UUID: valid for the column,
    // not for the domain type.
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
    raw.execute("UPDATE installations SET person_id = 'not-a-uuid'", [])
        .unwrap();
    drop(raw);

    let mut tx = store.begin_read().await.unwrap();
    match tx.installation(&inst.push_reg_id).await {
        Err(StoreError::Other(message)) => assert!(message.contains("corrupt row"), "{message}"),
        other => panic!("expected a corrupt-row error, got {other:?}"),
    }
    assert!(matches!(tx.snapshot().await, Err(StoreError::Other(_))));
}

/// `EXPLAIN QUERY PLAN` of `sql` on a new store's schema: one line per step.
async fn query_plan(sql: &str, params: &[&dyn rusqlite::ToSql]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plans.db");
    drop(SqliteStore::open(&path).await.unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    stmt.query_map(params, |r| r.get::<_, String>(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The installations of a claimed delivery batch are found by their primary key, not by
/// walking the account's installations: the account filter must not choose the plan.
#[tokio::test]
async fn claimed_installations_are_read_by_primary_key() {
    let plan = query_plan(
        roster_store_sqlite::INSTALLATIONS_BY_IDS,
        rusqlite::params!["a", "[\"x\"]"],
    )
    .await;
    assert!(
        plan.iter()
            .any(|l| l.starts_with("SEARCH installations USING") && l.ends_with("(push_reg_id=?)")),
        "{plan:?}"
    );
    assert!(!plan.iter().any(|l| l.starts_with("SCAN installations")), "{plan:?}");
    assert!(!plan.iter().any(|l| l.contains("account")), "{plan:?}");
}

/// A message's counts read indexes only (its status index, and the partial indexes of the
/// records a device reported), never its records: at 100,000 records reading the records took
/// 36 ms, the indexes 8.
#[tokio::test]
async fn delivery_counts_read_indexes_only() {
    let plan = query_plan(roster_store_sqlite::DELIVERY_COUNTS, rusqlite::params!["a", "m"]).await;
    for index in [
        "COVERING INDEX deliveries_message_status_idx",
        "INDEX deliveries_delivered_idx",
        "INDEX deliveries_seen_idx",
    ] {
        assert!(
            plan.iter()
                .any(|l| l.starts_with(&format!("SEARCH deliveries USING {index}"))),
            "{index}: {plan:?}"
        );
    }
    assert!(!plan.iter().any(|l| l.starts_with("SCAN deliveries")), "{plan:?}");
}

// --- CHECK constraints as comparisons (migration 10) ----------------------------------------------

/// The columns whose constraints migration 10 rewrote.
const CHECKED: &[(&str, &str)] = &[
    ("installations", "push_service_type"),
    ("installations", "provider"),
    ("installations", "token_cleared_reason"),
    ("deliveries", "provider"),
    ("deliveries", "status"),
];

/// The opcodes of `sql` on `conn` (`EXPLAIN`).
fn opcodes(conn: &rusqlite::Connection, sql: &str) -> Vec<String> {
    let mut stmt = conn.prepare(&format!("EXPLAIN {sql}")).unwrap();
    // Parameters left unbound: EXPLAIN does not run the statement.
    let mut rows = stmt.raw_query();
    let mut opcodes = Vec::new();
    while let Some(row) = rows.next().unwrap() {
        opcodes.push(row.get::<_, String>(1).unwrap());
    }
    opcodes
}

/// A delivery record written behind the store's back, foreign keys off: only the CHECK
/// constraints are in the way.
fn insert_delivery(conn: &rusqlite::Connection, id: &str, status: &str, provider: &str) -> rusqlite::Result<usize> {
    conn.execute_batch("PRAGMA foreign_keys = OFF")?;
    conn.execute(
        "INSERT INTO deliveries (account_id, delivery_id, message_id, application_id, push_reg_id, \
         person_id, provider, status, attempts, created_at, updated_at, next_attempt_at) \
         VALUES ('a', ?1, 'm', 'app', ?1, 'p', ?3, ?2, 0, 0, 0, 0)",
        rusqlite::params![id, status, provider],
    )
}

/// The writes of the send queue and of installations test their enumerated columns with
/// comparisons: SQLite builds a temporary B-tree for a constant `IN` list of three or more
/// values on every run of a statement that checks one (shown on a table of the old shape).
#[tokio::test]
async fn hot_writes_check_their_columns_without_temporary_trees() {
    let old_shape = rusqlite::Connection::open_in_memory().unwrap();
    old_shape
        .execute_batch("CREATE TABLE t (x TEXT CHECK (x IN ('A', 'B', 'C')))")
        .unwrap();
    assert!(opcodes(&old_shape, "INSERT INTO t VALUES ('A')").contains(&"OpenEphemeral".to_string()));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checks.db");
    drop(SqliteStore::open(&path).await.unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    for (table, column) in CHECKED {
        let sql = format!("UPDATE {table} SET {column} = ?1 WHERE rowid = ?2");
        assert!(!opcodes(&conn, &sql).contains(&"OpenEphemeral".to_string()), "{sql}");
        let schema: String = conn
            .query_row("SELECT sql FROM sqlite_schema WHERE name = ?1", [table], |r| r.get(0))
            .unwrap();
        assert!(!schema.contains(&format!("{column} IN (")), "{schema}");
    }
    let insert = "INSERT INTO deliveries (account_id, delivery_id, message_id, application_id, \
                  provider, status, attempts, created_at, updated_at, next_attempt_at) \
                  VALUES ('a', 'd', 'm', 'app', 'FCM', 'QUEUED', 0, 0, 0, 0)";
    assert!(!opcodes(&conn, insert).contains(&"OpenEphemeral".to_string()));
}

/// Migration 10 on a database with rows: every constraint refuses what it refused before and
/// accepts what it accepted, the rows are intact, and a second open changes nothing.
#[tokio::test]
async fn migration_10_keeps_rows_and_refuses_what_the_in_lists_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m10.db");
    let (store, inst) = store_with_installation(&path).await;
    drop(store);

    // Back to version 9, as a database written by an earlier build: the old constraint texts
    // and no record of migration 10.
    {
        let raw = rusqlite::Connection::open(&path).unwrap();
        insert_delivery(&raw, "d1", "QUEUED", "APNS").unwrap();
        let old: Vec<(String, String)> = [
            ("installations", include_str!("../migrations/0001_initial.sql")),
            ("deliveries", include_str!("../migrations/0002_push.sql")),
        ]
        .iter()
        .map(|(table, file)| {
            let start = file.find(&format!("CREATE TABLE {table} (")).unwrap();
            let end = start + file[start..].find(") STRICT").unwrap() + ") STRICT".len();
            (table.to_string(), file[start..end].to_string())
        })
        .collect();
        let cookie: i64 = raw.query_row("PRAGMA schema_version", [], |r| r.get(0)).unwrap();
        raw.execute_batch("BEGIN; PRAGMA writable_schema = ON").unwrap();
        for (table, sql) in &old {
            let n = raw
                .execute(
                    "UPDATE sqlite_schema SET sql = ?2 WHERE type = 'table' AND name = ?1",
                    [table, sql],
                )
                .unwrap();
            assert_eq!(n, 1);
        }
        raw.execute_batch(&format!(
            "PRAGMA schema_version = {}; PRAGMA writable_schema = OFF; \
             DELETE FROM schema_migrations WHERE version = 10; COMMIT",
            cookie + 1
        ))
        .unwrap();
        assert!(opcodes(&raw, "UPDATE deliveries SET status = 'ACCEPTED'").contains(&"OpenEphemeral".to_string()));
    }

    let store = SqliteStore::open(&path).await.unwrap();
    let mut r = store.begin_read().await.unwrap();
    assert_eq!(r.installation(&inst.push_reg_id).await.unwrap(), Some(inst.clone()));
    drop(r);
    drop(store);
    drop(SqliteStore::open(&path).await.unwrap());

    let raw = rusqlite::Connection::open(&path).unwrap();
    let integrity: String = raw.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(integrity, "ok");
    let applied: i64 = raw
        .query_row("SELECT count(*) FROM schema_migrations WHERE version = 10", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(applied, 1);
    // What each constraint accepts and refuses.
    let check_failed = |result: rusqlite::Result<usize>| match result {
        Err(e) => e.to_string().contains("CHECK constraint failed"),
        Ok(_) => false,
    };
    for (status, ok) in [
        ("ACCEPTED", true),
        ("FAILED", true),
        ("accepted", false),
        ("DONE", false),
    ] {
        let result = raw.execute("UPDATE deliveries SET status = ?1 WHERE delivery_id = 'd1'", [status]);
        assert_eq!(!check_failed(result), ok, "status {status}");
    }
    for (provider, ok) in [
        ("FCM", true),
        ("HMS", true),
        ("APNS", true),
        ("apns", false),
        ("", false),
    ] {
        let result = raw.execute(
            "UPDATE deliveries SET provider = ?1 WHERE delivery_id = 'd1'",
            [provider],
        );
        assert_eq!(!check_failed(result), ok, "provider {provider}");
    }
    assert!(check_failed(insert_delivery(&raw, "d2", "SENT", "FCM")));
    assert!(check_failed(insert_delivery(&raw, "d3", "QUEUED", "WNS")));
    let inst_update = |column: &str, value: Option<&str>| {
        raw.execute(
            &format!("UPDATE installations SET {column} = ?1 WHERE push_reg_id = ?2"),
            rusqlite::params![value, inst.push_reg_id],
        )
    };
    for reason in ["TAKEN_OVER", "UNREGISTERED", "DEVICE"] {
        inst_update("token_cleared_reason", Some(reason)).unwrap();
    }
    inst_update("token_cleared_reason", None).unwrap();
    assert!(check_failed(inst_update("token_cleared_reason", Some("EXPIRED"))));
    // The type and the provider are checked together as well (installations_provider_check):
    // both must be refused on their own constraint for a value outside the list.
    raw.execute(
        "UPDATE installations SET push_service_type = NULL, provider = NULL WHERE push_reg_id = ?1",
        [&inst.push_reg_id],
    )
    .unwrap();
    assert!(check_failed(inst_update("push_service_type", Some("WNS"))));
    assert!(check_failed(raw.execute(
        "UPDATE installations SET push_service_type = 'GCM', provider = 'GCM' WHERE push_reg_id = ?1",
        [&inst.push_reg_id],
    )));
    raw.execute(
        "UPDATE installations SET push_service_type = 'GCM', provider = 'FCM' WHERE push_reg_id = ?1",
        [&inst.push_reg_id],
    )
    .unwrap();
}

/// A migration 10 that does not find the constraints it rewrites fails and changes nothing.
#[tokio::test]
async fn migration_10_refuses_a_schema_changed_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m10x.db");
    drop(SqliteStore::open(&path).await.unwrap());
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute("DELETE FROM schema_migrations WHERE version = 10", [])
        .unwrap();
    let before: String = raw
        .query_row("SELECT sql FROM sqlite_schema WHERE name = 'deliveries'", [], |r| {
            r.get(0)
        })
        .unwrap();
    match SqliteStore::open(&path).await {
        Err(StoreError::Other(message)) => assert!(message.contains("migration 10"), "{message}"),
        other => panic!("expected migration 10 to fail, got {:?}", other.map(|_| ())),
    }
    let after: String = raw
        .query_row("SELECT sql FROM sqlite_schema WHERE name = 'deliveries'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(before, after);
    let applied: i64 = raw
        .query_row("SELECT count(*) FROM schema_migrations WHERE version = 10", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(applied, 0);
}

// --- WAL checkpoints ------------------------------------------------------------------------------

/// A store's writes are checkpointed by its checkpoint thread (checkpoint.rs), and the log
/// starts again: the writer's commits do not carry the whole copying.
#[tokio::test]
async fn a_stores_log_is_checkpointed_by_its_thread() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("c.db")).await.unwrap();
    let (acc, _app) = seeded(&store).await;
    let mut n = 0;
    while store.checkpoint_stats().await.restarts == 0 {
        assert!(
            n < 2_000,
            "no checkpoint cycle after {n} transactions: {:?}",
            store.checkpoint_stats().await
        );
        let mut tx = store.begin().await.unwrap();
        for _ in 0..20 {
            let mut p = person(acc.id);
            p.tags = (0..8).map(|k| format!("tag-{n}-{k}")).collect();
            tx.insert_person(&p).await.unwrap();
        }
        tx.commit().await.unwrap();
        n += 1;
    }
    let stats = store.checkpoint_stats().await;
    assert!(stats.passes >= 1, "{stats:?}");
}
