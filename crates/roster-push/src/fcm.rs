//! FCM HTTP v1 provider client: OAuth 2.0 service-account access tokens (RS256 JWT-bearer
//! assertion) and `messages:send` over HTTP/2 (management-api.md §6.4 "FCM", §6.3).

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use jsonwebtoken::{Algorithm, Header};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::credentials::FcmCredentials;
use crate::message::PushMessage;
use crate::outcome::{FcmError, Outcome, ProviderResponse, SendReport, classify_fcm};
use crate::payload::fcm_body;
use crate::transport::{Http2Pool, Transport, origin, retry_after, transport_failure, unix_now};

/// OAuth scope of FCM sends.
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// `grant_type` of the service-account flow.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Lifetime claimed by our assertions (the maximum Google accepts).
const ASSERTION_LIFETIME_SECS: u64 = 3600;
/// Access tokens are refreshed this long before they expire (or at half their lifetime, for
/// short-lived ones), so that a token never expires on its way to FCM.
const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// Sends pushes for one application's FCM service account. Cheap to clone; clones share the
/// access token and the connection pool.
#[derive(Clone)]
pub struct FcmClient {
    inner: Arc<FcmInner>,
}

struct FcmInner {
    credentials: FcmCredentials,
    pool: Http2Pool,
    token_client: reqwest::Client,
    send_url: String,
    token: RwLock<Option<AccessToken>>,
    /// Single flight: one token request at a time; the others wait for its result.
    refresh: tokio::sync::Mutex<()>,
    /// The last failed token request, shared with the sends that waited for it.
    failure: Mutex<Option<(Instant, SendReport)>>,
}

#[derive(Clone)]
struct AccessToken {
    bearer: HeaderValue,
    refresh_at: Instant,
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct OAuthError {
    error: String,
    error_description: Option<String>,
}

impl FcmClient {
    /// A client for `credentials`, sharing HTTP/2 connections with every client of the same base URL.
    pub fn new(credentials: FcmCredentials, transport: &Transport) -> Result<Self, reqwest::Error> {
        let pool = transport.http2_pool(&format!("fcm {}", origin(credentials.base_url())))?;
        Ok(FcmClient {
            inner: Arc::new(FcmInner {
                send_url: format!(
                    "{}/v1/projects/{}/messages:send",
                    credentials.base_url(),
                    credentials.project_id()
                ),
                credentials,
                pool,
                token_client: transport.token_client().clone(),
                token: RwLock::new(None),
                refresh: tokio::sync::Mutex::new(()),
                failure: Mutex::new(None),
            }),
        })
    }

    /// The credentials this client sends with.
    pub fn credentials(&self) -> &FcmCredentials {
        &self.inner.credentials
    }

    /// Sends `message` to one registration token: one delivery attempt. A 401 for an expired
    /// access token fetches a new one and retries at once, once; every other answer is returned
    /// classified (§6.3).
    pub async fn send(&self, message: &PushMessage, delivery_id: Uuid, device_token: &str) -> SendReport {
        let inner = &self.inner;
        let now_ms = i64::try_from(unix_now().as_millis()).unwrap_or(i64::MAX);
        let body = Bytes::from(fcm_body(message, delivery_id, device_token, now_ms));
        let mut refreshed = false;
        loop {
            let bearer = match self.access_token().await {
                Ok(bearer) => bearer,
                Err(mut report) => {
                    report.credential_refreshed = refreshed;
                    return report;
                }
            };
            let sent = inner
                .pool
                .client()
                .post(&inner.send_url)
                .header(AUTHORIZATION, bearer.clone())
                .header(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/json; charset=UTF-8"),
                )
                .body(body.clone())
                .send()
                .await;
            let (outcome, response) = match sent {
                Err(error) => (Outcome::Retry { retry_after: None }, transport_failure(&error)),
                Ok(answer) => {
                    let status = answer.status().as_u16();
                    let wait = retry_after(answer.headers());
                    match answer.bytes().await {
                        Err(error) => (Outcome::Retry { retry_after: None }, transport_failure(&error)),
                        Ok(_) if (200..300).contains(&status) => (
                            Outcome::Accepted,
                            ProviderResponse {
                                http_status: Some(status),
                                reason: "OK".into(),
                            },
                        ),
                        Ok(bytes) => {
                            let error = FcmError::parse(&bytes);
                            let reason = error.reason(status);
                            (
                                classify_fcm(status, &error, wait),
                                ProviderResponse {
                                    http_status: Some(status),
                                    reason,
                                },
                            )
                        }
                    }
                }
            };
            let outcome = match outcome {
                Outcome::RefreshAndRetry if !refreshed => {
                    self.invalidate(&bearer);
                    refreshed = true;
                    continue;
                }
                Outcome::RefreshAndRetry => Outcome::Failed {
                    last_error: format!("FCM refused a freshly issued access token: {} {}", 401, response.reason),
                },
                other => other,
            };
            return SendReport {
                outcome,
                response,
                credential_refreshed: refreshed,
            };
        }
    }

