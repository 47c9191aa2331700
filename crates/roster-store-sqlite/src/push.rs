//! [`PushTx`] on SQLite: the push tables of `migrations/0002_push.sql`.
//!
//! Claims: SQLite has one writer. A read-write transaction is `BEGIN IMMEDIATE` on the store's
//! only writer connection (and the file's write lock keeps out other processes), so from its
//! first statement no other transaction can read-then-write the queue until it ends. A claim
//! (`UPDATE ... WHERE rowid IN (SELECT ... due ...) RETURNING`) therefore sees and takes due
//! records that nobody else can take at the same moment: the single writer does what `FOR
//! UPDATE SKIP LOCKED` does on PostgreSQL. Audience jobs likewise: the chunk transaction that
//! claimed a job is the only writer until it commits or rolls back.

use std::sync::LazyLock;

use async_trait::async_trait;
use roster_model::{Installation, Millis, Provider, TokenClearedReason};
use roster_store::columns::{id, json};
use roster_store::push::{
    AttemptResult, AudienceJob, AudienceState, Bulk, Delivery, DeliveryCounts, DeliveryStatus, IdempotencyRecord,
    IdempotencyState, Message, PushTable, QueueDepth, QueueState, SubmissionStatus,
};
use roster_store::{
    PushTx, Snapshot, StoreResult, audience_job_columns, delivery_columns, idempotency_columns, installation_columns,
    message_columns, page_limit,
};
use rusqlite::{Connection, Row, params};
use uuid::Uuid;

use crate::rows::{self, bool_at, enum_at, json_at, opt_uuid_at, uuid_at};
use crate::sql::{count, execute, expect_one, power_of_two_chunks, query_all, query_opt};
use crate::tx::SqliteTx;

/// The start of GDPR erase's statement (management-api.md §8.2 step 3), the time as `?3`: a
/// record loses its ids, and one still `QUEUED` becomes `FAILED` with reason `ERASED` (every
/// expression reads the row as it was).
macro_rules! erase_set {
    () => {
        "UPDATE deliveries SET status = CASE WHEN status = 'QUEUED' THEN 'FAILED' ELSE status END, \
         provider_http_status = CASE WHEN status = 'QUEUED' THEN NULL ELSE provider_http_status END, \
         provider_reason = CASE WHEN status = 'QUEUED' THEN 'ERASED' ELSE provider_reason END, \
         push_reg_id = NULL, person_id = NULL, updated_at = ?3 "
    };
}

pub(crate) fn message_row(row: &Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        account_id: uuid_at(row, 0)?,
        message_id: row.get(1)?,
        bulk_id: row.get(2)?,
        position: row.get(3)?,
        application_id: uuid_at(row, 4)?,
        destination: json_at(row, 5)?,
        content: json_at(row, 6)?,
        options: json_at(row, 7)?,
        target_only_primary: bool_at(row, 8)?,
        submission_status: enum_at(row, 9, SubmissionStatus::parse)?,
        audience_state: enum_at(row, 10, AudienceState::parse)?,
        audience_count: row.get(11)?,
        created_at: row.get(12)?,
        expires_at: row.get(13)?,
        updated_at: row.get(14)?,
    })
}

fn delivery_row(row: &Row<'_>) -> rusqlite::Result<Delivery> {
    Ok(Delivery {
        account_id: uuid_at(row, 0)?,
        delivery_id: uuid_at(row, 1)?,
        message_id: row.get(2)?,
        application_id: uuid_at(row, 3)?,
        push_reg_id: row.get(4)?,
        person_id: opt_uuid_at(row, 5)?,
        provider: enum_at(row, 6, Provider::parse)?,
        status: enum_at(row, 7, DeliveryStatus::parse)?,
        attempts: row.get(8)?,
        provider_http_status: row.get(9)?,
        provider_reason: row.get(10)?,
        created_at: row.get(11)?,
        updated_at: row.get(12)?,
        last_attempt_at: row.get(13)?,
        next_attempt_at: row.get(14)?,
        claim_id: opt_uuid_at(row, 15)?,
        delivered_at: row.get(16)?,
        seen_at: row.get(17)?,
    })
}

