//! First statistics for tables that have none (docs/decisions.md, "PostgreSQL: first statistics
//! of new tables").
//!
//! sqlx prepares every statement once per connection, and PostgreSQL keeps a *generic* plan of a
//! prepared statement after its fifth run. On a new database the tables have no statistics, every
//! index looks alike, and the plan kept may walk the wrong index: a registration's
//! `UPDATE installations ... WHERE account_id = $1 AND application_id = $2 AND provider = $3
//! AND push_service_token = $4` chose `installations_application_idx` (every installation of the
//! application) over the token's unique index, and a person's tag lookup chose
//! `person_tags_account_tag_idx` (every tag of the account) over the primary key. Each
//! registration then read every installation before it: measured, 11,006,073 index entries read
//! for 4,694 registrations of a benchmark's first ten seconds. The plan is kept until the table's
//! statistics change, which autovacuum does at its next round (`autovacuum_naptime`, a minute
//! by default) once 50 rows changed: the first minute of a new deployment, when its app launches
//! and registrations come in bursts, ran on those plans.
//!
//! So each store process looks every [`INTERVAL`] for tables of its schema that were never
//! analyzed (neither by `ANALYZE` nor by autovacuum) and have at least [`MIN_ROWS`] changed and
//! live rows, and analyzes them. `ANALYZE` invalidates the cached plans that use the table, so every
//! connection plans again with statistics that know there is one account and one application.
//! A table is analyzed this way once; autovacuum keeps its statistics current after that.
//! Several processes on one database may each analyze a table once: harmless.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{AssertSqlSafe, PgPool};

/// How often a store looks for tables without statistics.
const INTERVAL: Duration = Duration::from_secs(2);

/// Changed rows (`n_mod_since_analyze`), and live rows, that a never-analyzed table needs before
/// it is analyzed: autovacuum's default `autovacuum_analyze_threshold`. Enough rows that the
/// statistics show the data's shape (one account, one application), few enough that it happens
/// in the first second of load. Live rows too: the changed rows count those of transactions not
/// committed yet or rolled back, and statistics of an empty table are the ones that mislead.
const MIN_ROWS: i64 = 50;

/// The running task; aborted when the last clone of its store is dropped.
pub(crate) struct Statistics(tokio::task::AbortHandle);

impl Drop for Statistics {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts the task on `pool`. It ends with the pool, or when the returned value drops.
pub(crate) fn spawn(pool: PgPool) -> Arc<Statistics> {
    let task = tokio::spawn(async move {
        // The first look one interval after connecting: after the migrations.
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + INTERVAL, INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if pool.is_closed() {
                return;
            }
            if let Err(e) = analyze_new_tables(&pool).await {
                // A lock wait beyond lock_timeout (a migration of another process), a lost
                // connection: the next round tries again.
                tracing::warn!(error = %e, "first statistics of new tables failed");
            }
        }
    });
    Arc::new(Statistics(task.abort_handle()))
}

/// Analyzes the tables of the current schema that have never been analyzed and have
/// [`MIN_ROWS`] changed and live rows.
async fn analyze_new_tables(pool: &PgPool) -> Result<(), sqlx::Error> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT relname::text FROM pg_stat_user_tables \
         WHERE schemaname = current_schema() AND last_analyze IS NULL AND last_autoanalyze IS NULL \
         AND n_mod_since_analyze >= $1 AND n_live_tup >= $1 ORDER BY relname",
    )
    .bind(MIN_ROWS)
    .fetch_all(pool)
    .await?;
    for table in &tables {
        // The name comes from the catalog; quoted as an identifier all the same.
        let name = format!("\"{}\"", table.replace('"', "\"\""));
        sqlx::raw_sql(AssertSqlSafe(format!("ANALYZE {name}")))
            .execute(pool)
            .await?;
        tracing::debug!(table = %table, "analyzed a new table");
    }
    Ok(())
}
