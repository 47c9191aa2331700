//! The management API's error envelope (management-api.md §2): like the mobile API's, plus
//! `validationErrors`, and carried by 5xx answers too. The one mapping from core errors to
//! management answers lives here.

use std::collections::BTreeMap;

use axum::{body::Body, response::IntoResponse};
use http::{HeaderValue, Response, StatusCode, header};
use roster_core::CoreError;
use roster_model::{ApiError, ErrorCode};
use roster_store::StoreError;
use serde_json::json;

/// A rejected management request.
#[derive(Debug)]
pub struct MgmtError {
    pub code: ErrorCode,
    pub text: String,
    /// JSON path (or `query.<name>`) → messages.
    pub validation: BTreeMap<String, Vec<String>>,
    /// `Retry-After` in seconds (429, 409 IDEMPOTENCY_KEY_IN_PROGRESS).
    pub retry_after: Option<u64>,
    /// The `Allow` header of a 405.
    pub allow: Option<String>,
}

/// Shorthand for handler results.
pub type MgmtResult<T> = Result<T, MgmtError>;

impl MgmtError {
    /// An error with a code and a text.
    pub fn new(code: ErrorCode, text: impl Into<String>) -> MgmtError {
        MgmtError {
            code,
            text: text.into(),
            validation: BTreeMap::new(),
            retry_after: None,
            allow: None,
        }
    }

    /// `400 BAD_REQUEST` for one invalid field.
    pub fn field(path: impl Into<String>, message: impl Into<String>) -> MgmtError {
        let mut e = MgmtError::new(ErrorCode::BadRequest, "Request validation failed");
        e.validation.insert(path.into(), vec![message.into()]);
        e
    }

    /// `404 NOT_FOUND`.
    pub fn not_found(what: impl Into<String>) -> MgmtError {
        MgmtError::new(ErrorCode::NotFound, what)
    }

    /// `500 INTERNAL_ERROR`, with the cause logged once here.
    pub fn internal(cause: impl std::fmt::Display) -> MgmtError {
        tracing::error!(%cause, "management request failed");
        MgmtError::new(ErrorCode::Internal, "Internal error")
    }

    /// The envelope body.
    pub fn body(&self) -> serde_json::Value {
        let mut exception = json!({"messageId": self.code.as_str(), "text": self.text});
        if !self.validation.is_empty() {
            exception["validationErrors"] = json!(self.validation);
        }
        json!({"requestError": {"serviceException": exception}})
    }
}

/// Collects field problems of one request, so that every invalid field is reported (§2).
#[derive(Debug, Default)]
pub struct Problems(BTreeMap<String, Vec<String>>);

impl Problems {
    /// Records a problem at a path.
    pub fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.entry(path.into()).or_default().push(message.into());
    }

    /// How many problems were recorded.
    pub fn len(&self) -> usize {
        self.0.values().map(Vec::len).sum()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when nothing was recorded, else `400 BAD_REQUEST` with every problem.
    pub fn finish(self) -> MgmtResult<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        let mut e = MgmtError::new(ErrorCode::BadRequest, "Request validation failed");
        e.validation = self.0;
        Err(e)
    }
}

impl From<ApiError> for MgmtError {
    fn from(e: ApiError) -> MgmtError {
        if e.code == ErrorCode::Internal {
            return MgmtError::internal(e.text);
        }
        // A mobile-only "not found" reads as the management API's own code.
        let code = match e.code {
            ErrorCode::ResourceNotFound | ErrorCode::NoRegistration => ErrorCode::NotFound,
            other => other,
        };
        let mut out = MgmtError::new(code, e.text.clone());
        if let Some(path) = e.path {
            out.validation.insert(path, vec![e.text]);
        }
        out
    }
}

impl From<CoreError> for MgmtError {
    fn from(e: CoreError) -> MgmtError {
        match e {
            CoreError::Api(api) => api.into(),
            CoreError::RateLimited(secs) => {
                let mut e = MgmtError::new(ErrorCode::TooManyRequests, "Too many requests");
                e.retry_after = Some(secs.max(1));
                e
            }
            CoreError::Store(StoreError::Unavailable(cause) | StoreError::Retry(cause)) => {
                tracing::warn!(%cause, "store unavailable");
                MgmtError::new(ErrorCode::ServiceUnavailable, "Service unavailable")
            }
            CoreError::Store(other) => MgmtError::internal(other),
        }
    }
}

impl From<StoreError> for MgmtError {
    fn from(e: StoreError) -> MgmtError {
        CoreError::Store(e).into()
    }
}

impl IntoResponse for MgmtError {
    fn into_response(self) -> Response<Body> {
        let status = StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let bytes = serde_json::to_vec(&self.body()).unwrap_or_else(|_| b"{}".to_vec());
        let mut r = crate::response::json_bytes(status, bytes);
        if let Some(secs) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(allow) = self.allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
            r.headers_mut().insert(header::ALLOW, allow);
        }
        r
    }
}
