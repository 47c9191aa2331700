//! Every error code of mobile-api.md §3.2 reached over the mobile API, the processing order of
//! §3.3, and "a rejected request changes nothing" (people.md invariant 16).
mod common;

use common::{
    NO_FLAGS, Resp, TestServer, ext_identity, ipath,
    people_helpers::{depersonalize, get_user, patch_user, without_new_installation},
    raw_request, user_path,
};
use roster_model::{AttributeDefinition, AttributeScope, AttributeType, DefinitionOrigin, SchemaField};
use serde_json::{Value, json};

// ----- helpers ------------------------------------------------------------------------------

/// Sends raw body bytes with `Authorization: App` and the caller header.
async fn send(ts: &TestServer, method: &str, path: &str, caller: Option<&str>, body: &[u8]) -> Resp {
    ts.call_bytes(method, path, caller, Some(body.to_vec())).await
}

async fn with_auth(
    ts: &TestServer,
    auth: &str,
    method: &str,
    path: &str,
    caller: Option<&str>,
    body: Option<&[u8]>,
) -> Resp {
    ts.call_with(
        method,
        path,
        &[("authorization", auth)],
        caller,
        body.map(<[u8]>::to_vec),
    )
    .await
}

async fn without_auth(ts: &TestServer, method: &str, path: &str, caller: Option<&str>, body: Option<&[u8]>) -> Resp {
    ts.call_with(method, path, &[], caller, body.map(<[u8]>::to_vec)).await
}

/// mobile-api.md §3.1: the envelope is exactly `requestError.serviceException.{messageId,text}`.
fn assert_exact_envelope(r: &Resp) {
    let j = r.json();
    let top = j.as_object().unwrap();
    assert_eq!(top.len(), 1, "only requestError: {j}");
    let re = top["requestError"].as_object().unwrap();
    assert_eq!(re.len(), 1, "only serviceException: {j}");
    let se = re["serviceException"].as_object().unwrap();
    let mut keys: Vec<&str> = se.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, vec!["messageId", "text"], "{j}");
}

fn assert_text_contains(r: &Resp, needle: &str) {
    let se = &r.json()["requestError"]["serviceException"];
    let text = se["text"].as_str().unwrap_or_default().to_string();
    assert!(text.contains(needle), "text {text:?} should contain {needle:?}");
}

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

// ----- 400 REQUEST_FORMAT_INVALID ----------------------------------------------------------------

async fn malformed_and_non_object_bodies_are_request_format_invalid() {
    let ts = TestServer::start().await;
    let id = ts.register_android().await;
    let before = ts.snapshot().await;
    let personalize = format!("{}/personalize?{NO_FLAGS}", ipath(&id));
    let repersonalize = format!("{}/repersonalize", ipath(&id));
    for body in [
        &b"{bad"[..],
        b"{\"a\":1,}",
        b"[]",
        b"\"str\"",
        b"1",
        b"null",
        b"true",
        b"{} {}",
        b"\xff\xfe",
    ] {
        for (m, p) in [
            ("POST", "/mobile/1/appinstance".to_string()),
            ("PATCH", ipath(&id)),
            ("PATCH", user_path(&id)),
            ("POST", personalize.clone()),
            ("POST", repersonalize.clone()),
        ] {
            let r = send(&ts, m, &p, Some(&id), body).await;
            r.assert_error(400, "REQUEST_FORMAT_INVALID");
        }
    }
    assert_eq!(ts.snapshot().await, before);
    ts.finish().await;
}

async fn wrong_types_and_limits_name_the_json_path() {
    let ts = TestServer::start().await;
    let id = ts.register_android().await;
    let before = ts.snapshot().await;
    let cases: Vec<(&str, String, Value, &str)> = vec![
        (
            "POST",
            "/mobile/1/appinstance".into(),
            json!({"regEnabled": "yes"}),
            "regEnabled",
        ),
        (
            "POST",
            "/mobile/1/appinstance".into(),
            json!({"pushServiceType": 1}),
            "pushServiceType",
        ),
        ("PATCH", ipath(&id), json!({"deviceSecure": "true"}), "deviceSecure"),
        (
            "PATCH",
            ipath(&id),
            json!({"customAttributes": [1]}),
            "customAttributes",
        ),
        ("PATCH", ipath(&id), json!({"isPrimary": 0}), "isPrimary"),
        ("PATCH", ipath(&id), json!({"sdkVersion": 15}), "sdkVersion"),
        ("PATCH", user_path(&id), json!({"firstName": 5}), "firstName"),
        (
            "PATCH",
            user_path(&id),
            json!({"phones": [{"number": 1}]}),
            "phones[0].number",
        ),
        (
            "PATCH",
            user_path(&id),
            json!({"phones": ["385911234567"]}),
            "phones[0]",
        ),
        ("PATCH", user_path(&id), json!({"emails": "a@b.c"}), "emails"),
        ("PATCH", user_path(&id), json!({"tags": ["a", 2]}), "tags[1]"),
        (
            "PATCH",
            user_path(&id),
            json!({"customAttributes": "x"}),
            "customAttributes",
        ),
        // Limits.
        (
            "PATCH",
            user_path(&id),
            json!({"firstName": "x".repeat(256)}),
            "firstName",
        ),
        (
            "PATCH",
            user_path(&id),
            json!({"middleName": "x".repeat(51)}),
            "middleName",
        ),
        (
            "PATCH",
            user_path(&id),
            json!({"lastName": "x".repeat(256)}),
            "lastName",
        ),
        ("PATCH", user_path(&id), json!({"gender": "Other"}), "gender"),
        ("PATCH", user_path(&id), json!({"birthday": "1990-02-30"}), "birthday"),
        ("PATCH", user_path(&id), json!({"birthday": "17.05.1990"}), "birthday"),
        (
            "PATCH",
            user_path(&id),
            json!({"externalUserId": "x".repeat(257)}),
            "externalUserId",
        ),
        (
            "PATCH",
            user_path(&id),
            json!({"externalUserId": "a\u{0007}b"}),
            "externalUserId",
        ),
        ("PATCH", user_path(&id), json!({"tags": ["ok", ""]}), "tags[1]"),
        (
            "PATCH",
            user_path(&id),
            json!({"tags": (0..101).map(|i| format!("t{i}")).collect::<Vec<_>>()}),
            "tags",
        ),
        (
            "PATCH",
            user_path(&id),
            json!({"customAttributes": {"s": "x".repeat(4097)}}),
            "customAttributes.s",
        ),
        (
            "PATCH",
            user_path(&id),
            json!({"customAttributes": Value::Object(
                std::iter::once(("x".repeat(101), json!(1))).collect()
            )}),
            "customAttributes.",
        ),
        (
            "POST",
            format!("{}/personalize?{NO_FLAGS}", ipath(&id)),
            json!({"userIdentity": []}),
            "userIdentity",
        ),
        (
            "POST",
            format!("{}/personalize?{NO_FLAGS}", ipath(&id)),
            json!({"userIdentity": {"externalUserId": 5}}),
            "userIdentity.externalUserId",
        ),
        (
            "POST",
            format!("{}/personalize?{NO_FLAGS}", ipath(&id)),
            json!({"userIdentity": {"externalUserId": "x"}, "userAttributes": {"lastName": false}}),
            "userAttributes.lastName",
        ),
        (
            "POST",
            format!("{}/personalize?{NO_FLAGS}", ipath(&id)),
            json!({"userIdentity": {"externalUserId": "x"}, "userAttributes": {"customAttributes": {"a": {"b": 1}}}}),
            "userAttributes.customAttributes.a",
        ),
    ];
    for (m, p, b, path) in cases {
        let r = ts.call(m, &p, Some(&id), Some(&b)).await;
        r.assert_error(400, "REQUEST_FORMAT_INVALID");
        assert_text_contains(&r, path);
    }
    assert_eq!(ts.snapshot().await, before);
    ts.finish().await;
}

