//! `GET /metrics` (management-api.md §9): request counts and latencies per route template, without
//! authentication, and never a raw id in a label; the queue-depth gauges read from the store.

mod common;

use std::time::Duration;

use common::TestServer;
use serde_json::json;

fn count(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.trim().parse().ok()))
        .unwrap_or(0)
}

async fn request_metrics_per_route_template() {
    let server = TestServer::start().await;
    let id = server.register_android().await;
    for _ in 0..3 {
        server.call("GET", &common::ipath(&id), Some(&id), None).await.ok();
    }
    server
        .call(
            "PATCH",
            &common::user_path(&id),
            Some(&id),
            Some(&json!({"firstName": "Ana"})),
        )
        .await
        .ok();
    // An unknown installation: a 404 on the same template.
    let unknown = uuid::Uuid::new_v4().to_string();
    server.call("GET", &common::ipath(&unknown), Some(&unknown), None).await;
    // A management route with a path parameter, unauthenticated (401).
    server
        .call_with("GET", "/api/v1/apikeys/some-id", &[], None, None)
        .await
        .assert_error(401, "UNAUTHORIZED");

    let r = server.call_with("GET", "/metrics", &[], None, None).await;
    assert_eq!(r.status, 200);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = r.text();
    let get_inst = r#"roster_http_requests_total{route="/mobile/1/appinstance/{pushRegId}",method="GET",status="#;
    assert_eq!(count(&text, &format!(r#"{get_inst}"200"}}"#)), 3, "{text}");
    assert_eq!(count(&text, &format!(r#"{get_inst}"404"}}"#)), 1, "{text}");
    assert_eq!(
        count(
            &text,
            r#"roster_http_requests_total{route="/mobile/1/appinstance",method="POST",status="200"}"#
        ),
        1
    );
    assert_eq!(
        count(
            &text,
            r#"roster_http_requests_total{route="/mobile/1/appinstance/{pushRegId}/user",method="PATCH",status="200"}"#
        ),
        1
    );
    assert_eq!(
        count(
            &text,
            r#"roster_http_requests_total{route="/api/v1/apikeys/{id}",method="GET",status="401"}"#
        ),
        1,
        "{text}"
    );
    assert_eq!(
        count(
            &text,
            r#"roster_http_request_duration_seconds_count{route="/mobile/1/appinstance/{pushRegId}",method="GET"}"#
        ),
        4
    );
    assert!(!text.contains(&id) && !text.contains(&unknown), "no raw ids in labels");
    server.finish().await;
}

/// The value of an exact series line (`name{labels}`), or `None` when the series is absent.
fn gauge(text: &str, series: &str) -> Option<i64> {
    value(text, series)
}

/// [`gauge`] for any number type (counters of seconds are fractional).
fn value<T: std::str::FromStr<Err: std::fmt::Debug>>(text: &str, series: &str) -> Option<T> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map(|v| v.trim().parse().unwrap())
}

fn depth(text: &str, provider: &str, state: &str) -> Option<i64> {
    gauge(
        text,
        &format!(r#"roster_delivery_queue_depth{{provider="{provider}",state="{state}"}}"#),
    )
}

/// management-api.md §9 "queue depth": the `QUEUED` records of the store by provider and state
/// (due, claimed by a worker, waiting for a retry) and the unfinished audience jobs, read from the
/// store at each scrape, every pair reported (0 when empty), and back to 0 when drained.
async fn queue_depth_gauges() {
    use roster_core::push::AttemptOutcome;
    use roster_push::{Outcome, ProviderResponse, SendReport};
    // No workers in this process: the queue only moves when the test moves it.
    let server = TestServer::start_with(|s| s.delivery.enabled = false).await;
    let scrape = async || {
        let r = server.call_with("GET", "/metrics", &[], None, None).await;
        assert_eq!(r.status, 200);
        r.text()
    };
    let text = scrape().await;
    for provider in ["APNS", "FCM", "HMS"] {
        for state in ["due", "claimed", "retry_waiting"] {
            assert_eq!(depth(&text, provider, state), Some(0), "{provider} {state}: {text}");
        }
    }
    assert_eq!(
        gauge(&text, r#"roster_audience_jobs{state="resolving"}"#),
        Some(0),
        "{text}"
    );

    let ids = [
        server.register_android().await,
        server.register_android().await,
        server.register_android().await,
    ];
    let key = server
        .core()
        .create_api_key(server.app.account_id, "m", &["push:send".to_string()], None)
        .await
        .unwrap()
        .secret;
    let mut destinations: Vec<_> = ids
        .iter()
        .map(|id| json!({"type": "REGISTRATION", "pushRegistrationId": id}))
        .collect();
    destinations.push(json!({"type": "MULTIPLE", "filter": {"tags": "nobody"}}));
    let body = json!({"messages": [{"sender": server.app.application_code, "destinations": destinations,
        "content": {"text": "hi"}}]});
    let auth = format!("App {key}");
    let sent = server
        .call_with(
            "POST",
            "/push/3/messages",
            &[("authorization", &auth)],
            None,
            Some(body.to_string().into_bytes()),
        )
        .await;
    assert_eq!(sent.status, 200, "{}", sent.text());
    let text = scrape().await;
    assert_eq!(depth(&text, "FCM", "due"), Some(3), "{text}");
    assert_eq!(depth(&text, "APNS", "due"), Some(0), "{text}");
    assert_eq!(
        gauge(&text, r#"roster_audience_jobs{state="resolving"}"#),
        Some(1),
        "{text}"
    );

    // A worker claims two of them; one gets a retryable answer and waits for its next attempt.
    let core = server.core();
    let claimed = core.claim_deliveries(Duration::from_secs(60), 2).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let retry = AttemptOutcome::Sent {
        report: SendReport {
            outcome: Outcome::Retry {
                retry_after: Some(Duration::from_secs(120)),
            },
            response: ProviderResponse {
                http_status: Some(429),
                reason: "QUOTA_EXCEEDED".into(),
            },
            credential_refreshed: false,
        },
        token: claimed[0]
            .installation
            .as_ref()
            .unwrap()
            .push_service_token
            .clone()
            .unwrap(),
    };
    core.finish_delivery(&claimed[0], &retry).await.unwrap();
    while core.resolve_audience_chunk(1000).await.unwrap() {}
    let text = scrape().await;
    assert_eq!(depth(&text, "FCM", "due"), Some(1), "{text}");
    assert_eq!(depth(&text, "FCM", "claimed"), Some(1), "{text}");
    assert_eq!(depth(&text, "FCM", "retry_waiting"), Some(1), "{text}");
    assert_eq!(
        gauge(&text, r#"roster_audience_jobs{state="resolving"}"#),
        Some(0),
        "{text}"
    );

    // Terminal records leave the queue.
    let accepted = AttemptOutcome::Sent {
        report: SendReport {
            outcome: Outcome::Accepted,
            response: ProviderResponse {
                http_status: Some(200),
                reason: "OK".into(),
            },
            credential_refreshed: false,
        },
        token: String::new(),
    };
    core.finish_delivery(&claimed[1], &accepted).await.unwrap();
    for c in core.claim_deliveries(Duration::from_secs(60), 10).await.unwrap() {
        core.finish_delivery(&c, &accepted).await.unwrap();
    }
    let text = scrape().await;
    assert_eq!(depth(&text, "FCM", "due"), Some(0), "{text}");
    assert_eq!(depth(&text, "FCM", "claimed"), Some(0), "{text}");
    assert_eq!(depth(&text, "FCM", "retry_waiting"), Some(1), "{text}");
    server.finish().await;
}

/// The store's in-memory audience index (SQLite): `roster_audience_index_ready` reaches 1 once
/// the index is built after start, and a segment preview it answers is counted; PostgreSQL keeps
/// no index, and none of its series is there.
async fn audience_index_gauges() {
    let server = TestServer::start().await;
    let scrape = async || {
        let r = server.call_with("GET", "/metrics", &[], None, None).await;
        assert_eq!(r.status, 200);
        r.text()
    };
    let id = server.register_android().await;
    server.personalize_as(&id, "index-person").await;
    let reader = server.api_key(&["people:read"]).await;
    let preview = async || {
        let body = json!({"filter": {"externalUserId": "index-person"}, "sampleSize": 0});
        let r = server
            .api(Some(&reader), "POST", "/api/v1/segments/preview", &[], Some(&body))
            .await
            .ok();
        assert_eq!(r.json()["people"], 1, "{}", r.text());
    };
    if server.core().store().backend() != "sqlite" {
        preview().await;
        let text = scrape().await;
        assert!(!text.contains("roster_audience_index"), "{text}");
        server.finish().await;
        return;
    }

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut text = scrape().await;
    while gauge(&text, "roster_audience_index_ready") != Some(1) {
        assert!(std::time::Instant::now() < deadline, "index not ready: {text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        text = scrape().await;
    }
    assert!(
        gauge(&text, "roster_audience_index_builds_total").unwrap() >= 1,
        "{text}"
    );
    let answered = r#"roster_audience_index_previews_total{result="answered"}"#;
    let fallback = r#"roster_audience_index_previews_total{result="fallback"}"#;
    let before = gauge(&text, answered).unwrap();
    let fallbacks = gauge(&text, fallback).unwrap();

    preview().await;
    let text = scrape().await;
    assert_eq!(gauge(&text, answered), Some(before + 1), "{text}");
    assert_eq!(gauge(&text, fallback), Some(fallbacks), "{text}");
    assert_eq!(gauge(&text, "roster_audience_index_ready"), Some(1), "{text}");
    // The preview applied the registration: the index holds its person.
    assert_eq!(gauge(&text, "roster_audience_index_persons"), Some(1), "{text}");
    server.finish().await;
}

/// The store's one writer (SQLite): every write transaction is counted, committed batches
/// too, and the time held grows with them but never past the wall time since the store was
/// opened (not since the first scrape: a background write transaction begun before that scrape
/// may end after it, and all of its time is counted then); PostgreSQL has no single writer,
/// and none of its series is there.
async fn writer_counters() {
    let opened = std::time::Instant::now();
    let server = TestServer::start().await;
    let scrape = async || {
        let r = server.call_with("GET", "/metrics", &[], None, None).await;
        assert_eq!(r.status, 200);
        r.text()
    };
    if server.core().store().backend() != "sqlite" {
        server.register_android().await;
        let text = scrape().await;
        assert!(!text.contains("roster_store_writer"), "{text}");
        server.finish().await;
        return;
    }
    let held = "roster_store_writer_held_seconds_total";
    let txs = "roster_store_writer_transactions_total";
    let batches = "roster_store_writer_batches_total";
    let before = scrape().await;
    let (held0, txs0, batches0) = (
        value::<f64>(&before, held).expect("held"),
        value::<f64>(&before, txs).expect("transactions"),
        value::<f64>(&before, batches).expect("batches"),
    );
    for _ in 0..3 {
        server.register_android().await;
    }
    let after = scrape().await;
    let wall = opened.elapsed().as_secs_f64();
    let (held1, txs1, batches1) = (
        value::<f64>(&after, held).unwrap(),
        value::<f64>(&after, txs).unwrap(),
        value::<f64>(&after, batches).unwrap(),
    );
    // Each registration is at least one write transaction, committed in some batch.
    assert!(txs1 - txs0 >= 3.0, "{before}\n{after}");
    assert!(batches1 - batches0 >= 1.0, "{before}\n{after}");
    assert!(
        held1 > held0 && held1 <= wall,
        "{held0} -> {held1}, {wall} s since the store was opened"
    );
    server.finish().await;
}

on_every_backend!(
    request_metrics_per_route_template,
    queue_depth_gauges,
    audience_index_gauges,
    writer_counters
);
