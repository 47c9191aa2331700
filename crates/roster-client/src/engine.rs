//! The engine (client-sdk.md §15): one task that owns the state, executes commands in the order
//! they were issued, sends HTTP requests one at a time, runs sync passes (§6.4) with backoff
//! (§6.5), and publishes snapshots of the local views for the lock-free reads.

use std::{
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use reqwest::Method;
use serde_json::Value;
use tokio::{
    sync::{broadcast, mpsc, oneshot},
    time::Instant,
};

use crate::{
    ChangeTarget, Config, Event, Installation, InstallationChanges, JwtSupplier, Operation, PendingState,
    PersonalizeOptions, PrivacySettings, PushRegistration, RetrySettings, RosterError, SaveOutcome, SuccessPending,
    SystemInfo, User, UserAttributes, UserChanges, UserIdentity,
    changes::personalize_body,
    config::{REDUCED_FIELDS, block_hash, sha256_hex, system_block},
    events::EVENT_BUFFER,
    http::{Call, Class, Failure, Transport, classify},
    json::{self, ATTRS, JsonMap, Kind},
    state::{Pair, Recovery, State, StoredPush, default_installation},
    storage::{Loaded, Storage},
    types::{installation_of, user_of},
};

/// The reply channel of a command.
pub(crate) type Reply<T> = oneshot::Sender<Result<T, RosterError>>;

/// What a handle asks the engine to do.
pub(crate) enum Command {
    FetchInstallation(Reply<Installation>),
    SaveInstallation(InstallationChanges, Reply<SaveOutcome<Installation>>),
    SetPushToken(Option<PushRegistration>, Reply<SaveOutcome<Installation>>),
    SetPrimary(String, bool, Reply<SaveOutcome<()>>),
    FetchUser(Reply<User>),
    SaveUser(UserChanges, Reply<SaveOutcome<User>>),
    Personalize(UserIdentity, Option<UserAttributes>, PersonalizeOptions, Reply<User>),
    Depersonalize(Reply<SuccessPending>),
    DepersonalizeInstallation(String, Reply<()>),
    SyncNow(Reply<PendingState>),
    Trigger,
    Shutdown(oneshot::Sender<()>),
}

/// The latest local views, read without waiting for the engine.
#[derive(Debug, Clone, Default)]
pub(crate) struct Views {
    pub installation: Installation,
    pub user: User,
    pub pending: PendingState,
}

/// What the handles and the engine share.
pub(crate) struct Shared {
    pub views: RwLock<Views>,
    /// Only the engine holds the strong sender, so receivers see `Closed` once it has stopped.
    pub events: broadcast::WeakSender<Event>,
}

/// How a waiting save ends.
#[derive(Debug, Clone)]
enum WaitResult {
    Reported,
    Queued(RosterError),
    Failed(RosterError),
}

/// A save waiting for the first installation request that carries its changes.
enum InstWaiter {
    View(Reply<SaveOutcome<Installation>>),
    Unit(Reply<SaveOutcome<()>>),
}

impl InstWaiter {
    fn send(self, r: WaitResult, view: &Installation) {
        match self {
            InstWaiter::View(tx) => {
                let _ = tx.send(outcome(r, || view.clone()));
            }
            InstWaiter::Unit(tx) => {
                let _ = tx.send(outcome(r, || ()));
            }
        }
    }
}

fn outcome<T>(r: WaitResult, view: impl FnOnce() -> T) -> Result<SaveOutcome<T>, RosterError> {
    match r {
        WaitResult::Reported => Ok(SaveOutcome::Reported(view())),
        WaitResult::Queued(e) => Ok(SaveOutcome::Queued(e)),
        WaitResult::Failed(e) => Err(e),
    }
}

/// The end of one step of a sync pass.
enum Step {
    /// Done, or failed permanently (the rejected changes were discarded).
    Done,
    /// `NO_REGISTRATION`: the recovery state change was made; the registration comes next.
    Recovered,
    /// A retryable failure: the pass ends.
    Failed(RosterError),
}

/// The end of a depersonalize attempt.
enum Dep {
    Success,
    /// `NO_REGISTRATION`: recovery made the installation anonymous, which was the goal.
    Recovered,
    Pending(RosterError),
}

/// A delta PATCH ready to send (client-sdk.md §6.2).
struct PatchRequest {
    target: ChangeTarget,
    /// The delta entries taken for this request; the answer acknowledges or discards them.
    snapshot: JsonMap,
    body: JsonMap,
    bearer: Option<String>,
    /// The hash of the system-data block the body carries (installation only).
    block_hash: Option<String>,
    /// Whether the body carries a token change (installation only).
    token_change: bool,
}

/// The name of a target in messages.
fn target_name(target: ChangeTarget) -> &'static str {
    match target {
        ChangeTarget::Installation => "installation",
        ChangeTarget::User => "user",
    }
}

/// The minimum time between the starts of two passes (client-sdk.md §6.4).
const PASS_SPACING: Duration = Duration::from_secs(1);

/// At most this many recoveries in one pass (a server that forgets every new registration at
/// once must not make the engine spin).
const MAX_RECOVERIES_PER_PASS: u32 = 2;

pub(crate) struct Engine {
    storage: Storage,
    state: State,
    transport: Transport,
    shared: Arc<Shared>,
    events: broadcast::Sender<Event>,
    rx: mpsc::UnboundedReceiver<Command>,
    privacy: PrivacySettings,
    retry: RetrySettings,
    system_info: SystemInfo,
    jwt_supplier: Option<Arc<dyn JwtSupplier>>,
    inst_waiters: Vec<InstWaiter>,
    user_waiters: Vec<Reply<SaveOutcome<User>>>,
    sync_waiters: Vec<Reply<PendingState>>,
    /// When the next pass starts (a trigger or the retry timer).
    next_pass_at: Option<Instant>,
    /// The automatic retry, as published in `pending()`.
    next_retry_at: Option<SystemTime>,
    last_pass_start: Option<Instant>,
    /// Consecutive failed passes (n of §6.5).
    failed_passes: u32,
    /// `Retry-After` of the last 429.
    not_before: Option<Instant>,
}

