//! roster-client against the real Roster server (in-process, SQLite in a temp dir).

mod common;

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use common::{TestServer, all_files, next_event, state_file};
use roster_client::{
    ChangeTarget, Config, CustomValue, Event, FieldChange, Gender, InstallationChanges, Operation, PersonalizeOptions,
    PrivacySettings, PushRegistration, PushServiceType, RetrySettings, RosterClient, RosterError, SaveOutcome,
    SuccessPending, UserAttributes, UserChanges, UserIdentity, UserType,
};
use serde_json::json;
use time::macros::{date, datetime};

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn reported<T: std::fmt::Debug>(o: SaveOutcome<T>) -> T {
    match o {
        SaveOutcome::Reported(t) => t,
        SaveOutcome::Queued(e) => panic!("expected Reported, got Queued({e:?})"),
    }
}

fn queued<T: std::fmt::Debug>(o: SaveOutcome<T>) -> RosterError {
    match o {
        SaveOutcome::Queued(e) => e,
        SaveOutcome::Reported(t) => panic!("expected Queued, got Reported({t:?})"),
    }
}

fn own_id(c: &RosterClient) -> String {
    c.installation().push_reg_id.expect("registered")
}

/// Starts a client on `dir`, retrying while the previous engine on it is still shutting down.
async fn start_again(config: Config) -> RosterClient {
    for _ in 0..100 {
        match RosterClient::start(config.clone()).await {
            Ok(c) => return c,
            Err(RosterError::StorageLocked) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("start failed: {e:?}"),
        }
    }
    panic!("the storage lock was never released");
}

// ------------------------------------------------------------------------------------------------
// Registration, token, system data
// ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn registers_without_a_push_token() {
    let server = TestServer::start().await;
    let dir = tempdir();
    let client = RosterClient::start(server.config(dir.path())).await.unwrap();
    let mut events = client.subscribe();
    assert!(client.installation().push_reg_id.is_none());
    assert!(client.pending().registration_pending);

    let pending = client.sync_now().await.unwrap();
    assert!(pending.is_empty(), "{pending:?}");
    let id = own_id(&client);

    match next_event(&mut events).await {
        Event::RegistrationCreated { push_reg_id } => assert_eq!(push_reg_id, id),
        other => panic!("expected RegistrationCreated, got {other:?}"),
    }
    match next_event(&mut events).await {
        Event::InstallationUpdated { installation } => {
            assert_eq!(installation.push_reg_id.as_deref(), Some(id.as_str()));
            assert_eq!(installation.push_service_token, None);
            assert!(installation.reg_enabled);
            assert!(!installation.is_primary);
        }
        other => panic!("expected InstallationUpdated, got {other:?}"),
    }

    let stored = server.installation(&id).await.expect("stored");
    assert_eq!(stored.push_service_token, None);
    assert_eq!(stored.push_service_type, None);
    assert_eq!(stored.system.app_version.as_deref(), Some("3.2.1"));
    assert_eq!(stored.system.device_model.as_deref(), Some("Test Box"));
    assert_eq!(stored.system.sdk_version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
    assert_eq!(stored.system.os.as_deref(), Some("Linux"));
    assert_eq!(stored.system.notifications_enabled, Some(true));
    let tz = stored.system.device_timezone_offset.expect("timezone offset");
    assert!(tz.starts_with("GMT+") || tz.starts_with("GMT-"), "{tz}");

    // The state file holds the registration.
    let state = state_file(dir.path());
    assert_eq!(state["schemaVersion"], 1);
    assert_eq!(state["pushRegId"], json!(id));
    let uiid = state["universalInstallationId"].as_str().unwrap();
    assert_eq!(uiid, uiid.to_lowercase());
    assert!(uuid::Uuid::parse_str(uiid).is_ok());

    // Nothing pending: another pass sends nothing and changes nothing.
    assert!(client.sync_now().await.unwrap().is_empty());
    assert!(events.drain().is_empty());
    client.shutdown().await;
    server.check_invariants().await;
}

