//! The portal's calls of the management API: each runs through the in-process `/api/v1` router
//! ([`PortalState::management`]) as the signed-in API key, carried by a request extension
//! ([`VerifiedCaller`]) instead of a header, so the key's secret is never needed again after
//! sign-in. Everything the API checks (scopes, validation, idempotency, `If-Match`) applies.

use std::collections::BTreeMap;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use super::PortalState;
use crate::management::auth::{Caller, VerifiedCaller};

/// A successful (2xx) answer of the API.
#[derive(Debug)]
pub struct ApiAnswer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl ApiAnswer {
    /// The body as JSON (`Null` for an empty body).
    pub fn json(&self) -> Result<Value, ApiFailure> {
        if self.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|e| ApiFailure::internal(format!("answer is not JSON: {e}")))
    }
}

/// A refused API call, readable for people: the envelope's message and its field errors.
#[derive(Debug, Clone)]
pub struct ApiFailure {
    pub status: StatusCode,
    /// The envelope's `messageId` (e.g. `BAD_REQUEST`, `FORBIDDEN`).
    pub code: String,
    /// The envelope's `text`.
    pub text: String,
    /// `validationErrors`: field path → messages.
    pub fields: BTreeMap<String, Vec<String>>,
}

impl ApiFailure {
    fn internal(cause: String) -> ApiFailure {
        tracing::error!(%cause, "portal: management call failed");
        ApiFailure {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "INTERNAL_ERROR".into(),
            text: "Internal error".into(),
            fields: BTreeMap::new(),
        }
    }

    /// One line for a flash message: the text and every field error.
    pub fn message(&self) -> String {
        let mut out = self.text.clone();
        for (path, messages) in &self.fields {
            for m in messages {
                // Person data errors repeat the field's message as the text (management-api.md §2).
                if *m != self.text {
                    out.push_str(&format!(" — {path}: {m}"));
                }
            }
        }
        out
    }

    /// The messages of one field (for showing next to it).
    pub fn field(&self, path: &str) -> Vec<String> {
        self.fields.get(path).cloned().unwrap_or_default()
    }
}

impl PortalState {
    /// Calls `method path_and_query` (below `/api/v1`, e.g. `/people/lookup?email=...`) as
    /// `caller`, with an optional JSON body and extra headers.
    pub async fn api_with(
        &self,
        caller: &Caller,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<ApiAnswer, ApiFailure> {
        let bytes = match body {
            Some(v) => serde_json::to_vec(v).map_err(|e| ApiFailure::internal(e.to_string()))?,
            None => Vec::new(),
        };
        let mut builder = Request::builder().method(method).uri(path_and_query);
        if body.is_some() {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        for (name, value) in headers {
            builder = builder.header(*name, value.as_str());
        }
        let mut req = builder
            .body(Body::from(bytes))
            .map_err(|e| ApiFailure::internal(e.to_string()))?;
        req.extensions_mut().insert(VerifiedCaller(caller.clone()));
        let response = match self.management.clone().oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| ApiFailure::internal(e.to_string()))?
            .to_bytes();
        if parts.status.is_success() {
            return Ok(ApiAnswer {
                status: parts.status,
                headers: parts.headers,
                body,
            });
        }
        let envelope: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let se = &envelope["requestError"]["serviceException"];
        let fields = se["validationErrors"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        let msgs = v
                            .as_array()
                            .map(|a| a.iter().filter_map(|m| m.as_str().map(str::to_string)).collect())
                            .unwrap_or_default();
                        (k.clone(), msgs)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Err(ApiFailure {
            status: parts.status,
            code: se["messageId"].as_str().unwrap_or("ERROR").to_string(),
            text: se["text"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("The request failed ({})", parts.status)),
            fields,
        })
    }

    /// [`PortalState::api_with`] without extra headers.
    pub async fn api(
        &self,
        caller: &Caller,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<ApiAnswer, ApiFailure> {
        self.api_with(caller, method, path_and_query, body, &[]).await
    }

    /// A `GET` answering JSON.
    pub async fn api_get(&self, caller: &Caller, path_and_query: &str) -> Result<Value, ApiFailure> {
        self.api(caller, Method::GET, path_and_query, None).await?.json()
    }
}

/// Everything but RFC 3986's unreserved characters is encoded.
const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes one query parameter value or path segment.
pub fn enc(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, COMPONENT).to_string()
}
