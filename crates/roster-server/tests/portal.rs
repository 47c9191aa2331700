//! The People portal over HTTP against the real server, on every backend: sign-in and the
//! session cookie, sessions stored hashed and ended by sign-out, idleness or the key's deletion,
//! CSRF on every POST, security headers, escaping, and the people pages with their actions (the
//! changes checked through the management API).

mod common;
#[path = "common/portal_client.rs"]
mod portal_client;

use common::{TestServer, ext_identity, flags};
use portal_client::{Browser, Page, api, key, person_of, urlencode};
use reqwest::StatusCode;
use roster_server::portal::session::{IDLE_MS, csrf_token, secret_hash};
use serde_json::{Value, json};

/// Two installations of the test application personalized to one externalUserId: (person id,
/// first pushRegId, second pushRegId).
async fn person_with_two_installations(ts: &TestServer, ext: &str) -> (String, String, String) {
    let first = ts.register_primary("portaltokenfirst").await;
    let second = ts.register_primary("portaltokensecond").await;
    (person_of(ts, ext, &[&first, &second]).await, first, second)
}

/// The person `id` as the management API shows it to `key`.
async fn person_json(ts: &TestServer, key: &str, id: &str) -> Value {
    api(ts, key, "GET", &format!("/api/v1/people/{id}"), None).await.json()
}

/// "Make primary" on installation `id`, posted from the page of `person`.
async fn make_primary(b: &mut Browser, id: &str, person: &str) -> Page {
    b.post(&format!("/portal/installations/{id}/primary"), &[("person", person)])
        .await
}

/// The person page's edit form, posted with `fields` for `person`.
async fn edit(b: &mut Browser, person: &str, fields: &[(&str, &str)]) -> Page {
    b.post(&format!("/portal/people/{person}/edit"), fields).await
}

on_every_backend!(
    sign_in_sets_a_strict_session_cookie,
    sessions_are_stored_hashed_and_end,
    every_post_needs_the_csrf_token,
    pages_carry_security_headers_and_escape,
    person_page_and_actions,
    scopes_apply_in_the_portal,
    merge_reversal_from_the_person_page,
    works_under_a_base_path,
    search_pages_and_typed_attribute_editing,
    send_links_on_the_person_page,
    a_download_leaves_the_flash,
);

async fn sign_in_sets_a_strict_session_cookie() {
    let ts = TestServer::start().await;
    let mut b = Browser::new(&ts);
    // Not signed in: pages redirect to the sign-in form.
    let page = b.get("/portal/people").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/portal/sign-in");
    assert_eq!(b.get("/portal").await.location(), "/portal/people");
    assert_eq!(b.get("/portal/").await.location(), "/portal/people");
    // A wrong key: 401, the form again with a message, no session.
    b.get("/portal/sign-in").await;
    let wrong = b.post("/portal/sign-in", &[("key", "rk_not-a-key")]).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("That API key is not valid"), "{}", wrong.body);
    assert!(b.cookie("roster_portal").is_none());
    // The right key: a session cookie, HttpOnly, SameSite=Strict, Path=/portal, not Secure
    // over plain http.
    let (admin, _) = key(&ts, &["admin"]).await;
    let answer = b.sign_in(&admin).await;
    let cookie = answer
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("roster_portal="))
        .expect("session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(cookie.contains("Path=/portal"), "{cookie}");
    assert!(!cookie.contains("Secure"), "{cookie}");
    assert!(!cookie.contains(&admin), "the API key is not in the cookie");
    // Behind a TLS-terminating proxy the cookie is Secure.
    let mut tls = Browser::new(&ts);
    let form = tls
        .send(
            tls.http
                .get(format!("{}/portal/sign-in", tls.base))
                .header("x-forwarded-proto", "https"),
        )
        .await;
    assert!(form.set_cookies().iter().all(|c| c.contains("Secure")));
    let token = tls.csrf.clone();
    let answer = tls
        .send(
            tls.http
                .post(format!("{}/portal/sign-in", tls.base))
                .header("x-forwarded-proto", "https")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("key={}&csrf={}", urlencode(&admin), urlencode(&token))),
        )
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    let cookie = answer
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("roster_portal="))
        .unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    // Two sign-in forms open in two tabs share one token: the first one sent still works.
    let mut tabs = Browser::new(&ts);
    let one = tabs.get("/portal/sign-in").await.hidden("csrf").unwrap();
    let two = tabs.get("/portal/sign-in").await.hidden("csrf").unwrap();
    assert_eq!(one, two);
    // The sign-in form itself is CSRF-protected (double submit): without its cookie, 403.
    let mut fresh = Browser::new(&ts);
    let refused = fresh
        .post("/portal/sign-in", &[("key", &admin), ("csrf", "forged")])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(fresh.cookie("roster_portal").is_none());
    ts.finish().await;
}

