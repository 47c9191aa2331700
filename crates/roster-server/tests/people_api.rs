//! People, installations, the merge log and GDPR through the management API
//! (management-api.md §7.4, §7.5, §7.8, §8) over HTTP against the real server, on every backend.
//! The people are made by devices through the mobile API, as in production; every scenario ends
//! with the invariant checker of people.md §11 (`finish()`), and refusals are shown to change
//! nothing by comparing store snapshots.

mod common;

use common::{
    NO_FLAGS, Resp, TestServer, ext_identity,
    people_helpers::{assert_same_store, get_user, inst, person_of, register_in},
};
use roster_model::PersonType;
use serde_json::{Value, json};
use uuid::Uuid;

/// A key of the test's account with `scopes`; returns the secret.
async fn key(server: &TestServer, scopes: &[&str]) -> String {
    server.api_key(scopes).await
}

/// A management request with `Authorization: App <key>`, extra headers and a JSON body.
async fn api_with(
    server: &TestServer,
    key: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Resp {
    server.api(Some(key), method, path, headers, body.as_ref()).await
}

async fn api(server: &TestServer, key: &str, method: &str, path: &str, body: Option<Value>) -> Resp {
    api_with(server, key, method, path, &[], body).await
}

fn validation(r: &Resp) -> Value {
    r.json()["requestError"]["serviceException"]["validationErrors"].clone()
}

/// `2025-03-01T10:00:00.123Z`.
fn is_timestamp(v: &Value) -> bool {
    let Some(s) = v.as_str() else { return false };
    let b = s.as_bytes();
    s.len() == 24 && b[10] == b'T' && b[19] == b'.' && b[23] == b'Z'
}

/// The person id owning installation `id`.
async fn person_id_of(server: &TestServer, id: &str) -> Uuid {
    inst(&server.snapshot().await, id).person_id
}

/// Registers an Android installation with system data and token `token`.
async fn register_with_token(server: &TestServer, token: &str) -> String {
    server
        .register(json!({
            "pushServiceType": "Firebase", "pushServiceToken": token, "os": "Android", "osVersion": "14",
            "sdkVersion": "15.0.0", "appVersion": "3.2.1", "deviceManufacturer": "Google",
            "deviceModel": "Pixel 8", "deviceName": "Pixel 8", "deviceSecure": true, "language": "en",
            "deviceTimezoneOffset": "GMT+01:00", "notificationsEnabled": true
        }))
        .await
}

/// Person and installation resources, field for field (§7.4, §7.5): the person's installations
/// of all applications oldest first, tokens only as their last 8 characters, `ETag`; 404 for
/// unknown, malformed and other accounts' ids.
async fn resources_have_the_shapes_of_the_spec() {
    let server = TestServer::start().await;
    let reader = key(&server, &["people:read"]).await;
    let token = "dQw4w9WgXcQ:APA91bHx7Yk2LmN3pQ4rS5tU6vW7xY8zA9bC0dE1fG2hI3jK4";
    let phone_id = register_with_token(&server, token).await;
    server
        .personalize_ok(
            &phone_id,
            json!({"userIdentity": {"externalUserId": "cust-1001", "phones": [{"number": "+385 91 123 4567"}],
                                    "emails": [{"address": "Ana.Horvat@Example.com"}]},
                   "userAttributes": {"firstName": "Ana", "middleName": "Marija", "birthday": "1990-05-17",
                                      "tags": ["vip", "beta"], "customAttributes": {"loyaltyPoints": 120, "newsletter": true}}}),
            NO_FLAGS,
        )
        .await;
    common::tick().await;
    let other = server.other_app().await;
    let tablet_id = register_in(&server, &other).await;
    common::people_helpers::personalize_in(&server, &other, &tablet_id, &ext_identity("cust-1001"), NO_FLAGS).await;
    let pid = person_id_of(&server, &phone_id).await;

    let r = api(&server, &reader, "GET", &format!("/api/v1/people/{pid}"), None)
        .await
        .ok();
    let p = r.json();
    let version = p["version"].as_i64().unwrap();
    assert_eq!(r.headers["etag"], format!("\"{version}\""));
    let keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "id",
            "type",
            "externalUserId",
            "firstName",
            "middleName",
            "birthday",
            "phones",
            "emails",
            "tags",
            "customAttributes",
            "version",
            "createdAt",
            "updatedAt",
            "installations"
        ]
    );
    assert_eq!(p["id"], pid.to_string());
    assert_eq!(p["type"], "CUSTOMER");
    assert_eq!(p["phones"], json!([{"number": "385911234567"}]));
    assert_eq!(p["emails"], json!([{"address": "Ana.Horvat@Example.com"}]));
    assert_eq!(p["tags"], json!(["beta", "vip"]));
    assert_eq!(p["customAttributes"], json!({"loyaltyPoints": 120, "newsletter": true}));
    assert!(is_timestamp(&p["createdAt"]) && is_timestamp(&p["updatedAt"]), "{p}");
    // Both applications, oldest first.
    let installations = p["installations"].as_array().unwrap();
    assert_eq!(installations.len(), 2);
    assert_eq!(installations[0]["pushRegId"], phone_id);
    assert_eq!(installations[1]["pushRegId"], tablet_id);
    assert_eq!(installations[0]["applicationCode"], server.app.application_code);
    assert_eq!(installations[1]["applicationId"], other.id.to_string());
    let phone = &installations[0];
    let keys: Vec<&str> = phone.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "pushRegId",
            "applicationId",
            "applicationCode",
            "personId",
            "pushServiceType",
            "hasPushServiceToken",
            "pushServiceTokenSuffix",
            "regEnabled",
            "isPrimary",
            "deliverable",
            "notificationsEnabled",
            "customAttributes",
            "sdkVersion",
            "appVersion",
            "os",
            "osVersion",
            "deviceManufacturer",
            "deviceModel",
            "deviceName",
            "deviceSecure",
            "language",
            "deviceTimezoneOffset",
            "createdAt",
            "updatedAt",
            "lastSeenAt"
        ]
    );
    assert_eq!(phone["personId"], pid.to_string());
    assert_eq!(phone["pushServiceTokenSuffix"], "G2hI3jK4");
    assert_eq!(phone["hasPushServiceToken"], true);
    assert_eq!(phone["deliverable"], true);
    assert!(!r.text().contains(token), "the token is never shown");
    // The installation resource is the person's element.
    let r = api(
        &server,
        &reader,
        "GET",
        &format!("/api/v1/installations/{phone_id}"),
        None,
    )
    .await
    .ok();
    assert_eq!(&r.json(), phone);
    // Ids are case-insensitive on the way in.
    let r = api(
        &server,
        &reader,
        "GET",
        &format!("/api/v1/installations/{}", phone_id.to_uppercase()),
        None,
    )
    .await
    .ok();
    assert_eq!(&r.json(), phone);

    // 404 in the envelope: unknown, malformed, another account's.
    for path in [
        format!("/api/v1/people/{}", Uuid::new_v4()),
        "/api/v1/people/not-a-uuid".to_string(),
        format!("/api/v1/installations/{}", Uuid::new_v4()),
        "/api/v1/installations/nope".to_string(),
    ] {
        api(&server, &reader, "GET", &path, None)
            .await
            .assert_error(404, "NOT_FOUND");
    }
    let stranger = other_account_key(&server).await;
    api(&server, &stranger, "GET", &format!("/api/v1/people/{pid}"), None)
        .await
        .assert_error(404, "NOT_FOUND");
    api(
        &server,
        &stranger,
        "GET",
        &format!("/api/v1/installations/{phone_id}"),
        None,
    )
    .await
    .assert_error(404, "NOT_FOUND");
    server.finish().await;
}

