//! WAL checkpoints off the writer's serial path.
//!
//! SQLite's automatic checkpoint runs inside the `COMMIT` that takes the log past 1,000 frames:
//! on the one writer connection, while every write transaction waits for it (group.rs). Under
//! `roster-bench register` those checkpoints were 30% of the writer's time (copying ~1,000 pages
//! back into the database file and two fsyncs, about 10 ms each, 30 times a second; measured with
//! `perf probe` on `sqlite3WalCheckpoint`). Here a thread of the store does that copying on a
//! connection of its own, while the writer goes on appending to the log:
//!
//! - The writer connection's WAL hook (which replaces the automatic checkpoint) runs after each
//!   commit with the log's size. Past [`START`] frames not yet copied, it wakes the thread.
//! - The thread runs `PRAGMA wal_checkpoint(PASSIVE)`: it copies what the log held when it began
//!   and never waits for the writer nor blocks it. A pass rarely ends between two commits under
//!   load, so it never leaves the log copied whole, and SQLite starts the log again from its
//!   beginning only when it is (at the next write transaction): left at that, the log grows
//!   without end. So after the thread's pass (and up to [`CHASES`] shorter ones for what was
//!   committed meanwhile), the writer copies the last frames (at most [`TAIL`]) in its hook, as
//!   the automatic checkpoint would have copied all of them.
//! - Commits of [`START`] frames or more each (a bulk load) would begin a new cycle every time
//!   and the log would never be copied whole: past `LIMIT_FACTOR` × [`START`] frames the
//!   writer checkpoints after each commit, as SQLite's automatic checkpoint does. The same
//!   holds a log that a reader kept from starting again to what the automatic checkpoint would
//!   do (the first version, without this, let a 1M-installation bulk load grow the log until
//!   the server's index rebuilds multiplied: 7–12 instead of 2).
//! - No checkpoint here waits for a reader (all are `PASSIVE`): a `RESTART` checkpoint that did
//!   held the writer in SQLite's busy handler for 70-100 ms at a time.
//! - After each pass, the thread fsyncs the database file ([`sync_database`]):
//!   SQLite fsyncs it only in the checkpoint that copies the log whole, the writer's, which
//!   would otherwise wait for every page of the cycle to reach the disk.
//! - With no thread (it could not open its connection) the writer checkpoints every [`ALONE`]
//!   frames, as SQLite would.
//!
//! Durability is unchanged: a commit is durable when the log is fsynced, which the writer still
//! does in every `COMMIT`; a checkpoint only moves committed pages into the database file (and
//! fsyncs it before the log may be reused). Written by hand: SQLite offers the hook and the
//! checkpoint call, no crate drives them from a second connection.

use std::ffi::{c_char, c_int, c_void};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use rusqlite::{Connection, OpenFlags, ffi};

/// Log frames not yet copied into the database that make the writer wake the thread: a cycle
/// every 10,000 frames (~40 MiB of log at 4 KiB pages), ten times SQLite's automatic checkpoint
/// default. Each cycle ends with the writer's tail checkpoint in its hook, which fsyncs the
/// database file while every write transaction waits (~4.5 ms on average, up to 19 ms, 18 times
/// a second under `roster-bench register` at 1,000: `perf trace -e fsync`), and each pass of
/// the thread writes the hot pages (the trees' upper levels) back again. Measured against 1,000
/// and 4,000 in alternated runs: register +6–10% and mobile-mix +6–12% at 4,000, and 4–8% more
/// at 10,000 (docs/benchmarks.md, "The WAL checkpoint cycle"). The price is a longer log for
/// readers to look pages up in (SQLite's WAL index hashes them, a table per 4,096 frames) and
/// more disk for it.
const START: i64 = 10_000;

/// Without the thread, the writer checkpoints every this many frames: SQLite's own automatic
/// checkpoint default.
const ALONE: i64 = 1000;

