//! The retention sweeper (management-api.md §3.3, §6.7; people.md §9.2): a background loop of
//! each server process that purges, in batches of short transactions, delivery records 30 days
//! after their last change, messages 90 days after they were sent once none of their records
//! remain (and then their empty bulks), expired `Idempotency-Key` records, merge-log snapshots
//! after the image retention and merge-log entries after the entry retention.
//!
//! Several processes may sweep one store at once: every batch chooses its rows again (by age,
//! oldest first), PostgreSQL batches skip the rows another sweep holds, and SQLite runs one
//! writer at a time; a row is purged once whoever gets to it. [`sweep`] runs one sweep now.

use std::sync::Arc;
use std::time::Duration;

use roster_model::{Millis, now_millis};
use roster_store::{Store, StoreResult, Tx};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::settings::{MergeLogSettings, RetentionSettings};

/// Rows per purge transaction: short enough not to hold the write lock (SQLite) or many row
/// locks (PostgreSQL) for long.
pub const BATCH: u32 = 500;

/// How long after start the first sweep runs (so that start-up is not slowed by it).
const FIRST_SWEEP_DELAY: Duration = Duration::from_secs(30);

const DAY_MS: Millis = 86_400_000;

/// What a sweep keeps, in days (0: forever).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub deliveries_days: u64,
    pub messages_days: u64,
    pub image_retention_days: u64,
    pub entry_retention_days: u64,
}

impl RetentionPolicy {
    /// The policy of the settings.
    pub fn new(retention: &RetentionSettings, merge_log: &MergeLogSettings) -> RetentionPolicy {
        RetentionPolicy {
            deliveries_days: retention.deliveries_days,
            messages_days: retention.messages_days,
            image_retention_days: merge_log.image_retention_days,
            entry_retention_days: merge_log.entry_retention_days,
        }
    }
}

/// What one sweep purged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub deliveries: u64,
    pub messages: u64,
    pub bulks: u64,
    pub idempotency_records: u64,
    pub merge_snapshots: u64,
    pub merge_entries: u64,
}

/// The cut-off `days` before `now`: rows older than it go; `None` for 0 (kept forever).
fn cutoff(now: Millis, days: u64) -> Option<Millis> {
    if days == 0 {
        return None;
    }
    let age = Millis::try_from(days).unwrap_or(Millis::MAX).saturating_mul(DAY_MS);
    Some(now.saturating_sub(age))
}

/// One purge method of [`roster_store::RetentionTx`], as a boxed future over a transaction.
type Purge =
    for<'a> fn(&'a mut dyn Tx, Millis, u32) -> std::pin::Pin<Box<dyn Future<Output = StoreResult<u64>> + Send + 'a>>;

/// Runs `purge` in batches of [`BATCH`], each in its own transaction, until a batch comes back
/// short or `stopped` says stop; how many rows went.
async fn drain(
    store: &Arc<dyn Store>,
    purge: Purge,
    before: Option<Millis>,
    stopped: &watch::Receiver<bool>,
) -> StoreResult<u64> {
    let Some(before) = before else { return Ok(0) };
    let mut total = 0;
    loop {
        if *stopped.borrow() {
            return Ok(total);
        }
        let mut tx = store.begin().await?;
        let n = purge(&mut *tx, before, BATCH).await?;
        tx.commit().await?;
        total += n;
        if n < u64::from(BATCH) {
            return Ok(total);
        }
        // Let requests waiting for the writer (SQLite) go first.
        tokio::task::yield_now().await;
    }
}

/// Runs one sweep at `now` (every purge until nothing older is left) and says what went.
pub async fn sweep(store: &Arc<dyn Store>, policy: &RetentionPolicy, now: Millis) -> StoreResult<SweepReport> {
    let (_keep, never) = watch::channel(false);
    sweep_until(store, policy, now, &never).await
}

async fn sweep_until(
    store: &Arc<dyn Store>,
    policy: &RetentionPolicy,
    now: Millis,
    stopped: &watch::Receiver<bool>,
) -> StoreResult<SweepReport> {
    let messages_before = cutoff(now, policy.messages_days);
    // Records go first, so that their messages (and then the messages' bulks) may go in the same
    // sweep.
    let deliveries = drain(
        store,
        |tx, b, n| tx.purge_deliveries(b, n),
        cutoff(now, policy.deliveries_days),
        stopped,
    )
    .await?;
    let messages = drain(store, |tx, b, n| tx.purge_messages(b, n), messages_before, stopped).await?;
    let bulks = drain(store, |tx, b, n| tx.purge_bulks(b, n), messages_before, stopped).await?;
    // An idempotency record carries its own expiry (management.idempotency_ttl_hours).
    let idempotency_records = drain(store, |tx, b, n| tx.purge_idempotency_records(b, n), Some(now), stopped).await?;
    let merge_snapshots = drain(
        store,
        |tx, b, n| tx.purge_merge_snapshots(b, n),
        cutoff(now, policy.image_retention_days),
        stopped,
    )
    .await?;
    let merge_entries = drain(
        store,
        |tx, b, n| tx.purge_merge_entries(b, n),
        cutoff(now, policy.entry_retention_days),
        stopped,
    )
    .await?;
    Ok(SweepReport {
        deliveries,
        messages,
        bulks,
        idempotency_records,
        merge_snapshots,
        merge_entries,
    })
}

/// The sweeper of this process, stopped with [`Sweeper::stop`].
pub struct Sweeper {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Sweeper {
    /// Starts sweeping every `retention.sweep_interval_seconds`; `None` when that is 0.
    pub fn start(
        store: Arc<dyn Store>,
        retention: &RetentionSettings,
        merge_log: &MergeLogSettings,
    ) -> Option<Sweeper> {
        if retention.sweep_interval_seconds == 0 {
            return None;
        }
        let interval = Duration::from_secs(retention.sweep_interval_seconds);
        let policy = RetentionPolicy::new(retention, merge_log);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(sweep_loop(store, policy, interval, stopped));
        Some(Sweeper { stop, task })
    }

    /// Stops after the batch in progress, and waits.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await
            && e.is_panic()
        {
            tracing::error!(error = %e, "the retention sweeper panicked");
        }
    }
}

async fn sweep_loop(
    store: Arc<dyn Store>,
    policy: RetentionPolicy,
    interval: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let mut wait = FIRST_SWEEP_DELAY.min(interval);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped.changed() => return,
        }
        if *stopped.borrow() {
            return;
        }
        match sweep_until(&store, &policy, now_millis(), &stopped).await {
            Ok(report) if report != SweepReport::default() => tracing::info!(?report, "retention sweep"),
            Ok(_) => tracing::debug!("retention sweep: nothing to purge"),
            // The next sweep tries again.
            Err(e) => tracing::warn!(error = %e, "retention sweep failed"),
        }
        wait = interval;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoffs_count_whole_days_back_and_zero_keeps_forever() {
        let now = 1_700_000_000_000;
        assert_eq!(cutoff(now, 0), None);
        assert_eq!(cutoff(now, 30), Some(now - 30 * DAY_MS));
        assert_eq!(cutoff(now, 1), Some(now - DAY_MS));
        // Absurd settings saturate instead of wrapping into the future.
        assert_eq!(cutoff(now, u64::MAX), Some(now.saturating_sub(Millis::MAX)));
        assert!(cutoff(now, u64::MAX).unwrap() < 0);
    }
}