/// An admin key of a second account.
async fn other_account_key(server: &TestServer) -> String {
    let account = roster_model::Account {
        id: Uuid::new_v4(),
        name: "other".into(),
        created_at: common::now_ms(),
    };
    let mut tx = server.store.begin().await.unwrap();
    tx.insert_account(&account).await.unwrap();
    tx.commit().await.unwrap();
    server
        .core()
        .create_api_key(account.id, "other", &["admin".to_string()], None)
        .await
        .unwrap()
        .secret
}

/// Lookup by each key: phone normalised, email case-insensitive, pushRegId in any case; exactly
/// one parameter; keys nobody owns are 404, values no key can have are 400.
async fn lookups() {
    let server = TestServer::start().await;
    let reader = key(&server, &["people:read"]).await;
    let id = server
        .register_personalized_with(
            json!({"userIdentity": {"externalUserId": "u-1", "phones": [{"number": "385911234567"}],
                                    "emails": [{"address": "Ana.Horvat@Example.com"}]}}),
            NO_FLAGS,
        )
        .await;
    let anonymous = server.register_android().await;
    let pid = person_id_of(&server, &id).await;
    let found = |r: Resp| {
        let r = r.ok();
        assert_eq!(r.headers["etag"], format!("\"{}\"", r.json()["version"]));
        r.json()["id"].as_str().unwrap().to_string()
    };
    for query in [
        "externalUserId=u-1".to_string(),
        "phone=%2B385%2091-123-4567".to_string(),
        "phone=(385)911234567".to_string(),
        "email=ana.horvat%40EXAMPLE.COM".to_string(),
        format!("pushRegId={}", id.to_uppercase()),
    ] {
        let r = api(&server, &reader, "GET", &format!("/api/v1/people/lookup?{query}"), None).await;
        assert_eq!(found(r), pid.to_string(), "{query}");
    }
    // An anonymous person is found by its installation.
    let r = api(
        &server,
        &reader,
        "GET",
        &format!("/api/v1/people/lookup?pushRegId={anonymous}"),
        None,
    )
    .await;
    assert_eq!(found(r), person_id_of(&server, &anonymous).await.to_string());
    // Nobody owns these.
    for query in [
        "externalUserId=U-1".to_string(),
        "phone=385911234568".to_string(),
        "email=other%40example.com".to_string(),
        format!("pushRegId={}", Uuid::new_v4()),
    ] {
        api(&server, &reader, "GET", &format!("/api/v1/people/lookup?{query}"), None)
            .await
            .assert_error(404, "NOT_FOUND");
    }
    // Exactly one parameter.
    let r = api(&server, &reader, "GET", "/api/v1/people/lookup", None).await;
    r.assert_error(400, "BAD_REQUEST");
    assert!(validation(&r).get("query").is_some(), "{}", r.text());
    let r = api(
        &server,
        &reader,
        "GET",
        "/api/v1/people/lookup?externalUserId=u-1&email=a%40b.c",
        None,
    )
    .await;
    r.assert_error(400, "BAD_REQUEST");
    assert_eq!(
        validation(&r).as_object().unwrap().keys().collect::<Vec<_>>(),
        ["query.email", "query.externalUserId"]
    );
    // Values that no stored key can have.
    for (query, field) in [
        ("phone=12", "query.phone"),
        ("email=not-an-email", "query.email"),
        ("pushRegId=xyz", "query.pushRegId"),
        ("externalUserId=", "query.externalUserId"),
    ] {
        let r = api(&server, &reader, "GET", &format!("/api/v1/people/lookup?{query}"), None).await;
        r.assert_error(400, "BAD_REQUEST");
        assert!(validation(&r).get(field).is_some(), "{query}: {}", r.text());
    }
    server.finish().await;
}