/// client-sdk.md §1 `start`: lock, load, privacy, installation id, engine.
pub(crate) fn start(config: Config) -> Result<(mpsc::UnboundedSender<Command>, Arc<Shared>), RosterError> {
    if config.application_code.trim().is_empty() {
        return Err(RosterError::validation("application_code", "must not be empty"));
    }
    if !matches!(config.base_url.scheme(), "http" | "https") {
        return Err(RosterError::validation("base_url", "must be an http or https URL"));
    }
    if config.storage_dir.as_os_str().is_empty() {
        return Err(RosterError::validation("storage_dir", "must not be empty"));
    }
    let push = match &config.push {
        Some(p) => {
            roster_model::validate::check_push_token(&p.token, "pushServiceToken")
                .map_err(|e| RosterError::from_model(e, None))?;
            Some(StoredPush::of(p))
        }
        None => None,
    };
    // 1. the storage lock
    let storage = Storage::open(&config.storage_dir)?;
    // 2. the state file; another application's state is discarded
    let app_hash = sha256_hex(config.application_code.as_bytes());
    let mut state = match storage.load()? {
        Loaded::Missing | Loaded::Quarantined => State::fresh(app_hash.clone()),
        Loaded::Found(v) => match serde_json::from_value::<State>(v) {
            Ok(s) if s.app_code_hash == app_hash => s,
            Ok(_) => {
                tracing::info!("the state file belongs to another application code; starting fresh");
                State::fresh(app_hash.clone())
            }
            Err(e) => {
                // The error text may quote stored values: only its position is logged.
                tracing::warn!(
                    line = e.line(),
                    column = e.column(),
                    "the state file does not have the expected shape; starting fresh"
                );
                storage.quarantine()?;
                State::fresh(app_hash.clone())
            }
        },
    };
    // 3. privacy settings applied to what is on disk (and in memory: after a restart the user is
    // unknown until fetched, §12.1)
    if config.privacy.user_data_persisting_disabled {
        state.strip_personal();
    }
    if config.privacy.system_info_sending_disabled {
        let reported = state
            .installation
            .current
            .as_ref()
            .is_some_and(|c| REDUCED_FIELDS.iter().any(|f| c.contains_key(*f)));
        state.system_data.clear_pending |= reported;
    } else {
        state.system_data.clear_pending = false;
    }
    // 4. the universal installation id
    if state.universal_installation_id.is_empty() {
        state.universal_installation_id = uuid::Uuid::new_v4().hyphenated().to_string();
    }
    if push.is_some() {
        state.push = push;
    }
    storage.write(&state.to_file(&config.privacy))?;
    let transport = Transport::new(&config, &state.universal_installation_id)?;
    // 5. the engine, and a first pass
    let (events, _) = broadcast::channel(EVENT_BUFFER);
    let shared = Arc::new(Shared {
        views: RwLock::new(Views::default()),
        events: events.downgrade(),
    });
    let (tx, rx) = mpsc::unbounded_channel();
    let mut engine = Engine {
        storage,
        state,
        transport,
        shared: shared.clone(),
        events,
        rx,
        privacy: config.privacy,
        retry: config.retry,
        system_info: config.system_info.clone(),
        jwt_supplier: config.jwt_supplier.clone(),
        inst_waiters: Vec::new(),
        user_waiters: Vec::new(),
        sync_waiters: Vec::new(),
        next_pass_at: None,
        next_retry_at: None,
        last_pass_start: None,
        failed_passes: 0,
        not_before: None,
    };
    engine.publish();
    engine.trigger();
    tokio::spawn(engine.run());
    Ok((tx, shared))
}

impl Engine {
    // --------------------------------------------------------------------------------------------
    // Loop
    // --------------------------------------------------------------------------------------------

    async fn run(mut self) {
        let shutdown = loop {
            let timer = self.next_pass_at;
            tokio::select! {
                biased;
                cmd = self.rx.recv() => match cmd {
                    None => break None,
                    Some(Command::Shutdown(reply)) => break Some(reply),
                    Some(cmd) => self.handle(cmd).await,
                },
                _ = sleep_until(timer), if timer.is_some() => {
                    let _ = self.run_pass().await;
                }
            }
        };
        // Everything accepted is persisted; waiting saves stay pending for the next start.
        self.reply_inst(WaitResult::Queued(RosterError::Shutdown));
        self.reply_user(WaitResult::Queued(RosterError::Shutdown));
        for w in self.sync_waiters.drain(..) {
            let _ = w.send(Err(RosterError::Shutdown));
        }
        self.rx.close();
        // Dropping the engine releases the storage lock before `shutdown()` resolves.
        drop(self);
        if let Some(reply) = shutdown {
            let _ = reply.send(());
        }
    }

