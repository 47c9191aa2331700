//! The portal's Send page in real headless Chromium (issue 6), on SQLite: a person with two iOS
//! installations registered and personalized through the mobile API, the application pointed at
//! the APNs stand-in; sign in, send a test push to the primary device only, watch the message
//! page poll its statuses until the delivery shows ACCEPTED, and check that the stand-in received
//! exactly one push, to the primary's token; the send is among the recent sends; the segment
//! builder's live preview follows what is typed, and the segment saves; the attribute schema
//! editor adds rows and defines a list of objects without script.

#[path = "common/browser.rs"]
mod browser;
mod common;
#[path = "common/portal_client.rs"]
mod portal_client;

use std::time::Duration;

use browser::{Chrome, DEFAULT_WAIT};
use common::TestServer;
use fantoccini::Locator;
use portal_client::{admin_key, api, two_iphones};
use roster_push_standins::{ApnsStandIn, ApnsStandInConfig};
use serde_json::{Value, json};

#[tokio::test]
async fn send_to_the_primary_device_in_chromium() {
    let Some(chrome) = Chrome::start().await else {
        return;
    };
    let ts = TestServer::start_with(|s| s.delivery.poll_interval_ms = 50).await;
    let apns = ApnsStandIn::start(ApnsStandInConfig::test()).await.unwrap();
    let key = admin_key(&ts).await;

    // Two iPhones of one person, through the mobile API; the first is the primary.
    let primary_token = "a1".repeat(32);
    let other_token = "b2".repeat(32);
    let [first, _] = two_iphones(&ts, &apns, "cust-2002", [&primary_token, &other_token]).await;

    // Sign in, fill in the Send form: person by externalUserId, primary devices only.
    let base = ts.server.base_url();
    let c = &chrome.client;
    chrome.sign_in(&base, &key).await;
    c.goto(&format!("{base}/portal/send")).await.unwrap();
    chrome.type_into("#send-value", "cust-2002").await;
    chrome.click("#send-primary-only").await;
    chrome.type_into("#send-title", "Hello").await;
    chrome.type_into("#send-text", "A test push from the portal").await;
    chrome.click("#send-submit").await;

    // The message page: accepted, then (by htmx polling) done with one ACCEPTED delivery.
    chrome.wait_for("#message-id", Duration::from_secs(10)).await;
    let flash = chrome.text(".flash-ok").await;
    assert!(flash.contains("PENDING_ACCEPTED"), "{flash}");
    chrome.wait_for("#message-done", Duration::from_secs(20)).await;
    let rows = c.find_all(Locator::Css("tr.delivery")).await.unwrap();
    assert_eq!(rows.len(), 1, "one delivery: the primary only");
    assert_eq!(
        rows[0].attr("data-push-reg-id").await.unwrap().as_deref(),
        Some(first.as_str())
    );
    assert_eq!(rows[0].attr("data-status").await.unwrap().as_deref(), Some("ACCEPTED"));
    let accepted = chrome.text("td[data-status=ACCEPTED]").await;
    assert_eq!(accepted, "1");
    let page = c.source().await.unwrap();
    assert!(
        !page.contains(&primary_token) && !page.contains(&other_token),
        "tokens are never shown"
    );

    // The APNs stand-in got exactly one push, to the primary's token.
    let recorded = apns.recorded();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].device_token, primary_token);
    let body: Value = serde_json::from_slice(&recorded[0].body).unwrap();
    assert_eq!(body["aps"]["alert"]["title"], "Hello");

    // The send is listed among the recent sends.
    chrome.click(".crumbs a").await;
    chrome.wait_for("table.messages", Duration::from_secs(10)).await;
    let listed = chrome.text("table.messages").await;
    assert!(listed.contains("A test push from the portal"), "{listed}");

    // The segment builder's live preview (htmx on input): everything, then primaries only.
    c.goto(&format!("{base}/portal/segments/new")).await.unwrap();
    assert_eq!(text_of(c, "#preview-installations").await, "2");
    chrome.type_into("input[name=cf]", "installation.isPrimary").await;
    chrome.type_into("input[name=cv]", "true").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while text_of(c, "#preview-installations").await != "1" {
        assert!(tokio::time::Instant::now() < deadline, "the preview never updated");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        text_of(c, "#preview-filter").await,
        r#"{"installation.isPrimary":{"$eq":true}}"#
    );
    chrome.type_into("#segment-name", "Primaries").await;
    chrome.click("#save-segment").await;
    chrome.wait_for(".flash-ok", DEFAULT_WAIT).await;
    let segments = api(&ts, &key, "GET", "/api/v1/segments", None).await.ok().json();
    assert_eq!(
        segments["items"][0]["filter"],
        json!({"installation.isPrimary": {"$eq": true}})
    );

    // The schema editor without script: "Add a field" gives a second row, and Enter in the name
    // field defines the attribute (not "remove row 1").
    c.goto(&format!("{base}/portal/attributes")).await.unwrap();
    chrome.click("select[name=type] option[value=LIST_OF_OBJECTS]").await;
    chrome.type_into("input[name=fieldName]", "sku").await;
    chrome.click("button.add-row").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while c.find_all(Locator::Css("tr.schema-row")).await.unwrap().len() != 2 {
        assert!(tokio::time::Instant::now() < deadline, "no second row");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second_row = c.find_all(Locator::Css("input[name=fieldName]")).await.unwrap();
    second_row[1].send_keys("price").await.unwrap();
    c.find_all(Locator::Css("select[name=fieldType] option[value=DECIMAL]"))
        .await
        .unwrap()[1]
        .click()
        .await
        .unwrap();
    chrome
        .type_into("form.define-attribute input[name=name]", "orders\n")
        .await;
    chrome.wait_for(".flash-ok", DEFAULT_WAIT).await;
    let orders = api(&ts, &key, "GET", "/api/v1/attributes/PERSON/orders", None)
        .await
        .ok()
        .json();
    assert_eq!(
        orders["objectSchema"],
        json!([{"name": "sku", "type": "STRING"}, {"name": "price", "type": "DECIMAL"}])
    );

    chrome.close().await;
    ts.finish().await;
}

/// The text of the first element matching `css`, empty when there is none (e.g. while the
/// preview shows the error of a half-typed field name).
async fn text_of(c: &fantoccini::Client, css: &str) -> String {
    match c.find_all(Locator::Css(css)).await.unwrap().first() {
        Some(e) => e.text().await.unwrap_or_default(),
        None => String::new(),
    }
}
