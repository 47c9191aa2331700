//! Group commit on the writer connection.
//!
//! With `synchronous=FULL` every `COMMIT` waits for an fsync of the log, and on this store's one
//! writer connection the fsync, not the statements, bounds how many write transactions a second
//! the process can acknowledge (design.md "Storage": one fsync'd commit per mobile write was
//! 45% of the server's time under `roster-bench register`). So write transactions share
//! commits:
//!
//! - The writer keeps one SQLite transaction open across several store transactions: a
//!   **batch**. `begin` opens it (`BEGIN IMMEDIATE`) if none is open, then runs the store
//!   transaction inside it as `SAVEPOINT tx`.
//! - A store transaction's `commit` merges its savepoint into the batch (`RELEASE tx`), lets go
//!   of the writer so that the next transaction can run, and waits until its batch is durable.
//!   It returns `Ok` only after the batch's `COMMIT` (and so its fsync) succeeded: no write is
//!   acknowledged before it is on disk.
//! - The first transaction of a batch to commit starts the batch's **leader**, a task that queues
//!   for the writer like any transaction (the lock is FIFO). Every transaction that was already
//!   waiting for the writer runs and joins the batch first; then the leader `COMMIT`s the batch
//!   and tells all of its transactions the outcome at once. Under load, a batch is everything
//!   that queued during the previous fsync; alone, a transaction costs what it did before (one
//!   `COMMIT`), plus a task hop.
//! - `rollback` (and dropping a transaction) undoes only its savepoint (`ROLLBACK TO tx`); the
//!   batch goes on. If nothing of the batch is waiting to commit, the batch is rolled back too,
//!   which releases the file's write lock for other processes at once.
//! - The transaction that opens a batch runs **without a savepoint**: nothing else is in the
//!   batch while it runs (the others wait for the writer), so undoing it is rolling the batch
//!   back. A lone transaction, and so every transaction of a bulk load (the benchmark seeder,
//!   `roster import`), pays for no statement journal of its own; the statement journal is
//!   kept in memory (`temp_store`, lib.rs), where SQLite's cost of ending each statement
//!   inside a savepoint grows with the savepoint's journal (docs/decisions.md, "SQLite writer:
//!   the statement journal in memory").
//! - A batch whose `COMMIT` fails, or that SQLite rolled back by itself (some I/O and
//!   out-of-memory errors do), fails as a whole: every transaction in it gets the error, none of
//!   them was acknowledged, and none of their writes stays. A transaction of a batch only ever
//!   read what earlier batches committed or what its own batch wrote, so nothing acknowledged
//!   can depend on a failed batch.
//!
//! Readers (other connections) see a batch's writes when its `COMMIT` is done, that is when the
//! writers are told: a client never reads its own write "not yet there" after an answer.
//! Another process writing the same file waits for the write lock at most one batch (its
//! statements and one fsync), as it waited for one transaction before.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use roster_store::{StoreError, StoreResult};
use rusqlite::Connection;
use tokio::sync::{Mutex, OwnedMutexGuard, watch};

use crate::checkpoint::{CheckpointStats, Checkpointer};
use crate::error::{join_err, map_err};
use crate::memindex::IndexState;
use crate::tx::{rollback_quietly, run};

/// How the writer was used since the store was opened (`Store::writer_stats`), readable
/// without waiting for the writer.
#[derive(Default)]
pub(crate) struct WriterCounters {
    held_nanos: AtomicU64,
    transactions: AtomicU64,
    batches: AtomicU64,
}

impl WriterCounters {
    pub(crate) fn stats(&self) -> roster_store::WriterStats {
        roster_store::WriterStats {
            held_seconds: self.held_nanos.load(Ordering::Relaxed) as f64 / 1e9,
            transactions: self.transactions.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
        }
    }
}

/// The writer connection and the batch open on it.
pub(crate) struct Writer {
    pub(crate) conn: Connection,
    /// Since when the current holder has held the writer (set by [`Writer::hold`], counted by
    /// [`Writer::let_go`]). A holder that drops the writer on an error path without
    /// `let_go` leaves its time uncounted: the next `hold` starts afresh.
    held_since: Option<Instant>,
    counters: Arc<WriterCounters>,
    /// Checkpoints the log off the writer's path (checkpoint.rs). Declared after `conn`: fields
    /// drop in order, and the connection's WAL hook points into it.
    checkpointer: Option<Checkpointer>,
    /// The batch whose SQLite transaction is open on `conn`.
    batch: Option<Arc<Batch>>,
    /// Transactions of `batch` that committed into it and wait for its `COMMIT`.
    waiting: usize,
    /// The in-memory audience index fed by this connection's change capture (memindex.rs).
    capture: Option<Arc<IndexState>>,
    /// `PRAGMA data_version` when last looked at: on this connection it changes only when
    /// another connection, that is another process, commits to the file.
    data_version: Option<i64>,
}

