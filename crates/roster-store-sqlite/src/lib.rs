//! Roster's embedded storage backend: one SQLite file in WAL mode, one writer connection, a
//! small pool of read-only connections (design.md "Storage").
//!
//! Concurrency comes from SQLite itself: a read-write transaction is `BEGIN IMMEDIATE` on the one
//! writer connection, so it holds the database's write lock from its first statement and never
//! fails half-way on a lock upgrade; another process writing the same file (`roster app create`
//! while the server runs) waits up to `busy_timeout` and then gets `StoreError::Unavailable`.
//! Every uniqueness rule is a constraint in `migrations/`, mapped to a typed
//! `StoreError::Conflict` by `error.rs`.
//!
//! Segment previews of read transactions are answered by an in-memory audience index, kept
//! exact by change capture on the writer connection (memindex.rs); [`SqliteOptions`] turns it
//! off.

#![warn(missing_docs)]

mod admin;
mod audience;
mod checkpoint;
mod checks;
mod error;
mod group;
mod memindex;
mod people;
mod portal;
mod push;
mod retention;
mod rows;
mod sends;
mod sql;
mod tx;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use roster_store::{AudienceIndexStatus, Store, StoreError, StoreResult, Tx};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};

use crate::error::{join_err, map_err};
use crate::group::Writer;
use crate::memindex::IndexState;
use crate::tx::{Handle, SqliteTx};

#[doc(hidden)]
pub use checkpoint::CheckpointStats;
pub use push::{DELIVERY_COUNTS, INSTALLATIONS_BY_IDS};
pub use retention::PURGE_STATEMENTS;

/// The schema migrations, in order: `(version, SQL)`. Applied at open; a landed file is never
/// edited, a change is a new file with the next version.
pub const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/0001_initial.sql")),
    (2, include_str!("../migrations/0002_push.sql")),
    (3, include_str!("../migrations/0003_audience.sql")),
    (4, include_str!("../migrations/0004_push_erase.sql")),
    (5, include_str!("../migrations/0005_retention.sql")),
    (6, include_str!("../migrations/0006_portal.sql")),
    (7, include_str!("../migrations/0007_installation_indexes.sql")),
    (8, include_str!("../migrations/0008_delivery_report_indexes.sql")),
    (9, include_str!("../migrations/0009_value_indexes.sql")),
    (10, include_str!("../migrations/0010_check_comparisons.sql")),
];

/// How many read-only connections `begin_read` can use at once.
const READERS: usize = 4;

/// How long a connection waits for a lock held by another connection or process before the
/// operation fails with `StoreError::Unavailable`.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);

/// Bytes of the database file each connection reads through a memory map (`PRAGMA mmap_size`).
const MMAP_SIZE: i64 = 1 << 30;

/// The writer's page cache, in KiB as `PRAGMA cache_size` takes it (negative: a size, not pages).
///
/// 8 MiB, not more: SQLite scans the whole page cache at the end of a transaction in which a
/// B-tree page split renumbered pages (it renumbers through the lock-byte page, which leaves the
/// cache's highest key far past the end of the file), and random keys split pages in nearly
/// every write batch. With 64 MiB that scan was 8% of the server's CPU in a fan-out, inside the
/// commit that holds the writer (docs/decisions.md, "SQLite writer cache: 8 MiB").
const WRITER_CACHE_KIB: i64 = -8192;

/// Prepared statements kept per connection: more than the store has distinct statements.
const STATEMENT_CACHE: usize = 128;

/// How [`SqliteStore::open_with`] opens a store.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Keep the in-memory audience index (memindex.rs) that answers segment previews: built in
    /// the background at open, then kept up to date by the writer. On by default; a short-lived
    /// process (a command that imports, exports or creates an application) turns it off so it
    /// does not read every person for nothing.
    pub audience_index: bool,
}

impl Default for SqliteOptions {
    fn default() -> SqliteOptions {
        SqliteOptions { audience_index: true }
    }
}

