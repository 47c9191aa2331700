//! The in-memory audience index of a SQLite store (`roster_store::audience::memory`), kept
//! exact by change capture on the one writer connection, and the segment previews it answers.
//!
//! - **Capture.** Every write of the store runs on the writer connection (lib.rs, group.rs). On
//!   it, at open, [`install_capture`] creates a TEMP table `audience_changes` and TEMP triggers
//!   on `persons`, its child tables and `installations` (old and new owner of an updated
//!   installation) that record the `(account, person)` of every row written. TEMP objects live
//!   on that connection only: no schema change, nothing in the file. Their rows take part in the
//!   batch's transaction and in each store transaction's savepoint, so a rolled-back transaction
//!   or a failed batch leaves none. SQLite fires triggers for rows deleted or changed by foreign
//!   key actions (ON DELETE CASCADE) too.
//! - **Pending.** After a batch's `COMMIT` succeeds, its leader (still holding the writer, before
//!   telling the batch's transactions) moves the recorded ids into the pending set
//!   ([`IndexState::capture_committed`]): a write acknowledged to a caller is pending or already
//!   applied.
//! - **Refresh.** A preview on a read transaction, once the index is built, drains the pending
//!   set and reads those persons and their installations on the index's own read connection, in
//!   a transaction begun after the drain (so it sees every drained commit), applies them, then
//!   asks the index. Drain, read and apply happen under the index's lock, in that order.
//! - **Build.** At open, a blocking task reads every person (with its installations) account by
//!   account, a page per read transaction. Capture is on before its first read: a person changed
//!   while the build runs is pending, and is read again before the index is marked ready. Until
//!   then previews run as SQL.
//! - **Resolution.** A send's audience is listed from the index at its first chunk and the list
//!   kept for the next ones ([`IndexState::audience_list`]); audience.rs checks each listed
//!   installation in the caller's transaction.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use roster_model::filter::Filter;
use roster_model::{Installation, Person};
use roster_store::audience::Scope;
use roster_store::audience::memory::{Counts, MemoryIndex};
use roster_store::columns::id;
use roster_store::{MAX_PAGE, StoreError, StoreResult, installation_columns};
use rusqlite::{Connection, params};
use uuid::Uuid;

use crate::group::{self, Writer};
use crate::rows::{self, uuid_at};
use crate::sql::{self, execute, query_all};
use crate::tx::{rollback_quietly, run};

/// The tables whose rows make up what the index holds on a person, each with its person id
/// column. `installations` may change owner: its triggers record the old and the new one.
const CAPTURED: [(&str, &str); 5] = [
    ("persons", "id"),
    ("person_tags", "person_id"),
    ("person_phones", "person_id"),
    ("person_emails", "person_id"),
    ("installations", "person_id"),
];

/// Persons read per statement when refreshing (the ids go in one JSON list).
const REFRESH_CHUNK: usize = 500;

/// Pending persons past which the writer asks for a refresh in the background, so that the set
/// stays bounded when no preview comes to drain it (a bulk load).
const BACKGROUND_REFRESH: usize = 20_000;

/// The most pending persons a preview reads itself (about 0.1 ms each): with more (a bulk load
/// under way) it runs as SQL and leaves them to a background refresh, which reads them in
/// chunks of this size, letting previews in between.
const INLINE_REFRESH: usize = 5_000;

/// How long the file must go without a commit of another process before the index is built
/// again after one. A process that keeps writing (`roster import`, a bulk seeder) commits every
/// second or so; building after each of its commits threw every build away (6 builds during a
/// 1M-person seed, each of them seconds of CPU). Previews are SQL, and exact, meanwhile.
const REBUILD_QUIET: Duration = Duration::from_secs(2);

/// Audience lists kept between the chunks of resolutions (sends walking their audience).
const CACHED_LISTS: usize = 8;

/// A kept audience list unused for this long is dropped.
const LIST_IDLE: Duration = Duration::from_secs(600);

/// Audience lists longer than this are used for the chunk that computed them, not kept (about
/// 50 bytes an id).
const MAX_CACHED_IDS: usize = 20_000_000;

/// What an audience list is kept under: account, application, and the filter's `Debug` text.
pub(crate) type ListKey = (Uuid, Option<Uuid>, String);