    async fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::SaveInstallation(changes, reply) => {
                self.save_installation(changes, InstWaiter::View(reply));
            }
            Command::SetPushToken(push, reply) => self.set_push_token(push, reply),
            Command::SetPrimary(id, primary, reply) => self.set_primary(id, primary, reply).await,
            Command::SaveUser(changes, reply) => self.save_user(changes, reply),
            Command::FetchInstallation(reply) => {
                let r = self.fetch_installation().await;
                let _ = reply.send(r);
            }
            Command::FetchUser(reply) => {
                let r = self.fetch_user().await;
                let _ = reply.send(r);
            }
            Command::Personalize(identity, attributes, options, reply) => {
                let r = self.personalize(identity, attributes, options).await;
                let _ = reply.send(r);
            }
            Command::Depersonalize(reply) => {
                let r = self.depersonalize().await;
                let _ = reply.send(r);
            }
            Command::DepersonalizeInstallation(id, reply) => {
                let r = self.depersonalize_installation(id).await;
                let _ = reply.send(r);
            }
            Command::SyncNow(reply) => {
                self.sync_waiters.push(reply);
                self.trigger();
            }
            Command::Trigger => self.trigger(),
            Command::Shutdown(_) => unreachable!("handled by the loop"),
        }
    }

    /// client-sdk.md §6.4: a trigger starts a pass at once, even during a backoff wait, but no
    /// two passes start within a second (nor before a `Retry-After`).
    fn trigger(&mut self) {
        let now = Instant::now();
        let mut at = now;
        if let Some(last) = self.last_pass_start {
            at = at.max(last + PASS_SPACING);
        }
        if let Some(nb) = self.not_before {
            at = at.max(nb);
        }
        self.next_pass_at = Some(match self.next_pass_at {
            Some(t) if t < at => t,
            _ => at,
        });
    }

    /// client-sdk.md §6.5: `min(max, initial × 2^(n-1)) × [0.8, 1.2]`, never before `Retry-After`.
    fn schedule_backoff(&mut self) {
        self.failed_passes = self.failed_passes.saturating_add(1);
        let factor = 1u32.checked_shl(self.failed_passes - 1).unwrap_or(u32::MAX);
        let base = self.retry.initial.saturating_mul(factor).min(self.retry.max);
        let delay = base.mul_f64(rand::random_range(0.8..=1.2));
        let now = Instant::now();
        let mut at = now + delay;
        if let Some(nb) = self.not_before {
            at = at.max(nb);
        }
        if let Some(last) = self.last_pass_start {
            at = at.max(last + PASS_SPACING);
        }
        self.next_pass_at = Some(at);
        self.next_retry_at = Some(SystemTime::now() + (at - now));
    }

    /// Runs the pass now if saves wait for it, so that commands keep their order (a `save_user`
    /// issued before a `personalize` is sent before it, §15).
    async fn flush(&mut self) {
        if self.inst_waiters.is_empty() && self.user_waiters.is_empty() {
            return;
        }
        if let Some(last) = self.last_pass_start {
            tokio::time::sleep_until(last + PASS_SPACING).await;
        }
        let _ = self.run_pass().await;
    }

    // --------------------------------------------------------------------------------------------
    // State, views, events
    // --------------------------------------------------------------------------------------------

    /// Persists `s` and makes it the state (client-sdk.md §5.2: a failed write leaves the
    /// in-memory state unchanged).
    fn commit(&mut self, s: State) -> Result<(), RosterError> {
        self.storage.write(&s.to_file(&self.privacy))?;
        self.state = s;
        self.publish();
        Ok(())
    }

    fn block(&self) -> JsonMap {
        system_block(&self.system_info, self.privacy.system_info_sending_disabled)
    }

    fn installation_view(&self) -> Installation {
        let mut m = self.state.installation_local();
        for (k, v) in self.block() {
            m.insert(k, v);
        }
        if self.privacy.system_info_sending_disabled {
            for f in REDUCED_FIELDS {
                m.remove(f);
            }
        }
        installation_of(&m)
    }

    fn user_view(&self) -> User {
        user_of(&self.state.user_local())
    }

    fn pending_state(&self) -> PendingState {
        let mut installation_fields = json::paths(&self.state.installation.unreported);
        if self.state.token_change().is_some() {
            installation_fields.push("pushServiceToken".into());
        }
        PendingState {
            user_fields: json::paths(&self.state.user.unreported),
            installation_fields,
            depersonalize_pending: self.state.depersonalize_pending,
            registration_pending: self.state.push_reg_id.is_none(),
            next_retry_at: self.next_retry_at,
        }
    }

    fn has_pending(&self) -> bool {
        !self.pending_state().is_empty()
    }

    fn publish(&self) {
        let views = Views {
            installation: self.installation_view(),
            user: self.user_view(),
            pending: self.pending_state(),
        };
        *self.shared.views.write().unwrap_or_else(|e| e.into_inner()) = views;
    }

    fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }

    fn emit_installation_updated(&self) {
        self.emit(Event::InstallationUpdated {
            installation: self.installation_view(),
        });
    }

    fn emit_user_updated(&self) {
        self.emit(Event::UserUpdated { user: self.user_view() });
    }

    fn api_error(&self, operation: Operation, error: &RosterError) {
        tracing::info!(?operation, error = %error.log_summary(), "request failed");
        self.emit(Event::ApiError {
            operation,
            error: error.clone(),
        });
    }

    fn reply_inst(&mut self, r: WaitResult) {
        if self.inst_waiters.is_empty() {
            return;
        }
        let view = self.installation_view();
        for w in self.inst_waiters.drain(..) {
            w.send(r.clone(), &view);
        }
    }

    fn reply_user(&mut self, r: WaitResult) {
        if self.user_waiters.is_empty() {
            return;
        }
        let view = self.user_view();
        for w in self.user_waiters.drain(..) {
            let _ = w.send(outcome(r.clone(), || view.clone()));
        }
    }

    /// Replies to the saves waiting for a request of `target`.
    fn reply(&mut self, target: ChangeTarget, r: WaitResult) {
        match target {
            ChangeTarget::Installation => self.reply_inst(r),
            ChangeTarget::User => self.reply_user(r),
        }
    }

    /// `InstallationUpdated` or `UserUpdated`.
    fn emit_updated(&self, target: ChangeTarget) {
        match target {
            ChangeTarget::Installation => self.emit_installation_updated(),
            ChangeTarget::User => self.emit_user_updated(),
        }
    }

    /// Sends a request; a success resets the backoff (§6.5), a 429 sets `Retry-After`.
    async fn send(&mut self, call: Call<'_>) -> Result<Option<JsonMap>, Failure> {
        let r = self.transport.send(call).await;
        match &r {
            Ok(_) => self.failed_passes = 0,
            Err(f) => {
                if let Some(ra) = f.retry_after {
                    self.not_before = Some(Instant::now() + ra);
                }
            }
        }
        r
    }

    /// The supplier's token, checked locally (client-sdk.md §14). A panic is an invalid token.
    fn jwt(&self) -> Result<Option<String>, RosterError> {
        let Some(supplier) = &self.jwt_supplier else {
            return Ok(None);
        };
        let token = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| supplier.jwt())).map_err(|_| {
            tracing::warn!("the JWT supplier panicked");
            RosterError::JwtStructureInvalid
        })?;
        match token {
            None => Ok(None),
            Some(t) => {
                let now = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                crate::jwt::check(&t, now)?;
                Ok(Some(t))
            }
        }
    }

    // --------------------------------------------------------------------------------------------
    // Sync pass (client-sdk.md §6.4)
    // --------------------------------------------------------------------------------------------

    async fn run_pass(&mut self) -> Result<(), RosterError> {
        self.last_pass_start = Some(Instant::now());
        self.next_pass_at = None;
        self.next_retry_at = None;
        let mut recoveries = 0;
        let result = loop {
            if recoveries > MAX_RECOVERIES_PER_PASS {
                break Err(RosterError::RegistrationLost);
            }
            // 1. registration
            if self.state.push_reg_id.is_none()
                && let Err(e) = self.step_register().await
            {
                break Err(e);
            }
            // 2. the pending depersonalization
            if self.state.depersonalize_pending {
                match self.attempt_depersonalize().await {
                    Dep::Success => {}
                    Dep::Recovered => {
                        recoveries += 1;
                        continue;
                    }
                    Dep::Pending(e) => break Err(e),
                }
            }
            // 3. the installation PATCH
            match self.step_patch_installation().await {
                Step::Done => {}
                Step::Recovered => {
                    recoveries += 1;
                    continue;
                }
                Step::Failed(e) => break Err(e),
            }
            // 4. the user PATCH
            match self.step_patch_user().await {
                Step::Done => {}
                Step::Recovered => {
                    recoveries += 1;
                    continue;
                }
                Step::Failed(e) => break Err(e),
            }
            break Ok(());
        };
        match &result {
            Ok(()) => {
                self.reply_inst(WaitResult::Reported);
                self.reply_user(WaitResult::Reported);
                if self.has_pending() {
                    self.schedule_backoff();
                }
            }
            Err(e) => {
                tracing::info!(error = %e.log_summary(), "sync pass ended on a retryable failure");
                self.reply_inst(WaitResult::Queued(e.clone()));
                self.reply_user(WaitResult::Queued(e.clone()));
                self.schedule_backoff();
            }
        }
        self.publish();
        let pending = self.pending_state();
        for w in self.sync_waiters.drain(..) {
            let _ = w.send(result.clone().map(|()| pending.clone()));
        }
        result
    }

    /// client-sdk.md §7: `POST /mobile/1/appinstance` with the whole local installation view.
    /// A permanent rejection discards the pending delta and retries with token and system data.
    async fn step_register(&mut self) -> Result<(), RosterError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let snapshot = self.state.installation.unreported.clone();
            let block = self.block();
            let hash = block_hash(&block);
            let mut body = JsonMap::new();
            for (k, v) in &snapshot {
                match v {
                    Value::Null => {}
                    Value::Object(o) if k == ATTRS => {
                        let set: JsonMap = o
                            .iter()
                            .filter(|(_, x)| !x.is_null())
                            .map(|(n, x)| (n.clone(), x.clone()))
                            .collect();
                        body.insert(k.clone(), Value::Object(set));
                    }
                    other => {
                        body.insert(k.clone(), other.clone());
                    }
                }
            }
            if let Some(p) = &self.state.push {
                body.insert("pushServiceType".into(), Value::String(p.service_type.as_str().into()));
                body.insert("pushServiceToken".into(), Value::String(p.token.clone()));
            }
            for (k, v) in &block {
                body.insert(k.clone(), v.clone());
            }
            let body = Value::Object(body);
            let call = Call::new(Method::POST, "/mobile/1/appinstance".into()).body(&body);
            match self.send(call).await {
                Ok(Some(resp)) => {
                    let Some(id) = resp
                        .get("pushRegId")
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                        .map(str::to_ascii_lowercase)
                    else {
                        let e = RosterError::Network("malformed registration response: no pushRegId".into());
                        self.api_error(Operation::CreateInstallation, &e);
                        return Err(e);
                    };
                    let mut s = self.state.clone();
                    s.push_reg_id = Some(id.clone());
                    s.installation.current = Some(resp);
                    json::ack(&mut s.installation.unreported, &snapshot);
                    s.prune_installation_delta();
                    s.system_data.reported_hash = Some(hash);
                    s.system_data.clear_pending = false;
                    let recovery = s.recovery.take();
                    self.commit(s)?;
                    match recovery {
                        Some(r) => {
                            self.emit(Event::RegistrationChanged {
                                old: r.old_push_reg_id,
                                new: id,
                            });
                            self.emit_installation_updated();
                            if r.had_identity {
                                self.emit(Event::Depersonalized);
                            }
                        }
                        None => {
                            self.emit(Event::RegistrationCreated { push_reg_id: id });
                            self.emit_installation_updated();
                        }
                    }
                    self.reply_inst(WaitResult::Reported);
                    return Ok(());
                }
                Ok(None) => {
                    let e = RosterError::Network("malformed registration response: empty body".into());
                    self.api_error(Operation::CreateInstallation, &e);
                    return Err(e);
                }
                Err(f) => {
                    self.api_error(Operation::CreateInstallation, &f.error);
                    if classify(&f.error, false) == Class::Permanent && attempt == 1 && !snapshot.is_empty() {
                        let mut s = self.state.clone();
                        let fields = json::ack(&mut s.installation.unreported, &snapshot);
                        self.commit(s)?;
                        self.emit(Event::ChangesDiscarded {
                            target: ChangeTarget::Installation,
                            fields,
                            error: Some(f.error.clone()),
                        });
                        self.reply_inst(WaitResult::Failed(f.error));
                        continue;
                    }
                    return Err(f.error);
                }
            }
        }
    }

    /// The registration, if there is none yet (needed before any other request, §3).
    async fn ensure_registered(&mut self) -> Result<String, RosterError> {
        if let Some(id) = &self.state.push_reg_id {
            return Ok(id.clone());
        }
        match self.step_register().await {
            Ok(()) => Ok(self.state.push_reg_id.clone().expect("just registered")),
            Err(e) => {
                self.schedule_backoff();
                Err(e)
            }
        }
    }

    /// client-sdk.md §6.2: the installation delta, the system data when it changed, the token
    /// when it changed.
    async fn step_patch_installation(&mut self) -> Step {
        let Some(id) = self.state.push_reg_id.clone() else {
            return Step::Done;
        };
        let snapshot = self.state.installation.unreported.clone();
        let block = self.block();
        let hash = block_hash(&block);
        let clear_pending = self.state.system_data.clear_pending;
        let send_block = self.state.system_data.reported_hash.as_deref() != Some(hash.as_str()) || clear_pending;
        let token = self.state.token_change();
        if snapshot.is_empty() && !send_block && token.is_none() {
            self.reply(ChangeTarget::Installation, WaitResult::Reported);
            return Step::Done;
        }
        let mut body = snapshot.clone();
        if send_block {
            for (k, v) in &block {
                body.insert(k.clone(), v.clone());
            }
            if clear_pending {
                // §12.2: each dropped field once as null, so that the server forgets it.
                for f in REDUCED_FIELDS {
                    body.entry(f).or_insert(Value::Null);
                }
            }
        }
        match &token {
            Some(Some(p)) => {
                body.insert("pushServiceType".into(), Value::String(p.service_type.as_str().into()));
                body.insert("pushServiceToken".into(), Value::String(p.token.clone()));
            }
            Some(None) => {
                body.insert("pushServiceToken".into(), Value::Null);
            }
            None => {}
        }
        let request = PatchRequest {
            target: ChangeTarget::Installation,
            snapshot,
            body,
            bearer: None,
            block_hash: send_block.then_some(hash),
            token_change: token.is_some(),
        };
        self.send_patch(&id, request).await
    }

    /// client-sdk.md §6.2: `PATCH /mobile/1/appinstance/{id}/user` with the user delta.
    async fn step_patch_user(&mut self) -> Step {
        let Some(id) = self.state.push_reg_id.clone() else {
            return Step::Done;
        };
        if self.state.user.unreported.is_empty() {
            self.reply(ChangeTarget::User, WaitResult::Reported);
            return Step::Done;
        }
        let bearer = match self.jwt() {
            Ok(b) => b,
            Err(e) => {
                self.api_error(Operation::PatchUser, &e);
                return Step::Failed(e);
            }
        };
        let snapshot = self.state.user.unreported.clone();
        let request = PatchRequest {
            target: ChangeTarget::User,
            body: snapshot.clone(),
            snapshot,
            bearer,
            block_hash: None,
            token_change: false,
        };
        self.send_patch(&id, request).await
    }

    /// Sends a delta PATCH of the installation or the user and applies the answer
    /// (client-sdk.md §6.2, classification §6.3), replying to the saves waiting for it.
    async fn send_patch(&mut self, id: &str, request: PatchRequest) -> Step {
        let PatchRequest {
            target,
            snapshot,
            body,
            bearer,
            block_hash,
            token_change,
        } = request;
        let (path, operation) = match target {
            ChangeTarget::Installation => (format!("/mobile/1/appinstance/{id}"), Operation::PatchInstallation),
            ChangeTarget::User => (format!("/mobile/1/appinstance/{id}/user"), Operation::PatchUser),
        };
        let body = Value::Object(body);
        let call = Call::new(Method::PATCH, path).body(&body).caller(id).bearer(bearer);
        match self.send(call).await {
            Ok(resp) => {
                let mut s = self.state.clone();
                let before = s.pair(target).current.clone();
                let current = match resp {
                    Some(m) => m,
                    None => {
                        // No body: the confirmed copy with what was sent applied.
                        let mut c = s.base(target);
                        if let Value::Object(sent) = &body {
                            json::apply(&mut c, sent, Kind::of(target));
                        }
                        c
                    }
                };
                s.pair_mut(target).current = Some(current);
                json::ack(&mut s.pair_mut(target).unreported, &snapshot);
                s.prune_delta(target);
                if let Some(hash) = block_hash {
                    s.system_data.reported_hash = Some(hash);
                    s.system_data.clear_pending = false;
                }
                if let Err(e) = self.commit(s) {
                    return Step::Failed(e);
                }
                if self.state.pair(target).current != before {
                    self.emit_updated(target);
                }
                self.reply(target, WaitResult::Reported);
                Step::Done
            }
            Err(f) => {
                self.api_error(operation, &f.error);
                match classify(&f.error, target == ChangeTarget::User) {
                    Class::NoRegistration => {
                        self.reply(target, WaitResult::Failed(RosterError::RegistrationLost));
                        match self.recover(&f.error, false) {
                            Ok(()) => Step::Recovered,
                            Err(e) => Step::Failed(e),
                        }
                    }
                    Class::Retryable => Step::Failed(f.error),
                    Class::Permanent => {
                        // §6.2: the rejected entries are discarded so that one bad value does
                        // not block every later change.
                        let mut s = self.state.clone();
                        let mut fields = json::ack(&mut s.pair_mut(target).unreported, &snapshot);
                        if let Some(hash) = block_hash {
                            s.system_data.reported_hash = Some(hash);
                            s.system_data.clear_pending = false;
                        }
                        if token_change {
                            s.push = s.confirmed_push();
                            fields.push("pushServiceToken".into());
                        }
                        if let Err(e) = self.commit(s) {
                            return Step::Failed(e);
                        }
                        if !fields.is_empty() {
                            self.emit(Event::ChangesDiscarded {
                                target,
                                fields,
                                error: Some(f.error.clone()),
                            });
                        }
                        self.reply(target, WaitResult::Failed(f.error));
                        Step::Done
                    }
                }
            }
        }
    }

    /// client-sdk.md §9.1 step 4: `POST .../depersonalize` of the own installation.
    async fn attempt_depersonalize(&mut self) -> Dep {
        let Some(id) = self.state.push_reg_id.clone() else {
            // Nothing to tell the server.
            let mut s = self.state.clone();
            s.depersonalize_pending = false;
            if let Err(e) = self.commit(s) {
                return Dep::Pending(e);
            }
            self.emit(Event::Depersonalized);
            return Dep::Success;
        };
        let call = Call::new(Method::POST, format!("/mobile/1/appinstance/{id}/depersonalize")).caller(&id);
        match self.send(call).await {
            Ok(_) => {
                let mut s = self.state.clone();
                s.depersonalize_pending = false;
                if let Err(e) = self.commit(s) {
                    return Dep::Pending(e);
                }
                self.emit(Event::Depersonalized);
                Dep::Success
            }
            Err(f) => {
                self.api_error(Operation::Depersonalize, &f.error);
                if classify(&f.error, false) == Class::NoRegistration {
                    match self.recover(&f.error, true) {
                        Ok(()) => Dep::Recovered,
                        Err(e) => Dep::Pending(e),
                    }
                } else {
                    Dep::Pending(f.error)
                }
            }
        }
    }

    // --------------------------------------------------------------------------------------------
    // NO_REGISTRATION recovery (client-sdk.md §11)
    // --------------------------------------------------------------------------------------------

    /// The recovery state change, persisted before the new registration is sent (§16).
    /// `depersonalizing`: the lost registration was being depersonalized; recovery completes
    /// that (§9.1), so `Depersonalized` is emitted here.
    fn recover(&mut self, cause: &RosterError, depersonalizing: bool) -> Result<(), RosterError> {
        let Some(old) = self.state.push_reg_id.clone() else {
            return Ok(());
        };
        tracing::warn!(push_reg_id = %old, "the server no longer knows this installation; registering again");
        let had_identity = !depersonalizing && self.state.user_has_identity();
        let user_fields = json::paths(&self.state.user.unreported);
        let mut s = self.state.clone();
        s.push_reg_id = None;
        s.system_data = Default::default();
        s.installation.current = None;
        s.user = Pair::default();
        s.depersonalize_pending = false;
        s.recovery = Some(Recovery {
            old_push_reg_id: old,
            had_identity,
        });
        self.commit(s)?;
        if !user_fields.is_empty() {
            self.emit(Event::ChangesDiscarded {
                target: ChangeTarget::User,
                fields: user_fields,
                error: Some(cause.clone()),
            });
        }
        self.reply_user(WaitResult::Failed(RosterError::RegistrationLost));
        if depersonalizing {
            self.emit(Event::Depersonalized);
        }
        Ok(())
    }

    /// The registration right after a recovery made by a direct call; a failure is retried with
    /// backoff.
    async fn reregister(&mut self) {
        if let Err(e) = self.step_register().await {
            tracing::info!(error = %e.log_summary(), "registration after recovery failed; it is retried");
            self.schedule_backoff();
        }
    }

    /// The error a direct call returns for a failed request (and the recovery it may start).
    async fn direct_failure(&mut self, operation: Operation, f: Failure, user_request: bool) -> RosterError {
        self.api_error(operation, &f.error);
        if classify(&f.error, user_request) == Class::NoRegistration {
            if let Err(e) = self.recover(&f.error, false) {
                return e;
            }
            self.reregister().await;
            return RosterError::RegistrationLost;
        }
        f.error
    }

    // --------------------------------------------------------------------------------------------
    // Saves (client-sdk.md §6.1)
    // --------------------------------------------------------------------------------------------

    /// Merges validated changes into the delta of `target` and persists them (client-sdk.md
    /// §6.1 step 3); whether the delta still carries them afterwards (a change equal to the
    /// confirmed value leaves nothing to send, so there is nothing to wait for).
    fn accept(&mut self, target: ChangeTarget, patch: &JsonMap) -> Result<bool, RosterError> {
        let mut s = self.state.clone();
        let confirmed_attrs = json::attrs_of(&s.base(target));
        json::merge(&mut s.pair_mut(target).unreported, patch, &confirmed_attrs);
        s.prune_delta(target);
        self.commit(s)?;
        Ok(json::carries(&self.state.pair(target).unreported, patch))
    }

    fn save_installation(&mut self, changes: InstallationChanges, waiter: InstWaiter) {
        let view = self.state.installation_local();
        let accepted = changes
            .to_patch(&json::attrs_of(&view))
            .and_then(|patch| self.accept(ChangeTarget::Installation, &patch));
        match accepted {
            Err(e) => return waiter.send(WaitResult::Failed(e), &Installation::default()),
            Ok(true) => self.inst_waiters.push(waiter),
            Ok(false) => waiter.send(WaitResult::Reported, &self.installation_view()),
        }
        self.trigger();
    }

    fn set_push_token(&mut self, push: Option<PushRegistration>, reply: Reply<SaveOutcome<Installation>>) {
        let waiter = InstWaiter::View(reply);
        if let Some(p) = &push
            && let Err(e) = roster_model::validate::check_push_token(&p.token, "pushServiceToken")
        {
            return waiter.send(
                WaitResult::Failed(RosterError::from_model(e, None)),
                &Installation::default(),
            );
        }
        let mut s = self.state.clone();
        s.push = push.as_ref().map(StoredPush::of);
        if let Err(e) = self.commit(s) {
            return waiter.send(WaitResult::Failed(e), &Installation::default());
        }
        if self.state.token_change().is_some() {
            self.inst_waiters.push(waiter);
        } else {
            waiter.send(WaitResult::Reported, &self.installation_view());
        }
        self.trigger();
    }

    fn save_user(&mut self, changes: UserChanges, reply: Reply<SaveOutcome<User>>) {
        if self.state.depersonalize_pending {
            let _ = reply.send(Err(RosterError::DepersonalizationPending));
            return;
        }
        let view = self.state.user_local();
        let accepted = changes
            .to_patch(&json::attrs_of(&view))
            .and_then(|patch| self.accept(ChangeTarget::User, &patch));
        match accepted {
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
            Ok(true) => self.user_waiters.push(reply),
            Ok(false) => {
                let _ = reply.send(Ok(SaveOutcome::Reported(self.user_view())));
            }
        }
        self.trigger();
    }

    // --------------------------------------------------------------------------------------------
    // Fetches
    // --------------------------------------------------------------------------------------------

    async fn fetch_installation(&mut self) -> Result<Installation, RosterError> {
        self.fetch(ChangeTarget::Installation).await?;
        Ok(self.installation_view())
    }

    async fn fetch_user(&mut self) -> Result<User, RosterError> {
        self.fetch(ChangeTarget::User).await?;
        Ok(self.user_view())
    }

    /// GET of the own installation or the user: the confirmed copy is replaced, pending changes
    /// stay pending (client-sdk.md §3).
    async fn fetch(&mut self, target: ChangeTarget) -> Result<(), RosterError> {
        if self.state.depersonalize_pending {
            return Err(RosterError::DepersonalizationPending);
        }
        self.flush().await;
        let id = self.ensure_registered().await?;
        let (path, operation, bearer) = match target {
            ChangeTarget::Installation => (format!("/mobile/1/appinstance/{id}"), Operation::GetInstallation, None),
            ChangeTarget::User => {
                let bearer = self.jwt().inspect_err(|e| self.api_error(Operation::GetUser, e))?;
                (format!("/mobile/1/appinstance/{id}/user"), Operation::GetUser, bearer)
            }
        };
        let call = Call::new(Method::GET, path).caller(&id).bearer(bearer);
        let r = self.send(call).await;
        self.trigger();
        match r {
            Ok(Some(m)) => {
                let mut s = self.state.clone();
                let before = s.pair(target).current.clone();
                s.pair_mut(target).current = Some(m);
                s.prune_delta(target);
                self.commit(s)?;
                if self.state.pair(target).current != before {
                    self.emit_updated(target);
                }
                Ok(())
            }
            Ok(None) => {
                let e = RosterError::Network(format!("malformed response: empty {}", target_name(target)));
                self.api_error(operation, &e);
                Err(e)
            }
            Err(f) => Err(self.direct_failure(operation, f, target == ChangeTarget::User).await),
        }
    }

    // --------------------------------------------------------------------------------------------
    // Personalize (client-sdk.md §8)
    // --------------------------------------------------------------------------------------------

    async fn personalize(
        &mut self,
        identity: UserIdentity,
        attributes: Option<UserAttributes>,
        options: PersonalizeOptions,
    ) -> Result<User, RosterError> {
        self.flush().await;
        // 1. a pending depersonalization goes first, in this call
        if self.state.depersonalize_pending {
            match self.attempt_depersonalize().await {
                Dep::Success => {}
                Dep::Recovered => self.reregister().await,
                Dep::Pending(_) => {
                    self.schedule_backoff();
                    return Err(RosterError::DepersonalizationPending);
                }
            }
        }
        // 2. validation
        let body = personalize_body(&identity, attributes.as_ref())?;
        let id = self.ensure_registered().await?;
        self.trigger();
        // 3. pending user changes
        if !options.force_depersonalize && !self.state.user.unreported.is_empty() {
            match self.step_patch_user().await {
                Step::Done => {}
                Step::Recovered => {
                    self.reregister().await;
                    return Err(RosterError::RegistrationLost);
                }
                Step::Failed(e) => {
                    self.schedule_backoff();
                    return Err(e);
                }
            }
        }
        // 4. the request
        let bearer = self.jwt().inspect_err(|e| self.api_error(Operation::Personalize, e))?;
        let path = format!(
            "/mobile/1/appinstance/{id}/personalize?forceDepersonalize={}&keepAsLead={}&setDeviceAsPrimary={}",
            options.force_depersonalize, options.keep_as_lead, options.set_device_as_primary
        );
        let call = Call::new(Method::POST, path).body(&body).caller(&id).bearer(bearer);
        match self.send(call).await {
            Ok(Some(resp)) => {
                // 5. success
                let mut s = self.state.clone();
                let discarded = json::paths(&s.user.unreported);
                s.user.current = Some(resp.clone());
                s.user.unreported = JsonMap::new();
                let inst_before = s.installation.current.clone();
                if let Some(own) = s.own_instance(&resp).cloned() {
                    let cur = s.installation.current.get_or_insert_with(default_installation);
                    for k in ["isPrimary", "regEnabled"] {
                        if let Some(v) = own.get(k) {
                            cur.insert(k.into(), v.clone());
                        }
                    }
                    cur.insert(
                        ATTRS.into(),
                        own.get(ATTRS).cloned().unwrap_or(Value::Object(JsonMap::new())),
                    );
                    match own.get("applicationUserId") {
                        Some(v) => cur.insert("applicationUserId".into(), v.clone()),
                        None => cur.remove("applicationUserId"),
                    };
                    s.prune_installation_delta();
                }
                self.commit(s)?;
                if !discarded.is_empty() {
                    self.emit(Event::ChangesDiscarded {
                        target: ChangeTarget::User,
                        fields: discarded,
                        error: None,
                    });
                }
                let user = self.user_view();
                self.emit(Event::Personalized { user: user.clone() });
                if self.state.installation.current != inst_before {
                    self.emit_installation_updated();
                }
                Ok(user)
            }
            Ok(None) => {
                let e = RosterError::Network("malformed response: empty personalize answer".into());
                self.api_error(Operation::Personalize, &e);
                Err(e)
            }
            // 6. failure: nothing was applied locally
            Err(f) => Err(self.direct_failure(Operation::Personalize, f, true).await),
        }
    }

    // --------------------------------------------------------------------------------------------
    // Depersonalize (client-sdk.md §9)
    // --------------------------------------------------------------------------------------------

    async fn depersonalize(&mut self) -> Result<SuccessPending, RosterError> {
        self.flush().await;
        if !self.state.depersonalize_pending {
            // 2. the local wipe, in one state change
            let mut s = self.state.clone();
            s.user = Pair::default();
            for m in s
                .installation
                .current
                .iter_mut()
                .chain(std::iter::once(&mut s.installation.unreported))
            {
                m.remove("applicationUserId");
                m.remove(ATTRS);
            }
            if let Some(c) = s.installation.current.as_mut() {
                c.insert(ATTRS.into(), Value::Object(JsonMap::new()));
                c.insert("isPrimary".into(), Value::Bool(false));
            }
            s.installation.unreported.remove("isPrimary");
            s.depersonalize_pending = s.push_reg_id.is_some();
            self.commit(s)?;
            // 3. no registration: nothing to tell the server
            if self.state.push_reg_id.is_none() {
                self.emit(Event::Depersonalized);
                self.trigger();
                return Ok(SuccessPending::Success);
            }
        }
        // 1. / 4. the request, ahead of everything else queued
        let r = match self.attempt_depersonalize().await {
            Dep::Success => Ok(SuccessPending::Success),
            Dep::Recovered => {
                self.reregister().await;
                Ok(SuccessPending::Success)
            }
            Dep::Pending(_) => {
                self.schedule_backoff();
                return Ok(SuccessPending::Pending);
            }
        };
        self.trigger();
        r
    }

    // --------------------------------------------------------------------------------------------
    // Other installations of the same user (client-sdk.md §10)
    // --------------------------------------------------------------------------------------------

    fn is_own(&self, id: &str) -> bool {
        self.state
            .push_reg_id
            .as_deref()
            .is_some_and(|own| own.eq_ignore_ascii_case(id.trim()))
    }

    async fn set_primary(&mut self, id: String, primary: bool, reply: Reply<SaveOutcome<()>>) {
        // Without a registration the own id is not known yet.
        if self.state.push_reg_id.is_none()
            && !self.state.depersonalize_pending
            && let Err(e) = self.ensure_registered().await
        {
            let _ = reply.send(Err(e));
            return;
        }
        if self.is_own(&id) {
            let changes = InstallationChanges {
                is_primary: crate::FieldChange::Set(primary),
                ..Default::default()
            };
            return self.save_installation(changes, InstWaiter::Unit(reply));
        }
        let r = self.set_other_primary(id, primary).await;
        let _ = reply.send(r);
    }

    async fn set_other_primary(&mut self, other: String, primary: bool) -> Result<SaveOutcome<()>, RosterError> {
        if self.state.depersonalize_pending {
            return Err(RosterError::DepersonalizationPending);
        }
        self.flush().await;
        let id = self.ensure_registered().await?;
        let other = other.trim().to_ascii_lowercase();
        let body = serde_json::json!({ "isPrimary": primary });
        let call = Call::new(Method::PATCH, format!("/mobile/1/appinstance/{other}"))
            .body(&body)
            .caller(&id);
        match self.send(call).await {
            Ok(_) => {
                let mut s = self.state.clone();
                let user_before = s.user.current.clone();
                let inst_before = s.installation.current.clone();
                if let Some(Value::Array(instances)) = s.user.current.as_mut().and_then(|u| u.get_mut("instances")) {
                    for i in instances.iter_mut().filter_map(Value::as_object_mut) {
                        let pid = i.get("pushRegId").and_then(Value::as_str).unwrap_or_default();
                        if pid.eq_ignore_ascii_case(&other) {
                            i.insert("isPrimary".into(), Value::Bool(primary));
                        } else if primary {
                            i.insert("isPrimary".into(), Value::Bool(false));
                        }
                    }
                }
                if primary && let Some(c) = s.installation.current.as_mut() {
                    c.insert("isPrimary".into(), Value::Bool(false));
                }
                self.commit(s)?;
                if self.state.installation.current != inst_before {
                    self.emit_installation_updated();
                }
                if self.state.user.current != user_before {
                    self.emit_user_updated();
                }
                self.trigger();
                Ok(SaveOutcome::Reported(()))
            }
            Err(f) => Err(self.direct_failure(Operation::SetOtherPrimary, f, false).await),
        }
    }

    async fn depersonalize_installation(&mut self, other: String) -> Result<(), RosterError> {
        if self.is_own(&other) {
            return Err(RosterError::CannotDepersonalizeCurrentInstallation);
        }
        if self.state.depersonalize_pending {
            return Err(RosterError::DepersonalizationPending);
        }
        self.flush().await;
        let id = self.ensure_registered().await?;
        if self.is_own(&other) {
            return Err(RosterError::CannotDepersonalizeCurrentInstallation);
        }
        let other = other.trim().to_ascii_lowercase();
        let call = Call::new(Method::POST, format!("/mobile/1/appinstance/{other}/depersonalize")).caller(&id);
        match self.send(call).await {
            Ok(_) => {
                let mut s = self.state.clone();
                let before = s.user.current.clone();
                if let Some(Value::Array(instances)) = s.user.current.as_mut().and_then(|u| u.get_mut("instances")) {
                    instances.retain(|i| {
                        !i.get("pushRegId")
                            .and_then(Value::as_str)
                            .is_some_and(|p| p.eq_ignore_ascii_case(&other))
                    });
                }
                self.commit(s)?;
                if self.state.user.current != before {
                    self.emit_user_updated();
                }
                self.trigger();
                Ok(())
            }
            Err(f) => Err(self.direct_failure(Operation::DepersonalizeOther, f, false).await),
        }
    }
}

/// Sleeps until `at` (never called with `None`: the branch is disabled then).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
