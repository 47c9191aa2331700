//! The portal's admin pages over HTTP against the real server, on every backend: applications
//! (settings, provider credentials that are never shown back, JWT keys), attribute definitions
//! with the LIST_OF_OBJECTS schema editor, the segment builder with its preview, Send with the
//! message page and the recent sends; CSRF refusal on every form of these pages. Every change is
//! checked through the management API.

mod common;
#[path = "common/portal_client.rs"]
mod portal_client;

use std::time::Duration;

use common::TestServer;
use portal_client::{Browser, Page, admin_key, api, key, two_iphones};
use reqwest::StatusCode;
use roster_push_standins::{ApnsStandIn, ApnsStandInConfig, fixtures};
use serde_json::{Value, json};

/// Long alphanumeric runs of a secret (PEM body lines, JSON strings): none may appear in a page,
/// escaped or not.
fn secret_marks(secret: &str) -> Vec<String> {
    secret
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|run| run.len() >= 16)
        .map(str::to_string)
        .collect()
}

fn assert_no_secret(page: &Page, marks: &[String], context: &str) {
    for m in marks {
        assert!(!page.has(m), "{context}: a credential appears in the page ({m})");
    }
}

on_every_backend!(
    applications_pages,
    attribute_pages,
    segment_pages,
    send_pages,
    forms_refuse_a_missing_csrf_token,
);