#[tokio::test]
async fn registers_with_a_push_token_then_changes_and_clears_it() {
    let server = TestServer::start().await;
    let dir = tempdir();
    let config = Config {
        push: Some(PushRegistration {
            service_type: PushServiceType::Firebase,
            token: "fcm-token-1".into(),
        }),
        ..server.config(dir.path())
    };
    let client = RosterClient::start(config).await.unwrap();
    client.sync_now().await.unwrap();
    let id = own_id(&client);
    let stored = server.installation(&id).await.unwrap();
    assert_eq!(stored.push_service_type, Some(PushServiceType::Firebase));
    assert_eq!(stored.push_service_token.as_deref(), Some("fcm-token-1"));
    assert_eq!(client.installation().push_service_token.as_deref(), Some("fcm-token-1"));

    // APNs tokens are lowercased, as the server stores them.
    let inst = reported(
        client
            .set_push_token(PushRegistration {
                service_type: PushServiceType::Apns,
                token: "0B30557A9FC4".into(),
            })
            .await
            .unwrap(),
    );
    assert_eq!(inst.push_service_type, Some(PushServiceType::Apns));
    assert_eq!(inst.push_service_token.as_deref(), Some("0b30557a9fc4"));
    let stored = server.installation(&id).await.unwrap();
    assert_eq!(stored.push_service_type, Some(PushServiceType::Apns));
    assert_eq!(stored.push_service_token.as_deref(), Some("0b30557a9fc4"));

    let inst = reported(client.clear_push_token().await.unwrap());
    assert_eq!(inst.push_service_token, None);
    assert_eq!(server.installation(&id).await.unwrap().push_service_token, None);
    assert!(client.pending().is_empty());

    // A bad token is rejected locally.
    let e = client
        .set_push_token(PushRegistration {
            service_type: PushServiceType::Hms,
            token: "has space".into(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&e, RosterError::Validation { field, .. } if field == "pushServiceToken"),
        "{e:?}"
    );
    client.shutdown().await;
}

#[tokio::test]
async fn system_info_sending_disabled_clears_reported_fields_once() {
    let server = TestServer::start().await;
    let dir = tempdir();
    let client = server.client(dir.path()).await;
    let id = own_id(&client);
    let stored = server.installation(&id).await.unwrap();
    assert!(stored.system.device_model.is_some());
    assert!(stored.system.language.is_some());
    client.shutdown().await;

    let config = Config {
        privacy: PrivacySettings {
            system_info_sending_disabled: true,
            ..Default::default()
        },
        ..server.config(dir.path())
    };
    let client = RosterClient::start(config).await.unwrap();
    client.sync_now().await.unwrap();
    let s = server.installation(&id).await.unwrap().system;
    assert_eq!(s.device_model, None);
    assert_eq!(s.app_version, None);
    assert_eq!(s.language, None);
    assert_eq!(s.device_timezone_offset, None);
    assert_eq!(s.os.as_deref(), Some("Linux"));
    assert_eq!(s.device_manufacturer.as_deref(), Some("Roster"));
    assert_eq!(s.notifications_enabled, Some(true));
    assert_eq!(state_file(dir.path())["systemData"]["clearPending"], false);
    assert_eq!(client.installation().device_model, None);
    client.shutdown().await;
}

// ------------------------------------------------------------------------------------------------
// Saves
// ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn save_user_sets_clears_and_deletes_and_the_server_confirms() {
    let server = TestServer::start().await;
    let dir = tempdir();
    let client = server.client(dir.path()).await;
    let id = own_id(&client);
    let mut events = client.subscribe();

    let mut changes = UserChanges {
        first_name: FieldChange::Set("Ana".into()),
        last_name: FieldChange::Set("Horvat".into()),
        gender: FieldChange::Set(Gender::Female),
        birthday: FieldChange::Set(date!(1990 - 05 - 17)),
        phones: FieldChange::Set(vec!["+385 91 123 4567".into()]),
        emails: FieldChange::Set(vec!["Ana.Horvat@Example.com".into()]),
        tags: FieldChange::Set(BTreeSet::from(["vip".to_string(), "beta".to_string()])),
        ..Default::default()
    };
    changes
        .set_custom_attribute("tier", "gold")
        .set_custom_attribute("points", 120)
        .set_custom_attribute("newsletter", true)
        .set_custom_attribute("since", date!(2024 - 02 - 29))
        .set_custom_attribute("seen", datetime!(2020-02-26 09:41:57 UTC))
        .set_custom_attribute("looksLikeADate", "2024-01-01x");
    let user = reported(client.save_user(changes).await.unwrap());
    assert_eq!(user.first_name.as_deref(), Some("Ana"));
    assert_eq!(user.phones, vec!["385911234567"]);
    assert_eq!(user.emails, vec!["Ana.Horvat@Example.com"]);
    assert_eq!(user.gender, Some(Gender::Female));
    assert_eq!(user.birthday, Some(date!(1990 - 05 - 17)));
    assert_eq!(user.user_type, Some(UserType::Lead));
    assert_eq!(user.custom_attributes["points"], CustomValue::Decimal(120.0));
    assert_eq!(
        user.custom_attributes["since"],
        CustomValue::Date(date!(2024 - 02 - 29))
    );
    assert_eq!(
        user.custom_attributes["seen"],
        CustomValue::DateTime(datetime!(2020-02-26 09:41:57 UTC))
    );
    assert_eq!(user.installations.len(), 1);
    assert_eq!(user.installations[0].push_reg_id.as_deref(), Some(id.as_str()));
    match next_event(&mut events).await {
        Event::UserUpdated { user: u } => assert_eq!(u, user),
        other => panic!("expected UserUpdated, got {other:?}"),
    }

    let p = server.person_of(&id).await;
    assert_eq!(p.first_name.as_deref(), Some("Ana"));
    assert_eq!(p.last_name.as_deref(), Some("Horvat"));
    assert_eq!(p.birthday.as_deref(), Some("1990-05-17"));
    assert_eq!(p.phones, vec!["385911234567"]);
    assert_eq!(p.tags, BTreeSet::from(["beta".to_string(), "vip".to_string()]));
    assert_eq!(p.custom_attributes["tier"], json!("gold"));
    assert_eq!(p.custom_attributes["points"], json!(120));
    assert_eq!(p.custom_attributes["newsletter"], json!(true));
    assert_eq!(p.custom_attributes["seen"], json!("2020-02-26T09:41:57Z"));

    // Clear, delete, change.
    let mut changes = UserChanges {
        last_name: FieldChange::Clear,
        tags: FieldChange::Clear,
        phones: FieldChange::Set(vec![]),
        ..Default::default()
    };
    changes
        .delete_custom_attribute("tier")
        .set_custom_attribute("points", 121.5);
    let user = reported(client.save_user(changes).await.unwrap());
    assert_eq!(user.last_name, None);
    assert!(user.tags.is_empty());
    assert!(user.phones.is_empty());
    assert!(!user.custom_attributes.contains_key("tier"));
    let p = server.person_of(&id).await;
    assert_eq!(p.last_name, None);
    assert!(p.tags.is_empty());
    assert!(p.phones.is_empty());
    assert_eq!(p.first_name.as_deref(), Some("Ana"), "absent fields are kept");
    assert!(!p.custom_attributes.contains_key("tier"));
    assert_eq!(p.custom_attributes["points"], json!(121.5));
    assert_eq!(p.custom_attributes["newsletter"], json!(true));

    // Delete every custom attribute, then add one in the same change.
    let mut changes = UserChanges::new();
    changes
        .clear_all_custom_attributes()
        .set_custom_attribute("fresh", "yes");
    let user = reported(client.save_user(changes).await.unwrap());
    assert_eq!(user.custom_attributes.len(), 1);
    let p = server.person_of(&id).await;
    assert_eq!(p.custom_attributes.len(), 1, "{:?}", p.custom_attributes);
    assert_eq!(p.custom_attributes["fresh"], json!("yes"));

    // A change that equals the confirmed value sends nothing.
    let user = reported(
        client
            .save_user(UserChanges {
                first_name: FieldChange::Set("Ana".into()),
                ..Default::default()
            })
            .await
            .unwrap(),
    );
    assert_eq!(user.first_name.as_deref(), Some("Ana"));

    // Local validation: nothing stored, nothing sent.
    let before = state_file(dir.path());
    let e = client
        .save_user(UserChanges {
            emails: FieldChange::Set(vec!["ok@example.com".into(), "not an email".into()]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&e, RosterError::Validation { field, .. } if field == "emails[1].address"),
        "{e:?}"
    );
    assert_eq!(state_file(dir.path()), before);
    assert!(client.pending().is_empty());
    client.shutdown().await;
    server.check_invariants().await;
}

#[tokio::test]
async fn a_permanent_rejection_discards_the_changes() {
    let server = TestServer::start().await;
    let (d1, d2) = (tempdir(), tempdir());
    let other = server.client(d1.path()).await;
    other
        .personalize(UserIdentity::external("taken"), None, PersonalizeOptions::default())
        .await
        .unwrap();
    let client = server.client(d2.path()).await;
    let mut events = client.subscribe();
    let e = client
        .save_user(UserChanges {
            external_user_id: FieldChange::Set("taken".into()),
            first_name: FieldChange::Set("Mallory".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(e.is_api("USER_MERGE_INTERRUPTED"), "{e:?}");
    assert!(matches!(e, RosterError::Api { http_status: 409, .. }));
    match next_event(&mut events).await {
        Event::ApiError { operation, error } => {
            assert_eq!(operation, Operation::PatchUser);
            assert!(error.is_api("USER_MERGE_INTERRUPTED"));
        }
        other => panic!("expected ApiError, got {other:?}"),
    }
    match next_event(&mut events).await {
        Event::ChangesDiscarded { target, fields, error } => {
            assert_eq!(target, ChangeTarget::User);
            assert_eq!(fields, vec!["externalUserId", "firstName"]);
            assert!(error.unwrap().is_api("USER_MERGE_INTERRUPTED"));
        }
        other => panic!("expected ChangesDiscarded, got {other:?}"),
    }
    assert!(client.pending().is_empty());
    assert_eq!(client.user().external_user_id, None);
    assert_eq!(client.user().first_name, None);
    // Later changes are not blocked.
    let u = reported(
        client
            .save_user(UserChanges {
                first_name: FieldChange::Set("Bob".into()),
                ..Default::default()
            })
            .await
            .unwrap(),
    );
    assert_eq!(u.first_name.as_deref(), Some("Bob"));
    other.shutdown().await;
    client.shutdown().await;
}

#[tokio::test]
async fn save_installation_and_own_primary() {
    let server = TestServer::start().await;
    let dir = tempdir();
    let client = server.client(dir.path()).await;
    let id = own_id(&client);
    let mut changes = InstallationChanges {
        application_user_id: FieldChange::Set("app-user-1".into()),
        reg_enabled: FieldChange::Set(false),
        ..Default::default()
    };
    changes
        .set_custom_attribute("color", "red")
        .set_custom_attribute("score", 5);
    let inst = reported(client.save_installation(changes).await.unwrap());
    assert_eq!(inst.application_user_id.as_deref(), Some("app-user-1"));
    assert!(!inst.reg_enabled);
    assert_eq!(inst.custom_attributes["color"], CustomValue::from("red"));
    let stored = server.installation(&id).await.unwrap();
    assert_eq!(stored.application_user_id.as_deref(), Some("app-user-1"));
    assert!(!stored.reg_enabled);
    assert_eq!(stored.custom_attributes["score"], json!(5));

    // `Clear` resets regEnabled to true; "" clears applicationUserId, as on the server.
    let mut changes = InstallationChanges {
        reg_enabled: FieldChange::Clear,
        application_user_id: FieldChange::Set(String::new()),
        ..Default::default()
    };
    changes.delete_custom_attribute("color");
    let inst = reported(client.save_installation(changes).await.unwrap());
    assert!(inst.reg_enabled);
    assert_eq!(inst.application_user_id, None);
    let stored = server.installation(&id).await.unwrap();
    assert!(stored.reg_enabled);
    assert_eq!(stored.application_user_id, None);
    assert!(!stored.custom_attributes.contains_key("color"));

    // The own id: a normal installation save.
    let r = client.set_installation_as_primary(&id, true).await.unwrap();
    assert!(r.is_reported());
    assert!(client.installation().is_primary);
    assert!(server.installation(&id).await.unwrap().is_primary);

    let e = client
        .save_installation(InstallationChanges {
            application_user_id: FieldChange::Set("u".repeat(257)),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(&e, RosterError::Validation { field, .. } if field == "applicationUserId"));

    let fetched = client.fetch_installation().await.unwrap();
    assert_eq!(fetched, client.installation());
    assert!(fetched.is_primary);
    client.shutdown().await;
}

// ------------------------------------------------------------------------------------------------
// Personalize
// ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn personalize_with_the_three_flags() {
    let server = TestServer::start().await;
    let dir = tempdir();
    let client = server.client(dir.path()).await;
    let id = own_id(&client);
    let mut events = client.subscribe();

    // keepAsLead
    let user = client
        .personalize(
            UserIdentity {
                external_user_id: Some("cust-1".into()),
                emails: vec!["ana@example.com".into()],
                ..Default::default()
            },
            Some(UserAttributes {
                first_name: Some("Ana".into()),
                tags: BTreeSet::from(["vip".to_string()]),
                custom_attributes: [("tier".to_string(), CustomValue::from("gold"))].into_iter().collect(),
                ..Default::default()
            }),
            PersonalizeOptions {
                keep_as_lead: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(user.external_user_id.as_deref(), Some("cust-1"));
    assert_eq!(user.user_type, Some(UserType::Lead));
    assert_eq!(user.first_name.as_deref(), Some("Ana"));
    match next_event(&mut events).await {
        Event::Personalized { user: u } => assert_eq!(u, user),
        other => panic!("expected Personalized, got {other:?}"),
    }
    let p = server.person_of(&id).await;
    assert_eq!(p.external_user_id.as_deref(), Some("cust-1"));
    assert_eq!(p.person_type, roster_model::PersonType::Lead);
    assert_eq!(p.custom_attributes["tier"], json!("gold"));

    // Repeating the login without keepAsLead promotes; setDeviceAsPrimary makes this primary.
    let user = client
        .personalize(
            UserIdentity::external("cust-1"),
            None,
            PersonalizeOptions {
                set_device_as_primary: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(user.user_type, Some(UserType::Customer));
    assert!(user.installations.iter().any(|i| i.is_primary));
    assert!(client.installation().is_primary);
    match next_event(&mut events).await {
        Event::Personalized { .. } => {}
        other => panic!("expected Personalized, got {other:?}"),
    }
    match next_event(&mut events).await {
        Event::InstallationUpdated { installation } => assert!(installation.is_primary),
        other => panic!("expected InstallationUpdated, got {other:?}"),
    }
    assert!(server.installation(&id).await.unwrap().is_primary);
    assert_eq!(
        server.person_of(&id).await.person_type,
        roster_model::PersonType::Customer
    );

    // Somebody else without force: refused, nothing changes locally.
    let e = client
        .personalize(UserIdentity::external("cust-2"), None, PersonalizeOptions::default())
        .await
        .unwrap_err();
    assert!(e.is_api("PERSONALIZATION_IMPOSSIBLE"), "{e:?}");
    assert_eq!(client.user().external_user_id.as_deref(), Some("cust-1"));
    match next_event(&mut events).await {
        Event::ApiError { operation, .. } => assert_eq!(operation, Operation::Personalize),
        other => panic!("expected ApiError, got {other:?}"),
    }

    // With force: the installation switches person; the server depersonalized it first, so it is
    // no longer primary and the old person keeps its data.
    let user = client
        .personalize(
            UserIdentity::external("cust-2"),
            None,
            PersonalizeOptions {
                force_depersonalize: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(user.external_user_id.as_deref(), Some("cust-2"));
    assert_eq!(user.first_name, None);
    assert!(!client.installation().is_primary);
    assert_eq!(server.person_of(&id).await.external_user_id.as_deref(), Some("cust-2"));
    let old = server.person_by_external_id("cust-1").await.unwrap();
    assert_eq!(old.first_name.as_deref(), Some("Ana"));

    // Validation happens before anything is sent.
    let e = client
        .personalize(UserIdentity::default(), None, PersonalizeOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(&e, RosterError::Validation { field, .. } if field == "userIdentity"));
    let e = client
        .personalize(
            UserIdentity {
                phones: vec!["0044".into()],
                ..Default::default()
            },
            None,
            PersonalizeOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, RosterError::Validation { field, .. } if field == "userIdentity.phones[0].number"),
        "{e:?}"
    );
    client.shutdown().await;
    server.check_invariants().await;
}

#[tokio::test]
async fn forced_personalize_discards_pending_user_changes() {
    let mut server = TestServer::start().await;
    let dir = tempdir();
    let config = Config {
        // No automatic retry during the test: the queued change must wait for the personalize.
        retry: RetrySettings {
            initial: Duration::from_secs(600),
            max: Duration::from_secs(600),
        },
        ..server.config(dir.path())
    };
    let client = RosterClient::start(config).await.unwrap();
    client.sync_now().await.unwrap();
    let id = own_id(&client);
    client
        .personalize(UserIdentity::external("first"), None, PersonalizeOptions::default())
        .await
        .unwrap();

    server.stop().await;
    let e = queued(
        client
            .save_user(UserChanges {
                last_name: FieldChange::Set("ForFirst".into()),
                ..Default::default()
            })
            .await
            .unwrap(),
    );
    assert!(matches!(e, RosterError::Network(_)), "{e:?}");
    assert_eq!(client.pending().user_fields, vec!["lastName"]);
    server.restart().await;

    let mut events = client.subscribe();
    let user = client
        .personalize(
            UserIdentity::external("second"),
            None,
            PersonalizeOptions {
                force_depersonalize: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(user.external_user_id.as_deref(), Some("second"));
    assert_eq!(user.last_name, None);
    match next_event(&mut events).await {
        Event::ChangesDiscarded { target, fields, error } => {
            assert_eq!(target, ChangeTarget::User);
            assert_eq!(fields, vec!["lastName"]);
            assert!(error.is_none());
        }
        other => panic!("expected ChangesDiscarded, got {other:?}"),
    }
    assert!(matches!(next_event(&mut events).await, Event::Personalized { .. }));
    assert!(client.pending().user_fields.is_empty());
    assert_eq!(server.person_of(&id).await.last_name, None);
    assert_eq!(server.person_by_external_id("first").await.unwrap().last_name, None);
    client.shutdown().await;
}

#[tokio::test]
async fn pending_user_changes_are_sent_before_a_personalize() {
    let mut server = TestServer::start().await;
    let dir = tempdir();
    let config = Config {
        retry: RetrySettings {
            initial: Duration::from_secs(600),
            max: Duration::from_secs(600),
        },
        ..server.config(dir.path())
    };
    let client = RosterClient::start(config).await.unwrap();
    client.sync_now().await.unwrap();
    let id = own_id(&client);
    server.stop().await;
    queued(
        client
            .save_user(UserChanges {
                first_name: FieldChange::Set("Before".into()),
                ..Default::default()
            })
            .await
            .unwrap(),
    );
    server.restart().await;
    let user = client
        .personalize(UserIdentity::external("p-1"), None, PersonalizeOptions::default())
        .await
        .unwrap();
    assert_eq!(user.first_name.as_deref(), Some("Before"));
    let p = server.person_of(&id).await;
    assert_eq!(p.first_name.as_deref(), Some("Before"));
    assert_eq!(p.external_user_id.as_deref(), Some("p-1"));
    client.shutdown().await;
}

#[tokio::test]
async fn fetch_shows_the_other_installations_of_the_user() {
    let server = TestServer::start().await;
    let (d1, d2) = (tempdir(), tempdir());
    let a = server.client(d1.path()).await;
    let b = server.client(d2.path()).await;
    let ident = || UserIdentity::external("cust-f");
    a.personalize(ident(), None, PersonalizeOptions::default())
        .await
        .unwrap();
    b.personalize(ident(), None, PersonalizeOptions::default())
        .await
        .unwrap();
    let mut events = a.subscribe();
    let user = a.fetch_user().await.unwrap();
    assert_eq!(user.installations.len(), 2);
    let (a_id, b_id) = (own_id(&a), own_id(&b));
    let own = user
        .installations
        .iter()
        .find(|i| i.push_reg_id.as_deref() == Some(a_id.as_str()))
        .unwrap();
    let other = user
        .installations
        .iter()
        .find(|i| i.push_reg_id.as_deref() == Some(b_id.as_str()))
        .unwrap();
    assert_eq!(other.push_service_token, None);
    assert_eq!(own.os.as_deref(), Some("Linux"));
    assert!(matches!(next_event(&mut events).await, Event::UserUpdated { user: u } if u.installations.len() == 2));
    // A second fetch changes nothing and emits nothing.
    a.fetch_user().await.unwrap();
    assert!(events.drain().is_empty());
    assert_eq!(a.user(), user);
    a.shutdown().await;
    b.shutdown().await;
}

// ------------------------------------------------------------------------------------------------
// Offline, restarts, depersonalize
// ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn offline_changes_survive_restarts_and_reach_the_server_in_order() {
    let mut server = TestServer::start().await;
    let dir = tempdir();
    let client = server.client(dir.path()).await;
    let id = own_id(&client);
    client
        .personalize(
            UserIdentity::external("cust-o"),
            Some(UserAttributes {
                first_name: Some("Ana".into()),
                ..Default::default()
            }),
            PersonalizeOptions::default(),
        )
        .await
        .unwrap();

    // Offline: saves succeed locally and are queued.
    server.stop().await;
    let mut changes = UserChanges {
        last_name: FieldChange::Set("Offline".into()),
        ..Default::default()
    };
    changes.set_custom_attribute("visits", 3);
    let e = queued(client.save_user(changes).await.unwrap());
    assert!(matches!(e, RosterError::Network(_)), "{e:?}");
    let e = queued(
        client
            .save_installation(InstallationChanges {
                application_user_id: FieldChange::Set("offline-app-user".into()),
                ..Default::default()
            })
            .await
            .unwrap(),
    );
    assert!(matches!(e, RosterError::Network(_)), "{e:?}");
    let pending = client.pending();
    assert_eq!(pending.user_fields, vec!["lastName", "customAttributes.visits"]);
    assert_eq!(pending.installation_fields, vec!["applicationUserId"]);
    assert!(pending.next_retry_at.is_some());
    assert_eq!(client.user().last_name.as_deref(), Some("Offline"));
    assert!(matches!(client.sync_now().await, Err(RosterError::Network(_))));

    // Process restart 1: every handle dropped (no shutdown).
    let config = server.config(dir.path());
    drop(client);
    let client = start_again(config.clone()).await;
    assert_eq!(
        client.pending().user_fields,
        vec!["lastName", "customAttributes.visits"]
    );
    assert_eq!(client.pending().installation_fields, vec!["applicationUserId"]);
    assert_eq!(client.user().last_name.as_deref(), Some("Offline"));
    assert_eq!(client.user().external_user_id.as_deref(), Some("cust-o"));
    assert_eq!(
        client.installation().application_user_id.as_deref(),
        Some("offline-app-user")
    );

    // Back online, same data dir and port.
    server.restart().await;
    let pending = client.sync_now().await.unwrap();
    assert!(pending.is_empty(), "{pending:?}");
    let p = server.person_of(&id).await;
    assert_eq!(p.external_user_id.as_deref(), Some("cust-o"));
    assert_eq!(p.first_name.as_deref(), Some("Ana"));
    assert_eq!(p.last_name.as_deref(), Some("Offline"));
    assert_eq!(p.custom_attributes["visits"], json!(3));
    assert_eq!(
        server.installation(&id).await.unwrap().application_user_id.as_deref(),
        Some("offline-app-user")
    );

    // Offline logout: pending; what it blocks; installation saves are queued behind it.
    server.stop().await;
    let mut events = client.subscribe();
    assert_eq!(client.depersonalize().await.unwrap(), SuccessPending::Pending);
    assert!(client.pending().depersonalize_pending);
    assert_eq!(client.user(), roster_client::User::default());
    assert_eq!(client.installation().application_user_id, None);
    assert!(matches!(
        next_event(&mut events).await,
        Event::ApiError {
            operation: Operation::Depersonalize,
            ..
        }
    ));
    for e in [
        client.save_user(UserChanges::default()).await.unwrap_err(),
        client.fetch_user().await.unwrap_err(),
        client.fetch_installation().await.unwrap_err(),
        client
            .depersonalize_installation(&uuid::Uuid::new_v4().to_string())
            .await
            .unwrap_err(),
    ] {
        assert!(matches!(e, RosterError::DepersonalizationPending), "{e:?}");
    }
    let mut changes = InstallationChanges::new();
    changes.set_custom_attribute("afterLogout", true);
    queued(client.save_installation(changes).await.unwrap());
    assert_eq!(client.depersonalize().await.unwrap(), SuccessPending::Pending);

    // Process restart 2: shutdown, then a new client on the same storage.
    client.shutdown().await;
    assert!(matches!(client.fetch_installation().await, Err(RosterError::Shutdown)));
    let client = RosterClient::start(config).await.unwrap();
    let mut events = client.subscribe();
    assert!(client.pending().depersonalize_pending);
    assert_eq!(
        client.pending().installation_fields,
        vec!["customAttributes.afterLogout"]
    );

    server.restart().await;
    let pending = client.sync_now().await;
    let pending = match pending {
        Ok(p) => p,
        // The pass started at `start` may have run before the server was back.
        Err(_) => client.sync_now().await.unwrap(),
    };
    assert!(pending.is_empty(), "{pending:?}");
    let mut saw_depersonalized = false;
    for e in events.drain() {
        if matches!(e, Event::Depersonalized) {
            saw_depersonalized = true;
        }
    }
    assert!(saw_depersonalized);

    // The logout reached the server before the installation PATCH (a depersonalize clears the
    // installation's custom attributes, so the order shows in the result).
    let p = server.person_of(&id).await;
    assert_eq!(
        p.external_user_id, None,
        "the installation belongs to an anonymous person now"
    );
    let inst = server.installation(&id).await.unwrap();
    assert_eq!(inst.custom_attributes.get("afterLogout"), Some(&json!(true)));
    assert_eq!(inst.application_user_id, None);
    let old = server.person_by_external_id("cust-o").await.unwrap();
    assert_eq!(old.last_name.as_deref(), Some("Offline"));
    assert_eq!(client.fetch_user().await.unwrap().external_user_id, None);
    client.shutdown().await;
    server.check_invariants().await;
}

#[tokio::test]
async fn depersonalize_online_and_without_registration() {
    let mut server = TestServer::start().await;
    let dir = tempdir();
    let client = server.client(dir.path()).await;
    let id = own_id(&client);
    client
        .personalize(
            UserIdentity::external("cust-d"),
            None,
            PersonalizeOptions {
                set_device_as_primary: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut events = client.subscribe();
    assert_eq!(client.depersonalize().await.unwrap(), SuccessPending::Success);
    assert!(matches!(next_event(&mut events).await, Event::Depersonalized));
    assert!(!client.installation().is_primary);
    assert!(!client.pending().depersonalize_pending);
    assert_eq!(server.person_of(&id).await.external_user_id, None);
    client.shutdown().await;

    // A client that never registered: nothing to tell the server.
    server.stop().await;
    let dir2 = tempdir();
    let lonely = RosterClient::start(server.config(dir2.path())).await.unwrap();
    let mut events = lonely.subscribe();
    assert_eq!(lonely.depersonalize().await.unwrap(), SuccessPending::Success);
    assert!(matches!(next_event(&mut events).await, Event::Depersonalized));
    assert!(!lonely.pending().depersonalize_pending);
    lonely.shutdown().await;
}

// ------------------------------------------------------------------------------------------------
// Privacy
// ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn user_data_persisting_disabled_leaves_no_personal_data_on_disk() {
    let mut server = TestServer::start().await;
    let dir = tempdir();
    let config = Config {
        privacy: PrivacySettings {
            user_data_persisting_disabled: true,
            ..Default::default()
        },
        ..server.config(dir.path())
    };
    let client = RosterClient::start(config.clone()).await.unwrap();
    client.sync_now().await.unwrap();
    let id = own_id(&client);
    let secrets = [
        "secret-ext-id",
        "secret.person@example.com",
        "Zelda",
        "secret-app-user",
        "hidden-value",
        "385998887766",
        "Known",
    ];
    client
        .personalize(
            UserIdentity {
                external_user_id: Some("secret-ext-id".into()),
                emails: vec!["secret.person@example.com".into()],
                phones: vec!["+385 99 888 7766".into()],
            },
            Some(UserAttributes {
                first_name: Some("Zelda".into()),
                ..Default::default()
            }),
            PersonalizeOptions::default(),
        )
        .await
        .unwrap();
    let mut changes = InstallationChanges {
        application_user_id: FieldChange::Set("secret-app-user".into()),
        ..Default::default()
    };
    changes.set_custom_attribute("secretAttr", "hidden-value");
    reported(client.save_installation(changes).await.unwrap());
    assert_eq!(client.user().first_name.as_deref(), Some("Zelda"));

    let on_disk = all_files(dir.path());
    for s in secrets {
        assert!(!on_disk.contains(s), "{s:?} found on disk:\n{on_disk}");
    }
    assert!(on_disk.contains(&id), "the registration is kept");

    // Restart: the user is unknown until fetched.
    client.shutdown().await;
    let client = RosterClient::start(config.clone()).await.unwrap();
    assert_eq!(client.installation().push_reg_id.as_deref(), Some(id.as_str()));
    assert_eq!(client.user().external_user_id, None);
    assert_eq!(client.installation().application_user_id, None);
    // Unknown personal fields are still changed on the server (not taken for no-ops).
    let mut changes = InstallationChanges::new();
    changes.delete_custom_attribute("secretAttr");
    reported(client.save_installation(changes).await.unwrap());
    assert!(server.installation(&id).await.unwrap().custom_attributes.is_empty());
    reported(
        client
            .save_user(UserChanges {
                middle_name: FieldChange::Clear,
                last_name: FieldChange::Set("Known".into()),
                ..Default::default()
            })
            .await
            .unwrap(),
    );
    let user = client.fetch_user().await.unwrap();
    assert_eq!(user.external_user_id.as_deref(), Some("secret-ext-id"));
    assert_eq!(user.last_name.as_deref(), Some("Known"));
    let on_disk = all_files(dir.path());
    for s in secrets {
        assert!(!on_disk.contains(s), "{s:?} found on disk after fetch");
    }

    // Offline user changes live in memory only (lost at restart), but a pending logout survives.
    server.stop().await;
    queued(
        client
            .save_user(UserChanges {
                last_name: FieldChange::Set("NeverOnDisk".into()),
                ..Default::default()
            })
            .await
            .unwrap(),
    );
    assert!(!all_files(dir.path()).contains("NeverOnDisk"));
    assert_eq!(client.depersonalize().await.unwrap(), SuccessPending::Pending);
    client.shutdown().await;
    let client = RosterClient::start(config).await.unwrap();
    assert!(client.pending().depersonalize_pending);
    assert!(client.pending().user_fields.is_empty());
    server.restart().await;
    let pending = match client.sync_now().await {
        Ok(p) => p,
        Err(_) => client.sync_now().await.unwrap(),
    };
    assert!(pending.is_empty(), "{pending:?}");
    assert_eq!(server.person_of(&id).await.external_user_id, None);
    client.shutdown().await;
}

#[tokio::test]
async fn switching_persistence_off_removes_personal_data_already_on_disk() {
    let server = TestServer::start().await;
    let dir = tempdir();
    let client = server.client(dir.path()).await;
    client
        .personalize(
            UserIdentity::external("plain-secret-id"),
            None,
            PersonalizeOptions::default(),
        )
        .await
        .unwrap();
    client.shutdown().await;
    assert!(all_files(dir.path()).contains("plain-secret-id"));
    let config = Config {
        privacy: PrivacySettings {
            user_data_persisting_disabled: true,
            ..Default::default()
        },
        ..server.config(dir.path())
    };
    let client = RosterClient::start(config).await.unwrap();
    assert!(!all_files(dir.path()).contains("plain-secret-id"));
    assert_eq!(client.user().external_user_id, None);
    client.shutdown().await;
}

// ------------------------------------------------------------------------------------------------
// NO_REGISTRATION recovery
// ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn no_registration_recovers_with_a_new_anonymous_registration() {
    let server = TestServer::start().await;
    let dir = tempdir();
    let client = server.client(dir.path()).await;
    let old = own_id(&client);
    client
        .personalize(
            UserIdentity::external("cust-r"),
            Some(UserAttributes {
                first_name: Some("Rec".into()),
                ..Default::default()
            }),
            PersonalizeOptions::default(),
        )
        .await
        .unwrap();
    reported(
        client
            .save_installation(InstallationChanges {
                application_user_id: FieldChange::Set("before-loss".into()),
                ..Default::default()
            })
            .await
            .unwrap(),
    );
    server.delete_installation(&old).await;

    let mut events = client.subscribe();
    let e = client
        .save_user(UserChanges {
            first_name: FieldChange::Set("Changed".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(matches!(e, RosterError::RegistrationLost), "{e:?}");

    match next_event(&mut events).await {
        Event::ApiError { operation, error } => {
            assert_eq!(operation, Operation::PatchUser);
            assert!(error.is_api("NO_REGISTRATION"));
        }
        other => panic!("expected ApiError, got {other:?}"),
    }
    match next_event(&mut events).await {
        Event::ChangesDiscarded { target, fields, error } => {
            assert_eq!(target, ChangeTarget::User);
            assert_eq!(fields, vec!["firstName"]);
            assert!(error.unwrap().is_api("NO_REGISTRATION"));
        }
        other => panic!("expected ChangesDiscarded, got {other:?}"),
    }
    let new = match next_event(&mut events).await {
        Event::RegistrationChanged { old: o, new } => {
            assert_eq!(o, old);
            new
        }
        other => panic!("expected RegistrationChanged, got {other:?}"),
    };
    assert_ne!(new, old);
    match next_event(&mut events).await {
        Event::InstallationUpdated { installation } => {
            assert_eq!(installation.push_reg_id.as_deref(), Some(new.as_str()))
        }
        other => panic!("expected InstallationUpdated, got {other:?}"),
    }
    assert!(matches!(next_event(&mut events).await, Event::Depersonalized));

    assert_eq!(own_id(&client), new);
    assert_eq!(client.user(), roster_client::User::default());
    assert!(client.pending().is_empty(), "{:?}", client.pending());
    // Not re-personalized: the new installation is anonymous; the old person keeps its data.
    assert_eq!(server.person_of(&new).await.external_user_id, None);
    assert!(server.installation(&old).await.is_none());
    let person = server.person_by_external_id("cust-r").await.unwrap();
    assert_eq!(person.first_name.as_deref(), Some("Rec"));
    assert_eq!(client.fetch_user().await.unwrap().external_user_id, None);
    client.shutdown().await;
    server.check_invariants().await;
}

#[tokio::test]
async fn no_registration_on_fetch_and_on_depersonalize() {
    let server = TestServer::start().await;
    let dir = tempdir();
    let client = server.client(dir.path()).await;
    let first = own_id(&client);
    server.delete_installation(&first).await;
    let mut events = client.subscribe();
    let e = client.fetch_installation().await.unwrap_err();
    assert!(matches!(e, RosterError::RegistrationLost), "{e:?}");
    // The new registration was made before the call returned.
    let second = own_id(&client);
    assert_ne!(first, second);
    let kinds: Vec<_> = events.drain();
    assert!(
        kinds
            .iter()
            .any(|e| matches!(e, Event::RegistrationChanged { old, new } if *old == first && *new == second))
    );
    assert!(
        !kinds.iter().any(|e| matches!(e, Event::Depersonalized)),
        "no identity was lost"
    );

    // A depersonalize answered NO_REGISTRATION: the goal (an anonymous installation) is reached.
    client
        .personalize(UserIdentity::external("cust-nr"), None, PersonalizeOptions::default())
        .await
        .unwrap();
    server.delete_installation(&second).await;
    assert_eq!(client.depersonalize().await.unwrap(), SuccessPending::Success);
    let third = own_id(&client);
    assert_ne!(third, second);
    let evs = events.drain();
    assert_eq!(
        evs.iter().filter(|e| matches!(e, Event::Depersonalized)).count(),
        1,
        "{evs:?}"
    );
    assert!(!client.pending().depersonalize_pending);
    assert_eq!(server.person_of(&third).await.external_user_id, None);
    client.shutdown().await;
}

// ------------------------------------------------------------------------------------------------
// Other installations, storage lock, JWT, state file
// ------------------------------------------------------------------------------------------------

#[tokio::test]
async fn remote_primary_and_remote_logout_of_another_installation() {
    let server = TestServer::start().await;
    let (d1, d2) = (tempdir(), tempdir());
    let a = server.client(d1.path()).await;
    let b = server.client(d2.path()).await;
    let (a_id, b_id) = (own_id(&a), own_id(&b));
    a.personalize(
        UserIdentity::external("cust-m"),
        None,
        PersonalizeOptions {
            set_device_as_primary: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    b.personalize(UserIdentity::external("cust-m"), None, PersonalizeOptions::default())
        .await
        .unwrap();
    a.fetch_user().await.unwrap();
    assert!(a.installation().is_primary);

    let mut events = a.subscribe();
    let r = a.set_installation_as_primary(&b_id, true).await.unwrap();
    assert!(r.is_reported());
    assert!(!a.installation().is_primary);
    let user = a.user();
    let flag = |id: &str| {
        user.installations
            .iter()
            .find(|i| i.push_reg_id.as_deref() == Some(id))
            .unwrap()
            .is_primary
    };
    assert!(flag(&b_id));
    assert!(!flag(&a_id));
    assert!(
        matches!(next_event(&mut events).await, Event::InstallationUpdated { installation } if !installation.is_primary)
    );
    assert!(matches!(next_event(&mut events).await, Event::UserUpdated { .. }));
    assert!(server.installation(&b_id).await.unwrap().is_primary);
    assert!(!server.installation(&a_id).await.unwrap().is_primary);
    // Own state untouched otherwise: the own installation stays personalized.
    assert_eq!(
        server.person_of(&a_id).await.external_user_id.as_deref(),
        Some("cust-m")
    );

    // Remote logout.
    a.depersonalize_installation(&b_id).await.unwrap();
    assert!(
        !a.user()
            .installations
            .iter()
            .any(|i| i.push_reg_id.as_deref() == Some(b_id.as_str()))
    );
    assert!(matches!(next_event(&mut events).await, Event::UserUpdated { user } if user.installations.len() == 1));
    assert_eq!(server.person_of(&b_id).await.external_user_id, None);
    assert_eq!(
        server.person_of(&a_id).await.external_user_id.as_deref(),
        Some("cust-m")
    );
    assert!(!a.pending().depersonalize_pending);

    // The own id is refused without network; a foreign id is the server's 403.
    assert!(matches!(
        a.depersonalize_installation(&a_id).await,
        Err(RosterError::CannotDepersonalizeCurrentInstallation)
    ));
    let e = a.set_installation_as_primary(&b_id, true).await.unwrap_err();
    assert!(e.is_api("FORBIDDEN_INSTALLATION"), "{e:?}");
    assert!(matches!(
        next_event(&mut events).await,
        Event::ApiError {
            operation: Operation::SetOtherPrimary,
            ..
        }
    ));
    let e = a
        .depersonalize_installation(&uuid::Uuid::new_v4().to_string())
        .await
        .unwrap_err();
    assert!(e.is_api("FORBIDDEN_INSTALLATION"), "{e:?}");
    a.shutdown().await;
    b.shutdown().await;
    server.check_invariants().await;
}

#[tokio::test]
async fn a_second_client_on_the_same_storage_is_refused() {
    let server = TestServer::start().await;
    let dir = tempdir();
    let client = server.client(dir.path()).await;
    let id = own_id(&client);
    assert!(matches!(
        RosterClient::start(server.config(dir.path())).await,
        Err(RosterError::StorageLocked)
    ));
    client.shutdown().await;
    let again = RosterClient::start(server.config(dir.path())).await.unwrap();
    assert_eq!(own_id(&again), id, "the registration is kept across restarts");
    again.shutdown().await;
}

#[tokio::test]
async fn state_file_problems() {
    let server = TestServer::start().await;
    let dir = tempdir();
    std::fs::write(dir.path().join("state.json"), b"{ not json").unwrap();
    let client = server.client(dir.path()).await;
    let first = own_id(&client);
    client.shutdown().await;
    let corrupt = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().starts_with("state.json.corrupt-"));
    assert!(corrupt);

    // Another application code: the old registration is discarded.
    let config = Config {
        application_code: server.app.application_code.to_uppercase(),
        ..server.config(dir.path())
    };
    let client = RosterClient::start(config).await.unwrap();
    assert!(client.installation().push_reg_id.is_none());
    client.sync_now().await.unwrap();
    assert_ne!(own_id(&client), first);
    client.shutdown().await;

    // A newer schema is left alone.
    let mut v = state_file(dir.path());
    v["schemaVersion"] = json!(2);
    std::fs::write(dir.path().join("state.json"), serde_json::to_vec(&v).unwrap()).unwrap();
    assert!(matches!(
        RosterClient::start(server.config(dir.path())).await,
        Err(RosterError::StorageIncompatible)
    ));
    assert_eq!(state_file(dir.path())["schemaVersion"], 2);
}

#[tokio::test]
async fn jwt_supplier_tokens_are_checked_locally() {
    let server = TestServer::start().await;
    let dir = tempdir();
    let token = Arc::new(std::sync::Mutex::new(Some("garbage".to_string())));
    let t = token.clone();
    let supplier = move || t.lock().unwrap().clone();
    let config = Config {
        jwt_supplier: Some(Arc::new(supplier)),
        ..server.config(dir.path())
    };
    let client = RosterClient::start(config).await.unwrap();
    client.sync_now().await.unwrap();
    assert!(matches!(
        client.fetch_user().await,
        Err(RosterError::JwtStructureInvalid)
    ));
    let e = queued(
        client
            .save_user(UserChanges {
                first_name: FieldChange::Set("Jay".into()),
                ..Default::default()
            })
            .await
            .unwrap(),
    );
    assert!(matches!(e, RosterError::JwtStructureInvalid), "{e:?}");

    use base64::Engine as _;
    let b64 = |v: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let expired = format!(
        "{}.{}.c2ln",
        b64(json!({"alg": "HS256", "typ": "JWT", "kid": "k"})),
        b64(json!({"typ": "Bearer", "sub": "u", "infobip-api-key": "x", "iat": 1, "exp": 2, "jti": "j"}))
    );
    *token.lock().unwrap() = Some(expired);
    assert!(matches!(client.fetch_user().await, Err(RosterError::JwtExpired)));

    // No token: App auth; the queued change goes through.
    *token.lock().unwrap() = None;
    assert!(client.sync_now().await.unwrap().is_empty());
    assert_eq!(client.user().first_name.as_deref(), Some("Jay"));
    client.shutdown().await;
}

#[tokio::test]
async fn a_panicking_supplier_is_an_invalid_token() {
    let server = TestServer::start().await;
    let dir = tempdir();
    let supplier = || -> Option<String> { panic!("supplier bug") };
    let config = Config {
        jwt_supplier: Some(Arc::new(supplier)),
        ..server.config(dir.path())
    };
    let client = RosterClient::start(config).await.unwrap();
    client.sync_now().await.unwrap();
    assert!(matches!(
        client.fetch_user().await,
        Err(RosterError::JwtStructureInvalid)
    ));
    // The engine survived.
    assert!(client.fetch_installation().await.is_ok());
    client.shutdown().await;
}

#[tokio::test]
async fn clones_share_one_engine_and_calls_keep_their_order() {
    let server = TestServer::start().await;
    let dir = tempdir();
    let client = server.client(dir.path()).await;
    let id = own_id(&client);
    let c2 = client.clone();
    let save = tokio::spawn(async move {
        c2.save_user(UserChanges {
            first_name: FieldChange::Set("Quick".into()),
            ..Default::default()
        })
        .await
    });
    tokio::task::yield_now().await;
    let user = client
        .personalize(UserIdentity::external("ordered"), None, PersonalizeOptions::default())
        .await
        .unwrap();
    assert!(save.await.unwrap().unwrap().is_reported());
    assert_eq!(
        user.first_name.as_deref(),
        Some("Quick"),
        "the save was sent before the personalize"
    );
    assert_eq!(server.person_of(&id).await.first_name.as_deref(), Some("Quick"));
    client.shutdown().await;
}

#[tokio::test]
async fn a_rejected_registration_discards_the_delta_and_registers_without_it() {
    let server = TestServer::start().await;
    let dir = tempdir();
    let client = RosterClient::start(server.config(dir.path())).await.unwrap();
    let mut events = client.subscribe();
    // A list-of-objects attribute must be defined on the server first: the registration that
    // carries it is rejected (REQUEST_FORMAT_INVALID), the change is discarded, and the
    // registration is retried with token and system data only.
    let item: std::collections::BTreeMap<String, roster_client::ScalarValue> =
        [("sku".to_string(), roster_client::ScalarValue::from("A1"))]
            .into_iter()
            .collect();
    let mut changes = InstallationChanges::new();
    changes.set_custom_attribute("orders", CustomValue::ListOfObjects(vec![item]));
    let e = client.save_installation(changes).await.unwrap_err();
    assert!(e.is_api("REQUEST_FORMAT_INVALID"), "{e:?}");
    assert!(client.sync_now().await.unwrap().is_empty());
    let id = own_id(&client);
    let evs = events.drain();
    assert!(
        matches!(
            &evs[0],
            Event::ApiError {
                operation: Operation::CreateInstallation,
                ..
            }
        ),
        "{evs:?}"
    );
    assert!(
        matches!(&evs[1], Event::ChangesDiscarded { target: ChangeTarget::Installation, fields, .. }
            if fields == &vec!["customAttributes.orders".to_string()]),
        "{evs:?}"
    );
    assert!(matches!(&evs[2], Event::RegistrationCreated { push_reg_id } if *push_reg_id == id));
    assert!(server.installation(&id).await.unwrap().custom_attributes.is_empty());
    assert!(client.pending().is_empty());
    client.shutdown().await;
}

#[tokio::test]
async fn an_unknown_application_code_is_retried() {
    let server = TestServer::start().await;
    let dir = tempdir();
    let config = Config {
        application_code: "0".repeat(64),
        ..server.config(dir.path())
    };
    let client = RosterClient::start(config).await.unwrap();
    let e = client.sync_now().await.unwrap_err();
    assert!(e.is_api("INVALID_APPLICATION_CODE"), "{e:?}");
    assert!(matches!(e, RosterError::Api { http_status: 401, .. }));
    let pending = client.pending();
    assert!(pending.registration_pending);
    assert!(pending.next_retry_at.is_some());
    let e = client.fetch_user().await.unwrap_err();
    assert!(e.is_api("INVALID_APPLICATION_CODE"), "{e:?}");
    client.shutdown().await;
}

#[tokio::test]
async fn events_are_not_replayed_and_receivers_are_independent() {
    let server = TestServer::start().await;
    let dir = tempdir();
    let client = server.client(dir.path()).await;
    let mut early = client.subscribe();
    reported(
        client
            .save_user(UserChanges {
                first_name: FieldChange::Set("One".into()),
                ..Default::default()
            })
            .await
            .unwrap(),
    );
    let mut late = client.subscribe();
    assert!(late.drain().is_empty(), "nothing is replayed");
    reported(
        client
            .save_user(UserChanges {
                first_name: FieldChange::Set("Two".into()),
                ..Default::default()
            })
            .await
            .unwrap(),
    );
    let names = |evs: Vec<Event>| -> Vec<String> {
        evs.into_iter()
            .filter_map(|e| match e {
                Event::UserUpdated { user } => user.first_name,
                _ => None,
            })
            .collect()
    };
    assert_eq!(names(early.drain()), vec!["One", "Two"]);
    assert_eq!(names(late.drain()), vec!["Two"]);
    client.shutdown().await;
    assert!(matches!(early.recv().await, Err(roster_client::RecvError::Closed)));
    assert!(matches!(
        client.subscribe().recv().await,
        Err(roster_client::RecvError::Closed)
    ));
}