/// What the in-memory audience index did since the store was opened (tests).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AudienceIndexStats {
    /// Previews answered by the index.
    pub answered: u64,
    /// Previews that fell back to SQL while it was ready (a field it does not hold).
    pub fallbacks: u64,
    /// Builds completed: the one at open, and one per rebuild after another process wrote.
    pub builds: u64,
    /// Persons it holds.
    pub persons: usize,
}

/// The SQLite store, shared by the whole process as `Arc<dyn Store>`.
pub struct SqliteStore {
    path: PathBuf,
    /// The only connection that writes: SQLite allows one writer at a time anyway, and a mutex
    /// queues writers in the process instead of letting them spin on `SQLITE_BUSY`. Write
    /// transactions share commits (group.rs).
    writer: Arc<Mutex<Writer>>,
    /// The writer's use, read for `/metrics` without queueing for the writer.
    writer_counters: Arc<group::WriterCounters>,
    readers: Arc<ReaderPool>,
    /// The in-memory audience index, unless turned off.
    index: Option<Arc<IndexState>>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        if let Some(index) = &self.index {
            // A build still running has nobody to serve.
            index.close();
        }
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating it and its parent directories if needed) the database file at `path` and
    /// applies the pending migrations, with the default options (the in-memory audience index
    /// on).
    pub async fn open(path: &Path) -> StoreResult<SqliteStore> {
        SqliteStore::open_with(path, SqliteOptions::default()).await
    }

    /// [`SqliteStore::open`] with `options`.
    pub async fn open_with(path: &Path, options: SqliteOptions) -> StoreResult<SqliteStore> {
        let path = path.to_path_buf();
        let opened = path.clone();
        let writer = tokio::task::spawn_blocking(move || -> StoreResult<Connection> {
            if let Some(parent) = opened.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", parent.display())))?;
            }
            open_writer(&opened)
        })
        .await
        .map_err(join_err)??;
        let mut writer = Writer::new(writer);
        writer.start_checkpointer(&path);
        let mut store = SqliteStore {
            readers: Arc::new(ReaderPool::new(path.clone())),
            path,
            writer_counters: writer.counters(),
            writer: Arc::new(Mutex::new(writer)),
            index: None,
        };
        store.migrate().await?;
        // Open the readers now, after the schema exists, so that a file that cannot be read
        // fails at start-up rather than on the first request.
        let pool = store.readers.clone();
        tokio::task::spawn_blocking(move || pool.fill())
            .await
            .map_err(join_err)??;
        if options.audience_index {
            store.start_audience_index().await?;
        }
        Ok(store)
    }

    /// Turns on change capture on the writer, then builds the in-memory audience index in the
    /// background (capture first: whatever commits after the build's first read is pending).
    async fn start_audience_index(&mut self) -> StoreResult<()> {
        let index = Arc::new(IndexState::new(self.path.clone()));
        index.set_writer(&self.writer);
        let mut writer = self.writer.clone().lock_owned().await;
        let captured = index.clone();
        tokio::task::spawn_blocking(move || -> StoreResult<()> {
            memindex::install_capture(&writer.conn)?;
            writer.set_capture(captured);
            Ok(())
        })
        .await
        .map_err(join_err)??;
        index.start();
        self.index = Some(index);
        Ok(())
    }

    /// Whether the in-memory audience index is built and answers previews (tests).
    #[doc(hidden)]
    pub fn audience_index_ready(&self) -> bool {
        self.index.as_ref().is_some_and(|index| index.is_ready())
    }

    /// Waits up to `timeout` for the in-memory audience index to be built; whether it is
    /// (tests).
    #[doc(hidden)]
    pub async fn wait_for_audience_index(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.audience_index_ready() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// What the in-memory audience index did so far (tests; all zero when it is off).
    #[doc(hidden)]
    pub fn audience_index_stats(&self) -> AudienceIndexStats {
        self.index.as_ref().map(|index| index.stats()).unwrap_or_default()
    }

    /// Opens the store named by a database URL: `sqlite://<path>` or `sqlite:<path>`
    /// (`sqlite:///abs/path` is absolute, `sqlite://rel/path` relative to the working directory).
    pub async fn open_url(url: &str) -> StoreResult<SqliteStore> {
        let path = path_of_url(url)?;
        SqliteStore::open(Path::new(path)).await
    }

    /// Write batches committed since the store was opened: each is one `COMMIT` (one fsync)
    /// shared by the write transactions that joined it (group.rs). Write transactions divided
    /// by this are the group-commit factor.
    pub fn committed_batches(&self) -> u64 {
        self.writer_counters.stats().batches
    }

    /// What the WAL checkpoint thread and the writer did so far (checkpoint.rs; tests).
    #[doc(hidden)]
    pub async fn checkpoint_stats(&self) -> CheckpointStats {
        self.writer.lock().await.checkpoint_stats()
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Applies every migration of [`MIGRATIONS`] that the database has not recorded yet, each in
    /// its own transaction; safe to run again and from two processes at once.
    pub async fn migrate(&self) -> StoreResult<()> {
        let writer = self.writer.clone().lock_owned().await;
        tokio::task::spawn_blocking(move || apply_migrations(&writer.conn))
            .await
            .map_err(join_err)?
    }
}

/// The file path inside a `sqlite:` URL.
fn path_of_url(url: &str) -> StoreResult<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| StoreError::Other(format!("not a sqlite: URL: {url:?}")))?;
    if rest.is_empty() {
        return Err(StoreError::Other("the sqlite: URL names no file".into()));
    }
    // Every connection of the store must see the same database: a private in-memory one cannot.
    if rest == ":memory:" || rest.contains("mode=memory") {
        return Err(StoreError::Other(
            "in-memory SQLite is not supported: name a file".into(),
        ));
    }
    // Options after `?` (sqlx's `?mode=rwc`, ...) would be silently ignored: refuse them.
    if rest.contains('?') {
        return Err(StoreError::Other(format!(
            "sqlite: URL options are not supported: {url:?}"
        )));
    }
    Ok(rest)
}