async fn sessions_are_stored_hashed_and_end() {
    let ts = TestServer::start().await;
    let (admin, admin_id) = key(&ts, &["admin"]).await;
    let (other, _) = key(&ts, &["admin"]).await;
    let mut b = Browser::signed_in(&ts, &admin).await;
    let secret = b.cookie("roster_portal").unwrap();
    // The store has the session under the secret's hash, never the secret.
    let mut tx = ts.store.begin_read().await.unwrap();
    let (session, key_row) = tx.portal_session(&secret_hash(&secret)).await.unwrap().expect("stored");
    assert!(tx.portal_session(&secret).await.unwrap().is_none());
    tx.rollback().await.unwrap();
    assert_eq!(key_row.id.to_string(), admin_id);
    assert_eq!(session.id_hash, secret_hash(&secret));
    // Signing in again replaces the browser's session: the previous one ends. (A signed-in
    // browser is sent on from the form, so the form is fetched without the cookie.)
    b.cookies.retain(|(k, _)| k != "roster_portal");
    b.get("/portal/sign-in").await;
    b.cookies.push(("roster_portal".into(), secret.clone()));
    let again = b.post("/portal/sign-in", &[("key", &admin)]).await;
    assert_eq!(again.location(), "/portal/people");
    let replaced = secret;
    let secret = b.cookie("roster_portal").unwrap();
    assert_ne!(secret, replaced);
    let mut tx = ts.store.begin_read().await.unwrap();
    assert!(tx.portal_session(&secret_hash(&replaced)).await.unwrap().is_none());
    tx.rollback().await.unwrap();
    b.get("/portal/people").await;
    // Sign-out ends the session: the cookie is deleted and the old value no longer works.
    let out = b.post("/portal/sign-out", &[]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.location().starts_with("/portal/sign-in"));
    assert!(b.cookie("roster_portal").is_none());
    b.cookies.push(("roster_portal".into(), secret.clone()));
    assert_eq!(b.get("/portal/people").await.location(), "/portal/sign-in");
    assert!(b.cookie("roster_portal").is_none(), "a stale cookie is deleted");
    // Deleting the API key ends its sessions.
    let mut b = Browser::signed_in(&ts, &admin).await;
    api(&ts, &other, "DELETE", &format!("/api/v1/apikeys/{admin_id}"), None).await;
    assert_eq!(b.get("/portal/people").await.location(), "/portal/sign-in");
    // An idle session ends (12 hours without a request).
    let (reader, reader_id) = key(&ts, &["people:read"]).await;
    let mut b = Browser::signed_in(&ts, &reader).await;
    let secret = b.cookie("roster_portal").unwrap();
    let mut tx = ts.store.begin().await.unwrap();
    let now = common::now_ms();
    let stale = roster_store::PortalSession {
        account_id: ts.app.account_id,
        id_hash: secret_hash("stale-secret"),
        api_key_id: reader_id.parse().unwrap(),
        created_at: now - IDLE_MS - 1000,
        last_seen_at: now - IDLE_MS - 1000,
        expires_at: now + 3_600_000,
        flash: None,
    };
    tx.insert_portal_session(&stale).await.unwrap();
    tx.commit().await.unwrap();
    let mut idle = Browser::new(&ts);
    idle.cookies.push(("roster_portal".into(), "stale-secret".into()));
    assert_eq!(idle.get("/portal/people").await.location(), "/portal/sign-in");
    // ... while the live one still works.
    assert_eq!(b.get("/portal/people").await.status, StatusCode::OK);
    assert_eq!(b.cookie("roster_portal").unwrap(), secret);
    // Ended sessions are deleted when someone of the account signs in; live ones stay.
    let mut tx = ts.store.begin_read().await.unwrap();
    assert!(tx.portal_session(&secret_hash("stale-secret")).await.unwrap().is_some());
    tx.rollback().await.unwrap();
    Browser::new(&ts).sign_in(&reader).await;
    let mut tx = ts.store.begin_read().await.unwrap();
    assert!(tx.portal_session(&secret_hash("stale-secret")).await.unwrap().is_none());
    assert!(tx.portal_session(&secret_hash(&secret)).await.unwrap().is_some());
    tx.rollback().await.unwrap();
    ts.finish().await;
}

