//! The People portal in real headless Chromium (issue 6), on SQLite: sign in, find a person
//! registered through the mobile API, open the profile, see both installations and the primary
//! flag, flip the primary and check it through the mobile API; a first name of
//! `<script>alert(1)</script>` renders as text (no dialog, no script element); a form post
//! without its CSRF token is refused and changes nothing.
//!
//! With `ROSTER_UPDATE_SCREENSHOT=1` the person page is saved to `docs/portal-person.png`.

#[path = "common/browser.rs"]
mod browser;
mod common;
#[path = "common/portal_client.rs"]
mod portal_client;

use std::time::Duration;

use browser::{Chrome, DEFAULT_WAIT};
use common::{TestServer, ipath};
use fantoccini::{Client, Locator};
use portal_client::{admin_key, api, person_of};
use serde_json::json;

/// The pushRegIds of the installations shown on the page, and which of them is primary.
async fn installations_on_page(c: &Client) -> (Vec<String>, Vec<String>) {
    let mut all = Vec::new();
    let mut primary = Vec::new();
    for article in c.find_all(Locator::Css("article.installation")).await.unwrap() {
        let id = article.attr("data-push-reg-id").await.unwrap().unwrap();
        if !article
            .find_all(Locator::Css("[data-primary=true]"))
            .await
            .unwrap()
            .is_empty()
        {
            primary.push(id.clone());
        }
        all.push(id);
    }
    (all, primary)
}

