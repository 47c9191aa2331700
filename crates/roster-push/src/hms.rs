//! HMS (Huawei Push Kit) provider client: OAuth 2.0 client-credentials access token and
//! `POST {base}/v1/{appId}/messages:send` over HTTP/2 (management-api.md §6.4 "HMS", §6.3).

use std::sync::Arc;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use uuid::Uuid;

use crate::credentials::HmsCredentials;
use crate::message::PushMessage;
use crate::oauth::{AccessToken, TokenCache, request_token};
use crate::outcome::{HmsAnswer, Outcome, ProviderResponse, SendReport, classify_hms};
use crate::payload::hms_body;
use crate::transport::{Http2Pool, Transport, origin, retry_after, transport_failure, unix_now};

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
    send_url: reqwest::Url,
    token: TokenCache,
}

impl HmsClient {
    /// A client for `credentials`, sharing HTTP/2 connections with every client of the same base URL.
    pub fn new(credentials: HmsCredentials, transport: &Transport) -> Result<Self, reqwest::Error> {
        let pool = transport.http2_pool(&format!("hms {}", origin(credentials.base_url())))?;
        Ok(HmsClient {
            inner: Arc::new(HmsInner {
                send_url: reqwest::Url::parse(&format!(
                    "{}/v1/{}/messages:send",
                    credentials.base_url(),
                    credentials.app_id()
                ))
                .expect("base URL and app id checked by HmsCredentials::parse"),
                credentials,
                pool,
                token_client: transport.token_client().clone(),
                token: TokenCache::new(),
            }),
        })
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
            let sent = inner
                .pool
                .client()
                .post(inner.send_url.clone())
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
                        Ok(bytes) => {
                            let parsed = HmsAnswer::parse(&bytes);
                            let reason = parsed.reason(status);
                            (
                                classify_hms(status, &parsed, device_token, wait),
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
