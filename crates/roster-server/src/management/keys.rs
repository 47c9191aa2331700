//! API keys (management-api.md §7.2), scope `admin`.

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    routing::get,
};
use http::{Response, StatusCode};
use roster_model::resources::ApiKeyResource;
use serde_json::Value;
use uuid::Uuid;

use super::{
    PathParams, QueryPairs,
    auth::{Caller, Scope},
    error::{MgmtError, MgmtResult, Problems},
    idempotent, json_with, object, ok,
    paging::{PageRequest, page_response},
    parse_json, required_name,
};
use crate::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/apikeys", get(list).post(create))
        .route("/apikeys/{id}", get(show).delete(remove))
}

async fn list(State(state): State<AppState>, caller: Caller, query: QueryPairs) -> MgmtResult<Response<Body>> {
    caller.require(Scope::Admin)?;
    let page = PageRequest::from_query("apikeys", &query.pairs())?;
    let mut keys = state.core.list_api_keys(caller.account_id()).await?;
    keys.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    let (items, next) = page.page_sorted(keys, |k| serde_json::json!([k.created_at, k.id.to_string()]));
    page_response(items.iter().map(ApiKeyResource::from), next)
}

async fn create(State(state): State<AppState>, caller: Caller, req: Request) -> MgmtResult<Response<Body>> {
    caller.require(Scope::Admin)?;
    let (st, by) = (&state, &caller);
    idempotent::run(st, by, req, move |hold, bytes| async move {
        let body = parse_json(&bytes)?;
        object(&body)?;
        let mut problems = Problems::default();
        let name = required_name(&body, &mut problems);
        let scopes: Vec<String> = match body.get("scopes") {
            Some(Value::Array(items)) if !items.is_empty() => {
                let mut out = Vec::new();
                for (i, s) in items.iter().enumerate() {
                    match s.as_str() {
                        Some(s) if roster_core::admin::SCOPES.contains(&s) => {
                            if !out.iter().any(|o: &String| o == s) {
                                out.push(s.to_string());
                            }
                        }
                        _ => problems.add(
                            format!("scopes[{i}]"),
                            format!("must be one of {}", roster_core::admin::SCOPES.join(", ")),
                        ),
                    }
                }
                out
            }
            Some(_) => {
                problems.add("scopes", "must be a non-empty array of scopes");
                Vec::new()
            }
            None => {
                problems.add("scopes", "is required");
                Vec::new()
            }
        };
        let expires_at = match body.get("expiresAt") {
            None => None,
            Some(Value::String(s)) => {
                match time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
                    Ok(t) if t.unix_timestamp_nanos() / 1_000_000 > i128::from(roster_model::now_millis()) => {
                        Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
                    }
                    Ok(_) => {
                        problems.add("expiresAt", "must be in the future");
                        None
                    }
                    Err(_) => {
                        problems.add("expiresAt", "must be an RFC 3339 timestamp");
                        None
                    }
                }
            }
            Some(_) => {
                problems.add("expiresAt", "must be an RFC 3339 timestamp");
                None
            }
        };
        problems.finish()?;
        let created = st
            .core
            .create_api_key_held(by.account_id(), &name, &scopes, expires_at, hold.as_ref())
            .await?;
        Ok(json_with(
            StatusCode::CREATED,
            &ApiKeyResource::created(&created.key, &created.secret),
        ))
    })
    .await
}

async fn show(State(state): State<AppState>, caller: Caller, PathParams(p): PathParams) -> MgmtResult<Response<Body>> {
    caller.require(Scope::Admin)?;
    let id = Uuid::parse_str(&p[0]).map_err(|_| MgmtError::not_found(format!("No API key {}", p[0])))?;
    let key = state.core.api_key(caller.account_id(), id).await?;
    Ok(ok(&ApiKeyResource::from(&key)))
}

/// `DELETE /api/v1/apikeys/{id}`: `204`, effective with the next request (`409 LAST_ADMIN_KEY`
/// for the account's last unexpired `admin` key).
async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(p): PathParams,
) -> MgmtResult<Response<Body>> {
    caller.require(Scope::Admin)?;
    let id = Uuid::parse_str(&p[0]).map_err(|_| MgmtError::not_found(format!("No API key {}", p[0])))?;
    state.core.delete_api_key(caller.account_id(), id).await?;
    Ok(super::no_content())
}
