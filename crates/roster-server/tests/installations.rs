//! Installations over the mobile API (mobile-api.md §4.1, §5.1–5.5; people.md §2, §4, §6.2, §8):
//! create, read own / remote, PATCH own (tri-state), custom attribute typing, token hygiene,
//! remote primary, re-creation under a known id, deletion of an expired installation,
//! `lastSeenAt`.
mod common;

use common::{
    Resp, TestServer, ext_identity, flags, ipath, now_ms,
    people_helpers::{get_user, inst, instance_ids, person, person_of, personalize_in, register_in_with},
};
use roster_model::{AttributeScope, AttributeType, DefinitionOrigin, PersonType, PushServiceType, TokenClearedReason};
use roster_store::Snapshot;
use serde_json::{Value, json};

// ----- helpers ------------------------------------------------------------------------------

async fn get_inst(ts: &TestServer, id: &str, caller: Option<&str>) -> Resp {
    ts.call("GET", &ipath(id), caller, None).await
}

async fn patch_inst(ts: &TestServer, id: &str, caller: Option<&str>, body: Value) -> Resp {
    ts.call("PATCH", &ipath(id), caller, Some(&body)).await
}

fn has_inst(s: &Snapshot, id: &str) -> bool {
    s.installations.iter().any(|i| i.push_reg_id == id)
}

fn token(n: &str) -> String {
    format!("tok-{n}-{}", uuid::Uuid::new_v4().simple())
}

async fn register_with(ts: &TestServer, t: &str, tok: &str) -> String {
    ts.register(json!({"pushServiceType": t, "pushServiceToken": tok}))
        .await
}

/// Two installations under one person: both personalized with the same `externalUserId`.
async fn two_of_one_person(ts: &TestServer, ext: &str) -> (String, String) {
    let a = ts.register_android().await;
    let b = ts.register_android().await;
    for id in [&a, &b] {
        ts.personalize_as(id, ext).await;
    }
    (a, b)
}

// ----- create -------------------------------------------------------------------------------

async fn create_android_style_body() {
    let ts = TestServer::start().await;
    let before = now_ms();
    let body = json!({
        "regEnabled": true, "notificationsEnabled": true, "sdkVersion": "15.0.0", "appVersion": "3.2.1",
        "os": "Android", "osVersion": "14", "deviceManufacturer": "Google", "deviceModel": "Pixel 8",
        "deviceSecure": true, "language": "en", "deviceTimezoneOffset": "GMT+01:00", "deviceName": "Pixel 8",
        "pushServiceType": "Firebase", "pushServiceToken": "fcm-token-1", "isPrimary": true
    });
    let r = ts
        .call("POST", "/mobile/1/appinstance?ri=true", None, Some(&body))
        .await
        .ok();
    let j = r.json();
    let id = j["pushRegId"].as_str().unwrap().to_string();
    assert_eq!(
        j,
        json!({
            "pushRegId": id, "pushServiceType": "Firebase", "pushServiceToken": "fcm-token-1",
            "regEnabled": true, "isPrimary": true, "notificationsEnabled": true, "customAttributes": {},
            "sdkVersion": "15.0.0", "appVersion": "3.2.1", "os": "Android", "osVersion": "14",
            "deviceManufacturer": "Google", "deviceModel": "Pixel 8", "deviceName": "Pixel 8",
            "deviceSecure": true, "language": "en", "deviceTimezoneOffset": "GMT+01:00"
        })
    );
    // pushRegId: a lowercase UUIDv4.
    let u = uuid::Uuid::parse_str(&id).unwrap();
    assert_eq!(u.get_version_num(), 4);
    assert_eq!(id, id.to_ascii_lowercase());
    let s = ts.snapshot().await;
    let i = inst(&s, &id);
    assert_eq!(i.application_id, ts.app.id);
    assert_eq!(i.push_service_type, Some(PushServiceType::Firebase));
    assert!(i.is_primary);
    // people.md §2.7: lastSeenAt is set at creation.
    assert!(
        i.last_seen_at >= before && i.last_seen_at <= now_ms(),
        "lastSeenAt {}",
        i.last_seen_at
    );
    assert_eq!(i.last_seen_at, i.created_at);
    assert_eq!(i.token_cleared_reason, None);
    // A new anonymous LEAD person with no data.
    let p = person_of(&s, &id);
    assert!(p.is_anonymous());
    assert_eq!(p.person_type, PersonType::Lead);
    assert!(p.tags.is_empty() && p.custom_attributes.is_empty() && p.first_name.is_none());
    ts.finish().await;
}

