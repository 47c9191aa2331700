//! `RosterClient`, the cheap handle to the engine (client-sdk.md §3, §15).

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::{
    Config, EventReceiver, Installation, InstallationChanges, PendingState, PersonalizeOptions, PushRegistration,
    RosterError, SaveOutcome, SuccessPending, User, UserAttributes, UserChanges, UserIdentity,
    engine::{self, Command, Reply, Shared},
};

/// One installation of one application, kept in sync with a Roster server.
///
/// `Clone + Send + Sync`; every clone talks to the same engine task. Requires a Tokio runtime.
/// Dropping every handle stops the engine after the request in flight; nothing accepted is lost,
/// because every change was persisted when it was accepted.
#[derive(Clone)]
pub struct RosterClient {
    inner: Arc<Inner>,
}

struct Inner {
    tx: mpsc::UnboundedSender<Command>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RosterClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RosterClient")
            .field("push_reg_id", &self.installation().push_reg_id)
            .finish_non_exhaustive()
    }
}

impl RosterClient {
    /// Takes the storage lock, loads the state, applies the privacy settings, and starts the
    /// engine, which registers (or sends whatever is pending) in the background. Returns as soon
    /// as the state is loaded; it does not wait for the network (client-sdk.md §1).
    pub async fn start(config: Config) -> Result<RosterClient, RosterError> {
        let (tx, shared) = engine::start(config)?;
        Ok(RosterClient {
            inner: Arc::new(Inner { tx, shared }),
        })
    }

    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, RosterError> {
        let (reply, rx) = oneshot::channel();
        self.inner.tx.send(make(reply)).map_err(|_| RosterError::Shutdown)?;
        rx.await.map_err(|_| RosterError::Shutdown)?
    }

    fn views(&self) -> std::sync::RwLockReadGuard<'_, engine::Views> {
        self.inner.shared.views.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The local view of the installation: the confirmed copy with pending changes applied.
    pub fn installation(&self) -> Installation {
        self.views().installation.clone()
    }

    /// Reads the own installation from the server; the confirmed copy is replaced, pending
    /// changes stay pending.
    pub async fn fetch_installation(&self) -> Result<Installation, RosterError> {
        self.call(Command::FetchInstallation).await
    }

    /// Saves installation changes (client-sdk.md §6): `Reported` once the server confirmed,
    /// `Queued` when they are kept and retried, `Err(Api)` when rejected (and discarded).
    pub async fn save_installation(
        &self,
        changes: InstallationChanges,
    ) -> Result<SaveOutcome<Installation>, RosterError> {
        self.call(|r| Command::SaveInstallation(changes, r)).await
    }

    /// Sets the push token (an installation change).
    pub async fn set_push_token(&self, push: PushRegistration) -> Result<SaveOutcome<Installation>, RosterError> {
        self.call(|r| Command::SetPushToken(Some(push), r)).await
    }

    /// Removes the push token (an installation change).
    pub async fn clear_push_token(&self) -> Result<SaveOutcome<Installation>, RosterError> {
        self.call(|r| Command::SetPushToken(None, r)).await
    }

    /// Makes an installation of the user (not) primary. The own id is a normal installation save;
    /// another id is an immediate remote call that is never `Queued` (client-sdk.md §10).
    pub async fn set_installation_as_primary(
        &self,
        push_reg_id: &str,
        is_primary: bool,
    ) -> Result<SaveOutcome<()>, RosterError> {
        let id = push_reg_id.to_string();
        self.call(|r| Command::SetPrimary(id, is_primary, r)).await
    }

    /// The local view of the user.
    pub fn user(&self) -> User {
        self.views().user.clone()
    }

    /// Reads the user from the server.
    pub async fn fetch_user(&self) -> Result<User, RosterError> {
        self.call(Command::FetchUser).await
    }

    /// Saves user changes (client-sdk.md §6).
    pub async fn save_user(&self, changes: UserChanges) -> Result<SaveOutcome<User>, RosterError> {
        self.call(|r| Command::SaveUser(changes, r)).await
    }

    /// Logs the user in on this installation (client-sdk.md §8). Never retried automatically.
    pub async fn personalize(
        &self,
        identity: UserIdentity,
        attributes: Option<UserAttributes>,
        options: PersonalizeOptions,
    ) -> Result<User, RosterError> {
        self.call(|r| Command::Personalize(identity, attributes, options, r))
            .await
    }

    /// Logs the user out on this installation (client-sdk.md §9). `Pending` when the server could
    /// not be told yet; the request is then retried until it succeeds, across restarts.
    pub async fn depersonalize(&self) -> Result<SuccessPending, RosterError> {
        self.call(Command::Depersonalize).await
    }

    /// Logs the user out on another of their installations (client-sdk.md §10).
    pub async fn depersonalize_installation(&self, push_reg_id: &str) -> Result<(), RosterError> {
        let id = push_reg_id.to_string();
        self.call(|r| Command::DepersonalizeInstallation(id, r)).await
    }

    /// A receiver of the client's events (client-sdk.md §13).
    pub fn subscribe(&self) -> EventReceiver {
        let rx = match self.inner.shared.events.upgrade() {
            Some(sender) => sender.subscribe(),
            // The engine has stopped: a receiver that reports `Closed`.
            None => tokio::sync::broadcast::channel(1).1,
        };
        EventReceiver { rx }
    }

    /// What waits to be sent.
    pub fn pending(&self) -> PendingState {
        self.views().pending.clone()
    }

    /// Runs a sync pass now (after the one-second spacing between passes) and resolves when it
    /// has finished (`Ok`, with what is still pending) or stopped on a retryable failure (`Err`).
    pub async fn sync_now(&self) -> Result<PendingState, RosterError> {
        self.call(Command::SyncNow).await
    }

    /// A sync trigger for hosts that know when the network came back.
    pub fn notify_network_available(&self) {
        let _ = self.inner.tx.send(Command::Trigger);
    }

    /// A sync trigger for hosts that know when the app came to the foreground.
    pub fn notify_foreground(&self) {
        let _ = self.inner.tx.send(Command::Trigger);
    }

    /// Finishes the request in flight, stops the engine and releases the storage lock; later
    /// calls fail with `Err(Shutdown)`.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.tx.send(Command::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}