async fn applications_pages() {
    let ts = TestServer::start().await;
    let admin = admin_key(&ts).await;
    let mut b = Browser::signed_in(&ts, &admin).await;

    // The list shows the test application; a new one is created with a generated code.
    let list = b.get("/portal/applications").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.has(&ts.app.application_code), "{}", list.body);
    let refused = b.post("/portal/applications", &[("name", "")]).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.has("Not created"), "{}", refused.body);
    let created = b.post("/portal/applications", &[("name", "Shop <2>")]).await;
    let page = b.follow(&created).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.has("Shop &#60;2&#62;"), "escaped name: {}", page.body);
    let apps = api(&ts, &admin, "GET", "/api/v1/applications", None).await.ok().json();
    let shop = apps["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "Shop <2>")
        .unwrap()
        .clone();
    let id = shop["id"].as_str().unwrap().to_string();
    assert!(page.has(shop["applicationCode"].as_str().unwrap()));
    let path = format!("/portal/applications/{id}");

    // Settings: require JWT on.
    let saved = b
        .post(
            &format!("{path}/settings"),
            &[
                ("name", "Shop 2"),
                ("enabled", "true"),
                ("requireJwtForUserData", "true"),
            ],
        )
        .await;
    assert_eq!(saved.location(), path);
    let app = api(&ts, &admin, "GET", &format!("/api/v1/applications/{id}"), None)
        .await
        .ok()
        .json();
    assert_eq!(app["name"], "Shop 2");
    assert_eq!(app["requireJwtForUserData"], true);
    assert_eq!(app["enabled"], true);

    // Provider credentials: a bad key is refused next to its field and changes nothing.
    let bad = b
        .post(
            &format!("{path}/providers/apns"),
            &[
                ("apns.teamId", fixtures::APNS_TEAM_ID),
                ("apns.keyId", fixtures::APNS_KEY_ID),
                (
                    "apns.privateKey",
                    "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----",
                ),
                ("apns.topic", fixtures::APNS_TOPIC),
                ("apns.environment", "sandbox"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    assert!(bad.has("data-field=\"apns.privateKey\""), "{}", bad.body);
    let app = api(&ts, &admin, "GET", &format!("/api/v1/applications/{id}"), None)
        .await
        .ok()
        .json();
    assert_eq!(app["providers"]["apns"]["configured"], false);
    // Good credentials for the three providers.
    let service_account = fixtures::service_account("http://127.0.0.1:9/token").to_string();
    for (provider, fields) in [
        (
            "apns",
            vec![
                ("apns.teamId", fixtures::APNS_TEAM_ID),
                ("apns.keyId", fixtures::APNS_KEY_ID),
                ("apns.privateKey", fixtures::APNS_PRIVATE_KEY_PEM),
                ("apns.topic", fixtures::APNS_TOPIC),
                ("apns.environment", "sandbox"),
            ],
        ),
        ("fcm", vec![("fcm.serviceAccount", service_account.as_str())]),
        (
            "hms",
            vec![
                ("hms.appId", fixtures::HMS_APP_ID),
                ("hms.clientId", fixtures::HMS_CLIENT_ID),
                ("hms.clientSecret", fixtures::HMS_CLIENT_SECRET),
            ],
        ),
    ] {
        let saved = b.post(&format!("{path}/providers/{provider}"), &fields).await;
        assert_eq!(saved.status, StatusCode::SEE_OTHER, "{provider}: {}", saved.body);
    }
    let app = api(&ts, &admin, "GET", &format!("/api/v1/applications/{id}"), None)
        .await
        .ok()
        .json();
    for p in ["apns", "fcm", "hms"] {
        assert_eq!(app["providers"][p]["configured"], true, "{p}: {app}");
    }
    assert_eq!(app["providers"]["apns"]["environment"], "sandbox");
    // A provider form without its secret keeps the stored one.
    let kept = b
        .post(
            &format!("{path}/providers/apns"),
            &[
                ("apns.teamId", fixtures::APNS_TEAM_ID),
                ("apns.keyId", fixtures::APNS_KEY_ID),
                ("apns.privateKey", ""),
                ("apns.topic", "com.example.other"),
                ("apns.environment", "production"),
            ],
        )
        .await;
    assert_eq!(kept.status, StatusCode::SEE_OTHER, "{}", kept.body);
    let app = api(&ts, &admin, "GET", &format!("/api/v1/applications/{id}"), None)
        .await
        .ok()
        .json();
    assert_eq!(app["providers"]["apns"]["topic"], "com.example.other");
    assert_eq!(app["providers"]["apns"]["configured"], true);

    // JWT keys: the secret is shown once, in the answer to the create.
    let created = b.post(&format!("{path}/jwt-keys"), &[("kid", "key-2025")]).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let start = created.body.find("id=\"new-jwt-secret\">").unwrap() + "id=\"new-jwt-secret\">".len();
    let secret = created.body[start..].split('<').next().unwrap().to_string();
    assert_eq!(secret.len(), 44, "{secret}");
    let again = b.get(&path).await;
    assert!(
        again.has("key-2025") && !again.has(&secret),
        "the secret is not shown again"
    );
    let dup = b.post(&format!("{path}/jwt-keys"), &[("kid", "key-2025")]).await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    let deleted = b.post(&format!("{path}/jwt-keys/key-2025/delete"), &[]).await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER);
    let keys = api(&ts, &admin, "GET", &format!("/api/v1/applications/{id}/jwt-keys"), None)
        .await
        .ok()
        .json();
    assert_eq!(keys["items"], json!([]));

    // No page shows a credential.
    let mut marks = secret_marks(fixtures::APNS_PRIVATE_KEY_PEM);
    marks.extend(secret_marks(fixtures::FCM_PRIVATE_KEY_PEM));
    marks.push(fixtures::HMS_CLIENT_SECRET.to_string());
    marks.push(secret.clone());
    for page in [
        "/portal/applications".to_string(),
        path.clone(),
        "/portal/send".into(),
        "/portal/segments".into(),
        "/portal/segments/new".into(),
        "/portal/attributes".into(),
        "/portal/messages".into(),
    ] {
        let p = b.get(&page).await;
        assert_eq!(p.status, StatusCode::OK, "{page}");
        assert_no_secret(&p, &marks, &page);
    }

    // Removing a provider.
    let removed = b.post(&format!("{path}/providers/hms/remove"), &[]).await;
    assert_eq!(removed.status, StatusCode::SEE_OTHER);
    let app = api(&ts, &admin, "GET", &format!("/api/v1/applications/{id}"), None)
        .await
        .ok()
        .json();
    assert_eq!(app["providers"]["hms"]["configured"], false);

    // A key without `admin` sees why it cannot list applications.
    let reader = key(&ts, &["people:read"]).await.0;
    let mut r = Browser::signed_in(&ts, &reader).await;
    let list = r.get("/portal/applications").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.has("admin"), "{}", list.body);
    ts.finish().await;
}

async fn attribute_pages() {
    let ts = TestServer::start().await;
    let admin = admin_key(&ts).await;
    let mut b = Browser::signed_in(&ts, &admin).await;
    let page = b.get("/portal/attributes").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.body.matches("class=\"schema-row\"").count(), 1);

    // The schema editor: add a row, remove one, keeping the values typed.
    let base = [
        ("scope", "PERSON"),
        ("name", "orders"),
        ("type", "LIST_OF_OBJECTS"),
        ("fieldName", "sku"),
        ("fieldType", "STRING"),
    ];
    let mut fields = base.to_vec();
    fields.push(("action", "add-row"));
    let added = b.post("/portal/attributes", &fields).await;
    assert_eq!(added.status, StatusCode::OK);
    assert_eq!(added.body.matches("class=\"schema-row\"").count(), 2);
    assert!(added.has("value=\"sku\""));
    let mut fields = base.to_vec();
    fields.extend([("fieldName", "gone"), ("fieldType", "DATE"), ("action", "remove-row-1")]);
    let removed = b.post("/portal/attributes", &fields).await;
    assert_eq!(removed.body.matches("class=\"schema-row\"").count(), 1);
    assert!(!removed.has("value=\"gone\""));

    // A list of objects without fields is refused; with fields it is defined.
    let empty = b
        .post(
            "/portal/attributes",
            &[
                ("scope", "PERSON"),
                ("name", "orders"),
                ("type", "LIST_OF_OBJECTS"),
                ("fieldName", ""),
                ("fieldType", "STRING"),
                ("action", "create"),
            ],
        )
        .await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST, "{}", empty.body);
    assert!(empty.has("Not defined"));
    let mut fields = base.to_vec();
    fields.extend([("fieldName", "price"), ("fieldType", "DECIMAL"), ("action", "create")]);
    let defined = b.post("/portal/attributes", &fields).await;
    assert_eq!(defined.location(), "/portal/attributes");
    let d = api(&ts, &admin, "GET", "/api/v1/attributes/PERSON/orders", None)
        .await
        .ok()
        .json();
    assert_eq!(
        d["objectSchema"],
        json!([{"name": "sku", "type": "STRING"}, {"name": "price", "type": "DECIMAL"}])
    );
    let list = b.get("/portal/attributes").await;
    assert!(list.has("sku: STRING") && list.has("price: DECIMAL"), "{}", list.body);
    // A second definition of the name: 409, shown.
    let dup = b.post("/portal/attributes", &fields).await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    // A scalar one.
    let scalar = b
        .post(
            "/portal/attributes",
            &[
                ("scope", "INSTALLATION"),
                ("name", "tier"),
                ("type", "STRING"),
                ("action", "create"),
            ],
        )
        .await;
    assert_eq!(scalar.status, StatusCode::SEE_OTHER, "{}", scalar.body);

    // Delete: first a confirmation, nothing deleted; then deleted.
    let ask = b.post("/portal/attributes/PERSON/orders/delete", &[]).await;
    assert_eq!(ask.status, StatusCode::OK);
    assert!(ask.has("id=\"confirm-delete\""));
    api(&ts, &admin, "GET", "/api/v1/attributes/PERSON/orders", None)
        .await
        .ok();
    let gone = b
        .post("/portal/attributes/PERSON/orders/delete", &[("confirm", "delete")])
        .await;
    assert_eq!(gone.status, StatusCode::SEE_OTHER);
    api(&ts, &admin, "GET", "/api/v1/attributes/PERSON/orders", None)
        .await
        .assert_error(404, "NOT_FOUND");
    ts.finish().await;
}

