//! Settings-driven limits: the attribute definition limit per account and scope
//! (people.md §8.2, setting `limits.attribute_definitions`).
mod common;

use common::TestServer;
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

on_every_backend!(auto_definition_beyond_the_limit_is_refused_and_changes_nothing);
