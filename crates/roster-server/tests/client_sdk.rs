//! The server's behaviour through the Rust client SDK (`roster-client`, client-sdk.md): every
//! public client call against the real server, on every backend, with the server side checked in
//! the store (or with a raw GET of the same resource) after each step, so that the server and the
//! client are proven to agree on the wire. Byte-exact wire quirks the client never produces stay
//! in the raw-HTTP suites (docs/decisions.md, "Server tests: client or raw HTTP").
mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
};

use common::{
    TestServer,
    client_helpers::{Device, assert_api, options, reported},
    ipath, make_jwt, now_secs,
    people_helpers::*,
    user_path,
};
use roster_client::{
    CustomValue, ErrorCode, FieldChange, Gender, Installation, InstallationChanges, PersonalizeOptions,
    PushRegistration, PushServiceType, RosterError, SaveOutcome, ScalarValue, SuccessPending, User, UserAttributes,
    UserChanges, UserIdentity, UserType,
};
use roster_model::{
    AttributeDefinition, AttributeScope, AttributeType, DefinitionOrigin, PersonType, SchemaField, TokenClearedReason,
};
use serde_json::{Value, json};
use time::macros::{date, datetime};

// ----- helpers ------------------------------------------------------------------------------

fn primary() -> PersonalizeOptions {
    options(false, false, true)
}

fn plain() -> PersonalizeOptions {
    PersonalizeOptions::default()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The pushRegIds of the user's installations as the client sees them.
fn ids_of(user: &User) -> BTreeSet<String> {
    user.installations
        .iter()
        .map(|i| i.push_reg_id.clone().expect("a listed installation has an id"))
        .collect()
}

fn ids(devices: &[&Device]) -> BTreeSet<String> {
    devices.iter().map(|d| d.id()).collect()
}

/// Custom attributes as wire JSON.
fn attrs_json(attrs: &BTreeMap<String, CustomValue>) -> Value {
    Value::Object(
        attrs
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json().expect("finite")))
            .collect(),
    )
}

/// `GET /mobile/1/appinstance/{id}` as `id`, raw.
async fn raw_installation(ts: &TestServer, id: &str) -> Value {
    ts.call("GET", &ipath(id), Some(id), None).await.ok().json()
}

/// `GET /mobile/1/appinstance/{id}/user` as `id`, raw (App auth).
async fn raw_user(ts: &TestServer, id: &str) -> Value {
    ts.call("GET", &user_path(id), Some(id), None).await.ok().json()
}

/// Asserts that the client's view of its own installation is what the server answers raw.
fn assert_same_installation(wire: &Value, view: &Installation) {
    let s = |k: &str| wire.get(k).and_then(Value::as_str).map(str::to_string);
    let b = |k: &str| wire.get(k).and_then(Value::as_bool);
    assert_eq!(s("pushRegId"), view.push_reg_id, "pushRegId; {wire}");
    assert_eq!(
        s("pushServiceType"),
        view.push_service_type.map(|t| t.as_str().to_string()),
        "pushServiceType; {wire}"
    );
    assert_eq!(
        s("pushServiceToken"),
        view.push_service_token,
        "pushServiceToken; {wire}"
    );
    assert_eq!(b("regEnabled"), Some(view.reg_enabled), "regEnabled; {wire}");
    assert_eq!(b("isPrimary"), Some(view.is_primary), "isPrimary; {wire}");
    assert_eq!(b("notificationsEnabled"), view.notifications_enabled, "{wire}");
    assert_eq!(b("deviceSecure"), view.device_secure, "{wire}");
    assert_eq!(s("applicationUserId"), view.application_user_id, "{wire}");
    assert_eq!(wire["customAttributes"], attrs_json(&view.custom_attributes), "{wire}");
    for (k, v) in [
        ("sdkVersion", &view.sdk_version),
        ("appVersion", &view.app_version),
        ("os", &view.os),
        ("osVersion", &view.os_version),
        ("deviceManufacturer", &view.device_manufacturer),
        ("deviceModel", &view.device_model),
        ("deviceName", &view.device_name),
        ("language", &view.language),
        ("deviceTimezoneOffset", &view.device_timezone_offset),
    ] {
        assert_eq!(s(k).as_ref(), v.as_ref(), "{k}; {wire}");
    }
}