async fn segment_pages() {
    let ts = TestServer::start().await;
    let admin = admin_key(&ts).await;
    let vip = ts.register_personalized("seg-vip").await;
    ts.register_personalized("seg-other").await;
    let person = api(&ts, &admin, "GET", "/api/v1/people/lookup?externalUserId=seg-vip", None)
        .await
        .ok()
        .json();
    let person_id = person["id"].as_str().unwrap().to_string();
    api(
        &ts,
        &admin,
        "PATCH",
        &format!("/api/v1/people/{person_id}"),
        Some(&json!({"tags": ["vip"], "firstName": "Vera"})),
    )
    .await
    .ok();
    let mut b = Browser::signed_in(&ts, &admin).await;
    let new = b.get("/portal/segments/new").await;
    assert_eq!(new.status, StatusCode::OK);
    assert!(new.has("id=\"preview-people\">2<"), "everyone: {}", new.body);

    // The live preview (htmx): counts and the sample.
    let cond = [
        ("combine", "and"),
        ("cf", "tags"),
        ("co", "$eq"),
        ("cv", "vip"),
        ("raw", ""),
    ];
    let preview = b.hx_post("/portal/segments/preview", &cond).await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.body);
    assert!(preview.has("id=\"preview-people\">1<"), "{}", preview.body);
    assert!(preview.has("id=\"preview-installations\">1<"));
    assert!(preview.has(&format!("/portal/people/{person_id}")) && preview.has("Vera"));
    assert!(!preview.has("<html"), "a fragment");
    // Two conditions with OR, a typed JSON filter, and the API's parse errors.
    let or = b
        .hx_post(
            "/portal/segments/preview",
            &[
                ("combine", "or"),
                ("cf", "tags"),
                ("co", "$eq"),
                ("cv", "vip"),
                ("cf", "externalUserId"),
                ("co", "$in"),
                ("cv", "seg-other, nobody"),
            ],
        )
        .await;
    assert!(or.has("id=\"preview-people\">2<"), "{}", or.body);
    let raw_filter = format!("{{\"installation.pushRegId\": \"{vip}\"}}");
    let raw = b
        .hx_post("/portal/segments/preview", &[("raw", raw_filter.as_str())])
        .await;
    assert!(raw.has("id=\"preview-installations\">1<"), "{}", raw.body);
    let bad = b
        .hx_post("/portal/segments/preview", &[("raw", "{\"$bogus\": 1}")])
        .await;
    assert!(bad.has("id=\"preview-error\""), "{}", bad.body);
    let not_json = b.hx_post("/portal/segments/preview", &[("raw", "{tags")]).await;
    assert!(not_json.has("not valid JSON"), "{}", not_json.body);
    let undefined = b
        .hx_post(
            "/portal/segments/preview",
            &[("cf", "customAttributes.nope"), ("co", "$eq"), ("cv", "1")],
        )
        .await;
    assert!(undefined.has("id=\"preview-error\""), "{}", undefined.body);
    // "Check" without script: the whole page with the preview.
    let mut check = cond.to_vec();
    check.push(("action", "check"));
    let checked = b.post("/portal/segments/build", &check).await;
    assert_eq!(checked.status, StatusCode::OK);
    assert!(checked.has("id=\"preview-people\">1<"));

    // Save: refused without a name (nothing stored), then saved.
    let mut save = cond.to_vec();
    save.extend([("name", ""), ("action", "save")]);
    let refused = b.post("/portal/segments/build", &save).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    let segments = api(&ts, &admin, "GET", "/api/v1/segments", None).await.ok().json();
    assert_eq!(segments["items"], json!([]));
    let mut save = cond.to_vec();
    save.extend([("name", "VIPs"), ("description", "tagged vip"), ("action", "save")]);
    let saved = b.post("/portal/segments/build", &save).await;
    let edit = b.follow(&saved).await;
    let segments = api(&ts, &admin, "GET", "/api/v1/segments", None).await.ok().json();
    let segment = &segments["items"][0];
    assert_eq!(segment["name"], "VIPs");
    assert_eq!(segment["filter"], json!({"tags": {"$eq": "vip"}}));
    let id = segment["id"].as_str().unwrap().to_string();
    // The edit page shows the filter as builder rows.
    assert!(edit.has("value=\"tags\"") && edit.has("value=\"vip\""), "{}", edit.body);
    assert!(edit.has("id=\"preview-people\">1<"));
    // Renamed through the same form.
    let mut rename = cond.to_vec();
    rename.extend([("id", id.as_str()), ("name", "VIP people"), ("action", "save")]);
    assert_eq!(
        b.post("/portal/segments/build", &rename).await.status,
        StatusCode::SEE_OTHER
    );
    let s = api(&ts, &admin, "GET", &format!("/api/v1/segments/{id}"), None)
        .await
        .ok()
        .json();
    assert_eq!(s["name"], "VIP people");
    let list = b.get("/portal/segments").await;
    assert!(list.has("VIP people"));

    // Delete after the confirmation.
    let ask = b.get(&format!("/portal/segments?delete={id}")).await;
    assert!(ask.has("id=\"confirm-delete\""));
    let gone = b
        .post(&format!("/portal/segments/{id}/delete"), &[("confirm", "delete")])
        .await;
    assert_eq!(gone.location(), "/portal/segments");
    api(&ts, &admin, "GET", &format!("/api/v1/segments/{id}"), None)
        .await
        .assert_error(404, "NOT_FOUND");
    ts.finish().await;
}

