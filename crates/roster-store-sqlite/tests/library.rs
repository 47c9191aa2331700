//! SQLite's process-wide settings, in a test binary of their own: here the store is the first
//! to use SQLite, as in the server, so its settings must hold (in a binary whose tests open
//! plain connections first, they could not).

use roster_store::Store;
use roster_store_sqlite::SqliteStore;
use roster_store_tests::fixtures::{installation, person, seeded};

/// The store turns SQLite's memory statistics off before SQLite starts: its allocations then
/// take no process-wide mutex, and the counters stay at zero however much it allocates.
#[tokio::test]
async fn sqlite_keeps_no_memory_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("lib.db")).await.unwrap();
    let (acc, app) = seeded(&store).await;
    let mut tx = store.begin().await.unwrap();
    for n in 0..200 {
        let p = person(acc.id);
        tx.insert_person(&p).await.unwrap();
        tx.insert_installation(&installation(&app, p.id, n)).await.unwrap();
    }
    tx.commit().await.unwrap();
    // With the statistics on, the high-water mark of SQLite's allocations is above zero.
    let (mut current, mut highwater) = (0, 0);
    // SAFETY: plain reads of SQLite's status counters into two locals.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_status64(
            rusqlite::ffi::SQLITE_STATUS_MEMORY_USED,
            &mut current,
            &mut highwater,
            0,
        )
    };
    assert_eq!(rc, rusqlite::ffi::SQLITE_OK);
    assert_eq!(highwater, 0, "SQLite counted its memory: the statistics are on");
}
