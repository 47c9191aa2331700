//! The integration-test harness: the real server on an ephemeral port over a real SQLite file
//! in a temp dir, HTTP clients (reqwest, and a raw HTTP/1.1 client for byte-exact wire tests),
//! and the invariant checker of people.md §11, run by `finish()` at the end of every test.
#![allow(dead_code)]

use std::{sync::Arc, time::Duration};

use reqwest::{Method, StatusCode};
use roster_core::Core;
use roster_model::Application;
use roster_server::{
    RunningServer, Settings,
    settings::{ManagementRateSettings, MobileRateSettings},
    store::open_store,
};
use roster_store::{Snapshot, Store};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// A running server with one application, and the store under it.
pub struct TestServer {
    pub server: RunningServer,
    pub store: Arc<dyn Store>,
    pub app: Application,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
    /// Drops the test's PostgreSQL database (declared last: dropped after the store).
    _pg: Option<roster_store_postgres::testing::TestDbGuard>,
}

/// A store backend the behaviour suite runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

tokio::task_local! {
    /// The backend of the test running in this task (set by [`run_on`]).
    static BACKEND: Backend;
}

/// The backend `TestServer::start` uses in this task: SQLite unless [`run_on`] says otherwise.
pub fn current_backend() -> Backend {
    BACKEND.try_with(|b| *b).unwrap_or(Backend::Sqlite)
}

/// Runs one test scenario on a backend. PostgreSQL runs when `ROSTER_TEST_POSTGRES_URL` is set
/// and is reported as skipped otherwise, so the output says which backends ran.
pub async fn run_on<F: std::future::Future<Output = ()>>(backend: Backend, scenario: F) {
    if backend == Backend::Postgres && roster_store_postgres::testing::test_base_url().is_none() {
        return;
    }
    println!("backend: {backend:?}");
    BACKEND.scope(backend, scenario).await
}

/// Turns each listed `async fn name()` scenario into two tests, `name::sqlite` and
/// `name::postgres` (people.md behaviour suite on every backend). `multi_thread` as first
/// token runs them on an 8-worker runtime.
#[macro_export]
macro_rules! on_every_backend {
    (multi_thread: $($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 8)]
                async fn sqlite() {
                    $crate::common::run_on($crate::common::Backend::Sqlite, super::$name()).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 8)]
                async fn postgres() {
                    $crate::common::run_on($crate::common::Backend::Postgres, super::$name()).await
                }
            }
        )*
    };
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn sqlite() {
                    $crate::common::run_on($crate::common::Backend::Sqlite, super::$name()).await
                }
                #[tokio::test]
                async fn postgres() {
                    $crate::common::run_on($crate::common::Backend::Postgres, super::$name()).await
                }
            }
        )*
    };
}

/// A response, fully read.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    /// The body as JSON (panics if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The `messageId` of the error envelope.
    pub fn code(&self) -> String {
        self.json()["requestError"]["serviceException"]["messageId"]
            .as_str()
            .unwrap_or_else(|| panic!("no envelope: {}", self.text()))
            .to_string()
    }
    /// Asserts a status and envelope code, and the envelope's shape and headers.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "status; body {}", self.text());
        assert_eq!(self.code(), code, "code; body {}", self.text());
        let se = &self.json()["requestError"]["serviceException"];
        assert!(se["text"].is_string(), "text must be a string");
        assert_eq!(self.headers["content-type"], "application/json");
        assert_eq!(
            self.headers["content-length"].to_str().unwrap(),
            self.body.len().to_string()
        );
    }
    /// Asserts a 200.
    pub fn ok(self) -> Resp {
        assert_eq!(
            self.status,
            StatusCode::OK,
            "expected 200, got {}: {}",
            self.status,
            self.text()
        );
        self
    }
}

/// Personalize query with all three flags `false`.
pub const NO_FLAGS: &str = "forceDepersonalize=false&keepAsLead=false&setDeviceAsPrimary=false";

/// Personalize query with the given flags (Android spelling, all three always sent).
pub fn flags(force: bool, keep_as_lead: bool, set_primary: bool) -> String {
    format!("forceDepersonalize={force}&keepAsLead={keep_as_lead}&setDeviceAsPrimary={set_primary}")
}

/// The personalize body naming only `userIdentity.externalUserId`.
pub fn ext_identity(ext: &str) -> Value {
    serde_json::json!({"userIdentity": {"externalUserId": ext}})
}