async fn create_ios_style_body_with_flags_and_attributes() {
    let ts = TestServer::start().await;
    let body = json!({
        "applicationUserId": "app-user-7", "customAttributes": {"tier": "gold", "score": 5, "beta": true},
        "deviceManufacturer": "Apple", "deviceModel": "iPhone16,1", "deviceName": "Ana's iPhone",
        "deviceSecure": true, "deviceTimezoneOffset": "GMT+01:00", "inappchat": true, "inbox": false,
        "isPrimary": false, "language": "hr", "notificationsEnabled": false, "os": "iOS", "osVersion": "18.1",
        "pushServiceToken": "0B30557A9FC4E90E", "pushServiceType": "APNS", "regEnabled": false,
        "sdkVersion": "15.5.2", "webrtcui": true, "appVersion": "3.2.1"
    });
    let r = ts
        .call("POST", "/mobile/1/appinstance?rt=1", None, Some(&body))
        .await
        .ok();
    let j = r.json();
    let id = j["pushRegId"].as_str().unwrap().to_string();
    assert_eq!(
        j,
        json!({
            "pushRegId": id, "pushServiceType": "APNS", "pushServiceToken": "0b30557a9fc4e90e",
            "regEnabled": false, "isPrimary": false, "notificationsEnabled": false,
            "applicationUserId": "app-user-7",
            "customAttributes": {"beta": true, "score": 5, "tier": "gold"},
            "sdkVersion": "15.5.2", "appVersion": "3.2.1", "os": "iOS", "osVersion": "18.1",
            "deviceManufacturer": "Apple", "deviceModel": "iPhone16,1", "deviceName": "Ana's iPhone",
            "deviceSecure": true, "language": "hr", "deviceTimezoneOffset": "GMT+01:00",
            "inappchat": true, "inbox": false, "webrtcui": true
        })
    );
    // GET own echoes the same.
    let g = get_inst(&ts, &id, Some(&id)).await.ok();
    assert_eq!(g.json(), j);
    let s = ts.snapshot().await;
    let i = inst(&s, &id);
    assert_eq!(i.push_service_token.as_deref(), Some("0b30557a9fc4e90e"));
    assert_eq!(i.system.inappchat, Some(true));
    assert_eq!(i.system.inbox, Some(false));
    assert_eq!(i.system.webrtcui, Some(true));
    // Installation-scope definitions auto-created.
    let def = |n: &str| {
        s.attribute_definitions
            .iter()
            .find(|d| d.name == n && d.scope == AttributeScope::Installation)
            .unwrap_or_else(|| panic!("no definition {n}"))
    };
    assert_eq!(def("tier").attr_type, AttributeType::String);
    assert_eq!(def("score").attr_type, AttributeType::Decimal);
    assert_eq!(def("beta").attr_type, AttributeType::Boolean);
    assert_eq!(def("tier").origin, DefinitionOrigin::Auto);
    ts.finish().await;
}

async fn create_with_empty_body_has_the_always_fields_only() {
    let ts = TestServer::start().await;
    let r = ts.call_bytes("POST", "/mobile/1/appinstance", None, None).await.ok();
    let j = r.json();
    let id = j["pushRegId"].as_str().unwrap();
    assert_eq!(
        j,
        json!({"pushRegId": id, "regEnabled": true, "isPrimary": false, "customAttributes": {}})
    );
    // Whitespace-only body is {} too.
    let r = ts
        .call_bytes("POST", "/mobile/1/appinstance", None, Some(b" \n\t ".to_vec()))
        .await
        .ok();
    assert_eq!(r.json().as_object().unwrap().len(), 4);
    ts.finish().await;
}

async fn every_new_installation_gets_its_own_person() {
    let ts = TestServer::start().await;
    let a = ts.register_android().await;
    let b = ts.register_android().await;
    assert_ne!(a, b);
    let s = ts.snapshot().await;
    assert_ne!(inst(&s, &a).person_id, inst(&s, &b).person_id);
    assert_eq!(s.persons.len(), 2);
    ts.finish().await;
}

// ----- GET own / remote ---------------------------------------------------------------------

async fn get_own_and_remote_installation() {
    let ts = TestServer::start().await;
    let (a, b) = two_of_one_person(&ts, "u-get").await;
    let c = ts.register_android().await;

    // Own: with token, with and without the header.
    let own = get_inst(&ts, &a, Some(&a)).await.ok().json();
    assert_eq!(own["pushRegId"], a.as_str());
    assert!(own["pushServiceToken"].is_string());
    let own2 = get_inst(&ts, &a, None).await.ok().json();
    assert_eq!(own, own2);
    // The header in upper case is still the caller itself.
    let own3 = get_inst(&ts, &a, Some(&a.to_uppercase())).await.ok().json();
    assert!(own3["pushServiceToken"].is_string());

    // Remote, same person: 200 without token, the always fields present.
    let remote = get_inst(&ts, &a, Some(&b)).await.ok().json();
    assert_eq!(remote["pushRegId"], a.as_str());
    assert!(remote.get("pushServiceToken").is_none(), "{remote}");
    assert_eq!(remote["regEnabled"], true);
    assert_eq!(remote["isPrimary"], false);
    assert_eq!(remote["customAttributes"], json!({}));
    let mut own_without_token = own.clone();
    own_without_token.as_object_mut().unwrap().remove("pushServiceToken");
    assert_eq!(remote, own_without_token);

    // Remote, another person: 403.
    get_inst(&ts, &a, Some(&c))
        .await
        .assert_error(403, "FORBIDDEN_INSTALLATION");
    // Remote, unknown target and non-UUID target: 403, never NO_REGISTRATION.
    let unknown = uuid::Uuid::new_v4().to_string();
    get_inst(&ts, &unknown, Some(&a))
        .await
        .assert_error(403, "FORBIDDEN_INSTALLATION");
    get_inst(&ts, "not-a-uuid", Some(&a))
        .await
        .assert_error(403, "FORBIDDEN_INSTALLATION");
    // Unknown caller (header) on a known target: 404.
    get_inst(&ts, &a, Some(&unknown))
        .await
        .assert_error(404, "NO_REGISTRATION");
    // Unknown own id, non-UUID own id: 404.
    get_inst(&ts, &unknown, None).await.assert_error(404, "NO_REGISTRATION");
    get_inst(&ts, "not-a-uuid", None)
        .await
        .assert_error(404, "NO_REGISTRATION");
    ts.finish().await;
}

async fn installations_of_another_application_are_unknown() {
    let ts = TestServer::start().await;
    let other = ts.other_app().await;
    let a = ts.register_android().await;
    let x = register_in_with(&ts, &other, &json!({})).await;
    // x is unknown in the test application: as caller 404, as remote target 403.
    get_inst(&ts, &x, None).await.assert_error(404, "NO_REGISTRATION");
    get_inst(&ts, &x, Some(&a))
        .await
        .assert_error(403, "FORBIDDEN_INSTALLATION");
    ts.finish().await;
}

// ----- PATCH own ----------------------------------------------------------------------------

