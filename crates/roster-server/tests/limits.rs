//! Settings-driven limits: the attribute definition limit per account and scope
//! (people.md §8.2, setting `limits.attribute_definitions`), and the per-application rate
//! limit (`mobile.rate.per_application_rps` / `_burst`, docs/decisions.md). The per-installation
//! and per-IP limits of mobile-api.md §1.7 are tested in errors.rs. The per-API-key limit of the
//! management API (management-api.md §3.1, `management.rate.rps` / `_burst`).
mod common;

use common::{NO_FLAGS, Resp, TestServer, ipath, make_jwt, user_path};
use serde_json::json;

async fn auto_definition_beyond_the_limit_is_refused_and_changes_nothing() {
    let ts = TestServer::start_with(|s| s.limits.attribute_definitions = 2).await;
    let a = ts.register_android().await;
    let user = format!("/mobile/1/appinstance/{a}/user");
    ts.call(
        "PATCH",
        &user,
        Some(&a),
        Some(&json!({"customAttributes": {"one": 1, "two": "x"}})),
    )
    .await
    .ok();
    let before = ts.snapshot().await;
    // A third PERSON definition is refused, naming the attribute.
    let r = ts
        .call(
            "PATCH",
            &user,
            Some(&a),
            Some(&json!({"firstName": "Ana", "customAttributes": {"three": true}})),
        )
        .await;
    r.assert_error(400, "REQUEST_FORMAT_INVALID");
    assert!(
        r.json()["requestError"]["serviceException"]["text"]
            .as_str()
            .unwrap()
            .contains("customAttributes.three")
    );
    assert_eq!(ts.snapshot().await, before, "a refused request changes nothing");
    // Defined names can still be written, and the INSTALLATION scope has its own count.
    ts.call("PATCH", &user, Some(&a), Some(&json!({"customAttributes": {"one": 2}})))
        .await
        .ok();
    ts.call(
        "PATCH",
        &format!("/mobile/1/appinstance/{a}"),
        Some(&a),
        Some(&json!({"customAttributes": {"i1": 1, "i2": 2}})),
    )
    .await
    .ok();
    let r = ts
        .call(
            "PATCH",
            &format!("/mobile/1/appinstance/{a}"),
            Some(&a),
            Some(&json!({"customAttributes": {"i3": 3}})),
        )
        .await;
    r.assert_error(400, "REQUEST_FORMAT_INVALID");
    let defs = ts.snapshot().await.attribute_definitions;
    assert_eq!(defs.len(), 4, "{defs:?}");
    ts.finish().await;
}

/// A 429 with the envelope and a `Retry-After` of whole seconds, at least 1 and at most `max`.
fn assert_429(r: &Resp, max: u64) {
    r.assert_error(429, "TOO_MANY_REQUESTS");
    let ra: u64 = r
        .headers
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .expect("whole seconds");
    assert!((1..=max).contains(&ra), "Retry-After {ra}");
}

