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
//! # Example
//!
//! A runnable example: it starts a Roster server in the process (the hidden lines, as the
//! crate's own tests do) and acts as one device against it. In an app, the application code,
//! the server's URL and the storage directory come from its configuration.
//!
//! ```
//! use roster_client::{
//!     Config, FieldChange, PersonalizeOptions, PushRegistration, PushServiceType, RosterClient,
//!     SaveOutcome, SystemInfo, UserAttributes, UserChanges, UserIdentity,
//! };
//!
//! # /// A Roster server on a free local port over a SQLite file in a temporary directory, with
//! # /// one application: the server, its URL, the application code, the directory.
//! # async fn example_server() -> (roster_server::RunningServer, String, String, tempfile::TempDir) {
//! #     let dir = tempfile::tempdir().unwrap();
//! #     let mut settings = roster_server::Settings { data_dir: dir.path().join("server"), ..Default::default() };
//! #     settings.http.listen = "127.0.0.1:0".into();
//! #     let store = roster_server::store::open_store(&settings.store_url()).await.unwrap();
//! #     let server = roster_server::RunningServer::start(&settings, store).await.unwrap();
//! #     let core = server.state.core.clone();
//! #     let account = core.account_or_default(None).await.unwrap();
//! #     let app = core.create_application(account.id, "Example").await.unwrap();
//! #     let url = server.base_url();
//! #     (server, url, app.application_code, dir)
//! # }
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! # let (server, server_url, application_code, dir) = example_server().await;
//! let client = RosterClient::start(Config {
//!     application_code,                            // e.g. "8f2d41c9a7e35b06d1c4f8a29e7b3c50..."
//!     base_url: server_url.parse()?,               // e.g. "https://push.example.com/roster"
//!     storage_dir: dir.path().join("device"),      // e.g. "/var/lib/myapp/roster"
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
//! assert_eq!(user.external_user_id.as_deref(), Some("cust-1001"));
//!
//! // Change the user; offline this is kept and retried.
//! let mut changes = UserChanges { last_name: FieldChange::Set("Horvat".into()), ..Default::default() };
//! changes.set_custom_attribute("tier", "gold");
//! match client.save_user(changes).await? {
//!     SaveOutcome::Reported(user) => println!("saved: {:?}", user.last_name),
//!     SaveOutcome::Queued(why) => println!("kept for later: {why}"),
//! }
//! assert_eq!(client.user().last_name.as_deref(), Some("Horvat"));
//!
//! while let Ok(event) = events.try_recv() {
//!     println!("{event:?}");
//! }
//! client.shutdown().await;
//! # server.stop().await?;
//! # Ok(())
//! # }
//! # fn main() {
//! #     let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
//! #     runtime.block_on(run()).unwrap();
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