async fn send_pages() {
    let ts = TestServer::start_with(|s| s.delivery.poll_interval_ms = 50).await;
    let apns = ApnsStandIn::start(ApnsStandInConfig::test()).await.unwrap();
    let admin = admin_key(&ts).await;
    let primary_token = "c3".repeat(32);
    let [first, second] = two_iphones(&ts, &apns, "send-1", [&primary_token, &"d4".repeat(32)]).await;
    let mut b = Browser::signed_in(&ts, &admin).await;
    let form = b.get("/portal/send?target=externalUserId&value=send-1").await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.has("value=\"send-1\""));
    let idem = form.hidden("idem").unwrap();
    let code = ts.app.application_code.clone();

    // Refused: no text. Nothing is sent.
    let refused = b
        .post(
            "/portal/send",
            &[
                ("app", &code),
                ("target", "externalUserId"),
                ("value", "send-1"),
                ("text", ""),
                ("idem", &idem),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert!(refused.has("class=\"field-error\""), "{}", refused.body);
    let none = api(&ts, &admin, "GET", "/api/v1/messages", None).await.ok().json();
    assert_eq!(none["items"], json!([]));

    // Sent to the primary only; the message page polls until done.
    let idem = b.get("/portal/send").await.hidden("idem").unwrap();
    let fields = [
        ("app", code.as_str()),
        ("target", "externalUserId"),
        ("value", "send-1"),
        ("primaryOnly", "true"),
        ("title", "Hi"),
        ("text", "Portal test"),
        ("idem", idem.as_str()),
    ];
    let sent = b.post("/portal/send", &fields).await;
    let to = sent.location().to_string();
    assert!(to.starts_with("/portal/messages/"), "{to}");
    // The same form sent twice (a double click) sends once.
    let again = b.post("/portal/send", &fields).await;
    assert_eq!(again.location(), to);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let page = loop {
        let page = b.get(&to).await;
        assert_eq!(page.status, StatusCode::OK);
        if page.has("data-done=\"true\"") {
            break page;
        }
        assert!(page.has("hx-trigger=\"every 1s\""), "polls while not done");
        assert!(tokio::time::Instant::now() < deadline, "never done: {}", page.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!page.has("hx-trigger=\"every 1s\""), "stops polling when done");
    assert!(
        page.has(&format!("data-push-reg-id=\"{first}\" data-status=\"ACCEPTED\"")),
        "{}",
        page.body
    );
    assert!(!page.has(&format!("data-push-reg-id=\"{second}\"")));
    assert!(!page.has(&primary_token));
    let recorded = apns.recorded();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].device_token, primary_token);

    // Unknown person: the message is rejected and says so.
    let idem = b.get("/portal/send").await.hidden("idem").unwrap();
    let rejected = b
        .post(
            "/portal/send",
            &[
                ("app", &code),
                ("target", "externalUserId"),
                ("value", "nobody"),
                ("text", "x"),
                ("idem", &idem),
            ],
        )
        .await;
    let page = b.follow(&rejected).await;
    assert!(page.has("REJECTED_DESTINATION_NOT_FOUND"), "{}", page.body);

    // The person owning an installation, to all of their devices; an installation; a segment.
    let segment = api(
        &ts,
        &admin,
        "POST",
        "/api/v1/segments",
        Some(&json!({"name": "all", "filter": {}})),
    )
    .await
    .json();
    for (target, value, segment) in [
        ("person", second.as_str(), ""),
        ("installation", second.as_str(), ""),
        ("segment", "", segment["id"].as_str().unwrap()),
    ] {
        let idem = b.get("/portal/send").await.hidden("idem").unwrap();
        let sent = b
            .post(
                "/portal/send",
                &[
                    ("app", &code),
                    ("target", target),
                    ("value", value),
                    ("segment", segment),
                    ("text", "more"),
                    ("idem", &idem),
                ],
            )
            .await;
        let page = b.follow(&sent).await;
        assert!(page.has("PENDING_ACCEPTED"), "{target}: {}", page.body);
    }

    // Recent sends: newest first, every send listed once, paged by the API's cursor.
    let recent = b.get("/portal/messages").await;
    assert_eq!(recent.status, StatusCode::OK);
    assert_eq!(
        recent.body.matches("href=\"/portal/messages/").count(),
        5,
        "{}",
        recent.body
    );
    let all = api(&ts, &admin, "GET", "/api/v1/messages?limit=2", None)
        .await
        .ok()
        .json();
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    let cursor = all["nextCursor"].as_str().unwrap();
    let rest = api(
        &ts,
        &admin,
        "GET",
        &format!("/api/v1/messages?limit=10&cursor={cursor}"),
        None,
    )
    .await
    .ok()
    .json();
    assert_eq!(rest["items"].as_array().unwrap().len(), 3);
    assert_eq!(rest["nextCursor"], Value::Null);
    let last = &rest["items"][2];
    assert_eq!(last["content"]["text"], "Portal test", "the oldest last");
    ts.finish().await;
}

