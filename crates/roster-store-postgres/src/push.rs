//! [`PushTx`] on PostgreSQL: the push tables of `migrations/0002_push.sql`, with the statements of
//! the SQLite backend (`roster-store-sqlite/src/push.rs`) in PostgreSQL's dialect.
//!
//! Claims take row locks with `FOR UPDATE SKIP LOCKED`: any number of server processes may claim
//! at once, each gets due rows that no other transaction is claiming, and nobody waits. A claim
//! of deliveries commits at once (the lease in `next_attempt_at` then keeps the rows out of
//! other claims); a claimed audience job stays locked until its chunk transaction ends.

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
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::rows::{self, enum_at, get, json_at, opt_uuid_at, uuid_at};
use crate::sql::{Conn, expect_one};
use crate::tx::PgTx;

pub(crate) fn message_row(row: &PgRow) -> StoreResult<Message> {
    Ok(Message {
        account_id: uuid_at(row, 0)?,
        message_id: get(row, 1)?,
        bulk_id: get(row, 2)?,
        position: get(row, 3)?,
        application_id: uuid_at(row, 4)?,
        destination: json_at(row, 5)?,
        content: json_at(row, 6)?,
        options: json_at(row, 7)?,
        target_only_primary: get(row, 8)?,
        submission_status: enum_at(row, 9, SubmissionStatus::parse)?,
        audience_state: enum_at(row, 10, AudienceState::parse)?,
        audience_count: get(row, 11)?,
        created_at: get(row, 12)?,
        expires_at: get(row, 13)?,
        updated_at: get(row, 14)?,
    })
}

fn delivery_row(row: &PgRow) -> StoreResult<Delivery> {
    Ok(Delivery {
        account_id: uuid_at(row, 0)?,
        delivery_id: uuid_at(row, 1)?,
        message_id: get(row, 2)?,
        application_id: uuid_at(row, 3)?,
        push_reg_id: get(row, 4)?,
        person_id: opt_uuid_at(row, 5)?,
        provider: enum_at(row, 6, Provider::parse)?,
        status: enum_at(row, 7, DeliveryStatus::parse)?,
        attempts: get(row, 8)?,
        provider_http_status: get(row, 9)?,
        provider_reason: get(row, 10)?,
        created_at: get(row, 11)?,
        updated_at: get(row, 12)?,
        last_attempt_at: get(row, 13)?,
        next_attempt_at: get(row, 14)?,
        claim_id: opt_uuid_at(row, 15)?,
        delivered_at: get(row, 16)?,
        seen_at: get(row, 17)?,
    })
}

fn audience_job_row(row: &PgRow) -> StoreResult<AudienceJob> {
    Ok(AudienceJob {
        account_id: uuid_at(row, 0)?,
        message_id: get(row, 1)?,
        application_id: uuid_at(row, 2)?,
        filter: json_at(row, 3)?,
        target_only_primary: get(row, 4)?,
        after_push_reg_id: get(row, 5)?,
        created_at: get(row, 6)?,
        updated_at: get(row, 7)?,
    })
}

fn idempotency_row(row: &PgRow) -> StoreResult<IdempotencyRecord> {
    let status: Option<i64> = get(row, 5)?;
    Ok(IdempotencyRecord {
        account_id: uuid_at(row, 0)?,
        key: get(row, 1)?,
        fingerprint: get(row, 2)?,
        owner: uuid_at(row, 3)?,
        state: enum_at(row, 4, IdempotencyState::parse)?,
        response_status: status.map(|s| u16::try_from(s).unwrap_or(500)),
        response_body: get(row, 6)?,
        created_at: get(row, 7)?,
        expires_at: get(row, 8)?,
    })
}

/// A `GROUP BY status` row of [`PushTx::delivery_counts`].
fn count_row(row: &PgRow) -> StoreResult<(DeliveryStatus, i64, i64, i64)> {
    Ok((
        enum_at(row, 0, DeliveryStatus::parse)?,
        get(row, 1)?,
        get(row, 2)?,
        get(row, 3)?,
    ))
}

/// A row of [`PushTx::queue_depth`]: (provider, state, count).
fn queue_row(row: &PgRow) -> StoreResult<(Provider, QueueState, i64)> {
    Ok((
        enum_at(row, 0, Provider::parse)?,
        enum_at(row, 1, QueueState::parse)?,
        get(row, 2)?,
    ))
}