/// The path of installation `id`: `/mobile/1/appinstance/{id}`.
pub fn ipath(id: &str) -> String {
    format!("/mobile/1/appinstance/{id}")
}

/// The user path of installation `id`: `/mobile/1/appinstance/{id}/user`.
pub fn user_path(id: &str) -> String {
    format!("{}/user", ipath(id))
}

/// The bytes of an HTTP/1.1 request to `path` (already including any base path), with
/// `Host` and `Connection: close`; `Content-Length` only when `body` is given.
pub fn raw_request(method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Vec<u8> {
    let mut s = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (k, v) in headers {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        s.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    s.push_str("Connection: close\r\n\r\n");
    let mut out = s.into_bytes();
    if let Some(b) = body {
        out.extend_from_slice(b);
    }
    out
}

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Lets the clock move so that `createdAt` orders installations (oldest first).
pub async fn tick() {
    tokio::time::sleep(Duration::from_millis(5)).await;
}

impl TestServer {
    /// A server with default settings (rate limits off).
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// A server with adjusted settings (rate limits off unless the closure turns them on).
    pub async fn start_with(adjust: impl FnOnce(&mut Settings)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings {
            data_dir: dir.path().to_path_buf(),
            ..Settings::default()
        };
        settings.http.listen = "127.0.0.1:0".into();
        settings.mobile.rate = MobileRateSettings::disabled();
        settings.management.rate = ManagementRateSettings::disabled();
        adjust(&mut settings);
        let mut pg_guard = None;
        if current_backend() == Backend::Postgres {
            let base = roster_store_postgres::testing::test_base_url().expect("run_on skips postgres without a URL");
            let (url, guard) = roster_store_postgres::testing::fresh_test_database(&base)
                .await
                .unwrap();
            settings.database_url = url;
            pg_guard = Some(guard);
        }
        let store = open_store(&settings.store_url()).await.unwrap();
        let server = RunningServer::start(&settings, store.clone()).await.unwrap();
        let core = server.state.core.clone();
        let account = core.account_or_default(None).await.unwrap();
        let app = core.create_application(account.id, "Test App").await.unwrap();
        TestServer {
            server,
            store,
            app,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            _dir: dir,
            _pg: pg_guard,
        }
    }

    /// The core over the same store.
    pub fn core(&self) -> &Core {
        &self.server.state.core
    }

    /// `http://127.0.0.1:PORT` + base path + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.server.base_url(), path)
    }

    /// `Authorization: App <code>` of the test application.
    pub fn app_auth(&self) -> String {
        format!("App {}", self.app.application_code)
    }

    /// Sends a request with App auth, an optional `pushregistrationid` and an optional JSON body.
    pub async fn call(&self, method: &str, path: &str, caller: Option<&str>, body: Option<&Value>) -> Resp {
        self.call_bytes(method, path, caller, body.map(|b| b.to_string().into_bytes()))
            .await
    }

    /// Sends a request with App auth, an optional `pushregistrationid` and optional raw body bytes
    /// (sent as they are, with `Content-Type: application/json`).
    pub async fn call_bytes(&self, method: &str, path: &str, caller: Option<&str>, body: Option<Vec<u8>>) -> Resp {
        self.call_with(method, path, &[("authorization", &self.app_auth())], caller, body)
            .await
    }

    /// Sends a request with explicit headers and raw body bytes.
    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        caller: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Resp {
        let mut rb = self
            .http
            .request(Method::from_bytes(method.as_bytes()).unwrap(), self.url(path));
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(c) = caller {
            rb = rb.header("pushregistrationid", c);
        }
        if let Some(b) = body {
            rb = rb.header("content-type", "application/json").body(b);
        }
        let r = rb.send().await.expect("request failed");
        let status = r.status();
        let headers = r.headers().clone();
        let body = r.bytes().await.unwrap().to_vec();
        Resp { status, headers, body }
    }

    /// A new management API key of the test's account with these scopes: its secret.
    pub async fn api_key(&self, scopes: &[&str]) -> String {
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        self.core()
            .create_api_key(self.app.account_id, "test", &scopes, None)
            .await
            .expect("API key")
            .secret
    }

    /// A management API request as `key` (`None`: without credentials), with extra headers and
    /// an optional JSON body.
    pub async fn api(
        &self,
        key: Option<&str>,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Resp {
        let auth = key.map(|k| format!("App {k}"));
        let mut all: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
        all.extend_from_slice(headers);
        self.call_with(method, path, &all, None, body.map(|b| b.to_string().into_bytes()))
            .await
    }

    /// `POST /mobile/1/appinstance` (create) with App auth and a JSON body, without a caller.
    pub async fn create(&self, body: &Value) -> Resp {
        self.call("POST", "/mobile/1/appinstance", None, Some(body)).await
    }

    /// Registers an installation (Android-style body) and returns its pushRegId.
    pub async fn register(&self, body: Value) -> String {
        let r = self.create(&body).await.ok();
        r.json()["pushRegId"].as_str().unwrap().to_string()
    }

    /// Registers a plain Firebase installation with a unique token.
    pub async fn register_android(&self) -> String {
        let token = format!("fcm-{}", uuid::Uuid::new_v4());
        self.register(serde_json::json!({
            "pushServiceType": "Firebase", "pushServiceToken": token, "os": "Android",
            "sdkVersion": "15.0.0", "regEnabled": true, "notificationsEnabled": true
        }))
        .await
    }

    /// Registers a Firebase installation with push token `token`, primary (`isPrimary: true`) for
    /// its new anonymous person.
    pub async fn register_primary(&self, token: &str) -> String {
        self.register(serde_json::json!({"pushServiceType": "Firebase", "pushServiceToken": token, "isPrimary": true}))
            .await
    }

    /// Personalizes `id` as `external_user_id` with flags given as a query string.
    pub async fn personalize(&self, id: &str, body: Value, query: &str) -> Resp {
        self.call(
            "POST",
            &format!("/mobile/1/appinstance/{id}/personalize?{query}"),
            Some(id),
            Some(&body),
        )
        .await
    }

    /// Personalizes `id` (see [`TestServer::personalize`]), asserts a 200 and returns the user JSON.
    pub async fn personalize_ok(&self, id: &str, body: Value, query: &str) -> Value {
        self.personalize(id, body, query).await.ok().json()
    }

    /// Personalizes `id` as `externalUserId` `ext` with all flags `false`, asserting a 200;
    /// returns the user JSON.
    pub async fn personalize_as(&self, id: &str, ext: &str) -> Value {
        self.personalize_ok(id, ext_identity(ext), NO_FLAGS).await
    }

    /// Registers a plain Firebase installation and personalizes it as `ext` (all flags `false`).
    pub async fn register_personalized(&self, ext: &str) -> String {
        let id = self.register_android().await;
        self.personalize_as(&id, ext).await;
        id
    }

    /// Registers a plain Firebase installation and personalizes it with `body` and the flags in
    /// `query`, asserting a 200.
    pub async fn register_personalized_with(&self, body: Value, query: &str) -> String {
        let id = self.register_android().await;
        self.personalize_ok(&id, body, query).await;
        id
    }

    /// Creates another application, "Other", in the account of the test application.
    pub async fn other_app(&self) -> Application {
        self.core()
            .create_application(self.app.account_id, "Other")
            .await
            .unwrap()
    }

    /// Sends raw bytes over a fresh TCP connection and reads the whole response
    /// (the request should carry `Connection: close`).
    pub async fn raw(&self, request: &[u8]) -> RawResponse {
        let mut s = TcpStream::connect(self.server.addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
            .await
            .expect("raw response timed out")
            .unwrap();
        RawResponse::parse(&buf)
    }

    /// Everything in the store.
    pub async fn snapshot(&self) -> Snapshot {
        let mut tx = self.store.begin_read().await.unwrap();
        let s = tx.snapshot().await.unwrap();
        tx.rollback().await.unwrap();
        s
    }

    /// Asserts the invariants of people.md §11 on the store.
    pub async fn check_invariants(&self) {
        let violations = roster_core::invariants::check(&self.snapshot().await);
        assert!(violations.is_empty(), "invariants violated:\n{}", violations.join("\n"));
    }

    /// Ends a test: checks the invariants and stops the server.
    pub async fn finish(self) {
        self.check_invariants().await;
        self.server.stop().await.unwrap();
    }
}

/// A raw HTTP/1.1 response.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// Header names lowercased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    fn parse(buf: &[u8]) -> RawResponse {
        let split = buf.windows(4).position(|w| w == b"\r\n\r\n").expect("no header end");
        let head = String::from_utf8_lossy(&buf[..split]).into_owned();
        let body = buf[split + 4..].to_vec();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        RawResponse { status, headers, body }
    }
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The body as JSON (panics if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    /// The `messageId` of the error envelope.
    pub fn code(&self) -> String {
        self.json()["requestError"]["serviceException"]["messageId"]
            .as_str()
            .unwrap_or_else(|| panic!("no envelope: {}", self.text()))
            .to_string()
    }
}

/// Builds an SDK JWT signed with `secret` (mobile-api.md §2.2), overriding claims with `extra`.
pub fn make_jwt(kid: &str, secret: &[u8], app_code: &str, sub: &str, extra: Value) -> String {
    use jsonwebtoken::{EncodingKey, Header, encode};
    let now = now_secs();
    let mut claims = serde_json::json!({
        "typ": "Bearer", "sub": sub, "infobip-api-key": app_code,
        "iat": now, "exp": now + 300, "jti": uuid::Uuid::new_v4().to_string()
    });
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(&k);
            } else {
                claims[k] = v;
            }
        }
    }
    let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid.to_string());
    header.typ = Some("JWT".into());
    encode(&header, &claims, &EncodingKey::from_secret(secret).unwrap()).unwrap()
}