async fn list_of_objects_values_are_checked_against_their_schema_with_paths() {
    let ts = TestServer::start().await;
    define_orders(&ts, AttributeScope::Person).await;
    let id = ts.register_android().await;
    let good = json!({"sku": "A", "price": 1, "at": "2024-01-02T10:00:00Z"});
    let before = ts.snapshot().await;
    let bad_items: Vec<(Value, &str)> = vec![
        (
            json!([good, {"sku": "B", "price": "x", "at": "2024-01-02T10:00:00Z"}]),
            "customAttributes.orders[1].price",
        ),
        (json!([{"sku": "A", "price": 1}]), "customAttributes.orders[0].at"),
        (
            json!([{"sku": "A", "price": 1, "at": "2024-01-02T10:00:00Z", "extra": 1}]),
            "customAttributes.orders[0].extra",
        ),
        (
            json!([{"sku": null, "price": 1, "at": "2024-01-02T10:00:00Z"}]),
            "customAttributes.orders[0].sku",
        ),
        (
            json!([{"sku": "A", "price": 1, "at": "2024-01-02"}]),
            "customAttributes.orders[0].at",
        ),
        (json!([good, 5]), "customAttributes.orders[1]"),
        (json!("not a list"), "customAttributes.orders"),
        (json!({"sku": "A"}), "customAttributes.orders"),
    ];
    for (value, path) in &bad_items {
        let r = patch_user(&ts, &id, &json!({"customAttributes": {"orders": value}})).await;
        r.assert_error(400, "REQUEST_FORMAT_INVALID");
        assert_text_contains(&r, path);
    }
    // Through personalize the path is prefixed with userAttributes.
    let r = ts
        .personalize(
            &id,
            json!({"userIdentity": {"externalUserId": "lo"},
                   "userAttributes": {"customAttributes": {"orders": bad_items[0].0}}}),
            NO_FLAGS,
        )
        .await;
    r.assert_error(400, "REQUEST_FORMAT_INVALID");
    assert_text_contains(&r, "userAttributes.customAttributes.orders[1].price");
    assert_eq!(ts.snapshot().await, before);

    // A valid list is stored in canonical form.
    let r = patch_user(
        &ts,
        &id,
        &json!({"customAttributes": {"orders": [
            {"at": "2024-01-02T10:00:00.75+00:00", "price": 9.5, "sku": "A1"},
            {"sku": "B2", "price": 3.0, "at": "2024-01-03T00:00:00Z"}
        ]}}),
    )
    .await
    .ok();
    assert_eq!(
        r.json()["customAttributes"]["orders"],
        json!([{"sku": "A1", "price": 9.5, "at": "2024-01-02T10:00:00Z"},
               {"sku": "B2", "price": 3, "at": "2024-01-03T00:00:00Z"}])
    );
    // An installation-scope write of the same name is undefined there: arrays are rejected.
    let r = ts
        .call(
            "PATCH",
            &ipath(&id),
            Some(&id),
            Some(&json!({"customAttributes": {"orders": [good]}})),
        )
        .await;
    r.assert_error(400, "REQUEST_FORMAT_INVALID");
    assert_text_contains(&r, "customAttributes.orders");
    ts.finish().await;
}

// ----- 400 EMAIL_INVALID / PHONE_INVALID / USER_IDENTITY_INVALID -----------------------------------

async fn email_and_phone_invalid_contain_the_value() {
    let ts = TestServer::start().await;
    let id = ts.register_android().await;
    let before = ts.snapshot().await;
    for addr in [
        "not-an-email",
        "a@@example.com",
        "a..b@example.com",
        "ana@-bad-.com",
        " @x.y",
    ] {
        let r = patch_user(&ts, &id, &json!({"emails": [{"address": addr}]})).await;
        r.assert_error(400, "EMAIL_INVALID");
        assert_text_contains(&r, addr.trim());
        let r = ts
            .personalize(&id, json!({"userIdentity": {"emails": [{"address": addr}]}}), NO_FLAGS)
            .await;
        r.assert_error(400, "EMAIL_INVALID");
        assert_text_contains(&r, addr.trim());
    }
    for number in [
        "0038591123456",
        "123",
        "+385 91 abc",
        "1234567890123456",
        "+0 91 123 4567",
    ] {
        let r = patch_user(&ts, &id, &json!({"phones": [{"number": number}]})).await;
        r.assert_error(400, "PHONE_INVALID");
        assert_text_contains(&r, number);
        let r = ts
            .personalize(&id, json!({"userIdentity": {"phones": [{"number": number}]}}), NO_FLAGS)
            .await;
        r.assert_error(400, "PHONE_INVALID");
        assert_text_contains(&r, number);
    }
    assert_eq!(ts.snapshot().await, before);
    ts.finish().await;
}

