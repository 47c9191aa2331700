//! The delivery workers of one server process (management-api.md §6, design.md "Fan-out"):
//!
//! - the **resolver** resolves `MULTIPLE` audiences one chunk (one transaction) at a time,
//!   taking turns between jobs ([`Core::resolve_audience_chunk`]);
//! - the **sender** claims due delivery records for a lease ([`Core::claim_deliveries`]), up to
//!   one batch ahead of the provider calls (at most twice `delivery.workers` records claimed and
//!   not yet answered, so that the next claim's round trips overlap the calls), calls the
//!   provider for each (at most `delivery.workers` calls in flight in the process, and at most
//!   `delivery.per_application` per application and provider), and hands the answer to
//! - the **finisher**, which records the answers waiting for it in one transaction
//!   ([`Core::finish_deliveries`]), and the next ones as soon as that commits: many deliveries
//!   per commit while the provider calls go on.
//!
//! Nothing here is the only copy of a fact: the queue is the store. Any number of processes run
//! these loops on one PostgreSQL (claims skip each other's rows); a process that dies leaves its
//! claims to expire and be taken again (at-least-once), and so does an answer whose recording
//! failed or was never reached. Provider clients are pooled per
//! application and provider, and rebuilt when the application's provider settings change.
//! Both loops poll every `delivery.poll_interval_ms` and wake at once when a send is accepted
//! in this process.

use prometheus_client::metrics::{counter::Counter, family::Family};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use roster_core::push::{AttemptOutcome, ClaimedDelivery, PROVIDER_STATUS_MEMBERS, provider_key};
use roster_core::{Core, CoreError};
use roster_model::{Application, Provider, now_millis};
use roster_push::retry::is_expired;
use roster_push::{
    ApnsClient, ApnsCredentials, FcmClient, FcmCredentials, HmsClient, HmsCredentials, Outcome, ProviderResponse,
    SendReport, Transport, TransportSettings,
};
use roster_store::push::DeliveryStatus;
use serde_json::Value;
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use uuid::Uuid;

use crate::settings::DeliverySettings;

/// Most records one claim takes.
const MAX_BATCH: usize = 256;

/// Most answers one finishing transaction records.
const MAX_FINISH: usize = 512;

/// Answers waiting for the finisher at most; a delivery task with its answer waits (keeping its
/// place among `delivery.workers`) while the queue is full.
const FINISH_QUEUE: usize = 4 * MAX_FINISH;

/// How long `stop` lets provider calls in flight finish before abandoning them (their claims
/// then expire and another worker sends them again).
const STOP_GRACE: Duration = Duration::from_secs(10);

/// What request handlers share with the workers: a nudge for new work, and the settings the
/// sending API needs.
#[derive(Debug, Default)]
pub struct PushState {
    /// New delivery records may be due.
    pub deliveries_ready: Notify,
    /// New audience jobs may wait.
    pub jobs_ready: Notify,
    /// `management.idempotency_ttl_hours`.
    pub idempotency_ttl_hours: u64,
    /// Recorded delivery attempts of this process by provider and resulting status (`QUEUED`:
    /// retry scheduled), exported on `/metrics` as `roster_delivery_attempts_total`.
    pub attempts: Family<Vec<(String, String)>, Counter>,
}

impl PushState {
    /// Wakes both loops of this process (work was just committed).
    pub fn wake(&self) {
        self.deliveries_ready.notify_one();
        self.jobs_ready.notify_one();
    }
}

/// A delivery attempt made, waiting to be recorded.
type Answer = (ClaimedDelivery, AttemptOutcome);

