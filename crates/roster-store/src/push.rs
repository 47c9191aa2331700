//! Storage of push sending and delivery (management-api.md §5, §6) and of idempotency records
//! (§3.3): the durable queue the delivery workers claim from, written by every backend alike.
//!
//! The queue is a table of delivery records. A record is due while `status = QUEUED` and
//! `next_attempt_at <= now`. A worker claims due records with [`PushTx::claim_deliveries`], which
//! stamps them with its claim id and moves `next_attempt_at` to the end of a lease, in a short
//! transaction of its own; it then calls the provider outside any transaction and records the
//! answer with [`PushTx::finish_attempt`], which only applies while the record is still `QUEUED`
//! and still carries that claim. A worker that dies leaves its claims behind: they become due
//! again when the lease ends and another worker takes them (at-least-once, §6.5). A terminal
//! status is never changed by any method here.
//!
//! Audience resolution of `MULTIPLE` destinations (§6.1) is a job per message, claimed with
//! [`PushTx::claim_audience_job`] inside the transaction that processes one chunk: the job row
//! stays locked until that transaction ends, so two processes never resolve the same chunk, and
//! a crash rolls the chunk back whole (its records and the cursor move together).

use async_trait::async_trait;
use roster_model::{Installation, Millis, Provider, TokenClearedReason};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::StoreResult;

/// Columns of the push tables in the order the backends' row decoders read them (like
/// [`crate::columns`]); exported at the crate root.
pub mod columns {
    /// Columns of `messages`.
    #[macro_export]
    macro_rules! message_columns {
        () => {
            "account_id, message_id, bulk_id, position, application_id, destination, content, options, \
             target_only_primary, submission_status, audience_state, audience_count, created_at, expires_at, \
             updated_at"
        };
    }
    /// Columns of `deliveries`.
    #[macro_export]
    macro_rules! delivery_columns {
        () => {
            "account_id, delivery_id, message_id, application_id, push_reg_id, person_id, provider, status, \
             attempts, provider_http_status, provider_reason, created_at, updated_at, last_attempt_at, \
             next_attempt_at, claim_id, delivered_at, seen_at"
        };
    }
    /// Columns of `audience_jobs`.
    #[macro_export]
    macro_rules! audience_job_columns {
        () => {
            "account_id, message_id, application_id, audience_filter, target_only_primary, after_push_reg_id, \
             created_at, updated_at"
        };
    }
    /// Columns of `idempotency_keys`.
    #[macro_export]
    macro_rules! idempotency_columns {
        () => {
            "account_id, idem_key, fingerprint, owner, state, response_status, response_body, created_at, \
             expires_at"
        };
    }
}

/// Names of the unique constraints of the push tables, as reported in
/// [`Constraint::Other`](crate::Constraint::Other) on a violation.
pub mod constraints {
    /// `bulkId` unique per account.
    pub const BULK_ID: &str = "bulks_pkey";
    /// `messageId` unique per account.
    pub const MESSAGE_ID: &str = "messages_pkey";
    /// One delivery record per (message, installation).
    pub const DELIVERY_PER_INSTALLATION: &str = "deliveries_message_installation_key";
    /// One idempotency record per (account, key).
    pub const IDEMPOTENCY_KEY: &str = "idempotency_keys_pkey";
}

/// The status of a delivery record (management-api.md §6.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeliveryStatus {
    Queued,
    Accepted,
    Rejected,
    Unregistered,
    Expired,
    Failed,
}

impl DeliveryStatus {
    /// Every status, in the order of §6.2.
    pub const ALL: [DeliveryStatus; 6] = [
        DeliveryStatus::Queued,
        DeliveryStatus::Accepted,
        DeliveryStatus::Rejected,
        DeliveryStatus::Unregistered,
        DeliveryStatus::Expired,
        DeliveryStatus::Failed,
    ];

    /// Wire and stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Queued => "QUEUED",
            DeliveryStatus::Accepted => "ACCEPTED",
            DeliveryStatus::Rejected => "REJECTED",
            DeliveryStatus::Unregistered => "UNREGISTERED",
            DeliveryStatus::Expired => "EXPIRED",
            DeliveryStatus::Failed => "FAILED",
        }
    }

    /// Parses the spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Whether the status never changes again (every one but `QUEUED`).
    pub fn is_terminal(self) -> bool {
        self != DeliveryStatus::Queued
    }
}

