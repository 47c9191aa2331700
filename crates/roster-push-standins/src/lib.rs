//! Loopback stand-ins for the push providers, speaking their real protocols so that Roster's
//! provider clients, the delivery workers and the benchmarks can be exercised end to end without
//! the internet:
//!
//! - [`ApnsStandIn`]: APNs over h2c. Verifies the ES256 provider token against a configured public
//!   key (`kid`, `iss`, age), `apns-topic`, `apns-push-type`/`apns-priority`, `apns-id`,
//!   `apns-expiration` and the payload shape Roster sends; answers 200, 400 `BadDeviceToken`, 410
//!   `Unregistered`, 429 with `Retry-After`, 500, 403 `ExpiredProviderToken`, ... as a test
//!   scripts it per device token.
//! - [`FcmStandIn`]: a token endpoint that verifies the RS256 JWT-bearer assertion and issues
//!   short-lived access tokens, and `messages:send` over h2c that requires one and checks the
//!   data-only message; scriptable per registration token (200, 404 `UNREGISTERED`, 400
//!   `INVALID_ARGUMENT`, 401 expired token, 429, 500, ...).
//!
//! - [`HmsStandIn`]: Huawei Push Kit: a client-credentials token endpoint and `messages:send`
//!   over h2c checking the bearer and the message; scriptable per token (`80000000`, `80100000`
//!   with the token illegal, `80300007`, `80200003` expired token, ...).
//!
//! All count connections, requests and answers per status, and optionally record every request.
//! They are built for the fan-out benchmark too: handlers are synchronous and lock-free on the
//! common path (verified tokens are cached, scripts cost nothing until one is set), and recording
//! can be turned off. Test keys and identities are in [`fixtures`].
//!
//! This crate does not depend on the clients it tests: it checks the wire, not our code.

pub mod apns;
pub mod fcm;
pub mod fixtures;
pub mod hms;
mod server;
mod shape;

pub use apns::{ApnsAnswer, ApnsRequest, ApnsStandIn, ApnsStandInConfig, ApnsStats};
pub use fcm::{FcmAnswer, FcmRequest, FcmStandIn, FcmStandInConfig, FcmStats};
pub use hms::{HmsAnswer, HmsRequest, HmsStandIn, HmsStandInConfig, HmsStats};
