//! The management API (management-api.md): `/api/v1/...` for integrators, the CLI and the portal,
//! authenticated by API keys with scopes. Handlers are thin: authenticate ([`auth::Caller`]),
//! decode ([`JsonBody`], query), call one core operation, encode a resource of
//! `roster_model::resources`. Every error answers in the envelope of §2 ([`error::MgmtError`]).

pub mod auth;
pub mod error;
pub mod paging;
pub mod push;

mod applications;
mod attributes;
mod idempotent;
mod installations;
mod keys;
mod merges;
mod messages;
mod openapi;
mod people;
mod providers;
mod search;
mod segments;

use axum::{
    Router,
    body::Body,
    extract::{FromRequest, FromRequestParts, Request},
    response::IntoResponse,
};
use bytes::Bytes;
use http::{Response, StatusCode, header, request::Parts};
use http_body_util::{BodyExt, Limited};
use roster_model::ErrorCode;
use serde_json::Value;

use crate::AppState;
use error::{MgmtError, MgmtResult};

/// management-api.md §3.1: the body limit of `/api/v1` requests.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The `/api/v1` routes, to be nested under that prefix.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(applications::routes())
        .merge(keys::routes())
        .merge(attributes::routes())
        .merge(people::routes())
        .merge(search::routes())
        .merge(segments::routes())
        .merge(installations::routes())
        .merge(merges::routes())
        .merge(messages::routes())
        .merge(openapi::routes())
        .fallback(no_route)
        .layer(axum::middleware::map_response(envelope_for_405))
}

async fn no_route() -> MgmtError {
    MgmtError::not_found("No such route")
}

/// axum answers a known path with an unsupported method by an empty `405` carrying `Allow`;
/// this gives it the envelope (§2) and keeps the header.
async fn envelope_for_405(response: Response<Body>) -> Response<Body> {
    if response.status() != StatusCode::METHOD_NOT_ALLOWED {
        return response;
    }
    let allow = response
        .headers()
        .get(header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut e = MgmtError::new(ErrorCode::MethodNotAllowed, "Method not allowed on this route");
    e.allow = allow;
    e.into_response()
}

/// A JSON request body: at most [`MAX_BODY_BYTES`] (`413 REQUEST_TOO_LARGE`), parsed as JSON
/// whatever the `Content-Type` (§3.1), else `400 BAD_REQUEST`.
pub struct JsonBody(pub Value);

impl FromRequest<AppState> for JsonBody {
    type Rejection = MgmtError;

    async fn from_request(req: Request, _state: &AppState) -> Result<JsonBody, MgmtError> {
        let bytes = read_body(req.into_body(), MAX_BODY_BYTES).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Reads a body up to `limit` bytes.
pub async fn read_body(body: Body, limit: usize) -> MgmtResult<Bytes> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(MgmtError::new(
            ErrorCode::RequestTooLarge,
            format!("Body larger than {limit} bytes"),
        )),
        Err(e) => Err(MgmtError::new(
            ErrorCode::BadRequest,
            format!("The body could not be read ({e})"),
        )),
    }
}

/// Parses a JSON body; malformed JSON is `400 BAD_REQUEST`.
pub fn parse_json(bytes: &[u8]) -> MgmtResult<Value> {
    serde_json::from_slice(bytes).map_err(|e| MgmtError::new(ErrorCode::BadRequest, format!("Malformed JSON: {e}")))
}

/// The query string as decoded pairs (`application/x-www-form-urlencoded`).
pub struct QueryPairs(pub Vec<(String, String)>);

impl QueryPairs {
    /// The pairs as borrowed tuples.
    pub fn pairs(&self) -> Vec<(&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    /// The value of a parameter (the last one when repeated).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = MgmtError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<QueryPairs, MgmtError> {
        let query = parts.uri.query().unwrap_or("");
        Ok(QueryPairs(
            form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        ))
    }
}

/// A path parameter, percent-decoded; a malformed one is `404 NOT_FOUND` (no such resource).
pub struct PathParams(pub Vec<String>);

impl<S: Send + Sync> FromRequestParts<S> for PathParams {
    type Rejection = MgmtError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<PathParams, MgmtError> {
        match axum::extract::RawPathParams::from_request_parts(parts, state).await {
            Ok(raw) => {
                let mut out = Vec::new();
                for (_, v) in raw.iter() {
                    let decoded = percent_encoding::percent_decode_str(v)
                        .decode_utf8()
                        .map_err(|_| MgmtError::not_found("No such resource"))?;
                    out.push(decoded.into_owned());
                }
                Ok(PathParams(out))
            }
            Err(_) => Err(MgmtError::not_found("No such resource")),
        }
    }
}

/// A JSON answer with a status (`201` for creations).
pub fn json_with(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(bytes) => crate::response::json_bytes(status, bytes),
        Err(e) => MgmtError::internal(e).into_response(),
    }
}

/// `200` JSON.
pub fn ok(value: &impl serde::Serialize) -> Response<Body> {
    json_with(StatusCode::OK, value)
}

/// `204 No Content`.
pub fn no_content() -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

/// Reads an optional boolean member, recording a problem when it has another type.
pub fn opt_bool(body: &Value, name: &str, problems: &mut error::Problems) -> Option<bool> {
    match body.get(name) {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            problems.add(name, "must be true or false");
            None
        }
    }
}

/// Reads an optional string member, recording a problem when it has another type.
pub fn opt_str<'a>(body: &'a Value, name: &str, problems: &mut error::Problems) -> Option<&'a str> {
    match body.get(name) {
        None => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => {
            problems.add(name, "must be a string");
            None
        }
    }
}

/// The required `name` member of a created resource (1–100 characters, management-api.md §7.1,
/// §7.2), recording a problem otherwise (and answering an empty name, never used).
pub fn required_name(body: &Value, problems: &mut error::Problems) -> String {
    match body.get("name") {
        Some(Value::String(s)) if (1..=100).contains(&s.chars().count()) => s.clone(),
        Some(Value::String(_)) => {
            problems.add("name", "must be 1 to 100 characters");
            String::new()
        }
        Some(_) => {
            problems.add("name", "must be a string");
            String::new()
        }
        None => {
            problems.add("name", "is required");
            String::new()
        }
    }
}

/// The body must be a JSON object.
pub fn object(body: &Value) -> MgmtResult<()> {
    if body.is_object() {
        Ok(())
    } else {
        Err(MgmtError::new(ErrorCode::BadRequest, "The body must be a JSON object"))
    }
}
