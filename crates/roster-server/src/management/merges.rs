//! The merge log (management-api.md §7.8): read `people:read`, reverse `people:write`.

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    routing::{get, post},
};
use http::Response;
use roster_core::people::api_key_actor;
use roster_model::resources::MergeEntryResource;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    PathParams, QueryPairs,
    auth::{Caller, Scope},
    error::{MgmtError, MgmtResult},
    idempotent, ok,
    paging::{PageRequest, page_response},
};
use crate::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/merges", get(list))
        .route("/merges/{id}", get(show))
        .route("/merges/{id}/reverse", post(reverse))
}

fn entry_id(raw: &str) -> MgmtResult<Uuid> {
    Uuid::parse_str(raw).map_err(|_| MgmtError::not_found(format!("No merge-log entry {raw}")))
}

/// `GET /merges?personId=`: newest first (`createdAt`, then id, descending), keyset-paged in
/// the store; items without their snapshots (`GET /merges/{id}` shows them).
async fn list(State(state): State<AppState>, caller: Caller, query: QueryPairs) -> MgmtResult<Response<Body>> {
    caller.require(Scope::PeopleRead)?;
    let person = match query.get("personId") {
        None => None,
        Some(raw) => Some(Uuid::parse_str(raw).map_err(|_| MgmtError::field("query.personId", "must be a UUID"))?),
    };
    let page = PageRequest::from_query("merges", &query.pairs())?;
    let before = match &page.after {
        None => None,
        Some(key) => Some(
            cursor_key(key)
                .ok_or_else(|| MgmtError::field("query.cursor", "invalid cursor, or one of another query"))?,
        ),
    };
    // One more than asked for says whether another page follows.
    let mut entries = state
        .core
        .merge_entries(caller.account_id(), person, before, page.limit as u32 + 1)
        .await?;
    let more = entries.len() > page.limit;
    entries.truncate(page.limit);
    let next = match entries.last() {
        Some(last) if more => Some(page.cursor_after(json!([last.created_at, last.id.to_string()]))),
        _ => None,
    };
    page_response(entries.iter().map(|e| MergeEntryResource::of(e, false)), next)
}

/// The `(createdAt, id)` a cursor of this endpoint carries.
fn cursor_key(key: &Value) -> Option<(i64, Uuid)> {
    let [at, id] = key.as_array()?.as_slice() else {
        return None;
    };
    Some((at.as_i64()?, Uuid::parse_str(id.as_str()?).ok()?))
}

async fn show(State(state): State<AppState>, caller: Caller, PathParams(p): PathParams) -> MgmtResult<Response<Body>> {
    caller.require(Scope::PeopleRead)?;
    let entry = state.core.merge_entry(caller.account_id(), entry_id(&p[0])?).await?;
    Ok(ok(&MergeEntryResource::of(&entry, true)))
}

/// `POST /merges/{id}/reverse` (people.md §9.3): `200` with the entry, now `REVERSED`;
/// honours `Idempotency-Key`.
async fn reverse(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(p): PathParams,
    req: Request,
) -> MgmtResult<Response<Body>> {
    caller.require(Scope::PeopleWrite)?;
    let id = entry_id(&p[0])?;
    let (core, account_id, actor) = (&state.core, caller.account_id(), api_key_actor(caller.key.id));
    idempotent::run(&state, &caller, req, move |hold, _body| async move {
        let entry = core.reverse_merge(account_id, id, actor, hold.as_ref()).await?;
        Ok(ok(&MergeEntryResource::of(&entry, true)))
    })
    .await
}