/// Settings every connection gets.
fn configure(conn: &Connection) -> StoreResult<()> {
    // A second process (`roster app create`, `roster backup`) may write while the server runs:
    // wait for its lock instead of failing at once; past the timeout the caller gets
    // `StoreError::Unavailable`.
    conn.busy_timeout(BUSY_TIMEOUT).map_err(map_err)?;
    // An acknowledged write must survive a power cut: the API answers 2xx only after the commit
    // is fsynced. With WAL, FULL costs one fsync of the log per commit; NORMAL could lose the
    // last commits on power loss.
    conn.pragma_update(None, "synchronous", "FULL").map_err(map_err)?;
    // The schema's references (installation -> person and application, keys -> person, ...)
    // are part of the invariants; SQLite ignores them unless this is on, per connection.
    conn.pragma_update(None, "foreign_keys", "ON").map_err(map_err)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // One plan per statement text, whatever its parameters (the query planner stability
    // guarantee). Without it SQLite plans some statements for the values bound at the time and
    // marks them to be planned again whenever those parameters are bound anew: a `LIMIT ?`, or
    // `field = ?` where a partial index says `field = ''`. A cached statement then costs a
    // full prepare on every run; under `mobile-mix` the value-row updates did that on the
    // writer's serial path (5.6% of the server's samples), and every fan-out claim did too.
    // No statement of this store depends on a bound value for its plan (docs/decisions.md,
    // "SQLite: one plan per statement"; `cached_statements_are_not_prepared_again`).
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(map_err)?;
    // SQLite's default page cache is 2 MB per connection; beyond it every page is read again
    // with pread (13-20% of the server's time in `register` and `fanout` was the kernel copying
    // pages back in). Reading the file through a memory map serves those pages from the OS page
    // cache without a system call and without a second copy per connection. The map is address
    // space, not memory: pages count in RSS only while the OS keeps them, shared by every
    // connection.
    conn.pragma_update(None, "mmap_size", MMAP_SIZE).map_err(map_err)?;
    Ok(())
}

