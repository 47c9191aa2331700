//! Roster's push provider layer: everything between "deliver this message to this device token"
//! and the provider's answer (management-api.md §6).
//!
//! - [`ApnsCredentials`] / [`FcmCredentials`] / [`HmsCredentials`] parse and syntax-check the provider settings of an
//!   application (§7.1 write shapes) into values that are ready to sign; every bad member is
//!   reported with its path, for a `400`. Secrets never appear in `Debug`.
//! - [`PushMessage`] / [`PushContent`] are what is sent; [`payload`] renders the exact bytes of
//!   §6.4 for APNs, FCM and HMS, and [`payload::payload_sizes`] gives the sizes the §5.1 4096-byte
//!   check needs.
//! - [`ApnsClient`] (ES256 provider token, regenerated every 50 minutes or when APNs calls it
//!   expired) and [`FcmClient`] (RS256 JWT-bearer assertion exchanged for an access token, cached
//!   until shortly before expiry, single-flight refresh) and [`HmsClient`] (client-credentials
//!   token, same cache) each make one delivery attempt per `send` and return a [`SendReport`]: the [`Outcome`] of §6.3 and the `providerResponse` to store.
//! - [`retry`] holds the §6.5 policy as pure functions: [`retry::backoff`], the attempt limit
//!   and the expiry rule.
//!
//! Connections: a [`Transport`] owns the HTTP/2 connection pools, one per provider origin (APNs:
//! per origin and team), shared by every client built from it. `https` base URLs negotiate `h2`
//! through ALPN, `http` base URLs (test stand-ins) speak h2c with prior knowledge; many concurrent
//! sends are multiplexed as streams on one connection (hyper's pooled client over rustls with the
//! system verifier; reqwest only for the rare token requests). Connect timeout 10 s, request
//! timeout 30 s. `examples/push_throughput.rs` measures pushes per second into the stand-ins.
//!
//! What this crate does not do: the durable queue, workers, store updates and token hygiene are
//! the caller's. A worker claims a due delivery, checks [`retry::is_expired`], calls `send`, and
//! maps the outcome: `Accepted` → `ACCEPTED`; `Unregistered` → `UNREGISTERED` and compare-and-clear
//! of the token; `Rejected` → `REJECTED`; `Failed` → `FAILED` plus provider status `ERROR` with
//! `lastError`; `Retry` → [`retry::after_retryable`].
//!
//! The loopback stand-ins that tests and benchmarks point these clients at live in the sibling
//! crate `roster-push-standins`.

pub mod apns;
pub mod credentials;
pub mod fcm;
pub mod hms;
pub mod message;
mod oauth;
pub mod outcome;
pub mod payload;
pub mod retry;
pub mod transport;

pub use apns::ApnsClient;
pub use credentials::{ApnsCredentials, ApnsEnvironment, CredentialError, FcmCredentials, FieldError, HmsCredentials};
pub use fcm::FcmClient;
pub use hms::HmsClient;
pub use message::{ContentKind, Millis, PushContent, PushMessage};
pub use outcome::{Outcome, ProviderResponse, SendReport};
pub use transport::{Transport, TransportError, TransportSettings};

/// Any of the three provider clients, for callers that deliver to all of them alike.
#[derive(Clone)]
pub enum ProviderClient {
    /// Apple Push Notification service.
    Apns(ApnsClient),
    /// Firebase Cloud Messaging (`Firebase` and `GCM` installations).
    Fcm(FcmClient),
    /// Huawei Push Kit.
    Hms(HmsClient),
}

impl ProviderClient {
    /// Sends `message` to one device: one delivery attempt of the wrapped client.
    pub async fn send(&self, message: &PushMessage, delivery_id: uuid::Uuid, device_token: &str) -> SendReport {
        match self {
            ProviderClient::Apns(client) => client.send(message, delivery_id, device_token).await,
            ProviderClient::Fcm(client) => client.send(message, delivery_id, device_token).await,
            ProviderClient::Hms(client) => client.send(message, delivery_id, device_token).await,
        }
    }
}

impl From<ApnsClient> for ProviderClient {
    fn from(client: ApnsClient) -> Self {
        ProviderClient::Apns(client)
    }
}

impl From<FcmClient> for ProviderClient {
    fn from(client: FcmClient) -> Self {
        ProviderClient::Fcm(client)
    }
}

impl From<HmsClient> for ProviderClient {
    fn from(client: HmsClient) -> Self {
        ProviderClient::Hms(client)
    }
}
