//! `GET /metrics` (management-api.md §9): request counts and latencies per route template, without
//! authentication, and never a raw id in a label.

mod common;

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

on_every_backend!(request_metrics_per_route_template);