impl Writer {
    /// The writer's counters, shared.
    pub(crate) fn counters(&self) -> Arc<WriterCounters> {
        self.counters.clone()
    }

    /// Marks the writer held from now on, by a write transaction (`transaction`) or a batch
    /// commit.
    pub(crate) fn hold(&mut self, transaction: bool) {
        self.held_since = Some(Instant::now());
        if transaction {
            self.counters.transactions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts the time since [`Writer::hold`]: the holder is about to let go of the writer.
    pub(crate) fn let_go(&mut self) {
        if let Some(since) = self.held_since.take() {
            let nanos = u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.counters.held_nanos.fetch_add(nanos, Ordering::Relaxed);
        }
    }

    pub(crate) fn new(conn: Connection) -> Writer {
        Writer {
            conn,
            held_since: None,
            counters: Arc::default(),
            checkpointer: None,
            batch: None,
            waiting: 0,
            capture: None,
            data_version: None,
        }
    }

    /// Moves the log's checkpoints to a thread of their own (checkpoint.rs); `path` is the
    /// connection's database file.
    pub(crate) fn start_checkpointer(&mut self, path: &std::path::Path) {
        self.checkpointer = Some(Checkpointer::start(&self.conn, path));
    }

    /// What the checkpointer did so far (all zero without one).
    pub(crate) fn checkpoint_stats(&self) -> CheckpointStats {
        self.checkpointer.as_ref().map(Checkpointer::stats).unwrap_or_default()
    }

    /// Hands the changes recorded by the connection's capture triggers to `index` after each
    /// committed batch.
    pub(crate) fn set_capture(&mut self, index: Arc<IndexState>) {
        self.capture = Some(index);
        look_for_foreign_commits(self);
    }

    /// Whether the transaction running on `conn` joined a batch other transactions wait in, and
    /// so runs in `SAVEPOINT tx`. The transaction that opens a batch has no savepoint, and it
    /// either commits (then `waiting` is at least 1 for every transaction after it) or is
    /// undone with the batch: so this is exactly `waiting > 0`.
    fn joined(&self) -> bool {
        self.waiting > 0
    }

    /// Ends a batch that SQLite rolled back by itself (the connection is back in autocommit
    /// mode while a batch is open): its waiting transactions get an error. Also drops a batch
    /// whose outcome was already told but which is still recorded as open (its leader's
    /// blocking task panicked before clearing it).
    fn fail_lost_batch(&mut self) {
        let Some(batch) = &self.batch else {
            return;
        };
        if batch.outcome.borrow().is_some() {
            rollback_quietly(&self.conn);
            self.batch = None;
            self.waiting = 0;
        } else if self.conn.is_autocommit() {
            self.end_batch(Err(StoreError::Other(
                "the write batch was rolled back by SQLite before its commit".into(),
            )));
        }
    }

    /// Forgets the open batch and tells its transactions `outcome`.
    fn end_batch(&mut self, outcome: StoreResult<()>) {
        if let Some(batch) = self.batch.take() {
            batch.outcome.send_replace(Some(outcome.map_err(|e| e.to_string())));
        }
        self.waiting = 0;
    }
}

/// With change capture on: whether another process committed to the file since the last look
/// (its writes were not captured), in which case the audience index is built again. Cheap (the
/// pragma reads the log's shared header). Looked at when a batch begins (from then on the batch
/// holds the file's write lock: nobody else commits until its end), and by previews when the
/// writer is idle.
pub(crate) fn look_for_foreign_commits(writer: &mut Writer) {
    let Some(index) = writer.capture.clone() else {
        return;
    };
    if writer.batch.is_some() {
        // Looked at when it began; nobody else has committed since.
        return;
    }
    let version = writer.conn.query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0));
    match version {
        Ok(version) => {
            if writer.data_version.replace(version).is_some_and(|seen| seen != version) {
                index.rebuild("another process wrote to the database file");
            }
        }
        Err(e) => {
            writer.data_version = None;
            tracing::warn!(error = %e, "reading PRAGMA data_version failed");
            index.rebuild("cannot tell whether another process wrote to the database file");
        }
    }
}

