//! HTTP to the mobile API (client-sdk.md §4) and the classification of outcomes (§6.3).

use std::time::Duration;

use reqwest::{Method, StatusCode, header::HeaderValue, redirect};
use serde_json::Value;

use crate::{
    Config, RosterError,
    config::{SDK_VERSION, sha256_hex},
    json::JsonMap,
};

/// A request to the mobile API.
pub(crate) struct Call<'a> {
    pub method: Method,
    /// Path and query after the base URL, starting with `/mobile/1/`.
    pub path: String,
    pub body: Option<&'a Value>,
    /// `Bearer` instead of `App` auth.
    pub bearer: Option<String>,
    /// The own pushRegId, sent as `pushregistrationid`.
    pub push_reg_id: Option<&'a str>,
}

impl<'a> Call<'a> {
    pub(crate) fn new(method: Method, path: String) -> Call<'a> {
        Call {
            method,
            path,
            body: None,
            bearer: None,
            push_reg_id: None,
        }
    }
    pub(crate) fn body(mut self, body: &'a Value) -> Self {
        self.body = Some(body);
        self
    }
    pub(crate) fn caller(mut self, id: &'a str) -> Self {
        self.push_reg_id = Some(id);
        self
    }
    pub(crate) fn bearer(mut self, token: Option<String>) -> Self {
        self.bearer = token;
        self
    }
}

/// A failed request.
#[derive(Debug)]
pub(crate) struct Failure {
    pub error: RosterError,
    /// `Retry-After` of a 429.
    pub retry_after: Option<Duration>,
}

/// How a failure is handled (client-sdk.md §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Retryable,
    Permanent,
    /// `NO_REGISTRATION`: recovery (§11).
    NoRegistration,
}

/// client-sdk.md §6.3. `user_request`: GET/PATCH user and personalize, where `401 JWT_INVALID`
/// may heal with a later token.
pub(crate) fn classify(e: &RosterError, user_request: bool) -> Class {
    match e {
        RosterError::Network(_) | RosterError::JwtStructureInvalid | RosterError::JwtExpired => Class::Retryable,
        RosterError::Storage(_) => Class::Retryable,
        RosterError::Http { status } => {
            if *status >= 500 || (300..400).contains(status) || *status == 429 {
                Class::Retryable
            } else {
                Class::Permanent
            }
        }
        RosterError::Api { http_status, code, .. } => match (code.as_str(), *http_status) {
            ("NO_REGISTRATION", _) => Class::NoRegistration,
            (_, 429) => Class::Retryable,
            ("JWT_INVALID", 401) if user_request => Class::Retryable,
            ("APP_CODE_MISSING" | "INVALID_APPLICATION_CODE", 401) => Class::Retryable,
            (_, s) if s >= 500 || (300..400).contains(&s) => Class::Retryable,
            _ => Class::Permanent,
        },
        _ => Class::Permanent,
    }
}

/// The HTTP side of the engine: one client, the fixed headers.
pub(crate) struct Transport {
    client: reqwest::Client,
    base: String,
    authorization: String,
    app_code_hash: String,
    installation_id: String,
    user_agent: String,
}