/// PATCH with the user PATCH semantics, `ETag` and `If-Match`: a stale version is `412` and
/// changes nothing; a PATCH that changes nothing keeps the version; invalid data is refused
/// with the field's code and path, changing nothing.
async fn patch_person_with_if_match() {
    let server = TestServer::start().await;
    let writer = key(&server, &["people:write"]).await;
    let id = server.register_personalized("u-1").await;
    let pid = person_id_of(&server, &id).await;
    let path = format!("/api/v1/people/{pid}");
    let r = api(&server, &writer, "GET", &path, None).await.ok();
    let v0 = r.json()["version"].as_i64().unwrap();
    let etag = r.headers["etag"].to_str().unwrap().to_string();

    let r = api_with(
        &server,
        &writer,
        "PATCH",
        &path,
        &[("if-match", &etag)],
        Some(
            json!({"firstName": "Ana", "phones": [{"number": "+385 91 123 4567"}], "tags": ["a", "b"],
                    "customAttributes": {"points": 3, "since": "2024-01-02"}}),
        ),
    )
    .await
    .ok();
    let p = r.json();
    assert_eq!(p["version"], v0 + 1);
    assert_eq!(r.headers["etag"], format!("\"{}\"", v0 + 1));
    assert_eq!(p["firstName"], "Ana");
    assert_eq!(p["phones"], json!([{"number": "385911234567"}]));
    assert_eq!(p["customAttributes"], json!({"points": 3, "since": "2024-01-02"}));
    assert_eq!(p["installations"][0]["pushRegId"], id);

    // The old ETag no longer matches: 412, nothing changed.
    let before = server.snapshot().await;
    let r = api_with(
        &server,
        &writer,
        "PATCH",
        &path,
        &[("if-match", &etag)],
        Some(json!({"firstName": "Eve"})),
    )
    .await;
    r.assert_error(412, "PRECONDITION_FAILED");
    // A weak or malformed tag never matches either.
    for tag in [format!("W/\"{}\"", v0 + 1), (v0 + 1).to_string()] {
        api_with(
            &server,
            &writer,
            "PATCH",
            &path,
            &[("if-match", &tag)],
            Some(json!({"firstName": "Eve"})),
        )
        .await
        .assert_error(412, "PRECONDITION_FAILED");
    }
    // If-Match is judged before the body: a stale tag with invalid data is still 412.
    api_with(
        &server,
        &writer,
        "PATCH",
        &path,
        &[("if-match", &etag)],
        Some(json!({"phones": [{"number": "12"}]})),
    )
    .await
    .assert_error(412, "PRECONDITION_FAILED");
    // Invalid data: the field's code, its path in validationErrors.
    let r = api(
        &server,
        &writer,
        "PATCH",
        &path,
        Some(json!({"firstName": "Eve", "phones": [{"number": "385911234567"}, {"number": "12"}]})),
    )
    .await;
    r.assert_error(400, "PHONE_INVALID");
    assert_eq!(
        validation(&r).as_object().unwrap().keys().collect::<Vec<_>>(),
        ["phones[1].number"]
    );
    let r = api(
        &server,
        &writer,
        "PATCH",
        &path,
        Some(json!({"emails": [{"address": "nope"}]})),
    )
    .await;
    r.assert_error(400, "EMAIL_INVALID");
    assert!(validation(&r).get("emails[0].address").is_some());
    let r = api(
        &server,
        &writer,
        "PATCH",
        &path,
        Some(json!({"middleName": "x".repeat(51)})),
    )
    .await;
    r.assert_error(400, "REQUEST_FORMAT_INVALID");
    assert!(validation(&r).get("middleName").is_some());
    let r = api(
        &server,
        &writer,
        "PATCH",
        &path,
        Some(json!({"customAttributes": {"points": "many"}})),
    )
    .await;
    r.assert_error(400, "REQUEST_FORMAT_INVALID");
    assert!(validation(&r).get("customAttributes.points").is_some());
    api(&server, &writer, "PATCH", &path, Some(json!([1])))
        .await
        .assert_error(400, "BAD_REQUEST");
    assert_same_store(&before, &server.snapshot().await, "refused PATCHes");

    // `*` matches any version; no change keeps the version.
    let r = api_with(
        &server,
        &writer,
        "PATCH",
        &path,
        &[("if-match", "*")],
        Some(json!({"firstName": "Ana"})),
    )
    .await
    .ok();
    assert_eq!(r.json()["version"], v0 + 1);
    // null clears, [] clears, customAttributes merge per key.
    let r = api(
        &server,
        &writer,
        "PATCH",
        &path,
        Some(json!({"firstName": null, "tags": [], "customAttributes": {"points": null}})),
    )
    .await
    .ok();
    let p = r.json();
    assert!(p.get("firstName").is_none());
    assert_eq!(p["tags"], json!([]));
    assert_eq!(p["customAttributes"], json!({"since": "2024-01-02"}));
    assert_eq!(p["version"], v0 + 2);
    // The mobile API sees the same user.
    let u = get_user(&server, &id).await.ok().json();
    assert_eq!(u["customAttributes"], json!({"since": "2024-01-02"}));
    server.finish().await;
}

/// Identity and type rules of the management PATCH: a key of another person is
/// `USER_MERGE_INTERRUPTED`; removing every key of a person without installations is `CONFLICT`
/// (with an installation it is allowed); `CUSTOMER` promotes, `LEAD` on a `CUSTOMER` is 400.
async fn patch_person_identity_and_type_rules() {
    let server = TestServer::start().await;
    let writer = key(&server, &["people:write"]).await;
    let a = server.register_personalized("u-a").await;
    let b = server.register_personalized("u-b").await;
    let (pa, pb) = (person_id_of(&server, &a).await, person_id_of(&server, &b).await);

    let before = server.snapshot().await;
    for body in [
        json!({"externalUserId": "u-a"}),
        json!({"firstName": "x", "emails": [{"address": "free@x.org"}], "externalUserId": "u-a"}),
    ] {
        api(&server, &writer, "PATCH", &format!("/api/v1/people/{pb}"), Some(body))
            .await
            .assert_error(409, "USER_MERGE_INTERRUPTED");
    }
    assert_same_store(&before, &server.snapshot().await, "USER_MERGE_INTERRUPTED");
    // A free key renames.
    let r = api(
        &server,
        &writer,
        "PATCH",
        &format!("/api/v1/people/{pb}"),
        Some(json!({"externalUserId": "u-b2"})),
    )
    .await
    .ok();
    assert_eq!(r.json()["externalUserId"], "u-b2");

    // Person a without installations (its only device logged out through the mobile API).
    common::people_helpers::depersonalize(&server, &a, &a).await.ok();
    let before = server.snapshot().await;
    let r = api(
        &server,
        &writer,
        "PATCH",
        &format!("/api/v1/people/{pa}"),
        Some(json!({"externalUserId": null})),
    )
    .await;
    r.assert_error(409, "CONFLICT");
    assert_same_store(&before, &server.snapshot().await, "CONFLICT");
    // With an installation, dropping every key is allowed: anonymous, still owning the device.
    let r = api(
        &server,
        &writer,
        "PATCH",
        &format!("/api/v1/people/{pb}"),
        Some(json!({"externalUserId": ""})),
    )
    .await
    .ok();
    assert!(r.json().get("externalUserId").is_none());
    assert_eq!(r.json()["installations"][0]["pushRegId"], b);

    // Type: keepAsLead leaves a LEAD; CUSTOMER promotes; LEAD on a CUSTOMER is refused.
    let lead = server.register_android().await;
    server
        .personalize_ok(&lead, ext_identity("u-lead"), "keepAsLead=true")
        .await;
    let pl = person_id_of(&server, &lead).await;
    let path = format!("/api/v1/people/{pl}");
    let r = api(&server, &writer, "PATCH", &path, Some(json!({"type": "LEAD"})))
        .await
        .ok();
    assert_eq!(r.json()["type"], "LEAD");
    let before = server.snapshot().await;
    for bad in [json!("lead"), json!(null), json!(1), json!("VIP")] {
        let r = api(&server, &writer, "PATCH", &path, Some(json!({"type": bad}))).await;
        r.assert_error(400, "REQUEST_FORMAT_INVALID");
        assert!(validation(&r).get("type").is_some());
    }
    assert_same_store(&before, &server.snapshot().await, "bad types");
    let r = api(&server, &writer, "PATCH", &path, Some(json!({"type": "CUSTOMER"})))
        .await
        .ok();
    assert_eq!(r.json()["type"], "CUSTOMER");
    assert_eq!(
        person_of(&server.snapshot().await, &lead).person_type,
        PersonType::Customer
    );
    let before = server.snapshot().await;
    let r = api(
        &server,
        &writer,
        "PATCH",
        &path,
        Some(json!({"type": "LEAD", "firstName": "x"})),
    )
    .await;
    r.assert_error(400, "REQUEST_FORMAT_INVALID");
    assert_same_store(&before, &server.snapshot().await, "LEAD on a CUSTOMER");
    // The mobile API's `type` is ignored, the management API's is not: both agree afterwards.
    assert_eq!(get_user(&server, &lead).await.ok().json()["type"], "CUSTOMER");
    server.finish().await;
}