async fn personalize_without_identity_is_user_identity_invalid() {
    let ts = TestServer::start().await;
    let id = ts.register_android().await;
    let before = ts.snapshot().await;
    for body in [
        json!({}),
        json!({"userIdentity": null}),
        json!({"userIdentity": {}}),
        json!({"userIdentity": {"externalUserId": ""}}),
        json!({"userIdentity": {"externalUserId": null}}),
        json!({"userIdentity": {"externalUserId": "null"}}),
        json!({"userIdentity": {"externalUserId": "NuLL"}}),
        json!({"userIdentity": {"phones": [], "emails": []}}),
        json!({"userIdentity": {"phones": null}}),
        json!({"userAttributes": {"externalUserId": "x", "emails": [{"address": "a@b.c"}], "firstName": "F"}}),
    ] {
        for path in [
            format!("{}/personalize?{NO_FLAGS}", ipath(&id)),
            format!("{}/repersonalize", ipath(&id)),
        ] {
            ts.call("POST", &path, Some(&id), Some(&body))
                .await
                .assert_error(400, "USER_IDENTITY_INVALID");
        }
    }
    // Empty body: {} → also no identity.
    send(&ts, "POST", &format!("{}/personalize", ipath(&id)), Some(&id), b"")
        .await
        .assert_error(400, "USER_IDENTITY_INVALID");
    assert_eq!(ts.snapshot().await, before);
    ts.finish().await;
}

// ----- 401 APP_CODE_MISSING / INVALID_APPLICATION_CODE -------------------------------------------------

