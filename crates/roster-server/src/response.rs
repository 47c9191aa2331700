//! Response building for the mobile API (mobile-api.md §1.6, §3.1): explicit `Content-Length`,
//! never chunked or compressed, `Content-Type: application/json` only on JSON bodies, the error
//! envelope, `{}` on 5xx. The one mapping from errors to statuses lives here.

use axum::body::Body;
use http::{HeaderValue, Response, StatusCode, header};
use roster_core::CoreError;
use roster_model::{ApiError, ErrorCode};
use roster_store::StoreError;

/// A `200` JSON response.
pub fn json<T: serde::Serialize>(value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(bytes) => json_bytes(StatusCode::OK, bytes),
        Err(e) => {
            tracing::error!(error = %e, "response did not serialise");
            error(&ApiError::new(ErrorCode::Internal, "internal error"))
        }
    }
}

/// A JSON response with a status and an exact body.
pub fn json_bytes(status: StatusCode, bytes: Vec<u8>) -> Response<Body> {
    let len = bytes.len();
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    r
}

/// A `200` with an empty body: `Content-Length: 0` and no `Content-Type`.
pub fn empty() -> Response<Body> {
    let mut r = Response::new(Body::empty());
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

/// The response of a rejected request: the envelope, or `{}` for a server fault.
pub fn error(e: &ApiError) -> Response<Body> {
    let status = StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_bytes(status, e.body())
}

/// Maps a core error to the API error that answers it; store failures are logged here, once,
/// and answered as a generic server fault.
pub fn api_error(e: CoreError) -> ApiError {
    match e {
        CoreError::Api(api) => api,
        CoreError::RateLimited(_) => {
            ApiError::new(ErrorCode::TooManyRequests, "Too many registrations from this address")
        }
        CoreError::Store(StoreError::Unavailable(cause) | StoreError::Retry(cause)) => {
            tracing::warn!(%cause, "store unavailable");
            ApiError::new(ErrorCode::ServiceUnavailable, "service unavailable")
        }
        CoreError::Store(other) => {
            tracing::error!(error = %other, "store failure");
            ApiError::new(ErrorCode::Internal, "internal error")
        }
    }
}