/// Every matching pushRegId of a scope, in pushRegId order, as the index held them when computed.
pub(crate) struct AudienceList {
    pub(crate) key: ListKey,
    pub(crate) ids: Arc<Vec<String>>,
}

struct KeptList {
    key: ListKey,
    ids: Arc<Vec<String>>,
    used: Instant,
}

/// The SQL creating the change table and its triggers (TEMP: on the connection that runs it).
fn capture_sql() -> String {
    let mut sql = String::from(
        "CREATE TEMP TABLE IF NOT EXISTS audience_changes (
             account_id TEXT NOT NULL,
             person_id  TEXT NOT NULL,
             PRIMARY KEY (person_id, account_id)
         ) WITHOUT ROWID;\n",
    );
    for (table, key) in CAPTURED {
        for (event, images) in [
            ("INSERT", &["NEW"][..]),
            ("UPDATE", &["OLD", "NEW"][..]),
            ("DELETE", &["OLD"][..]),
        ] {
            sql.push_str(&format!(
                "CREATE TEMP TRIGGER IF NOT EXISTS audience_{table}_{} AFTER {event} ON main.{table} BEGIN\n",
                event.to_lowercase()
            ));
            for row in images {
                // An upsert's `DO NOTHING`, not `INSERT OR IGNORE`: an outer statement's conflict
                // clause (`UPDATE OR ABORT ...`) would override the trigger's `OR IGNORE`, not
                // the upsert. Not `... WHERE NOT EXISTS (SELECT ... FROM audience_changes)`
                // either: an INSERT that reads its own table goes through a temporary table
                // SQLite creates on every firing (13% of an installation insert's time, in a
                // profile of `register`).
                sql.push_str(&format!(
                    "    INSERT INTO audience_changes (account_id, person_id) \
                     VALUES ({row}.account_id, {row}.{key}) \
                     ON CONFLICT (person_id, account_id) DO NOTHING;\n"
                ));
            }
            sql.push_str("END;\n");
        }
    }
    sql
}

/// Creates the change table and triggers on the writer connection (after the migrations: the
/// triggers name the tables).
pub(crate) fn install_capture(conn: &Connection) -> StoreResult<()> {
    conn.execute_batch(&capture_sql()).map_err(crate::error::map_err)
}

/// Reads and deletes the recorded changes (on the writer, outside a batch).
fn take_changes(conn: &Connection) -> StoreResult<Vec<(Uuid, Uuid)>> {
    let changes = query_all(
        conn,
        "SELECT account_id, person_id FROM temp.audience_changes",
        [],
        |r| Ok((uuid_at(r, 0)?, uuid_at(r, 1)?)),
    )?;
    if !changes.is_empty() {
        execute(conn, "DELETE FROM temp.audience_changes", [])?;
    }
    Ok(changes)
}

/// The index, its refresh connection, and what was committed since it last read.
pub(crate) struct IndexState {
    path: PathBuf,
    /// Persons written by committed batches and not yet applied to the index.
    pending: Mutex<HashSet<(Uuid, Uuid)>>,
    inner: Mutex<Inner>,
    /// Built (and not broken): previews may use it.
    ready: AtomicBool,
    /// A change may have been lost (capture failed, a panic inside the index): the index must
    /// not answer again in this process.
    broken: AtomicBool,
    /// The store was dropped: a running build stops.
    closed: AtomicBool,
    /// A background refresh is queued or running.
    refreshing: AtomicBool,
    /// Whether a build runs, and whether it must start over when done.
    build: Mutex<BuildState>,
    /// The writer connection, to look for commits of other processes (group.rs).
    writer: OnceLock<Weak<tokio::sync::Mutex<Writer>>>,
    /// Previews answered by the index, and previews that fell back to SQL while it was ready.
    answered: AtomicU64,
    fallbacks: AtomicU64,
    /// Builds completed (the first one and rebuilds).
    builds: AtomicU64,
    /// Audience lists of resolutions under way ([`IndexState::audience_list`]).
    lists: Mutex<Vec<KeptList>>,
}

#[derive(Default)]
struct BuildState {
    running: bool,
    /// Another process wrote to the file while the build ran: what it read may miss that.
    stale: bool,
}

struct Inner {
    index: MemoryIndex,
    /// The read connection of refreshes (opened by the build).
    conn: Option<Connection>,
}

