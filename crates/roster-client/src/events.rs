//! Events (client-sdk.md §13): emitted after the state change they describe was persisted, in
//! order, before the future of the operation that caused them resolves.

use tokio::sync::broadcast;

use crate::{Installation, RosterError, User};

/// Each receiver's buffer (client-sdk.md §13).
pub(crate) const EVENT_BUFFER: usize = 1024;

/// What pending changes were about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeTarget {
    User,
    Installation,
}

/// The request an `ApiError` event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    CreateInstallation,
    GetInstallation,
    PatchInstallation,
    GetUser,
    PatchUser,
    Personalize,
    Depersonalize,
    DepersonalizeOther,
    SetOtherPrimary,
}

/// Something that happened to the installation or the user.
#[derive(Debug, Clone)]
pub enum Event {
    /// A registration succeeded (first start, or after a fresh state).
    RegistrationCreated { push_reg_id: String },
    /// A new registration replaced a lost one (client-sdk.md §11).
    RegistrationChanged { old: String, new: String },
    /// The server-confirmed installation changed; the local view.
    InstallationUpdated { installation: Installation },
    /// The server-confirmed user changed by a PATCH, fetch or remote operation; the local view.
    UserUpdated { user: User },
    /// A personalize succeeded.
    Personalized { user: User },
    /// A depersonalization is complete.
    Depersonalized,
    /// Pending changes were dropped (permanent rejection, forced personalize, or recovery).
    ChangesDiscarded {
        target: ChangeTarget,
        /// JSON paths of the dropped entries.
        fields: Vec<String>,
        error: Option<RosterError>,
    },
    /// A request failed.
    ApiError { operation: Operation, error: RosterError },
}

/// Why [`EventReceiver::recv`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// The receiver fell behind and missed this many events; it continues with newer ones.
    #[error("missed {0} events")]
    Lagged(u64),
    /// The client is gone.
    #[error("the client is gone")]
    Closed,
}

/// Why [`EventReceiver::try_recv`] returned no event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    /// No event is waiting.
    #[error("no event is waiting")]
    Empty,
    /// The receiver fell behind and missed this many events.
    #[error("missed {0} events")]
    Lagged(u64),
    /// The client is gone.
    #[error("the client is gone")]
    Closed,
}

/// A subscription to the client's events (client-sdk.md §13). Events emitted before
/// `subscribe` are not replayed.
pub struct EventReceiver {
    pub(crate) rx: broadcast::Receiver<Event>,
}

impl EventReceiver {
    /// The next event.
    pub async fn recv(&mut self) -> Result<Event, RecvError> {
        self.rx.recv().await.map_err(|e| match e {
            broadcast::error::RecvError::Lagged(n) => RecvError::Lagged(n),
            broadcast::error::RecvError::Closed => RecvError::Closed,
        })
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Result<Event, TryRecvError> {
        self.rx.try_recv().map_err(|e| match e {
            broadcast::error::TryRecvError::Empty => TryRecvError::Empty,
            broadcast::error::TryRecvError::Lagged(n) => TryRecvError::Lagged(n),
            broadcast::error::TryRecvError::Closed => TryRecvError::Closed,
        })
    }

    /// Every event waiting now (lag notices skipped).
    pub fn drain(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        loop {
            match self.try_recv() {
                Ok(e) => out.push(e),
                Err(TryRecvError::Lagged(_)) => continue,
                Err(_) => return out,
            }
        }
    }
}
