//! FCM HTTP v1 provider client: OAuth 2.0 service-account access tokens (RS256 JWT-bearer
//! assertion) and `messages:send` over HTTP/2 (management-api.md §6.4 "FCM", §6.3).

use std::sync::Arc;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, USER_AGENT};
use jsonwebtoken::{Algorithm, Header};
use serde::Serialize;
use uuid::Uuid;

use crate::credentials::FcmCredentials;
use crate::message::PushMessage;
use crate::oauth::{AccessToken, TokenCache, credential_failure, request_token};
use crate::outcome::{FcmError, Outcome, ProviderResponse, SendReport, classify_fcm};
use crate::payload::fcm_body;
use crate::transport::{Http2Pool, Transport, USER_AGENT_VALUE, origin, unix_now};

/// OAuth scope of FCM sends.
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// `grant_type` of the service-account flow.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// Lifetime claimed by our assertions (the maximum Google accepts).
const ASSERTION_LIFETIME_SECS: u64 = 3600;

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
    send_url: http::Uri,
    token: TokenCache,
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

impl FcmClient {
    /// A client for `credentials`, sharing HTTP/2 connections with every client of the same base URL.
    pub fn new(credentials: FcmCredentials, transport: &Transport) -> Self {
        let pool = transport.http2_pool(&format!("fcm {}", origin(credentials.base_url())));
        FcmClient {
            inner: Arc::new(FcmInner {
                send_url: format!(
                    "{}/v1/projects/{}/messages:send",
                    credentials.base_url(),
                    credentials.project_id()
                )
                .parse()
                .expect("base URL and project id checked by FcmCredentials::parse"),
                credentials,
                pool,
                token_client: transport.token_client().clone(),
                token: TokenCache::new(),
            }),
        }
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
            let mut headers = HeaderMap::with_capacity(3);
            headers.insert(AUTHORIZATION, bearer.clone());
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=UTF-8"),
            );
            headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
            let (outcome, response) = match inner.pool.post(inner.send_url.clone(), headers, body.clone()).await {
                Err(response) => (Outcome::Retry { retry_after: None }, response),
                Ok(answer) if (200..300).contains(&answer.status) => (
                    Outcome::Accepted,
                    ProviderResponse {
                        http_status: Some(answer.status),
                        reason: "OK".into(),
                    },
                ),
                Ok(answer) => {
                    let error = FcmError::parse(&answer.body);
                    let reason = error.reason(answer.status);
                    let outcome = classify_fcm(answer.status, &error, answer.retry_after);
                    (
                        outcome,
                        ProviderResponse {
                            http_status: Some(answer.status),
                            reason,
                        },
                    )
                }
            };
            let outcome = match outcome {
                Outcome::RefreshAndRetry if !refreshed => {
                    self.inner.token.invalidate(&bearer);
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

    /// The cached access token, or a new one from the token endpoint (shared by concurrent sends).
    async fn access_token(&self) -> Result<HeaderValue, SendReport> {
        self.inner.token.get(|| self.fetch_token()).await
    }

    /// One OAuth 2.0 JWT-bearer token request (§6.4).
    async fn fetch_token(&self) -> Result<AccessToken, SendReport> {
        let creds = &self.inner.credentials;
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
            credential_failure(
                None,
                "TOKEN_ENDPOINT_ERROR",
                format!("cannot sign the FCM token assertion: {e}"),
            )
        })?;
        let form = [("grant_type", JWT_BEARER_GRANT), ("assertion", assertion.as_str())];
        request_token(&self.inner.token_client, creds.token_url(), &form, "FCM").await
    }
}