#[async_trait]
impl PushTx for PgTx {
    async fn insert_bulk(&mut self, bulk: &Bulk) -> StoreResult<()> {
        self.conn()?
            .execute(
                sqlx::query("INSERT INTO bulks (account_id, bulk_id, created_at) VALUES ($1, $2, $3)")
                    .bind(id(bulk.account_id))
                    .bind(bulk.bulk_id.clone())
                    .bind(bulk.created_at),
            )
            .await
            .map(drop)
    }

    async fn bulk_exists(&mut self, account_id: Uuid, bulk_id: &str) -> StoreResult<bool> {
        let n = self
            .conn()?
            .count(
                sqlx::query("SELECT count(*) FROM bulks WHERE account_id = $1 AND bulk_id = $2")
                    .bind(id(account_id))
                    .bind(bulk_id.to_owned()),
            )
            .await?;
        Ok(n > 0)
    }

    async fn insert_message(&mut self, m: &Message) -> StoreResult<()> {
        self.conn()?
            .execute(
                sqlx::query(concat!(
                    "INSERT INTO messages (",
                    message_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
                ))
                .bind(id(m.account_id))
                .bind(m.message_id.clone())
                .bind(m.bulk_id.clone())
                .bind(m.position)
                .bind(id(m.application_id))
                .bind(json(&m.destination)?)
                .bind(json(&m.content)?)
                .bind(json(&m.options)?)
                .bind(m.target_only_primary)
                .bind(m.submission_status.as_str())
                .bind(m.audience_state.as_str())
                .bind(m.audience_count)
                .bind(m.created_at)
                .bind(m.expires_at)
                .bind(m.updated_at),
            )
            .await
            .map(drop)
    }

    async fn message(&mut self, account_id: Uuid, message_id: &str) -> StoreResult<Option<Message>> {
        self.conn()?
            .query_opt(
                sqlx::query(concat!(
                    "SELECT ",
                    message_columns!(),
                    " FROM messages WHERE account_id = $1 AND message_id = $2"
                ))
                .bind(id(account_id))
                .bind(message_id.to_owned()),
                message_row,
            )
            .await
    }

