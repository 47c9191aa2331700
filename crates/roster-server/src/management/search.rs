//! People search (management-api.md §7.4, §4.2): `POST /api/v1/people/search` with a filter,
//! `people:read`. Persons by id, paged with a cursor bound to the filter and `applicationCode`
//! (§3.2); read-only, so `Idempotency-Key` is ignored (§3.3).

use axum::{Router, body::Body, extract::State, routing::post};
use http::Response;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    JsonBody,
    auth::{Caller, Scope},
    error::{MgmtError, MgmtResult, Problems},
    object, opt_str,
    paging::{PageRequest, page_response},
};
use crate::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/people/search", post(search))
}

/// `{"filter": {...}, "applicationCode"?, "limit"?, "cursor"?}` → a page of person resources
/// (each with its installations of every application), ordered by id.
async fn search(State(state): State<AppState>, caller: Caller, JsonBody(body): JsonBody) -> MgmtResult<Response<Body>> {
    caller.require(Scope::PeopleRead)?;
    object(&body)?;
    let mut problems = Problems::default();
    let application_code = opt_str(&body, "applicationCode", &mut problems);
    let cursor = opt_str(&body, "cursor", &mut problems);
    let filter = match body.get("filter") {
        Some(f) => f.clone(),
        None => {
            problems.add("filter", "is required");
            Value::Null
        }
    };
    if !problems.is_empty() {
        if body.get("filter").is_some() {
            for p in state.core.check_filter(caller.account_id(), &filter, "filter").await? {
                problems.add(p.path, p.message);
            }
        }
        std::mem::take(&mut problems).finish()?;
    }
    // The cursor is bound to the filter and the application (§3.2); `limit` may change.
    let query = json!({"filter": filter, "applicationCode": application_code});
    let page = PageRequest::parse("people/search", &[], Some(&query), body.get("limit"), cursor, "")?;
    let after = match &page.after {
        None => None,
        Some(key) => Some(
            key.as_str()
                .and_then(|s| Uuid::parse_str(s).ok())
                .ok_or_else(|| MgmtError::field("cursor", "invalid cursor, or one of another query"))?,
        ),
    };
    let found = state
        .core
        .search_people(caller.account_id(), &filter, application_code, after, page.limit as u32)
        .await?;
    let found = match found {
        Ok(found) => found,
        Err(found) => {
            for p in found {
                problems.add(p.path, p.message);
            }
            problems.finish()?;
            return Err(MgmtError::internal("refused without a problem"));
        }
    };
    let next = match found.people.last() {
        Some(last) if found.more => Some(page.cursor_after(json!(last.person.id))),
        _ => None,
    };
    page_response(found.people.iter().map(|v| v.resource()), next)
}
