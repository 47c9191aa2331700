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
pub use transport::{Transport, TransportSettings};