/// Passes of the thread per cycle at most: after the first, shorter ones copy what was committed
/// while it ran, until at most [`TAIL`] frames are left.
const CHASES: u32 = 3;

/// A log this many times a cycle's start (160 MiB at 4 KiB pages with [`START`]) is
/// checkpointed by the writer after each commit, as SQLite's automatic checkpoint would: see
/// the hook.
const LIMIT_FACTOR: i64 = 4;

/// Frames left after the thread's passes that the writer copies itself, in the hook, so that the
/// log is copied whole at a moment no commit can land and SQLite can start it again (a pass of
/// the thread rarely ends between two commits under load: the log would grow without end).
/// Every write transaction waits while the writer copies them and fsyncs the database file:
/// 64 rather than 256 frames (one more short pass of the thread, synced, instead) gave
/// `register` +3–14% and a p99.9 of 25–29 ms instead of 26–38 ms in 4 alternated pairs, and
/// `mobile-mix` +3–12% in 3 (docs/benchmarks.md, "The WAL checkpoint cycle").
const TAIL: i64 = 64;

/// What the writer's hook and the thread share.
#[derive(Default)]
struct State {
    /// The log's frames after the writer's last commit.
    frames: i64,
    /// Frames known to be copied into the database in this generation of the log.
    done: i64,
    /// Counts the times the log was seen to start again from its beginning.
    generation: u64,
    /// Passes of the thread in this cycle (since [`START`] frames asked for one).
    passes_in_cycle: u32,
    /// The thread has been asked for a pass and not yet begun it.
    wanted: bool,
    /// The thread is in a pass.
    running: bool,
    /// The thread has no connection: the writer checkpoints by itself.
    broken: bool,
    /// The store is gone: the thread ends.
    closed: bool,
    /// Passes the thread completed, and checkpoints the writer ran itself (tests).
    passes: u64,
    inline: u64,
    /// Passes after which the thread synced the database file.
    synced: u64,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// Frames pending that begin a cycle: [`START`], smaller in the unit tests so that they
    /// write little. The writer takes over at `LIMIT_FACTOR` times it.
    start: i64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the counters inconsistent in a way that
        // matters (the worst is a pass too early or too late): go on with them.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The checkpoint thread of one store. Must be dropped after the writer connection whose hook
/// points at it (`Writer` declares its connection first, so it is dropped first).
pub(crate) struct Checkpointer {
    shared: Arc<Shared>,
}

/// What the checkpointer did so far (tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    /// Passes of the checkpoint thread.
    pub passes: u64,
    /// Passes after which the thread synced the database file (every pass once frames were
    /// copied).
    pub synced: u64,
    /// Checkpoints the writer ran in its own commit (the last frames of a cycle, each commit of
    /// a log past `LIMIT_FACTOR` × [`START`], or every [`ALONE`] frames without a thread).
    pub inline: u64,
    /// Frames in the log after the last commit.
    pub log_frames: i64,
    /// Times the log was seen to start again from its beginning.
    pub restarts: u64,
}

impl Checkpointer {
    /// Starts the thread for the database at `path` and hooks `writer`'s commits to it.
    pub(crate) fn start(writer: &Connection, path: &Path) -> Checkpointer {
        Checkpointer::start_sized(writer, path, START)
    }

    fn start_sized(writer: &Connection, path: &Path, start: i64) -> Checkpointer {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            start,
        });
        let thread_shared = shared.clone();
        let path = path.to_path_buf();
        let spawned = std::thread::Builder::new()
            .name("roster-checkpoint".into())
            .spawn(move || run(&thread_shared, &path));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the WAL checkpoint thread; the writer checkpoints");
            shared.lock().broken = true;
        }
        // SAFETY: the hook's data pointer is the `Shared` this `Checkpointer` keeps alive, and
        // the `Checkpointer` outlives the connection (see the type's doc). The hook runs on the
        // thread that runs the connection's `COMMIT`, with the connection's own handle.
        unsafe {
            ffi::sqlite3_wal_hook(writer.handle(), Some(hook), Arc::as_ptr(&shared) as *mut c_void);
        }
        Checkpointer { shared }
    }

    pub(crate) fn stats(&self) -> CheckpointStats {
        let s = self.shared.lock();
        CheckpointStats {
            passes: s.passes,
            synced: s.synced,
            inline: s.inline,
            log_frames: s.frames,
            restarts: s.generation,
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_all();
    }
}