/// The submission status of a message (management-api.md §5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SubmissionStatus {
    /// `PENDING_ACCEPTED`: deliveries queued, or audience resolution queued.
    PendingAccepted,
    /// `REJECTED_DESTINATION_NOT_FOUND`
    RejectedDestinationNotFound,
    /// `REJECTED_NO_DELIVERABLE_INSTALLATION`
    RejectedNoDeliverableInstallation,
}

impl SubmissionStatus {
    /// Stored spelling (the `name` of §5.4).
    pub fn as_str(self) -> &'static str {
        match self {
            SubmissionStatus::PendingAccepted => "PENDING_ACCEPTED",
            SubmissionStatus::RejectedDestinationNotFound => "REJECTED_DESTINATION_NOT_FOUND",
            SubmissionStatus::RejectedNoDeliverableInstallation => "REJECTED_NO_DELIVERABLE_INSTALLATION",
        }
    }

    /// Parses the spelling.
    pub fn parse(s: &str) -> Option<Self> {
        [
            SubmissionStatus::PendingAccepted,
            SubmissionStatus::RejectedDestinationNotFound,
            SubmissionStatus::RejectedNoDeliverableInstallation,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// Whether a message's audience is still being resolved (management-api.md §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AudienceState {
    Resolving,
    Resolved,
}

impl AudienceState {
    /// Stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AudienceState::Resolving => "RESOLVING",
            AudienceState::Resolved => "RESOLVED",
        }
    }

    /// Parses the spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "RESOLVING" => Some(AudienceState::Resolving),
            "RESOLVED" => Some(AudienceState::Resolved),
            _ => None,
        }
    }
}

/// A bulk: the messages of one `POST /push/3/messages` (`bulkId` unique per account).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bulk {
    pub account_id: Uuid,
    pub bulk_id: String,
    pub created_at: Millis,
}

/// A message: one destination of one sent message (management-api.md §5.4, §6.7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub account_id: Uuid,
    pub message_id: String,
    pub bulk_id: String,
    /// Position in the request (messages first to last, destinations first to last).
    pub position: i64,
    /// The sender application.
    pub application_id: Uuid,
    /// The destination as received (echoed in responses).
    pub destination: Value,
    /// `content` as accepted: `type`, `title`?, `text`, `url`?.
    pub content: Value,
    /// The delivery options as accepted: `customPayload`?, `sound`?, `badge`?, `silent`.
    pub options: Value,
    pub target_only_primary: bool,
    pub submission_status: SubmissionStatus,
    pub audience_state: AudienceState,
    /// Delivery records created so far (the final audience once resolved).
    pub audience_count: i64,
    pub created_at: Millis,
    /// End of the validity period.
    pub expires_at: Millis,
    pub updated_at: Millis,
}

/// A delivery record: one (message, installation) pair (management-api.md §6.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    pub account_id: Uuid,
    /// Also the message id in the push payload, which the device reports back.
    pub delivery_id: Uuid,
    pub message_id: String,
    pub application_id: Uuid,
    /// At resolution time; `None` after a GDPR erase.
    pub push_reg_id: Option<String>,
    /// At resolution time; `None` after a GDPR erase.
    pub person_id: Option<Uuid>,
    pub provider: Provider,
    pub status: DeliveryStatus,
    /// Provider calls made.
    pub attempts: i64,
    /// HTTP status of the last provider answer.
    pub provider_http_status: Option<i64>,
    /// Reason of the last provider answer, or ours (`PROVIDER_NOT_CONFIGURED`, ...).
    pub provider_reason: Option<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub last_attempt_at: Option<Millis>,
    /// While `QUEUED`: when the record is due; while claimed, the end of the claim's lease.
    pub next_attempt_at: Millis,
    /// The claim of the worker that is delivering it, if any.
    pub claim_id: Option<Uuid>,
    pub delivered_at: Option<Millis>,
    pub seen_at: Option<Millis>,
}

/// The audience-resolution job of a `MULTIPLE` message (management-api.md §6.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AudienceJob {
    pub account_id: Uuid,
    pub message_id: String,
    pub application_id: Uuid,
    /// The audience filter (management-api.md §4) as JSON: parsed again when each chunk runs.
    pub filter: Value,
    pub target_only_primary: bool,
    /// The last pushRegId walked; `None` before the first chunk.
    pub after_push_reg_id: Option<String>,
    pub created_at: Millis,
    /// Moves with every chunk, so that jobs take turns.
    pub updated_at: Millis,
}

