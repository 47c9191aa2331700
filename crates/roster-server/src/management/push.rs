//! `POST /push/3/messages` (management-api.md §5), scope `push:send`, with `Idempotency-Key`
//! (§3.3). Outside `/api/v1` (Infobip's path), mounted by the server's root router.

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    response::IntoResponse,
    routing::post,
};
use http::{HeaderValue, Response, StatusCode};
use roster_core::idempotency::{IdempotencyHold, IdempotencyStart, fingerprint, is_valid_key};
use roster_core::push::SendError;
use roster_model::ErrorCode;

use super::{
    auth::{Caller, Scope},
    error::{MgmtError, MgmtResult},
    parse_json, read_body,
};
use crate::AppState;

/// §3.1: the body limit of `POST /push/3/messages`.
pub const MAX_SEND_BODY_BYTES: usize = 8 * 1024 * 1024;

/// The route, with the envelope of §2 on a `405`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/push/3/messages", post(send))
        .layer(axum::middleware::map_response(envelope_for_405))
}

async fn envelope_for_405(response: Response<Body>) -> Response<Body> {
    if response.status() != StatusCode::METHOD_NOT_ALLOWED {
        return response;
    }
    let mut e = MgmtError::new(ErrorCode::MethodNotAllowed, "Method not allowed on this route");
    e.allow = Some("POST".into());
    e.into_response()
}

/// A response from a stored status and body.
fn stored(status: u16, body: Vec<u8>) -> Response<Body> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    crate::response::json_bytes(status, body)
}

/// Whether an answer is stored for replay (§3.3: below 500 and not 429).
fn storable(status: StatusCode) -> bool {
    status.as_u16() < 500 && status != StatusCode::TOO_MANY_REQUESTS
}

async fn send(State(state): State<AppState>, caller: Caller, req: Request) -> MgmtResult<Response<Body>> {
    caller.require(Scope::PushSend)?;
    let (parts, body) = req.into_parts();
    let bytes = read_body(body, MAX_SEND_BODY_BYTES).await?;
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
    let core = &state.core;
    let hold = match &key {
        None => None,
        Some(key) => {
            let print = fingerprint(
                parts.method.as_str(),
                parts.uri.path(),
                parts.uri.query().unwrap_or(""),
                &bytes,
            );
            match core
                .idempotency_start(caller.account_id(), key, &print, state.push.idempotency_ttl_hours)
                .await
            {
                Ok(IdempotencyStart::Replay { status, body }) => {
                    let mut r = stored(status, body);
                    r.headers_mut()
                        .insert("idempotent-replayed", HeaderValue::from_static("true"));
                    return Ok(r);
                }
                Ok(IdempotencyStart::Proceed(hold)) => Some(hold),
                Err(e) => {
                    let mut e = MgmtError::from(e);
                    if e.code == ErrorCode::IdempotencyKeyInProgress {
                        e.retry_after = Some(1);
                    }
                    return Err(e);
                }
            }
        }
    };
    let answer = accept(&state, &caller, &bytes, hold.as_ref()).await;
    let Some(hold) = hold else {
        return answer;
    };
    // The accepted answer was stored with the send; any other answer is settled here.
    match answer {
        Ok(r) => Ok(r),
        Err(e) => {
            let r = e.into_response();
            settle(&state, &hold, r).await
        }
    }
}

/// Stores a refusal for replay, or lets the key go (5xx, 429).
async fn settle(state: &AppState, hold: &IdempotencyHold, r: Response<Body>) -> MgmtResult<Response<Body>> {
    let status = r.status();
    let core = &state.core;
    if storable(status) {
        let (parts, body) = r.into_parts();
        let bytes = read_body(body, usize::MAX).await?;
        core.idempotency_answer(hold, status.as_u16(), bytes.to_vec()).await?;
        Ok(Response::from_parts(parts, Body::from(bytes)))
    } else {
        if let Err(e) = core.idempotency_release(hold).await {
            // The record goes stale by itself (§3.3: 60 s).
            tracing::warn!(error = %e, "could not release an Idempotency-Key");
        }
        Ok(r)
    }
}

async fn accept(
    state: &AppState,
    caller: &Caller,
    bytes: &[u8],
    hold: Option<&IdempotencyHold>,
) -> MgmtResult<Response<Body>> {
    let body = parse_json(bytes)?;
    super::object(&body)?;
    match state.core.accept_send(caller.account_id(), &body, hold).await {
        Ok(accepted) => {
            state.push.wake();
            Ok(super::ok(&accepted.to_json()))
        }
        Err(SendError::Invalid(problems)) => {
            let mut e = MgmtError::new(ErrorCode::BadRequest, "Request validation failed");
            e.validation = problems;
            Err(e)
        }
        Err(SendError::Core(e)) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_stored_for_replay() {
        assert!(storable(StatusCode::OK));
        assert!(storable(StatusCode::BAD_REQUEST));
        assert!(storable(StatusCode::CONFLICT));
        assert!(!storable(StatusCode::TOO_MANY_REQUESTS));
        assert!(!storable(StatusCode::INTERNAL_SERVER_ERROR));
        assert!(!storable(StatusCode::SERVICE_UNAVAILABLE));
    }
}
