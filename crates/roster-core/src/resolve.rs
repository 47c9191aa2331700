//! Caller and target of a `/mobile/1/appinstance/{pushRegId}...` request (mobile-api.md §2.4).

use roster_model::{Application, ErrorCode, Installation, Millis, validate::canonical_push_reg_id};
use roster_store::Tx;

use crate::{CoreError, CoreResult};

/// Which installation a request addresses and on whose behalf.
#[derive(Debug, Clone, Copy)]
pub struct Addressing<'a> {
    /// The `{pushRegId}` path segment, as received.
    pub path_id: &'a str,
    /// The `pushregistrationid` header, as received (absent or empty: the caller is the target).
    pub caller_header: Option<&'a str>,
}

impl<'a> Addressing<'a> {
    /// The caller's id as received: the header if present and non-empty, else the path id.
    pub fn caller_id(&self) -> &'a str {
        match self.caller_header {
            Some(h) if !h.trim().is_empty() => h.trim(),
            _ => self.path_id,
        }
    }

    /// Whether the target differs from the caller (ids compared case-insensitively).
    pub fn is_remote(&self) -> bool {
        !self.caller_id().eq_ignore_ascii_case(self.path_id)
    }
}

/// The resolved caller, and the target when it is another installation.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub caller: Installation,
    /// `None` when the target is the caller.
    pub remote_target: Option<Installation>,
}

impl Resolved {
    /// The installation named in the path.
    pub fn target(&self) -> &Installation {
        self.remote_target.as_ref().unwrap_or(&self.caller)
    }
}

/// The installation `id` if it exists in `app` (an id of another application, or not a UUID,
/// is unknown here).
pub async fn installation_in_app(tx: &mut dyn Tx, app: &Application, id: &str) -> CoreResult<Option<Installation>> {
    let Some(id) = canonical_push_reg_id(id) else {
        return Ok(None);
    };
    Ok(tx.installation(&id).await?.filter(|i| i.application_id == app.id))
}

/// `404 NO_REGISTRATION` for the caller.
pub fn no_registration() -> CoreError {
    CoreError::api(ErrorCode::NoRegistration, "Unknown push registration")
}

/// `403 FORBIDDEN_INSTALLATION`.
pub fn forbidden(text: &str) -> CoreError {
    CoreError::api(ErrorCode::ForbiddenInstallation, text)
}

/// Resolves caller and target (mobile-api.md §2.4): the caller must exist in the application
/// (`NO_REGISTRATION`); a remote target must be allowed on the endpoint and be an installation
/// of the same application and person (`FORBIDDEN_INSTALLATION`, never `NO_REGISTRATION`).
pub async fn resolve(
    tx: &mut dyn Tx,
    app: &Application,
    addressing: Addressing<'_>,
    remote_allowed: bool,
) -> CoreResult<Resolved> {
    let caller = installation_in_app(tx, app, addressing.caller_id())
        .await?
        .ok_or_else(no_registration)?;
    if !addressing.is_remote() {
        return Ok(Resolved {
            caller,
            remote_target: None,
        });
    }
    if !remote_allowed {
        return Err(forbidden(
            "This operation is only allowed on the caller's own installation",
        ));
    }
    let target = installation_in_app(tx, app, addressing.path_id)
        .await?
        .filter(|t| t.person_id == caller.person_id)
        .ok_or_else(|| forbidden("The installation is not one of the caller's user's installations"))?;
    Ok(Resolved {
        caller,
        remote_target: Some(target),
    })
}

/// [`resolve`] for a write: then locks the caller's person (every change to a person or its
/// installations serialises on that row lock, roster-store `Tx` docs) and re-reads caller and
/// target, which a concurrent transaction may have changed or moved before the lock was held
/// (neither where the transaction writes alone).
/// If one moved to another person meanwhile, the transaction is run again from the start.
pub async fn resolve_for_write(
    tx: &mut dyn Tx,
    app: &Application,
    addressing: Addressing<'_>,
    remote_allowed: bool,
) -> CoreResult<Resolved> {
    let first = resolve(tx, app, addressing, remote_allowed).await?;
    if !lock_person(tx, first.caller.account_id, first.caller.person_id).await? {
        // The transaction writes alone: nothing read above can have changed.
        return Ok(first);
    }
    let again = resolve(tx, app, addressing, remote_allowed).await?;
    if again.caller.person_id != first.caller.person_id {
        return Err(CoreError::Store(roster_store::StoreError::Retry(
            "the caller moved to another person while its person was being locked".into(),
        )));
    }
    Ok(again)
}

/// Locks a person's row until commit (see [`resolve_for_write`]); a missing person is fine
/// (nothing to serialise on). Returns whether a lock was taken, that is whether another
/// transaction may have changed what was read before it: `false` in a transaction that writes
/// alone ([`Tx::writes_alone`], SQLite), which needs no lock and no second read.
pub async fn lock_person(tx: &mut dyn Tx, account_id: uuid::Uuid, person_id: uuid::Uuid) -> CoreResult<bool> {
    if tx.writes_alone() {
        return Ok(false);
    }
    tx.person(account_id, person_id).await?;
    Ok(true)
}

/// How old `lastSeenAt` may get before a successful request rewrites it (people.md §2.7).
pub const LAST_SEEN_REFRESH_MILLIS: Millis = 15 * 60 * 1000;

/// Whether the caller's `lastSeenAt` is stale enough to be rewritten now.
pub fn last_seen_is_stale(inst: &Installation, now: Millis) -> bool {
    now - inst.last_seen_at > LAST_SEEN_REFRESH_MILLIS
}