    async fn messages_of_bulk(
        &mut self,
        account_id: Uuid,
        bulk_id: &str,
        after_position: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<Message>> {
        self.conn()?
            .query_all(
                sqlx::query(concat!(
                    "SELECT ",
                    message_columns!(),
                    " FROM messages WHERE account_id = $1 AND bulk_id = $2 AND position > $3 \
                     ORDER BY position LIMIT $4"
                ))
                .bind(id(account_id))
                .bind(bulk_id.to_owned())
                .bind(after_position.unwrap_or(-1))
                .bind(page_limit(limit)),
                message_row,
            )
            .await
    }

    async fn set_message_audience(
        &mut self,
        account_id: Uuid,
        message_id: &str,
        state: AudienceState,
        count: i64,
        now: Millis,
    ) -> StoreResult<()> {
        let changed = self
            .conn()?
            .execute(
                sqlx::query(
                    "UPDATE messages SET audience_state = $3, audience_count = $4, updated_at = $5 \
                     WHERE account_id = $1 AND message_id = $2",
                )
                .bind(id(account_id))
                .bind(message_id.to_owned())
                .bind(state.as_str())
                .bind(count)
                .bind(now),
            )
            .await?;
        expect_one(changed)
    }

    async fn insert_audience_job(&mut self, job: &AudienceJob) -> StoreResult<()> {
        self.conn()?
            .execute(
                sqlx::query(concat!(
                    "INSERT INTO audience_jobs (",
                    audience_job_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                ))
                .bind(id(job.account_id))
                .bind(job.message_id.clone())
                .bind(id(job.application_id))
                .bind(json(&job.filter)?)
                .bind(job.target_only_primary)
                .bind(job.after_push_reg_id.clone())
                .bind(job.created_at)
                .bind(job.updated_at),
            )
            .await
            .map(drop)
    }

    async fn claim_audience_job(&mut self) -> StoreResult<Option<AudienceJob>> {
        self.conn()?
            .query_opt(
                sqlx::query(concat!(
                    "SELECT ",
                    audience_job_columns!(),
                    " FROM audience_jobs ORDER BY updated_at, account_id, message_id LIMIT 1 \
                     FOR UPDATE SKIP LOCKED"
                )),
                audience_job_row,
            )
            .await
    }

    async fn advance_audience_job(
        &mut self,
        account_id: Uuid,
        message_id: &str,
        after_push_reg_id: &str,
        now: Millis,
    ) -> StoreResult<()> {
        let changed = self
            .conn()?
            .execute(
                sqlx::query(
                    "UPDATE audience_jobs SET after_push_reg_id = $3, updated_at = $4 \
                     WHERE account_id = $1 AND message_id = $2",
                )
                .bind(id(account_id))
                .bind(message_id.to_owned())
                .bind(after_push_reg_id.to_owned())
                .bind(now),
            )
            .await?;
        expect_one(changed)
    }

    async fn delete_audience_job(&mut self, account_id: Uuid, message_id: &str) -> StoreResult<()> {
        self.conn()?
            .execute(
                sqlx::query("DELETE FROM audience_jobs WHERE account_id = $1 AND message_id = $2")
                    .bind(id(account_id))
                    .bind(message_id.to_owned()),
            )
            .await
            .map(drop)
    }

    /// One statement for the whole list (`UNNEST` of one array per column).
    async fn insert_deliveries(&mut self, deliveries: &[Delivery]) -> StoreResult<()> {
        if deliveries.is_empty() {
            return Ok(());
        }
        let col = |f: fn(&Delivery) -> String| deliveries.iter().map(f).collect::<Vec<String>>();
        let opt = |f: fn(&Delivery) -> Option<String>| deliveries.iter().map(f).collect::<Vec<Option<String>>>();
        let num = |f: fn(&Delivery) -> i64| deliveries.iter().map(f).collect::<Vec<i64>>();
        let opt_num = |f: fn(&Delivery) -> Option<i64>| deliveries.iter().map(f).collect::<Vec<Option<i64>>>();
        self.conn()?
            .execute(
                sqlx::query(concat!(
                    "INSERT INTO deliveries (",
                    delivery_columns!(),
                    ") SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                     $6::text[], $7::text[], $8::text[], $9::int8[], $10::int8[], $11::text[], $12::int8[], \
                     $13::int8[], $14::int8[], $15::int8[], $16::text[], $17::int8[], $18::int8[])"
                ))
                .bind(col(|d| id(d.account_id)))
                .bind(col(|d| id(d.delivery_id)))
                .bind(col(|d| d.message_id.clone()))
                .bind(col(|d| id(d.application_id)))
                .bind(opt(|d| d.push_reg_id.clone()))
                .bind(opt(|d| d.person_id.map(id)))
                .bind(col(|d| d.provider.as_str().to_owned()))
                .bind(col(|d| d.status.as_str().to_owned()))
                .bind(num(|d| d.attempts))
                .bind(opt_num(|d| d.provider_http_status))
                .bind(opt(|d| d.provider_reason.clone()))
                .bind(num(|d| d.created_at))
                .bind(num(|d| d.updated_at))
                .bind(opt_num(|d| d.last_attempt_at))
                .bind(num(|d| d.next_attempt_at))
                .bind(opt(|d| d.claim_id.map(id)))
                .bind(opt_num(|d| d.delivered_at))
                .bind(opt_num(|d| d.seen_at)),
            )
            .await
            .map(drop)
    }

    async fn delivery(&mut self, account_id: Uuid, delivery_id: Uuid) -> StoreResult<Option<Delivery>> {
        self.conn()?
            .query_opt(
                sqlx::query(concat!(
                    "SELECT ",
                    delivery_columns!(),
                    " FROM deliveries WHERE account_id = $1 AND delivery_id = $2"
                ))
                .bind(id(account_id))
                .bind(id(delivery_id)),
                delivery_row,
            )
            .await
    }

    async fn deliveries_of_message(
        &mut self,
        account_id: Uuid,
        message_id: &str,
        status: Option<DeliveryStatus>,
        after: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<Delivery>> {
        // One statement for both cases: a NULL status means every status.
        self.conn()?
            .query_all(
                sqlx::query(concat!(
                    "SELECT ",
                    delivery_columns!(),
                    " FROM deliveries WHERE account_id = $1 AND message_id = $2 \
                     AND ($3::text IS NULL OR status = $3) AND delivery_id > $4 \
                     ORDER BY delivery_id LIMIT $5"
                ))
                .bind(id(account_id))
                .bind(message_id.to_owned())
                .bind(status.map(|s| s.as_str().to_owned()))
                .bind(after.map(id).unwrap_or_default())
                .bind(page_limit(limit)),
                delivery_row,
            )
            .await
    }

    async fn delivery_counts(&mut self, account_id: Uuid, message_id: &str) -> StoreResult<DeliveryCounts> {
        let rows = self
            .conn()?
            .query_all(
                sqlx::query(
                    "SELECT status, count(*), \
                            (SELECT count(*) FROM deliveries WHERE account_id = $1 AND message_id = $2 \
                             AND delivered_at IS NOT NULL), \
                            (SELECT count(*) FROM deliveries WHERE account_id = $1 AND message_id = $2 \
                             AND seen_at IS NOT NULL) \
                     FROM deliveries WHERE account_id = $1 AND message_id = $2 GROUP BY status",
                )
                .bind(id(account_id))
                .bind(message_id.to_owned()),
                count_row,
            )
            .await?;
        let mut counts = DeliveryCounts::default();
        // The status counts read deliveries_message_status_idx alone; the report counts (the
        // same on every row: subqueries run once) the partial indexes of reported records
        // (migration 8). One statement, one snapshot.
        for (status, n, delivered, seen) in rows {
            counts.by_status.insert(status, n.max(0) as u64);
            counts.delivered = delivered.max(0) as u64;
            counts.seen = seen.max(0) as u64;
        }
        Ok(counts)
    }

    async fn queue_depth(&mut self, now: Millis) -> StoreResult<QueueDepth> {
        let c = self.conn()?;
        // The partial index on QUEUED records (deliveries_due_idx) bounds the read to queued work.
        let rows = c
            .query_all(
                sqlx::query(
                    "SELECT provider, CASE WHEN next_attempt_at <= $1 THEN 'due' \
                     WHEN claim_id IS NOT NULL THEN 'claimed' ELSE 'retry_waiting' END AS state, count(*) \
                     FROM deliveries WHERE status = 'QUEUED' GROUP BY 1, 2",
                )
                .bind(now),
                queue_row,
            )
            .await?;
        let mut depth = QueueDepth {
            audience_jobs: c.count(sqlx::query("SELECT count(*) FROM audience_jobs")).await?,
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
        // The due rows are chosen once, by an InitPlan (`ARRAY(SELECT …)`), and then updated
        // where they lie, by their tuple ids (a TID scan), with no join for the planner to
        // choose:
        // - as a subquery in FROM, the planner was free to put it on the inner side of a nested
        //   loop over `deliveries` and ran it again for every outer row: each run locked the
        //   next rows past those the statement had already claimed (SKIP LOCKED does not skip
        //   its own), so one claim took every due row (pgrowlocks: 1,022 rows held after 1.6 s);
        // - as a MATERIALIZED CTE joined back on the key, the generic plan (estimated 2 rows)
        //   hashed the whole table for every claim: a sequential scan of every delivery record,
        //   dead versions included, 24-48 ms a claim at 10,000 records under the fan-out
        //   benchmark, which bounded PostgreSQL fan-out (one claim at a time per process).
        // The ids are those of the versions this statement locked (FOR UPDATE), so nobody can
        // move them before it commits. A row updated by another transaction after this
        // statement's snapshot is locked in its newest version, which the TID scan does not
        // see: it is left out of this claim (still due, taken by a later one), never claimed
        // twice. docs/benchmarks.md, "Latest run".
        self.conn()?
            .query_all(
                sqlx::query(concat!(
                    "UPDATE deliveries d SET next_attempt_at = $2, claim_id = $3 \
                     WHERE d.ctid = ANY (ARRAY(SELECT ctid FROM deliveries \
                           WHERE status = 'QUEUED' AND next_attempt_at <= $1 \
                           ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED)) \
                     RETURNING ",
                    "d.account_id, d.delivery_id, d.message_id, d.application_id, d.push_reg_id, d.person_id, \
                     d.provider, d.status, d.attempts, d.provider_http_status, d.provider_reason, d.created_at, \
                     d.updated_at, d.last_attempt_at, d.next_attempt_at, d.claim_id, d.delivered_at, d.seen_at"
                ))
                .bind(now)
                .bind(lease_until)
                .bind(id(claim_id))
                .bind(page_limit(limit)),
                delivery_row,
            )
            .await
    }

    async fn finish_attempt(&mut self, r: &AttemptResult) -> StoreResult<bool> {
        // The batch statement with one row: one statement, one plan to keep right.
        let applied = self.finish_attempts(std::slice::from_ref(r)).await?;
        Ok(applied.first().copied().unwrap_or(false))
    }

    async fn finish_attempts(&mut self, results: &[AttemptResult]) -> StoreResult<Vec<bool>> {
        if results.is_empty() {
            return Ok(Vec::new());
        }
        // A batch that names one record twice is applied one result at a time, in order, as
        // the trait says: in one `UPDATE ... FROM` a record joined to two rows is updated by
        // one of them, and PostgreSQL does not say which. (Two answers for one record come only
        // from two claims of it, and at most one of those claims is still its own.)
        let mut records = std::collections::HashSet::with_capacity(results.len());
        if results.len() > 1 && !results.iter().all(|r| records.insert((r.account_id, r.delivery_id))) {
            let mut applied = Vec::with_capacity(results.len());
            for r in results {
                applied.push(self.finish_attempt(r).await?);
            }
            return Ok(applied);
        }
        // One statement for the batch: a row per result (its position `n`), joined to the record
        // only while it is still QUEUED under that claim; the positions that applied come back.
        // The record is found by its key alone: `status || ''` keeps the status test out of
        // every index, because with the statistics of a send's first rows PostgreSQL planned
        // the join through `deliveries_message_status_idx` on (account, 'QUEUED'), reading the
        // whole queue once per answer (276-412 ms per batch of ~150; docs/benchmarks.md). The
        // same device as SQLite's `+account_id`.
        let mut cols = FinishColumns::default();
        for r in results {
            cols.account_id.push(id(r.account_id));
            cols.delivery_id.push(id(r.delivery_id));
            cols.claim_id.push(id(r.claim_id));
            cols.status.push(r.status.as_str().to_owned());
            cols.provider.push(r.provider.as_str().to_owned());
            cols.attempts.push(r.attempts);
            cols.http_status.push(r.provider_http_status);
            cols.reason.push(r.provider_reason.clone());
            cols.last_attempt_at.push(r.last_attempt_at);
            cols.next_attempt_at.push(r.next_attempt_at);
            // A retry (QUEUED again) releases the claim; a terminal status keeps it for the record.
            cols.new_claim.push(r.status.is_terminal().then(|| id(r.claim_id)));
            cols.now.push(r.now);
        }
        let applied: Vec<i64> = self
            .conn()?
            .query_all(
                sqlx::query(
                    "UPDATE deliveries d SET status = u.status, provider = u.provider, attempts = u.attempts, \
                     provider_http_status = u.http_status, provider_reason = u.reason, \
                     last_attempt_at = u.last_attempt_at, next_attempt_at = u.next_attempt_at, \
                     claim_id = u.new_claim, updated_at = u.now \
                     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], \
                                 $7::int8[], $8::text[], $9::int8[], $10::int8[], $11::text[], $12::int8[]) \
                          WITH ORDINALITY AS u(account_id, delivery_id, claim_id, status, provider, attempts, \
                                               http_status, reason, last_attempt_at, next_attempt_at, new_claim, \
                                               now, n) \
                     WHERE d.account_id = u.account_id AND d.delivery_id = u.delivery_id \
                       AND d.claim_id = u.claim_id AND d.status || '' = 'QUEUED' \
                     RETURNING u.n",
                )
                .bind(cols.account_id)
                .bind(cols.delivery_id)
                .bind(cols.claim_id)
                .bind(cols.status)
                .bind(cols.provider)
                .bind(cols.attempts)
                .bind(cols.http_status)
                .bind(cols.reason)
                .bind(cols.last_attempt_at)
                .bind(cols.next_attempt_at)
                .bind(cols.new_claim)
                .bind(cols.now),
                |row| get::<i64>(row, 0),
            )
            .await?;
        let mut out = vec![false; results.len()];
        for n in applied {
            if let Some(slot) = usize::try_from(n - 1).ok().and_then(|i| out.get_mut(i)) {
                *slot = true;
            }
        }
        Ok(out)
    }

    async fn installations_by_ids(
        &mut self,
        account_id: Uuid,
        push_reg_ids: &[String],
    ) -> StoreResult<Vec<Installation>> {
        if push_reg_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.conn()?
            .query_all(
                sqlx::query(concat!(
                    "SELECT ",
                    installation_columns!(),
                    " FROM installations WHERE account_id = $1 AND push_reg_id = ANY($2::text[])"
                ))
                .bind(id(account_id))
                .bind(push_reg_ids.to_vec()),
                rows::installation,
            )
            .await
    }

    async fn record_device_reports(
        &mut self,
        account_id: Uuid,
        push_reg_id: &str,
        delivery_ids: &[Uuid],
        at: Millis,
        seen: bool,
    ) -> StoreResult<u64> {
        if delivery_ids.is_empty() {
            return Ok(0);
        }
        self.conn()?
            .execute(
                sqlx::query(
                    "UPDATE deliveries SET delivered_at = coalesce(delivered_at, $4), \
                     seen_at = CASE WHEN $5 THEN coalesce(seen_at, $4) ELSE seen_at END, updated_at = $4 \
                     WHERE account_id = $1 AND delivery_id = ANY($2::text[]) AND push_reg_id = $3 \
                     AND (delivered_at IS NULL OR ($5 AND seen_at IS NULL))",
                )
                .bind(id(account_id))
                .bind(delivery_ids.iter().map(|d| id(*d)).collect::<Vec<String>>())
                .bind(push_reg_id.to_owned())
                .bind(at)
                .bind(seen),
            )
            .await
    }

    async fn deliveries_of_installations(
        &mut self,
        account_id: Uuid,
        push_reg_ids: &[String],
    ) -> StoreResult<Vec<Delivery>> {
        if push_reg_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.conn()?
            .query_all(
                sqlx::query(concat!(
                    "SELECT ",
                    delivery_columns!(),
                    " FROM deliveries WHERE account_id = $1 AND push_reg_id = ANY($2::text[]) ORDER BY delivery_id"
                ))
                .bind(id(account_id))
                .bind(push_reg_ids.to_vec()),
                delivery_row,
            )
            .await
    }

    async fn anonymise_deliveries(
        &mut self,
        account_id: Uuid,
        person_id: Uuid,
        push_reg_ids: &[String],
        now: Millis,
    ) -> StoreResult<u64> {
        self.conn()?
            .execute(
                sqlx::query(
                    "UPDATE deliveries SET status = CASE WHEN status = 'QUEUED' THEN 'FAILED' ELSE status END, \
                     provider_http_status = CASE WHEN status = 'QUEUED' THEN NULL ELSE provider_http_status END, \
                     provider_reason = CASE WHEN status = 'QUEUED' THEN 'ERASED' ELSE provider_reason END, \
                     push_reg_id = NULL, person_id = NULL, updated_at = $4 \
                     WHERE account_id = $1 AND (person_id = $2 OR push_reg_id = ANY($3::text[]))",
                )
                .bind(id(account_id))
                .bind(id(person_id))
                .bind(push_reg_ids.to_vec())
                .bind(now),
            )
            .await
    }

    async fn clear_token_if_held(
        &mut self,
        account_id: Uuid,
        push_reg_id: &str,
        token: &str,
        reason: TokenClearedReason,
        now: Millis,
    ) -> StoreResult<bool> {
        let changed = self
            .conn()?
            .execute(
                sqlx::query(
                    "UPDATE installations SET push_service_token = NULL, token_cleared_at = $4, \
                     token_cleared_reason = $5, updated_at = $4 \
                     WHERE account_id = $1 AND push_reg_id = $2 AND push_service_token = $3",
                )
                .bind(id(account_id))
                .bind(push_reg_id.to_owned())
                .bind(token.to_owned())
                .bind(now)
                .bind(reason.as_str()),
            )
            .await?;
        Ok(changed > 0)
    }

    async fn idempotency_record(&mut self, account_id: Uuid, key: &str) -> StoreResult<Option<IdempotencyRecord>> {
        self.conn()?
            .query_opt(
                sqlx::query(concat!(
                    "SELECT ",
                    idempotency_columns!(),
                    " FROM idempotency_keys WHERE account_id = $1 AND idem_key = $2 FOR UPDATE"
                ))
                .bind(id(account_id))
                .bind(key.to_owned()),
                idempotency_row,
            )
            .await
    }

    async fn insert_idempotency_record(&mut self, r: &IdempotencyRecord) -> StoreResult<()> {
        self.conn()?
            .execute(
                sqlx::query(concat!(
                    "INSERT INTO idempotency_keys (",
                    idempotency_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
                ))
                .bind(id(r.account_id))
                .bind(r.key.clone())
                .bind(r.fingerprint.clone())
                .bind(id(r.owner))
                .bind(r.state.as_str())
                .bind(r.response_status.map(i64::from))
                .bind(r.response_body.clone())
                .bind(r.created_at)
                .bind(r.expires_at),
            )
            .await
            .map(drop)
    }

    async fn put_idempotency_record(&mut self, r: &IdempotencyRecord) -> StoreResult<()> {
        self.conn()?
            .execute(
                sqlx::query(concat!(
                    "INSERT INTO idempotency_keys (",
                    idempotency_columns!(),
                    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (account_id, idem_key) DO UPDATE SET fingerprint = excluded.fingerprint, \
                     owner = excluded.owner, state = excluded.state, response_status = excluded.response_status, \
                     response_body = excluded.response_body, created_at = excluded.created_at, \
                     expires_at = excluded.expires_at"
                ))
                .bind(id(r.account_id))
                .bind(r.key.clone())
                .bind(r.fingerprint.clone())
                .bind(id(r.owner))
                .bind(r.state.as_str())
                .bind(r.response_status.map(i64::from))
                .bind(r.response_body.clone())
                .bind(r.created_at)
                .bind(r.expires_at),
            )
            .await
            .map(drop)
    }

    async fn delete_idempotency_record(&mut self, account_id: Uuid, key: &str, owner: Uuid) -> StoreResult<bool> {
        let changed = self
            .conn()?
            .execute(
                sqlx::query("DELETE FROM idempotency_keys WHERE account_id = $1 AND idem_key = $2 AND owner = $3")
                    .bind(id(account_id))
                    .bind(key.to_owned())
                    .bind(id(owner)),
            )
            .await?;
        Ok(changed > 0)
    }

    async fn count_push_rows(&mut self, account_id: Uuid, table: PushTable) -> StoreResult<u64> {
        let sql = match table {
            PushTable::Bulk => "SELECT count(*) FROM bulks WHERE account_id = $1",
            PushTable::Message => "SELECT count(*) FROM messages WHERE account_id = $1",
            PushTable::AudienceJob => "SELECT count(*) FROM audience_jobs WHERE account_id = $1",
            PushTable::Delivery => "SELECT count(*) FROM deliveries WHERE account_id = $1",
            PushTable::IdempotencyRecord => "SELECT count(*) FROM idempotency_keys WHERE account_id = $1",
        };
        self.conn()?.count(sqlx::query(sql).bind(id(account_id))).await
    }

    async fn bulks_page(&mut self, account_id: Uuid, after: Option<&str>, limit: u32) -> StoreResult<Vec<Bulk>> {
        self.conn()?
            .query_all(
                sqlx::query(
                    "SELECT account_id, bulk_id, created_at FROM bulks WHERE account_id = $1 AND bulk_id > $2 \
                     ORDER BY bulk_id LIMIT $3",
                )
                .bind(id(account_id))
                .bind(after.unwrap_or_default().to_owned())
                .bind(page_limit(limit)),
                bulk_row,
            )
            .await
    }

    async fn messages_page(&mut self, account_id: Uuid, after: Option<&str>, limit: u32) -> StoreResult<Vec<Message>> {
        self.conn()?
            .query_all(
                sqlx::query(concat!(
                    "SELECT ",
                    message_columns!(),
                    " FROM messages WHERE account_id = $1 AND message_id > $2 ORDER BY message_id LIMIT $3"
                ))
                .bind(id(account_id))
                .bind(after.unwrap_or_default().to_owned())
                .bind(page_limit(limit)),
                message_row,
            )
            .await
    }

    async fn audience_jobs_page(
        &mut self,
        account_id: Uuid,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<AudienceJob>> {
        self.conn()?
            .query_all(
                sqlx::query(concat!(
                    "SELECT ",
                    audience_job_columns!(),
                    " FROM audience_jobs WHERE account_id = $1 AND message_id > $2 ORDER BY message_id LIMIT $3"
                ))
                .bind(id(account_id))
                .bind(after.unwrap_or_default().to_owned())
                .bind(page_limit(limit)),
                audience_job_row,
            )
            .await
    }

    async fn deliveries_page(
        &mut self,
        account_id: Uuid,
        after: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<Delivery>> {
        self.conn()?
            .query_all(
                sqlx::query(concat!(
                    "SELECT ",
                    delivery_columns!(),
                    " FROM deliveries WHERE account_id = $1 AND delivery_id > $2 ORDER BY delivery_id LIMIT $3"
                ))
                .bind(id(account_id))
                .bind(after.map(id).unwrap_or_default())
                .bind(page_limit(limit)),
                delivery_row,
            )
            .await
    }

    async fn idempotency_records_page(
        &mut self,
        account_id: Uuid,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<IdempotencyRecord>> {
        self.conn()?
            .query_all(
                sqlx::query(concat!(
                    "SELECT ",
                    idempotency_columns!(),
                    " FROM idempotency_keys WHERE account_id = $1 AND idem_key > $2 ORDER BY idem_key LIMIT $3"
                ))
                .bind(id(account_id))
                .bind(after.unwrap_or_default().to_owned())
                .bind(page_limit(limit)),
                idempotency_row,
            )
            .await
    }
}

fn bulk_row(row: &PgRow) -> StoreResult<Bulk> {
    Ok(Bulk {
        account_id: uuid_at(row, 0)?,
        bulk_id: get(row, 1)?,
        created_at: get(row, 2)?,
    })
}

/// Fills the push tables of a [`Snapshot`], each by (account, primary key).
pub(crate) async fn snapshot_into(c: &mut Conn, snapshot: &mut Snapshot) -> StoreResult<()> {
    snapshot.bulks = c
        .query_all(
            sqlx::query("SELECT account_id, bulk_id, created_at FROM bulks ORDER BY account_id, bulk_id"),
            bulk_row,
        )
        .await?;
    snapshot.messages = c
        .query_all(
            sqlx::query(concat!(
                "SELECT ",
                message_columns!(),
                " FROM messages ORDER BY account_id, message_id"
            )),
            message_row,
        )
        .await?;
    snapshot.audience_jobs = c
        .query_all(
            sqlx::query(concat!(
                "SELECT ",
                audience_job_columns!(),
                " FROM audience_jobs ORDER BY account_id, message_id"
            )),
            audience_job_row,
        )
        .await?;
    snapshot.deliveries = c
        .query_all(
            sqlx::query(concat!(
                "SELECT ",
                delivery_columns!(),
                " FROM deliveries ORDER BY account_id, delivery_id"
            )),
            delivery_row,
        )
        .await?;
    snapshot.idempotency_records = c
        .query_all(
            sqlx::query(concat!(
                "SELECT ",
                idempotency_columns!(),
                " FROM idempotency_keys ORDER BY account_id, idem_key"
            )),
            idempotency_row,
        )
        .await?;
    Ok(())
}

/// The columns of [`PushTx::finish_attempts`]' `unnest`, one array per column.
#[derive(Default)]
struct FinishColumns {
    account_id: Vec<String>,
    delivery_id: Vec<String>,
    claim_id: Vec<String>,
    status: Vec<String>,
    provider: Vec<String>,
    attempts: Vec<i64>,
    http_status: Vec<Option<i64>>,
    reason: Vec<Option<String>>,
    last_attempt_at: Vec<Option<i64>>,
    next_attempt_at: Vec<i64>,
    new_claim: Vec<Option<String>>,
    now: Vec<i64>,
}