/// Turns off SQLite's memory statistics for the process (`SQLITE_CONFIG_MEMSTATUS`), once,
/// before the first connection of a store opens.
///
/// With them on (SQLite's default) every `sqlite3_malloc` and `sqlite3_free`, and every page
/// the page cache allocates, takes and releases a process-wide mutex to keep the counters
/// (SQLite's own list of recommended options turns them off for that reason). Under
/// `mobile-mix` and `fanout` those lock and unlock calls were 3–5% of the server's samples,
/// most of them on the writer's serial path (the statement journal's and the page cache's
/// allocations). Nothing here reads the statistics (`sqlite3_memory_used`, `sqlite3_status`)
/// nor sets a heap limit, which needs them.
///
/// `sqlite3_config` works only before SQLite initializes: in a process that opened a
/// connection first (a test with a connection of its own), the call fails and changes nothing,
/// which is only slower (test `sqlite_keeps_no_memory_statistics`, tests/library.rs).
fn configure_library() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: `sqlite3_config` with `SQLITE_CONFIG_MEMSTATUS` takes one `int`; called before
        // any other SQLite call of this crate, and SQLite refuses it (SQLITE_MISUSE) once
        // initialized instead of changing a running library.
        let rc = unsafe { rusqlite::ffi::sqlite3_config(rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS, 0 as std::ffi::c_int) };
        if rc != rusqlite::ffi::SQLITE_OK {
            tracing::debug!(
                rc,
                "SQLite was initialized before the store: its memory statistics stay on"
            );
        }
    });
}

/// Opens the writer connection and puts the database in WAL mode.
fn open_writer(path: &Path) -> StoreResult<Connection> {
    configure_library();
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(map_err)?;
    configure(&conn)?;
    // The writer's page cache holds the pages a batch dirties (group.rs) until its commit: with
    // SQLite's default 2 MB, a large batch or bulk load spills dirty pages into the log before
    // the commit and writes them again at it (measured: 4x the bytes written per person seeded
    // with random ids). Heap, filled only as pages are used.
    conn.pragma_update(None, "cache_size", WRITER_CACHE_KIB)
        .map_err(map_err)?;
    // Each store transaction that joins a batch is a savepoint (group.rs), and SQLite keeps the
    // original of every page a savepoint changes in a statement journal, spilled to a
    // temporary file past 64 KiB: under `mobile-mix` those writes were 11% of the server's
    // samples, all on the writer's serial path. In memory they are a copy. (Set before the
    // capture's TEMP objects exist: changing it drops them.) The transaction that opens a
    // batch, such as every transaction of a bulk load, has no savepoint, which keeps SQLite's
    // in-memory journal linear for large transactions (docs/decisions.md, "SQLite writer: the
    // statement journal in memory").
    conn.pragma_update(None, "temp_store", "MEMORY").map_err(map_err)?;
    // WAL: readers never block the writer nor the writer the readers, and a commit is one
    // sequential append (plus fsync) instead of a rollback journal round trip. The mode is
    // stored in the file, so the readers and other processes get it too.
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(map_err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Other(format!(
            "{} cannot use WAL mode (got {mode:?}); is it on a network file system?",
            path.display()
        )));
    }
    Ok(conn)
}

/// Opens a read-only connection of the pool.
fn open_reader(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(map_err)?;
    configure(&conn)?;
    // `begin_read` promises that writes fail: make SQLite refuse them on this connection.
    conn.pragma_update(None, "query_only", 1).map_err(map_err)?;
    Ok(conn)
}