/// Helpers for the people and installation tests (personalize.rs, users.rs, depersonalize.rs,
/// concurrency.rs, installations.rs, …): the user-data endpoints, other applications, and
/// look-ups in a store [`Snapshot`].
pub mod people_helpers {
    use roster_model::{Application, Installation, MergeLogEntry, Person};
    use roster_store::Snapshot;
    use serde_json::Value;
    use uuid::Uuid;

    // Re-exported so that `people_helpers::*` keeps bringing them; unused in some test crates.
    #[allow(unused_imports)]
    pub use super::{NO_FLAGS, flags};
    use super::{Resp, TestServer};

    /// `GET /mobile/1/appinstance/{id}/user` as `id`.
    pub async fn get_user(ts: &TestServer, id: &str) -> Resp {
        ts.call("GET", &format!("/mobile/1/appinstance/{id}/user"), Some(id), None)
            .await
    }

    /// Real `PATCH /mobile/1/appinstance/{id}/user` as `id`.
    pub async fn patch_user(ts: &TestServer, id: &str, body: &Value) -> Resp {
        ts.call(
            "PATCH",
            &format!("/mobile/1/appinstance/{id}/user"),
            Some(id),
            Some(body),
        )
        .await
    }

    /// `POST /mobile/1/appinstance/{id}/repersonalize?{query}` as `id`.
    pub async fn repersonalize(ts: &TestServer, id: &str, body: &Value, query: &str) -> Resp {
        ts.call(
            "POST",
            &format!("/mobile/1/appinstance/{id}/repersonalize?{query}"),
            Some(id),
            Some(body),
        )
        .await
    }

