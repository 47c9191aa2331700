//! A first end-to-end pass through the mobile API.
mod common;

use common::{
    TestServer, ext_identity, flags,
    people_helpers::{depersonalize, get_user},
};

async fn register_personalize_depersonalize() {
    let ts = TestServer::start().await;
    let a = ts.register_android().await;
    let r = get_user(&ts, &a).await.ok();
    assert_eq!(r.json()["type"], "LEAD");
    let r = ts
        .personalize_ok(&a, ext_identity("u1"), &flags(false, false, true))
        .await;
    assert_eq!(r["externalUserId"], "u1");
    assert_eq!(r["type"], "CUSTOMER");
    assert_eq!(r["instances"][0]["isPrimary"], true);
    let r = depersonalize(&ts, &a, &a).await.ok();
    assert_eq!(r.body.len(), 0);
    ts.finish().await;
}

on_every_backend!(register_personalize_depersonalize,);