fn audience_job_row(row: &Row<'_>) -> rusqlite::Result<AudienceJob> {
    Ok(AudienceJob {
        account_id: uuid_at(row, 0)?,
        message_id: row.get(1)?,
        application_id: uuid_at(row, 2)?,
        filter: json_at(row, 3)?,
        target_only_primary: bool_at(row, 4)?,
        after_push_reg_id: row.get(5)?,
        created_at: row.get(6)?,
        updated_at: row.get(7)?,
    })
}

fn idempotency_row(row: &Row<'_>) -> rusqlite::Result<IdempotencyRecord> {
    let status: Option<i64> = row.get(5)?;
    Ok(IdempotencyRecord {
        account_id: uuid_at(row, 0)?,
        key: row.get(1)?,
        fingerprint: row.get(2)?,
        owner: uuid_at(row, 3)?,
        state: enum_at(row, 4, IdempotencyState::parse)?,
        response_status: status.map(|s| u16::try_from(s).unwrap_or(500)),
        response_body: row.get(6)?,
        created_at: row.get(7)?,
        expires_at: row.get(8)?,
    })
}

fn insert_message(conn: &Connection, m: &Message) -> StoreResult<()> {
    execute(
        conn,
        concat!(
            "INSERT INTO messages (",
            message_columns!(),
            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
        ),
        params![
            id(m.account_id),
            m.message_id,
            m.bulk_id,
            m.position,
            id(m.application_id),
            json(&m.destination)?,
            json(&m.content)?,
            json(&m.options)?,
            m.target_only_primary,
            m.submission_status.as_str(),
            m.audience_state.as_str(),
            m.audience_count,
            m.created_at,
            m.expires_at,
            m.updated_at,
        ],
    )
    .map(drop)
}

/// Most delivery records in one `INSERT`: an audience resolution writes them by the thousand,
/// and one statement per record made the statement's own cost (bind, step, reset) a part of
/// every notification's. Chunks of 32, 16, ..., 1 rows (the largest that fits, so that six
/// statements are ever prepared and cached); 32 rows are 576 parameters.
const DELIVERIES_PER_INSERT: usize = 32;

/// Columns of a delivery record, in `delivery_columns!()` order.
const DELIVERY_COLUMNS: usize = 18;

/// `INSERT INTO deliveries` of 1, 2, 4, ..., [`DELIVERIES_PER_INSERT`] rows, by the log2 of
/// the row count: built once, not for every chunk of a resolution.
static INSERT_DELIVERIES_SQL: LazyLock<[String; DELIVERIES_PER_INSERT.ilog2() as usize + 1]> =
    LazyLock::new(|| std::array::from_fn(|k| insert_deliveries_sql(1 << k)));

/// `INSERT INTO deliveries` of `rows` rows.
fn insert_deliveries_sql(rows: usize) -> String {
    let mut sql = concat!("INSERT INTO deliveries (", delivery_columns!(), ") VALUES ").to_string();
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..DELIVERY_COLUMNS {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("?{}", r * DELIVERY_COLUMNS + c + 1));
        }
        sql.push(')');
    }
    sql
}