/// Installation PATCH: the four writable fields; `isPrimary: true` demotes the person's other
/// installation in the application; every other known field is listed as 400 and nothing
/// changes; unknown members are ignored.
async fn installation_patch() {
    let server = TestServer::start().await;
    let writer = key(&server, &["people:write"]).await;
    let first = server.register_personalized("u-1").await;
    common::people_helpers::patch_installation(&server, &first, &first, &json!({"isPrimary": true}))
        .await
        .ok();
    let second = server.register_personalized("u-1").await;
    let path = format!("/api/v1/installations/{second}");

    let r = api(
        &server,
        &writer,
        "PATCH",
        &path,
        Some(
            json!({"isPrimary": true, "regEnabled": false, "applicationUserId": "app-user-7",
                    "customAttributes": {"color": "red"}, "somethingElse": 1}),
        ),
    )
    .await
    .ok();
    let i = r.json();
    assert_eq!(i["isPrimary"], true);
    assert_eq!(i["regEnabled"], false);
    assert_eq!(i["deliverable"], false);
    assert_eq!(i["applicationUserId"], "app-user-7");
    assert_eq!(i["customAttributes"], json!({"color": "red"}));
    let s = server.snapshot().await;
    assert!(
        inst(&s, &second).is_primary && !inst(&s, &first).is_primary,
        "the other was demoted"
    );

    let before = server.snapshot().await;
    let r = api(
        &server,
        &writer,
        "PATCH",
        &path,
        Some(json!({"regEnabled": true, "os": "iOS", "pushServiceToken": "t", "personId": Uuid::new_v4()})),
    )
    .await;
    r.assert_error(400, "BAD_REQUEST");
    assert_eq!(
        validation(&r).as_object().unwrap().keys().collect::<Vec<_>>(),
        ["os", "personId", "pushServiceToken"]
    );
    let r = api(
        &server,
        &writer,
        "PATCH",
        &path,
        Some(json!({"applicationUserId": "x".repeat(257)})),
    )
    .await;
    r.assert_error(400, "REQUEST_FORMAT_INVALID");
    assert!(validation(&r).get("applicationUserId").is_some());
    api(&server, &writer, "PATCH", &path, Some(json!({"regEnabled": "yes"})))
        .await
        .assert_error(400, "REQUEST_FORMAT_INVALID");
    api(
        &server,
        &writer,
        "PATCH",
        &format!("/api/v1/installations/{}", Uuid::new_v4()),
        Some(json!({})),
    )
    .await
    .assert_error(404, "NOT_FOUND");
    assert_same_store(&before, &server.snapshot().await, "refused installation PATCHes");

    // null semantics of people.md §6.2.
    let r = api(
        &server,
        &writer,
        "PATCH",
        &path,
        Some(json!({"regEnabled": null, "isPrimary": null, "applicationUserId": null, "customAttributes": null})),
    )
    .await
    .ok();
    let i = r.json();
    assert_eq!(
        (i["regEnabled"].clone(), i["isPrimary"].clone()),
        (json!(true), json!(false))
    );
    assert!(i.get("applicationUserId").is_none());
    assert_eq!(i["customAttributes"], json!({}));
    server.finish().await;
}

/// Management depersonalize (people.md §7): a new anonymous person for the installation, the
/// old person keeps its data, the device sees itself anonymous; an anonymous installation is
/// left as it is. `Idempotency-Key` replays the answer without a second effect.
async fn depersonalize_by_management() {
    let server = TestServer::start().await;
    let writer = key(&server, &["people:write"]).await;
    let id = server
        .register_personalized_with(
            json!({"userIdentity": {"externalUserId": "u-1"}, "userAttributes": {"firstName": "Ana"}}),
            "setDeviceAsPrimary=true",
        )
        .await;
    let old = person_id_of(&server, &id).await;
    let path = format!("/api/v1/installations/{id}/depersonalize");
    let r = api_with(
        &server,
        &writer,
        "POST",
        &path,
        &[("idempotency-key", "logout-1")],
        None,
    )
    .await
    .ok();
    let i = r.json();
    let new = i["personId"].as_str().unwrap().to_string();
    assert_ne!(new, old.to_string());
    assert_eq!(i["isPrimary"], false);
    let s = server.snapshot().await;
    let old_person = common::people_helpers::person(&s, old).expect("the old person stays");
    assert_eq!(old_person.first_name.as_deref(), Some("Ana"));
    let fresh = person_of(&s, &id);
    assert!(fresh.is_anonymous() && fresh.person_type == PersonType::Lead);
    // The device sees an empty LEAD with only itself.
    let u = get_user(&server, &id).await.ok().json();
    assert!(u.get("externalUserId").is_none() && u.get("firstName").is_none());
    assert_eq!(u["type"], "LEAD");
    assert_eq!(u["instances"].as_array().unwrap().len(), 1);

    // Replayed: same answer, no effect.
    let before = server.snapshot().await;
    let again = api_with(
        &server,
        &writer,
        "POST",
        &path,
        &[("idempotency-key", "logout-1")],
        None,
    )
    .await
    .ok();
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.body, r.body);
    assert_same_store(&before, &server.snapshot().await, "replayed depersonalize");
    // The same key on another request: 422, no effect.
    let other = server.register_personalized("u-2").await;
    let before = server.snapshot().await;
    api_with(
        &server,
        &writer,
        "POST",
        &format!("/api/v1/installations/{other}/depersonalize"),
        &[("idempotency-key", "logout-1")],
        None,
    )
    .await
    .assert_error(422, "IDEMPOTENCY_KEY_REUSED");
    // Anonymous already: nothing changes, the same person answers.
    let r = api(&server, &writer, "POST", &path, None).await.ok();
    assert_eq!(r.json()["personId"], new);
    assert_same_store(&before, &server.snapshot().await, "422 and an anonymous depersonalize");
    api(
        &server,
        &writer,
        "POST",
        &format!("/api/v1/installations/{}/depersonalize", Uuid::new_v4()),
        None,
    )
    .await
    .assert_error(404, "NOT_FOUND");
    server.finish().await;
}