/// One bucket per application: every App-authenticated request of the application takes from
/// it, whichever installation it addresses; JWT requests of the application too; another
/// application is not affected; nothing changes on a 429.
async fn per_application_rate_limit() {
    // One token every 5 s, burst 4: no refill happens during the test.
    let ts = TestServer::start_with(|s| {
        s.mobile.rate.per_application_rps = 0.2;
        s.mobile.rate.per_application_burst = 4.0;
    })
    .await;
    let other = ts.other_app().await;
    let secret = ts.core().create_jwt_key(&ts.app, Some("k1")).await.unwrap().key.secret;
    let code = ts.app.application_code.clone();
    // Four requests of the application: its whole burst.
    let a = ts.register_android().await;
    ts.personalize_as(&a, "ana").await;
    let bearer = format!("Bearer {}", make_jwt("k1", &secret, &code, "ana", json!({})));
    let get_user_jwt = async || {
        ts.call_with("GET", &user_path(&a), &[("authorization", &bearer)], Some(&a), None)
            .await
    };
    get_user_jwt().await.ok();
    ts.call("GET", &ipath(&a), Some(&a), None).await.ok();
    let before = ts.snapshot().await;

    // Every further request of the application is refused, whatever it addresses, before
    // authentication and body parsing (step 3 of mobile-api.md §3.3).
    assert_429(
        &ts.call("PATCH", &ipath(&a), Some(&a), Some(&json!({"language": "de"})))
            .await,
        5,
    );
    assert_429(&ts.create(&json!({"os": "x"})).await, 5);
    let unknown = uuid::Uuid::new_v4().to_string();
    assert_429(&ts.call("GET", &ipath(&unknown), Some(&unknown), None).await, 5);
    assert_429(
        &ts.call_bytes("PATCH", &user_path(&a), Some(&a), Some(b"{not json".to_vec()))
            .await,
        5,
    );
    assert_429(
        &ts.call_bytes("POST", "/mobile/5/messages", None, Some(b"{}".to_vec()))
            .await,
        5,
    );
    // The code is compared in lowercase, as in authentication (§2.1).
    let upper = format!("App {}", code.to_uppercase());
    assert_429(
        &ts.call_with("GET", &ipath(&a), &[("authorization", &upper)], Some(&a), None)
            .await,
        5,
    );
    // A JWT of the application takes from the same bucket.
    assert_429(&get_user_jwt().await, 5);
    let r = ts
        .call_with(
            "POST",
            &format!("{}/personalize?{NO_FLAGS}", ipath(&a)),
            &[("authorization", &bearer)],
            Some(&a),
            Some(
                json!({"userIdentity": {"externalUserId": "ana"}})
                    .to_string()
                    .into_bytes(),
            ),
        )
        .await;
    assert_429(&r, 5);
    assert_eq!(ts.snapshot().await, before, "a 429 changes nothing");

    // The base URL and version checks must never fail (§5.11, §5.12): not counted.
    ts.call("GET", "/mobile/1/baseurl", None, None).await.ok();
    ts.call("GET", "/mobile/3/version", None, None).await.ok();
    // Requests naming no or another code are not this application's: answered as usual.
    ts.call_with("GET", &ipath(&a), &[], Some(&a), None)
        .await
        .assert_error(401, "APP_CODE_MISSING");
    ts.call_with(
        "GET",
        &ipath(&a),
        &[("authorization", &format!("App {}", "0".repeat(64)))],
        Some(&a),
        None,
    )
    .await
    .assert_error(401, "INVALID_APPLICATION_CODE");
    // Another application has its own bucket.
    let other_auth = format!("App {}", other.application_code);
    let b = common::people_helpers::register_in(&ts, &other).await;
    for _ in 0..3 {
        ts.call_with("GET", &ipath(&b), &[("authorization", &other_auth)], Some(&b), None)
            .await
            .ok();
    }
    assert_429(
        &ts.call_with("GET", &ipath(&b), &[("authorization", &other_auth)], Some(&b), None)
            .await,
        5,
    );
    ts.finish().await;
}

/// After the bucket refills, the application is served again; the default is off.
async fn per_application_rate_limit_refills() {
    assert_eq!(
        roster_server::Settings::default().mobile.rate.per_application_rps,
        0.0,
        "off by default"
    );
    let ts = TestServer::start_with(|s| {
        s.mobile.rate.per_application_rps = 2.0;
        s.mobile.rate.per_application_burst = 1.0;
    })
    .await;
    let a = ts.register_android().await;
    let r = ts.call("GET", &ipath(&a), Some(&a), None).await;
    assert_429(&r, 1);
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    ts.call("GET", &ipath(&a), Some(&a), None).await.ok();
    ts.finish().await;
}

/// A management request with API key `key` (`App` scheme) and an optional JSON body.
async fn mgmt(
    ts: &TestServer,
    key: &str,
    method: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: Option<&serde_json::Value>,
) -> Resp {
    let auth = format!("App {key}");
    let mut headers = vec![("authorization", auth.as_str())];
    headers.extend_from_slice(extra);
    ts.call_with(method, path, &headers, None, body.map(|b| b.to_string().into_bytes()))
        .await
}

