//! HTTP machinery shared by the provider clients (management-api.md §6.5): pooled HTTP/2
//! connections per origin, so that every application pointing at the same provider shares
//! connections and multiplexes its streams on them, and a plain client for OAuth token endpoints.
//!
//! Pushes go through hyper's pooled client directly rather than reqwest: on the fan-out path
//! reqwest's per-request layers (URL parsing, redirect and retry wrappers, header copies) cost
//! about as much CPU as the HTTP/2 work itself (measured: ~60 µs vs ~40 µs per push, client and
//! stand-in together). Token requests are rare and keep using reqwest.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::outcome::ProviderResponse;

/// `user-agent` of every provider request.
pub(crate) const USER_AGENT_VALUE: &str = concat!("roster/", env!("CARGO_PKG_VERSION"));

/// Provider answers are small; anything bigger is not a provider's and is cut off.
const ANSWER_LIMIT: usize = 64 * 1024;

/// Timeouts and pool shape of the provider connections.
#[derive(Debug, Clone)]
pub struct TransportSettings {
    /// TCP + TLS connect timeout (§6.3: 10 s).
    pub connect_timeout: Duration,
    /// Whole-request timeout, answer body included (§6.3: 30 s).
    pub request_timeout: Duration,
    /// HTTP/2 connections per pool key. One connection multiplexes many concurrent streams
    /// (hundreds on APNs); more than one only spreads the framing work over several tasks.
    pub connections_per_origin: usize,
}

impl Default for TransportSettings {
    fn default() -> Self {
        TransportSettings {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            connections_per_origin: 1,
        }
    }
}

/// The TLS stack could not be set up (no usable certificate verifier on this system).
#[derive(Debug, thiserror::Error)]
#[error("cannot set up TLS for provider connections: {0}")]
pub struct TransportError(String);

/// Shared connection pools of the provider clients. Cheap to clone; create one per process and
/// build every [`ApnsClient`](crate::ApnsClient), [`FcmClient`](crate::FcmClient) and
/// [`HmsClient`](crate::HmsClient) from it.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<TransportInner>,
}

struct TransportInner {
    settings: TransportSettings,
    connector: HttpsConnector<HttpConnector>,
    pools: Mutex<HashMap<String, Http2Pool>>,
    token_client: reqwest::Client,
}

impl Transport {
    /// A transport with the given settings (system certificate verifier for `https`).
    pub fn new(settings: TransportSettings) -> Result<Self, TransportError> {
        let token_client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            // A redirect would carry credentials to another host; token endpoints never redirect.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(USER_AGENT_VALUE)
            .build()
            .map_err(|e| TransportError(e.to_string()))?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(settings.connect_timeout));
        // `https`: ALPN offers `h2` only; `http`: h2c with prior knowledge (http2_only below).
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .try_with_platform_verifier()
            .map_err(|e| TransportError(e.to_string()))?
            .https_or_http()
            .enable_http2()
            .wrap_connector(http);
        Ok(Transport {
            inner: Arc::new(TransportInner {
                settings,
                connector,
                pools: Mutex::new(HashMap::new()),
                token_client,
            }),
        })
    }

    /// The HTTP/2 pool for `key` (an origin, plus a partition where the provider needs one),
    /// created on first use.
    pub(crate) fn http2_pool(&self, key: &str) -> Http2Pool {
        let mut pools = self.inner.pools.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pool) = pools.get(key) {
            return pool.clone();
        }
        let settings = &self.inner.settings;
        let clients = (0..settings.connections_per_origin.max(1))
            .map(|_| {
                Client::builder(TokioExecutor::new())
                    .http2_only(true)
                    .timer(TokioTimer::new())
                    .pool_timer(TokioTimer::new())
                    .pool_idle_timeout(Duration::from_secs(90))
                    .http2_keep_alive_interval(Duration::from_secs(60))
                    .http2_keep_alive_timeout(Duration::from_secs(20))
                    .build(self.inner.connector.clone())
            })
            .collect();
        let pool = Http2Pool {
            clients: Arc::new(clients),
            next: Arc::new(AtomicUsize::new(0)),
            request_timeout: settings.request_timeout,
        };
        pools.insert(key.to_owned(), pool.clone());
        pool
    }

    /// The client for OAuth token endpoints (HTTP/1.1, or HTTP/2 where TLS negotiates it).
    pub(crate) fn token_client(&self) -> &reqwest::Client {
        &self.inner.token_client
    }
}

/// An HTTP answer: status, `Retry-After`, body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) body: Bytes,
}

/// Round-robin over the clients (each with one HTTP/2 connection) of one pool key.
#[derive(Clone)]
pub(crate) struct Http2Pool {
    clients: Arc<Vec<Client<HttpsConnector<HttpConnector>, Full<Bytes>>>>,
    next: Arc<AtomicUsize>,
    request_timeout: Duration,
}

impl Http2Pool {
    /// POSTs `body` to `uri`; a failure without an HTTP answer is the retryable response of
    /// §6.3's last row (`TIMEOUT`, `CONNECTION_ERROR`, `TRANSPORT_ERROR`).
    pub(crate) async fn post(&self, uri: Uri, headers: HeaderMap, body: Bytes) -> Result<Answer, ProviderResponse> {
        let client = &self.clients[self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len()];
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        let exchange = async {
            let answer = client.request(request).await.map_err(|e| {
                let reason = if e.is_connect() {
                    "CONNECTION_ERROR"
                } else {
                    "TRANSPORT_ERROR"
                };
                ProviderResponse {
                    http_status: None,
                    reason: reason.into(),
                }
            })?;
            let status = answer.status().as_u16();
            let retry_after = retry_after(answer.headers());
            let body = Limited::new(answer.into_body(), ANSWER_LIMIT)
                .collect()
                .await
                .map_err(|_| ProviderResponse {
                    http_status: None,
                    reason: "TRANSPORT_ERROR".into(),
                })?
                .to_bytes();
            Ok(Answer {
                status,
                retry_after,
                body,
            })
        };
        tokio::time::timeout(self.request_timeout, exchange)
            .await
            .unwrap_or_else(|_| {
                Err(ProviderResponse {
                    http_status: None,
                    reason: "TIMEOUT".into(),
                })
            })
    }
}

/// The origin part of a URL (`scheme://host:port`), the unit of connection sharing.
pub(crate) fn origin(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => u.origin().ascii_serialization(),
        Err(_) => url.to_owned(),
    }
}

/// A token request that got no HTTP answer: retryable (§6.3 last row).
pub(crate) fn transport_failure(error: &reqwest::Error) -> ProviderResponse {
    let reason = if error.is_timeout() {
        "TIMEOUT"
    } else if error.is_connect() {
        "CONNECTION_ERROR"
    } else {
        "TRANSPORT_ERROR"
    };
    ProviderResponse {
        http_status: None,
        reason: reason.into(),
    }
}

/// `Retry-After` of an answer, if any and readable.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    crate::outcome::parse_retry_after(value, std::time::SystemTime::now())
}

/// Current Unix time.
pub(crate) fn unix_now() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}