/// DELETE of an installation (people.md §2.5): `204`; the device gets `NO_REGISTRATION`; an
/// anonymous person goes with its last installation, a personalized one stays; again: `404`.
async fn delete_installation() {
    let server = TestServer::start().await;
    let writer = key(&server, &["people:write"]).await;
    let anonymous = server.register_android().await;
    let personalized = server.register_personalized("u-1").await;
    let (pa, pp) = (
        person_id_of(&server, &anonymous).await,
        person_id_of(&server, &personalized).await,
    );
    for id in [&anonymous, &personalized] {
        let r = api(&server, &writer, "DELETE", &format!("/api/v1/installations/{id}"), None).await;
        assert_eq!(r.status, 204, "{}", r.text());
        assert!(r.body.is_empty());
        server
            .call("GET", &common::ipath(id), Some(id), None)
            .await
            .assert_error(404, "NO_REGISTRATION");
        api(&server, &writer, "DELETE", &format!("/api/v1/installations/{id}"), None)
            .await
            .assert_error(404, "NOT_FOUND");
    }
    let s = server.snapshot().await;
    assert!(
        common::people_helpers::person(&s, pa).is_none(),
        "the emptied anonymous person is gone"
    );
    assert!(
        common::people_helpers::person(&s, pp).is_some(),
        "a personalized person stays"
    );
    api(&server, &writer, "GET", &format!("/api/v1/people/{pp}"), None)
        .await
        .ok();
    server.finish().await;
}

/// A merge made by a device (personalize of an anonymous installation into an existing
/// person), listed, read and reversed: both persons come back exactly as the snapshots before
/// the personalize (data; versions one higher), the installation returns to its person with its
/// flag and the target's primary gets its flag back. Reversing again is `MERGE_NOT_REVERSIBLE`.
async fn merge_log_list_get_and_reverse() {
    let server = TestServer::start().await;
    let reader = key(&server, &["people:read"]).await;
    let created = server
        .core()
        .create_api_key(server.app.account_id, "reverser", &["people:write".to_string()], None)
        .await
        .unwrap();
    let writer = created.secret.clone();
    // T: personalized with data and a primary installation.
    let a = server.register_primary(&format!("fcm-{}", Uuid::new_v4())).await;
    server
        .personalize_ok(
            &a,
            json!({"userIdentity": {"externalUserId": "u-1"},
                   "userAttributes": {"firstName": "Ana", "tags": ["t"], "customAttributes": {"k": 1}}}),
            NO_FLAGS,
        )
        .await;
    // P0: anonymous, primary, with data of its own.
    let b = server.register_primary(&format!("fcm-{}", Uuid::new_v4())).await;
    common::people_helpers::patch_user(
        &server,
        &b,
        &json!({"lastName": "Horvat", "tags": ["p0"], "customAttributes": {"k": 2, "only0": true}}),
    )
    .await
    .ok();
    let before = server.snapshot().await;
    let (t, p0) = (person_of(&before, &a).clone(), person_of(&before, &b).clone());
    // The personalize that merges P0 into T, adding a phone and an attribute.
    server
        .personalize_ok(
            &b,
            json!({"userIdentity": {"externalUserId": "u-1", "phones": [{"number": "385911111111"}]},
                   "userAttributes": {"customAttributes": {"added": "x"}}}),
            NO_FLAGS,
        )
        .await;
    let merged = server.snapshot().await;
    assert_eq!(person_of(&merged, &b).id, t.id);
    assert!(!inst(&merged, &b).is_primary, "T already had a primary");

    // Listed by either person, newest first; the list has no snapshots.
    for person in [t.id, p0.id] {
        let r = api(
            &server,
            &reader,
            "GET",
            &format!("/api/v1/merges?personId={person}"),
            None,
        )
        .await
        .ok();
        let page = r.json();
        assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
        assert_eq!(page["nextCursor"], Value::Null);
        assert!(page["items"][0].get("before").is_none());
    }
    let r = api(&server, &reader, "GET", "/api/v1/merges", None).await.ok();
    let entry = r.json()["items"][0].clone();
    let entry_id = entry["id"].as_str().unwrap().to_string();
    assert_eq!(entry["sourcePersonId"], p0.id.to_string());
    assert_eq!(entry["targetPersonId"], t.id.to_string());
    assert_eq!(entry["pushRegId"], b);
    assert_eq!(entry["sourceDeleted"], true);
    assert_eq!(entry["status"], "APPLIED");
    assert_eq!(entry["reversible"], true);
    assert_eq!(entry["actor"]["type"], "INSTALLATION");
    // One entry with its snapshots.
    let full = api(&server, &reader, "GET", &format!("/api/v1/merges/{entry_id}"), None)
        .await
        .ok()
        .json();
    assert_eq!(full["before"]["target"]["externalUserId"], "u-1");
    assert_eq!(full["before"]["source"]["lastName"], "Horvat");
    assert_eq!(
        full["before"]["installation"],
        json!({"isPrimary": true, "targetPrimaryPushRegId": a})
    );
    api(
        &server,
        &reader,
        "GET",
        &format!("/api/v1/merges/{}", Uuid::new_v4()),
        None,
    )
    .await
    .assert_error(404, "NOT_FOUND");

    // Reversal.
    let r = api(
        &server,
        &writer,
        "POST",
        &format!("/api/v1/merges/{entry_id}/reverse"),
        None,
    )
    .await
    .ok();
    let reversed = r.json();
    assert_eq!(reversed["status"], "REVERSED");
    assert_eq!(reversed["reversible"], false);
    assert!(is_timestamp(&reversed["reversedAt"]));
    assert_eq!(reversed["reversedBy"]["type"], "API_KEY");
    assert_eq!(reversed["reversedBy"]["apiKeyId"], created.key.id.to_string());

    let after = server.snapshot().await;
    let t_after = common::people_helpers::person(&after, t.id).unwrap();
    let p0_after = common::people_helpers::person(&after, p0.id).expect("P0 re-created under its id");
    assert!(t_after.data_equals(&t), "T restored:\n{t_after:?}\n{t:?}");
    assert!(p0_after.data_equals(&p0), "P0 restored:\n{p0_after:?}\n{p0:?}");
    assert_eq!(t_after.version, person_of(&merged, &a).version + 1);
    assert_eq!(p0_after.version, p0.version + 1);
    assert_eq!(inst(&after, &b).person_id, p0.id);
    assert!(inst(&after, &b).is_primary, "I's flag is back");
    assert!(inst(&after, &a).is_primary, "T's primary stays");
    // The device sees its own person again.
    let u = get_user(&server, &b).await.ok().json();
    assert_eq!(u["lastName"], "Horvat");
    assert!(u.get("externalUserId").is_none());

    // Once only.
    let before_again = server.snapshot().await;
    api(
        &server,
        &writer,
        "POST",
        &format!("/api/v1/merges/{entry_id}/reverse"),
        None,
    )
    .await
    .assert_error(409, "MERGE_NOT_REVERSIBLE");
    assert_same_store(&before_again, &server.snapshot().await, "second reversal");
    server.finish().await;
}