/// The writer's WAL hook: after each commit, with the log's size in frames. Always answers
/// `SQLITE_OK`: the commit has happened, an error here would report it as failed.
unsafe extern "C" fn hook(data: *mut c_void, db: *mut ffi::sqlite3, name: *const c_char, frames: c_int) -> c_int {
    // SAFETY: `data` is the `Shared` registered in `Checkpointer::start`, alive as long as the
    // connection.
    let shared = unsafe { &*(data as *const Shared) };
    let frames = i64::from(frames);
    let mut s = shared.lock();
    if frames < s.frames {
        // The log started again from its beginning: what was copied is of the old one.
        s.generation += 1;
        s.done = 0;
        s.passes_in_cycle = 0;
    }
    s.frames = frames;
    let pending = frames - s.done;
    let here = if pending <= 0 || s.running || s.wanted {
        false
    } else if s.broken {
        pending >= ALONE
    } else if frames >= LIMIT_FACTOR * shared.start {
        // Commits of START frames or more each (a bulk load), or a log that did not start again
        // (a reader was in it): every commit would begin a new cycle and the log would never be
        // copied whole. Do what the automatic checkpoint would have done; a passive checkpoint
        // copies what the readers allow and never waits for them.
        true
    } else if s.passes_in_cycle == 0 {
        if pending >= shared.start {
            s.wanted = true;
        }
        false
    } else if pending > TAIL && s.passes_in_cycle < CHASES {
        s.wanted = true;
        false
    } else {
        // The thread copied all but the last commits: copy those here, so that the log is
        // copied whole and SQLite can start it again at the next write transaction. The next
        // cycle begins once START frames more wait.
        s.passes_in_cycle = 0;
        true
    };
    if s.wanted {
        drop(s);
        shared.wake.notify_one();
        return ffi::SQLITE_OK;
    }
    if here {
        s.inline += 1;
        let generation = s.generation;
        drop(s);
        // SAFETY: `db` and `name` are the hook's own arguments, valid during the call; SQLite's
        // automatic checkpoint makes this same call from this same hook.
        if let Some(copied) = unsafe { checkpoint_here(db, name) } {
            let mut s = shared.lock();
            if s.generation == generation {
                s.done = s.done.max(copied);
            }
        }
    }
    ffi::SQLITE_OK
}

/// A passive checkpoint on the writer connection, from its WAL hook: the frames copied so far,
/// or `None` if it could not run (the thread is in a pass: `SQLITE_BUSY`).
///
/// # Safety
/// `db` and `name` must be the arguments of a WAL hook call in progress.
unsafe fn checkpoint_here(db: *mut ffi::sqlite3, name: *const c_char) -> Option<i64> {
    let (mut log, mut copied) = (0, 0);
    // SAFETY: see the function's contract.
    let rc = unsafe { ffi::sqlite3_wal_checkpoint_v2(db, name, ffi::SQLITE_CHECKPOINT_PASSIVE, &mut log, &mut copied) };
    match rc {
        ffi::SQLITE_OK => Some(i64::from(copied)),
        ffi::SQLITE_BUSY => None,
        rc => {
            tracing::warn!(code = rc, "a WAL checkpoint by the writer failed");
            None
        }
    }
}