/// management-api.md §3.1: a token bucket per API key. Over its burst a key is answered `429
/// TOO_MANY_REQUESTS` in the §2 envelope with `Retry-After`, whatever it asks (a read, a write
/// with an `Idempotency-Key`, a route it lacks the scope for); the refused request changes nothing,
/// not even the key's `lastUsedAt`, and stores no idempotency record; another key of the same
/// account has its own bucket; an unknown key is still `401`; the bucket refills.
async fn per_api_key_rate_limit() {
    let defaults = roster_server::Settings::default().management.rate;
    assert_eq!((defaults.rps, defaults.burst), (50.0, 200.0), "the spec's defaults");
    // One token every 5 s, burst 3: no refill happens during the first part.
    let ts = TestServer::start_with(|s| {
        s.management.rate.rps = 0.2;
        s.management.rate.burst = 3.0;
    })
    .await;
    let account = ts.app.account_id;
    let key = async |scopes: &[&str]| {
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        ts.core()
            .create_api_key(account, "k", &scopes, None)
            .await
            .unwrap()
            .secret
    };
    let (limited, other) = (key(&["admin"]).await, key(&["admin"]).await);
    let segment = json!({"name": "vips", "filter": {"tags": "vip"}});
    for _ in 0..3 {
        mgmt(&ts, &limited, "GET", "/api/v1/applications", &[], None).await.ok();
    }
    let before = ts.snapshot().await;

    assert_429(&mgmt(&ts, &limited, "GET", "/api/v1/applications", &[], None).await, 5);
    let r = mgmt(
        &ts,
        &limited,
        "POST",
        "/api/v1/segments",
        &[("idempotency-key", "seg-1")],
        Some(&segment),
    )
    .await;
    assert_429(&r, 5);
    assert_429(
        &mgmt(&ts, &limited, "POST", "/push/3/messages", &[], Some(&json!({}))).await,
        5,
    );
    // A malformed body is not even read.
    let r = ts
        .call_with(
            "POST",
            "/api/v1/segments",
            &[("authorization", &format!("App {limited}"))],
            None,
            Some(b"{not json".to_vec()),
        )
        .await;
    assert_429(&r, 5);
    assert_eq!(
        ts.snapshot().await,
        before,
        "a 429 changes nothing, lastUsedAt included"
    );

    // Another key of the account is unaffected, and the refused Idempotency-Key was not kept:
    // the same key and body now create the segment.
    mgmt(&ts, &other, "GET", "/api/v1/applications", &[], None).await.ok();
    let created = mgmt(
        &ts,
        &other,
        "POST",
        "/api/v1/segments",
        &[("idempotency-key", "seg-1")],
        Some(&segment),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert!(created.headers.get("idempotent-replayed").is_none());
    // An unknown key is not rate limited: it is unauthorized.
    let unknown = format!("rk_{}", "A".repeat(43));
    mgmt(&ts, &unknown, "GET", "/api/v1/applications", &[], None)
        .await
        .assert_error(401, "UNAUTHORIZED");
    ts.finish().await;

    // The bucket refills at `rps`.
    let ts = TestServer::start_with(|s| {
        s.management.rate.rps = 4.0;
        s.management.rate.burst = 1.0;
    })
    .await;
    let account = ts.app.account_id;
    let k = ts
        .core()
        .create_api_key(account, "k", &["admin".to_string()], None)
        .await
        .unwrap()
        .secret;
    mgmt(&ts, &k, "GET", "/api/v1/apikeys", &[], None).await.ok();
    assert_429(&mgmt(&ts, &k, "GET", "/api/v1/apikeys", &[], None).await, 1);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    mgmt(&ts, &k, "GET", "/api/v1/apikeys", &[], None).await.ok();
    ts.finish().await;
}

on_every_backend!(
    auto_definition_beyond_the_limit_is_refused_and_changes_nothing,
    per_application_rate_limit,
    per_application_rate_limit_refills,
    per_api_key_rate_limit,
);