/// Reversal when the source person survived the merge (it had another installation) and the
/// personalize made the device primary: the source is restored in place (version one higher),
/// the device goes back with its old flag, the target's former primary gets its flag back;
/// `Idempotency-Key` replays the answer. A change of the source after a merge is
/// `MERGE_REVERSAL_CONFLICT`.
async fn reversal_with_a_surviving_source_and_the_targets_primary() {
    let server = TestServer::start().await;
    let writer = key(&server, &["people:write"]).await;
    let a = server.register_primary(&format!("fcm-{}", Uuid::new_v4())).await;
    server.personalize_as(&a, "u-1").await;
    // X: anonymous with two installations (personalized, then its key removed by management).
    let c = server.register_personalized("x").await;
    let d = server.register_android().await;
    server.personalize_as(&d, "x").await;
    let x = person_id_of(&server, &c).await;
    api(
        &server,
        &writer,
        "PATCH",
        &format!("/api/v1/people/{x}"),
        Some(json!({"externalUserId": null})),
    )
    .await
    .ok();
    let before = server.snapshot().await;
    let (t0, x0) = (person_of(&before, &a).clone(), person_of(&before, &c).clone());
    assert!(x0.is_anonymous() && inst(&before, &a).is_primary && !inst(&before, &c).is_primary);
    server
        .personalize_ok(&c, ext_identity("u-1"), "setDeviceAsPrimary=true")
        .await;
    let merged = server.snapshot().await;
    assert!(inst(&merged, &c).is_primary && !inst(&merged, &a).is_primary);
    let entry = merged.merge_log.iter().find(|e| e.push_reg_id == c).unwrap().clone();
    assert!(!entry.source_deleted);

    let path = format!("/api/v1/merges/{}/reverse", entry.id);
    let r = api_with(&server, &writer, "POST", &path, &[("idempotency-key", "rev-1")], None)
        .await
        .ok();
    assert_eq!(r.json()["status"], "REVERSED");
    let after = server.snapshot().await;
    let (t1, x1) = (person_of(&after, &a), person_of(&after, &c));
    assert_eq!(x1.id, x);
    assert!(t1.data_equals(&t0) && x1.data_equals(&x0));
    assert_eq!(x1.version, x0.version + 1);
    assert_eq!(t1.version, person_of(&merged, &a).version + 1);
    assert!(!inst(&after, &c).is_primary, "the device's own flag was false");
    assert!(
        inst(&after, &a).is_primary,
        "the target's former primary is primary again"
    );
    // Replayed with the same key: the same answer, nothing changes.
    let again = api_with(&server, &writer, "POST", &path, &[("idempotency-key", "rev-1")], None)
        .await
        .ok();
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.body, r.body);
    assert_same_store(&after, &server.snapshot().await, "replayed reversal");

    // Merged again; then the surviving source changes (its other device edits the user).
    server.personalize_as(&c, "u-1").await;
    let entry = server
        .snapshot()
        .await
        .merge_log
        .into_iter()
        .find(|e| e.push_reg_id == c && e.status == roster_model::MergeStatus::Applied)
        .unwrap();
    common::people_helpers::patch_user(&server, &d, &json!({"firstName": "changed"}))
        .await
        .ok();
    let before = server.snapshot().await;
    api(
        &server,
        &writer,
        "POST",
        &format!("/api/v1/merges/{}/reverse", entry.id),
        None,
    )
    .await
    .assert_error(409, "MERGE_REVERSAL_CONFLICT");
    assert_same_store(&before, &server.snapshot().await, "source changed");
    server.finish().await;
}

/// Concurrent reversals of one merge: exactly one succeeds, the others are
/// `MERGE_NOT_REVERSIBLE` (invariant 19), whatever the interleaving.
async fn concurrent_reversals_reverse_once() {
    let server = TestServer::start().await;
    let writer = key(&server, &["people:write"]).await;
    server.register_personalized("u-1").await;
    let b = server.register_android().await;
    server.personalize_as(&b, "u-1").await;
    let entry = server.snapshot().await.merge_log[0].id;
    let path = format!("/api/v1/merges/{entry}/reverse");
    let answers = futures::future::join_all((0..6).map(|_| api(&server, &writer, "POST", &path, None))).await;
    let ok = answers.iter().filter(|r| r.status == 200).count();
    assert_eq!(ok, 1, "{:?}", answers.iter().map(|r| r.text()).collect::<Vec<_>>());
    for r in answers.iter().filter(|r| r.status != 200) {
        r.assert_error(409, "MERGE_NOT_REVERSIBLE");
    }
    let s = server.snapshot().await;
    assert_eq!(s.merge_log[0].status, roster_model::MergeStatus::Reversed);
    assert!(person_of(&s, &b).is_anonymous());
    server.finish().await;
}