/// A preview's figures from the index: the counts and the sampled person ids.
pub(crate) struct Answer {
    pub(crate) counts: Counts,
    pub(crate) sample: Vec<Uuid>,
}

impl IndexState {
    pub(crate) fn new(path: PathBuf) -> IndexState {
        IndexState {
            path,
            pending: Mutex::new(HashSet::new()),
            inner: Mutex::new(Inner {
                index: MemoryIndex::new(),
                conn: None,
            }),
            ready: AtomicBool::new(false),
            broken: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            refreshing: AtomicBool::new(false),
            build: Mutex::new(BuildState::default()),
            writer: OnceLock::new(),
            answered: AtomicU64::new(0),
            fallbacks: AtomicU64::new(0),
            builds: AtomicU64::new(0),
            lists: Mutex::new(Vec::new()),
        }
    }

    /// Whether previews may use the index.
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.broken.load(Ordering::Acquire)
    }

    /// The writer whose connection captures the changes (set once, at open).
    pub(crate) fn set_writer(&self, writer: &Arc<tokio::sync::Mutex<Writer>>) {
        let _ = self.writer.set(Arc::downgrade(writer));
    }

    /// Looks for commits of another process since the writer last looked, if the writer is
    /// free right now (when it is not, the transaction holding it looks when it begins a
    /// batch). Such commits were not captured: the index is built again.
    pub(crate) fn look_for_foreign_commits(self: &Arc<Self>) {
        let Some(writer) = self.writer.get().and_then(Weak::upgrade) else {
            return;
        };
        if let Ok(mut writer) = writer.try_lock() {
            group::look_for_foreign_commits(&mut writer);
        }
    }

    /// Something was written that capture did not see (another process wrote to the file, or
    /// a batch's changes could not be read): previews run as SQL until the index is built again
    /// from the database.
    pub(crate) fn rebuild(self: &Arc<Self>, why: &str) {
        let mut build = self.lock_build();
        self.ready.store(false, Ordering::Release);
        // Kept audience lists may miss what the index did not see.
        self.lock_lists().clear();
        if build.running {
            build.stale = true;
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            drop(build);
            self.mark_broken("no runtime to rebuild the index on");
            return;
        };
        tracing::warn!(
            why,
            "building the in-memory audience index again; previews run as SQL meanwhile"
        );
        build.running = true;
        build.stale = false;
        let state = self.clone();
        runtime.spawn_blocking(move || {
            state.wait_until_quiet();
            state.build_until_current();
        });
    }

    /// Builds the index in a blocking task (at open).
    pub(crate) fn start(self: &Arc<Self>) {
        let mut build = self.lock_build();
        build.running = true;
        let state = self.clone();
        tokio::task::spawn_blocking(move || state.build_until_current());
    }

    /// Returns once no commit of another process was noticed for [`REBUILD_QUIET`] (or the
    /// store closed). Such a commit, noticed by a write batch or by this wait's own look while
    /// the writer is free, marks the running build stale.
    fn wait_until_quiet(self: &Arc<Self>) {
        loop {
            self.lock_build().stale = false;
            std::thread::sleep(REBUILD_QUIET);
            if self.closed.load(Ordering::Acquire) {
                return;
            }
            self.look_for_foreign_commits();
            if !self.lock_build().stale {
                return;
            }
        }
    }

    fn lock_build(&self) -> MutexGuard<'_, BuildState> {
        // Two flags: never inconsistent after a panic.
        self.build.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Builds until a build completes with no write of another process noticed during it, then
    /// marks the index ready. After a stale build it waits for the other process to be quiet.
    fn build_until_current(self: &Arc<Self>) {
        loop {
            let started = Instant::now();
            let built = self.build_once();
            let mut build = self.lock_build();
            match built {
                Ok(true) if build.stale => {
                    drop(build);
                    self.wait_until_quiet();
                    continue;
                }
                Ok(true) => {
                    self.builds.fetch_add(1, Ordering::Relaxed);
                    self.ready.store(true, Ordering::Release);
                    tracing::info!(
                        persons = self.persons(),
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "in-memory audience index built"
                    );
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %e, "building the in-memory audience index failed; previews run as SQL");
                }
            }
            build.running = false;
            return;
        }
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// What the index did so far (tests).
    pub(crate) fn stats(&self) -> crate::AudienceIndexStats {
        crate::AudienceIndexStats {
            answered: self.answered.load(Ordering::Relaxed),
            fallbacks: self.fallbacks.load(Ordering::Relaxed),
            builds: self.builds.load(Ordering::Relaxed),
            persons: self.persons(),
        }
    }

    pub(crate) fn count_fallback(&self) {
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
    }

    /// Stops answering from the index for the rest of the process.
    fn mark_broken(&self, why: &str) {
        if !self.broken.swap(true, Ordering::AcqRel) {
            tracing::error!(
                why,
                "the in-memory audience index is off until restart; previews run as SQL"
            );
        }
    }

    fn lock_pending(&self) -> MutexGuard<'_, HashSet<(Uuid, Uuid)>> {
        // Insertions and a take: never inconsistent after a panic.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The index under its lock; `None` (and broken) if a panic left it half-updated.
    fn lock_inner(&self) -> Option<MutexGuard<'_, Inner>> {
        match self.inner.lock() {
            Ok(guard) => Some(guard),
            Err(_) => {
                self.mark_broken("a panic while the index was being updated");
                None
            }
        }
    }

    /// After a batch's successful `COMMIT`, on the writer: its recorded changes become pending.
    pub(crate) fn capture_committed(self: &Arc<Self>, conn: &Connection) {
        match take_changes(conn) {
            Ok(changes) if changes.is_empty() => {}
            Ok(changes) => {
                let len = {
                    let mut pending = self.lock_pending();
                    pending.extend(changes);
                    pending.len()
                };
                if len >= BACKGROUND_REFRESH && self.is_ready() {
                    self.refresh_in_background();
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "reading the audience changes of a batch failed");
                self.discard_changes(conn);
                self.rebuild("the changes of a committed batch could not be read");
            }
        }
    }

    /// After a failed or abandoned batch: its changes were rolled back with it; clear whatever
    /// is left (nothing, unless something wrote outside a batch).
    pub(crate) fn discard_changes(&self, conn: &Connection) {
        if let Err(e) = execute(conn, "DELETE FROM temp.audience_changes", []) {
            tracing::warn!(error = %e, "clearing the audience changes failed");
        }
    }

    fn refresh_in_background(self: &Arc<Self>) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.refreshing.store(false, Ordering::Release);
            return;
        };
        let state = self.clone();
        runtime.spawn_blocking(move || {
            loop {
                // The lock is let go between chunks: previews wait for one chunk at most.
                let Some(mut inner) = state.lock_inner() else { break };
                if !state.is_ready() || state.lock_pending().is_empty() {
                    break;
                }
                if let Err(e) = state.refresh(&mut inner, INLINE_REFRESH) {
                    tracing::warn!(error = %e, "refreshing the audience index failed; the changes stay pending");
                    break;
                }
            }
            state.refreshing.store(false, Ordering::Release);
        });
    }

    /// Builds the index from the database (blocking), then applies what was committed
    /// meanwhile; `false` if the store was closed first.
    fn build_once(&self) -> StoreResult<bool> {
        // Not ready (set before), so no refresh starts; wait for one still running, whose
        // drained changes may predate this build's reads.
        drop(self.lock_inner());
        let conn = crate::open_reader(&self.path)?;
        let accounts: Vec<Uuid> = in_read_tx(&conn, |c| {
            query_all(c, "SELECT id FROM accounts ORDER BY id", [], |r| uuid_at(r, 0))
        })?;
        let mut index = MemoryIndex::new();
        for account in accounts {
            let mut after = None;
            loop {
                if self.closed.load(Ordering::Acquire) {
                    return Ok(false);
                }
                // A short read transaction per page: a long one would keep the log from being
                // checkpointed. Whatever changes between pages is pending (capture is on).
                let (page, mut installations) = in_read_tx(&conn, |c| {
                    let page = sql::persons_page(c, account, after, MAX_PAGE)?;
                    let installations = match (page.first(), page.last()) {
                        (Some(first), Some(last)) => installations_in_range(c, account, first.id, last.id)?,
                        _ => HashMap::new(),
                    };
                    Ok((page, installations))
                })?;
                let Some(last) = page.last() else { break };
                after = Some(last.id);
                for person in &page {
                    let own = installations.remove(&person.id).unwrap_or_default();
                    index.set_person(account, person.id, Some((person, &own)));
                }
            }
        }
        let Some(mut inner) = self.lock_inner() else {
            return Err(StoreError::Other("the audience index lock is poisoned".into()));
        };
        inner.index = index;
        inner.conn = Some(conn);
        // What was committed while the build read (later commits stay pending, as always).
        self.refresh(&mut inner, usize::MAX)?;
        Ok(true)
    }

    /// Applies pending persons, `limit` at most: drained first, then read in a transaction begun
    /// after the drain. On failure they are pending again.
    fn refresh(&self, inner: &mut Inner, limit: usize) -> StoreResult<()> {
        let drained: Vec<(Uuid, Uuid)> = {
            let mut pending = self.lock_pending();
            if pending.len() <= limit {
                std::mem::take(&mut *pending).into_iter().collect()
            } else {
                let some: Vec<(Uuid, Uuid)> = pending.iter().take(limit).copied().collect();
                for key in &some {
                    pending.remove(key);
                }
                some
            }
        };
        if drained.is_empty() {
            return Ok(());
        }
        let read = match inner.conn.as_ref() {
            Some(conn) => in_read_tx(conn, |c| read_persons(c, &drained)),
            None => Err(StoreError::Other("the audience index has no connection".into())),
        };
        match read {
            Ok(entries) => {
                for ((account, person), entry) in drained.iter().zip(&entries) {
                    inner
                        .index
                        .set_person(*account, *person, entry.as_ref().map(|(p, i)| (p, i.as_slice())));
                }
                Ok(())
            }
            Err(e) => {
                self.lock_pending().extend(drained);
                Err(e)
            }
        }
    }

    /// The index brought up to date, under its lock: `None` when it is not ready (checked under
    /// the lock: a rebuild may have begun since the caller looked) or a bulk change is pending
    /// (left to a background refresh; the caller answers with SQL meanwhile).
    fn current(self: &Arc<Self>) -> StoreResult<Option<MutexGuard<'_, Inner>>> {
        let Some(mut inner) = self.lock_inner() else {
            return Ok(None);
        };
        if !self.is_ready() {
            return Ok(None);
        }
        if self.lock_pending().len() > INLINE_REFRESH {
            drop(inner);
            self.refresh_in_background();
            return Ok(None);
        }
        self.refresh(&mut inner, usize::MAX)?;
        Ok(Some(inner))
    }

    /// The preview's counts and sample (`sample` persons at most, none when nothing matches),
    /// from the index brought up to date; `None` when the index does not hold a field of the
    /// filter (or is not ready).
    pub(crate) fn answer(
        self: &Arc<Self>,
        scope: Scope,
        filter: &Filter,
        primary_only: bool,
        sample: usize,
    ) -> StoreResult<Option<Answer>> {
        let Some(inner) = self.current()? else {
            return Ok(None);
        };
        let Some(counts) = inner.index.counts(scope, filter, primary_only) else {
            return Ok(None);
        };
        let sample = if sample > 0 && counts.installations > 0 {
            match inner.index.sample_people(scope, filter, sample) {
                Some(ids) => ids,
                None => return Ok(None),
            }
        } else {
            Vec::new()
        };
        self.answered.fetch_add(1, Ordering::Relaxed);
        Ok(Some(Answer { counts, sample }))
    }

    /// The audience list of `(scope, filter)`: the kept one unless `fresh` (a resolution's first
    /// chunk), else computed from the index brought up to date (under its lock, as previews) and
    /// kept; `None` when the index does not hold a field of the filter, is not ready, or has a
    /// bulk change pending.
    pub(crate) fn audience_list(
        self: &Arc<Self>,
        scope: Scope,
        filter: &Filter,
        fresh: bool,
    ) -> StoreResult<Option<AudienceList>> {
        let key: ListKey = (scope.account_id, scope.application_id, format!("{filter:?}"));
        if !fresh && let Some(ids) = self.kept_list(&key) {
            return Ok(Some(AudienceList { key, ids }));
        }
        let Some(inner) = self.current()? else {
            return Ok(None);
        };
        let Some(ids) = inner.index.push_reg_ids(scope, filter) else {
            return Ok(None);
        };
        drop(inner);
        let ids = Arc::new(ids);
        self.keep_list(&key, &ids);
        Ok(Some(AudienceList { key, ids }))
    }

    fn lock_lists(&self) -> MutexGuard<'_, Vec<KeptList>> {
        // Whole entries pushed and removed: never inconsistent after a panic.
        let mut lists = self.lists.lock().unwrap_or_else(|p| p.into_inner());
        lists.retain(|l| l.used.elapsed() < LIST_IDLE);
        lists
    }

    fn kept_list(&self, key: &ListKey) -> Option<Arc<Vec<String>>> {
        let mut lists = self.lock_lists();
        let kept = lists.iter_mut().find(|l| l.key == *key)?;
        kept.used = Instant::now();
        Some(kept.ids.clone())
    }

    fn keep_list(&self, key: &ListKey, ids: &Arc<Vec<String>>) {
        let mut lists = self.lock_lists();
        lists.retain(|l| l.key != *key);
        if ids.len() > MAX_CACHED_IDS {
            return;
        }
        if lists.len() >= CACHED_LISTS
            && let Some(oldest) = (0..lists.len()).min_by_key(|&i| lists[i].used)
        {
            lists.swap_remove(oldest);
        }
        lists.push(KeptList {
            key: key.clone(),
            ids: ids.clone(),
            used: Instant::now(),
        });
    }

    /// A resolution walked its list to the end: it is not kept any longer.
    pub(crate) fn forget_list(&self, list: &AudienceList) {
        // Only that list: another resolution of the same audience may have kept a newer one.
        self.lock_lists()
            .retain(|l| !(l.key == list.key && Arc::ptr_eq(&l.ids, &list.ids)));
    }

    /// Audience lists kept (tests).
    #[cfg(test)]
    pub(crate) fn kept_lists(&self) -> usize {
        self.lock_lists().len()
    }

    /// Persons held by the index (tests).
    pub(crate) fn persons(&self) -> usize {
        self.lock_inner().map_or(0, |inner| inner.index.persons())
    }
}