/// Applies the pending migrations on the writer connection (blocking).
fn apply_migrations(conn: &Connection) -> StoreResult<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER NOT NULL PRIMARY KEY,
             applied_at INTEGER NOT NULL
         ) STRICT",
    )
    .map_err(map_err)?;
    let newest_known = MIGRATIONS.iter().map(|(v, _)| *v).max().unwrap_or(0);
    let newest_applied: Option<i64> = conn
        .prepare_cached("SELECT max(version) FROM schema_migrations")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(map_err)?;
    if let Some(applied) = newest_applied.filter(|v| *v > newest_known) {
        return Err(StoreError::Other(format!(
            "the database has schema version {applied}, newer than this build knows \
             ({newest_known}): upgrade roster"
        )));
    }
    for (version, script) in MIGRATIONS {
        // IMMEDIATE: two processes starting together serialise here, and the second one sees
        // the version recorded by the first.
        conn.execute_batch("BEGIN IMMEDIATE").map_err(map_err)?;
        let applied = (|| -> StoreResult<()> {
            let done: Option<i64> = conn
                .prepare_cached("SELECT version FROM schema_migrations WHERE version = ?1")
                .and_then(|mut s| s.query_row([version], |r| r.get(0)).optional())
                .map_err(map_err)?;
            if done.is_none() {
                conn.execute_batch(script).map_err(map_err)?;
                if *version == audience::INDEX_MIGRATION {
                    audience::backfill(conn)?;
                }
                if *version == checks::CHECKS_MIGRATION {
                    checks::rewrite(conn)?;
                }
                conn.prepare_cached("INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)")
                    .and_then(|mut s| s.execute((version, roster_model::now_millis())))
                    .map_err(map_err)?;
                tracing::info!(version, "applied SQLite migration");
            }
            Ok(())
        })();
        match applied {
            Ok(()) => conn.execute_batch("COMMIT").map_err(map_err)?,
            Err(e) => {
                tx::rollback_quietly(conn);
                return Err(e);
            }
        }
    }
    Ok(())
}

/// The read-only connections. A semaphore bounds how many are in use; the idle ones wait in a
/// list.
struct ReaderPool {
    path: PathBuf,
    idle: std::sync::Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl ReaderPool {
    fn new(path: PathBuf) -> ReaderPool {
        ReaderPool {
            path,
            idle: std::sync::Mutex::new(Vec::with_capacity(READERS)),
            permits: Arc::new(Semaphore::new(READERS)),
        }
    }

    /// Opens every connection of the pool (blocking).
    fn fill(&self) -> StoreResult<()> {
        let mut opened = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            opened.push(open_reader(&self.path)?);
        }
        self.lock_idle().extend(opened);
        Ok(())
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // A panic while holding this lock cannot leave the list inconsistent (push/pop only).
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a free connection.
    async fn acquire(self: &Arc<Self>) -> StoreResult<PooledReader> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unavailable("reader pool closed".into()))?;
        let idle = self.lock_idle().pop();
        let conn = match idle {
            Some(conn) => conn,
            // One was discarded after a failure: replace it.
            None => open_reader(&self.path)?,
        };
        Ok(PooledReader {
            conn: Some(conn),
            pool: self.clone(),
            _permit: permit,
        })
    }
}

/// A reader connection on loan; it goes back to the pool when dropped (before the permit is
/// released), unless it was left inside a transaction.
pub(crate) struct PooledReader {
    conn: Option<Connection>,
    pool: Arc<ReaderPool>,
    _permit: OwnedSemaphorePermit,
}

impl std::ops::Deref for PooledReader {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        // Only `Drop` takes the connection out.
        self.conn
            .as_ref()
            .expect("a pooled reader holds its connection until dropped")
    }
}