/// The thread: a pass whenever the writer asks, until the store is dropped.
fn run(shared: &Shared, path: &Path) {
    let conn = match open(path) {
        Ok(conn) => conn,
        Err(e) => {
            tracing::warn!(error = %e, "the WAL checkpoint thread cannot open the database; the writer checkpoints");
            shared.lock().broken = true;
            return;
        }
    };
    loop {
        let generation = {
            let mut s = shared.lock();
            while !s.wanted && !s.closed {
                s = shared.wake.wait(s).unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            if s.closed {
                return;
            }
            s.wanted = false;
            s.running = true;
            s.generation
        };
        // The frames of the log copied so far (SQLite's count is the log's, not the pass's: a
        // pass that found nothing new still syncs, which writes nothing and waits only here).
        let copied = conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(2))
            .inspect_err(|e| tracing::warn!(error = %e, "a WAL checkpoint pass failed"))
            .ok();
        // Still `running`: the writer's hook leaves the cycle's last frames until this is done.
        let synced = copied.is_some_and(|c| c > 0)
            && sync_database(&conn)
                .inspect_err(
                    |e| tracing::warn!(error = %e, "syncing the database file after a WAL checkpoint pass failed"),
                )
                .is_ok();
        let mut s = shared.lock();
        s.running = false;
        s.passes += 1;
        s.synced += u64::from(synced);
        s.passes_in_cycle = s.passes_in_cycle.saturating_add(1);
        if let Some(copied) = copied.filter(|_| s.generation == generation) {
            s.done = s.done.max(copied);
        }
    }
}