async fn every_post_needs_the_csrf_token() {
    let ts = TestServer::start().await;
    let (person_id, _, second) = person_with_two_installations(&ts, "csrf-1").await;
    let (admin, _) = key(&ts, &["admin"]).await;
    let mut b = Browser::signed_in(&ts, &admin).await;
    let page = b.get(&format!("/portal/people/{person_id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    let secret = b.cookie("roster_portal").unwrap();
    assert_eq!(b.csrf, csrf_token(&secret), "every form carries the session's token");
    let before = person_json(&ts, &admin, &person_id).await;
    let edit = format!("/portal/people/{person_id}/edit");
    let version = before["version"].to_string();
    for token in ["", "forged", &csrf_token("another-session")] {
        let refused = b
            .post(
                &edit,
                &[("csrf", token), ("version", &version), ("firstName", "Mallory")],
            )
            .await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "token {token:?}");
        assert!(refused.body.contains("Nothing was changed"));
        let primary = b
            .post(
                &format!("/portal/installations/{second}/primary"),
                &[("csrf", token), ("person", &person_id)],
            )
            .await;
        assert_eq!(primary.status, StatusCode::FORBIDDEN);
        let erase = b
            .post(
                &format!("/portal/people/{person_id}/erase"),
                &[("csrf", token), ("confirm", "erase")],
            )
            .await;
        assert_eq!(erase.status, StatusCode::FORBIDDEN);
        let out = b.post("/portal/sign-out", &[("csrf", token)]).await;
        assert_eq!(out.status, StatusCode::FORBIDDEN);
    }
    let after = person_json(&ts, &admin, &person_id).await;
    assert_eq!(before, after, "refused posts changed nothing");
    // The token in the htmx header counts like the form field.
    let token = b.csrf.clone();
    let saved = b
        .send(
            b.http
                .post(format!("{}{edit}", b.base))
                .header("x-csrf-token", token)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("version={version}&firstName=Ana")),
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let after = person_json(&ts, &admin, &person_id).await;
    assert_eq!(after["firstName"], "Ana");
    ts.finish().await;
}

async fn pages_carry_security_headers_and_escape() {
    let ts = TestServer::start().await;
    let (person_id, _, _) = person_with_two_installations(&ts, "<b>ext</b>").await;
    let (admin, _) = key(&ts, &["admin"]).await;
    let patched = api(
        &ts,
        &admin,
        "PATCH",
        &format!("/api/v1/people/{person_id}"),
        Some(&json!({"firstName": "<script>alert(1)</script>", "tags": ["\"><img src=x onerror=alert(2)>"]})),
    )
    .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text());
    let mut b = Browser::new(&ts);
    let sign_in = b.get("/portal/sign-in").await;
    assert_security_headers(&sign_in);
    b.sign_in(&admin).await;
    for path in [
        format!("/portal/people/{person_id}"),
        "/portal/people?q=%3Cscript%3E".to_string(),
        "/portal/people".to_string(),
    ] {
        let page = b.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert_security_headers(&page);
        assert!(!page.body.contains("<script>alert"), "{path}: unescaped script");
        assert!(!page.body.contains("<img src=x"), "{path}: unescaped tag");
        assert!(!page.body.contains("<b>ext"), "{path}: unescaped markup");
        // askama escapes `<` and `>` as numeric character references.
        assert!(
            page.body.contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
            "{path}: {}",
            page.body
        );
    }
    // The only scripts are the portal's own file.
    let page = b.get(&format!("/portal/people/{person_id}")).await;
    assert_eq!(page.body.matches("<script").count(), 1);
    assert!(
        page.body
            .contains("<script src=\"/portal/static/htmx.min.js\" defer></script>")
    );
    let js = b.get("/portal/static/htmx.min.js").await;
    assert_eq!(js.status, StatusCode::OK);
    assert!(
        js.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert!(js.body.starts_with("var htmx="));
    let missing = b.get("/portal/no-such-page").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_security_headers(&missing);
    ts.finish().await;
}

fn assert_security_headers(page: &Page) {
    let h = &page.headers;
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"));
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["cache-control"], "no-store");
}

