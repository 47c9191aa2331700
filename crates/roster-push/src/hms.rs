//! HMS (Huawei Push Kit) provider client: OAuth 2.0 client-credentials access token and
//! `POST {base}/v1/{appId}/messages:send` over HTTP/2 (management-api.md §6.4 "HMS", §6.3).

use std::sync::Arc;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, USER_AGENT};
use uuid::Uuid;

use crate::credentials::HmsCredentials;
use crate::message::PushMessage;
use crate::oauth::{AccessToken, TokenCache, request_token};
use crate::outcome::{HmsAnswer, Outcome, ProviderResponse, SendReport, classify_hms};
use crate::payload::hms_body;
use crate::transport::{Http2Pool, Transport, USER_AGENT_VALUE, origin, unix_now};

/// Sends pushes for one application's HMS credentials. Cheap to clone; clones share the access
/// token and the connection pool.
#[derive(Clone)]
pub struct HmsClient {
    inner: Arc<HmsInner>,
}

struct HmsInner {
    credentials: HmsCredentials,
    pool: Http2Pool,
    token_client: reqwest::Client,
    send_url: http::Uri,
    token: TokenCache,
}

impl HmsClient {
    /// A client for `credentials`, sharing HTTP/2 connections with every client of the same base URL.
    pub fn new(credentials: HmsCredentials, transport: &Transport) -> Self {
        let pool = transport.http2_pool(&format!("hms {}", origin(credentials.base_url())));
        HmsClient {
            inner: Arc::new(HmsInner {
                send_url: format!("{}/v1/{}/messages:send", credentials.base_url(), credentials.app_id())
                    .parse()
                    .expect("base URL and app id checked by HmsCredentials::parse"),
                credentials,
                pool,
                token_client: transport.token_client().clone(),
                token: TokenCache::new(),
            }),
        }
    }

    /// The credentials this client sends with.
    pub fn credentials(&self) -> &HmsCredentials {
        &self.inner.credentials
    }

    /// Sends `message` to one HMS token: one delivery attempt. An expired access token
    /// (`80200003`) is refreshed and the send retried at once, once; every other answer is
    /// returned classified (§6.3).
    pub async fn send(&self, message: &PushMessage, delivery_id: Uuid, device_token: &str) -> SendReport {
        let inner = &self.inner;
        let now_ms = i64::try_from(unix_now().as_millis()).unwrap_or(i64::MAX);
        let body = Bytes::from(hms_body(message, delivery_id, device_token, now_ms));
        let mut refreshed = false;
        loop {
            let bearer = match inner.token.get(|| self.fetch_token()).await {
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
                Ok(answer) => {
                    let parsed = HmsAnswer::parse(&answer.body);
                    let reason = parsed.reason(answer.status);
                    let outcome = classify_hms(answer.status, &parsed, device_token, answer.retry_after);
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
                    inner.token.invalidate(&bearer);
                    refreshed = true;
                    continue;
                }
                Outcome::RefreshAndRetry => Outcome::Failed {
                    last_error: format!("HMS refused a freshly issued access token: {}", response.reason),
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

    /// One OAuth 2.0 client-credentials token request.
    async fn fetch_token(&self) -> Result<AccessToken, SendReport> {
        let creds = &self.inner.credentials;
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", creds.client_id()),
            ("client_secret", creds.client_secret()),
        ];
        request_token(&self.inner.token_client, creds.token_url(), &form, "HMS").await
    }
}
