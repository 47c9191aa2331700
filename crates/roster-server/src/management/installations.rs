//! Installations (management-api.md §7.5): read `people:read`, write `people:write`.

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    routing::{get, post},
};
use http::Response;
use roster_core::people::read_only_members;
use roster_model::ErrorCode;

use super::{
    JsonBody, PathParams,
    auth::{Caller, Scope},
    error::{MgmtError, MgmtResult},
    idempotent, no_content, ok,
};
use crate::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/installations/{push_reg_id}", get(show).patch(change).delete(remove))
        .route("/installations/{push_reg_id}/depersonalize", post(depersonalize))
}

async fn show(State(state): State<AppState>, caller: Caller, PathParams(p): PathParams) -> MgmtResult<Response<Body>> {
    caller.require(Scope::PeopleRead)?;
    let view = state.core.installation_view(caller.account_id(), &p[0]).await?;
    Ok(ok(&view.resource()))
}

/// `PATCH /installations/{pushRegId}`: `regEnabled`, `isPrimary`, `applicationUserId`,
/// `customAttributes`; every other known installation field in the body is reported (§2).
async fn change(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(p): PathParams,
    JsonBody(body): JsonBody,
) -> MgmtResult<Response<Body>> {
    caller.require(Scope::PeopleWrite)?;
    let serde_json::Value::Object(body) = body else {
        return Err(MgmtError::new(ErrorCode::BadRequest, "The body must be a JSON object"));
    };
    // An unknown installation answers 404 before its body is judged.
    state.core.installation_view(caller.account_id(), &p[0]).await?;
    let read_only = read_only_members(&body);
    if !read_only.is_empty() {
        let mut e = MgmtError::new(ErrorCode::BadRequest, "Request validation failed");
        for field in read_only {
            e.validation.insert(
                field.to_string(),
                vec![
                    "not writable through the management API (only regEnabled, isPrimary, \
                      applicationUserId, customAttributes)"
                        .into(),
                ],
            );
        }
        return Err(e);
    }
    let view = state
        .core
        .patch_installation_by_management(caller.account_id(), &p[0], &body)
        .await?;
    Ok(ok(&view.resource()))
}

/// `DELETE /installations/{pushRegId}`: `204`.
async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(p): PathParams,
) -> MgmtResult<Response<Body>> {
    caller.require(Scope::PeopleWrite)?;
    state
        .core
        .delete_installation_by_management(caller.account_id(), &p[0])
        .await?;
    Ok(no_content())
}

/// `POST /installations/{pushRegId}/depersonalize`: `200` with the resource (new `personId`),
/// honouring `Idempotency-Key`.
async fn depersonalize(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(p): PathParams,
    req: Request,
) -> MgmtResult<Response<Body>> {
    caller.require(Scope::PeopleWrite)?;
    let (core, account_id, id) = (&state.core, caller.account_id(), &p[0]);
    idempotent::run(&state, &caller, req, move |hold, _body| async move {
        let view = core.depersonalize_by_management(account_id, id, hold.as_ref()).await?;
        Ok(ok(&view.resource()))
    })
    .await
}