    /// `POST /mobile/1/appinstance/{target}/depersonalize` (no body) with `caller` in the
    /// `pushregistrationid` header.
    pub async fn depersonalize(ts: &TestServer, target: &str, caller: &str) -> Resp {
        ts.call(
            "POST",
            &format!("/mobile/1/appinstance/{target}/depersonalize"),
            Some(caller),
            None,
        )
        .await
    }

    /// Real `PATCH /mobile/1/appinstance/{target}` with `caller` in the header.
    pub async fn patch_installation(ts: &TestServer, target: &str, caller: &str, body: &Value) -> Resp {
        ts.call(
            "PATCH",
            &format!("/mobile/1/appinstance/{target}"),
            Some(caller),
            Some(body),
        )
        .await
    }

    /// Registers a Firebase installation with a unique token in another application.
    pub async fn register_in(ts: &TestServer, app: &Application) -> String {
        let body = serde_json::json!({
            "pushServiceType": "Firebase", "pushServiceToken": format!("fcm-{}", Uuid::new_v4()), "os": "Android"
        });
        register_in_with(ts, app, &body).await
    }

    /// Registers an installation with `body` in another application and returns its pushRegId.
    pub async fn register_in_with(ts: &TestServer, app: &Application, body: &Value) -> String {
        let r = ts
            .call_with(
                "POST",
                "/mobile/1/appinstance",
                &[("authorization", &format!("App {}", app.application_code))],
                None,
                Some(body.to_string().into_bytes()),
            )
            .await
            .ok();
        r.json()["pushRegId"].as_str().unwrap().to_string()
    }