/// The result of one delivery attempt (or of a decision without one, like `EXPIRED`), applied
/// by [`PushTx::finish_attempt`] only while the record is `QUEUED` and still claimed by `claim_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptResult {
    pub account_id: Uuid,
    pub delivery_id: Uuid,
    pub claim_id: Uuid,
    /// `QUEUED` again (a retry at `next_attempt_at`) or a terminal status.
    pub status: DeliveryStatus,
    /// The provider the attempt went to (the installation may have changed its type).
    pub provider: Provider,
    pub attempts: i64,
    pub provider_http_status: Option<i64>,
    pub provider_reason: Option<String>,
    pub last_attempt_at: Option<Millis>,
    pub next_attempt_at: Millis,
    pub now: Millis,
}

/// Delivery records of a message per status, and device reports (management-api.md §6.7).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryCounts {
    /// Records per status; missing statuses count 0.
    pub by_status: std::collections::BTreeMap<DeliveryStatus, u64>,
    /// Records with `deliveredAt`.
    pub delivered: u64,
    /// Records with `seenAt`.
    pub seen: u64,
}

impl DeliveryCounts {
    /// Records with `status`.
    pub fn count(&self, status: DeliveryStatus) -> u64 {
        self.by_status.get(&status).copied().unwrap_or(0)
    }

    /// Every record.
    pub fn total(&self) -> u64 {
        self.by_status.values().sum()
    }
}

/// Where a `QUEUED` delivery record stands in the queue (the `state` label of the queue-depth
/// gauge on `/metrics`, management-api.md §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QueueState {
    /// Due now: never claimed, or its claim's lease ended (its worker died).
    Due,
    /// Claimed by a worker whose lease is still running (a provider call in flight).
    Claimed,
    /// Waiting for its next attempt after a retryable answer (§6.5).
    RetryWaiting,
}

impl QueueState {
    /// Every state.
    pub const ALL: [QueueState; 3] = [QueueState::Due, QueueState::Claimed, QueueState::RetryWaiting];

    /// Label spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueState::Due => "due",
            QueueState::Claimed => "claimed",
            QueueState::RetryWaiting => "retry_waiting",
        }
    }

    /// Parses the spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// The work queued in the whole store at one moment (every account): what `/metrics` reports as
/// queue depth (management-api.md §9).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// `QUEUED` delivery records by provider and state; missing pairs count 0.
    pub deliveries: std::collections::HashMap<(Provider, QueueState), u64>,
    /// Audience-resolution jobs not finished (`MULTIPLE` messages still `RESOLVING`).
    pub audience_jobs: u64,
}

impl QueueDepth {
    /// `QUEUED` records of a provider in a state.
    pub fn count(&self, provider: Provider, state: QueueState) -> u64 {
        self.deliveries.get(&(provider, state)).copied().unwrap_or(0)
    }
}

/// Whether the request that holds an idempotency key is still running (management-api.md §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IdempotencyState {
    Running,
    Done,
}

impl IdempotencyState {
    /// Stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            IdempotencyState::Running => "RUNNING",
            IdempotencyState::Done => "DONE",
        }
    }

    /// Parses the spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "RUNNING" => Some(IdempotencyState::Running),
            "DONE" => Some(IdempotencyState::Done),
            _ => None,
        }
    }
}

/// An `Idempotency-Key` of an account: the request it was first used with, and its answer once
/// there is one (management-api.md §3.3).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdempotencyRecord {
    pub account_id: Uuid,
    pub key: String,
    /// Hash of method, path, query and body bytes.
    pub fingerprint: String,
    /// The request that holds the key (a new id per request), so that only it settles the record.
    pub owner: Uuid,
    pub state: IdempotencyState,
    pub response_status: Option<u16>,
    pub response_body: Option<Vec<u8>>,
    /// When the holding request started (a `RUNNING` record older than the stale limit no longer
    /// counts as running).
    pub created_at: Millis,
    pub expires_at: Millis,
}

impl std::fmt::Debug for IdempotencyRecord {
    // A stored answer may carry person data: not in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotencyRecord")
            .field("key", &self.key)
            .field("state", &self.state)
            .field("response_status", &self.response_status)
            .finish_non_exhaustive()
    }
}

/// The push tables, for counting a whole store's rows (export, `roster migrate-store`), in
/// dependency order: a row refers only to rows of tables before its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PushTable {
    Bulk,
    Message,
    AudienceJob,
    Delivery,
    IdempotencyRecord,
}

impl PushTable {
    /// Every table, in dependency order.
    pub const ALL: [PushTable; 5] = [
        PushTable::Bulk,
        PushTable::Message,
        PushTable::AudienceJob,
        PushTable::Delivery,
        PushTable::IdempotencyRecord,
    ];
}