/// Inserts `chunk` (at most [`DELIVERIES_PER_INSERT`] records) in one statement.
fn insert_delivery_rows(conn: &Connection, chunk: &[Delivery]) -> StoreResult<()> {
    // The text forms of the ids, owned here so that the parameters can borrow them.
    let ids: Vec<[Option<String>; 5]> = chunk
        .iter()
        .map(|d| {
            [
                Some(id(d.account_id)),
                Some(id(d.delivery_id)),
                Some(id(d.application_id)),
                d.person_id.map(id),
                d.claim_id.map(id),
            ]
        })
        .collect();
    let kinds: Vec<[&'static str; 2]> = chunk.iter().map(|d| [d.provider.as_str(), d.status.as_str()]).collect();
    let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(chunk.len() * DELIVERY_COLUMNS);
    for ((d, [account, delivery, application, person, claim]), [provider, status]) in chunk.iter().zip(&ids).zip(&kinds)
    {
        values.extend([
            account as &dyn rusqlite::ToSql,
            delivery,
            &d.message_id,
            application,
            &d.push_reg_id,
            person,
            provider,
            status,
            &d.attempts,
            &d.provider_http_status,
            &d.provider_reason,
            &d.created_at,
            &d.updated_at,
            &d.last_attempt_at,
            &d.next_attempt_at,
            claim,
            &d.delivered_at,
            &d.seen_at,
        ]);
    }
    execute(
        conn,
        &INSERT_DELIVERIES_SQL[chunk.len().ilog2() as usize],
        rusqlite::params_from_iter(values),
    )
    .map(drop)
}

/// `QUEUED` records by provider and [`QueueState`] at `?1` (a claim's lease end is its
/// `next_attempt_at`; a retry waiting has no claim). The same text as PostgreSQL's with `$1`.
const QUEUE_DEPTH_SQL: &str = "SELECT provider, CASE WHEN next_attempt_at <= ?1 THEN 'due' \
     WHEN claim_id IS NOT NULL THEN 'claimed' ELSE 'retry_waiting' END AS state, count(*) \
     FROM deliveries WHERE status = 'QUEUED' GROUP BY 1, 2";

/// A message's records by status, and the ones reported delivered and seen (the same on every
/// row: the subqueries run once), in one statement, so in one snapshot. The status counts read
/// `deliveries_message_status_idx` alone, the report counts the partial indexes of reported
/// records (migration 8): never the records themselves.
pub const DELIVERY_COUNTS: &str = "SELECT status, count(*), \
       (SELECT count(*) FROM deliveries WHERE account_id = ?1 AND message_id = ?2 AND delivered_at IS NOT NULL), \
       (SELECT count(*) FROM deliveries WHERE account_id = ?1 AND message_id = ?2 AND seen_at IS NOT NULL) \
     FROM deliveries WHERE account_id = ?1 AND message_id = ?2 GROUP BY status";

/// The installations of a claimed batch (`PushTx::installations_by_ids`). `+account_id`: the id
/// list drives the lookups (primary key); on the account's index SQLite would read every
/// installation of the account for each batch (measured: a 100,000-installation send fell from
/// 6,061 to 838 notifications/s). A test checks the plan.
pub const INSTALLATIONS_BY_IDS: &str = concat!(
    "SELECT ",
    installation_columns!(),
    " FROM installations WHERE +account_id = ?1 AND push_reg_id IN (SELECT value FROM json_each(?2))"
);

#[async_trait]
impl PushTx for SqliteTx {
    async fn insert_bulk(&mut self, bulk: &Bulk) -> StoreResult<()> {
        execute(
            self.conn()?,
            "INSERT INTO bulks (account_id, bulk_id, created_at) VALUES (?1, ?2, ?3)",
            params![id(bulk.account_id), bulk.bulk_id, bulk.created_at],
        )
        .map(drop)
    }

    async fn bulk_exists(&mut self, account_id: Uuid, bulk_id: &str) -> StoreResult<bool> {
        count(
            self.conn()?,
            "SELECT count(*) FROM bulks WHERE account_id = ?1 AND bulk_id = ?2",
            params![id(account_id), bulk_id],
        )
        .map(|n| n > 0)
    }

    async fn insert_message(&mut self, message: &Message) -> StoreResult<()> {
        insert_message(self.conn()?, message)
    }

    async fn message(&mut self, account_id: Uuid, message_id: &str) -> StoreResult<Option<Message>> {
        query_opt(
            self.conn()?,
            concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE account_id = ?1 AND message_id = ?2"
            ),
            params![id(account_id), message_id],
            message_row,
        )
    }

    async fn messages_of_bulk(
        &mut self,
        account_id: Uuid,
        bulk_id: &str,
        after_position: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<Message>> {
        query_all(
            self.conn()?,
            concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE account_id = ?1 AND bulk_id = ?2 AND position > ?3 \
                 ORDER BY position LIMIT ?4"
            ),
            params![id(account_id), bulk_id, after_position.unwrap_or(-1), page_limit(limit)],
            message_row,
        )
    }

    async fn set_message_audience(
        &mut self,
        account_id: Uuid,
        message_id: &str,
        state: AudienceState,
        count: i64,
        now: Millis,
    ) -> StoreResult<()> {
        let changed = execute(
            self.conn()?,
            "UPDATE messages SET audience_state = ?3, audience_count = ?4, updated_at = ?5 \
             WHERE account_id = ?1 AND message_id = ?2",
            params![id(account_id), message_id, state.as_str(), count, now],
        )?;
        expect_one(changed)
    }

    async fn insert_audience_job(&mut self, job: &AudienceJob) -> StoreResult<()> {
        execute(
            self.conn()?,
            concat!(
                "INSERT INTO audience_jobs (",
                audience_job_columns!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ),
            params![
                id(job.account_id),
                job.message_id,
                id(job.application_id),
                json(&job.filter)?,
                job.target_only_primary,
                job.after_push_reg_id,
                job.created_at,
                job.updated_at,
            ],
        )
        .map(drop)
    }

    async fn claim_audience_job(&mut self) -> StoreResult<Option<AudienceJob>> {
        // The single writer holds the job until this transaction ends (module comment).
        query_opt(
            self.conn()?,
            concat!(
                "SELECT ",
                audience_job_columns!(),
                " FROM audience_jobs ORDER BY updated_at, account_id, message_id LIMIT 1"
            ),
            [],
            audience_job_row,
        )
    }

    async fn advance_audience_job(
        &mut self,
        account_id: Uuid,
        message_id: &str,
        after_push_reg_id: &str,
        now: Millis,
    ) -> StoreResult<()> {
        let changed = execute(
            self.conn()?,
            "UPDATE audience_jobs SET after_push_reg_id = ?3, updated_at = ?4 \
             WHERE account_id = ?1 AND message_id = ?2",
            params![id(account_id), message_id, after_push_reg_id, now],
        )?;
        expect_one(changed)
    }

    async fn delete_audience_job(&mut self, account_id: Uuid, message_id: &str) -> StoreResult<()> {
        execute(
            self.conn()?,
            "DELETE FROM audience_jobs WHERE account_id = ?1 AND message_id = ?2",
            params![id(account_id), message_id],
        )
        .map(drop)
    }

    async fn insert_deliveries(&mut self, deliveries: &[Delivery]) -> StoreResult<()> {
        let conn = self.conn()?;
        for chunk in power_of_two_chunks(deliveries, DELIVERIES_PER_INSERT) {
            insert_delivery_rows(conn, chunk)?;
        }
        Ok(())
    }

    async fn delivery(&mut self, account_id: Uuid, delivery_id: Uuid) -> StoreResult<Option<Delivery>> {
        query_opt(
            self.conn()?,
            concat!(
                "SELECT ",
                delivery_columns!(),
                " FROM deliveries WHERE account_id = ?1 AND delivery_id = ?2"
            ),
            params![id(account_id), id(delivery_id)],
            delivery_row,
        )
    }

    async fn deliveries_of_message(
        &mut self,
        account_id: Uuid,
        message_id: &str,
        status: Option<DeliveryStatus>,
        after: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<Delivery>> {
        let conn = self.conn()?;
        let after = after.map(id).unwrap_or_default();
        match status {
            None => query_all(
                conn,
                concat!(
                    "SELECT ",
                    delivery_columns!(),
                    " FROM deliveries WHERE account_id = ?1 AND message_id = ?2 AND delivery_id > ?3 \
                     ORDER BY delivery_id LIMIT ?4"
                ),
                params![id(account_id), message_id, after, page_limit(limit)],
                delivery_row,
            ),
            Some(status) => query_all(
                conn,
                concat!(
                    "SELECT ",
                    delivery_columns!(),
                    " FROM deliveries WHERE account_id = ?1 AND message_id = ?2 AND status = ?3 \
                     AND delivery_id > ?4 ORDER BY delivery_id LIMIT ?5"
                ),
                params![id(account_id), message_id, status.as_str(), after, page_limit(limit)],
                delivery_row,
            ),
        }
    }

    async fn delivery_counts(&mut self, account_id: Uuid, message_id: &str) -> StoreResult<DeliveryCounts> {
        let rows = query_all(
            self.conn()?,
            DELIVERY_COUNTS,
            params![id(account_id), message_id],
            |r| {
                Ok((
                    enum_at(r, 0, DeliveryStatus::parse)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            },
        )?;
        let mut counts = DeliveryCounts::default();
        // The report counts are the same on every row ([`DELIVERY_COUNTS`]).
        for (status, n, delivered, seen) in rows {
            counts.by_status.insert(status, n.max(0) as u64);
            counts.delivered = delivered.max(0) as u64;
            counts.seen = seen.max(0) as u64;
        }
        Ok(counts)
    }

    async fn queue_depth(&mut self, now: Millis) -> StoreResult<QueueDepth> {
        let conn = self.conn()?;
        let rows = query_all(conn, QUEUE_DEPTH_SQL, params![now], |r| {
            Ok((
                enum_at(r, 0, Provider::parse)?,
                enum_at(r, 1, QueueState::parse)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        let mut depth = QueueDepth {
            audience_jobs: count(conn, "SELECT count(*) FROM audience_jobs", [])?,
            ..QueueDepth::default()
        };
        for (provider, state, n) in rows {
            depth.deliveries.insert((provider, state), n.max(0) as u64);
        }
        Ok(depth)
    }

    async fn claim_deliveries(
        &mut self,
        now: Millis,
        lease_until: Millis,
        claim_id: Uuid,
        limit: u32,
    ) -> StoreResult<Vec<Delivery>> {
        // Exclusive by the single writer (module comment).
        query_all(
            self.conn()?,
            concat!(
                "UPDATE deliveries SET next_attempt_at = ?2, claim_id = ?3 \
                 WHERE rowid IN (SELECT rowid FROM deliveries \
                 WHERE status = 'QUEUED' AND next_attempt_at <= ?1 ORDER BY next_attempt_at LIMIT ?4) \
                 RETURNING ",
                delivery_columns!()
            ),
            params![now, lease_until, id(claim_id), page_limit(limit)],
            delivery_row,
        )
    }

    async fn finish_attempt(&mut self, r: &AttemptResult) -> StoreResult<bool> {
        // A retry (QUEUED again) releases the claim; a terminal status keeps it for the record.
        let claim = (r.status.is_terminal()).then(|| id(r.claim_id));
        let changed = execute(
            self.conn()?,
            "UPDATE deliveries SET status = ?4, provider = ?5, attempts = ?6, provider_http_status = ?7, \
             provider_reason = ?8, last_attempt_at = ?9, next_attempt_at = ?10, claim_id = ?11, updated_at = ?12 \
             WHERE account_id = ?1 AND delivery_id = ?2 AND claim_id = ?3 AND status = 'QUEUED'",
            params![
                id(r.account_id),
                id(r.delivery_id),
                id(r.claim_id),
                r.status.as_str(),
                r.provider.as_str(),
                r.attempts,
                r.provider_http_status,
                r.provider_reason,
                r.last_attempt_at,
                r.next_attempt_at,
                claim,
                r.now,
            ],
        )?;
        Ok(changed > 0)
    }

    async fn installations_by_ids(
        &mut self,
        account_id: Uuid,
        push_reg_ids: &[String],
    ) -> StoreResult<Vec<Installation>> {
        if push_reg_ids.is_empty() {
            return Ok(Vec::new());
        }
        query_all(
            self.conn()?,
            INSTALLATIONS_BY_IDS,
            params![id(account_id), json(&push_reg_ids)?],
            rows::installation,
        )
    }

    async fn record_device_reports(
        &mut self,
        account_id: Uuid,
        push_reg_id: &str,
        delivery_ids: &[Uuid],
        at: Millis,
        seen: bool,
    ) -> StoreResult<u64> {
        let conn = self.conn()?;
        let mut changed = 0u64;
        for delivery_id in delivery_ids {
            let n = execute(
                conn,
                "UPDATE deliveries SET delivered_at = coalesce(delivered_at, ?4), \
                 seen_at = CASE WHEN ?5 THEN coalesce(seen_at, ?4) ELSE seen_at END, updated_at = ?4 \
                 WHERE account_id = ?1 AND delivery_id = ?2 AND push_reg_id = ?3 \
                 AND (delivered_at IS NULL OR (?5 AND seen_at IS NULL))",
                params![id(account_id), id(*delivery_id), push_reg_id, at, seen],
            )?;
            changed += n as u64;
        }
        Ok(changed)
    }

    async fn deliveries_of_installations(
        &mut self,
        account_id: Uuid,
        push_reg_ids: &[String],
    ) -> StoreResult<Vec<Delivery>> {
        let conn = self.conn()?;
        let mut out = Vec::new();
        for push_reg_id in push_reg_ids {
            out.extend(query_all(
                conn,
                concat!(
                    "SELECT ",
                    delivery_columns!(),
                    " FROM deliveries WHERE account_id = ?1 AND push_reg_id = ?2"
                ),
                params![id(account_id), push_reg_id],
                delivery_row,
            )?);
        }
        out.sort_by_key(|d| d.delivery_id);
        Ok(out)
    }

    async fn anonymise_deliveries(
        &mut self,
        account_id: Uuid,
        person_id: Uuid,
        push_reg_ids: &[String],
        now: Millis,
    ) -> StoreResult<u64> {
        const ERASE: &str = concat!(erase_set!(), "WHERE account_id = ?1 AND person_id = ?2");
        const ERASE_INSTALLATION: &str = concat!(erase_set!(), "WHERE account_id = ?1 AND push_reg_id = ?2");
        let conn = self.conn()?;
        let mut changed = execute(conn, ERASE, params![id(account_id), id(person_id), now])? as u64;
        for push_reg_id in push_reg_ids {
            changed += execute(conn, ERASE_INSTALLATION, params![id(account_id), push_reg_id, now])? as u64;
        }
        Ok(changed)
    }

    async fn clear_token_if_held(
        &mut self,
        account_id: Uuid,
        push_reg_id: &str,
        token: &str,
        reason: TokenClearedReason,
        now: Millis,
    ) -> StoreResult<bool> {
        let changed = execute(
            self.conn()?,
            "UPDATE installations SET push_service_token = NULL, token_cleared_at = ?4, \
             token_cleared_reason = ?5, updated_at = ?4 \
             WHERE account_id = ?1 AND push_reg_id = ?2 AND push_service_token = ?3",
            params![id(account_id), push_reg_id, token, now, reason.as_str()],
        )?;
        Ok(changed > 0)
    }

    async fn idempotency_record(&mut self, account_id: Uuid, key: &str) -> StoreResult<Option<IdempotencyRecord>> {
        query_opt(
            self.conn()?,
            concat!(
                "SELECT ",
                idempotency_columns!(),
                " FROM idempotency_keys WHERE account_id = ?1 AND idem_key = ?2"
            ),
            params![id(account_id), key],
            idempotency_row,
        )
    }

    async fn insert_idempotency_record(&mut self, r: &IdempotencyRecord) -> StoreResult<()> {
        execute(
            self.conn()?,
            concat!(
                "INSERT INTO idempotency_keys (",
                idempotency_columns!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ),
            params![
                id(r.account_id),
                r.key,
                r.fingerprint,
                id(r.owner),
                r.state.as_str(),
                r.response_status.map(i64::from),
                r.response_body,
                r.created_at,
                r.expires_at,
            ],
        )
        .map(drop)
    }

    async fn put_idempotency_record(&mut self, r: &IdempotencyRecord) -> StoreResult<()> {
        execute(
            self.conn()?,
            concat!(
                "INSERT INTO idempotency_keys (",
                idempotency_columns!(),
                ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
                 ON CONFLICT (account_id, idem_key) DO UPDATE SET fingerprint = excluded.fingerprint, \
                 owner = excluded.owner, state = excluded.state, response_status = excluded.response_status, \
                 response_body = excluded.response_body, created_at = excluded.created_at, \
                 expires_at = excluded.expires_at"
            ),
            params![
                id(r.account_id),
                r.key,
                r.fingerprint,
                id(r.owner),
                r.state.as_str(),
                r.response_status.map(i64::from),
                r.response_body,
                r.created_at,
                r.expires_at,
            ],
        )
        .map(drop)
    }

    async fn delete_idempotency_record(&mut self, account_id: Uuid, key: &str, owner: Uuid) -> StoreResult<bool> {
        let changed = execute(
            self.conn()?,
            "DELETE FROM idempotency_keys WHERE account_id = ?1 AND idem_key = ?2 AND owner = ?3",
            params![id(account_id), key, id(owner)],
        )?;
        Ok(changed > 0)
    }

    async fn count_push_rows(&mut self, account_id: Uuid, table: PushTable) -> StoreResult<u64> {
        let sql = match table {
            PushTable::Bulk => "SELECT count(*) FROM bulks WHERE account_id = ?1",
            PushTable::Message => "SELECT count(*) FROM messages WHERE account_id = ?1",
            PushTable::AudienceJob => "SELECT count(*) FROM audience_jobs WHERE account_id = ?1",
            PushTable::Delivery => "SELECT count(*) FROM deliveries WHERE account_id = ?1",
            PushTable::IdempotencyRecord => "SELECT count(*) FROM idempotency_keys WHERE account_id = ?1",
        };
        count(self.conn()?, sql, params![id(account_id)])
    }

    async fn bulks_page(&mut self, account_id: Uuid, after: Option<&str>, limit: u32) -> StoreResult<Vec<Bulk>> {
        query_all(
            self.conn()?,
            "SELECT account_id, bulk_id, created_at FROM bulks WHERE account_id = ?1 AND bulk_id > ?2 \
             ORDER BY bulk_id LIMIT ?3",
            params![id(account_id), after.unwrap_or_default(), page_limit(limit)],
            bulk_row,
        )
    }

    async fn messages_page(&mut self, account_id: Uuid, after: Option<&str>, limit: u32) -> StoreResult<Vec<Message>> {
        query_all(
            self.conn()?,
            concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages WHERE account_id = ?1 AND message_id > ?2 ORDER BY message_id LIMIT ?3"
            ),
            params![id(account_id), after.unwrap_or_default(), page_limit(limit)],
            message_row,
        )
    }

    async fn audience_jobs_page(
        &mut self,
        account_id: Uuid,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<AudienceJob>> {
        query_all(
            self.conn()?,
            concat!(
                "SELECT ",
                audience_job_columns!(),
                " FROM audience_jobs WHERE account_id = ?1 AND message_id > ?2 ORDER BY message_id LIMIT ?3"
            ),
            params![id(account_id), after.unwrap_or_default(), page_limit(limit)],
            audience_job_row,
        )
    }

    async fn deliveries_page(
        &mut self,
        account_id: Uuid,
        after: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<Delivery>> {
        query_all(
            self.conn()?,
            concat!(
                "SELECT ",
                delivery_columns!(),
                " FROM deliveries WHERE account_id = ?1 AND delivery_id > ?2 ORDER BY delivery_id LIMIT ?3"
            ),
            params![id(account_id), after.map(id).unwrap_or_default(), page_limit(limit)],
            delivery_row,
        )
    }

    async fn idempotency_records_page(
        &mut self,
        account_id: Uuid,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<IdempotencyRecord>> {
        query_all(
            self.conn()?,
            concat!(
                "SELECT ",
                idempotency_columns!(),
                " FROM idempotency_keys WHERE account_id = ?1 AND idem_key > ?2 ORDER BY idem_key LIMIT ?3"
            ),
            params![id(account_id), after.unwrap_or_default(), page_limit(limit)],
            idempotency_row,
        )
    }
}

fn bulk_row(row: &Row<'_>) -> rusqlite::Result<Bulk> {
    Ok(Bulk {
        account_id: uuid_at(row, 0)?,
        bulk_id: row.get(1)?,
        created_at: row.get(2)?,
    })
}

/// Fills the push tables of a [`Snapshot`], each by (account, primary key).
pub(crate) fn snapshot_into(conn: &Connection, snapshot: &mut Snapshot) -> StoreResult<()> {
    snapshot.bulks = query_all(
        conn,
        "SELECT account_id, bulk_id, created_at FROM bulks ORDER BY account_id, bulk_id",
        [],
        bulk_row,
    )?;
    snapshot.messages = query_all(
        conn,
        concat!(
            "SELECT ",
            message_columns!(),
            " FROM messages ORDER BY account_id, message_id"
        ),
        [],
        message_row,
    )?;
    snapshot.audience_jobs = query_all(
        conn,
        concat!(
            "SELECT ",
            audience_job_columns!(),
            " FROM audience_jobs ORDER BY account_id, message_id"
        ),
        [],
        audience_job_row,
    )?;
    snapshot.deliveries = query_all(
        conn,
        concat!(
            "SELECT ",
            delivery_columns!(),
            " FROM deliveries ORDER BY account_id, delivery_id"
        ),
        [],
        delivery_row,
    )?;
    snapshot.idempotency_records = query_all(
        conn,
        concat!(
            "SELECT ",
            idempotency_columns!(),
            " FROM idempotency_keys ORDER BY account_id, idem_key"
        ),
        [],
        idempotency_row,
    )?;
    Ok(())
}