    /// `POST /mobile/1/appinstance/{id}/personalize[?{query}]` as `id` of another application
    /// (with that application's App auth), asserting a 200.
    pub async fn personalize_in(ts: &TestServer, app: &Application, id: &str, body: &Value, query: &str) -> Resp {
        let path = if query.is_empty() {
            format!("/mobile/1/appinstance/{id}/personalize")
        } else {
            format!("/mobile/1/appinstance/{id}/personalize?{query}")
        };
        ts.call_with(
            "POST",
            &path,
            &[("authorization", &format!("App {}", app.application_code))],
            Some(id),
            Some(body.to_string().into_bytes()),
        )
        .await
        .ok()
    }

    /// An installation of the snapshot (panics if missing).
    pub fn inst<'a>(s: &'a Snapshot, id: &str) -> &'a Installation {
        s.installations
            .iter()
            .find(|i| i.push_reg_id == id)
            .unwrap_or_else(|| panic!("installation {id} not in the store"))
    }

    /// A person of the snapshot, if it exists.
    pub fn person(s: &Snapshot, id: Uuid) -> Option<&Person> {
        s.persons.iter().find(|p| p.id == id)
    }

    /// The person owning installation `id` (panics if missing).
    pub fn person_of<'a>(s: &'a Snapshot, id: &str) -> &'a Person {
        let pid = inst(s, id).person_id;
        person(s, pid).unwrap_or_else(|| panic!("person {pid} of {id} not in the store"))
    }

    /// The person owning `externalUserId` `ext`, if any.
    pub fn person_by_ext<'a>(s: &'a Snapshot, ext: &str) -> Option<&'a Person> {
        s.persons.iter().find(|p| p.external_user_id.as_deref() == Some(ext))
    }

    /// The installations of a person, in any application.
    pub fn installations_of(s: &Snapshot, person_id: Uuid) -> Vec<&Installation> {
        s.installations.iter().filter(|i| i.person_id == person_id).collect()
    }

    /// The merge-log entries naming installation `id`.
    pub fn merges_of<'a>(s: &'a Snapshot, id: &str) -> Vec<&'a MergeLogEntry> {
        s.merge_log.iter().filter(|e| e.push_reg_id == id).collect()
    }

    /// Asserts that two snapshots are equal, comparing persons, installations, merge log and
    /// attribute definitions one by one first (for a readable failure).
    pub fn assert_same_store(before: &Snapshot, after: &Snapshot, context: &str) {
        assert_eq!(after.persons, before.persons, "{context}: persons changed");
        assert_eq!(
            after.installations, before.installations,
            "{context}: installations changed"
        );
        assert_eq!(after.merge_log, before.merge_log, "{context}: merge log changed");
        assert_eq!(
            after.attribute_definitions, before.attribute_definitions,
            "{context}: attribute definitions changed"
        );
        // An API key's lastUsedAt records the request itself (at most once a minute), not a
        // change the refused operation made.
        let unused = |s: &Snapshot| {
            let mut s = s.clone();
            for k in &mut s.api_keys {
                k.last_used_at = None;
            }
            s
        };
        assert!(unused(after) == unused(before), "{context}: stored data changed");
    }

    /// Asserts a rejection and that the store is exactly as it was (invariant 16).
    pub async fn assert_unchanged(ts: &TestServer, r: Resp, status: u16, code: &str, before: &Snapshot) {
        r.assert_error(status, code);
        assert_same_store(before, &ts.snapshot().await, "a rejected request");
    }

    /// `after` without installation `id` registered since `before`, and without the persons
    /// that are not in `before` (its new anonymous person).
    pub fn without_new_installation(mut after: Snapshot, id: &str, before: &Snapshot) -> Snapshot {
        after.installations.retain(|i| i.push_reg_id != id);
        after.persons.retain(|p| before.persons.iter().any(|b| b.id == p.id));
        after
    }

    /// The user JSON without `instances`.
    pub fn without_instances(u: &Value) -> Value {
        let mut u = u.clone();
        u.as_object_mut().unwrap().remove("instances");
        u
    }

    /// The `pushRegId`s of a user JSON's `instances`, in order.
    pub fn instance_ids(user: &Value) -> Vec<String> {
        user["instances"]
            .as_array()
            .expect("instances")
            .iter()
            .map(|i| i["pushRegId"].as_str().unwrap().to_string())
            .collect()
    }

    /// The element of `instances` with this `pushRegId`.
    pub fn instance<'a>(user: &'a Value, id: &str) -> &'a Value {
        user["instances"]
            .as_array()
            .expect("instances")
            .iter()
            .find(|i| i["pushRegId"] == id)
            .unwrap_or_else(|| panic!("{id} not in instances of {user}"))
    }
}