impl Drop for PooledReader {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if conn.is_autocommit() {
                self.pool.lock_idle().push(conn);
            } else {
                tracing::warn!("discarding a reader connection left inside a transaction");
            }
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn audience_index(&self) -> Option<AudienceIndexStatus> {
        let index = self.index.as_ref()?;
        // Two reads, not one snapshot: a scrape may see a build that completed between them.
        let ready = index.is_ready();
        let stats = index.stats();
        Some(AudienceIndexStatus {
            ready,
            persons: u64::try_from(stats.persons).unwrap_or(u64::MAX),
            builds: stats.builds,
            answered: stats.answered,
            fallbacks: stats.fallbacks,
        })
    }

    async fn begin(&self) -> StoreResult<Box<dyn Tx>> {
        let mut writer = self.writer.clone().lock_owned().await;
        writer.hold(true);
        // A savepoint in the open batch, or a new batch when the database file's write lock is
        // free: no lock to wait for, no I/O.
        if group::begin_now(&mut writer)? {
            return Ok(Box::new(
                SqliteTx::new(Handle::Writer(writer)).with_index(self.index.clone()),
            ));
        }
        // Another process holds the write lock: BEGIN IMMEDIATE waits for it up to
        // busy_timeout, not on a runtime thread.
        let writer = tokio::task::spawn_blocking(move || group::begin(&mut writer).map(|()| writer))
            .await
            .map_err(join_err)??;
        Ok(Box::new(
            SqliteTx::new(Handle::Writer(writer)).with_index(self.index.clone()),
        ))
    }

    fn writer_stats(&self) -> Option<roster_store::WriterStats> {
        Some(self.writer_counters.stats())
    }

    async fn begin_read(&self) -> StoreResult<Box<dyn Tx>> {
        let reader = self.readers.acquire().await?;
        tx::run(&reader, "BEGIN")?;
        // A deferred transaction takes its snapshot at its first read: read now, so the snapshot
        // is the database as of `begin_read`.
        let started = reader
            .prepare_cached("SELECT count(*) FROM schema_migrations")
            .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
            .map_err(map_err);
        if let Err(e) = started {
            tx::rollback_quietly(&reader);
            return Err(e);
        }
        Ok(Box::new(
            SqliteTx::new(Handle::Reader(reader)).with_index(self.index.clone()),
        ))
    }

