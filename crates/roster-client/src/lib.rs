//! Roster's Rust client SDK: a program acts as one installation of one application against a
//! Roster server, speaking the mobile API exactly as a device does (`spec/client-sdk.md`,
//! `spec/mobile-api.md`).
//!
//! - [`RosterClient::start`] registers the installation (in the background) and keeps its data
//!   and the user's in sync;
//! - saves are persisted locally first and sent as delta PATCHes; a failure that may heal
//!   (network, 5xx, 429, ...) keeps them pending and retries them with exponential backoff, also
//!   across restarts ([`SaveOutcome::Queued`]); a rejection discards them ([`Event::ChangesDiscarded`]);
//! - [`RosterClient::personalize`] and [`RosterClient::depersonalize`] log the user in and out; a
//!   logout that cannot reach the server stays pending until it does ([`SuccessPending::Pending`]);
//! - the state lives in one file in `storage_dir`, replaced atomically on every change, so a crash
//!   at any instant loses nothing a call accepted; [`PrivacySettings`] keep personal data off disk;
//! - [`RosterClient::subscribe`] delivers [`Event`]s.
//!
//! The SDK does not receive pushes: the host obtains a push token from its platform and hands it
//! over ([`Config::push`], [`RosterClient::set_push_token`]).
//!
//! # Choices where the spec leaves room
//!
//! - [`RosterClient::sync_now`] resolves `Err(error)` when the pass stopped on a retryable failure
//!   (what is still pending is in [`RosterClient::pending`]), `Ok(pending)` when it finished.
//! - A call answered `NO_REGISTRATION` makes the new registration before it returns
//!   `Err(RegistrationLost)`, so the events of §11 have been emitted by then.
//! - The one-second spacing between passes also holds for the retry timer; a direct network
//!   call (fetch, personalize, depersonalize, remote operations) issued while saves wait for
//!   their pass runs that pass first, so commands reach the server in the order they were issued.
//! - [`Config::push`] set replaces the stored token; `None` keeps a token stored earlier by
//!   [`RosterClient::set_push_token`]. The desired token is stored next to the deltas.
//! - A change equal to the confirmed value is dropped only when the confirmed value is known:
//!   not for a user never fetched, nor for personal installation fields that
//!   `user_data_persisting_disabled` kept off disk.
//! - "Delete every custom attribute, then set some" becomes explicit deletions of the known keys
//!   plus the new values (a PATCH body cannot say both).
//! - [`RosterError::Validation`] names the JSON path the server would name (`emails[1].address`,
//!   `customAttributes.tier`, `userIdentity.phones[0].number`).
//!
//! ```no_run
//! use roster_client::{
//!     Config, FieldChange, PersonalizeOptions, PushRegistration, PushServiceType, RosterClient,
//!     SaveOutcome, SystemInfo, UserAttributes, UserChanges, UserIdentity,
//! };
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = RosterClient::start(Config {
//!     application_code: "8f2d41c9a7e35b06d1c4f8a29e7b3c50a6d9f1e24b8c7a3d05e6f19b2c4d8a71".into(),
//!     base_url: "https://push.example.com/roster".parse()?,
//!     storage_dir: "/var/lib/myapp/roster".into(),
//!     push: Some(PushRegistration { service_type: PushServiceType::Apns, token: "0b30557a".into() }),
//!     system_info: SystemInfo { app_version: Some("3.2.1".into()), ..SystemInfo::detect() },
//!     ..Config::default()
//! })
//! .await?;
//!
//! let mut events = client.subscribe();
//!
//! // Log in, with a few attributes.
//! let user = client
//!     .personalize(
//!         UserIdentity::external("cust-1001"),
//!         Some(UserAttributes { first_name: Some("Ana".into()), ..Default::default() }),
//!         PersonalizeOptions { set_device_as_primary: true, ..Default::default() },
//!     )
//!     .await?;
//! println!("logged in as {:?} ({:?})", user.external_user_id, user.user_type);
//!
//! // Change the user; offline this is kept and retried.
//! let mut changes = UserChanges { last_name: FieldChange::Set("Horvat".into()), ..Default::default() };
//! changes.set_custom_attribute("tier", "gold");
//! match client.save_user(changes).await? {
//!     SaveOutcome::Reported(user) => println!("saved: {:?}", user.last_name),
//!     SaveOutcome::Queued(why) => println!("kept for later: {why}"),
//! }
//!
//! while let Ok(event) = events.try_recv() {
//!     println!("{event:?}");
//! }
//! client.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod changes;
mod client;
mod config;
mod engine;
mod error;
mod events;
mod http;
mod json;
mod jwt;
mod state;
mod storage;
mod types;

pub use changes::{AttributeChange, FieldChange, InstallationChanges, UserChanges};
pub use client::RosterClient;
pub use config::{
    Config, HttpSettings, JwtSupplier, PrivacySettings, PushRegistration, RetrySettings, SystemInfo, Url,
};
pub use error::{Result, RosterError};
pub use events::{ChangeTarget, Event, EventReceiver, Operation, RecvError, TryRecvError};
pub use roster_model::{ErrorCode, Gender, PushServiceType};
pub use types::{
    CustomValue, Installation, PendingState, PersonalizeOptions, SaveOutcome, ScalarValue, SuccessPending, User,
    UserAttributes, UserIdentity, UserType,
};
