//! People (management-api.md §7.4) and GDPR export and erase (§8): read `people:read`, write
//! `people:write`. Person responses carry `ETag: "<version>"` (§3.4). People search
//! (`POST /api/v1/people/search`) lives in its own module.

use axum::{Router, body::Body, extract::State, routing::get};
use http::{HeaderMap, HeaderValue, Response, header};
use roster_core::people::{IfMatch, PersonKey, PersonView};
use roster_model::ErrorCode;
use uuid::Uuid;

use super::{
    JsonBody, PathParams, QueryPairs,
    auth::{Caller, Scope},
    error::{MgmtError, MgmtResult},
    ok,
};
use crate::AppState;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/people/lookup", get(lookup))
        .route("/people/{person_id}", get(show).patch(change).delete(erase))
        .route("/people/{person_id}/export", get(export))
}

/// The person id of the path; one that is no UUID names no person (`404`).
fn person_id(raw: &str) -> MgmtResult<Uuid> {
    Uuid::parse_str(raw).map_err(|_| MgmtError::not_found(format!("No person {raw}")))
}

/// A person answer with its `ETag`.
fn person_response(view: &PersonView) -> Response<Body> {
    let resource = view.resource();
    let mut r = ok(&resource);
    if let Ok(etag) = HeaderValue::from_str(&resource.etag()) {
        r.headers_mut().insert(header::ETAG, etag);
    }
    r
}

/// The lookup parameters of §7.4, in the spec's order.
const LOOKUP_PARAMETERS: [&str; 4] = ["externalUserId", "phone", "email", "pushRegId"];

/// `GET /people/lookup`: exactly one of the parameters (else `400` naming them).
async fn lookup(State(state): State<AppState>, caller: Caller, query: QueryPairs) -> MgmtResult<Response<Body>> {
    caller.require(Scope::PeopleRead)?;
    let given: Vec<(&str, &str)> = LOOKUP_PARAMETERS
        .iter()
        .filter_map(|name| query.get(name).map(|v| (*name, v)))
        .collect();
    let key = match given.as_slice() {
        [("externalUserId", v)] => PersonKey::ExternalUserId(v.to_string()),
        [("phone", v)] => PersonKey::Phone(v.to_string()),
        [("email", v)] => PersonKey::Email(v.to_string()),
        [(_, v)] => PersonKey::PushRegId(v.to_string()),
        [] => {
            return Err(MgmtError::field(
                "query",
                "exactly one of externalUserId, phone, email, pushRegId is required",
            ));
        }
        several => {
            let mut e = MgmtError::new(ErrorCode::BadRequest, "Request validation failed");
            for (name, _) in several {
                e.validation.insert(
                    format!("query.{name}"),
                    vec!["give exactly one of externalUserId, phone, email, pushRegId".into()],
                );
            }
            return Err(e);
        }
    };
    let view = state.core.lookup_person(caller.account_id(), &key).await?;
    Ok(person_response(&view))
}

async fn show(State(state): State<AppState>, caller: Caller, PathParams(p): PathParams) -> MgmtResult<Response<Body>> {
    caller.require(Scope::PeopleRead)?;
    let view = state.core.person_view(caller.account_id(), person_id(&p[0])?).await?;
    Ok(person_response(&view))
}

/// `PATCH /people/{personId}`: the user PATCH plus `type`, with an optional `If-Match`.
async fn change(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(p): PathParams,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> MgmtResult<Response<Body>> {
    caller.require(Scope::PeopleWrite)?;
    let id = person_id(&p[0])?;
    let serde_json::Value::Object(body) = body else {
        return Err(MgmtError::new(ErrorCode::BadRequest, "The body must be a JSON object"));
    };
    // Every If-Match line counts (RFC 9110 §5.3: a list may come in several lines).
    let if_match = {
        let lines: Vec<&str> = headers
            .get_all(header::IF_MATCH)
            .iter()
            .map(|v| v.to_str().unwrap_or("\"\""))
            .collect();
        (!lines.is_empty()).then(|| IfMatch::parse(&lines.join(",")))
    };
    let view = state
        .core
        .patch_person(caller.account_id(), id, &body, if_match.as_ref())
        .await?;
    Ok(person_response(&view))
}

/// `DELETE /people/{personId}`: GDPR erase, `200` with the report.
async fn erase(State(state): State<AppState>, caller: Caller, PathParams(p): PathParams) -> MgmtResult<Response<Body>> {
    caller.require(Scope::PeopleWrite)?;
    let report = state.core.erase_person(caller.account_id(), person_id(&p[0])?).await?;
    Ok(ok(&report))
}

/// `GET /people/{personId}/export`: GDPR export as a download.
async fn export(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(p): PathParams,
) -> MgmtResult<Response<Body>> {
    caller.require(Scope::PeopleRead)?;
    let id = person_id(&p[0])?;
    let document = state.core.export_person(caller.account_id(), id).await?;
    let mut r = ok(&document);
    let disposition = format!("attachment; filename=\"person-{id}.json\"");
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(r)
}