/// The running loops of this process.
pub struct DeliveryWorkers {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl DeliveryWorkers {
    /// Starts the resolver, the sender and the finisher.
    pub fn start(core: Core, settings: &DeliverySettings, push: Arc<PushState>) -> anyhow::Result<DeliveryWorkers> {
        let transport = Transport::new(TransportSettings::default())?;
        let (stop, stopped) = watch::channel(false);
        let poll = Duration::from_millis(settings.poll_interval_ms.max(1));
        let resolver = tokio::spawn(resolve_loop(
            core.clone(),
            push.clone(),
            settings.chunk_size.max(1),
            poll,
            stopped.clone(),
        ));
        let clients = Arc::new(ClientPool::new(transport));
        let (answers, queue) = mpsc::channel(FINISH_QUEUE);
        let finisher = Finisher {
            core: core.clone(),
            push: push.clone(),
            clients: clients.clone(),
        };
        let finisher = tokio::spawn(finisher.run(queue));
        let sender = Sender {
            core,
            push,
            clients,
            answers,
            workers: settings.workers.max(1),
            in_flight: Arc::new(Semaphore::new(settings.workers.max(1))),
            claimed: Arc::new(Semaphore::new(2 * settings.workers.max(1))),
            per_application: settings.per_application.max(1),
            app_limits: Arc::new(Mutex::new(HashMap::new())),
            lease: Duration::from_secs(settings.lease_seconds.max(1)),
            poll,
        };
        let sender = tokio::spawn(sender.run(stopped));
        Ok(DeliveryWorkers {
            stop,
            // In this order: the finisher ends once the sender and its delivery tasks are gone
            // and every answer they handed over is recorded.
            tasks: vec![resolver, sender, finisher],
        })
    }

    /// Stops claiming new work, lets provider calls in flight finish (for a while), records
    /// their answers, and waits.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            if let Err(e) = task.await
                && e.is_panic()
            {
                tracing::error!(error = %e, "a delivery worker panicked");
            }
        }
    }
}

/// Sleeps until woken, the poll interval passes, or the workers stop.
async fn idle(wake: &Notify, poll: Duration, stopped: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = wake.notified() => {}
        _ = tokio::time::sleep(poll) => {}
        _ = stopped.changed() => {}
    }
}

async fn resolve_loop(
    core: Core,
    push: Arc<PushState>,
    chunk_size: u32,
    poll: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    while !*stopped.borrow() {
        match core.resolve_audience_chunk(chunk_size).await {
            // A chunk committed: its records are due now.
            Ok(true) => push.deliveries_ready.notify_one(),
            Ok(false) => idle(&push.jobs_ready, poll, &mut stopped).await,
            Err(e) => {
                tracing::warn!(error = %e, "audience resolution failed; retrying later");
                idle(&push.jobs_ready, poll, &mut stopped).await;
            }
        }
    }
}

/// One semaphore per (application, provider).
type AppLimits = HashMap<(Uuid, Provider), Arc<Semaphore>>;

/// The sender loop and what its delivery tasks share.
#[derive(Clone)]
struct Sender {
    core: Core,
    push: Arc<PushState>,
    clients: Arc<ClientPool>,
    /// To the finisher.
    answers: mpsc::Sender<Answer>,
    /// `delivery.workers`.
    workers: usize,
    /// `delivery.workers`: provider calls in flight in this process.
    in_flight: Arc<Semaphore>,
    /// Twice `delivery.workers`: records claimed and not yet handed to the finisher (in flight,
    /// or waiting for a place among the calls).
    claimed: Arc<Semaphore>,
    per_application: usize,
    /// `delivery.per_application`: one semaphore per (application, provider).
    app_limits: Arc<Mutex<AppLimits>>,
    lease: Duration,
    poll: Duration,
}