    /// The cached access token, or a new one from the token endpoint. Concurrent callers share
    /// one token request, and its failure.
    async fn access_token(&self) -> Result<HeaderValue, SendReport> {
        if let Some(bearer) = self.cached(Instant::now()) {
            return Ok(bearer);
        }
        let waiting_since = Instant::now();
        let _single_flight = self.inner.refresh.lock().await;
        if let Some(bearer) = self.cached(Instant::now()) {
            return Ok(bearer);
        }
        {
            let failure = self.inner.failure.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((at, report)) = failure.as_ref()
                && *at >= waiting_since
            {
                return Err(report.clone());
            }
        }
        match self.fetch_token().await {
            Ok(token) => {
                let bearer = token.bearer.clone();
                *self.inner.token.write().unwrap_or_else(|p| p.into_inner()) = Some(token);
                Ok(bearer)
            }
            Err(report) => {
                *self.inner.failure.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), report.clone()));
                Err(report)
            }
        }
    }

    fn cached(&self, now: Instant) -> Option<HeaderValue> {
        let token = self.inner.token.read().unwrap_or_else(|p| p.into_inner());
        token.as_ref().filter(|t| now < t.refresh_at).map(|t| t.bearer.clone())
    }

    /// Drops the cached token if it is still `used` (another task may have replaced it already).
    fn invalidate(&self, used: &HeaderValue) {
        let mut token = self.inner.token.write().unwrap_or_else(|p| p.into_inner());
        if token.as_ref().is_some_and(|t| t.bearer == used) {
            *token = None;
        }
    }

    /// One OAuth 2.0 JWT-bearer token request (§6.4).
    async fn fetch_token(&self) -> Result<AccessToken, SendReport> {
        let creds = &self.inner.credentials;
        let failed = |status: Option<u16>, reason: &str, last_error: String| SendReport {
            outcome: Outcome::Failed { last_error },
            response: ProviderResponse {
                http_status: status,
                reason: reason.into(),
            },
            credential_refreshed: false,
        };
        let iat = unix_now().as_secs();
        let claims = AssertionClaims {
            iss: creds.client_email(),
            scope: FCM_SCOPE,
            aud: creds.token_url(),
            iat,
            exp: iat + ASSERTION_LIFETIME_SECS,
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = creds.private_key_id().map(str::to_owned);
        let assertion = jsonwebtoken::encode(&header, &claims, creds.signing_key()).map_err(|e| {
            failed(
                None,
                "TOKEN_ENDPOINT_ERROR",
                format!("cannot sign the FCM token assertion: {e}"),
            )
        })?;
        let requested = Instant::now();
        let sent = self
            .inner
            .token_client
            .post(creds.token_url())
            .form(&[("grant_type", JWT_BEARER_GRANT), ("assertion", assertion.as_str())])
            .send()
            .await;
        let retry = |response: ProviderResponse, retry_after: Option<Duration>| SendReport {
            outcome: Outcome::Retry { retry_after },
            response,
            credential_refreshed: false,
        };
        let answer = sent.map_err(|e| retry(transport_failure(&e), None))?;
        let status = answer.status().as_u16();
        let wait = retry_after(answer.headers());
        let bytes = answer.bytes().await.map_err(|e| retry(transport_failure(&e), None))?;
        if status == 429 || status >= 500 {
            return Err(retry(
                ProviderResponse {
                    http_status: Some(status),
                    reason: "TOKEN_ENDPOINT_UNAVAILABLE".into(),
                },
                wait,
            ));
        }
        if !(200..300).contains(&status) {
            let (reason, description) = match serde_json::from_slice::<OAuthError>(&bytes) {
                Ok(e) => (e.error, e.error_description.unwrap_or_default()),
                Err(_) => (format!("HTTP_{status}"), String::new()),
            };
            let last_error = format!("FCM token endpoint refused the service account: {status} {reason} {description}");
            return Err(failed(Some(status), &reason, last_error.trim_end().to_owned()));
        }
        let token: TokenAnswer = serde_json::from_slice(&bytes).map_err(|_| {
            failed(
                Some(status),
                "TOKEN_ENDPOINT_ERROR",
                "FCM token endpoint answered without an access_token".into(),
            )
        })?;
        let mut bearer = HeaderValue::from_str(&format!("Bearer {}", token.access_token)).map_err(|_| {
            failed(
                Some(status),
                "TOKEN_ENDPOINT_ERROR",
                "FCM token endpoint answered an unusable access_token".into(),
            )
        })?;
        bearer.set_sensitive(true);
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(ASSERTION_LIFETIME_SECS));
        Ok(AccessToken {
            bearer,
            refresh_at: requested + refresh_after(lifetime),
        })
    }
}

/// How long an access token of `lifetime` is used before a new one is fetched.
fn refresh_after(lifetime: Duration) -> Duration {
    lifetime - REFRESH_MARGIN.min(lifetime / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_refreshed_shortly_before_they_expire() {
        assert_eq!(refresh_after(Duration::from_secs(3599)), Duration::from_secs(3539));
        assert_eq!(refresh_after(Duration::from_secs(60)), Duration::from_secs(30));
        assert_eq!(refresh_after(Duration::from_secs(2)), Duration::from_secs(1));
        assert_eq!(refresh_after(Duration::ZERO), Duration::ZERO);
    }
}