async fn forms_refuse_a_missing_csrf_token() {
    let ts = TestServer::start().await;
    let admin = admin_key(&ts).await;
    let mut b = Browser::signed_in(&ts, &admin).await;
    let app = format!("/portal/applications/{}", ts.app.id);
    let before = api(&ts, &admin, "GET", &format!("/api/v1/applications/{}", ts.app.id), None)
        .await
        .ok()
        .json();
    for (path, fields) in [
        ("/portal/applications".to_string(), vec![("name", "Evil")]),
        (format!("{app}/settings"), vec![("name", "Evil")]),
        (
            format!("{app}/providers/hms"),
            vec![("hms.appId", "1"), ("hms.clientId", "1"), ("hms.clientSecret", "s")],
        ),
        (format!("{app}/providers/apns/remove"), vec![]),
        (format!("{app}/jwt-keys"), vec![("kid", "evil")]),
        (format!("{app}/jwt-keys/evil/delete"), vec![]),
        (
            "/portal/attributes".to_string(),
            vec![
                ("scope", "PERSON"),
                ("name", "evil"),
                ("type", "STRING"),
                ("action", "create"),
            ],
        ),
        (
            "/portal/attributes/PERSON/evil/delete".to_string(),
            vec![("confirm", "delete")],
        ),
        (
            "/portal/segments/build".to_string(),
            vec![("name", "evil"), ("raw", "{}"), ("action", "save")],
        ),
        ("/portal/segments/preview".to_string(), vec![("raw", "{}")]),
        ("/portal/segments/x/delete".to_string(), vec![("confirm", "delete")]),
        (
            "/portal/send".to_string(),
            vec![("target", "externalUserId"), ("value", "x"), ("text", "evil")],
        ),
    ] {
        let mut with_empty = fields.clone();
        with_empty.push(("csrf", ""));
        let page = b.post(&path, &with_empty).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}: {}", page.body);
        assert!(page.has("Request refused"), "{path}");
        let mut wrong = fields.clone();
        wrong.push(("csrf", "not-the-token"));
        assert_eq!(b.post(&path, &wrong).await.status, StatusCode::FORBIDDEN, "{path}");
    }
    let after = api(&ts, &admin, "GET", &format!("/api/v1/applications/{}", ts.app.id), None)
        .await
        .ok()
        .json();
    assert_eq!(before, after, "the application is unchanged");
    for (path, empty) in [
        ("/api/v1/applications", 1),
        ("/api/v1/attributes", 0),
        ("/api/v1/segments", 0),
        ("/api/v1/messages", 0),
    ] {
        let list = api(&ts, &admin, "GET", path, None).await.ok().json();
        assert_eq!(list["items"].as_array().unwrap().len(), empty, "{path}: {list}");
    }
    let keys = api(
        &ts,
        &admin,
        "GET",
        &format!("/api/v1/applications/{}/jwt-keys", ts.app.id),
        None,
    )
    .await
    .ok()
    .json();
    assert_eq!(keys["items"], json!([]));
    ts.finish().await;
}
