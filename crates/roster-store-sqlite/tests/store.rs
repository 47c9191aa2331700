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

#[tokio::test]
async fn a_corrupt_row_is_an_error_not_a_default() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let (acc, app) = seeded(&store).await;
    let p = person(acc.id);
    let inst = installation(&app, p.id, 1);
    let mut tx = store.begin().await.unwrap();
    tx.insert_person(&p).await.unwrap();
    tx.insert_installation(&inst).await.unwrap();
    tx.commit().await.unwrap();

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