impl Sender {
    async fn run(self, mut stopped: watch::Receiver<bool>) {
        let mut tasks = JoinSet::new();
        while !*stopped.borrow() {
            while tasks.try_join_next().is_some() {}
            // Claim at most one batch ahead of the calls: what can start now, and as many again
            // to start as calls end. A claim is a write transaction and a read, several round
            // trips on PostgreSQL: claiming only what could start at once left the workers idle
            // for each claim (fan-out at 10,000 installations, 64 workers: 3,300 notifications/s
            // claiming for free workers, docs/benchmarks.md). Records waiting for a place among
            // the calls wait for at most `workers` calls to end, far less than their lease. While
            // calls are in flight, wait until a quarter of the workers' worth is free, so that a
            // claim takes many records, not one each.
            let free = self.claimed.available_permits().min(MAX_BATCH);
            let enough = (self.workers / 4).clamp(1, MAX_BATCH);
            if free == 0 || (free < enough && !tasks.is_empty()) {
                tokio::select! {
                    _ = tasks.join_next() => {}
                    _ = stopped.changed() => {}
                }
                continue;
            }
            match self.core.claim_deliveries(self.lease, free as u32).await {
                Ok(batch) if batch.is_empty() => idle(&self.push.deliveries_ready, self.poll, &mut stopped).await,
                Ok(batch) => {
                    for claimed in batch {
                        let Ok(held) = self.claimed.clone().acquire_owned().await else {
                            return;
                        };
                        let this = self.clone();
                        tasks.spawn(async move {
                            // A place among the calls (tokio's semaphore is fair: in claim order).
                            let Ok(call) = this.in_flight.clone().acquire_owned().await else {
                                return;
                            };
                            this.deliver(claimed).await;
                            drop((call, held));
                        });
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "claiming deliveries failed; retrying later");
                    idle(&self.push.deliveries_ready, self.poll, &mut stopped).await;
                }
            }
        }
        let drained = tokio::time::timeout(STOP_GRACE, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(
                abandoned = tasks.len(),
                "provider calls still running at stop; their claims will expire and be retried"
            );
            tasks.abort_all();
        }
    }

    fn app_limit(&self, app: Uuid, provider: Provider) -> Arc<Semaphore> {
        let mut limits = self.app_limits.lock().unwrap_or_else(|p| p.into_inner());
        limits
            .entry((app, provider))
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_application)))
            .clone()
    }

    /// One delivery attempt, from the claimed record to its answer handed to the finisher.
    async fn deliver(&self, claimed: ClaimedDelivery) {
        let outcome = self.attempt(&claimed).await;
        if let Err(mpsc::error::SendError((claimed, _))) = self.answers.send((claimed, outcome)).await {
            // Only if the finisher is gone (it panicked): the claim expires and the delivery is
            // attempted again (at-least-once).
            tracing::warn!(
                delivery_id = %claimed.delivery.delivery_id,
                "the finisher is gone; the attempt will be repeated when its claim expires"
            );
        }
    }

    async fn attempt(&self, claimed: &ClaimedDelivery) -> AttemptOutcome {
        let not_sent = |reason: &str| AttemptOutcome::NotSent {
            reason: reason.to_owned(),
        };
        let Some(shared) = &claimed.message else {
            return not_sent("MESSAGE_DELETED");
        };
        let (message, push) = (&shared.message, &shared.push);
        if is_expired(message.expires_at, now_millis()) {
            return AttemptOutcome::Expired;
        }
        let Some(app) = &claimed.application else {
            return not_sent("APPLICATION_DELETED");
        };
        let Some(inst) = &claimed.installation else {
            return not_sent("INSTALLATION_DELETED");
        };
        let (Some(provider), Some(token), true) = (inst.provider(), &inst.push_service_token, inst.reg_enabled) else {
            return not_sent("INSTALLATION_NOT_DELIVERABLE");
        };
        let limit = self.app_limit(app.id, provider);
        let Ok(_slot) = limit.acquire_owned().await else {
            return not_sent("WORKER_STOPPED");
        };
        let report = match self.clients.client(app, provider) {
            Err(report) => report,
            Ok(client) => client.send(push, claimed.delivery.delivery_id, token).await,
        };
        AttemptOutcome::Sent {
            report,
            token: token.clone(),
        }
    }
}

/// Records the answers of the delivery tasks: everything waiting (up to [`MAX_FINISH`]) in one
/// transaction, then the next. Ends when every delivery task and the sender are gone and the
/// queue is empty.
struct Finisher {
    core: Core,
    push: Arc<PushState>,
    clients: Arc<ClientPool>,
}