    async fn ping(&self) -> StoreResult<()> {
        let reader = self.readers.acquire().await?;
        reader
            .prepare_cached("SELECT 1")
            .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
            .map_err(map_err)
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_forms() {
        assert_eq!(path_of_url("sqlite:///var/lib/r.db").unwrap(), "/var/lib/r.db");
        assert_eq!(path_of_url("sqlite://data/r.db").unwrap(), "data/r.db");
        assert_eq!(path_of_url("sqlite:r.db").unwrap(), "r.db");
        assert!(path_of_url("sqlite::memory:").is_err());
        assert!(path_of_url("sqlite://r.db?mode=rwc").is_err());
        assert!(path_of_url("postgres://x").is_err());
        assert!(path_of_url("sqlite://").is_err());
    }

    /// Every unique index of the migrated schema is in `UNIQUE_CONSTRAINTS` (so its violation
    /// maps to the right `Constraint`), and every entry there exists in the schema.
    #[test]
    fn constraint_table_matches_the_schema() {
        let conn = Connection::open_in_memory().unwrap();
        apply_migrations(&conn).unwrap();
        let tables: Vec<String> = conn
            .prepare(
                "SELECT name FROM sqlite_schema WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite_%' AND name <> 'schema_migrations' ORDER BY name",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut in_schema = Vec::new();
        for table in &tables {
            let unique_indexes: Vec<String> = conn
                .prepare(&format!("PRAGMA index_list({table})"))
                .unwrap()
                .query_map([], |r| Ok((r.get::<_, String>("name")?, r.get::<_, bool>("unique")?)))
                .unwrap()
                .filter(|row| !matches!(row, Ok((_, false))))
                .map(|row| row.map(|(name, _)| name))
                .collect::<Result<_, _>>()
                .unwrap();
            for index in unique_indexes {
                let columns: Vec<String> = conn
                    .prepare(&format!("PRAGMA index_info({index})"))
                    .unwrap()
                    .query_map([], |r| r.get::<_, String>("name"))
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap();
                let listed: Vec<String> = columns.iter().map(|c| format!("{table}.{c}")).collect();
                in_schema.push(listed.join(", "));
            }
        }
        in_schema.sort();
        let mut in_table: Vec<String> = error::UNIQUE_CONSTRAINTS
            .iter()
            .map(|(_, columns, _)| (*columns).to_owned())
            .collect();
        in_table.sort();
        assert_eq!(in_schema, in_table);
    }

    /// The pragmas of design.md "Storage" are in force on every connection.
    #[tokio::test]
    async fn connections_have_their_pragmas() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("p.db")).await.unwrap();
        let pragma = |conn: &Connection, name: &str| -> i64 {
            conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0)).unwrap()
        };
        let guard = store.writer.lock().await;
        let writer = &guard.conn;
        let mode: String = writer.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(pragma(writer, "synchronous"), 2); // FULL
        assert_eq!(pragma(writer, "foreign_keys"), 1);
        assert_eq!(pragma(writer, "busy_timeout"), 5000);
        assert_eq!(pragma(writer, "query_only"), 0);
        assert_eq!(pragma(writer, "cache_size"), WRITER_CACHE_KIB);
        assert_eq!(pragma(writer, "temp_store"), 2); // MEMORY
        assert_eq!(pragma(writer, "mmap_size"), MMAP_SIZE);
        let qpsg = rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG;
        assert!(writer.db_config(qpsg).unwrap());
        drop(guard);
        let reader = store.readers.acquire().await.unwrap();
        assert_eq!(pragma(&reader, "synchronous"), 2);
        assert_eq!(pragma(&reader, "foreign_keys"), 1);
        assert_eq!(pragma(&reader, "busy_timeout"), 5000);
        assert_eq!(pragma(&reader, "query_only"), 1);
        assert_eq!(pragma(&reader, "mmap_size"), MMAP_SIZE);
        assert!(reader.db_config(qpsg).unwrap());
    }

    /// A write transaction holds the one writer until it ends, so it writes alone
    /// (`Tx::writes_alone`: the core skips the person lock and the second read): no other
    /// write transaction begins meanwhile. A read transaction does not write.
    #[tokio::test]
    async fn write_transactions_write_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(SqliteStore::open(&dir.path().join("w.db")).await.unwrap());
        let first = store.begin().await.unwrap();
        assert!(first.writes_alone());
        let second = tokio::spawn({
            let store = store.clone();
            async move { store.begin().await.unwrap().rollback().await.unwrap() }
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert!(
            !second.is_finished(),
            "a second write transaction began beside the first"
        );
        first.rollback().await.unwrap();
        second.await.unwrap();
        assert!(!store.begin_read().await.unwrap().writes_alone());
    }

    /// The statements of `conn` (every one still prepared: the statement cache keeps them)
    /// that SQLite prepared again since the last call, with their counts.
    fn prepared_again(conn: &Connection) -> Vec<(String, i32)> {
        use rusqlite::ffi;
        let mut found = Vec::new();
        // SAFETY: `conn` is borrowed for the whole walk, so its statements stay alive; the walk
        // only reads their text and a counter.
        unsafe {
            let db = conn.handle();
            let mut stmt = ffi::sqlite3_next_stmt(db, std::ptr::null_mut());
            while !stmt.is_null() {
                let count = ffi::sqlite3_stmt_status(stmt, ffi::SQLITE_STMTSTATUS_REPREPARE, 1);
                if count > 0 {
                    let sql = std::ffi::CStr::from_ptr(ffi::sqlite3_sql(stmt));
                    found.push((sql.to_string_lossy().into_owned(), count));
                }
                stmt = ffi::sqlite3_next_stmt(db, stmt);
            }
        }
        found
    }

    /// A cached statement is planned once (the query planner stability guarantee, `configure`):
    /// run again with other parameters, it is not prepared again. Before it, the value-row
    /// `UPDATE`/`DELETE` (`field = ?` against the list-header index's `field = ''`) and every
    /// `LIMIT ?` (the queue claim, the retention sweeps, the pages) were prepared again on
    /// every run. Each statement here runs at least twice with different parameters.
    #[tokio::test]
    async fn cached_statements_are_not_prepared_again() {
        use roster_store::push::{AttemptResult, DeliveryStatus};
        use roster_store_tests::fixtures::{bulk_with_message, full_person, installation, queued};
        use serde_json::json;

        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("r.db")).await.unwrap();
        let (app, m) = bulk_with_message(&store).await;
        let person = full_person(app.account_id);
        let inst = installation(&app, person.id, 3_000);
        let mut tx = store.begin().await.unwrap();
        tx.insert_person(&person).await.unwrap();
        tx.insert_installation(&inst).await.unwrap();
        tx.commit().await.unwrap();
        queued(&store, &m, 6, 1_000).await;

        // Statements run before the migrations ended were prepared again for the new schema,
        // as they must be: count from here.
        prepared_again(&store.writer.lock().await.conn);
        prepared_again(&store.readers.acquire().await.unwrap());
        let (mut p, mut i) = (person.clone(), inst.clone());
        for round in 0..3_i64 {
            let mut tx = store.begin().await.unwrap();
            // Value rows changed in place, removed and added; an installation's too.
            let (before_p, before_i) = (p.clone(), i.clone());
            p.custom_attributes.insert("score".into(), json!(2.5 + round as f64));
            p.custom_attributes
                .insert("since".into(), json!(format!("2025-01-0{}", round + 1)));
            p.custom_attributes
                .insert("orders".into(), json!([{"sku": format!("s{round}"), "qty": round}]));
            if round == 1 {
                p.custom_attributes.remove("count");
            }
            p.version += 1;
            tx.update_person_from(&before_p, &p).await.unwrap();
            i.custom_attributes
                .insert("plan".into(), json!(format!("plan-{round}")));
            i.last_seen_at += 1;
            tx.update_installation_from(&before_i, &i).await.unwrap();
            // The queue: claims of different sizes, answers, a sweep.
            let claim = uuid::Uuid::new_v4();
            let claimed = tx
                .claim_deliveries(10_000, 70_000, claim, (round + 1) as u32)
                .await
                .unwrap();
            assert!(!claimed.is_empty());
            for d in &claimed {
                let done = AttemptResult {
                    account_id: d.account_id,
                    delivery_id: d.delivery_id,
                    claim_id: claim,
                    status: DeliveryStatus::Accepted,
                    provider: d.provider,
                    attempts: 1,
                    provider_http_status: Some(200),
                    provider_reason: None,
                    last_attempt_at: Some(10_000),
                    next_attempt_at: 10_000,
                    now: 10_000 + round,
                };
                assert!(tx.finish_attempt(&done).await.unwrap());
            }
            tx.purge_deliveries(1 + round, 10 + round as u32).await.unwrap();
            tx.commit().await.unwrap();
            // Pages read with other limits.
            let mut read = store.begin_read().await.unwrap();
            read.deliveries_page(app.account_id, None, 2 + round as u32)
                .await
                .unwrap();
            read.rollback().await.unwrap();
        }

        let guard = store.writer.lock().await;
        assert_eq!(prepared_again(&guard.conn), Vec::new(), "on the writer");
        drop(guard);
        let reader = store.readers.acquire().await.unwrap();
        assert_eq!(prepared_again(&reader), Vec::new(), "on a reader");
    }

    #[test]
    fn migration_versions_increase() {
        let versions: Vec<i64> = MIGRATIONS.iter().map(|(v, _)| *v).collect();
        let mut sorted = versions.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(versions, sorted);
        assert_eq!(versions.first(), Some(&1));
    }
}