/// Flushes the pages a pass copied into the database file to disk, through SQLite's own handle
/// of the file on the thread's connection.
///
/// A passive checkpoint fsyncs the database file only when it copies the log whole (SQLite's
/// `walCheckpoint`), and under load that is the writer's tail checkpoint in its hook: without
/// this, the fsync of every page the thread copied in a cycle ran on the writer's serial path,
/// while every write transaction waited (18 ms on average, up to 42 ms, with 10,000-frame
/// cycles: docs/benchmarks.md, "The WAL checkpoint cycle"). Done here, that wait is the
/// thread's, and the writer's fsync finds only its last frames to write. Durability is
/// unchanged: this only adds an fsync of pages that are also in the log.
///
/// Through the `sqlite3_file` (`SQLITE_FCNTL_FILE_POINTER`), not a file of our own: closing any
/// descriptor of the database file drops every POSIX lock this process holds on it, SQLite's
/// included.
fn sync_database(conn: &Connection) -> rusqlite::Result<()> {
    let mut file: *mut ffi::sqlite3_file = std::ptr::null_mut();
    // SAFETY: FILE_POINTER writes the main database's `sqlite3_file *` into `file`; the handle
    // is the thread's own connection, used only by this thread.
    let rc = unsafe {
        ffi::sqlite3_file_control(
            conn.handle(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_FILE_POINTER,
            (&raw mut file).cast::<c_void>(),
        )
    };
    // SAFETY: a non-null `file` is the open database file of the connection, alive while the
    // connection is, and its `pMethods` is non-null while it is open.
    let sync = (rc == ffi::SQLITE_OK && !file.is_null())
        .then(|| unsafe { (*file).pMethods.as_ref() })
        .flatten()
        .and_then(|methods| methods.xSync);
    let Some(sync) = sync else {
        return Err(rusqlite::Error::SqliteFailure(
            ffi::Error::new(ffi::SQLITE_MISUSE),
            Some("the database file is not open".into()),
        ));
    };
    // SAFETY: `file` as above; xSync only flushes the file's descriptor.
    match unsafe { sync(file, ffi::SQLITE_SYNC_NORMAL) } {
        ffi::SQLITE_OK => Ok(()),
        rc => Err(rusqlite::Error::SqliteFailure(ffi::Error::new(rc), None)),
    }
}

/// The thread's connection: no statement of its own but the checkpoint.
fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // Same durability as the writer: the database file is fsynced before the log is reused.
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests' cycle: the logic of a store's, on a tenth of the writes.
    const TEST_START: i64 = 1000;
    const TEST_LIMIT: i64 = LIMIT_FACTOR * TEST_START;

    /// A database in WAL mode with a table `t` of blobs, its writer, and a checkpointer on it.
    fn wal_db(dir: &Path) -> (std::path::PathBuf, Connection, Checkpointer) {
        let path = dir.join("c.db");
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                 CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB NOT NULL); \
                 INSERT INTO t (id, body) VALUES (-1, zeroblob(10));",
            )
            .unwrap();
        let checkpointer = Checkpointer::start_sized(&writer, &path, TEST_START);
        (path, writer, checkpointer)
    }

    /// Commits transaction `n` of `rows` rows of 3,000 bytes (about one page each).
    fn commit(writer: &Connection, n: i64, rows: i64) {
        writer.execute_batch("BEGIN IMMEDIATE").unwrap();
        for k in 0..rows {
            writer
                .execute("INSERT INTO t (id, body) VALUES (?1, zeroblob(3000))", [n * rows + k])
                .unwrap();
        }
        writer.execute_batch("COMMIT").unwrap();
    }

    /// Under a steady stream of commits the thread copies the log and the writer only its last
    /// frames, the log keeps starting again (it stays short, far below what was written), and
    /// every row committed is there.
    #[test]
    fn the_log_is_copied_by_the_thread_and_starts_again() {
        let dir = tempfile::tempdir().unwrap();
        let (path, writer, checkpointer) = wal_db(dir.path());
        let transactions = 400;
        for n in 0..transactions {
            commit(&writer, n, 10);
        }
        let stats = checkpointer.stats();
        // About ten pages per transaction: 4,000 frames written in all.
        assert!(stats.passes >= 1, "{stats:?}");
        assert!(stats.synced >= 1, "{stats:?}");
        assert!(stats.restarts >= 1, "{stats:?}");
        assert!(stats.log_frames < 2 * TEST_START, "{stats:?}");
        let rows: i64 = writer.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, transactions * 10 + 1);
        drop(writer);
        drop(checkpointer);
        // What a new connection reads after the writer is gone (its close checkpoints the rest).
        let reader = Connection::open(&path).unwrap();
        let rows: i64 = reader.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, transactions * 10 + 1);
    }

    /// A bulk load, each commit more than the cycle's start: the log still starts again and
    /// stays within the limit and one commit.
    #[test]
    fn a_bulk_load_keeps_the_log_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let (_path, writer, checkpointer) = wal_db(dir.path());
        let mut most = 0;
        for n in 0..30 {
            commit(&writer, n, 1500);
            most = most.max(checkpointer.stats().log_frames);
        }
        let stats = checkpointer.stats();
        assert!(stats.restarts >= 5, "{stats:?}");
        assert!(
            most < TEST_LIMIT + 2 * 1500,
            "the longest log: {most} frames; {stats:?}"
        );
    }

    /// A long read (an index build, an export) holds its snapshot: the log cannot start again
    /// meanwhile and grows, the writer goes on committing without waiting for the reader, the
    /// reader keeps seeing its snapshot, and once it ends the log starts again.
    #[test]
    fn a_long_reader_delays_the_logs_new_start_without_holding_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let (path, writer, checkpointer) = wal_db(dir.path());
        let reader = Connection::open(&path).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let seen: i64 = reader.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        for n in 0..400 {
            commit(&writer, n, 10);
        }
        let held = checkpointer.stats();
        assert_eq!(held.restarts, 0, "{held:?}");
        assert!(held.log_frames > 3 * TEST_START, "{held:?}");
        let still: i64 = reader.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(still, seen, "the reader's snapshot");
        reader.execute_batch("COMMIT").unwrap();
        for n in 400..800 {
            commit(&writer, n, 10);
        }
        let after = checkpointer.stats();
        assert!(after.restarts >= 1, "{after:?}");
        assert!(after.log_frames < held.log_frames, "{after:?}");
    }
}