impl Finisher {
    async fn run(self, mut queue: mpsc::Receiver<Answer>) {
        let mut batch = Vec::with_capacity(MAX_FINISH);
        while queue.recv_many(&mut batch, MAX_FINISH).await > 0 {
            self.flush(&batch).await;
            batch.clear();
        }
    }

    async fn flush(&self, batch: &[Answer]) {
        let done: Vec<(&ClaimedDelivery, &AttemptOutcome)> = batch.iter().map(|(c, o)| (c, o)).collect();
        match self.core.finish_deliveries(&done).await {
            Ok(statuses) => {
                for ((claimed, _), status) in batch.iter().zip(statuses) {
                    self.recorded(claimed, Ok(status));
                }
            }
            // Nothing of the batch was written. One by one, so that a record the store refuses
            // holds back no other; what fails again is attempted again when its claim expires.
            Err(e) if batch.len() > 1 => {
                tracing::warn!(error = %e, answers = batch.len(), "recording a batch of delivery attempts failed; recording them one by one");
                for (claimed, outcome) in batch {
                    let status = self.core.finish_delivery(claimed, outcome).await;
                    self.recorded(claimed, status.as_ref().copied());
                }
            }
            Err(e) => {
                for (claimed, _) in batch {
                    self.recorded(claimed, Err(&e));
                }
            }
        }
    }

    /// Counts and logs what recording one answer came to.
    fn recorded(&self, claimed: &ClaimedDelivery, status: Result<Option<DeliveryStatus>, &CoreError>) {
        match status {
            Ok(Some(status)) => {
                let provider = claimed.delivery.provider.as_str().to_string();
                self.push
                    .attempts
                    .get_or_create(&vec![
                        ("provider".to_string(), provider),
                        ("status".to_string(), status.as_str().to_string()),
                    ])
                    .inc();
                tracing::debug!(delivery_id = %claimed.delivery.delivery_id, status = status.as_str(), "delivery attempt recorded")
            }
            // The record is gone with its application (management-api.md §7.1: deleting an
            // application deletes its messages and deliveries), whether it went before this
            // attempt or during the provider call: nothing is written, nothing retried.
            Ok(None) if claimed.application.is_none() || claimed.message.is_none() => {
                self.clients.forget(claimed.delivery.application_id);
                tracing::debug!(
                    delivery_id = %claimed.delivery.delivery_id,
                    "the delivery's application was deleted; its records went with it"
                )
            }
            Ok(None) => tracing::info!(
                delivery_id = %claimed.delivery.delivery_id,
                "the claim ended before the answer was recorded (lease expired, or the delivery was \
                 deleted with its application or person meanwhile)"
            ),
            // The claim expires and the delivery is attempted again (at-least-once).
            Err(e) => tracing::warn!(
                delivery_id = %claimed.delivery.delivery_id,
                error = %e,
                "recording a delivery attempt failed"
            ),
        }
    }
}

/// Whether stored provider `settings` hold the `credentials` a client was built from (which are
/// those settings without what delivery writes back, [`PROVIDER_STATUS_MEMBERS`]). Compared in place:
/// this runs for every provider call, and a copy of the settings per call was a tenth of the
/// server's fan-out CPU.
fn same_credentials(credentials: &Value, settings: &Value) -> bool {
    let (Some(built), Some(now)) = (credentials.as_object(), settings.as_object()) else {
        return credentials == settings;
    };
    let mut compared = 0;
    for (k, v) in now
        .iter()
        .filter(|(k, _)| !PROVIDER_STATUS_MEMBERS.contains(&k.as_str()))
    {
        if built.get(k) != Some(v) {
            return false;
        }
        compared += 1;
    }
    compared == built.len()
}

/// A provider client of one application.
#[derive(Clone)]
enum ProviderClient {
    Apns(ApnsClient),
    Fcm(FcmClient),
    Hms(HmsClient),
}