impl Transport {
    /// Builds the client from the configuration (no redirects, optional private CAs).
    pub(crate) fn new(config: &Config, installation_id: &str) -> Result<Transport, RosterError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(config.http.connect_timeout)
            .timeout(config.http.request_timeout)
            .redirect(redirect::Policy::none());
        for (i, pem) in config.http.extra_root_certificates.iter().enumerate() {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| RosterError::validation(format!("http.extra_root_certificates[{i}]"), e.to_string()))?;
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let client = builder
            .build()
            .map_err(|e| RosterError::Network(format!("cannot build the HTTP client: {e}")))?;
        let info = &config.system_info;
        let user_agent = if config.privacy.system_info_sending_disabled {
            format!("RosterClient/{SDK_VERSION}")
        } else {
            let slot = |v: &Option<String>| v.clone().unwrap_or_default();
            format!(
                "RosterClient/{SDK_VERSION} ({}; {}; {}; {})",
                slot(&info.os),
                slot(&info.os_version),
                slot(&info.device_model),
                slot(&info.app_version)
            )
        };
        let hash = sha256_hex(config.application_code.as_bytes());
        Ok(Transport {
            client,
            base: config.base_url.as_str().trim_end_matches('/').to_string(),
            authorization: format!("App {}", config.application_code),
            app_code_hash: hash[..10].to_string(),
            installation_id: installation_id.to_string(),
            user_agent,
        })
    }

    /// Sends one request. `Ok(None)` is a 2xx with an empty body; `Ok(Some(object))` a 2xx with a
    /// JSON object. Anything else is a [`Failure`].
    pub(crate) async fn send(&self, call: Call<'_>) -> Result<Option<JsonMap>, Failure> {
        let url = format!("{}{}", self.base, call.path);
        let auth = match &call.bearer {
            Some(t) => format!("Bearer {t}"),
            None => self.authorization.clone(),
        };
        let mut rb = self
            .client
            .request(call.method.clone(), &url)
            .header("authorization", auth)
            .header("installationid", &self.installation_id)
            .header("applicationcode", &self.app_code_hash)
            .header("user-agent", header_value(&self.user_agent))
            .header("accept", "application/json");
        if let Some(id) = call.push_reg_id {
            rb = rb.header("pushregistrationid", id);
        }
        if let Some(body) = call.body {
            rb = rb
                .header("content-type", "application/json")
                .body(serde_json::to_vec(body).expect("JSON always serialises"));
        }
        tracing::debug!(method = %call.method, path = %call.path, "request");
        let resp = rb.send().await.map_err(|e| Failure {
            error: RosterError::Network(describe(&e)),
            retry_after: None,
        })?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = resp.bytes().await.map_err(|e| Failure {
            error: RosterError::Network(describe(&e)),
            retry_after: None,
        })?;
        if status.is_success() {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(None);
            }
            return match serde_json::from_slice::<Value>(&bytes) {
                Ok(Value::Object(m)) => Ok(Some(m)),
                _ => Err(Failure {
                    error: RosterError::Network(format!("malformed response to {} {}", call.method, call.path)),
                    retry_after: None,
                }),
            };
        }
        Err(Failure {
            error: error_of(status, &bytes),
            retry_after: if status == StatusCode::TOO_MANY_REQUESTS {
                Some(retry_after.unwrap_or(Duration::from_secs(1)))
            } else {
                None
            },
        })
    }
}

/// A header value; characters a header cannot carry are replaced.
fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| {
        let clean: String = s
            .chars()
            .map(|c| if c.is_ascii() && !c.is_ascii_control() { c } else { '?' })
            .collect();
        HeaderValue::from_str(&clean).unwrap_or_else(|_| HeaderValue::from_static("RosterClient"))
    })
}

/// The error of a non-2xx answer: the envelope when there is one (never for 3xx).
fn error_of(status: StatusCode, body: &[u8]) -> RosterError {
    if !status.is_redirection()
        && let Ok(v) = serde_json::from_slice::<Value>(body)
    {
        let se = &v["requestError"]["serviceException"];
        if let Some(code) = se["messageId"].as_str() {
            return RosterError::Api {
                http_status: status.as_u16(),
                code: code.to_string(),
                text: se["text"].as_str().unwrap_or_default().to_string(),
            };
        }
    }
    RosterError::Http {
        status: status.as_u16(),
    }
}

/// A reqwest error with its causes.
fn describe(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: &str) -> RosterError {
        RosterError::Api {
            http_status: status,
            code: code.into(),
            text: String::new(),
        }
    }

    #[test]
    fn classification() {
        assert_eq!(classify(&RosterError::Network("x".into()), false), Class::Retryable);
        assert_eq!(classify(&RosterError::Http { status: 503 }, false), Class::Retryable);
        assert_eq!(classify(&RosterError::Http { status: 302 }, false), Class::Retryable);
        assert_eq!(classify(&RosterError::Http { status: 404 }, false), Class::Permanent);
        assert_eq!(classify(&api(429, "TOO_MANY_REQUESTS"), false), Class::Retryable);
        assert_eq!(classify(&api(401, "JWT_INVALID"), true), Class::Retryable);
        assert_eq!(classify(&api(401, "JWT_INVALID"), false), Class::Permanent);
        assert_eq!(classify(&api(401, "INVALID_APPLICATION_CODE"), false), Class::Retryable);
        assert_eq!(classify(&api(404, "NO_REGISTRATION"), false), Class::NoRegistration);
        assert_eq!(classify(&api(400, "EMAIL_INVALID"), true), Class::Permanent);
        assert_eq!(classify(&api(409, "USER_MERGE_INTERRUPTED"), true), Class::Permanent);
        assert_eq!(classify(&api(403, "FORBIDDEN_INSTALLATION"), false), Class::Permanent);
        assert_eq!(classify(&RosterError::JwtExpired, true), Class::Retryable);
    }

    #[test]
    fn envelopes() {
        let e = error_of(
            StatusCode::NOT_FOUND,
            br#"{"requestError":{"serviceException":{"messageId":"NO_REGISTRATION","text":"Unknown"}}}"#,
        );
        assert!(e.is_api("NO_REGISTRATION"));
        assert!(matches!(
            error_of(StatusCode::SERVICE_UNAVAILABLE, b"{}"),
            RosterError::Http { status: 503 }
        ));
        assert!(matches!(
            error_of(StatusCode::FOUND, b""),
            RosterError::Http { status: 302 }
        ));
    }
}
