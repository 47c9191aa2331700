//! HTTP machinery shared by the provider clients: pooled HTTP/2 clients per origin (so that every
//! application pointing at the same provider shares connections and multiplexes its streams on
//! them), and a plain client for OAuth token endpoints (management-api.md §6.5).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::outcome::ProviderResponse;

/// Timeouts and pool shape of the provider connections.
#[derive(Debug, Clone)]
pub struct TransportSettings {
    /// TCP + TLS connect timeout (§6.3: 10 s).
    pub connect_timeout: Duration,
    /// Whole-request timeout (§6.3: 30 s).
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

/// Shared connection pools of the provider clients. Cheap to clone; create one per process and
/// build every [`ApnsClient`](crate::ApnsClient) and [`FcmClient`](crate::FcmClient) from it.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<TransportInner>,
}

struct TransportInner {
    settings: TransportSettings,
    pools: Mutex<HashMap<String, Http2Pool>>,
    token_client: reqwest::Client,
}

impl Transport {
    /// A transport with the given settings. Fails only if the TLS backend cannot be set up.
    pub fn new(settings: TransportSettings) -> Result<Self, reqwest::Error> {
        let token_client = base_builder(&settings).build()?;
        Ok(Transport {
            inner: Arc::new(TransportInner {
                settings,
                pools: Mutex::new(HashMap::new()),
                token_client,
            }),
        })
    }

    /// The HTTP/2 pool for `key` (an origin, plus a partition where the provider needs one),
    /// created on first use. `https` URLs negotiate `h2` by ALPN, `http` URLs speak h2c with prior
    /// knowledge: the same client handles both.
    pub(crate) fn http2_pool(&self, key: &str) -> Result<Http2Pool, reqwest::Error> {
        let mut pools = self.inner.pools.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pool) = pools.get(key) {
            return Ok(pool.clone());
        }
        let settings = &self.inner.settings;
        let clients = (0..settings.connections_per_origin.max(1))
            .map(|_| {
                base_builder(settings)
                    .http2_prior_knowledge()
                    .http2_keep_alive_interval(Some(Duration::from_secs(60)))
                    .http2_keep_alive_timeout(Duration::from_secs(20))
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let pool = Http2Pool {
            clients: Arc::new(clients),
            next: Arc::new(AtomicUsize::new(0)),
        };
        pools.insert(key.to_owned(), pool.clone());
        Ok(pool)
    }

    /// The client for OAuth token endpoints (HTTP/1.1, or HTTP/2 where TLS negotiates it).
    pub(crate) fn token_client(&self) -> &reqwest::Client {
        &self.inner.token_client
    }
}

fn base_builder(settings: &TransportSettings) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(settings.connect_timeout)
        .timeout(settings.request_timeout)
        // A redirect would carry a bearer credential to another host; providers never redirect.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("roster/", env!("CARGO_PKG_VERSION")))
}

/// Round-robin over the clients (each with one HTTP/2 connection) of one pool key.
#[derive(Clone)]
pub(crate) struct Http2Pool {
    clients: Arc<Vec<reqwest::Client>>,
    next: Arc<AtomicUsize>,
}

impl Http2Pool {
    pub(crate) fn client(&self) -> &reqwest::Client {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.clients.len();
        &self.clients[i]
    }
}

/// The origin part of a URL (`scheme://host:port`), the unit of connection sharing.
pub(crate) fn origin(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => u.origin().ascii_serialization(),
        Err(_) => url.to_owned(),
    }
}

/// A request that got no HTTP answer: retryable (§6.3 last row).
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
pub(crate) fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let value = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?;
    crate::outcome::parse_retry_after(value, std::time::SystemTime::now())
}

/// Current Unix time in seconds and milliseconds.
pub(crate) fn unix_now() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}
