//! What the portal's test files share: API keys of the test's account, the management API
//! called as a key, a person set up through the mobile API, and `Browser`, a browser-like HTTP
//! client of the portal (no automatic redirects, cookies kept by hand, the CSRF token of the last
//! page). Included by path (`#[path = "common/portal_client.rs"] mod portal_client;`) so that
//! only the portal's test binaries compile it.
#![allow(dead_code)]

use reqwest::{StatusCode, redirect::Policy};
use roster_push_standins::ApnsStandIn;
use serde_json::{Value, json};

use crate::common::{self, TestServer, ext_identity, flags};

/// A key of the test's account with `scopes`: (secret, id).
pub async fn key(ts: &TestServer, scopes: &[&str]) -> (String, String) {
    let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
    let created = ts
        .core()
        .create_api_key(ts.app.account_id, "portal-test", &scopes, None)
        .await
        .unwrap();
    (created.secret, created.key.id.to_string())
}

/// The secret of an `admin` key of the test's account.
pub async fn admin_key(ts: &TestServer) -> String {
    key(ts, &["admin"]).await.0
}

/// The management API as `key`.
pub async fn api(ts: &TestServer, key: &str, method: &str, path: &str, body: Option<&Value>) -> common::Resp {
    let auth = format!("App {key}");
    ts.call_with(
        method,
        path,
        &[("authorization", &auth)],
        None,
        body.map(|b| b.to_string().into_bytes()),
    )
    .await
}

/// Personalizes the installations `ids` (registered through the mobile API) to the
/// externalUserId `ext`, in order, and returns the person's id.
pub async fn person_of(ts: &TestServer, ext: &str, ids: &[&str]) -> String {
    for id in ids {
        ts.personalize_ok(id, ext_identity(ext), &flags(false, false, false))
            .await;
    }
    let (admin, _) = key(ts, &["admin"]).await;
    let person = api(
        ts,
        &admin,
        "GET",
        &format!("/api/v1/people/lookup?externalUserId={}", urlencode(ext)),
        None,
    )
    .await
    .ok()
    .json();
    person["id"].as_str().unwrap().to_string()
}

/// Points the test application at the APNs stand-in `apns` and registers two iOS installations
/// with the push tokens `tokens` through the mobile API, personalized to `ext`, the first made
/// primary: their pushRegIds.
pub async fn two_iphones(ts: &TestServer, apns: &ApnsStandIn, ext: &str, tokens: [&str; 2]) -> [String; 2] {
    let admin = admin_key(ts).await;
    api(
        ts,
        &admin,
        "PATCH",
        &format!("/api/v1/applications/{}", ts.app.id),
        Some(&json!({"providers": {"apns": apns.application_settings()}})),
    )
    .await
    .ok();
    let mut ids = Vec::new();
    for token in tokens {
        ids.push(
            ts.register(json!({"pushServiceType": "APNS", "pushServiceToken": token, "os": "iOS"}))
                .await,
        );
    }
    person_of(ts, ext, &[&ids[0], &ids[1]]).await;
    api(
        ts,
        &admin,
        "PATCH",
        &format!("/api/v1/installations/{}", ids[0]),
        Some(&json!({"isPrimary": true})),
    )
    .await
    .ok();
    [ids[0].clone(), ids[1].clone()]
}

/// An answer of the portal.
pub struct Page {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    /// The `Location` of a redirect (panics when there is none).
    pub fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no Location ({}): {}", self.status, self.body))
    }

    /// The answer's `Set-Cookie` lines.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    /// The value of the first hidden input named `name`.
    pub fn hidden(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&marker)? + marker.len();
        let end = self.body[start..].find('"')? + start;
        Some(self.body[start..end].to_string())
    }

    /// Whether the body contains `needle`.
    pub fn has(&self, needle: &str) -> bool {
        self.body.contains(needle)
    }
}

/// A browser-like client of the portal: no automatic redirects, cookies kept by hand.
pub struct Browser {
    pub http: reqwest::Client,
    pub base: String,
    pub cookies: Vec<(String, String)>,
    /// The CSRF token of the last page that had one.
    pub csrf: String,
}

impl Browser {
    pub fn new(ts: &TestServer) -> Browser {
        Browser {
            http: reqwest::Client::builder().redirect(Policy::none()).build().unwrap(),
            base: ts.server.base_url(),
            cookies: Vec::new(),
            csrf: String::new(),
        }
    }

    /// A new browser signed in with `key`.
    pub async fn signed_in(ts: &TestServer, key: &str) -> Browser {
        let mut b = Browser::new(ts);
        b.sign_in(key).await;
        b
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The value of the cookie `name`, if the browser has it.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    /// Keeps the cookies an answer sets (an empty value with `Max-Age=0` deletes).
    fn keep(&mut self, page: &Page) {
        for line in page.set_cookies() {
            let pair = line.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            self.cookies.retain(|(name, _)| name != k);
            if !line.contains("Max-Age=0") {
                self.cookies.push((k.to_string(), v.to_string()));
            }
        }
        if let Some(token) = page.hidden("csrf") {
            self.csrf = token;
        }
    }

    /// Sends `req` with the browser's cookies and keeps what the answer sets.
    pub async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let req = if self.cookies.is_empty() {
            req
        } else {
            req.header("cookie", self.cookie_header())
        };
        let r = req.send().await.unwrap();
        let page = Page {
            status: r.status(),
            headers: r.headers().clone(),
            body: r.text().await.unwrap(),
        };
        self.keep(&page);
        page
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let req = self.http.get(format!("{}{path}", self.base));
        self.send(req).await
    }

    /// A form POST; the session's `csrf` is added unless the fields name it.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let mut body = fields.to_vec();
        let token = self.csrf.clone();
        if !fields.iter().any(|(k, _)| *k == "csrf") {
            body.push(("csrf", &token));
        }
        self.form_post(path, &body, &[]).await
    }

    /// An htmx POST: the token in the `X-CSRF-Token` header, as htmx sends it.
    pub async fn hx_post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let token = self.csrf.clone();
        self.form_post(path, fields, &[("hx-request", "true"), ("x-csrf-token", &token)])
            .await
    }

    /// A POST of `fields` as `application/x-www-form-urlencoded`, with extra headers.
    pub async fn form_post(&mut self, path: &str, fields: &[(&str, &str)], headers: &[(&str, &str)]) -> Page {
        let encoded = fields
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded");
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        self.send(req.body(encoded)).await
    }

    /// Signs in with `key`; asserts the redirect to the people page, which then opens.
    pub async fn sign_in(&mut self, key: &str) -> Page {
        let form = self.get("/portal/sign-in").await;
        assert_eq!(form.status, StatusCode::OK, "{}", form.body);
        let answer = self.post("/portal/sign-in", &[("key", key)]).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        assert_eq!(answer.location(), "/portal/people");
        let people = self.get("/portal/people").await;
        assert_eq!(people.status, StatusCode::OK);
        answer
    }

    /// Follows a `303` answer and returns the page it leads to.
    pub async fn follow(&mut self, answer: &Page) -> Page {
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
        let to = answer.location().to_string();
        self.get(&to).await
    }
}

/// Percent-encodes a form field or query value (everything but unreserved characters).
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