/// The merge log pages newest first with a cursor bound to its query; a change of the target
/// after the merge makes the reversal `MERGE_REVERSAL_CONFLICT` and changes nothing.
async fn merge_log_paging_and_reversal_conflict() {
    let server = TestServer::start().await;
    let writer = key(&server, &["people:write"]).await;
    server.register_personalized("u-1").await;
    let mut merged = Vec::new();
    for _ in 0..3 {
        let id = server.register_android().await;
        server.personalize_as(&id, "u-1").await;
        merged.push(id);
        common::tick().await;
    }
    let t = person_id_of(&server, &merged[0]).await;
    let r = api(
        &server,
        &writer,
        "GET",
        &format!("/api/v1/merges?personId={t}&limit=2"),
        None,
    )
    .await
    .ok();
    let first = r.json();
    assert_eq!(first["items"].as_array().unwrap().len(), 2);
    assert_eq!(first["items"][0]["pushRegId"], merged[2], "newest first");
    assert_eq!(first["items"][1]["pushRegId"], merged[1]);
    let cursor = first["nextCursor"].as_str().unwrap().to_string();
    let r = api(
        &server,
        &writer,
        "GET",
        &format!("/api/v1/merges?personId={t}&limit=2&cursor={cursor}"),
        None,
    )
    .await
    .ok();
    let second = r.json();
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert_eq!(second["items"][0]["pushRegId"], merged[0]);
    assert_eq!(second["nextCursor"], Value::Null);
    // A cursor of another query, a bad personId.
    let r = api(
        &server,
        &writer,
        "GET",
        &format!("/api/v1/merges?limit=2&cursor={cursor}"),
        None,
    )
    .await;
    r.assert_error(400, "BAD_REQUEST");
    assert!(validation(&r).get("query.cursor").is_some());
    let r = api(&server, &writer, "GET", "/api/v1/merges?personId=nope", None).await;
    r.assert_error(400, "BAD_REQUEST");
    assert!(validation(&r).get("query.personId").is_some());

    // The target changed after the merges: none of them can be reversed.
    api(
        &server,
        &writer,
        "PATCH",
        &format!("/api/v1/people/{t}"),
        Some(json!({"firstName": "changed"})),
    )
    .await
    .ok();
    let before = server.snapshot().await;
    for item in first["items"].as_array().unwrap() {
        let path = format!("/api/v1/merges/{}/reverse", item["id"].as_str().unwrap());
        api(&server, &writer, "POST", &path, None)
            .await
            .assert_error(409, "MERGE_REVERSAL_CONFLICT");
    }
    assert_same_store(&before, &server.snapshot().await, "reversal conflicts");
    server.finish().await;
}