async fn patch_own_tri_state() {
    let ts = TestServer::start().await;
    let id = ts
        .register(json!({
            "pushServiceType": "Firebase", "pushServiceToken": token("p"), "notificationsEnabled": true,
            "sdkVersion": "15.0.0", "appVersion": "1.0", "os": "Android", "osVersion": "14",
            "deviceManufacturer": "Google", "deviceModel": "Pixel", "deviceName": "Mine", "deviceSecure": true,
            "language": "en", "deviceTimezoneOffset": "GMT+01:00", "applicationUserId": "au",
            "inappchat": true
        }))
        .await;
    let full = get_inst(&ts, &id, None).await.ok().json();

    // {} changes nothing.
    let s0 = ts.snapshot().await;
    let r = patch_inst(&ts, &id, Some(&id), json!({})).await.ok();
    assert_eq!(r.json(), full);
    assert_eq!(ts.snapshot().await, s0);

    // Set regEnabled false, isPrimary true, notificationsEnabled false.
    let r = patch_inst(
        &ts,
        &id,
        None,
        json!({"regEnabled": false, "isPrimary": true, "notificationsEnabled": false}),
    )
    .await
    .ok()
    .json();
    assert_eq!(r["regEnabled"], false);
    assert_eq!(r["isPrimary"], true);
    assert_eq!(r["notificationsEnabled"], false);
    assert_eq!(r["sdkVersion"], "15.0.0", "absent keeps");

    // null resets: regEnabled -> true, isPrimary -> false; notificationsEnabled absent: kept.
    let r = patch_inst(&ts, &id, None, json!({"regEnabled": null, "isPrimary": null}))
        .await
        .ok()
        .json();
    assert_eq!(r["regEnabled"], true);
    assert_eq!(r["isPrimary"], false);
    assert_eq!(r["notificationsEnabled"], false);

    // System data: null and "" clear; booleans null clear; pushServiceType null is ignored.
    let r = patch_inst(
        &ts,
        &id,
        None,
        json!({"sdkVersion": "", "os": null, "deviceSecure": null, "notificationsEnabled": null,
               "applicationUserId": "", "inappchat": null, "pushServiceType": null, "language": ""}),
    )
    .await
    .ok()
    .json();
    for gone in [
        "sdkVersion",
        "os",
        "deviceSecure",
        "notificationsEnabled",
        "applicationUserId",
        "inappchat",
        "language",
    ] {
        assert!(r.get(gone).is_none(), "{gone} must be cleared: {r}");
    }
    assert_eq!(r["pushServiceType"], "Firebase");
    assert_eq!(r["appVersion"], "1.0");
    assert_eq!(r["deviceModel"], "Pixel");
    assert!(r["pushServiceToken"].is_string());
    let s = ts.snapshot().await;
    let i = inst(&s, &id);
    assert_eq!(i.system.sdk_version, None);
    assert_eq!(i.system.os, None);
    assert_eq!(i.system.language, None);
    assert_eq!(i.application_user_id, None);
    assert_eq!(i.system.device_model.as_deref(), Some("Pixel"));

    // Strings over 255 characters are truncated (scalar values), not rejected.
    let long: String = "é".repeat(300);
    let r = patch_inst(
        &ts,
        &id,
        None,
        json!({"deviceName": long, "osVersion": "x".repeat(256), "language": "hr"}),
    )
    .await
    .ok()
    .json();
    assert_eq!(r["deviceName"].as_str().unwrap().chars().count(), 255);
    assert_eq!(r["deviceName"].as_str().unwrap(), "é".repeat(255));
    assert_eq!(r["osVersion"].as_str().unwrap(), "x".repeat(255));
    assert_eq!(r["language"], "hr");
    let s = ts.snapshot().await;
    assert_eq!(
        inst(&s, &id).system.device_name.as_deref(),
        Some("é".repeat(255).as_str())
    );

    // applicationUserId: 256 ok, 257 rejected.
    patch_inst(&ts, &id, None, json!({"applicationUserId": "a".repeat(256)}))
        .await
        .ok();
    let r = patch_inst(&ts, &id, None, json!({"applicationUserId": "a".repeat(257)})).await;
    r.assert_error(400, "REQUEST_FORMAT_INVALID");
    assert!(r.text().contains("applicationUserId"), "{}", r.text());
    ts.finish().await;
}

async fn patch_own_is_primary_demotes_the_persons_others() {
    let ts = TestServer::start().await;
    let (a, b) = two_of_one_person(&ts, "u-prim").await;
    patch_inst(&ts, &a, None, json!({"isPrimary": true})).await.ok();
    patch_inst(&ts, &b, None, json!({"isPrimary": true})).await.ok();
    let s = ts.snapshot().await;
    assert!(!inst(&s, &a).is_primary);
    assert!(inst(&s, &b).is_primary);
    // isPrimary false clears only the own flag; nobody else is promoted.
    patch_inst(&ts, &b, None, json!({"isPrimary": false})).await.ok();
    let s = ts.snapshot().await;
    assert!(!inst(&s, &a).is_primary && !inst(&s, &b).is_primary);
    ts.finish().await;
}

// ----- custom attributes ----------------------------------------------------------------------