async fn missing_or_unusable_authorization_is_app_code_missing() {
    let ts = TestServer::start().await;
    let id = ts.register_android().await;
    let before = ts.snapshot().await;
    let routes: Vec<(&str, String, Option<&[u8]>)> = vec![
        ("POST", "/mobile/1/appinstance".into(), Some(b"{}")),
        ("GET", ipath(&id), None),
        ("PATCH", ipath(&id), Some(b"{}")),
        ("GET", user_path(&id), None),
        ("PATCH", user_path(&id), Some(b"{}")),
        (
            "POST",
            format!("{}/personalize", ipath(&id)),
            Some(br#"{"userIdentity":{"externalUserId":"x"}}"#),
        ),
        ("POST", format!("{}/depersonalize", ipath(&id)), None),
        ("POST", format!("{}/user/events/session", ipath(&id)), Some(b"{}")),
        ("POST", "/mobile/5/messages".into(), Some(b"{}")),
    ];
    for (m, p, b) in &routes {
        without_auth(&ts, m, p, Some(&id), *b)
            .await
            .assert_error(401, "APP_CODE_MISSING");
        for auth in [
            "Basic dXNlcjpwYXNz",
            "App ",
            "App",
            "Token abc",
            "",
            "Bearer",
            "Bearer  ",
        ] {
            with_auth(&ts, auth, m, p, Some(&id), *b)
                .await
                .assert_error(401, "APP_CODE_MISSING");
        }
    }
    // Bearer on endpoints that do not take it (installation endpoints, depersonalize, stubs).
    let jwt = common::make_jwt("k1", &[7u8; 32], &ts.app.application_code, "someone", json!({}));
    let bearer = format!("Bearer {jwt}");
    let other = ts.register_android().await;
    for (m, p, b) in [
        ("POST", "/mobile/1/appinstance".to_string(), Some(&b"{}"[..])),
        ("GET", ipath(&id), None),
        ("PATCH", ipath(&id), Some(&b"{}"[..])),
        ("DELETE", ipath(&other), None),
        ("POST", format!("{}/depersonalize", ipath(&id)), None),
        ("POST", format!("{}/user/events/custom", ipath(&id)), Some(&b"{}"[..])),
        ("POST", "/mobile/5/messages".to_string(), Some(&b"{}"[..])),
        ("POST", "/mobile/1/messages/mo".to_string(), Some(&b"{}"[..])),
    ] {
        with_auth(&ts, &bearer, m, &p, Some(&id), b)
            .await
            .assert_error(401, "APP_CODE_MISSING");
    }
    let after = without_new_installation(ts.snapshot().await, &other, &before);
    assert_eq!(after, before);
    ts.finish().await;
}

async fn unknown_or_disabled_application_code_is_invalid_application_code() {
    let ts = TestServer::start().await;
    let id = ts.register_android().await;
    // Unknown codes.
    for code in [
        "0".repeat(64),
        "xyz".to_string(),
        format!("{}0", ts.app.application_code),
    ] {
        with_auth(&ts, &format!("App {code}"), "GET", &ipath(&id), Some(&id), None)
            .await
            .assert_error(401, "INVALID_APPLICATION_CODE");
        with_auth(
            &ts,
            &format!("App {code}"),
            "POST",
            "/mobile/1/appinstance",
            None,
            Some(b"{}"),
        )
        .await
        .assert_error(401, "INVALID_APPLICATION_CODE");
    }
    // The code in upper case works, and the scheme is case-insensitive.
    let upper = format!("App {}", ts.app.application_code.to_uppercase());
    with_auth(&ts, &upper, "GET", &ipath(&id), Some(&id), None).await.ok();
    with_auth(
        &ts,
        &format!("app {}", ts.app.application_code),
        "GET",
        &ipath(&id),
        Some(&id),
        None,
    )
    .await
    .ok();
    with_auth(
        &ts,
        &format!("APP {}", ts.app.application_code),
        "GET",
        &user_path(&id),
        Some(&id),
        None,
    )
    .await
    .ok();
    // A disabled application.
    ts.core()
        .update_application_settings(&ts.app, Some(false), None, None)
        .await
        .unwrap();
    let before = ts.snapshot().await;
    for (m, p, b) in [
        ("GET", ipath(&id), None),
        ("POST", "/mobile/1/appinstance".to_string(), Some(&b"{}"[..])),
        ("PATCH", user_path(&id), Some(&br#"{"firstName":"x"}"#[..])),
        ("POST", "/mobile/5/messages".to_string(), Some(&b"{}"[..])),
    ] {
        ts.call_bytes(m, &p, Some(&id), b.map(<[u8]>::to_vec))
            .await
            .assert_error(401, "INVALID_APPLICATION_CODE");
    }
    assert_eq!(ts.snapshot().await, before);
    // Re-enabled: works again.
    ts.core()
        .update_application_settings(&ts.app, Some(true), None, None)
        .await
        .unwrap();
    ts.call("GET", &ipath(&id), Some(&id), None).await.ok();
    ts.finish().await;
}

// ----- 403 FORBIDDEN_INSTALLATION / USER_DATA_RESTRICTED ----------------------------------------------

async fn remote_operations_not_allowed_are_forbidden_installation() {
    let ts = TestServer::start().await;
    let a = ts.register_android().await;
    let b = ts.register_android().await;
    ts.personalize_as(&a, "fi").await;
    ts.personalize_as(&b, "fi").await;
    let c = ts.register_android().await;
    let before = ts.snapshot().await;
    // User endpoints never allow a remote target, even of the same person.
    for (m, p, body) in [
        ("GET", user_path(&b), None),
        ("PATCH", user_path(&b), Some(json!({"firstName": "x"}))),
        (
            "POST",
            format!("{}/personalize?{NO_FLAGS}", ipath(&b)),
            Some(json!({"userIdentity": {"externalUserId": "fi"}})),
        ),
        (
            "POST",
            format!("{}/repersonalize", ipath(&b)),
            Some(json!({"userIdentity": {"externalUserId": "fi"}})),
        ),
        // Another person's installation.
        ("GET", ipath(&c), None),
        ("PATCH", ipath(&c), Some(json!({"isPrimary": true}))),
        ("POST", format!("{}/depersonalize", ipath(&c)), None),
        // Remote PATCH with another field.
        ("PATCH", ipath(&b), Some(json!({"isPrimary": true, "language": "x"}))),
    ] {
        ts.call(m, &p, Some(&a), body.as_ref())
            .await
            .assert_error(403, "FORBIDDEN_INSTALLATION");
    }
    // DELETE of the caller itself.
    ts.call("DELETE", &ipath(&a), Some(&a), None)
        .await
        .assert_error(403, "FORBIDDEN_INSTALLATION");
    ts.call("DELETE", &ipath(&a), None, None)
        .await
        .assert_error(403, "FORBIDDEN_INSTALLATION");
    assert_eq!(ts.snapshot().await, before);
    // Remote depersonalize of the same person's installation is allowed.
    depersonalize(&ts, &b, &a).await.ok();
    ts.finish().await;
}

async fn restrict_user_data_from_sdk_is_user_data_restricted() {
    let ts = TestServer::start().await;
    let id = ts.register_android().await;
    let app = ts
        .core()
        .update_application_settings(&ts.app, None, None, Some(true))
        .await
        .unwrap();
    assert!(app.restrict_user_data_from_sdk);
    let before = ts.snapshot().await;
    for body in [
        json!({"firstName": "x"}),
        json!({}),
        json!({"customAttributes": {"a": 1}}),
    ] {
        patch_user(&ts, &id, &body)
            .await
            .assert_error(403, "USER_DATA_RESTRICTED");
    }
    for attrs in [
        json!({"firstName": "x"}),
        json!({"tags": []}),
        json!({"customAttributes": {}}),
        json!({"birthday": null}),
        json!({"unknownMember": 1}),
    ] {
        let r = ts
            .personalize(
                &id,
                json!({"userIdentity": {"externalUserId": "r1"}, "userAttributes": attrs}),
                NO_FLAGS,
            )
            .await;
        r.assert_error(403, "USER_DATA_RESTRICTED");
        ts.call(
            "POST",
            &format!("{}/repersonalize", ipath(&id)),
            Some(&id),
            Some(&json!({"userIdentity": {"externalUserId": "r1"}, "userAttributes": attrs})),
        )
        .await
        .assert_error(403, "USER_DATA_RESTRICTED");
    }
    assert_eq!(ts.snapshot().await, before);
    // Identity only (also with only the ignored identity members in userAttributes) is allowed.
    let r = ts
        .personalize_ok(
            &id,
            json!({"userIdentity": {"externalUserId": "r1"},
                   "userAttributes": {"externalUserId": "ignored", "phones": [{"number": "385911111111"}],
                                      "emails": []}}),
            NO_FLAGS,
        )
        .await;
    assert_eq!(r["externalUserId"], "r1");
    assert_eq!(r["phones"], json!([]));
    ts.personalize_ok(
        &id,
        json!({"userIdentity": {"externalUserId": "r1"}, "userAttributes": {}}),
        NO_FLAGS,
    )
    .await;
    // Reading is allowed, installation data is unaffected.
    get_user(&ts, &id).await.ok();
    ts.call(
        "PATCH",
        &ipath(&id),
        Some(&id),
        Some(&json!({"customAttributes": {"i": 1}, "applicationUserId": "au"})),
    )
    .await
    .ok();
    ts.finish().await;
}

// ----- 404 NO_REGISTRATION / RESOURCE_NOT_FOUND, 405 ----------------------------------------------------

async fn unknown_caller_is_no_registration_on_every_installation_route() {
    let ts = TestServer::start().await;
    let known = ts.register_android().await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let before = ts.snapshot().await;
    for own in [unknown.as_str(), "not-a-uuid", "00000000-0000-0000-0000-000000000000"] {
        for (m, p, body) in [
            ("GET", ipath(own), None),
            ("PATCH", ipath(own), Some(json!({"language": "x"}))),
            ("GET", user_path(own), None),
            ("PATCH", user_path(own), Some(json!({"firstName": "x"}))),
            (
                "POST",
                format!("{}/personalize?{NO_FLAGS}", ipath(own)),
                Some(json!({"userIdentity": {"externalUserId": "x"}})),
            ),
            (
                "POST",
                format!("{}/repersonalize", ipath(own)),
                Some(json!({"userIdentity": {"externalUserId": "x"}})),
            ),
            ("POST", format!("{}/depersonalize", ipath(own)), None),
            ("POST", format!("{}/user/events/session", ipath(own)), Some(json!({}))),
            ("POST", format!("{}/user/events/custom", ipath(own)), Some(json!({}))),
        ] {
            // Without a header (caller = target) and with the header naming the unknown id.
            ts.call(m, &p, None, body.as_ref())
                .await
                .assert_error(404, "NO_REGISTRATION");
            ts.call(m, &p, Some(own), body.as_ref())
                .await
                .assert_error(404, "NO_REGISTRATION");
        }
        // An unknown caller addressing a known target.
        ts.call("GET", &ipath(&known), Some(own), None)
            .await
            .assert_error(404, "NO_REGISTRATION");
        ts.call("DELETE", &ipath(&known), Some(own), None)
            .await
            .assert_error(404, "NO_REGISTRATION");
    }
    assert_eq!(ts.snapshot().await, before);
    ts.finish().await;
}

async fn unknown_routes_are_resource_not_found() {
    let ts = TestServer::start().await;
    let id = ts.register_android().await;
    for p in [
        "/".to_string(),
        "/nope".to_string(),
        "/mobile".to_string(),
        "/mobile/2/appinstance".to_string(),
        "/Mobile/1/appinstance".to_string(),
        "/mobile/1/AppInstance".to_string(),
        format!("{}/unknown", ipath(&id)),
        format!("{}/user/extra", ipath(&id)),
        format!("{}/user/events/other", ipath(&id)),
        "/mobile/4/messages".to_string(),
        "/mobile/1/messages".to_string(),
        "/mobile/1/version".to_string(),
    ] {
        // With and without credentials: the route is decided first.
        for r in [
            ts.call("GET", &p, Some(&id), None).await,
            ts.call("POST", &p, Some(&id), Some(&json!({}))).await,
            without_auth(&ts, "GET", &p, None, None).await,
        ] {
            r.assert_error(404, "RESOURCE_NOT_FOUND");
            assert_exact_envelope(&r);
        }
    }
    ts.finish().await;
}

async fn unsupported_methods_are_method_not_allowed_with_allow() {
    let ts = TestServer::start().await;
    let id = ts.register_android().await;
    for (m, p) in [
        ("PUT", ipath(&id)),
        ("POST", ipath(&id)),
        ("DELETE", user_path(&id)),
        ("GET", format!("{}/personalize", ipath(&id))),
        ("PATCH", "/mobile/1/appinstance".to_string()),
        ("GET", "/mobile/5/messages".to_string()),
        ("POST", "/mobile/3/version".to_string()),
    ] {
        let r = ts.call(m, &p, Some(&id), None).await;
        r.assert_error(405, "METHOD_NOT_ALLOWED");
        assert_exact_envelope(&r);
        assert!(r.headers.get("allow").is_some(), "{m} {p}: Allow header");
        // Without credentials too (step 1 before step 4).
        without_auth(&ts, m, &p, None, None)
            .await
            .assert_error(405, "METHOD_NOT_ALLOWED");
    }
    ts.finish().await;
}

// ----- 409 --------------------------------------------------------------------------------------------

async fn identity_key_of_another_person_is_user_merge_interrupted() {
    let ts = TestServer::start().await;
    ts.register_personalized_with(
        json!({"userIdentity": {"externalUserId": "owner", "emails": [{"address": "Owner@Example.com"}],
                                "phones": [{"number": "385911234567"}]}}),
        NO_FLAGS,
    )
    .await;
    let b = ts.register_android().await;
    let before = ts.snapshot().await;
    for body in [
        json!({"externalUserId": "owner"}),
        json!({"emails": [{"address": "owner@example.COM"}]}),
        json!({"phones": [{"number": "+385 91 123 4567"}]}),
        json!({"firstName": "B", "emails": [{"address": "mine@example.com"}, {"address": "OWNER@example.com"}]}),
    ] {
        let r = patch_user(&ts, &b, &body).await;
        r.assert_error(409, "USER_MERGE_INTERRUPTED");
    }
    // Personalize: K matches the owner by phone, but names another externalUserId.
    ts.personalize(
        &b,
        json!({"userIdentity": {"externalUserId": "someone-else", "phones": [{"number": "385911234567"}]}}),
        NO_FLAGS,
    )
    .await
    .assert_error(409, "USER_MERGE_INTERRUPTED");
    assert_eq!(ts.snapshot().await, before);
    ts.finish().await;
}

async fn keys_of_two_persons_are_ambiguous_personalize_candidates() {
    let ts = TestServer::start().await;
    ts.register_personalized("amb-1").await;
    ts.register_personalized_with(
        json!({"userIdentity": {"emails": [{"address": "amb2@example.com"}]}}),
        NO_FLAGS,
    )
    .await;
    let c = ts.register_android().await;
    let before = ts.snapshot().await;
    ts.personalize(
        &c,
        json!({"userIdentity": {"externalUserId": "amb-1", "emails": [{"address": "AMB2@example.com"}]}}),
        "forceDepersonalize=true&keepAsLead=false&setDeviceAsPrimary=true",
    )
    .await
    .assert_error(409, "AMBIGUOUS_PERSONALIZE_CANDIDATES");
    assert_eq!(ts.snapshot().await, before);
    ts.finish().await;
}

async fn personalized_as_somebody_else_is_personalization_impossible() {
    let ts = TestServer::start().await;
    let a = ts.register_personalized("pi-1").await;
    let before = ts.snapshot().await;
    let r = ts.personalize(&a, ext_identity("pi-2"), NO_FLAGS).await;
    r.assert_error(409, "PERSONALIZATION_IMPOSSIBLE");
    ts.call(
        "POST",
        &format!("{}/repersonalize", ipath(&a)),
        Some(&a),
        Some(&json!({"userIdentity": {"externalUserId": "pi-2"}})),
    )
    .await
    .assert_error(409, "PERSONALIZATION_IMPOSSIBLE");
    assert_eq!(ts.snapshot().await, before);
    ts.finish().await;
}

// ----- 413 REQUEST_TOO_LARGE ---------------------------------------------------------------------------

fn padded(total: usize) -> Vec<u8> {
    // {"pad":"xxx…"} is 10 bytes plus the padding.
    let body = format!(r#"{{"pad":"{}"}}"#, "x".repeat(total - 10));
    assert_eq!(body.len(), total);
    body.into_bytes()
}

async fn body_over_the_limit_is_request_too_large() {
    let ts = TestServer::start_with(|s| s.mobile.max_body_bytes = 1000).await;
    let id = ts.register_android().await;
    let before = ts.snapshot().await;
    // Exactly at the limit: accepted.
    send(&ts, "PATCH", &ipath(&id), Some(&id), &padded(1000)).await.ok();
    // One byte over: 413, on every body-taking route, also without credentials.
    for (m, p) in [
        ("PATCH", ipath(&id)),
        ("POST", "/mobile/1/appinstance".to_string()),
        ("PATCH", user_path(&id)),
        ("POST", format!("{}/personalize", ipath(&id))),
        ("POST", "/mobile/5/messages".to_string()),
        ("POST", format!("{}/depersonalize", ipath(&id))),
    ] {
        send(&ts, m, &p, Some(&id), &padded(1001))
            .await
            .assert_error(413, "REQUEST_TOO_LARGE");
        ts.call_with(m, &p, &[], Some(&id), Some(padded(5000)))
            .await
            .assert_error(413, "REQUEST_TOO_LARGE");
    }
    // A chunked body over the limit: 413 as well.
    let auth = ts.app_auth();
    let big = padded(1500);
    let mut req = raw_request(
        "POST",
        &ipath(&id),
        &[
            ("Authorization", &auth),
            ("X-HTTP-Method-Override", "PATCH"),
            ("Transfer-Encoding", "chunked"),
        ],
        None,
    );
    req.extend_from_slice(format!("{:x}\r\n", big.len()).as_bytes());
    req.extend_from_slice(&big);
    req.extend_from_slice(b"\r\n0\r\n\r\n");
    let r = ts.raw(&req).await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.code(), "REQUEST_TOO_LARGE");
    assert_eq!(ts.snapshot().await, before);
    ts.finish().await;
}

// ----- 429 TOO_MANY_REQUESTS ---------------------------------------------------------------------------

fn assert_429(r: &Resp) {
    r.assert_error(429, "TOO_MANY_REQUESTS");
    assert_exact_envelope(r);
    let ra: u64 = r
        .headers
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .expect("whole seconds");
    assert!(ra >= 1, "Retry-After {ra}");
}

async fn per_installation_rate_limit() {
    let ts = TestServer::start_with(|s| {
        s.mobile.rate.per_installation_rps = 1.0;
        s.mobile.rate.per_installation_burst = 2.0;
    })
    .await;
    let a = ts.register_android().await;
    let b = ts.register_android().await;
    ts.call("GET", &ipath(&a), Some(&a), None).await.ok();
    ts.call("PATCH", &ipath(&a), Some(&a), Some(&json!({"language": "en"})))
        .await
        .ok();
    let before = ts.snapshot().await;
    // Third request for the same target: 429, nothing changed.
    assert_429(
        &ts.call("PATCH", &ipath(&a), Some(&a), Some(&json!({"language": "de"})))
            .await,
    );
    // The bucket is per lowercased path id; 429 comes before authentication.
    assert_429(&ts.call("GET", &ipath(&a.to_uppercase()), Some(&a), None).await);
    assert_429(&without_auth(&ts, "GET", &user_path(&a), None, None).await);
    assert_eq!(ts.snapshot().await, before);
    // Another target has its own bucket.
    ts.call("GET", &ipath(&b), Some(&b), None).await.ok();
    // Ids that are not UUIDs are limited too.
    for _ in 0..2 {
        ts.call("GET", &ipath("junk"), None, None)
            .await
            .assert_error(404, "NO_REGISTRATION");
    }
    assert_429(&ts.call("GET", &ipath("junk"), None, None).await);
    // After a refill the target is served again.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    ts.call("GET", &ipath(&a), Some(&a), None).await.ok();
    ts.finish().await;
}

async fn create_per_ip_rate_limit() {
    let ts = TestServer::start_with(|s| {
        s.mobile.rate.create_per_ip_rps = 1.0;
        s.mobile.rate.create_per_ip_burst = 2.0;
    })
    .await;
    ts.register_android().await;
    ts.register_android().await;
    let before = ts.snapshot().await;
    assert_429(&ts.create(&json!({"os": "x"})).await);
    // Before authentication as well.
    assert_429(&without_auth(&ts, "POST", "/mobile/1/appinstance", None, Some(b"{}")).await);
    assert_eq!(ts.snapshot().await, before);
    assert_eq!(before.installations.len(), 2);
    ts.finish().await;
}

async fn re_creation_takes_from_the_create_per_ip_bucket() {
    let ts = TestServer::start_with(|s| {
        s.mobile.rate.create_per_ip_rps = 0.05;
        s.mobile.rate.create_per_ip_burst = 1.0;
    })
    .await;
    let a = ts.register_android().await;
    // A PATCH of an existing installation is no creation: not limited by the per-IP bucket.
    ts.call("PATCH", &ipath(&a), Some(&a), Some(&json!({"language": "en"})))
        .await
        .ok();
    let before = ts.snapshot().await;
    let id = uuid::Uuid::new_v4().to_string();
    let r = ts
        .call(
            "PATCH",
            &ipath(&id),
            Some(&id),
            Some(&json!({"pushServiceType": "Firebase", "pushServiceToken": "recreate-limited"})),
        )
        .await;
    // mobile-api.md §1.7: a PATCH that re-creates an installation takes from the per-IP create
    // bucket, checked when re-creation is decided (step 6).
    assert_429(&r);
    assert_eq!(ts.snapshot().await, before);
    ts.finish().await;
}

// ----- §3.3 processing order ----------------------------------------------------------------------------

async fn processing_order_route_size_auth_body() {
    let ts = TestServer::start_with(|s| s.mobile.max_body_bytes = 100).await;
    let id = ts.register(json!({"os": "Android"})).await;
    let unknown = uuid::Uuid::new_v4().to_string();
    // 1. route before everything: 404 without auth and with a huge body.
    ts.call_with("POST", "/nope", &[], None, Some(padded(500)))
        .await
        .assert_error(404, "RESOURCE_NOT_FOUND");
    // 1. method before size and auth.
    ts.call_with("PUT", &ipath(&id), &[], None, Some(padded(500)))
        .await
        .assert_error(405, "METHOD_NOT_ALLOWED");
    // 2. size before auth.
    ts.call_with("PATCH", &ipath(&id), &[], None, Some(padded(500)))
        .await
        .assert_error(413, "REQUEST_TOO_LARGE");
    // 4. auth before body parsing.
    without_auth(&ts, "PATCH", &ipath(&id), Some(&id), Some(b"{bad"))
        .await
        .assert_error(401, "APP_CODE_MISSING");
    with_auth(&ts, "App 123", "PATCH", &ipath(&id), Some(&id), Some(b"{bad"))
        .await
        .assert_error(401, "INVALID_APPLICATION_CODE");
    // 5. body and query booleans before caller resolution.
    send(&ts, "PATCH", &ipath(&unknown), None, b"{bad")
        .await
        .assert_error(400, "REQUEST_FORMAT_INVALID");
    send(&ts, "PATCH", &user_path(&unknown), None, br#"{"firstName":1}"#)
        .await
        .assert_error(400, "REQUEST_FORMAT_INVALID");
    send(
        &ts,
        "POST",
        &format!("{}/personalize?keepAsLead=yes", ipath(&unknown)),
        None,
        br#"{"userIdentity":{"externalUserId":"x"}}"#,
    )
    .await
    .assert_error(400, "REQUEST_FORMAT_INVALID");
    // ... also before remote-target checks.
    send(&ts, "PATCH", &ipath(&unknown), Some(&id), br#"{"isPrimary":"yes"}"#)
        .await
        .assert_error(400, "REQUEST_FORMAT_INVALID");
    ts.finish().await;
}

async fn processing_order_caller_before_fields_before_domain() {
    let ts = TestServer::start().await;
    let id = ts.register_android().await;
    let owner = ts.register_personalized("taken").await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let before = ts.snapshot().await;
    // 6. caller resolution before field validation.
    ts.call(
        "PATCH",
        &user_path(&unknown),
        None,
        Some(&json!({"firstName": "x".repeat(300)})),
    )
    .await
    .assert_error(404, "NO_REGISTRATION");
    ts.call(
        "POST",
        &format!("{}/personalize", ipath(&unknown)),
        None,
        Some(&json!({})),
    )
    .await
    .assert_error(404, "NO_REGISTRATION");
    ts.call(
        "POST",
        &format!("{}/personalize", ipath(&unknown)),
        None,
        Some(&json!({"userIdentity": {"emails": [{"address": "bad"}]}})),
    )
    .await
    .assert_error(404, "NO_REGISTRATION");
    ts.call(
        "PATCH",
        &ipath(&unknown),
        None,
        Some(&json!({"customAttributes": {"$x": 1}})),
    )
    .await
    .assert_error(404, "NO_REGISTRATION");
    // 6. forbidden remote target before field validation.
    ts.call(
        "POST",
        &format!("{}/personalize", ipath(&owner)),
        Some(&id),
        Some(&json!({"userIdentity": {"emails": [{"address": "bad"}]}})),
    )
    .await
    .assert_error(403, "FORBIDDEN_INSTALLATION");
    ts.call(
        "PATCH",
        &ipath(&owner),
        Some(&id),
        Some(&json!({"isPrimary": true, "customAttributes": {"$x": [1]}})),
    )
    .await
    .assert_error(403, "FORBIDDEN_INSTALLATION");
    // 8. field validation before domain rules (9).
    let r = patch_user(
        &ts,
        &id,
        &json!({"externalUserId": "taken", "emails": [{"address": "bad"}]}),
    )
    .await;
    r.assert_error(400, "EMAIL_INVALID");
    // 8. fields in table order: the first failing field is reported.
    let r = patch_user(&ts, &id, &json!({"birthday": "bad", "firstName": "x".repeat(300)})).await;
    r.assert_error(400, "REQUEST_FORMAT_INVALID");
    assert_text_contains(&r, "firstName");
    patch_user(
        &ts,
        &id,
        &json!({"emails": [{"address": "bad"}], "phones": [{"number": "1"}]}),
    )
    .await
    .assert_error(400, "PHONE_INVALID");
    let r = patch_user(&ts, &id, &json!({"customAttributes": {"$x": 1}, "tags": [""]})).await;
    r.assert_error(400, "REQUEST_FORMAT_INVALID");
    assert_text_contains(&r, "tags[0]");
    // Personalize: identity (externalUserId, phones, emails) before attributes.
    ts.personalize(
        &id,
        json!({"userIdentity": {"phones": [{"number": "1"}], "emails": [{"address": "bad"}]},
               "userAttributes": {"gender": "x"}}),
        NO_FLAGS,
    )
    .await
    .assert_error(400, "PHONE_INVALID");
    let r = ts
        .personalize(
            &id,
            json!({"userIdentity": {"externalUserId": "x".repeat(300), "phones": [{"number": "1"}]}}),
            NO_FLAGS,
        )
        .await;
    r.assert_error(400, "REQUEST_FORMAT_INVALID");
    assert_text_contains(&r, "userIdentity.externalUserId");
    // Identity before attributes.
    ts.personalize(
        &id,
        json!({"userIdentity": {"emails": [{"address": "bad"}]}, "userAttributes": {"firstName": "x".repeat(300)}}),
        NO_FLAGS,
    )
    .await
    .assert_error(400, "EMAIL_INVALID");
    assert_eq!(ts.snapshot().await, before);
    ts.finish().await;
}

async fn processing_order_auth_settings_and_restrictions() {
    let ts = TestServer::start().await;
    let id = ts.register_android().await;
    // requireJwtForUserData (step 4) beats a malformed body (step 5).
    ts.core()
        .update_application_settings(&ts.app, None, Some(true), None)
        .await
        .unwrap();
    send(&ts, "PATCH", &user_path(&id), Some(&id), b"{bad")
        .await
        .assert_error(401, "JWT_INVALID");
    ts.core()
        .update_application_settings(&ts.app, None, Some(false), Some(true))
        .await
        .unwrap();
    // A wrong JSON type (step 5) beats restrictUserDataFromSdk (step 7).
    send(&ts, "PATCH", &user_path(&id), Some(&id), br#"{"firstName":5}"#)
        .await
        .assert_error(400, "REQUEST_FORMAT_INVALID");
    // The unknown caller (step 6) beats restrictUserDataFromSdk (step 7).
    let unknown = uuid::Uuid::new_v4().to_string();
    ts.call("PATCH", &user_path(&unknown), None, Some(&json!({"firstName": "x"})))
        .await
        .assert_error(404, "NO_REGISTRATION");
    // restrictUserDataFromSdk (step 7) beats field validation (step 8).
    patch_user(&ts, &id, &json!({"emails": [{"address": "bad"}]}))
        .await
        .assert_error(403, "USER_DATA_RESTRICTED");
    ts.personalize(
        &id,
        json!({"userIdentity": {"emails": [{"address": "bad"}]}, "userAttributes": {"firstName": "F"}}),
        NO_FLAGS,
    )
    .await
    .assert_error(403, "USER_DATA_RESTRICTED");
    ts.finish().await;
}

// ----- people.md invariant 16: rejected requests change nothing ---------------------------------------

async fn rejected_requests_change_nothing() {
    let ts = TestServer::start().await;
    let a = ts
        .register_personalized_with(
            json!({"userIdentity": {"externalUserId": "rc-1", "emails": [{"address": "rc1@example.com"}]},
                   "userAttributes": {"customAttributes": {"n": 1}}}),
            NO_FLAGS,
        )
        .await;
    let b = ts.register_android().await;
    patch_user(&ts, &b, &json!({"firstName": "Bee"})).await.ok();
    // A person with 200 custom attributes to overflow in a merge.
    let big = ts.register_android().await;
    let mut attrs = serde_json::Map::new();
    for i in 0..200 {
        attrs.insert(format!("m{i:03}"), json!(i));
    }
    ts.personalize_ok(
        &big,
        json!({"userIdentity": {"externalUserId": "rc-big"}, "userAttributes": {"customAttributes": attrs}}),
        NO_FLAGS,
    )
    .await;
    let mut extra = serde_json::Map::new();
    for i in 0..60 {
        extra.insert(format!("x{i:03}"), json!("v"));
    }
    let before = ts.snapshot().await;

    // A wrong-typed attribute after an auto-definition in the same request: no definition kept.
    patch_user(
        &ts,
        &b,
        &json!({"firstName": "Changed", "customAttributes": {"brandNew": "x", "n": "not a number"}}),
    )
    .await
    .assert_error(400, "REQUEST_FORMAT_INVALID");
    ts.create(&json!({"pushServiceType": "Firebase", "pushServiceToken": "rc-t",
                      "customAttributes": {"fresh": 1, "bad": [1]}}))
        .await
        .assert_error(400, "REQUEST_FORMAT_INVALID");
    // A merge that would overflow the attribute limit: rolled back entirely.
    ts.personalize(
        &b,
        json!({"userIdentity": {"externalUserId": "rc-big"},
               "userAttributes": {"customAttributes": extra}}),
        "forceDepersonalize=false&keepAsLead=false&setDeviceAsPrimary=true",
    )
    .await
    .assert_error(400, "REQUEST_FORMAT_INVALID");
    // people.md §5.2 row 6: forced depersonalization, then USER_MERGE_INTERRUPTED: rolled back.
    ts.personalize(
        &a,
        json!({"userIdentity": {"externalUserId": "rc-2", "emails": [{"address": "RC1@example.com"}]}}),
        "forceDepersonalize=true&keepAsLead=false&setDeviceAsPrimary=true",
    )
    .await
    .assert_error(409, "USER_MERGE_INTERRUPTED");
    // PERSONALIZATION_IMPOSSIBLE.
    ts.personalize(&a, ext_identity("rc-3"), NO_FLAGS)
        .await
        .assert_error(409, "PERSONALIZATION_IMPOSSIBLE");
    // PATCH user taking a key.
    patch_user(&ts, &b, &json!({"firstName": "Z", "externalUserId": "rc-1"}))
        .await
        .assert_error(409, "USER_MERGE_INTERRUPTED");
    // Remote PATCH with another field; unknown caller; bad override; bad auth.
    ts.call("PATCH", &ipath(&b), Some(&a), Some(&json!({"isPrimary": true})))
        .await
        .assert_error(403, "FORBIDDEN_INSTALLATION");
    let unknown = uuid::Uuid::new_v4().to_string();
    ts.call("PATCH", &ipath(&a), Some(&unknown), Some(&json!({"isPrimary": true})))
        .await
        .assert_error(404, "NO_REGISTRATION");
    ts.call_with(
        "POST",
        &ipath(&a),
        &[("authorization", &ts.app_auth()), ("x-http-method-override", "PUT")],
        Some(&a),
        Some(br#"{"language":"xx"}"#.to_vec()),
    )
    .await
    .assert_error(405, "METHOD_NOT_ALLOWED");
    with_auth(&ts, "App nope", "POST", "/mobile/1/appinstance", None, Some(b"{}"))
        .await
        .assert_error(401, "INVALID_APPLICATION_CODE");
    // An invalid token after other valid fields.
    ts.call(
        "PATCH",
        &ipath(&b),
        Some(&b),
        Some(&json!({"language": "zz", "pushServiceToken": "has type already", "isPrimary": true})),
    )
    .await
    .assert_error(400, "REQUEST_FORMAT_INVALID");
    assert_eq!(ts.snapshot().await, before, "no rejected request changed anything");
    ts.finish().await;
}

on_every_backend!(
    malformed_and_non_object_bodies_are_request_format_invalid,
    wrong_types_and_limits_name_the_json_path,
    list_of_objects_values_are_checked_against_their_schema_with_paths,
    email_and_phone_invalid_contain_the_value,
    personalize_without_identity_is_user_identity_invalid,
    missing_or_unusable_authorization_is_app_code_missing,
    unknown_or_disabled_application_code_is_invalid_application_code,
    remote_operations_not_allowed_are_forbidden_installation,
    restrict_user_data_from_sdk_is_user_data_restricted,
    unknown_caller_is_no_registration_on_every_installation_route,
    unknown_routes_are_resource_not_found,
    unsupported_methods_are_method_not_allowed_with_allow,
    identity_key_of_another_person_is_user_merge_interrupted,
    keys_of_two_persons_are_ambiguous_personalize_candidates,
    personalized_as_somebody_else_is_personalization_impossible,
    body_over_the_limit_is_request_too_large,
    per_installation_rate_limit,
    create_per_ip_rate_limit,
    re_creation_takes_from_the_create_per_ip_bucket,
    processing_order_route_size_auth_body,
    processing_order_caller_before_fields_before_domain,
    processing_order_auth_settings_and_restrictions,
    rejected_requests_change_nothing,
);