/// One shared SQLite transaction.
pub(crate) struct Batch {
    /// `None` while open; then whether its `COMMIT` succeeded (the error's text if not:
    /// `StoreError` is not `Clone`).
    outcome: watch::Sender<Option<Result<(), String>>>,
    /// Whether a leader task was started for this batch.
    leader_started: AtomicBool,
}

/// Opens a store transaction on the writer (blocking: `BEGIN IMMEDIATE` may wait for another
/// process's write lock up to the busy timeout).
pub(crate) fn begin(writer: &mut Writer) -> StoreResult<()> {
    begin_waiting(writer, LockWait::BusyTimeout).map(drop)
}

/// Opens a store transaction on the writer if that needs no wait for the file's write lock
/// (another process holds it): `Ok(false)` then, with nothing opened, and the caller runs
/// [`begin`] where blocking is fine.
///
/// Why: opening a batch on a blocking thread costs two thread hops, and the writer is held
/// across both (under `mobile-mix`, 4–6% of the time the writer was held was these hops,
/// docs/benchmarks.md). When this process is the file's only writer, which is the usual case,
/// `BEGIN IMMEDIATE` takes the lock at once and does no I/O, so it runs where it is called.
pub(crate) fn begin_now(writer: &mut Writer) -> StoreResult<bool> {
    begin_waiting(writer, LockWait::No)
}

/// Whether opening a batch may wait for another process's write lock.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LockWait {
    /// Up to the connection's busy timeout.
    BusyTimeout,
    /// Not at all.
    No,
}

/// `BEGIN IMMEDIATE` with a busy timeout of zero: `Ok(false)` if another connection holds the
/// write lock. The connection's busy timeout is back to `restore` when this returns.
fn begin_immediate_now(conn: &Connection, restore: std::time::Duration) -> StoreResult<bool> {
    conn.busy_timeout(std::time::Duration::ZERO).map_err(map_err)?;
    let began = conn.execute_batch("BEGIN IMMEDIATE");
    if let Err(e) = conn.busy_timeout(restore) {
        rollback_quietly(conn);
        return Err(map_err(e));
    }
    match began {
        Ok(()) => Ok(true),
        Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::DatabaseBusy => Ok(false),
        Err(e) => Err(map_err(e)),
    }
}

fn begin_waiting(writer: &mut Writer, wait: LockWait) -> StoreResult<bool> {
    writer.fail_lost_batch();
    if writer.batch.is_none() {
        // Nothing may be left open outside a batch; whatever is (a failure half-way) is dropped.
        rollback_quietly(&writer.conn);
        match wait {
            LockWait::BusyTimeout => run(&writer.conn, "BEGIN IMMEDIATE")?,
            LockWait::No => {
                if !begin_immediate_now(&writer.conn, crate::BUSY_TIMEOUT)? {
                    return Ok(false);
                }
            }
        }
        // Holding the file's write lock: whatever another process committed is before this.
        look_for_foreign_commits(writer);
        writer.batch = Some(Arc::new(Batch {
            outcome: watch::Sender::new(None),
            leader_started: AtomicBool::new(false),
        }));
        writer.waiting = 0;
        // Alone in its batch: undoing this transaction is rolling the batch back.
        return Ok(true);
    }
    debug_assert!(writer.joined(), "an open batch holds a committed transaction");
    if let Err(e) = run(&writer.conn, "SAVEPOINT tx") {
        end_if_unused(writer);
        return Err(e);
    }
    Ok(true)
}

/// Undoes the store transaction open on the writer (its savepoint), and the batch too if no
/// other transaction of it waits to commit. Never fsyncs, so it may run on any thread. The
/// caller lets go of the writer next.
pub(crate) fn rollback(writer: &mut Writer) -> StoreResult<()> {
    let undone = rollback_savepoint(writer);
    writer.let_go();
    undone
}

fn rollback_savepoint(writer: &mut Writer) -> StoreResult<()> {
    writer.fail_lost_batch();
    if writer.batch.is_none() {
        return Ok(());
    }
    if !writer.joined() {
        // The transaction that opened the batch, alone in it (no other transaction could run
        // before it let go of the writer): undoing it is undoing the batch.
        rollback_quietly(&writer.conn);
        writer.end_batch(Err(StoreError::Other("the write batch was abandoned".into())));
        return Ok(());
    }
    let undone = run(&writer.conn, "ROLLBACK TO tx").and_then(|()| run(&writer.conn, "RELEASE tx"));
    if undone.is_err() {
        // The savepoint cannot be undone on its own: the whole batch must go, and with it the
        // transactions waiting for it (they were not acknowledged).
        rollback_quietly(&writer.conn);
        writer.end_batch(Err(StoreError::Other(
            "the write batch was rolled back after a failed savepoint rollback".into(),
        )));
        return undone;
    }
    end_if_unused(writer);
    Ok(())
}