/// Devices driven by the Rust client SDK (`roster-client`) against the test server: the
/// scenarios that use a client call wherever one exists (docs/decisions.md, "Server tests:
/// client or raw HTTP").
pub mod client_helpers {
    use std::{ops::Deref, time::Duration};

    use roster_client::{
        Config, ErrorCode, PersonalizeOptions, RetrySettings, RosterClient, RosterError, SaveOutcome, SystemInfo, User,
        UserIdentity,
    };

    use super::TestServer;

    /// One device: a client with its own state directory, registered with the test server.
    pub struct Device {
        pub client: RosterClient,
        _dir: tempfile::TempDir,
    }

    impl Deref for Device {
        type Target = RosterClient;
        fn deref(&self) -> &RosterClient {
            &self.client
        }
    }

    impl Device {
        /// A device of the test application without a push token.
        pub async fn start(ts: &TestServer) -> Device {
            Device::start_with(ts, |_| {}).await
        }

        /// A device whose configuration `adjust` may change (token, application code, JWT
        /// supplier, ...); returns once it is registered.
        pub async fn start_with(ts: &TestServer, adjust: impl FnOnce(&mut Config)) -> Device {
            let dir = tempfile::tempdir().unwrap();
            let mut config = Config {
                application_code: ts.app.application_code.clone(),
                base_url: ts.server.base_url().parse().unwrap(),
                storage_dir: dir.path().to_path_buf(),
                system_info: SystemInfo {
                    os: Some("Linux".into()),
                    os_version: Some("6.1".into()),
                    device_manufacturer: Some("Roster".into()),
                    device_model: Some("Test Box".into()),
                    device_name: Some("bench-1".into()),
                    app_version: Some("3.2.1".into()),
                    language: Some("en".into()),
                    device_secure: Some(true),
                    notifications_enabled: Some(true),
                },
                retry: RetrySettings {
                    initial: Duration::from_millis(300),
                    max: Duration::from_secs(3),
                },
                ..Config::default()
            };
            adjust(&mut config);
            let client = RosterClient::start(config).await.unwrap();
            client.sync_now().await.expect("the registration");
            Device { client, _dir: dir }
        }

        /// The own pushRegId.
        pub fn id(&self) -> String {
            self.installation().push_reg_id.expect("registered")
        }

        /// Personalizes as `externalUserId` `ext` with the given flags, expecting success.
        pub async fn login(&self, ext: &str, options: PersonalizeOptions) -> User {
            self.personalize(UserIdentity::external(ext), None, options)
                .await
                .unwrap()
        }

        /// Personalizes as `externalUserId` `ext` with the given flags, expecting a failure.
        pub async fn login_err(&self, ext: &str, options: PersonalizeOptions) -> RosterError {
            self.personalize(UserIdentity::external(ext), None, options)
                .await
                .unwrap_err()
        }

        /// Shuts the client down (its state directory goes with the device).
        pub async fn stop(self) {
            self.client.shutdown().await;
        }
    }

    /// Personalize flags: `forceDepersonalize`, `keepAsLead`, `setDeviceAsPrimary`.
    pub fn options(force: bool, keep_as_lead: bool, set_primary: bool) -> PersonalizeOptions {
        PersonalizeOptions {
            force_depersonalize: force,
            keep_as_lead,
            set_device_as_primary: set_primary,
        }
    }

    /// The confirmed value of a save (panics on `Queued`).
    pub fn reported<T: std::fmt::Debug>(o: SaveOutcome<T>) -> T {
        match o {
            SaveOutcome::Reported(t) => t,
            SaveOutcome::Queued(e) => panic!("expected Reported, got Queued({e:?})"),
        }
    }

    /// Asserts that the server answered with `status` and `code`, which reach the caller as the
    /// typed [`RosterError::Api`].
    pub fn assert_api(e: &RosterError, status: u16, code: ErrorCode) {
        match e {
            RosterError::Api { http_status, .. } => {
                assert_eq!(*http_status, status, "{e:?}");
                assert_eq!(e.api_code(), Some(code), "{e:?}");
            }
            other => panic!("expected the server's {code:?}, got {other:?}"),
        }
    }

    /// The flag of installation `id` in the user's installations as the client sees them.
    pub fn is_primary_in(user: &User, id: &str) -> bool {
        user.installations
            .iter()
            .find(|i| i.push_reg_id.as_deref() == Some(id))
            .unwrap_or_else(|| panic!("{id} not among the user's installations {user:?}"))
            .is_primary
    }
}
