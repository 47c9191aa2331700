//! `Idempotency-Key` (management-api.md §3.3) on the admin POSTs: applications, JWT keys, API
//! keys and attribute definitions — a replay answers the stored status and body with
//! `Idempotent-Replayed: true` and creates nothing; another body with the same key is 422; an API
//! key's secret is never stored, so its replay omits `key`.

mod common;

use common::TestServer;
use serde_json::{Value, json};

async fn admin_key(server: &TestServer) -> String {
    server
        .core()
        .create_api_key(server.app.account_id, "admin", &["admin".to_string()], None)
        .await
        .unwrap()
        .secret
}

async fn post(server: &TestServer, key: &str, path: &str, idem: &str, body: &Value) -> common::Resp {
    server
        .call_with(
            "POST",
            path,
            &[("authorization", &format!("App {key}")), ("idempotency-key", idem)],
            None,
            Some(serde_json::to_vec(body).unwrap()),
        )
        .await
}

fn replayed(r: &common::Resp) -> bool {
    r.headers.get("idempotent-replayed").is_some_and(|v| v == "true")
}

async fn admin_posts_are_idempotent() {
    let server = TestServer::start().await;
    let key = admin_key(&server).await;
    let jwt_path = format!("/api/v1/applications/{}/jwt-keys", server.app.id);
    let cases: [(&str, Value); 4] = [
        (
            "/api/v1/applications",
            json!({"name": "Once", "requireJwtForUserData": true}),
        ),
        (&jwt_path, json!({"kid": "k-1"})),
        ("/api/v1/apikeys", json!({"name": "ci", "scopes": ["push:send"]})),
        (
            "/api/v1/attributes",
            json!({"scope": "PERSON", "name": "points", "type": "DECIMAL"}),
        ),
    ];
    let before = server.snapshot().await;
    for (i, (path, body)) in cases.iter().enumerate() {
        let idem = format!("idem-{i}");
        let first = post(&server, &key, path, &idem, body).await;
        assert_eq!(first.status, 201, "{path}: {}", first.text());
        assert!(!replayed(&first));
        let again = post(&server, &key, path, &idem, body).await;
        assert_eq!(again.status, 201, "{path}: {}", again.text());
        assert!(replayed(&again), "{path}");
        if path.ends_with("apikeys") {
            // The secret is shown once; the replay has everything else.
            let mut shown = first.json();
            assert!(shown["key"].as_str().unwrap().starts_with("rk_"));
            shown.as_object_mut().unwrap().remove("key");
            assert_eq!(again.json(), shown);
        } else {
            assert_eq!(again.body, first.body, "{path}: the replay is byte for byte the answer");
        }
        // The same key with another body: 422, nothing created.
        let mut other = body.clone();
        other["name"] = json!("Different");
        post(&server, &key, path, &idem, &other)
            .await
            .assert_error(422, "IDEMPOTENCY_KEY_REUSED");
    }
    let after = server.snapshot().await;
    assert_eq!(after.applications.len(), before.applications.len() + 1);
    assert_eq!(after.jwt_keys.len(), before.jwt_keys.len() + 1);
    assert_eq!(after.api_keys.len(), before.api_keys.len() + 1);
    assert_eq!(
        after.attribute_definitions.len(),
        before.attribute_definitions.len() + 1
    );
    // A refusal is stored and replayed too (below 500, not 429).
    let bad = json!({"name": ""});
    let r1 = post(&server, &key, "/api/v1/applications", "bad-1", &bad).await;
    r1.assert_error(400, "BAD_REQUEST");
    let r2 = post(&server, &key, "/api/v1/applications", "bad-1", &bad).await;
    r2.assert_error(400, "BAD_REQUEST");
    assert!(replayed(&r2));
    // An invalid key header is refused before anything happens.
    let r = post(&server, &key, "/api/v1/applications", "", &json!({"name": "x"})).await;
    r.assert_error(400, "BAD_REQUEST");
    server.finish().await;
}

on_every_backend!(admin_posts_are_idempotent);
