//! A first end-to-end pass through the mobile API.
mod common;

use common::TestServer;
use serde_json::json;

async fn register_personalize_depersonalize() {
    let ts = TestServer::start().await;
    let a = ts.register_android().await;
    let r = ts
        .call("GET", &format!("/mobile/1/appinstance/{a}/user"), Some(&a), None)
        .await
        .ok();
    assert_eq!(r.json()["type"], "LEAD");
    let r = ts
        .personalize(
            &a,
            json!({"userIdentity": {"externalUserId": "u1"}}),
            "forceDepersonalize=false&keepAsLead=false&setDeviceAsPrimary=true",
        )
        .await
        .ok();
    assert_eq!(r.json()["externalUserId"], "u1");
    assert_eq!(r.json()["type"], "CUSTOMER");
    assert_eq!(r.json()["instances"][0]["isPrimary"], true);
    let r = ts
        .call(
            "POST",
            &format!("/mobile/1/appinstance/{a}/depersonalize"),
            Some(&a),
            None,
        )
        .await
        .ok();
    assert_eq!(r.body.len(), 0);
    ts.finish().await;
}

on_every_backend!(register_personalize_depersonalize,);