/// Asserts that the client's user is what the server answers raw (instances by id and flag).
fn assert_same_user(wire: &Value, view: &User) {
    let s = |k: &str| wire.get(k).and_then(Value::as_str).map(str::to_string);
    assert_eq!(s("externalUserId"), view.external_user_id, "{wire}");
    assert_eq!(s("firstName"), view.first_name, "{wire}");
    assert_eq!(s("middleName"), view.middle_name, "{wire}");
    assert_eq!(s("lastName"), view.last_name, "{wire}");
    assert_eq!(s("gender"), view.gender.map(|g| g.as_str().to_string()), "{wire}");
    assert_eq!(
        s("birthday"),
        view.birthday.map(roster_model::values::format_date),
        "{wire}"
    );
    let numbers: Vec<Value> = view.phones.iter().map(|n| json!({ "number": n })).collect();
    assert_eq!(wire["phones"], json!(numbers), "{wire}");
    let addresses: Vec<Value> = view.emails.iter().map(|a| json!({ "address": a })).collect();
    assert_eq!(wire["emails"], json!(addresses), "{wire}");
    assert_eq!(wire["tags"], json!(view.tags), "{wire}");
    assert_eq!(wire["customAttributes"], attrs_json(&view.custom_attributes), "{wire}");
    let kind = view.user_type.map(|t| match t {
        UserType::Lead => "LEAD",
        UserType::Customer => "CUSTOMER",
    });
    assert_eq!(wire["type"].as_str(), kind, "{wire}");
    let flags: BTreeMap<String, bool> = wire["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .map(|i| (i["pushRegId"].as_str().unwrap().to_string(), i["isPrimary"] == true))
        .collect();
    let seen: BTreeMap<String, bool> = view
        .installations
        .iter()
        .map(|i| (i.push_reg_id.clone().unwrap(), i.is_primary))
        .collect();
    assert_eq!(flags, seen, "instances; {wire}");
}

/// Defines the `LIST_OF_OBJECTS` attribute `orders` (sku, price, at) in `scope`, as the
/// management API would (people.md §8.2: a list must be defined before it is written).
async fn define_orders(ts: &TestServer, scope: AttributeScope) {
    let field = |n: &str, t: AttributeType| SchemaField {
        name: n.into(),
        field_type: t,
    };
    let def = AttributeDefinition {
        account_id: ts.app.account_id,
        scope,
        name: "orders".into(),
        attr_type: AttributeType::ListOfObjects,
        object_schema: Some(vec![
            field("sku", AttributeType::String),
            field("price", AttributeType::Decimal),
            field("at", AttributeType::DateTime),
        ]),
        origin: DefinitionOrigin::Api,
        created_at: 0,
    };
    let mut tx = ts.store.begin().await.unwrap();
    let (_, inserted) = tx.define_attribute(&def).await.unwrap();
    assert!(inserted);
    tx.commit().await.unwrap();
}

/// Two orders, typed as the `orders` definition says.
fn orders() -> CustomValue {
    let order = |sku: &str, price: f64, at: time::OffsetDateTime| -> BTreeMap<String, ScalarValue> {
        [
            ("sku".to_string(), ScalarValue::String(sku.into())),
            ("price".to_string(), ScalarValue::Decimal(price)),
            ("at".to_string(), ScalarValue::DateTime(at)),
        ]
        .into_iter()
        .collect()
    };
    CustomValue::ListOfObjects(vec![
        order("A-1", 9.5, datetime!(2024-01-02 10:00:00 UTC)),
        order("B-2", 20.0, datetime!(2024-01-03 08:30:00 UTC)),
    ])
}

/// The wire JSON of [`orders`].
fn orders_json() -> Value {
    json!([
        {"sku": "A-1", "price": 9.5, "at": "2024-01-02T10:00:00Z"},
        {"sku": "B-2", "price": 20, "at": "2024-01-03T08:30:00Z"}
    ])
}

/// The definitions of a scope: name → (type, origin).
fn definitions(
    s: &roster_store::Snapshot,
    scope: AttributeScope,
) -> BTreeMap<String, (AttributeType, DefinitionOrigin)> {
    s.attribute_definitions
        .iter()
        .filter(|d| d.scope == scope)
        .map(|d| (d.name.clone(), (d.attr_type, d.origin)))
        .collect()
}

/// Deletes an installation server-side, as an administrator would (people.md §2.5).
async fn delete_installation(ts: &TestServer, id: &str) {
    let mut tx = ts.store.begin().await.unwrap();
    let target = tx.installation(id).await.unwrap().expect("the installation to delete");
    roster_core::installation::delete_installation_in(&mut *tx, &target)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

// ----- registration, push token, system data -----------------------------------------------------

async fn registration_without_a_token_and_with_each_push_type() {
    let ts = TestServer::start().await;
    let bare = Device::start(&ts).await;
    let id = bare.id();
    let s = ts.snapshot().await;
    let i = inst(&s, &id);
    assert_eq!(i.application_id, ts.app.id);
    assert_eq!(i.push_service_type, None);
    assert_eq!(i.push_service_token, None);
    assert!(i.reg_enabled && !i.is_primary);
    assert!(i.custom_attributes.is_empty());
    // mobile-api.md §4.1 system data, exactly as the client's SystemInfo says (the client's
    // version is the workspace version).
    let sys = &i.system;
    assert_eq!(sys.sdk_version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
    assert_eq!(sys.os.as_deref(), Some("Linux"));
    assert_eq!(sys.os_version.as_deref(), Some("6.1"));
    assert_eq!(sys.device_manufacturer.as_deref(), Some("Roster"));
    assert_eq!(sys.device_model.as_deref(), Some("Test Box"));
    assert_eq!(sys.device_name.as_deref(), Some("bench-1"));
    assert_eq!(sys.app_version.as_deref(), Some("3.2.1"));
    assert_eq!(sys.language.as_deref(), Some("en"));
    assert_eq!(sys.device_secure, Some(true));
    assert_eq!(sys.notifications_enabled, Some(true));
    let tz = sys.device_timezone_offset.as_deref().expect("deviceTimezoneOffset");
    assert!(tz.starts_with("GMT+") || tz.starts_with("GMT-"), "{tz}");
    // people.md §2.2: a new anonymous LEAD person of its own.
    let p = person_of(&s, &id);
    assert!(p.is_anonymous());
    assert_eq!(p.person_type, PersonType::Lead);
    assert_eq!(installations_of(&s, p.id).len(), 1);
    // The client's view is what the server answers.
    let fetched = bare.fetch_installation().await.unwrap();
    assert_same_installation(&raw_installation(&ts, &id).await, &fetched);

    // Each push type, as registered by the client; APNs tokens are stored lower case.
    let mut firebase = None;
    for (service_type, token, stored) in [
        (PushServiceType::Firebase, "fcm-token-1", "fcm-token-1"),
        (PushServiceType::Hms, "hms-token-1", "hms-token-1"),
        (PushServiceType::Apns, "0B30557A9FC4ABCD", "0b30557a9fc4abcd"),
    ] {
        let d = Device::start_with(&ts, |c| {
            c.push = Some(PushRegistration {
                service_type,
                token: token.into(),
            })
        })
        .await;
        let s = ts.snapshot().await;
        let i = inst(&s, &d.id());
        assert_eq!(i.push_service_type, Some(service_type));
        assert_eq!(i.push_service_token.as_deref(), Some(stored));
        assert!(person_of(&s, &d.id()).is_anonymous());
        assert_eq!(d.installation().push_service_token.as_deref(), Some(stored));
        let wire = raw_installation(&ts, &d.id()).await;
        assert_eq!(wire["pushServiceType"], service_type.as_str());
        assert_same_installation(&wire, &d.installation());
        if service_type == PushServiceType::Firebase {
            firebase = Some(d.id());
        }
        d.stop().await;
    }

    // people.md §2.3 token hygiene: a new registration with the same Firebase token takes it.
    let taker = Device::start_with(&ts, |c| {
        c.push = Some(PushRegistration {
            service_type: PushServiceType::Firebase,
            token: "fcm-token-1".into(),
        })
    })
    .await;
    let s = ts.snapshot().await;
    let old = inst(&s, firebase.as_deref().unwrap());
    assert_eq!(old.push_service_token, None);
    assert_eq!(old.token_cleared_reason, Some(TokenClearedReason::TakenOver));
    assert_eq!(inst(&s, &taker.id()).push_service_token.as_deref(), Some("fcm-token-1"));
    taker.stop().await;

    // A token set later, then cleared by the device (reason DEVICE).
    let view = reported(
        bare.set_push_token(PushRegistration {
            service_type: PushServiceType::Hms,
            token: "hms-later".into(),
        })
        .await
        .unwrap(),
    );
    let i = inst(&ts.snapshot().await, &id).clone();
    assert_eq!(i.push_service_type, Some(PushServiceType::Hms));
    assert_eq!(i.push_service_token.as_deref(), Some("hms-later"));
    assert_same_installation(&raw_installation(&ts, &id).await, &view);
    let view = reported(bare.clear_push_token().await.unwrap());
    assert_eq!(view.push_service_token, None);
    let i = inst(&ts.snapshot().await, &id).clone();
    assert_eq!(i.push_service_token, None);
    assert_eq!(i.token_cleared_reason, Some(TokenClearedReason::Device));
    assert!(bare.pending().is_empty(), "{:?}", bare.pending());
    bare.stop().await;
    ts.finish().await;
}

// ----- own installation ------------------------------------------------------------------------

async fn installation_changes_are_typed_and_own_primary_demotes_the_others() {
    let ts = TestServer::start().await;
    define_orders(&ts, AttributeScope::Installation).await;
    let a = Device::start(&ts).await;
    let b = Device::start(&ts).await;
    b.login("inst-1", primary()).await;
    a.login("inst-1", plain()).await;
    assert!(inst(&ts.snapshot().await, &b.id()).is_primary);

    let mut changes = InstallationChanges {
        application_user_id: FieldChange::Set("app-user-7".into()),
        reg_enabled: FieldChange::Set(false),
        is_primary: FieldChange::Set(true),
        ..Default::default()
    };
    changes
        .set_custom_attribute("nickname", "kitchen tablet")
        .set_custom_attribute("volume", 7)
        .set_custom_attribute("ratio", 0.25)
        .set_custom_attribute("muted", false)
        .set_custom_attribute("installedOn", date!(2024 - 02 - 29))
        .set_custom_attribute("lastBackup", datetime!(2024-03-01 10:15:30 UTC))
        .set_custom_attribute("orders", orders());
    let view = reported(a.save_installation(changes).await.unwrap());
    let s = ts.snapshot().await;
    let ia = inst(&s, &a.id());
    assert_eq!(ia.application_user_id.as_deref(), Some("app-user-7"));
    assert!(!ia.reg_enabled);
    assert!(ia.is_primary);
    assert!(
        !inst(&s, &b.id()).is_primary,
        "people.md §4: the person's other primary is demoted"
    );
    assert_eq!(
        json!(ia.custom_attributes),
        json!({"nickname": "kitchen tablet", "volume": 7, "ratio": 0.25, "muted": false,
               "installedOn": "2024-02-29", "lastBackup": "2024-03-01T10:15:30Z", "orders": orders_json()})
    );
    // people.md §8.2: auto-definitions from the JSON values the client sent.
    use AttributeType as T;
    use DefinitionOrigin::{Api, Auto};
    let expected: BTreeMap<String, (AttributeType, DefinitionOrigin)> = [
        ("installedOn", (T::Date, Auto)),
        ("lastBackup", (T::DateTime, Auto)),
        ("muted", (T::Boolean, Auto)),
        ("nickname", (T::String, Auto)),
        ("orders", (T::ListOfObjects, Api)),
        ("ratio", (T::Decimal, Auto)),
        ("volume", (T::Decimal, Auto)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(definitions(&s, AttributeScope::Installation), expected);
    // Typed values come back typed.
    assert_eq!(
        view.custom_attributes["installedOn"],
        CustomValue::Date(date!(2024 - 02 - 29))
    );
    assert_eq!(
        view.custom_attributes["lastBackup"],
        CustomValue::DateTime(datetime!(2024-03-01 10:15:30 UTC))
    );
    assert_eq!(view.custom_attributes["volume"], CustomValue::Decimal(7.0));
    assert_eq!(view.custom_attributes["orders"], orders());
    assert_same_installation(&raw_installation(&ts, &a.id()).await, &view);
    // b learns that it lost the flag.
    assert!(!b.fetch_installation().await.unwrap().is_primary);

    // A value of the wrong type for a defined attribute: the server rejects it, nothing is
    // stored, and the client discards the change.
    let before = ts.snapshot().await;
    let mut bad = InstallationChanges::new();
    bad.set_custom_attribute("volume", "loud");
    let e = a.save_installation(bad).await.unwrap_err();
    assert_api(&e, 400, ErrorCode::RequestFormatInvalid);
    assert_same_store(&before, &ts.snapshot().await, "a rejected installation change");
    assert_eq!(a.installation().custom_attributes["volume"], CustomValue::Decimal(7.0));
    assert!(a.pending().installation_fields.is_empty());

    // Clear = null on the wire: applicationUserId removed, regEnabled back to its default.
    let mut changes = InstallationChanges {
        application_user_id: FieldChange::Clear,
        reg_enabled: FieldChange::Clear,
        ..Default::default()
    };
    changes.delete_custom_attribute("nickname");
    let view = reported(a.save_installation(changes).await.unwrap());
    let ia = inst(&ts.snapshot().await, &a.id()).clone();
    assert_eq!(ia.application_user_id, None);
    assert!(ia.reg_enabled);
    assert!(!ia.custom_attributes.contains_key("nickname"));
    assert_eq!(ia.custom_attributes.len(), 6);
    assert_same_installation(&raw_installation(&ts, &a.id()).await, &view);

    // Every attribute deleted; the definitions stay (they are account-wide).
    let mut changes = InstallationChanges::new();
    changes.clear_all_custom_attributes();
    reported(a.save_installation(changes).await.unwrap());
    let s = ts.snapshot().await;
    assert!(inst(&s, &a.id()).custom_attributes.is_empty());
    assert_eq!(definitions(&s, AttributeScope::Installation).len(), 7);

    // The own id through set_installation_as_primary is an installation save.
    assert!(
        a.set_installation_as_primary(&a.id(), false)
            .await
            .unwrap()
            .is_reported()
    );
    assert!(!inst(&ts.snapshot().await, &a.id()).is_primary);
    assert!(!a.installation().is_primary);
    a.stop().await;
    b.stop().await;
    ts.finish().await;
}

// ----- other installations of the user -----------------------------------------------------------

async fn another_installation_of_the_user_is_made_primary() {
    let ts = TestServer::start().await;
    let a = Device::start(&ts).await;
    let b = Device::start(&ts).await;
    let stranger = Device::start(&ts).await;
    a.login("prim-1", primary()).await;
    b.login("prim-1", plain()).await;
    a.fetch_user().await.unwrap();
    assert!(a.installation().is_primary);

    assert!(
        a.set_installation_as_primary(&b.id(), true)
            .await
            .unwrap()
            .is_reported()
    );
    let s = ts.snapshot().await;
    assert!(inst(&s, &b.id()).is_primary);
    assert!(!inst(&s, &a.id()).is_primary, "people.md §4: one primary per person");
    // The client applied the move to its cached copies.
    assert!(!a.installation().is_primary);
    let flags: BTreeMap<String, bool> = a
        .user()
        .installations
        .iter()
        .map(|i| (i.push_reg_id.clone().unwrap(), i.is_primary))
        .collect();
    assert_eq!(flags, [(a.id(), false), (b.id(), true)].into_iter().collect());
    assert_same_user(&raw_user(&ts, &a.id()).await, &a.user());
    assert!(b.fetch_installation().await.unwrap().is_primary);

    // And the flag taken away again.
    assert!(
        a.set_installation_as_primary(&b.id(), false)
            .await
            .unwrap()
            .is_reported()
    );
    let s = ts.snapshot().await;
    assert!(!inst(&s, &b.id()).is_primary && !inst(&s, &a.id()).is_primary);

    // Another person's installation: the server refuses, nothing changes (never Queued).
    let before = ts.snapshot().await;
    let e = a.set_installation_as_primary(&stranger.id(), true).await.unwrap_err();
    assert_api(&e, 403, ErrorCode::ForbiddenInstallation);
    assert_same_store(&before, &ts.snapshot().await, "a refused remote primary");
    for d in [a, b, stranger] {
        d.stop().await;
    }
    ts.finish().await;
}

// ----- user --------------------------------------------------------------------------------------

async fn user_fields_tags_and_typed_attributes_through_the_delta() {
    let ts = TestServer::start().await;
    define_orders(&ts, AttributeScope::Person).await;
    let a = Device::start(&ts).await;
    let b = Device::start(&ts).await;
    a.login("user-1", plain()).await;
    b.login("user-1", plain()).await;

    let mut changes = UserChanges {
        first_name: FieldChange::Set("Ana".into()),
        middle_name: FieldChange::Set("Marija".into()),
        last_name: FieldChange::Set("Horvat".into()),
        gender: FieldChange::Set(Gender::Female),
        birthday: FieldChange::Set(date!(1990 - 05 - 17)),
        phones: FieldChange::Set(strings(&["+385 91 123 4567", "385911234567", "+49 30 123456"])),
        emails: FieldChange::Set(strings(&["Ana@Example.com", "ana@example.COM", "ana.h@example.org"])),
        tags: FieldChange::Set(set(&["vip", "beta"])),
        ..Default::default()
    };
    changes
        .set_custom_attribute("tier", "gold")
        .set_custom_attribute("points", 120)
        .set_custom_attribute("optIn", true)
        .set_custom_attribute("memberSince", date!(2020 - 01 - 15))
        .set_custom_attribute("lastLogin", datetime!(2024-03-01 10:15:30 UTC))
        .set_custom_attribute("orders", orders());
    let user = reported(a.save_user(changes).await.unwrap());
    // people.md §3.2, §3.3: phones normalised, duplicates collapsed to the first occurrence.
    assert_eq!(user.phones, strings(&["385911234567", "4930123456"]));
    assert_eq!(user.emails, strings(&["Ana@Example.com", "ana.h@example.org"]));
    let s = ts.snapshot().await;
    let p = person_of(&s, &a.id());
    assert_eq!(p.external_user_id.as_deref(), Some("user-1"));
    assert_eq!(p.first_name.as_deref(), Some("Ana"));
    assert_eq!(p.middle_name.as_deref(), Some("Marija"));
    assert_eq!(p.last_name.as_deref(), Some("Horvat"));
    assert_eq!(p.gender, Some(Gender::Female));
    assert_eq!(p.birthday.as_deref(), Some("1990-05-17"));
    assert_eq!(p.phones, strings(&["385911234567", "4930123456"]));
    assert_eq!(p.emails, strings(&["Ana@Example.com", "ana.h@example.org"]));
    assert_eq!(p.tags, set(&["beta", "vip"]));
    assert_eq!(
        json!(p.custom_attributes),
        json!({"tier": "gold", "points": 120, "optIn": true, "memberSince": "2020-01-15",
               "lastLogin": "2024-03-01T10:15:30Z", "orders": orders_json()})
    );
    assert_eq!(p.person_type, PersonType::Customer);
    assert_eq!(user.user_type, Some(UserType::Customer));
    use AttributeType as T;
    assert_eq!(
        definitions(&s, AttributeScope::Person)
            .into_iter()
            .map(|(k, (t, _))| (k, t))
            .collect::<BTreeMap<_, _>>(),
        [
            ("lastLogin", T::DateTime),
            ("memberSince", T::Date),
            ("optIn", T::Boolean),
            ("orders", T::ListOfObjects),
            ("points", T::Decimal),
            ("tier", T::String),
        ]
        .into_iter()
        .map(|(k, t)| (k.to_string(), t))
        .collect()
    );

    // The other device of the person reads the same typed values.
    let seen = b.fetch_user().await.unwrap();
    assert_eq!(seen.custom_attributes, user.custom_attributes);
    assert_eq!(
        seen.custom_attributes["memberSince"],
        CustomValue::Date(date!(2020 - 01 - 15))
    );
    assert_eq!(
        seen.custom_attributes["lastLogin"],
        CustomValue::DateTime(datetime!(2024-03-01 10:15:30 UTC))
    );
    assert_eq!(seen.custom_attributes["orders"], orders());
    assert_eq!(seen.birthday, Some(date!(1990 - 05 - 17)));
    assert_eq!(seen.gender, Some(Gender::Female));
    assert_eq!(ids_of(&seen), ids(&[&a, &b]));
    assert_same_user(&raw_user(&ts, &b.id()).await, &seen);

    // Clearing goes out as explicit nulls in the delta; absent fields stay as they are.
    let mut changes = UserChanges {
        middle_name: FieldChange::Clear,
        gender: FieldChange::Clear,
        birthday: FieldChange::Clear,
        phones: FieldChange::Clear,
        tags: FieldChange::Set(BTreeSet::new()),
        ..Default::default()
    };
    changes
        .delete_custom_attribute("points")
        .delete_custom_attribute("orders");
    let user = reported(a.save_user(changes).await.unwrap());
    let p = person_of(&ts.snapshot().await, &a.id()).clone();
    assert_eq!(p.first_name.as_deref(), Some("Ana"));
    assert_eq!(p.last_name.as_deref(), Some("Horvat"));
    assert_eq!(p.middle_name, None);
    assert_eq!(p.gender, None);
    assert_eq!(p.birthday, None);
    assert!(p.phones.is_empty());
    assert!(p.tags.is_empty());
    assert_eq!(p.emails.len(), 2);
    assert_eq!(
        p.custom_attributes.keys().collect::<Vec<_>>(),
        vec!["lastLogin", "memberSince", "optIn", "tier"]
    );
    let wire = raw_user(&ts, &a.id()).await;
    for k in ["middleName", "gender", "birthday"] {
        assert!(wire.get(k).is_none(), "{k} cleared: {wire}");
    }
    assert_same_user(&wire, &user);

    // Every custom attribute deleted at once.
    let mut changes = UserChanges::new();
    changes.clear_all_custom_attributes();
    let user = reported(a.save_user(changes).await.unwrap());
    assert!(user.custom_attributes.is_empty());
    assert!(person_of(&ts.snapshot().await, &a.id()).custom_attributes.is_empty());

    // An identity key another person owns: USER_MERGE_INTERRUPTED, nothing changes on the
    // server, and the client discards the rejected change (people.md §6.1: PATCH never merges).
    let other = Device::start(&ts).await;
    other
        .personalize(
            UserIdentity {
                emails: strings(&["bo@example.com"]),
                ..Default::default()
            },
            None,
            plain(),
        )
        .await
        .unwrap();
    let before = ts.snapshot().await;
    let e = a
        .save_user(UserChanges {
            emails: FieldChange::Set(strings(&["ana@example.com", "BO@example.com"])),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_api(&e, 409, ErrorCode::UserMergeInterrupted);
    assert_same_store(&before, &ts.snapshot().await, "a PATCH claiming another person's email");
    assert_eq!(a.user().emails, strings(&["Ana@Example.com", "ana.h@example.org"]));
    assert!(a.pending().user_fields.is_empty(), "{:?}", a.pending());
    for d in [a, b, other] {
        d.stop().await;
    }
    ts.finish().await;
}

// ----- personalize -------------------------------------------------------------------------------

async fn personalize_with_phone_email_and_the_three_flags() {
    let ts = TestServer::start().await;
    // Plain, with attributes: a CUSTOMER.
    let a = Device::start(&ts).await;
    let user = a
        .personalize(
            UserIdentity::external("pers-1"),
            Some(UserAttributes {
                first_name: Some("Ana".into()),
                tags: set(&["new"]),
                custom_attributes: [("tier".to_string(), CustomValue::from("gold"))].into_iter().collect(),
                ..Default::default()
            }),
            plain(),
        )
        .await
        .unwrap();
    assert_eq!(user.external_user_id.as_deref(), Some("pers-1"));
    assert_eq!(user.user_type, Some(UserType::Customer));
    assert_eq!(ids_of(&user), ids(&[&a]));
    let s = ts.snapshot().await;
    let p1 = person_of(&s, &a.id()).clone();
    assert_eq!(p1.external_user_id.as_deref(), Some("pers-1"));
    assert_eq!(p1.first_name.as_deref(), Some("Ana"));
    assert_eq!(p1.tags, set(&["new"]));
    assert_eq!(json!(p1.custom_attributes), json!({"tier": "gold"}));
    assert_eq!(p1.person_type, PersonType::Customer);
    assert!(!inst(&s, &a.id()).is_primary);
    assert_same_user(&raw_user(&ts, &a.id()).await, &a.user());

    // By phone and email only, kept a LEAD.
    let b = Device::start(&ts).await;
    let user = b
        .personalize(
            UserIdentity {
                phones: strings(&["+385 91 765 4321"]),
                emails: strings(&["Bo@Example.com"]),
                ..Default::default()
            },
            None,
            PersonalizeOptions {
                keep_as_lead: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(user.user_type, Some(UserType::Lead));
    assert_eq!(user.external_user_id, None);
    assert_eq!(user.phones, strings(&["385917654321"]));
    assert_eq!(user.emails, strings(&["Bo@Example.com"]));
    let s = ts.snapshot().await;
    let pb = person_of(&s, &b.id()).clone();
    assert_eq!(pb.person_type, PersonType::Lead);
    assert_eq!(pb.phones, strings(&["385917654321"]));
    assert_eq!(pb.emails, strings(&["Bo@Example.com"]));

    // The same person found by the email in another case from a third device, which becomes its
    // primary; the person receives the externalUserId (decision table row 16) and, without
    // keepAsLead, becomes a CUSTOMER.
    let c = Device::start(&ts).await;
    let user = c
        .personalize(
            UserIdentity {
                external_user_id: Some("pers-2".into()),
                emails: strings(&["bo@example.com"]),
                ..Default::default()
            },
            None,
            primary(),
        )
        .await
        .unwrap();
    assert_eq!(user.external_user_id.as_deref(), Some("pers-2"));
    assert_eq!(user.user_type, Some(UserType::Customer));
    assert_eq!(
        user.emails,
        strings(&["Bo@Example.com"]),
        "keys the person has stay as they are"
    );
    assert_eq!(ids_of(&user), ids(&[&b, &c]));
    assert!(c.installation().is_primary);
    let s = ts.snapshot().await;
    assert_eq!(person_of(&s, &c.id()).id, pb.id);
    assert_eq!(person_of(&s, &c.id()).person_type, PersonType::Customer);
    assert!(inst(&s, &c.id()).is_primary);

    // a, logged in as pers-1, cannot become pers-2 without force.
    let before = ts.snapshot().await;
    let e = a.login_err("pers-2", plain()).await;
    assert_api(&e, 409, ErrorCode::PersonalizationImpossible);
    assert_same_store(&before, &ts.snapshot().await, "personalize without force");
    assert_eq!(a.user().external_user_id.as_deref(), Some("pers-1"));

    // With force and primary: a leaves pers-1 (through a fresh person merged into pers-2) and
    // takes the primary flag from c.
    let user = a
        .login(
            "pers-2",
            PersonalizeOptions {
                force_depersonalize: true,
                set_device_as_primary: true,
                ..Default::default()
            },
        )
        .await;
    assert_eq!(ids_of(&user), ids(&[&a, &b, &c]));
    assert!(a.installation().is_primary);
    let s = ts.snapshot().await;
    assert_eq!(person_of(&s, &a.id()).id, pb.id);
    assert!(inst(&s, &a.id()).is_primary);
    assert!(!inst(&s, &c.id()).is_primary);
    let old = person(&s, p1.id).expect("people.md §7.1: the old person stays");
    assert_eq!(old.first_name.as_deref(), Some("Ana"));
    assert!(installations_of(&s, p1.id).is_empty());
    let merges = merges_of(&s, &a.id());
    assert_eq!(merges.len(), 1, "{merges:?}");
    assert!(merges[0].after_forced_depersonalize);
    assert_eq!(merges[0].target_person_id, Some(pb.id));
    assert_same_user(&raw_user(&ts, &a.id()).await, &a.user());
    for d in [a, b, c] {
        d.stop().await;
    }
    ts.finish().await;
}

async fn personalize_merges_an_anonymous_person_and_the_other_device_sees_it() {
    let ts = TestServer::start().await;
    let a = Device::start(&ts).await;
    a.personalize(
        UserIdentity::external("merge-1"),
        Some(UserAttributes {
            first_name: Some("Ana".into()),
            tags: set(&["a"]),
            ..Default::default()
        }),
        plain(),
    )
    .await
    .unwrap();
    // b's anonymous person collects data first.
    let b = Device::start(&ts).await;
    let mut changes = UserChanges {
        first_name: FieldChange::Set("Anonymous".into()),
        last_name: FieldChange::Set("Horvat".into()),
        tags: FieldChange::Set(set(&["b"])),
        ..Default::default()
    };
    changes.set_custom_attribute("color", "red");
    reported(b.save_user(changes).await.unwrap());
    let s0 = ts.snapshot().await;
    let source = person_of(&s0, &b.id()).id;
    let target = person_of(&s0, &a.id()).id;
    assert!(person_of(&s0, &b.id()).is_anonymous());

    let user = b.login("merge-1", plain()).await;
    // people.md §5.2: the target's values win, the source fills the gaps, tags are united.
    assert_eq!(user.first_name.as_deref(), Some("Ana"));
    assert_eq!(user.last_name.as_deref(), Some("Horvat"));
    assert_eq!(user.tags, set(&["a", "b"]));
    assert_eq!(user.custom_attributes["color"], CustomValue::from("red"));
    assert_eq!(ids_of(&user), ids(&[&a, &b]));
    let s = ts.snapshot().await;
    assert_eq!(person_of(&s, &b.id()).id, target);
    assert!(person(&s, source).is_none(), "the source had no installation left");
    let merges = merges_of(&s, &b.id());
    assert_eq!(merges.len(), 1, "{merges:?}");
    assert_eq!(merges[0].source_person_id, Some(source));
    assert_eq!(merges[0].target_person_id, Some(target));
    assert!(merges[0].source_deleted);
    assert!(!merges[0].after_forced_depersonalize);

    // a's cached user is the one from before the merge until a fetches.
    assert_eq!(ids_of(&a.user()), ids(&[&a]));
    assert_eq!(a.user().last_name, None);
    let seen = a.fetch_user().await.unwrap();
    assert_eq!(ids_of(&seen), ids(&[&a, &b]));
    assert_eq!(seen.last_name.as_deref(), Some("Horvat"));
    assert_eq!(seen.tags, set(&["a", "b"]));
    assert_eq!(seen.custom_attributes, user.custom_attributes);
    assert_same_user(&raw_user(&ts, &a.id()).await, &seen);

    // Identity conflicts reach the caller as the typed error with the server's code.
    let c = Device::start(&ts).await;
    c.personalize(
        UserIdentity {
            external_user_id: Some("merge-2".into()),
            emails: strings(&["cy@example.com"]),
            ..Default::default()
        },
        None,
        plain(),
    )
    .await
    .unwrap();
    let d = Device::start(&ts).await;
    let before = ts.snapshot().await;
    let identity = |ext: &str| UserIdentity {
        external_user_id: Some(ext.into()),
        emails: strings(&["cy@example.com"]),
        ..Default::default()
    };
    // The email belongs to merge-2, the identity names merge-3.
    let e = d.personalize(identity("merge-3"), None, plain()).await.unwrap_err();
    assert_api(&e, 409, ErrorCode::UserMergeInterrupted);
    // merge-1 and the email of merge-2: two candidates.
    let e = d.personalize(identity("merge-1"), None, plain()).await.unwrap_err();
    assert_api(&e, 409, ErrorCode::AmbiguousPersonalizeCandidates);
    assert_same_store(&before, &ts.snapshot().await, "refused personalizations");
    assert_eq!(d.user().external_user_id, None);
    assert_eq!(d.fetch_user().await.unwrap().external_user_id, None);
    for dev in [a, b, c, d] {
        dev.stop().await;
    }
    ts.finish().await;
}

// ----- depersonalize -----------------------------------------------------------------------------

async fn depersonalize_own_and_remote_logout_of_another_installation() {
    let ts = TestServer::start().await;
    let a = Device::start(&ts).await;
    let b = Device::start(&ts).await;
    let c = Device::start(&ts).await;
    a.personalize(
        UserIdentity::external("dep-1"),
        Some(UserAttributes {
            first_name: Some("Ana".into()),
            ..Default::default()
        }),
        primary(),
    )
    .await
    .unwrap();
    let mut changes = InstallationChanges {
        application_user_id: FieldChange::Set("app-user-1".into()),
        ..Default::default()
    };
    changes.set_custom_attribute("slot", 1);
    reported(a.save_installation(changes).await.unwrap());
    b.login("dep-1", plain()).await;
    c.login("dep-1", plain()).await;
    let s0 = ts.snapshot().await;
    let p = person_of(&s0, &a.id()).clone();

    // Own logout (people.md §7.1).
    assert_eq!(a.depersonalize().await.unwrap(), SuccessPending::Success);
    let s = ts.snapshot().await;
    let fresh = person_of(&s, &a.id());
    assert_ne!(fresh.id, p.id);
    assert!(fresh.is_anonymous());
    assert_eq!(fresh.person_type, PersonType::Lead);
    assert_eq!(fresh.version, 1, "a fresh person");
    let ia = inst(&s, &a.id());
    assert!(!ia.is_primary);
    assert!(ia.custom_attributes.is_empty());
    assert_eq!(ia.application_user_id, None);
    assert_eq!(person(&s, p.id), Some(&p), "the old person keeps all its data");
    assert_eq!(
        installations_of(&s, p.id)
            .iter()
            .map(|i| i.push_reg_id.clone())
            .collect::<BTreeSet<_>>(),
        ids(&[&b, &c])
    );
    // The client wiped its copies; nothing is pending.
    assert_eq!(a.user(), User::default());
    let own = a.installation();
    assert!(!own.is_primary && own.custom_attributes.is_empty() && own.application_user_id.is_none());
    assert!(a.pending().is_empty(), "{:?}", a.pending());
    let seen = a.fetch_user().await.unwrap();
    assert_eq!(seen.user_type, Some(UserType::Lead));
    assert_eq!(ids_of(&seen), ids(&[&a]));
    assert_same_user(&raw_user(&ts, &a.id()).await, &seen);
    assert_same_installation(
        &raw_installation(&ts, &a.id()).await,
        &a.fetch_installation().await.unwrap(),
    );

    // Depersonalizing an anonymous installation again changes nothing on the server.
    let before = ts.snapshot().await;
    assert_eq!(a.depersonalize().await.unwrap(), SuccessPending::Success);
    assert_same_store(&before, &ts.snapshot().await, "depersonalize of an anonymous person");

    // Remote logout (people.md §7.2): b logs c out.
    b.fetch_user().await.unwrap();
    assert_eq!(ids_of(&b.user()), ids(&[&b, &c]));
    b.depersonalize_installation(&c.id()).await.unwrap();
    let s = ts.snapshot().await;
    let pc = person_of(&s, &c.id());
    assert_ne!(pc.id, p.id);
    assert!(pc.is_anonymous());
    assert_eq!(
        installations_of(&s, p.id)
            .iter()
            .map(|i| i.push_reg_id.clone())
            .collect::<BTreeSet<_>>(),
        ids(&[&b])
    );
    assert_eq!(ids_of(&b.user()), ids(&[&b]));
    // c learns it at its next fetch.
    let seen = c.fetch_user().await.unwrap();
    assert_eq!(seen.external_user_id, None);
    assert_eq!(ids_of(&seen), ids(&[&c]));

    // Refusals: the own id (locally), and an installation of another person (by the server).
    let e = b.depersonalize_installation(&b.id()).await.unwrap_err();
    assert!(
        matches!(e, RosterError::CannotDepersonalizeCurrentInstallation),
        "{e:?}"
    );
    let before = ts.snapshot().await;
    let e = b.depersonalize_installation(&a.id()).await.unwrap_err();
    assert_api(&e, 403, ErrorCode::ForbiddenInstallation);
    assert_same_store(&before, &ts.snapshot().await, "a refused remote logout");
    for d in [a, b, c] {
        d.stop().await;
    }
    ts.finish().await;
}

// ----- NO_REGISTRATION recovery ------------------------------------------------------------------

async fn no_registration_recovery_after_the_server_deleted_the_installation() {
    let ts = TestServer::start().await;
    let a = Device::start_with(&ts, |c| {
        c.push = Some(PushRegistration {
            service_type: PushServiceType::Firebase,
            token: "fcm-recover".into(),
        })
    })
    .await;
    let old = a.id();
    a.personalize(
        UserIdentity::external("lost-1"),
        Some(UserAttributes {
            first_name: Some("Ana".into()),
            ..Default::default()
        }),
        plain(),
    )
    .await
    .unwrap();
    delete_installation(&ts, &old).await;

    let e = a.fetch_user().await.unwrap_err();
    assert!(matches!(e, RosterError::RegistrationLost), "{e:?}");
    // client-sdk.md §11: registered anew before the call returned, anonymous, token kept.
    let new = a.id();
    assert_ne!(new, old);
    let s = ts.snapshot().await;
    assert!(!s.installations.iter().any(|i| i.push_reg_id == old));
    let i = inst(&s, &new);
    assert_eq!(i.push_service_type, Some(PushServiceType::Firebase));
    assert_eq!(i.push_service_token.as_deref(), Some("fcm-recover"));
    assert!(person_of(&s, &new).is_anonymous(), "not re-personalized");
    let lost = person_by_ext(&s, "lost-1").expect("people.md §2.5: a personalized person stays");
    assert_eq!(lost.first_name.as_deref(), Some("Ana"));
    assert!(installations_of(&s, lost.id).is_empty());
    assert_eq!(a.user(), User::default());
    assert!(a.pending().is_empty(), "{:?}", a.pending());

    // Everything works on the new registration.
    let seen = a.fetch_user().await.unwrap();
    assert_eq!(ids_of(&seen), ids(&[&a]));
    let mut changes = InstallationChanges::new();
    changes.set_custom_attribute("after", true);
    let view = reported(a.save_installation(changes).await.unwrap());
    assert_eq!(
        json!(inst(&ts.snapshot().await, &new).custom_attributes),
        json!({"after": true})
    );
    assert_same_installation(&raw_installation(&ts, &new).await, &view);
    a.stop().await;
    ts.finish().await;
}

// ----- JWT ---------------------------------------------------------------------------------------

async fn jwt_supplier_with_require_jwt_for_user_data() {
    const SUB: &str = "jwt-user";
    let ts = TestServer::start().await;
    let secret = ts.core().create_jwt_key(&ts.app, Some("k1")).await.unwrap().key.secret;
    ts.core()
        .update_application_settings(&ts.app, None, Some(true), None)
        .await
        .unwrap();
    let code = ts.app.application_code.clone();
    let token: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let supplier = {
        let token = token.clone();
        move || token.lock().unwrap().clone()
    };
    let set_token = |t: Option<String>| *token.lock().unwrap() = t;
    // Registration and installation calls keep App auth (mobile-api.md §2.3).
    let a = Device::start_with(&ts, |c| c.jwt_supplier = Some(Arc::new(supplier))).await;

    // No token: the server requires one.
    let before = ts.snapshot().await;
    let e = a.login_err(SUB, plain()).await;
    assert_api(&e, 401, ErrorCode::JwtInvalid);
    assert_same_store(&before, &ts.snapshot().await, "personalize without a JWT");

    // A good token passes on personalize, PATCH user and GET user.
    let good = || make_jwt("k1", &secret, &code, SUB, json!({}));
    set_token(Some(good()));
    let user = a
        .personalize(
            UserIdentity::external(SUB),
            Some(UserAttributes {
                first_name: Some("Jay".into()),
                ..Default::default()
            }),
            plain(),
        )
        .await
        .unwrap();
    assert_eq!(user.external_user_id.as_deref(), Some(SUB));
    reported(
        a.save_user(UserChanges {
            last_name: FieldChange::Set("Doe".into()),
            ..Default::default()
        })
        .await
        .unwrap(),
    );
    assert_eq!(
        person_of(&ts.snapshot().await, &a.id()).last_name.as_deref(),
        Some("Doe")
    );
    assert_eq!(a.fetch_user().await.unwrap().last_name.as_deref(), Some("Doe"));

    // Bad tokens: the server's code reaches the caller, nothing changes.
    let before = ts.snapshot().await;
    for bad in [
        make_jwt("k1", b"not the key of k1, but 32 bytes!", &code, SUB, json!({})),
        make_jwt("k1", &secret, &code, "somebody-else", json!({})),
        make_jwt("k2", &secret, &code, SUB, json!({})),
    ] {
        set_token(Some(bad));
        let e = a.fetch_user().await.unwrap_err();
        assert_api(&e, 401, ErrorCode::JwtInvalid);
    }
    // A PATCH with a bad token may heal with a later token: kept and retried (client-sdk.md §6.3).
    let outcome = a
        .save_user(UserChanges {
            middle_name: FieldChange::Set("M".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    match outcome {
        SaveOutcome::Queued(e) => assert_api(&e, 401, ErrorCode::JwtInvalid),
        SaveOutcome::Reported(u) => panic!("a bad token must not be accepted: {u:?}"),
    }
    assert_eq!(a.pending().user_fields, vec!["middleName"]);
    assert_same_store(&before, &ts.snapshot().await, "requests with bad JWTs");
    // An expired token is refused locally, before anything is sent.
    let n = now_secs();
    set_token(Some(make_jwt(
        "k1",
        &secret,
        &code,
        SUB,
        json!({"iat": n - 600, "exp": n - 300}),
    )));
    assert!(matches!(a.fetch_user().await.unwrap_err(), RosterError::JwtExpired));

    // A good token again: the kept change is delivered.
    set_token(Some(good()));
    let pending = a.sync_now().await.unwrap();
    assert!(pending.is_empty(), "{pending:?}");
    assert_eq!(
        person_of(&ts.snapshot().await, &a.id()).middle_name.as_deref(),
        Some("M")
    );
    a.stop().await;
    ts.finish().await;
}

on_every_backend!(
    registration_without_a_token_and_with_each_push_type,
    installation_changes_are_typed_and_own_primary_demotes_the_others,
    another_installation_of_the_user_is_made_primary,
    user_fields_tags_and_typed_attributes_through_the_delta,
    personalize_with_phone_email_and_the_three_flags,
    personalize_merges_an_anonymous_person_and_the_other_device_sees_it,
    depersonalize_own_and_remote_logout_of_another_installation,
    no_registration_recovery_after_the_server_deleted_the_installation,
    jwt_supplier_with_require_jwt_for_user_data,
);