/// Rolls back a batch that holds no transaction waiting to commit: it holds no write worth
/// keeping, and releasing it frees the file's write lock for other processes.
fn end_if_unused(writer: &mut Writer) {
    if writer.batch.is_some() && writer.waiting == 0 {
        rollback_quietly(&writer.conn);
        writer.end_batch(Err(StoreError::Other("the write batch was abandoned".into())));
    }
}

/// Commits the store transaction open on `guard`: merges it into its batch, releases the writer
/// and returns once the batch is durable (or failed).
pub(crate) async fn commit(mut guard: OwnedMutexGuard<Writer>) -> StoreResult<()> {
    let writer = &mut *guard;
    writer.fail_lost_batch();
    let Some(batch) = writer.batch.clone() else {
        return Err(StoreError::Other(
            "the transaction was rolled back by SQLite before commit".into(),
        ));
    };
    if writer.joined()
        && let Err(e) = run(&writer.conn, "RELEASE tx")
    {
        // Nothing of this transaction may stay in the batch.
        rollback(writer)?;
        return Err(e);
    }
    writer.waiting += 1;
    writer.let_go();
    let mut outcome = batch.outcome.subscribe();
    let mutex = OwnedMutexGuard::mutex(&guard).clone();
    drop(guard);
    if !batch.leader_started.swap(true, Ordering::AcqRel) {
        // A task, not this future: the batch must be committed even if every caller waiting
        // for it goes away (it holds the file's write lock until then).
        tokio::spawn(lead(mutex, batch));
    }
    let finished = outcome
        .wait_for(Option::is_some)
        .await
        .map_err(|_| StoreError::Other("the write batch ended without an outcome".into()))?;
    match finished.as_ref() {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => Err(StoreError::Unavailable(format!("the commit failed: {e}"))),
        None => unreachable!("wait_for returned a value matching the predicate"),
    }
}