async fn custom_attribute_typing_and_auto_definition() {
    let ts = TestServer::start().await;
    let id = ts.register_android().await;
    let r = patch_inst(
        &ts,
        &id,
        None,
        json!({"customAttributes": {
            "n": 120, "n2": 120.0, "f": 19.99, "d": "2024-02-29",
            "dt": "2020-02-26T09:41:57.123456+00:00", "dt2": "2021-01-02T03:04:05.5Z",
            "s": "gold", "b": true
        }}),
    )
    .await
    .ok();
    let text = r.text();
    assert!(text.contains(r#""n":120,"#), "integral DECIMAL emitted as 120: {text}");
    assert!(text.contains(r#""n2":120,"#), "120.0 emitted as 120: {text}");
    assert!(text.contains(r#""f":19.99"#), "{text}");
    assert_eq!(
        r.json()["customAttributes"],
        json!({"b": true, "d": "2024-02-29", "dt": "2020-02-26T09:41:57Z", "dt2": "2021-01-02T03:04:05Z",
               "f": 19.99, "n": 120, "n2": 120, "s": "gold"})
    );
    let s = ts.snapshot().await;
    let ty = |n: &str| {
        s.attribute_definitions
            .iter()
            .find(|d| d.name == n && d.scope == AttributeScope::Installation)
            .map(|d| (d.attr_type, d.origin))
    };
    assert_eq!(ty("n"), Some((AttributeType::Decimal, DefinitionOrigin::Auto)));
    assert_eq!(ty("f"), Some((AttributeType::Decimal, DefinitionOrigin::Auto)));
    assert_eq!(ty("d"), Some((AttributeType::Date, DefinitionOrigin::Auto)));
    assert_eq!(ty("dt"), Some((AttributeType::DateTime, DefinitionOrigin::Auto)));
    assert_eq!(ty("dt2"), Some((AttributeType::DateTime, DefinitionOrigin::Auto)));
    assert_eq!(ty("s"), Some((AttributeType::String, DefinitionOrigin::Auto)));
    assert_eq!(ty("b"), Some((AttributeType::Boolean, DefinitionOrigin::Auto)));
    // Person scope is another namespace: none of these is defined there.
    assert!(
        !s.attribute_definitions
            .iter()
            .any(|d| d.scope == AttributeScope::Person)
    );

    // A later wrong-typed write is rejected, naming the field, and changes nothing.
    let before = ts.snapshot().await;
    for (body, field) in [
        (json!({"customAttributes": {"n": "abc"}}), "customAttributes.n"),
        (json!({"customAttributes": {"b": 1}}), "customAttributes.b"),
        (json!({"customAttributes": {"s": 5}}), "customAttributes.s"),
        (json!({"customAttributes": {"d": "2024-02-30"}}), "customAttributes.d"),
        (
            json!({"customAttributes": {"d": "2024-02-28T00:00:00Z"}}),
            "customAttributes.d",
        ),
        (
            json!({"customAttributes": {"dt": "2020-02-26T09:41:57+01:00"}}),
            "customAttributes.dt",
        ),
        (
            json!({"customAttributes": {"newArr": [{"a": 1}]}}),
            "customAttributes.newArr",
        ),
        (
            json!({"customAttributes": {"newObj": {"a": 1}}}),
            "customAttributes.newObj",
        ),
        (json!({"customAttributes": {"s": {"a": 1}}}), "customAttributes.s"),
        (json!({"customAttributes": {"$bad": 1}}), "customAttributes.$bad"),
        (
            json!({"customAttributes": {"ok1": "x", "n": true}}),
            "customAttributes.n",
        ),
    ] {
        let r = patch_inst(&ts, &id, None, body.clone()).await;
        r.assert_error(400, "REQUEST_FORMAT_INVALID");
        assert!(
            r.text().contains(field),
            "{body}: text {} should name {field}",
            r.text()
        );
    }
    assert_eq!(ts.snapshot().await, before, "rejected attribute writes change nothing");

    // A STRING attribute accepts a date-shaped string as a plain string.
    let r = patch_inst(&ts, &id, None, json!({"customAttributes": {"s": "2024-01-01"}}))
        .await
        .ok();
    assert_eq!(r.json()["customAttributes"]["s"], "2024-01-01");

    // null deletes one key; absent keys stay; {} changes nothing.
    let r = patch_inst(&ts, &id, None, json!({"customAttributes": {"n": null, "f": 1.5}}))
        .await
        .ok()
        .json();
    assert!(r["customAttributes"].get("n").is_none());
    assert_eq!(r["customAttributes"]["f"], 1.5);
    assert_eq!(r["customAttributes"]["b"], true);
    let r = patch_inst(&ts, &id, None, json!({"customAttributes": {}}))
        .await
        .ok()
        .json();
    assert_eq!(r["customAttributes"].as_object().unwrap().len(), 7);
    // Deleting an attribute keeps its definition.
    assert!(ts.snapshot().await.attribute_definitions.iter().any(|d| d.name == "n"));
    // customAttributes: null deletes all.
    let r = patch_inst(&ts, &id, None, json!({"customAttributes": null}))
        .await
        .ok()
        .json();
    assert_eq!(r["customAttributes"], json!({}));
    assert!(inst(&ts.snapshot().await, &id).custom_attributes.is_empty());
    ts.finish().await;
}

async fn custom_attribute_limit_is_250_after_the_change() {
    let ts = TestServer::start().await;
    let id = ts.register_android().await;
    let many = |from: usize, to: usize| {
        let mut m = serde_json::Map::new();
        for i in from..to {
            m.insert(format!("a{i:03}"), json!(i));
        }
        Value::Object(m)
    };
    // 251 at once on an empty installation: rejected.
    let r = patch_inst(&ts, &id, None, json!({"customAttributes": many(0, 251)})).await;
    r.assert_error(400, "REQUEST_FORMAT_INVALID");
    assert!(inst(&ts.snapshot().await, &id).custom_attributes.is_empty());
    // 250: accepted.
    let r = patch_inst(&ts, &id, None, json!({"customAttributes": many(0, 250)}))
        .await
        .ok();
    assert_eq!(r.json()["customAttributes"].as_object().unwrap().len(), 250);
    // One more: rejected.
    patch_inst(&ts, &id, None, json!({"customAttributes": {"extra": 1}}))
        .await
        .assert_error(400, "REQUEST_FORMAT_INVALID");
    // Delete one and add one in the same request: still 250, accepted.
    let r = patch_inst(&ts, &id, None, json!({"customAttributes": {"a000": null, "extra": 1}}))
        .await
        .ok();
    assert_eq!(r.json()["customAttributes"].as_object().unwrap().len(), 250);
    // Create with 251: rejected too, nothing created.
    let n = ts.snapshot().await.installations.len();
    ts.create(&json!({"customAttributes": many(0, 251)}))
        .await
        .assert_error(400, "REQUEST_FORMAT_INVALID");
    assert_eq!(ts.snapshot().await.installations.len(), n);
    ts.finish().await;
}

// ----- token hygiene --------------------------------------------------------------------------

async fn same_token_same_provider_moves_to_the_new_holder() {
    let ts = TestServer::start().await;
    let t = token("move");
    let a = register_with(&ts, "Firebase", &t).await;
    patch_inst(
        &ts,
        &a,
        None,
        json!({"isPrimary": true, "customAttributes": {"k": "v"}}),
    )
    .await
    .ok();
    // GCM is the same provider (FCM) as Firebase.
    let b = register_with(&ts, "GCM", &t).await;
    let s = ts.snapshot().await;
    let ia = inst(&s, &a);
    assert_eq!(ia.push_service_token, None);
    assert_eq!(ia.token_cleared_reason, Some(TokenClearedReason::TakenOver));
    assert!(ia.token_cleared_at.is_some());
    // A keeps everything else.
    assert!(ia.is_primary);
    assert_eq!(ia.custom_attributes.get("k"), Some(&json!("v")));
    assert_eq!(ia.push_service_type, Some(PushServiceType::Firebase));
    assert_eq!(inst(&s, &b).push_service_token.as_deref(), Some(t.as_str()));
    // A's own view no longer has a token.
    let j = get_inst(&ts, &a, None).await.ok().json();
    assert!(j.get("pushServiceToken").is_none(), "{j}");
    assert_eq!(j["pushServiceType"], "Firebase");

    // A takes it back by PATCH: B loses it.
    patch_inst(&ts, &a, None, json!({"pushServiceToken": t})).await.ok();
    let s = ts.snapshot().await;
    assert_eq!(inst(&s, &a).push_service_token.as_deref(), Some(t.as_str()));
    assert_eq!(inst(&s, &b).push_service_token, None);
    assert_eq!(inst(&s, &b).token_cleared_reason, Some(TokenClearedReason::TakenOver));
    ts.finish().await;
}

async fn apns_tokens_are_lowercased_and_compared_case_insensitively() {
    let ts = TestServer::start().await;
    let a = register_with(&ts, "APNS", "ABCDEF0123456789ABCDEF").await;
    let s = ts.snapshot().await;
    assert_eq!(
        inst(&s, &a).push_service_token.as_deref(),
        Some("abcdef0123456789abcdef")
    );
    // Case-insensitive type on input, stored and returned as APNS.
    let b = register_with(&ts, "apns", "abcdef0123456789ABCDEF").await;
    let s = ts.snapshot().await;
    assert_eq!(inst(&s, &a).push_service_token, None);
    assert_eq!(inst(&s, &a).token_cleared_reason, Some(TokenClearedReason::TakenOver));
    assert_eq!(
        inst(&s, &b).push_service_token.as_deref(),
        Some("abcdef0123456789abcdef")
    );
    assert_eq!(get_inst(&ts, &b, None).await.ok().json()["pushServiceType"], "APNS");
    // PATCH with an upper-case APNs token is lowercased as well.
    let r = patch_inst(&ts, &b, None, json!({"pushServiceToken": "FFEE"}))
        .await
        .ok();
    assert_eq!(r.json()["pushServiceToken"], "ffee");
    ts.finish().await;
}

async fn tokens_of_other_providers_or_apps_or_case_do_not_collide() {
    let ts = TestServer::start().await;
    let t = token("nocollide");
    let a = register_with(&ts, "Firebase", &t).await;
    // HMS: another provider.
    let h = register_with(&ts, "HMS", &t).await;
    // FCM tokens are compared exactly: another case is another token.
    let upper = register_with(&ts, "Firebase", &t.to_uppercase()).await;
    // Another application of the same account.
    let other = ts.other_app().await;
    let x = register_in_with(
        &ts,
        &other,
        &json!({"pushServiceType": "Firebase", "pushServiceToken": t}),
    )
    .await;
    let s = ts.snapshot().await;
    for id in [&a, &h, &upper, &x] {
        assert!(inst(&s, id).push_service_token.is_some(), "{id} kept its token");
        assert_eq!(inst(&s, id).token_cleared_reason, None);
    }
    ts.finish().await;
}

async fn token_needs_a_type_and_null_clears_with_reason_device() {
    let ts = TestServer::start().await;
    // Create with a token but without a type: 400, nothing created.
    let r = ts.create(&json!({"pushServiceToken": "t-no-type"})).await;
    r.assert_error(400, "REQUEST_FORMAT_INVALID");
    assert!(r.text().contains("pushServiceToken"), "{}", r.text());
    assert!(ts.snapshot().await.installations.is_empty());
    // Unknown type: 400.
    ts.create(&json!({"pushServiceType": "WNS", "pushServiceToken": "t"}))
        .await
        .assert_error(400, "REQUEST_FORMAT_INVALID");
    // Token with whitespace: 400.
    ts.create(&json!({"pushServiceType": "Firebase", "pushServiceToken": "a b"}))
        .await
        .assert_error(400, "REQUEST_FORMAT_INVALID");

    // An installation without a type: PATCH with a token only is 400; with a type it works.
    let id = ts.register(json!({"os": "Android"})).await;
    patch_inst(&ts, &id, None, json!({"pushServiceToken": "t1"}))
        .await
        .assert_error(400, "REQUEST_FORMAT_INVALID");
    patch_inst(
        &ts,
        &id,
        None,
        json!({"pushServiceType": "Firebase", "pushServiceToken": "t1"}),
    )
    .await
    .ok();
    // The type is stored now: a token alone is fine.
    let r = patch_inst(&ts, &id, None, json!({"pushServiceToken": "t2"})).await.ok();
    assert_eq!(r.json()["pushServiceToken"], "t2");

    // null clears, reason DEVICE.
    let r = patch_inst(&ts, &id, None, json!({"pushServiceToken": null}))
        .await
        .ok()
        .json();
    assert!(r.get("pushServiceToken").is_none());
    assert_eq!(r["pushServiceType"], "Firebase");
    let s = ts.snapshot().await;
    assert_eq!(inst(&s, &id).push_service_token, None);
    assert_eq!(inst(&s, &id).token_cleared_reason, Some(TokenClearedReason::Device));
    assert!(inst(&s, &id).token_cleared_at.is_some());
    ts.finish().await;
}

// ----- remote PATCH (§5.4) ---------------------------------------------------------------------

async fn remote_patch_is_primary_demotes_others_and_only_is_primary_is_allowed() {
    let ts = TestServer::start().await;
    let (a, b) = two_of_one_person(&ts, "u-remote").await;
    let c = ts.register_android().await;
    patch_inst(&ts, &a, None, json!({"isPrimary": true})).await.ok();

    // From A: make B primary; A (the caller) is demoted in the same transaction.
    let r = patch_inst(&ts, &b, Some(&a), json!({"isPrimary": true}))
        .await
        .ok()
        .json();
    assert_eq!(r["pushRegId"], b.as_str());
    assert_eq!(r["isPrimary"], true);
    assert!(r.get("pushServiceToken").is_none(), "remote response has no token: {r}");
    let s = ts.snapshot().await;
    assert!(inst(&s, &b).is_primary);
    assert!(!inst(&s, &a).is_primary);

    // Any other installation field (even null, even unchanged) is 403 and changes nothing.
    let before = ts.snapshot().await;
    for body in [
        json!({"isPrimary": true, "regEnabled": true}),
        json!({"isPrimary": false, "customAttributes": {}}),
        json!({"regEnabled": null}),
        json!({"pushServiceToken": "steal"}),
        json!({"isPrimary": false, "sdkVersion": "1"}),
        json!({"isPrimary": false, "applicationUserId": null}),
    ] {
        patch_inst(&ts, &b, Some(&a), body)
            .await
            .assert_error(403, "FORBIDDEN_INSTALLATION");
    }
    assert_eq!(ts.snapshot().await, before);

    // Unknown fields are ignored; a missing isPrimary is a no-op.
    patch_inst(&ts, &b, Some(&a), json!({"somethingElse": 1})).await.ok();
    patch_inst(&ts, &b, Some(&a), json!({})).await.ok();
    assert_eq!(ts.snapshot().await, before);

    // false clears the target only; nobody is promoted. null counts as false.
    let r = patch_inst(&ts, &b, Some(&a), json!({"isPrimary": false, "x": 1}))
        .await
        .ok();
    assert_eq!(r.json()["isPrimary"], false);
    let s = ts.snapshot().await;
    assert!(!inst(&s, &a).is_primary && !inst(&s, &b).is_primary);
    patch_inst(&ts, &b, Some(&a), json!({"isPrimary": true})).await.ok();
    patch_inst(&ts, &b, Some(&a), json!({"isPrimary": null})).await.ok();
    assert!(!inst(&ts.snapshot().await, &b).is_primary);

    // Another person's installation, an unknown one: 403.
    patch_inst(&ts, &c, Some(&a), json!({"isPrimary": true}))
        .await
        .assert_error(403, "FORBIDDEN_INSTALLATION");
    let unknown = uuid::Uuid::new_v4().to_string();
    patch_inst(&ts, &unknown, Some(&a), json!({"isPrimary": true}))
        .await
        .assert_error(403, "FORBIDDEN_INSTALLATION");
    // Unknown caller: 404.
    patch_inst(&ts, &a, Some(&unknown), json!({"isPrimary": true}))
        .await
        .assert_error(404, "NO_REGISTRATION");
    assert!(!inst(&ts.snapshot().await, &c).is_primary);
    ts.finish().await;
}

// ----- re-creation (§5.3, people.md §2.4) ------------------------------------------------------

async fn re_creation_of_an_unknown_own_id_with_type_and_token() {
    let ts = TestServer::start().await;
    let t = token("recreate");
    let holder = register_with(&ts, "Firebase", &t).await;
    let id = uuid::Uuid::new_v4().to_string().to_uppercase();
    let body = json!({
        "pushServiceType": "Firebase", "pushServiceToken": t, "os": "Android", "sdkVersion": "15.0.0",
        "notificationsEnabled": true, "customAttributes": {"r": 1}
    });
    // Android: POST + override, caller header = the id itself.
    let r = ts
        .call_with(
            "POST",
            &ipath(&id),
            &[("authorization", &ts.app_auth()), ("x-http-method-override", "PATCH")],
            Some(&id),
            Some(body.to_string().into_bytes()),
        )
        .await
        .ok();
    let j = r.json();
    let lower = id.to_lowercase();
    assert_eq!(j["pushRegId"], lower.as_str());
    assert_eq!(j["pushServiceToken"], t.as_str());
    assert_eq!(j["customAttributes"], json!({"r": 1}));
    assert_eq!(j["regEnabled"], true);
    assert_eq!(j["isPrimary"], false);
    let s = ts.snapshot().await;
    assert!(has_inst(&s, &lower));
    let p = person_of(&s, &lower);
    assert!(p.is_anonymous());
    assert_eq!(p.person_type, PersonType::Lead);
    assert_eq!(
        s.installations.iter().filter(|i| i.person_id == p.id).count(),
        1,
        "a new person of its own"
    );
    // Token hygiene applies to re-creation.
    assert_eq!(inst(&s, &holder).push_service_token, None);
    assert_eq!(
        inst(&s, &holder).token_cleared_reason,
        Some(TokenClearedReason::TakenOver)
    );
    // Then repersonalize works.
    let r = ts
        .call(
            "POST",
            &format!("{}/repersonalize", ipath(&lower)),
            Some(&lower),
            Some(&json!({"userIdentity": {"externalUserId": "back-again"}, "userAttributes": {"firstName": "B"}})),
        )
        .await
        .ok()
        .json();
    assert_eq!(r["externalUserId"], "back-again");
    assert_eq!(r["type"], "CUSTOMER");
    assert_eq!(r["instances"][0]["pushRegId"], lower.as_str());
    // The re-created installation is a normal one now: a second PATCH is a plain update.
    patch_inst(&ts, &lower, None, json!({"language": "de"})).await.ok();
    ts.finish().await;
}

async fn unknown_own_id_without_type_and_token_or_invalid_is_no_registration() {
    let ts = TestServer::start().await;
    let id = uuid::Uuid::new_v4().to_string();
    let before = ts.snapshot().await;
    for body in [
        json!({"pushServiceToken": "t"}),
        json!({"pushServiceType": "Firebase"}),
        json!({"pushServiceType": "Firebase", "pushServiceToken": null}),
        json!({"os": "Android"}),
        json!({}),
    ] {
        patch_inst(&ts, &id, None, body)
            .await
            .assert_error(404, "NO_REGISTRATION");
    }
    // A non-UUID id cannot be re-created.
    patch_inst(
        &ts,
        "legacy-id-123",
        None,
        json!({"pushServiceType": "Firebase", "pushServiceToken": "t"}),
    )
    .await
    .assert_error(404, "NO_REGISTRATION");
    // An id used in another application cannot be re-created here.
    let other = ts.other_app().await;
    let foreign = register_in_with(&ts, &other, &json!({})).await;
    let before_foreign = ts.snapshot().await;
    patch_inst(
        &ts,
        &foreign,
        None,
        json!({"pushServiceType": "Firebase", "pushServiceToken": "t"}),
    )
    .await
    .assert_error(404, "NO_REGISTRATION");
    assert_eq!(ts.snapshot().await, before_foreign);
    assert_eq!(before.installations.len() + 1, before_foreign.installations.len());
    // Any UUID version is accepted for re-creation (here a version-1 shaped id, upper case);
    // the id and an APNs token are stored lower case.
    let v1 = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
    let r = patch_inst(
        &ts,
        &v1.to_uppercase(),
        None,
        json!({"pushServiceType": "APNS", "pushServiceToken": "ABCDEF99"}),
    )
    .await
    .ok();
    assert_eq!(r.json()["pushRegId"], v1);
    assert_eq!(r.json()["pushServiceToken"], "abcdef99");
    let s = ts.snapshot().await;
    assert_eq!(inst(&s, v1).push_service_token.as_deref(), Some("abcdef99"));
    assert_eq!(person_of(&s, v1).person_type, PersonType::Lead);
    ts.finish().await;
}

// ----- DELETE expired (§5.5) --------------------------------------------------------------------

async fn delete_expired_installation_rules() {
    let ts = TestServer::start().await;
    let old = ts.register_android().await;
    let new = ts.register_android().await;
    let old_person = inst(&ts.snapshot().await, &old).person_id;

    // Header missing or equal to the path id: 403.
    let before = ts.snapshot().await;
    ts.call("DELETE", &ipath(&old), None, None)
        .await
        .assert_error(403, "FORBIDDEN_INSTALLATION");
    ts.call("DELETE", &ipath(&old), Some(&old), None)
        .await
        .assert_error(403, "FORBIDDEN_INSTALLATION");
    ts.call("DELETE", &ipath(&old), Some(&old.to_uppercase()), None)
        .await
        .assert_error(403, "FORBIDDEN_INSTALLATION");
    // Unknown caller: 404.
    let unknown = uuid::Uuid::new_v4().to_string();
    ts.call("DELETE", &ipath(&old), Some(&unknown), None)
        .await
        .assert_error(404, "NO_REGISTRATION");
    assert_eq!(ts.snapshot().await, before);

    // Unknown target (or not a UUID): 200, nothing changed.
    let r = ts.call("DELETE", &ipath(&unknown), Some(&new), None).await.ok();
    assert!(r.body.is_empty());
    ts.call("DELETE", &ipath("not-a-uuid"), Some(&new), None).await.ok();
    assert_eq!(ts.snapshot().await, before);

    // A target of another person in the same application: deleted with its anonymous person.
    let r = ts.call("DELETE", &ipath(&old), Some(&new), None).await.ok();
    assert_eq!(r.headers["content-length"], "0");
    let s = ts.snapshot().await;
    assert!(!has_inst(&s, &old));
    assert!(person(&s, old_person).is_none(), "its anonymous person is gone");
    assert!(has_inst(&s, &new));
    // Deleting again: unknown now, 200.
    ts.call("DELETE", &ipath(&old), Some(&new), None).await.ok();
    // The old id is no caller any more.
    get_inst(&ts, &old, None).await.assert_error(404, "NO_REGISTRATION");
    ts.finish().await;
}

async fn delete_expired_keeps_a_personalized_person() {
    let ts = TestServer::start().await;
    let old = ts
        .register_personalized_with(
            json!({"userIdentity": {"externalUserId": "keep-me"}, "userAttributes": {"firstName": "K"}}),
            &flags(false, false, true),
        )
        .await;
    let pid = inst(&ts.snapshot().await, &old).person_id;
    let new = ts.register_android().await;
    ts.call("DELETE", &ipath(&old), Some(&new), None).await.ok();
    let s = ts.snapshot().await;
    assert!(!has_inst(&s, &old));
    let p = s
        .persons
        .iter()
        .find(|p| p.id == pid)
        .expect("personalized person kept");
    assert_eq!(p.external_user_id.as_deref(), Some("keep-me"));
    assert_eq!(p.first_name.as_deref(), Some("K"));
    // Personalizing again with that identity finds the kept person.
    let r = ts.personalize_as(&new, "keep-me").await;
    assert_eq!(r["firstName"], "K");
    ts.finish().await;
}

async fn delete_expired_of_another_application_is_unknown() {
    let ts = TestServer::start().await;
    let other = ts.other_app().await;
    let foreign = register_in_with(&ts, &other, &json!({})).await;
    let me = ts.register_android().await;
    let before = ts.snapshot().await;
    ts.call("DELETE", &ipath(&foreign), Some(&me), None).await.ok();
    assert_eq!(
        ts.snapshot().await,
        before,
        "an installation of another app is not deleted"
    );
    ts.finish().await;
}

// ----- lastSeenAt (people.md §2.7) ---------------------------------------------------------------

async fn age_last_seen(ts: &TestServer, id: &str, minutes: i64) -> i64 {
    let mut tx = ts.store.begin().await.unwrap();
    let mut i = tx.installation(id).await.unwrap().unwrap();
    i.last_seen_at -= minutes * 60 * 1000;
    tx.update_installation(&i).await.unwrap();
    tx.commit().await.unwrap();
    i.last_seen_at
}

async fn last_seen_at_is_refreshed_only_when_stale_and_only_on_success() {
    let ts = TestServer::start().await;
    let id = ts.register_android().await;
    let other = ts.register_android().await;

    // 5 minutes old: a successful GET does not write.
    let fresh = age_last_seen(&ts, &id, 5).await;
    get_inst(&ts, &id, None).await.ok();
    assert_eq!(inst(&ts.snapshot().await, &id).last_seen_at, fresh);

    // 20 minutes old: a failing request does not write …
    let stale = age_last_seen(&ts, &id, 15).await;
    get_inst(&ts, &other, Some(&id))
        .await
        .assert_error(403, "FORBIDDEN_INSTALLATION");
    assert_eq!(inst(&ts.snapshot().await, &id).last_seen_at, stale);
    // … a successful one does.
    let t0 = now_ms();
    get_inst(&ts, &id, None).await.ok();
    let seen = inst(&ts.snapshot().await, &id).last_seen_at;
    assert!(seen >= t0, "lastSeenAt refreshed: {seen} < {t0}");

    // The caller of a GET user / PATCH is refreshed as well.
    let stale = age_last_seen(&ts, &id, 30).await;
    get_user(&ts, &id).await.ok();
    assert!(inst(&ts.snapshot().await, &id).last_seen_at > stale);
    let stale = age_last_seen(&ts, &id, 30).await;
    patch_inst(&ts, &id, None, json!({})).await.ok();
    assert!(inst(&ts.snapshot().await, &id).last_seen_at > stale);
    ts.finish().await;
}

// ----- applications and the primary flag across persons -------------------------------------------

async fn user_instances_only_show_installations_of_the_calling_application() {
    let ts = TestServer::start().await;
    let other = ts.other_app().await;
    let a = ts
        .register_personalized_with(ext_identity("multi-app"), &flags(false, false, true))
        .await;
    // An installation of the other application (same account) joins the same person.
    let x = register_in_with(
        &ts,
        &other,
        &json!({"pushServiceType": "Firebase", "pushServiceToken": "other-app-token"}),
    )
    .await;
    let r = personalize_in(
        &ts,
        &other,
        &x,
        &ext_identity("multi-app"),
        "setDeviceAsPrimary=1&keepAsLead=0&forceDepersonalize=0",
    )
    .await
    .json();
    // Seen from the other application: only its own installation.
    assert_eq!(r["instances"].as_array().unwrap().len(), 1);
    assert_eq!(r["instances"][0]["pushRegId"], x.as_str());
    let s = ts.snapshot().await;
    assert_eq!(inst(&s, &a).person_id, inst(&s, &x).person_id);
    // Primary is per (person, application): both stay primary.
    assert!(inst(&s, &a).is_primary && inst(&s, &x).is_primary);
    // Seen from the test application: only A.
    let u = get_user(&ts, &a).await.ok().json();
    assert_eq!(instance_ids(&u), vec![a.clone()]);
    // And the other application's installation is not reachable as a remote target.
    get_inst(&ts, &x, Some(&a))
        .await
        .assert_error(403, "FORBIDDEN_INSTALLATION");
    ts.finish().await;
}

async fn a_primary_installation_moving_to_a_person_with_a_primary_loses_its_flag() {
    let ts = TestServer::start().await;
    let a = ts
        .register_personalized_with(ext_identity("has-primary"), &flags(false, false, true))
        .await;
    // B is primary of its anonymous person, then logs in as the same user without asking for primary.
    let b = ts.register_primary(&token("b")).await;
    assert!(inst(&ts.snapshot().await, &b).is_primary);
    let r = ts.personalize_as(&b, "has-primary").await;
    let flags: Vec<(String, bool)> = r["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["pushRegId"].as_str().unwrap().to_string(),
                i["isPrimary"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(flags, vec![(a.clone(), true), (b.clone(), false)]);
    let s = ts.snapshot().await;
    assert!(inst(&s, &a).is_primary);
    assert!(!inst(&s, &b).is_primary);
    ts.finish().await;
}

on_every_backend!(
    create_android_style_body,
    create_ios_style_body_with_flags_and_attributes,
    create_with_empty_body_has_the_always_fields_only,
    every_new_installation_gets_its_own_person,
    get_own_and_remote_installation,
    installations_of_another_application_are_unknown,
    patch_own_tri_state,
    patch_own_is_primary_demotes_the_persons_others,
    custom_attribute_typing_and_auto_definition,
    custom_attribute_limit_is_250_after_the_change,
    same_token_same_provider_moves_to_the_new_holder,
    apns_tokens_are_lowercased_and_compared_case_insensitively,
    tokens_of_other_providers_or_apps_or_case_do_not_collide,
    token_needs_a_type_and_null_clears_with_reason_device,
    remote_patch_is_primary_demotes_others_and_only_is_primary_is_allowed,
    re_creation_of_an_unknown_own_id_with_type_and_token,
    unknown_own_id_without_type_and_token_or_invalid_is_no_registration,
    delete_expired_installation_rules,
    delete_expired_keeps_a_personalized_person,
    delete_expired_of_another_application_is_unknown,
    last_seen_at_is_refreshed_only_when_stale_and_only_on_success,
    user_instances_only_show_installations_of_the_calling_application,
    a_primary_installation_moving_to_a_person_with_a_primary_loses_its_flag,
);
