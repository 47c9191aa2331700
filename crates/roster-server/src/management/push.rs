//! `POST /push/3/messages` (management-api.md §5), scope `push:send`, with `Idempotency-Key`
//! (§3.3, through `idempotent`: the accepted answer is stored in the send's own transaction).
//! Outside `/api/v1` (Infobip's path), mounted by the server's root router.

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    response::IntoResponse,
    routing::post,
};
use http::{Response, StatusCode};
use roster_core::idempotency::IdempotencyHold;
use roster_core::push::SendError;
use roster_model::ErrorCode;

use super::{
    auth::{Caller, Scope},
    error::{MgmtError, MgmtResult},
    parse_json,
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

async fn send(State(state): State<AppState>, caller: Caller, req: Request) -> MgmtResult<Response<Body>> {
    caller.require(Scope::PushSend)?;
    super::idempotent::run_limited(&state, &caller, req, MAX_SEND_BODY_BYTES, |hold, bytes| {
        let (state, caller) = (&state, &caller);
        async move { accept(state, caller, &bytes, hold.as_ref()).await }
    })
    .await
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