async fn person_page_and_actions() {
    let ts = TestServer::start().await;
    let (person_id, first, second) = person_with_two_installations(&ts, "cust-1001").await;
    let (admin, _) = key(&ts, &["admin"]).await;
    let mut b = Browser::signed_in(&ts, &admin).await;
    // Found by externalUserId, by pushRegId, and by name.
    let found = b.get("/portal/people?q=cust-1001").await;
    assert!(
        found.body.contains(&format!("/portal/people/{person_id}")),
        "{}",
        found.body
    );
    let found = b.get(&format!("/portal/people?q={second}")).await;
    assert!(found.body.contains(&format!("/portal/people/{person_id}")));
    api(&ts, &admin, "PATCH", &format!("/api/v1/people/{person_id}"), Some(&json!({"lastName": "Horvat", "phones": [{"number": "+385 91 123 4567"}], "emails": [{"address": "ana@example.com"}]}))).await.ok();
    for q in ["horv", "385911234567", "%2B385%2091%20123%204567", "ana%40example.com"] {
        let found = b.get(&format!("/portal/people?q={q}")).await;
        assert!(
            found.body.contains(&format!("/portal/people/{person_id}")),
            "{q}: {}",
            found.body
        );
    }
    let nobody = b.get("/portal/people?q=nobody-like-this").await;
    assert!(nobody.body.contains("Nobody found"));
    // The person page: both installations, the primary flag on the first (primary follows the
    // registration with `register_primary`), tokens present but never shown.
    let page = b.get(&format!("/portal/people/{person_id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    for id in [&first, &second] {
        assert!(page.body.contains(&format!("id=\"installation-{id}\"")), "{id}");
    }
    assert!(!page.body.contains("portaltoken"), "tokens never shown");
    let primary_of = |body: &str| -> Vec<String> {
        body.split("<article class=\"installation")
            .skip(1)
            .filter(|a| a.starts_with(" primary\""))
            .map(|a| {
                a.split("data-push-reg-id=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    let before: Vec<String> = primary_of(&page.body);
    assert_eq!(before.len(), 1, "one primary per application");
    let other = if before[0] == first { &second } else { &first };
    // Set primary: a redirect back with a message, and the API agrees.
    let done = make_primary(&mut b, other, &person_id).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(done.location(), format!("/portal/people/{person_id}"));
    let page = b.get(&format!("/portal/people/{person_id}")).await;
    assert!(page.body.contains("is now the primary device"), "flash shown");
    assert_eq!(primary_of(&page.body), vec![other.clone()]);
    let again = b.get(&format!("/portal/people/{person_id}")).await;
    assert!(!again.body.contains("is now the primary device"), "a flash shows once");
    let inst = api(&ts, &admin, "GET", &format!("/api/v1/installations/{other}"), None)
        .await
        .json();
    assert_eq!(inst["isPrimary"], true);
    // Installation custom attributes are shown with their types, under their installation.
    let def = json!({"scope": "INSTALLATION", "name": "channel", "type": "STRING"});
    assert_eq!(
        api(&ts, &admin, "POST", "/api/v1/attributes", Some(&def)).await.status,
        StatusCode::CREATED
    );
    let body = json!({"customAttributes": {"channel": "beta-<b>"}});
    api(
        &ts,
        &admin,
        "PATCH",
        &format!("/api/v1/installations/{first}"),
        Some(&body),
    )
    .await
    .ok();
    let page = b.get(&format!("/portal/people/{person_id}")).await;
    let article = page
        .body
        .split(&format!("id=\"installation-{first}\""))
        .nth(1)
        .unwrap()
        .split("</article>")
        .next()
        .unwrap();
    assert!(article.contains("<td>channel</td>"), "{article}");
    assert!(article.contains("<code>STRING</code>"));
    assert!(article.contains("beta-&#60;b&#62;"));
    // Edit: standard fields, tags and a typed custom attribute; only changes are sent.
    api(
        &ts,
        &admin,
        "POST",
        "/api/v1/attributes",
        Some(&json!({"scope": "PERSON", "name": "points", "type": "DECIMAL"})),
    )
    .await;
    let page = b.get(&format!("/portal/people/{person_id}")).await;
    let version = page.hidden("version").unwrap();
    let saved = edit(
        &mut b,
        &person_id,
        &[
            ("version", &version),
            ("firstName", "Ana"),
            ("lastName", "Horvat"),
            ("type", "CUSTOMER"),
            ("externalUserId", "cust-1001"),
            ("phones", "385911234567"),
            ("emails", "ana@example.com"),
            ("tags", "vip\nbeta\n"),
            ("ca.points", "120"),
        ],
    )
    .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let p = person_json(&ts, &admin, &person_id).await;
    assert_eq!(p["firstName"], "Ana");
    assert_eq!(p["type"], "CUSTOMER");
    assert_eq!(p["tags"], json!(["beta", "vip"]));
    assert_eq!(p["customAttributes"]["points"], 120);
    // A refused edit: the form again with the API's error next to the field, nothing changed.
    let version = p["version"].to_string();
    let refused = edit(
        &mut b,
        &person_id,
        &[
            ("version", &version),
            ("firstName", "Changed"),
            ("phones", "12"),
            ("ca.points", "many"),
        ],
    )
    .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.body.contains("must be a number"), "{}", refused.body);
    let refused = edit(
        &mut b,
        &person_id,
        &[("version", &version), ("firstName", "Changed"), ("phones", "12")],
    )
    .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(refused.body.contains("class=\"field-error\""), "{}", refused.body);
    assert!(refused.body.contains("value=\"Changed\""), "the values sent are kept");
    // A stale version: 412, nothing saved.
    let stale = edit(&mut b, &person_id, &[("version", "1"), ("firstName", "Stale")]).await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    let unchanged = person_json(&ts, &admin, &person_id).await;
    assert_eq!(unchanged, p);
    // GDPR export: a JSON download.
    let export = b.get(&format!("/portal/people/{person_id}/export")).await;
    assert_eq!(export.status, StatusCode::OK);
    assert!(
        export.headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let doc: Value = serde_json::from_str(&export.body).unwrap();
    assert_eq!(doc["format"], "roster.person-export.v1");
    // Depersonalize one installation: it moves to a new anonymous person.
    let done = b
        .post(
            &format!("/portal/installations/{first}/depersonalize"),
            &[("person", &person_id)],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let inst = api(&ts, &admin, "GET", &format!("/api/v1/installations/{first}"), None)
        .await
        .json();
    assert_ne!(inst["personId"], json!(person_id));
    // Erase: a confirmation step, then the person is gone.
    let confirm = b.get(&format!("/portal/people/{person_id}/erase")).await;
    assert!(confirm.body.contains("cannot be undone"));
    let not_confirmed = b.post(&format!("/portal/people/{person_id}/erase"), &[]).await;
    assert_eq!(not_confirmed.location(), format!("/portal/people/{person_id}/erase"));
    api(&ts, &admin, "GET", &format!("/api/v1/people/{person_id}"), None)
        .await
        .ok();
    let erased = b
        .post(&format!("/portal/people/{person_id}/erase"), &[("confirm", "erase")])
        .await;
    assert_eq!(erased.location(), "/portal/people");
    let people = b.get("/portal/people").await;
    assert!(people.body.contains("was erased"), "{}", people.body);
    let gone = api(&ts, &admin, "GET", &format!("/api/v1/people/{person_id}"), None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(
        b.get(&format!("/portal/people/{person_id}")).await.status,
        StatusCode::NOT_FOUND
    );
    ts.finish().await;
}

async fn scopes_apply_in_the_portal() {
    let ts = TestServer::start().await;
    let (person_id, first, second) = person_with_two_installations(&ts, "scoped-1").await;
    let (admin, _) = key(&ts, &["admin"]).await;
    let (reader, _) = key(&ts, &["people:read"]).await;
    let (sender, _) = key(&ts, &["push:send"]).await;
    let before = person_json(&ts, &admin, &person_id).await;
    // A read-only key sees the person but no action buttons; a forged action is refused by
    // the API's scope check, shown as a message, and changes nothing.
    let mut b = Browser::signed_in(&ts, &reader).await;
    let page = b.get(&format!("/portal/people/{person_id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("Make primary"));
    let target = if before["installations"][0]["isPrimary"] == true {
        &second
    } else {
        &first
    };
    let done = make_primary(&mut b, target, &person_id).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let page = b.get(&format!("/portal/people/{person_id}")).await;
    assert!(page.body.contains("lacks the scope people:write"), "{}", page.body);
    let after = person_json(&ts, &admin, &person_id).await;
    assert_eq!(before, after);
    // A key without people:read cannot open people pages.
    let mut b = Browser::signed_in(&ts, &sender).await;
    let page = b.get(&format!("/portal/people/{person_id}")).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.body.contains("lacks the scope people:read"));
    ts.finish().await;
}

async fn merge_reversal_from_the_person_page() {
    let ts = TestServer::start().await;
    // The second personalize merges the second installation's anonymous person into the first's.
    let (person_id, _, second) = person_with_two_installations(&ts, "merged-1").await;
    let (admin, _) = key(&ts, &["admin"]).await;
    let mut b = Browser::signed_in(&ts, &admin).await;
    let page = b.get(&format!("/portal/people/{person_id}")).await;
    let marker = "/portal/merges/";
    let start = page.body.find(marker).expect("a Reverse button") + marker.len();
    let merge_id = page.body[start..].split('/').next().unwrap().to_string();
    assert!(page.body.contains("was merged into this person"), "{}", page.body);
    let done = b
        .post(&format!("/portal/merges/{merge_id}/reverse"), &[("person", &person_id)])
        .await;
    assert_eq!(done.location(), format!("/portal/people/{person_id}"));
    let page = b.get(&format!("/portal/people/{person_id}")).await;
    assert!(page.body.contains("The merge was reversed."), "{}", page.body);
    assert!(
        !page.body.contains(&format!("id=\"installation-{second}\"")),
        "moved back"
    );
    let entry = api(&ts, &admin, "GET", &format!("/api/v1/merges/{merge_id}"), None)
        .await
        .json();
    assert_eq!(entry["status"], "REVERSED");
    // A second reversal is refused by the API; the page says why.
    b.post(&format!("/portal/merges/{merge_id}/reverse"), &[("person", &person_id)])
        .await;
    let page = b.get(&format!("/portal/people/{person_id}")).await;
    assert!(page.body.contains("Not reversed:"), "{}", page.body);
    ts.finish().await;
}

async fn works_under_a_base_path() {
    let ts = TestServer::start_with(|s| s.http.base_path = "/roster".into()).await;
    let (person_id, _, _) = person_with_two_installations(&ts, "based-1").await;
    let (admin, _) = key(&ts, &["admin"]).await;
    let mut b = Browser::new(&ts);
    let page = b.get("/portal/people").await;
    assert_eq!(page.location(), "/roster/portal/sign-in");
    let form = b.get("/portal/sign-in").await;
    assert!(form.body.contains("action=\"/roster/portal/sign-in\""));
    assert!(form.body.contains("href=\"/roster/portal/static/portal.css\""));
    let answer = b.post("/portal/sign-in", &[("key", &admin)]).await;
    assert_eq!(answer.location(), "/roster/portal/people");
    let cookie = answer
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("roster_portal="))
        .unwrap();
    assert!(cookie.contains("Path=/roster/portal;"), "{cookie}");
    let page = b.get(&format!("/portal/people/{person_id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body
            .contains(&format!("action=\"/roster/portal/people/{person_id}/edit\""))
    );
    ts.finish().await;
}

async fn search_pages_and_typed_attribute_editing() {
    let ts = TestServer::start().await;
    let (admin, _) = key(&ts, &["admin"]).await;
    // 30 people whose last name contains "Kovač", one more who does not match.
    for n in 0..30 {
        let id = ts.register_primary(&format!("pagetoken{n}")).await;
        let body = json!({"userIdentity": {"externalUserId": format!("page-{n}")}, "userAttributes": {"lastName": format!("Kovač{n}")}});
        ts.personalize_ok(&id, body, &flags(false, false, false)).await;
    }
    let other = ts.register_primary("pagetokenother").await;
    ts.personalize_ok(&other, ext_identity("someone-else"), &flags(false, false, false))
        .await;
    let mut b = Browser::signed_in(&ts, &admin).await;
    let ids_on = |body: &str| -> Vec<String> {
        body.split("href=\"/portal/people/")
            .skip(1)
            .map(|rest| rest.split('"').next().unwrap().to_string())
            .collect()
    };
    let first = b.get("/portal/people?q=kova%C4%8D").await;
    let first_ids = ids_on(&first.body);
    assert_eq!(first_ids.len(), 25, "{}", first.body);
    let next = first
        .body
        .split("cursor=")
        .nth(1)
        .expect("a next page")
        .split('"')
        .next()
        .unwrap();
    let next = next.replace("&amp;", "&");
    let second = b.get(&format!("/portal/people?q=kova%C4%8D&cursor={next}")).await;
    let second_ids = ids_on(&second.body);
    assert_eq!(second_ids.len(), 5, "{}", second.body);
    assert!(second_ids.iter().all(|id| !first_ids.contains(id)), "no person twice");
    assert!(!second.body.contains("Next page"));
    assert!(!first.body.contains("someone-else") && !second.body.contains("someone-else"));
    // Typed custom attributes: a list of objects through its JSON box, a boolean, a date.
    for def in [
        json!({"scope": "PERSON", "name": "orders", "type": "LIST_OF_OBJECTS", "objectSchema": [{"name": "sku", "type": "STRING"}, {"name": "price", "type": "DECIMAL"}]}),
        json!({"scope": "PERSON", "name": "newsletter", "type": "BOOLEAN"}),
        json!({"scope": "PERSON", "name": "since", "type": "DATE"}),
    ] {
        assert_eq!(
            api(&ts, &admin, "POST", "/api/v1/attributes", Some(&def)).await.status,
            StatusCode::CREATED
        );
    }
    let person_id = &first_ids[0];
    let page = b.get(&format!("/portal/people/{person_id}")).await;
    let version = page.hidden("version").unwrap();
    let bad = edit(
        &mut b,
        person_id,
        &[
            ("version", &version),
            ("ca.orders", "[{\"sku\": \"A1\""),
            ("ca.newsletter", "true"),
        ],
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("must be a JSON list of objects"), "{}", bad.body);
    let wrong_type = edit(
        &mut b,
        person_id,
        &[("version", &version), ("ca.orders", "[{\"sku\": 5}]")],
    )
    .await;
    assert_eq!(wrong_type.status, StatusCode::BAD_REQUEST, "the API's own check");
    assert!(wrong_type.body.contains("class=\"field-error\""), "{}", wrong_type.body);
    let saved = edit(
        &mut b,
        person_id,
        &[
            ("version", &version),
            (
                "ca.orders",
                "[{\"sku\": \"A1\", \"price\": 19.9}, {\"sku\": \"B7\", \"price\": 5}]",
            ),
            ("ca.newsletter", "true"),
            ("ca.since", "2024-02-29"),
        ],
    )
    .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let p = person_json(&ts, &admin, person_id).await;
    assert_eq!(
        p["customAttributes"]["orders"],
        json!([{"sku": "A1", "price": 19.9}, {"sku": "B7", "price": 5}])
    );
    assert_eq!(p["customAttributes"]["newsletter"], true);
    assert_eq!(p["customAttributes"]["since"], "2024-02-29");
    // Shown with their types, the list as a table.
    let page = b.get(&format!("/portal/people/{person_id}")).await;
    assert!(page.body.contains("<code>LIST_OF_OBJECTS</code>"));
    assert!(page.body.contains("<table class=\"objects\">"));
    assert!(page.body.contains("<td>19.9</td>"), "{}", page.body);
    // An emptied input removes the attribute; the others stay.
    let version = p["version"].to_string();
    let saved = edit(
        &mut b,
        person_id,
        &[
            ("version", &version),
            (
                "ca.orders",
                "[{\"sku\": \"A1\", \"price\": 19.9}, {\"sku\": \"B7\", \"price\": 5}]",
            ),
            ("ca.newsletter", ""),
            ("ca.since", "2024-02-29"),
        ],
    )
    .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER);
    let p = person_json(&ts, &admin, person_id).await;
    assert!(p["customAttributes"].get("newsletter").is_none(), "{p}");
    assert_eq!(p["customAttributes"]["since"], "2024-02-29");
    ts.finish().await;
}

/// The `href`s of the links of class `class` on a page, unescaped.
fn hrefs(page: &Page, class: &str) -> Vec<String> {
    let marker = format!("<a class=\"{class}\" href=\"");
    page.body
        .split(&marker)
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().replace("&#38;", "&"))
        .collect()
}

/// The value of the Send form's input `id`.
fn input_value(page: &Page, id: &str) -> String {
    let marker = format!("id=\"{id}\" value=\"");
    let start = page
        .body
        .find(&marker)
        .unwrap_or_else(|| panic!("no #{id}: {}", page.body))
        + marker.len();
    page.body[start..].split('"').next().unwrap().to_string()
}

/// The selected option of the Send form's select `id`.
fn selected(page: &Page, id: &str) -> String {
    let select = page
        .body
        .split(&format!("id=\"{id}\""))
        .nth(1)
        .unwrap()
        .split("</select>")
        .next()
        .unwrap();
    select
        .split("<option value=\"")
        .filter(|o| o.contains("\" selected>"))
        .map(|o| o.split('"').next().unwrap().to_string())
        .next()
        .unwrap_or_default()
}

async fn send_links_on_the_person_page() {
    let ts = TestServer::start().await;
    let (person_id, first, second) = person_with_two_installations(&ts, "send-link 1").await;
    let (admin, _) = key(&ts, &["admin"]).await;
    let mut b = Browser::signed_in(&ts, &admin).await;
    let page = b.get(&format!("/portal/people/{person_id}")).await;
    // The person: by externalUserId, percent-encoded.
    let person_link = hrefs(&page, "button send-person");
    assert_eq!(
        person_link,
        vec!["/portal/send?target=externalUserId&value=send-link%201".to_string()]
    );
    let form = b.get(&person_link[0]).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    assert_eq!(selected(&form, "send-target"), "externalUserId");
    assert_eq!(input_value(&form, "send-value"), "send-link 1");
    // Each installation: by its pushRegId, in its application.
    let code = &ts.app.application_code;
    let links = hrefs(&page, "send-installation");
    assert_eq!(
        links,
        vec![
            format!("/portal/send?target=installation&value={first}&app={code}"),
            format!("/portal/send?target=installation&value={second}&app={code}"),
        ]
    );
    let form = b.get(&links[1]).await;
    assert_eq!(selected(&form, "send-target"), "installation");
    assert_eq!(input_value(&form, "send-value"), second);
    assert_eq!(selected(&form, "send-app"), *code);
    // A person without externalUserId: by the pushRegId of one of its installations.
    let anonymous = ts.register_primary("portaltokenanonymous").await;
    let person = api(
        &ts,
        &admin,
        "GET",
        &format!("/api/v1/people/lookup?pushRegId={anonymous}"),
        None,
    )
    .await
    .ok()
    .json();
    let page = b
        .get(&format!("/portal/people/{}", person["id"].as_str().unwrap()))
        .await;
    let link = hrefs(&page, "button send-person");
    assert_eq!(
        link,
        vec![format!("/portal/send?target=person&value={anonymous}&app={code}")]
    );
    let form = b.get(&link[0]).await;
    assert_eq!(selected(&form, "send-target"), "person");
    assert_eq!(input_value(&form, "send-value"), anonymous);
    // A key that may not send sees no Send links.
    let (reader, _) = key(&ts, &["people:read"]).await;
    let mut b = Browser::signed_in(&ts, &reader).await;
    let page = b.get(&format!("/portal/people/{person_id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("Send a test push") && !page.body.contains("Send to this installation"));
    ts.finish().await;
}

async fn a_download_leaves_the_flash() {
    let ts = TestServer::start().await;
    let (person_id, first, second) = person_with_two_installations(&ts, "flash-1").await;
    let (admin, _) = key(&ts, &["admin"]).await;
    let mut b = Browser::signed_in(&ts, &admin).await;
    let page = b.get(&format!("/portal/people/{person_id}")).await;
    let primary = if page.body.contains(&format!(
        "<article class=\"installation primary\" id=\"installation-{first}\""
    )) {
        &second
    } else {
        &first
    };
    let done = make_primary(&mut b, primary, &person_id).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    // The export is downloaded before the next page is opened: the message is still there for it.
    let export = b.get(&format!("/portal/people/{person_id}/export")).await;
    assert_eq!(export.status, StatusCode::OK);
    let doc: Value = serde_json::from_str(&export.body).unwrap();
    assert_eq!(doc["format"], "roster.person-export.v1");
    let page = b.get(&format!("/portal/people/{person_id}")).await;
    assert!(page.body.contains("is now the primary device"), "{}", page.body);
    let again = b.get(&format!("/portal/people/{person_id}")).await;
    assert!(!again.body.contains("is now the primary device"), "a flash shows once");
    // A refused download (no such person) leaves it too.
    let done = b
        .post(
            &format!("/portal/installations/{first}/depersonalize"),
            &[("person", &person_id)],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let missing = b
        .get("/portal/people/00000000-0000-0000-0000-000000000000/export")
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let page = b.get(&format!("/portal/people/{person_id}")).await;
    assert!(page.body.contains("flash-ok"), "{}", page.body);
    ts.finish().await;
}