/// GDPR export (everything, the whole tokens, the merge entries with snapshots, as a download)
/// and erase (person, installations in every application, redacted merge entries; devices get
/// `NO_REGISTRATION`; a second erase is `404`).
async fn gdpr_export_and_erase() {
    // Delivery stays off so that the push below stays QUEUED until the erase fails it.
    let server = TestServer::start_with(|s| s.delivery.enabled = false).await;
    let writer = key(&server, &["people:write"]).await;
    let pusher = key(&server, &["push:send"]).await;
    let token = format!("fcm-{}", Uuid::new_v4());
    let phone = register_with_token(&server, &token).await;
    server.personalize_as(&phone, "u-1").await;
    let other = server.other_app().await;
    let tablet = register_in(&server, &other).await;
    // The tablet's anonymous person is merged into u-1: a merge entry names both.
    common::people_helpers::personalize_in(&server, &other, &tablet, &ext_identity("u-1"), NO_FLAGS).await;
    let bystander = server.register_personalized("u-2").await;
    let pid = person_id_of(&server, &phone).await;
    let sent = server
        .call_with(
            "POST",
            "/push/3/messages",
            &[("authorization", &format!("App {pusher}"))],
            None,
            Some(
                serde_json::to_vec(&json!({"messages": [{
                    "sender": server.app.application_code,
                    "destinations": [{"type": "EXTERNAL_USER_ID", "externalUserId": "u-1"}],
                    "content": {"title": "Hi", "text": "Hello"},
                    "options": {"customPayload": {"deeplink": "acme://x"}}}],
                    "options": {"schedule": {"bulkId": "gdpr-1"}}}))
                .unwrap(),
            ),
        )
        .await
        .ok()
        .json();
    let message_id = sent["messages"][0]["messageId"].as_str().unwrap().to_string();

    let r = api(&server, &writer, "GET", &format!("/api/v1/people/{pid}/export"), None)
        .await
        .ok();
    assert_eq!(
        r.headers["content-disposition"],
        format!("attachment; filename=\"person-{pid}.json\"")
    );
    let doc = r.json();
    assert_eq!(doc["format"], "roster.person-export.v1");
    assert!(is_timestamp(&doc["exportedAt"]));
    assert_eq!(doc["accountId"], server.app.account_id.to_string());
    assert_eq!(doc["person"]["id"], pid.to_string());
    assert!(doc["person"].get("installations").is_none());
    let installations = doc["installations"].as_array().unwrap();
    assert_eq!(installations.len(), 2);
    assert_eq!(installations[0]["pushServiceToken"], token);
    let s = server.snapshot().await;
    assert_eq!(
        installations[1]["pushServiceToken"],
        inst(&s, &tablet).push_service_token.clone().unwrap()
    );
    // The push reached the phone (the tablet is in another application): one record, with its
    // message's content and custom payload.
    let deliveries = doc["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    let d = &deliveries[0];
    assert_eq!(d["messageId"], message_id);
    assert_eq!(d["bulkId"], "gdpr-1");
    assert_eq!(d["pushRegId"], phone);
    assert_eq!(d["applicationCode"], server.app.application_code);
    assert_eq!(d["status"], "QUEUED");
    assert_eq!(d["content"]["text"], "Hello");
    assert_eq!(d["customPayload"], json!({"deeplink": "acme://x"}));
    assert!(is_timestamp(&d["createdAt"]));
    let merges = doc["merges"].as_array().unwrap();
    assert_eq!(merges.len(), 1);
    assert!(merges[0]["before"]["target"].is_object());
    let entry_id = merges[0]["id"].as_str().unwrap().to_string();

    let r = api(&server, &writer, "DELETE", &format!("/api/v1/people/{pid}"), None)
        .await
        .ok();
    let report = r.json();
    assert_eq!(report["personId"], pid.to_string());
    assert!(is_timestamp(&report["erasedAt"]));
    assert_eq!(report["installationsDeleted"], 2);
    assert_eq!(report["deliveriesAnonymised"], 1);
    // The record stays, anonymised, and will never be sent.
    let records = server
        .call_with(
            "GET",
            &format!("/api/v1/messages/{message_id}/deliveries"),
            &[("authorization", &format!("App {pusher}"))],
            None,
            None,
        )
        .await
        .ok()
        .json();
    let record = &records["items"][0];
    assert_eq!(record["status"], "FAILED", "{record}");
    assert_eq!(record["providerResponse"]["reason"], "ERASED");
    assert_eq!(record["pushRegId"], Value::Null);
    assert_eq!(record["personId"], Value::Null);
    assert_eq!(report["mergeEntriesRedacted"], 1);

    let s = server.snapshot().await;
    assert!(common::people_helpers::person(&s, pid).is_none());
    assert!(s.installations.iter().all(|i| i.person_id != pid));
    assert!(s.persons.iter().all(|p| p.external_user_id.as_deref() != Some("u-1")));
    let e = s.merge_log.iter().find(|e| e.id.to_string() == entry_id).unwrap();
    assert!(e.redacted && e.before.is_none() && e.target_person_id.is_none());
    // The entry shows it; it can no longer be reversed.
    let shown = api(&server, &writer, "GET", &format!("/api/v1/merges/{entry_id}"), None)
        .await
        .ok()
        .json();
    assert_eq!(shown["targetPersonId"], Value::Null);
    assert_eq!(shown["redacted"], true);
    assert_eq!(shown["reversible"], false);
    assert!(shown.get("before").is_none());
    api(
        &server,
        &writer,
        "POST",
        &format!("/api/v1/merges/{entry_id}/reverse"),
        None,
    )
    .await
    .assert_error(409, "MERGE_NOT_REVERSIBLE");
    // The devices are unknown now; the bystander is untouched.
    server
        .call("GET", &common::ipath(&phone), Some(&phone), None)
        .await
        .assert_error(404, "NO_REGISTRATION");
    assert!(s.installations.iter().any(|i| i.push_reg_id == bystander));
    // Gone: 404 everywhere.
    for (method, path) in [
        ("DELETE", format!("/api/v1/people/{pid}")),
        ("GET", format!("/api/v1/people/{pid}")),
        ("GET", format!("/api/v1/people/{pid}/export")),
    ] {
        api(&server, &writer, method, &path, None)
            .await
            .assert_error(404, "NOT_FOUND");
    }
    server.finish().await;
}

/// Scopes (§1.2, §10): `people:read` reads, `people:write` and `admin` also write; `push:send`
/// does neither; no key is 401. Refusals change nothing.
async fn scopes() {
    let server = TestServer::start().await;
    let id = server.register_personalized("u-1").await;
    let pid = person_id_of(&server, &id).await;
    let reader = key(&server, &["people:read"]).await;
    let pusher = key(&server, &["push:send"]).await;
    let admin = key(&server, &["admin"]).await;
    let reads = [
        format!("/api/v1/people/{pid}"),
        "/api/v1/people/lookup?externalUserId=u-1".to_string(),
        format!("/api/v1/people/{pid}/export"),
        format!("/api/v1/installations/{id}"),
        "/api/v1/merges".to_string(),
    ];
    for path in &reads {
        api(&server, &reader, "GET", path, None).await.ok();
        api(&server, &admin, "GET", path, None).await.ok();
        let r = api(&server, &pusher, "GET", path, None).await;
        r.assert_error(403, "FORBIDDEN");
        assert!(r.text().contains("people:read"), "{}", r.text());
        let r = server.call_with("GET", path, &[], None, None).await;
        r.assert_error(401, "UNAUTHORIZED");
    }
    let before = server.snapshot().await;
    let writes = [
        (
            "PATCH",
            format!("/api/v1/people/{pid}"),
            Some(json!({"firstName": "x"})),
        ),
        ("DELETE", format!("/api/v1/people/{pid}"), None),
        (
            "PATCH",
            format!("/api/v1/installations/{id}"),
            Some(json!({"regEnabled": false})),
        ),
        ("POST", format!("/api/v1/installations/{id}/depersonalize"), None),
        ("DELETE", format!("/api/v1/installations/{id}"), None),
        ("POST", format!("/api/v1/merges/{}/reverse", Uuid::new_v4()), None),
    ];
    for (method, path, body) in &writes {
        for k in [&reader, &pusher] {
            let r = api(&server, k, method, path, body.clone()).await;
            r.assert_error(403, "FORBIDDEN");
            assert!(r.text().contains("people:write"), "{}", r.text());
        }
    }
    assert_same_store(&before, &server.snapshot().await, "forbidden writes");
    // admin writes.
    api(
        &server,
        &admin,
        "PATCH",
        &format!("/api/v1/people/{pid}"),
        Some(json!({"firstName": "x"})),
    )
    .await
    .ok();
    // 405 with the envelope and Allow.
    let r = api(&server, &admin, "PUT", &format!("/api/v1/people/{pid}"), None).await;
    r.assert_error(405, "METHOD_NOT_ALLOWED");
    assert!(r.headers.contains_key("allow"));
    server.finish().await;
}

on_every_backend!(
    resources_have_the_shapes_of_the_spec,
    lookups,
    patch_person_with_if_match,
    patch_person_identity_and_type_rules,
    installation_patch,
    depersonalize_by_management,
    delete_installation,
    merge_log_list_get_and_reverse,
    merge_log_paging_and_reversal_conflict,
    gdpr_export_and_erase,
    scopes,
    reversal_with_a_surviving_source_and_the_targets_primary,
);
on_every_backend!(multi_thread: concurrent_reversals_reverse_once);