/// Push primitives inside one transaction (a supertrait of [`Tx`](crate::Tx)). Every method
/// filters by account, except the claims of queue work ([`PushTx::claim_deliveries`],
/// [`PushTx::claim_audience_job`]), which serve every account from one index; what they return
/// names its account, and every later statement on it filters by that account.
#[async_trait]
pub trait PushTx: Send {
    // --- bulks and messages -------------------------------------------------------------------
    /// Inserts a bulk (`Conflict(Other(bulks_pkey))` if its id is taken in the account).
    async fn insert_bulk(&mut self, bulk: &Bulk) -> StoreResult<()>;
    /// Whether the account has a bulk of that id.
    async fn bulk_exists(&mut self, account_id: Uuid, bulk_id: &str) -> StoreResult<bool>;
    /// Inserts a message (`Conflict(Other(messages_pkey))` if its id is taken in the account).
    async fn insert_message(&mut self, message: &Message) -> StoreResult<()>;
    /// A message by id.
    async fn message(&mut self, account_id: Uuid, message_id: &str) -> StoreResult<Option<Message>>;
    /// The messages of a bulk by position, after `after_position`, at most `limit`.
    async fn messages_of_bulk(
        &mut self,
        account_id: Uuid,
        bulk_id: &str,
        after_position: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<Message>>;
    /// Sets a message's audience state and count.
    async fn set_message_audience(
        &mut self,
        account_id: Uuid,
        message_id: &str,
        state: AudienceState,
        count: i64,
        now: Millis,
    ) -> StoreResult<()>;

    // --- audience resolution ------------------------------------------------------------------
    /// Inserts an audience-resolution job.
    async fn insert_audience_job(&mut self, job: &AudienceJob) -> StoreResult<()>;
    /// The job that waited longest (by `updated_at`), locked until this transaction ends;
    /// PostgreSQL skips jobs that other transactions hold (`FOR UPDATE SKIP LOCKED`), SQLite's
    /// single writer makes the whole transaction exclusive.
    async fn claim_audience_job(&mut self) -> StoreResult<Option<AudienceJob>>;
    /// Moves a job's cursor (and its `updated_at`).
    async fn advance_audience_job(
        &mut self,
        account_id: Uuid,
        message_id: &str,
        after_push_reg_id: &str,
        now: Millis,
    ) -> StoreResult<()>;
    /// Deletes a finished job.
    async fn delete_audience_job(&mut self, account_id: Uuid, message_id: &str) -> StoreResult<()>;

    // --- deliveries ---------------------------------------------------------------------------
    /// Inserts delivery records (`Conflict(Other(deliveries_message_installation_key))` if an
    /// installation already has one for the message).
    async fn insert_deliveries(&mut self, deliveries: &[Delivery]) -> StoreResult<()>;
    /// A delivery record by id.
    async fn delivery(&mut self, account_id: Uuid, delivery_id: Uuid) -> StoreResult<Option<Delivery>>;
    /// A message's delivery records by `deliveryId` after `after`, optionally of one status.
    async fn deliveries_of_message(
        &mut self,
        account_id: Uuid,
        message_id: &str,
        status: Option<DeliveryStatus>,
        after: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<Delivery>>;
    /// A message's records per status, and how many carry device reports.
    async fn delivery_counts(&mut self, account_id: Uuid, message_id: &str) -> StoreResult<DeliveryCounts>;
    /// Claims up to `limit` due records (`QUEUED`, `next_attempt_at <= now`, most overdue first):
    /// sets their `claim_id` and moves `next_attempt_at` to `lease_until`. Records that other
    /// transactions are claiming are skipped. Returns them as claimed.
    async fn claim_deliveries(
        &mut self,
        now: Millis,
        lease_until: Millis,
        claim_id: Uuid,
        limit: u32,
    ) -> StoreResult<Vec<Delivery>>;
    /// The queue of every account at `now` (`/metrics`): `QUEUED` records by provider and
    /// [`QueueState`], and unfinished audience jobs. Reads only queued work (the partial index
    /// on `QUEUED` records), never the terminal records.
    async fn queue_depth(&mut self, now: Millis) -> StoreResult<QueueDepth>;
    /// Applies an attempt's result if the record is still `QUEUED` and claimed by its
    /// `claim_id`; whether it applied. A `QUEUED` result releases the claim.
    async fn finish_attempt(&mut self, result: &AttemptResult) -> StoreResult<bool>;
    /// [`PushTx::finish_attempt`] for each result, in order; whether each applied. A backend
    /// may apply them in fewer statements; the outcome is the same.
    async fn finish_attempts(&mut self, results: &[AttemptResult]) -> StoreResult<Vec<bool>> {
        let mut applied = Vec::with_capacity(results.len());
        for r in results {
            applied.push(self.finish_attempt(r).await?);
        }
        Ok(applied)
    }
    /// The installations of the account with these lowercase pushRegIds, in any application
    /// (those that exist; in no particular order): what the claimed deliveries of a batch are
    /// sent to.
    async fn installations_by_ids(
        &mut self,
        account_id: Uuid,
        push_reg_ids: &[String],
    ) -> StoreResult<Vec<Installation>>;
    /// Device reports (management-api.md §6.6): sets `delivered_at` (and `seen_at` when `seen` is
    /// given) where still empty, on the listed records made to `push_reg_id`. Status never
    /// changes. Returns how many records changed.
    async fn record_device_reports(
        &mut self,
        account_id: Uuid,
        push_reg_id: &str,
        delivery_ids: &[Uuid],
        at: Millis,
        seen: bool,
    ) -> StoreResult<u64>;

    /// GDPR export (management-api.md §8.1): the records made to these installations, by
    /// `deliveryId`.
    async fn deliveries_of_installations(
        &mut self,
        account_id: Uuid,
        push_reg_ids: &[String],
    ) -> StoreResult<Vec<Delivery>>;
    /// GDPR erase, step 3 (management-api.md §8.2): the records made to these installations or
    /// naming the person lose `pushRegId` and `personId`; those still `QUEUED` become `FAILED`
    /// with reason `ERASED` (nothing more is sent). How many records changed.
    async fn anonymise_deliveries(
        &mut self,
        account_id: Uuid,
        person_id: Uuid,
        push_reg_ids: &[String],
        now: Millis,
    ) -> StoreResult<u64>;

    // --- token hygiene ------------------------------------------------------------------------
    /// Compare-and-clear (people.md §2.3): clears the installation's token with `reason` only if
    /// it still holds exactly `token`; whether it did.
    async fn clear_token_if_held(
        &mut self,
        account_id: Uuid,
        push_reg_id: &str,
        token: &str,
        reason: TokenClearedReason,
        now: Millis,
    ) -> StoreResult<bool>;

    // --- idempotency ----------------------------------------------------------------------------
    /// The record of a key, expired or not, locked until the transaction ends (`FOR UPDATE` on
    /// PostgreSQL: call it in write transactions only), so that two requests never both take
    /// over an expired or stale record.
    async fn idempotency_record(&mut self, account_id: Uuid, key: &str) -> StoreResult<Option<IdempotencyRecord>>;
    /// Inserts the record of a key that has none (`Conflict(Other(idempotency_keys_pkey))` if a
    /// concurrent request inserted one first).
    async fn insert_idempotency_record(&mut self, record: &IdempotencyRecord) -> StoreResult<()>;
    /// Inserts or replaces the record of its (account, key).
    async fn put_idempotency_record(&mut self, record: &IdempotencyRecord) -> StoreResult<()>;
    /// Deletes the record of a key if `owner` still holds it; whether it did.
    async fn delete_idempotency_record(&mut self, account_id: Uuid, key: &str, owner: Uuid) -> StoreResult<bool>;

    // --- streaming every row (export, `roster migrate-store`) ---------------------------------
    //
    // Keyset pages as those of [`Tx`](crate::Tx): up to `limit` rows (at most
    // [`MAX_PAGE`](crate::MAX_PAGE)) of one account whose primary key is greater than `after`,
    // ordered by that key (text keys compared as the backend stores them), read without locks.
    // The insert methods above store rows as given (ids, times, claims and all), so a page read
    // from one store inserts as is into another.

    /// How many rows of `table` an account owns (expired idempotency records included).
    async fn count_push_rows(&mut self, account_id: Uuid, table: PushTable) -> StoreResult<u64>;
    /// An account's bulks by `bulkId`.
    async fn bulks_page(&mut self, account_id: Uuid, after: Option<&str>, limit: u32) -> StoreResult<Vec<Bulk>>;
    /// An account's messages by `messageId`.
    async fn messages_page(&mut self, account_id: Uuid, after: Option<&str>, limit: u32) -> StoreResult<Vec<Message>>;
    /// An account's audience jobs by `messageId`.
    async fn audience_jobs_page(
        &mut self,
        account_id: Uuid,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<AudienceJob>>;
    /// An account's delivery records by `deliveryId`.
    async fn deliveries_page(
        &mut self,
        account_id: Uuid,
        after: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<Delivery>>;
    /// An account's idempotency records by key (expired ones included).
    async fn idempotency_records_page(
        &mut self,
        account_id: Uuid,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<IdempotencyRecord>>;
}
