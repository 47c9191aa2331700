//! `Idempotency-Key` (management-api.md §3.3) for the `POST` routes of installations and the
//! merge log: the first request holds the key and its operation stores its answer in its own
//! transaction (roster-core `idempotency`); a refusal is stored here, a 5xx or 429 lets the key
//! go; a later request with the same key and fingerprint gets the stored answer again.

use std::future::Future;

use axum::{body::Body, extract::Request, response::IntoResponse};
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use roster_core::idempotency::{IdempotencyHold, IdempotencyStart, fingerprint, is_valid_key};
use roster_model::ErrorCode;

use super::{
    MAX_BODY_BYTES,
    auth::Caller,
    error::{MgmtError, MgmtResult},
    read_body,
};
use crate::AppState;

/// Whether an answer is stored for replay (§3.3: below 500 and not 429).
fn storable(status: StatusCode) -> bool {
    status.as_u16() < 500 && status != StatusCode::TOO_MANY_REQUESTS
}

/// Runs `op` under the request's `Idempotency-Key`, if it has one. `op` gets the held key (to
/// pass to the core operation, which stores a successful answer with its effects) and the body
/// bytes (read here, up to the body limit, because they are part of the fingerprint).
pub(super) async fn run<F, Fut>(state: &AppState, caller: &Caller, req: Request, op: F) -> MgmtResult<Response<Body>>
where
    F: FnOnce(Option<IdempotencyHold>, Bytes) -> Fut,
    Fut: Future<Output = MgmtResult<Response<Body>>>,
{
    run_limited(state, caller, req, MAX_BODY_BYTES, op).await
}

/// [`run`] with another body limit (`POST /push/3/messages`: 8 MiB, §3.1).
pub(super) async fn run_limited<F, Fut>(
    state: &AppState,
    caller: &Caller,
    req: Request,
    limit: usize,
    op: F,
) -> MgmtResult<Response<Body>>
where
    F: FnOnce(Option<IdempotencyHold>, Bytes) -> Fut,
    Fut: Future<Output = MgmtResult<Response<Body>>>,
{
    let (parts, body) = req.into_parts();
    let bytes = read_body(body, limit).await?;
    let key = match parts.headers.get("idempotency-key") {
        None => None,
        Some(v) => match v.to_str().ok().filter(|k| is_valid_key(k)) {
            Some(k) => Some(k.to_owned()),
            None => {
                return Err(MgmtError::field(
                    "header.Idempotency-Key",
                    "must be 1 to 255 printable ASCII characters",
                ));
            }
        },
    };
    let Some(key) = key else {
        return op(None, bytes).await;
    };
    let print = fingerprint(
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query().unwrap_or(""),
        &bytes,
    );
    let ttl = state.push.idempotency_ttl_hours;
    let hold = match state
        .core
        .idempotency_start(caller.account_id(), &key, &print, ttl)
        .await
    {
        Ok(IdempotencyStart::Replay { status, body }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut r = crate::response::json_bytes(status, body);
            r.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            return Ok(r);
        }
        Ok(IdempotencyStart::Proceed(hold)) => hold,
        Err(e) => {
            let mut e = MgmtError::from(e);
            if e.code == ErrorCode::IdempotencyKeyInProgress {
                e.retry_after = Some(1);
            }
            return Err(e);
        }
    };
    match op(Some(hold.clone()), bytes).await {
        // Stored with the operation's effects.
        Ok(r) => Ok(r),
        Err(e) => settle(state, &hold, e.into_response()).await,
    }
}

/// Stores a refusal for replay, or lets the key go (5xx, 429).
async fn settle(state: &AppState, hold: &IdempotencyHold, r: Response<Body>) -> MgmtResult<Response<Body>> {
    let status = r.status();
    if storable(status) {
        let (parts, body) = r.into_parts();
        let bytes = read_body(body, usize::MAX).await?;
        state
            .core
            .idempotency_answer(hold, status.as_u16(), bytes.to_vec())
            .await?;
        Ok(Response::from_parts(parts, Body::from(bytes)))
    } else {
        if let Err(e) = state.core.idempotency_release(hold).await {
            // The record goes stale by itself (§3.3: 60 s).
            tracing::warn!(error = %e, "could not release an Idempotency-Key");
        }
        Ok(r)
    }
}