/// The batch's leader: waits its turn for the writer (behind every transaction already
/// queued, which join the batch), then commits the batch if it is still open.
async fn lead(mutex: Arc<Mutex<Writer>>, batch: Arc<Batch>) {
    let mut guard = mutex.lock_owned().await;
    if !guard.batch.as_ref().is_some_and(|open| Arc::ptr_eq(open, &batch)) {
        // Already ended (failed) by someone else, who told its transactions.
        return;
    }
    guard.hold(false);
    // The COMMIT waits for fsync: not on a runtime thread. The guard moves into the blocking
    // task and is released after the outcome is told.
    let committed = tokio::task::spawn_blocking(move || {
        let mut guard = guard;
        let writer = &mut *guard;
        writer.fail_lost_batch();
        if writer.batch.is_none() {
            writer.let_go();
            return;
        }
        let outcome = run(&writer.conn, "COMMIT");
        if outcome.is_ok() {
            writer.counters.batches.fetch_add(1, Ordering::Relaxed);
            // Before the batch's transactions are told: an acknowledged write is pending for
            // the audience index (or already applied).
            if let Some(index) = &writer.capture {
                index.capture_committed(&writer.conn);
            }
        } else {
            rollback_quietly(&writer.conn);
            if let Some(index) = &writer.capture {
                index.discard_changes(&writer.conn);
            }
        }
        writer.end_batch(outcome);
        writer.let_go();
    })
    .await;
    if let Err(e) = committed {
        // The blocking task panicked: the guard went with it, the batch's outcome was not told.
        tracing::error!(error = %join_err(e), "committing a write batch failed");
        batch
            .outcome
            .send_replace(Some(Err("the commit of the write batch panicked".into())));
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use rusqlite::OptionalExtension;

    use super::*;
    use crate::SqliteStore;
    use crate::tx::{Handle, SqliteTx};
    use roster_store::Tx;

    /// A write transaction as `Store::begin` opens it, with its connection at hand for SQL.
    async fn begin_raw(store: &SqliteStore) -> SqliteTx {
        let mut writer = store.writer.clone().lock_owned().await;
        let writer = tokio::task::spawn_blocking(move || begin(&mut writer).map(|()| writer))
            .await
            .unwrap()
            .unwrap();
        SqliteTx::new(Handle::Writer(writer))
    }

    async fn insert(store: &SqliteStore, x: i64) -> SqliteTx {
        let tx = begin_raw(store).await;
        tx.conn()
            .unwrap()
            .execute("INSERT INTO scratch (x) VALUES (?1)", [x])
            .unwrap();
        tx
    }

    /// A store with a scratch table (a parent and a child referencing it, for a commit that
    /// fails on a deferred foreign key).
    async fn store(dir: &Path) -> Arc<SqliteStore> {
        let store = SqliteStore::open(&dir.join("g.db")).await.unwrap();
        let tx = begin_raw(&store).await;
        tx.conn()
            .unwrap()
            .execute_batch(
                "CREATE TABLE scratch (x INTEGER PRIMARY KEY);
                 CREATE TABLE parent (id INTEGER PRIMARY KEY);
                 CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER NOT NULL REFERENCES parent (id))",
            )
            .unwrap();
        Box::new(tx).commit().await.unwrap();
        Arc::new(store)
    }

    /// What another connection (another process) sees in the scratch table.
    fn committed_rows(dir: &Path) -> Vec<i64> {
        let conn = Connection::open(dir.join("g.db")).unwrap();
        let mut rows: Vec<i64> = conn
            .prepare("SELECT x FROM scratch ORDER BY x")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        rows.sort();
        rows
    }

    fn batches(store: &SqliteStore) -> u64 {
        store.committed_batches()
    }

    /// Transactions that queued for the writer while one held it join its batch: one COMMIT
    /// for all of them, every one acknowledged only after it, every row durable and visible to
    /// another connection when the commits return.
    #[tokio::test]
    async fn queued_transactions_share_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let before = batches(&store);
        let first = insert(&store, 0).await;
        let mut queued = Vec::new();
        for x in 1..=10 {
            let store = store.clone();
            queued.push(tokio::spawn(
                async move { Box::new(insert(&store, x).await).commit().await },
            ));
        }
        // Let every task queue for the writer behind `first`.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            committed_rows(dir.path()).is_empty(),
            "nothing is visible before the commit"
        );
        Box::new(first).commit().await.unwrap();
        for task in queued {
            task.await.unwrap().unwrap();
        }
        assert_eq!(committed_rows(dir.path()), (0..=10).collect::<Vec<_>>());
        assert_eq!(batches(&store) - before, 1, "one COMMIT for the eleven transactions");
    }

    /// A transaction rolled back (or dropped) inside a batch undoes only its own writes.
    #[tokio::test]
    async fn a_rollback_in_a_batch_keeps_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let first = insert(&store, 0).await;
        let mut queued = Vec::new();
        for x in 1..=6 {
            let store = store.clone();
            queued.push(tokio::spawn(async move {
                let tx = Box::new(insert(&store, x).await);
                match x % 3 {
                    0 => tx.rollback().await,
                    1 => {
                        drop(tx);
                        Ok(())
                    }
                    _ => tx.commit().await,
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        Box::new(first).commit().await.unwrap();
        for task in queued {
            task.await.unwrap().unwrap();
        }
        assert_eq!(committed_rows(dir.path()), vec![0, 2, 5]);
    }

    /// The transaction that opens a batch has no savepoint: undone (rolled back or dropped)
    /// while others queue behind it, it takes only its own writes with it, and the queued ones
    /// commit in a batch of their own, with their own rollbacks still undoing only themselves.
    #[tokio::test]
    async fn the_transaction_that_opened_a_batch_rolls_back_alone() {
        for drop_it in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let store = store(dir.path()).await;
            let first = insert(&store, 0).await;
            let mut queued = Vec::new();
            for x in 1..=4 {
                let store = store.clone();
                queued.push(tokio::spawn(async move {
                    let tx = Box::new(insert(&store, x).await);
                    if x == 3 { tx.rollback().await } else { tx.commit().await }
                }));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            if drop_it {
                drop(first);
            } else {
                Box::new(first).rollback().await.unwrap();
            }
            for task in queued {
                task.await.unwrap().unwrap();
            }
            assert_eq!(committed_rows(dir.path()), vec![1, 2, 4], "dropped: {drop_it}");
        }
    }

    /// A batch whose COMMIT fails fails every transaction in it: none is acknowledged, none of
    /// their writes stays, and the next transaction starts a clean batch.
    #[tokio::test]
    async fn a_failed_commit_fails_the_whole_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let first = insert(&store, 0).await;
        let poisoned = {
            let store = store.clone();
            tokio::spawn(async move {
                let tx = begin_raw(&store).await;
                // A deferred foreign key is checked at the batch's COMMIT, not at RELEASE.
                tx.conn()
                    .unwrap()
                    .execute_batch("PRAGMA defer_foreign_keys = ON; INSERT INTO child (id, parent) VALUES (1, 42)")
                    .unwrap();
                Box::new(tx).commit().await
            })
        };
        let innocent = {
            let store = store.clone();
            tokio::spawn(async move { Box::new(insert(&store, 1).await).commit().await })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let first = Box::new(first).commit().await;
        assert!(matches!(first, Err(StoreError::Unavailable(_))), "{first:?}");
        assert!(poisoned.await.unwrap().is_err());
        assert!(innocent.await.unwrap().is_err());
        assert!(committed_rows(dir.path()).is_empty());
        Box::new(insert(&store, 7).await).commit().await.unwrap();
        assert_eq!(committed_rows(dir.path()), vec![7]);
        let children: i64 = Connection::open(dir.path().join("g.db"))
            .unwrap()
            .query_row("SELECT count(*) FROM child", [], |r| r.get(0))
            .unwrap();
        assert_eq!(children, 0);
    }

    /// A transaction dropped with nothing else in its batch ends the batch: the file's write
    /// lock is free for another process at once.
    #[tokio::test]
    async fn a_lone_rollback_frees_the_write_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        drop(insert(&store, 1).await);
        let other = Connection::open(dir.path().join("g.db")).unwrap();
        other.busy_timeout(Duration::ZERO).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let row: Option<i64> = other
            .query_row("SELECT x FROM scratch", [], |r| r.get(0))
            .optional()
            .unwrap();
        assert_eq!(row, None);
        other.execute_batch("ROLLBACK").unwrap();
    }

    /// While another process holds the file's write lock, a batch is not opened where the
    /// caller runs (`begin_now` leaves nothing open and the busy timeout as it was); `begin`
    /// then waits for the lock on a blocking thread and gets it once the other commits.
    #[tokio::test]
    async fn a_batch_waits_for_another_process_off_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let other = Connection::open(dir.path().join("g.db")).unwrap();
        other
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO scratch (x) VALUES (7)")
            .unwrap();
        {
            let mut writer = store.writer.clone().lock_owned().await;
            assert!(!begin_now(&mut writer).unwrap(), "the lock is another's");
            assert!(writer.batch.is_none() && writer.conn.is_autocommit());
            let timeout: i64 = writer.conn.query_row("PRAGMA busy_timeout", [], |r| r.get(0)).unwrap();
            assert_eq!(timeout, 5000);
        }
        let waiting = {
            let store = store.clone();
            tokio::spawn(async move {
                let tx = roster_store::Store::begin(&*store).await?;
                tx.commit().await
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "the begin waits for the other's lock");
        other.execute_batch("COMMIT").unwrap();
        waiting.await.unwrap().unwrap();
        Box::new(insert(&store, 8).await).commit().await.unwrap();
        assert_eq!(committed_rows(dir.path()), vec![7, 8]);
    }

    /// A commit whose caller goes away while it waits still becomes durable (it was never
    /// acknowledged, but the batch must not keep the write lock waiting for a caller).
    #[tokio::test]
    async fn an_abandoned_commit_still_completes() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let tx = Box::new(insert(&store, 3).await);
        let mut commit = tx.commit();
        // Poll it exactly once (it merges into its batch and starts waiting), then drop it.
        let first = std::future::poll_fn(|cx| std::task::Poll::Ready(commit.as_mut().poll(cx))).await;
        assert!(first.is_pending(), "the commit was still waiting when dropped");
        drop(commit);
        // Another process waits for the write lock (off the runtime thread, where the batch's
        // leader runs) and gets it.
        let path = dir.path().join("g.db");
        tokio::task::spawn_blocking(move || {
            let other = Connection::open(path).unwrap();
            other.busy_timeout(Duration::from_secs(5)).unwrap();
            other.execute_batch("BEGIN IMMEDIATE").unwrap();
            other.execute_batch("ROLLBACK").unwrap();
        })
        .await
        .unwrap();
        assert_eq!(committed_rows(dir.path()), vec![3]);
    }
}