/// Runs `f` in a read transaction of its own on `conn`.
fn in_read_tx<T>(conn: &Connection, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
    run(conn, "BEGIN")?;
    let out = f(conn);
    match &out {
        Ok(_) => run(conn, "COMMIT")?,
        Err(_) => rollback_quietly(conn),
    }
    out
}

/// Installations of the account whose owner id is in `first..=last` (a page of persons), by owner.
fn installations_in_range(
    conn: &Connection,
    account_id: Uuid,
    first: Uuid,
    last: Uuid,
) -> StoreResult<HashMap<Uuid, Vec<Installation>>> {
    let found = query_all(
        conn,
        concat!(
            "SELECT ",
            installation_columns!(),
            " FROM installations WHERE person_id >= ?2 AND person_id <= ?3 AND +account_id = ?1 \
             ORDER BY person_id, created_at, push_reg_id"
        ),
        params![id(account_id), id(first), id(last)],
        rows::installation,
    )?;
    Ok(crate::audience::by_owner(found))
}

/// A person and all its installations, as the index takes them.
type Entry = (Person, Vec<Installation>);

/// Each `(account, person)` as stored now with all its installations, `None` if it is gone, in
/// the order of `ids`.
fn read_persons(conn: &Connection, ids: &[(Uuid, Uuid)]) -> StoreResult<Vec<Option<Entry>>> {
    let mut by_account: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for (account, person) in ids {
        by_account.entry(*account).or_default().push(*person);
    }
    let mut found: HashMap<(Uuid, Uuid), Entry> = HashMap::new();
    for (account, persons) in by_account {
        for chunk in persons.chunks(REFRESH_CHUNK) {
            let mut people = crate::audience::persons_found(conn, account, chunk)?;
            let mut installations = crate::audience::installations_of_persons(conn, account, chunk)?;
            for person in chunk {
                if let Some(p) = people.remove(person) {
                    found.insert(
                        (account, *person),
                        (p, installations.remove(person).unwrap_or_default()),
                    );
                }
            }
        }
    }
    Ok(ids.iter().map(|key| found.remove(key)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The triggers capture what the brief of each table promises, including rows deleted by
    /// `ON DELETE CASCADE` and both owners of a moved installation; a rolled-back savepoint
    /// leaves nothing.
    #[test]
    fn triggers_capture_writes_cascades_and_moves() {
        let conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        crate::apply_migrations(&conn).unwrap();
        install_capture(&conn).unwrap();
        let (acc, app, p1, p2) = (
            "00000000-0000-0000-0000-00000000000a",
            "00000000-0000-0000-0000-0000000000ap",
            "00000000-0000-0000-0000-000000000001",
            "00000000-0000-0000-0000-000000000002",
        );
        conn.execute_batch(&format!(
            "INSERT INTO accounts (id, name, created_at) VALUES ('{acc}', 'a', 1);
             INSERT INTO applications (account_id, id, name, application_code, enabled,
                 require_jwt_for_user_data, restrict_user_data_from_sdk, providers, created_at, updated_at)
                 VALUES ('{acc}', '{app}', 'app', 'code', 1, 0, 0, '{{}}', 1, 1);"
        ))
        .unwrap();
        let person = |p: &str| {
            format!(
                "INSERT INTO persons (account_id, id, custom_attributes, type, version, created_at, updated_at)
                 VALUES ('{acc}', '{p}', '{{}}', 'LEAD', 1, 1, 1);"
            )
        };
        conn.execute_batch(&(person(p1) + &person(p2))).unwrap();
        let changes = |conn: &Connection| -> Vec<String> {
            let mut v: Vec<String> = take_changes(conn)
                .unwrap()
                .into_iter()
                .map(|(a, p)| {
                    assert_eq!(a.to_string(), acc);
                    p.to_string()
                })
                .collect();
            v.sort();
            v
        };
        assert_eq!(changes(&conn), vec![p1, p2], "inserted persons, once each");
        assert!(changes(&conn).is_empty(), "taken");

        conn.execute_batch(&format!(
            "INSERT INTO person_tags (account_id, person_id, tag) VALUES ('{acc}', '{p1}', 'x')"
        ))
        .unwrap();
        assert_eq!(changes(&conn), vec![p1]);

        conn.execute_batch(&format!(
            "INSERT INTO installations (account_id, push_reg_id, application_id, person_id, reg_enabled,
                 is_primary, custom_attributes, created_at, updated_at, last_seen_at)
                 VALUES ('{acc}', 'r1', '{app}', '{p1}', 1, 0, '{{}}', 1, 1, 1)"
        ))
        .unwrap();
        assert_eq!(changes(&conn), vec![p1]);
        conn.execute_batch(&format!(
            "UPDATE installations SET person_id = '{p2}' WHERE push_reg_id = 'r1'"
        ))
        .unwrap();
        assert_eq!(
            changes(&conn),
            vec![p1, p2],
            "old and new owner of a moved installation"
        );

        // A person captured twice before the changes are taken is recorded once, and an outer
        // statement's conflict clause does not turn the second capture into a failure.
        conn.execute_batch(&format!(
            "UPDATE OR ROLLBACK persons SET version = 3 WHERE id = '{p2}';
             UPDATE OR ABORT installations SET is_primary = 1 WHERE push_reg_id = 'r1';
             INSERT OR FAIL INTO person_tags (account_id, person_id, tag) VALUES ('{acc}', '{p2}', 'y');"
        ))
        .unwrap();
        assert_eq!(changes(&conn), vec![p2]);

        // A rolled-back savepoint takes its captured rows with it.
        conn.execute_batch("BEGIN; SAVEPOINT tx;").unwrap();
        conn.execute_batch(&format!("UPDATE persons SET version = 2 WHERE id = '{p1}'"))
            .unwrap();
        conn.execute_batch("ROLLBACK TO tx; RELEASE tx; COMMIT;").unwrap();
        assert!(changes(&conn).is_empty(), "nothing of a rolled-back savepoint");

        // Rows deleted by ON DELETE CASCADE fire their triggers: only the child table's trigger
        // can have recorded p1 here (the persons trigger is dropped for the check).
        conn.execute_batch("DROP TRIGGER temp.audience_persons_delete").unwrap();
        conn.execute_batch(&format!("DELETE FROM persons WHERE id = '{p1}'"))
            .unwrap();
        assert_eq!(changes(&conn), vec![p1], "the cascaded person_tags delete was captured");
    }

    /// A resolution's list is kept between its chunks and dropped when walked to its end; 8
    /// lists at most are kept, the least recently used going first.
    #[tokio::test]
    async fn audience_lists_are_kept_while_walked() {
        use roster_store::Store;
        use roster_store::audience::Scope;

        let dir = tempfile::tempdir().unwrap();
        let store = crate::SqliteStore::open(&dir.path().join("l.db")).await.unwrap();
        assert!(store.wait_for_audience_index(std::time::Duration::from_secs(30)).await);
        let pop = roster_store_tests::audience::seed_population(&store, 7, 60).await;
        let index = store.index.clone().unwrap();
        let scope = Scope {
            account_id: pop.account.id,
            application_id: None,
        };
        let chunk = |filter: Filter, after: Option<String>| {
            let store = &store;
            async move {
                let mut tx = store.begin().await.unwrap();
                let got = tx
                    .audience_installations(scope, &filter, after.as_deref(), 7)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
                got.into_iter().map(|i| i.push_reg_id).collect::<Vec<_>>()
            }
        };
        let all = Filter::parse(&serde_json::json!({}), &pop.definitions, "filter").unwrap();
        let first = chunk(all.clone(), None).await;
        assert_eq!(first.len(), 7);
        assert_eq!(index.kept_lists(), 1, "kept after the first chunk");
        let mut after = first.last().cloned();
        loop {
            let got = chunk(all.clone(), after.clone()).await;
            if got.len() < 7 {
                break;
            }
            assert_eq!(index.kept_lists(), 1, "kept while walked");
            after = got.last().cloned();
        }
        assert_eq!(index.kept_lists(), 0, "dropped at the end");
        for n in 0..10 {
            // Ten audiences of every installation, under ten keys.
            let f = serde_json::json!({"tags": {"$nin": [format!("none{n}")]}});
            chunk(Filter::parse(&f, &pop.definitions, "filter").unwrap(), None).await;
        }
        assert_eq!(index.kept_lists(), CACHED_LISTS.min(10));
    }

    /// A write transaction as `Store::begin` opens it, with its connection at hand for SQL.
    async fn begin_raw(store: &crate::SqliteStore) -> crate::tx::SqliteTx {
        let mut writer = store.writer.clone().lock_owned().await;
        let writer = tokio::task::spawn_blocking(move || group::begin(&mut writer).map(|()| writer))
            .await
            .unwrap()
            .unwrap();
        crate::tx::SqliteTx::new(crate::tx::Handle::Writer(writer))
    }

    /// A batch whose COMMIT fails leaves nothing pending and nothing in the change table; a
    /// committed one leaves its persons pending.
    #[tokio::test]
    async fn a_failed_batch_leaves_nothing_pending() {
        use roster_store::Tx;

        let dir = tempfile::tempdir().unwrap();
        let store = crate::SqliteStore::open(&dir.path().join("f.db")).await.unwrap();
        let index = store.index.clone().unwrap();
        let person = |id: &str, account: &str| {
            format!(
                "INSERT INTO persons (account_id, id, custom_attributes, type, version, created_at, updated_at) \
                 VALUES ('{account}', '{id}', '{{}}', 'LEAD', 1, 1, 1)"
            )
        };
        let acc = "00000000-0000-0000-0000-00000000000a";
        let tx = begin_raw(&store).await;
        tx.conn()
            .unwrap()
            .execute_batch(&format!(
                "INSERT INTO accounts (id, name, created_at) VALUES ('{acc}', 'a', 1); {}",
                person("00000000-0000-0000-0000-000000000001", acc)
            ))
            .unwrap();
        Box::new(tx).commit().await.unwrap();
        let committed: Vec<(Uuid, Uuid)> = index.lock_pending().drain().collect();
        assert_eq!(committed.len(), 1, "a committed person is pending");

        // A deferred foreign key fails the batch at its COMMIT, after the savepoint's release.
        let tx = begin_raw(&store).await;
        tx.conn()
            .unwrap()
            .execute_batch(&format!(
                "PRAGMA defer_foreign_keys = ON; {}",
                person(
                    "00000000-0000-0000-0000-000000000002",
                    "00000000-0000-0000-0000-0000000000ff"
                )
            ))
            .unwrap();
        assert!(Box::new(tx).commit().await.is_err(), "the batch's COMMIT fails");
        assert!(index.lock_pending().is_empty(), "nothing of a failed batch is pending");
        let left: i64 = store
            .writer
            .lock()
            .await
            .conn
            .query_row("SELECT count(*) FROM temp.audience_changes", [], |r| r.get(0))
            .unwrap();
        assert_eq!(left, 0, "nothing left in the change table");
    }
}
