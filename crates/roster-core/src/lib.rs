//! Roster's rules (people.md), written once over the storage trait. Knows nothing of HTTP or SQL.
//!
//! Each mobile operation runs the processing steps of mobile-api.md §3.3 from step 6 on (caller
//! and target resolution, JWT subject rules, field validation, domain rules) inside one store
//! transaction, so a rejected request changes nothing (people.md invariant 16).

/// Runs a block in a write transaction with the retry of people.md §5.1 step 8:
/// `in_write_tx!(core, |tx| async { ... })` evaluates to the block's `CoreResult`.
#[macro_export]
macro_rules! in_write_tx {
    ($core:expr, |$tx:ident| $body:expr) => {{
        let mut attempt = 0usize;
        loop {
            attempt += 1;
            let mut boxed = match $core.store().begin().await {
                Ok(tx) => tx,
                Err(e) => break Err($crate::CoreError::from(e)),
            };
            let result = {
                let $tx: &mut dyn roster_store::Tx = boxed.as_mut();
                $body.await
            };
            if let Some(done) = $core.settle(boxed, result, attempt).await {
                break done;
            }
        }
    }};
}

/// Runs a block in a read-only transaction: `in_read_tx!(core, |tx| async { ... })`.
#[macro_export]
macro_rules! in_read_tx {
    ($core:expr, |$tx:ident| $body:expr) => {{
        match $core.store().begin_read().await {
            Err(e) => Err($crate::CoreError::from(e)),
            Ok(mut boxed) => {
                let result = {
                    let $tx: &mut dyn roster_store::Tx = boxed.as_mut();
                    $body.await
                };
                match boxed.rollback().await {
                    Ok(()) => result,
                    Err(e) => Err($crate::CoreError::from(e)),
                }
            }
        }
    }};
}

pub mod admin;
pub mod attributes;
pub mod idempotency;
pub mod installation;
pub mod invariants;
pub mod jwt;
pub mod manage;
pub mod people;
pub mod personalize;
pub mod push;
pub mod resolve;
pub mod segments;
pub mod user;

use std::sync::Arc;

use roster_model::{ApiError, Application, ErrorCode};
use roster_store::{Store, StoreError, Tx};

/// An error of a core operation: a rejection with a spec code, or a store failure.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The request is rejected with a spec error code; nothing changed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The store failed; the caller answers 5xx and logs the cause.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A rate limit consulted inside the operation refused it (mobile-api.md §1.7:
    /// re-creation takes from the per-IP create bucket); retry after this many seconds.
    #[error("too many requests; retry after {0} s")]
    RateLimited(u64),
}

/// A rate limit the core consults when it decides to create an installation:
/// `Err(retry_after_seconds)` refuses.
pub type CreateGate<'a> = &'a (dyn Fn() -> Result<(), u64> + Send + Sync);

impl CoreError {
    /// Shorthand for a rejection.
    pub fn api(code: ErrorCode, text: impl Into<String>) -> CoreError {
        CoreError::Api(ApiError::new(code, text))
    }

    /// How many attempts in all a transaction that failed with this error may get: an identity
    /// uniqueness race gets the 3 of people.md §5.1 step 8; a lost serialization, deadlock or
    /// a race on the primary or token rules (which people.md §4 says never fails a request)
    /// gets more; anything else none.
    fn attempts_allowed(&self) -> usize {
        match self {
            CoreError::Store(StoreError::Conflict { constraint }) if constraint.is_identity() => ATTEMPTS,
            CoreError::Store(StoreError::Conflict { .. } | StoreError::Retry(_)) => RACE_ATTEMPTS,
            _ => 0,
        }
    }
}

/// Shorthand for core results.
pub type CoreResult<T> = Result<T, CoreError>;

/// Limits that are settings rather than spec constants.
#[derive(Debug, Clone)]
pub struct CoreSettings {
    /// `limits.attribute_definitions`: definitions per account and scope (people.md §8.2).
    pub max_attribute_definitions: u64,
}

impl Default for CoreSettings {
    fn default() -> Self {
        CoreSettings {
            max_attribute_definitions: 500,
        }
    }
}

/// The rules over one store.
#[derive(Clone)]
pub struct Core {
    store: Arc<dyn Store>,
    settings: Arc<CoreSettings>,
}

/// How many times a transaction that lost a uniqueness race is attempted in all
/// (people.md §5.1 step 8).
const ATTEMPTS: usize = 3;

/// How many attempts a transaction that lost a lock race (deadlock, serialization failure,
/// primary or token constraint) gets in all, with a short jittered pause between them.
const RACE_ATTEMPTS: usize = 10;

/// How a user-data request authenticated (mobile-api.md §2).
#[derive(Debug, Clone)]
pub enum Auth {
    /// `Authorization: App <code>`.
    App,
    /// `Authorization: Bearer <jwt>`, verified; the token's `sub`.
    Jwt { subject: String },
}

impl Core {
    /// Rules over `store`.
    pub fn new(store: Arc<dyn Store>, settings: CoreSettings) -> Core {
        Core {
            store,
            settings: Arc::new(settings),
        }
    }

    /// The store underneath.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The settings.
    pub fn settings(&self) -> &CoreSettings {
        &self.settings
    }

    /// Ends an attempt of a write transaction: commits on success, rolls back on failure.
    /// `None` means "lost a uniqueness race, run the whole transaction again"; after
    /// [`ATTEMPTS`] attempts the race is answered as a transient fault (503).
    pub async fn settle<T>(&self, tx: Box<dyn Tx>, result: CoreResult<T>, attempt: usize) -> Option<CoreResult<T>> {
        let outcome = match result {
            Ok(value) => tx.commit().await.map(|()| value).map_err(CoreError::from),
            Err(e) => match tx.rollback().await {
                Ok(()) => Err(e),
                Err(rollback) => Err(rollback.into()),
            },
        };
        match outcome {
            Err(e) if e.attempts_allowed() > 0 => {
                if attempt < e.attempts_allowed() {
                    tracing::debug!(error = %e, attempt, "transaction lost a race; retrying");
                    if !matches!(&e, CoreError::Store(StoreError::Conflict { constraint }) if constraint.is_identity())
                    {
                        let pause = rand::random_range(1..=(5 * attempt as u64));
                        tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                    }
                    None
                } else {
                    tracing::warn!(error = %e, "transaction kept losing uniqueness races");
                    Some(Err(CoreError::Store(StoreError::Unavailable(
                        "transaction kept conflicting with concurrent writes".into(),
                    ))))
                }
            }
            other => Some(other),
        }
    }

    /// The enabled application with this code (mobile-api.md §2.1): `INVALID_APPLICATION_CODE`
    /// when unknown, disabled or deleted.
    pub async fn application_by_code(&self, code: &str) -> CoreResult<Application> {
        let code = code.to_ascii_lowercase();
        let mut tx = self.store.begin_read().await?;
        let app = tx.application_by_code(&code).await;
        tx.rollback().await?;
        match app? {
            Some(app) if app.enabled => Ok(app),
            _ => Err(CoreError::api(
                ErrorCode::InvalidApplicationCode,
                "Invalid application code",
            )),
        }
    }
}