impl ProviderClient {
    async fn send(&self, message: &roster_push::PushMessage, delivery_id: Uuid, token: &str) -> SendReport {
        match self {
            ProviderClient::Apns(c) => c.send(message, delivery_id, token).await,
            ProviderClient::Fcm(c) => c.send(message, delivery_id, token).await,
            ProviderClient::Hms(c) => c.send(message, delivery_id, token).await,
        }
    }
}

/// Clients per (application, provider), each with the settings it was built from: reused while
/// the stored settings are the same (connections and provider tokens stay warm), rebuilt when
/// they change.
struct ClientPool {
    transport: Transport,
    clients: Mutex<HashMap<(Uuid, Provider), (Value, ProviderClient)>>,
}

impl ClientPool {
    fn new(transport: Transport) -> ClientPool {
        ClientPool {
            transport,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Drops the clients of an application that no longer exists (their connections and
    /// provider tokens with them).
    fn forget(&self, application_id: Uuid) {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients.retain(|(app, _), _| *app != application_id);
    }

    /// The client for `app`'s current settings of `provider`, or the report of why there is none
    /// (§6.3: not configured, or settings that cannot be used).
    fn client(&self, app: &Application, provider: Provider) -> Result<ProviderClient, SendReport> {
        let Some(settings) = app.providers.get(provider_key(provider)).filter(|v| v.is_object()) else {
            return Err(SendReport::provider_not_configured(provider.as_str()));
        };
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((built_from, client)) = clients.get(&(app.id, provider))
            && same_credentials(built_from, settings)
        {
            return Ok(client.clone());
        }
        // What delivery writes back is no change of credentials.
        let mut credentials = settings.clone();
        if let Some(obj) = credentials.as_object_mut() {
            obj.retain(|k, _| !PROVIDER_STATUS_MEMBERS.contains(&k.as_str()));
        }
        let built = match provider {
            Provider::Apns => ApnsCredentials::parse(&credentials)
                .map_err(|e| e.to_string())
                .map(|c| ApnsClient::new(c, &self.transport))
                .map(ProviderClient::Apns),
            Provider::Fcm => FcmCredentials::parse(&credentials)
                .map_err(|e| e.to_string())
                .map(|c| FcmClient::new(c, &self.transport))
                .map(ProviderClient::Fcm),
            Provider::Hms => HmsCredentials::parse(&credentials)
                .map_err(|e| e.to_string())
                .map(|c| HmsClient::new(c, &self.transport))
                .map(ProviderClient::Hms),
        };
        match built {
            Ok(client) => {
                clients.insert((app.id, provider), (credentials, client.clone()));
                Ok(client)
            }
            Err(why) => Err(SendReport {
                outcome: Outcome::Failed {
                    last_error: format!("the stored {} settings cannot be used: {why}", provider.as_str()),
                },
                response: ProviderResponse {
                    http_status: None,
                    reason: "PROVIDER_SETTINGS_INVALID".into(),
                },
                credential_refreshed: false,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::same_credentials;
    use serde_json::json;

    #[test]
    fn credentials_are_the_settings_without_what_delivery_writes_back() {
        let built = json!({"teamId": "T", "keyId": "K", "privateKey": "P", "topic": "com.example"});
        let mut settings = built.clone();
        assert!(same_credentials(&built, &settings));
        settings["status"] = json!("ERROR");
        settings["lastError"] = json!("BadDeviceToken");
        assert!(
            same_credentials(&built, &settings),
            "status and lastError are no credentials"
        );
        settings["keyId"] = json!("K2");
        assert!(!same_credentials(&built, &settings), "a changed value");
        let mut more = built.clone();
        more["sandbox"] = json!(true);
        assert!(!same_credentials(&built, &more), "an added setting");
        let fewer = json!({"teamId": "T", "keyId": "K", "privateKey": "P"});
        assert!(!same_credentials(&built, &fewer), "a removed setting");
        assert!(!same_credentials(&built, &json!(null)));
    }
}