#[tokio::test]
async fn portal_in_chromium() {
    let Some(chrome) = Chrome::start().await else {
        return;
    };
    let ts = TestServer::start().await;
    let base = ts.server.base_url();
    let key = admin_key(&ts).await;
    let c = &chrome.client;

    // A person registered through the mobile API: two installations personalized to one
    // externalUserId, the first registered as primary.
    let first = ts.register_primary("browsertokenone").await;
    let second = ts
        .register(json!({"pushServiceType": "APNS", "pushServiceToken": "beefcafe"}))
        .await;
    let person_id = person_of(&ts, "cust-1001", &[&first, &second]).await;
    api(&ts, &key, "POST", "/api/v1/attributes", Some(&json!({"scope": "PERSON", "name": "orders", "type": "LIST_OF_OBJECTS", "objectSchema": [{"name": "sku", "type": "STRING"}, {"name": "price", "type": "DECIMAL"}]}))).await;
    api(&ts, &key, "PATCH", &format!("/api/v1/people/{person_id}"), Some(&json!({
        "firstName": "Ana", "lastName": "Horvat", "birthday": "1990-05-17",
        "phones": [{"number": "+385 91 123 4567"}], "emails": [{"address": "ana.horvat@example.com"}],
        "tags": ["vip", "beta"],
        "customAttributes": {"loyaltyPoints": 120, "orders": [{"sku": "A1", "price": 19.9}, {"sku": "B7", "price": 5}]}
    }))).await.ok();

    // Sign in, find the person with the search box (htmx updates the results as one types).
    chrome.sign_in(&base, &key).await;
    chrome.type_into("#q", "cust-1001").await;
    let link = c
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(&format!("#results a[href$='/portal/people/{person_id}']")))
        .await
        .unwrap();
    link.click().await.unwrap();
    chrome.wait_for("#person-id", DEFAULT_WAIT).await;
    assert_eq!(chrome.text("#person-id").await, person_id);

    // Both installations, one primary (the first).
    let (all, primary) = installations_on_page(c).await;
    assert_eq!(all.len(), 2);
    assert!(all.contains(&first) && all.contains(&second));
    assert_eq!(primary, vec![first.clone()]);
    let page = c.source().await.unwrap();
    assert!(
        !page.contains("browsertokenone") && !page.contains("beefcafe"),
        "tokens are never shown"
    );

    if std::env::var("ROSTER_UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        let png = c.screenshot().await.unwrap();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/portal-person.png");
        std::fs::write(path, png).unwrap();
        println!("screenshot saved to {path}");
    }

    // Flip the primary: "Make primary" on the second installation.
    chrome
        .click(&format!("#installation-{second} button.make-primary"))
        .await;
    chrome
        .wait_for(&format!("#installation-{second} [data-primary=true]"), DEFAULT_WAIT)
        .await;
    let (_, primary) = installations_on_page(c).await;
    assert_eq!(primary, vec![second.clone()]);
    let flash = chrome.text(".flash-ok").await;
    assert!(flash.contains("is now the primary device"), "{flash}");
    // The mobile API agrees.
    for (id, expected) in [(&first, false), (&second, true)] {
        let inst = ts.call("GET", &ipath(id), Some(id), None).await.ok().json();
        assert_eq!(inst["isPrimary"], expected, "{id}: {inst}");
    }

    // Escaping: a first name that is a script renders as text; no dialog, no script element.
    api(
        &ts,
        &key,
        "PATCH",
        &format!("/api/v1/people/{person_id}"),
        Some(&json!({"firstName": "<script>alert(1)</script>", "lastName": null})),
    )
    .await
    .ok();
    c.goto(&format!("{base}/portal/people/{person_id}")).await.unwrap();
    let heading = chrome.text("#person-name").await;
    assert!(heading.starts_with("<script>alert(1)</script>"), "{heading}");
    assert!(c.get_alert_text().await.is_err(), "no dialog opened");
    let scripts = c
        .execute("return Array.from(document.scripts).map(s => s.src)", vec![])
        .await
        .unwrap();
    assert_eq!(
        scripts,
        json!([format!("{base}/portal/static/htmx.min.js")]),
        "only the portal's own script"
    );
    // Found by name too, shown as text in the results.
    c.goto(&format!("{base}/portal/people?q=alert")).await.unwrap();
    let cell = c
        .find(Locator::Css(&format!("#results a[href$='/portal/people/{person_id}']")))
        .await
        .unwrap();
    assert_eq!(cell.text().await.unwrap(), "<script>alert(1)</script>");
    assert!(c.get_alert_text().await.is_err());

    // CSRF: the edit form without its token is refused (403) and changes nothing.
    c.goto(&format!("{base}/portal/people/{person_id}")).await.unwrap();
    let before = api(&ts, &key, "GET", &format!("/api/v1/people/{person_id}"), None)
        .await
        .ok()
        .json();
    c.execute(
        "const f = document.querySelector('form.edit-form');
         f.querySelector('input[name=csrf]').remove();
         f.querySelector('input[name=firstName]').value = 'Mallory';
         f.submit();",
        vec![],
    )
    .await
    .unwrap();
    let refused = chrome.wait_for("h1", DEFAULT_WAIT).await;
    assert_eq!(refused.text().await.unwrap(), "Request refused");
    let after = api(&ts, &key, "GET", &format!("/api/v1/people/{person_id}"), None)
        .await
        .ok()
        .json();
    assert_eq!(before, after, "nothing changed");
    // With its token the same form saves.
    c.goto(&format!("{base}/portal/people/{person_id}")).await.unwrap();
    c.execute(
        "const f = document.querySelector('form.edit-form');
         f.querySelector('input[name=firstName]').value = 'Ana';
         f.submit();",
        vec![],
    )
    .await
    .unwrap();
    chrome.wait_for(".flash-ok", DEFAULT_WAIT).await;
    let saved = api(&ts, &key, "GET", &format!("/api/v1/people/{person_id}"), None)
        .await
        .ok()
        .json();
    assert_eq!(saved["firstName"], "Ana");

    // Sign out: back to the sign-in form, and the people page needs signing in again.
    chrome.click("form.sign-out button").await;
    chrome.wait_for("#key", DEFAULT_WAIT).await;
    c.goto(&format!("{base}/portal/people")).await.unwrap();
    assert!(c.current_url().await.unwrap().path().ends_with("/portal/sign-in"));

    chrome.close().await;
    ts.finish().await;
}
