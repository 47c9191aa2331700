//! `roster migrate-store`, `roster export` and `roster import` on real stores: a store built
//! through the real server's mobile API on SQLite is moved to PostgreSQL (a fresh database) and
//! from there, through a dump file, to a second SQLite file; the three snapshots must be equal and
//! satisfy the invariants, and a server started on the moved store must serve what was
//! registered before the move. The store also holds a segment, a sent message with its delivery
//! records (delivered through the FCM stand-in) and idempotency records; a segment preview answers
//! the same after the move (the audience index is rebuilt, not copied). A version 1 dump (no
//! segment or push rows) still imports. Refusals (a non-empty target, a damaged dump) must change
//! nothing.
//!
//! Without `ROSTER_TEST_POSTGRES_URL` the PostgreSQL legs are skipped (with a line saying so) and
//! the same moves run SQLite -> SQLite.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Output, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use roster_model::{AttributeDefinition, AttributeScope, AttributeType, DefinitionOrigin, SchemaField};
use roster_push_standins::{FcmStandIn, FcmStandInConfig};
use roster_server::store::open_store;
use roster_store::Snapshot;
use roster_store::push::DeliveryStatus;
use roster_store_postgres::testing::{TestDbGuard, fresh_test_database, test_base_url};
use serde_json::{Value, json};

const ROSTER: &str = env!("CARGO_BIN_EXE_roster");

// --- running the binary ---------------------------------------------------------------------------

/// `roster ARGS` in `dir`, with no `ROSTER_*` variable of the caller's environment.
fn command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(ROSTER);
    cmd.args(args).current_dir(dir).env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("ROSTER_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a command that must succeed; its stdout.
fn ok(dir: &Path, args: &[&str]) -> String {
    let out = command(dir, args).output().unwrap();
    assert!(out.status.success(), "roster {args:?} failed: {}", text(&out.stderr));
    text(&out.stdout)
}

/// Runs a `--json` command that must succeed; its one JSON value.
fn json_of(dir: &Path, args: &[&str]) -> Value {
    let stdout = ok(dir, args);
    assert_eq!(stdout.lines().count(), 1, "one JSON line expected: {stdout}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// Runs a command that must fail with status 1 and a clean message; its stderr.
fn fails(dir: &Path, args: &[&str]) -> String {
    let out: Output = command(dir, args).output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "roster {args:?} should fail: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let last = stderr.trim_end().rsplit('\n').next().unwrap_or_default();
    assert!(last.starts_with("error: "), "{stderr}");
    stderr
}

/// A running `roster serve`, killed when dropped.
struct Serve {
    child: Child,
    base: String,
}

impl Serve {
    fn start(dir: &Path, url: &str) -> Serve {
        let mut child = command(dir, &["serve", "--listen", "127.0.0.1:0", "--database-url", url])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let base = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("no `listening on` line");
            if let Some(addr) = line.strip_prefix("listening on ") {
                break addr.trim().to_string();
            }
        };
        Serve { child, base }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// --- the mobile API -------------------------------------------------------------------------------

/// One application seen from a phone: its code, and an HTTP client.
struct Phone<'a> {
    serve: &'a Serve,
    code: String,
    http: reqwest::Client,
}

impl Phone<'_> {
    /// Sends a request as installation `caller` (if any); the status and the JSON body (or Null).
    async fn call(&self, method: &str, path: &str, caller: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let mut rb = self
            .http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}{path}", self.serve.base),
            )
            .header("authorization", format!("App {}", self.code));
        if let Some(c) = caller {
            rb = rb.header("pushregistrationid", c);
        }
        if let Some(b) = body {
            rb = rb.header("content-type", "application/json").body(b.to_string());
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let bytes = r.bytes().await.unwrap();
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (status, value)
    }

    /// A call that must answer 200.
    async fn ok(&self, method: &str, path: &str, caller: Option<&str>, body: Option<Value>) -> Value {
        let (status, value) = self.call(method, path, caller, body).await;
        assert_eq!(status, 200, "{method} {path}: {value}");
        value
    }

    /// Registers an installation; its pushRegId.
    async fn register(&self, body: Value) -> String {
        let inst = self.ok("POST", "/mobile/1/appinstance", None, Some(body)).await;
        inst["pushRegId"].as_str().unwrap().to_string()
    }

    async fn personalize(&self, id: &str, body: Value, primary: bool) -> Value {
        let path = format!(
            "/mobile/1/appinstance/{id}/personalize?forceDepersonalize=false&keepAsLead=false&setDeviceAsPrimary={primary}"
        );
        self.ok("POST", &path, Some(id), Some(body)).await
    }
}

// --- stores ---------------------------------------------------------------------------------------

/// Everything in the store at `url`.
async fn snapshot(url: &str) -> Snapshot {
    let store = open_store(url).await.unwrap();
    let mut tx = store.begin_read().await.unwrap();
    let snap = tx.snapshot().await.unwrap();
    tx.rollback().await.unwrap();
    snap
}

/// The snapshot of `url`, checked against the invariants of people.md §11.
async fn checked_snapshot(url: &str) -> Snapshot {
    let snap = snapshot(url).await;
    let violations = roster_core::invariants::check(&snap);
    assert!(violations.is_empty(), "invariants violated in {url}: {violations:#?}");
    snap
}

/// A fresh PostgreSQL database, or `None` after saying that this part is skipped.
async fn fresh_postgres(what: &str) -> Option<(String, TestDbGuard)> {
    let Some(base) = test_base_url() else {
        println!("skipped: {what} on PostgreSQL (ROSTER_TEST_POSTGRES_URL is not set)");
        return None;
    };
    Some(fresh_test_database(&base).await.unwrap())
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// How many rows of each kind a snapshot holds, as the `counts` of a `--json` summary.
fn counts_of(s: &Snapshot) -> Value {
    json!({
        "account": s.accounts.len(),
        "application": s.applications.len(),
        "jwtKey": s.jwt_keys.len(),
        "apiKey": s.api_keys.len(),
        "attributeDefinition": s.attribute_definitions.len(),
        "person": s.persons.len(),
        "installation": s.installations.len(),
        "mergeLogEntry": s.merge_log.len(),
        "segment": s.segments.len(),
        "bulk": s.bulks.len(),
        "message": s.messages.len(),
        "audienceJob": s.audience_jobs.len(),
        "delivery": s.deliveries.len(),
        "idempotencyRecord": s.idempotency_records.len(),
    })
}

/// A management API request with an API key (and an `Idempotency-Key` if given); the status and
/// the JSON body.
async fn manage(
    serve: &Serve,
    key: &str,
    method: &str,
    path: &str,
    idem: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = reqwest::Client::new()
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path}", serve.base),
        )
        .header("authorization", format!("App {key}"));
    if let Some(k) = idem {
        rb = rb.header("idempotency-key", k);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The preview of a segment (management-api.md §7.6) with a sample of every owner.
async fn preview(serve: &Serve, key: &str, segment_id: &str) -> Value {
    let body = json!({"segmentId": segment_id, "sampleSize": 10});
    let (status, answer) = manage(serve, key, "POST", "/api/v1/segments/preview", None, Some(body)).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// What the source store holds besides its snapshot: the installations to read back after a move.
struct Built {
    code: String,
    /// An admin API key (moved with the store).
    admin_key: String,
    /// The segment, and its preview before the move.
    segment_id: String,
    preview: Value,
    /// (pushRegId, its GET answer before the move).
    served: Vec<(String, Value)>,
}

/// Builds a non-trivial store at `url` through the CLI and the mobile API: three applications
/// (one requiring JWTs), JWT keys, API keys, a LIST_OF_OBJECTS definition, people with every
/// standard field, tags and typed attributes, installations with primaries, a merge done by
/// personalize, a depersonalized installation, a segment and a push message sent to the
/// customer and to the segment (delivered through the FCM stand-in, APNs not configured), both
/// with an `Idempotency-Key`.
async fn build_store(dir: &Path, url: &str) -> Built {
    let shop = json_of(
        dir,
        &["app", "create", "--name", "Shop", "--database-url", url, "--json"],
    );
    let kiosk = json_of(
        dir,
        &["app", "create", "--name", "Kiosk", "--database-url", url, "--json"],
    );
    let locked = json_of(
        dir,
        &["app", "create", "--name", "Locked", "--database-url", url, "--json"],
    );
    let code = shop["applicationCode"].as_str().unwrap().to_string();
    let kiosk_code = kiosk["applicationCode"].as_str().unwrap().to_string();
    let locked_code = locked["applicationCode"].as_str().unwrap();
    ok(
        dir,
        &[
            "app",
            "set",
            locked_code,
            "--require-jwt",
            "true",
            "--database-url",
            url,
        ],
    );
    for (app, kid) in [(code.as_str(), "k1"), (code.as_str(), "k2"), (locked_code, "k1")] {
        json_of(
            dir,
            &[
                "app",
                "jwt-key",
                "create",
                app,
                "--kid",
                kid,
                "--database-url",
                url,
                "--json",
            ],
        );
    }
    let admin = json_of(
        dir,
        &[
            "apikey",
            "create",
            "--scopes",
            "admin",
            "--name",
            "ops",
            "--database-url",
            url,
            "--json",
        ],
    );
    let admin_key = admin["key"].as_str().unwrap().to_string();
    json_of(
        dir,
        &[
            "apikey",
            "create",
            "--scopes",
            "people:read,push:send",
            "--expires-at",
            "2099-01-01T00:00:00Z",
            "--database-url",
            url,
            "--json",
        ],
    );
    // A list of objects needs a definition first (people.md §8.2: never auto-defined); the
    // management API is what makes one, here the store directly.
    {
        let store = open_store(url).await.unwrap();
        let mut tx = store.begin().await.unwrap();
        let account = tx.default_account().await.unwrap().unwrap();
        let field = |name: &str, field_type| SchemaField {
            name: name.into(),
            field_type,
        };
        let orders = AttributeDefinition {
            account_id: account.id,
            scope: AttributeScope::Person,
            name: "orders".into(),
            attr_type: AttributeType::ListOfObjects,
            object_schema: Some(vec![
                field("sku", AttributeType::String),
                field("price", AttributeType::Decimal),
                field("at", AttributeType::DateTime),
            ]),
            origin: DefinitionOrigin::Api,
            created_at: 1_700_000_000_000,
        };
        tx.define_attribute(&orders).await.unwrap();
        tx.commit().await.unwrap();
    }

    let serve = Serve::start(dir, url);
    let http = reqwest::Client::new();
    let shop_phone = Phone {
        serve: &serve,
        code: code.clone(),
        http: http.clone(),
    };
    let kiosk_phone = Phone {
        serve: &serve,
        code: kiosk_code,
        http,
    };

    // An Android phone with every system field, personalized with every standard user field.
    let android = shop_phone
        .register(json!({
            "regEnabled": true, "notificationsEnabled": true, "sdkVersion": "15.0.0", "appVersion": "3.2.1",
            "os": "Android", "osVersion": "14", "deviceManufacturer": "Google", "deviceModel": "Pixel 8",
            "deviceSecure": true, "language": "en", "deviceTimezoneOffset": "GMT+01:00", "deviceName": "Pixel 8",
            "pushServiceType": "Firebase", "pushServiceToken": "fcm-token-android-1",
            "applicationUserId": "app-user-7", "customAttributes": {"plan": "gold"}
        }))
        .await;
    shop_phone
        .personalize(
            &android,
            json!({
                "userIdentity": {"externalUserId": "cust-1001", "phones": [{"number": "+385 91 123 4567"}],
                                 "emails": [{"address": "Ana.Horvat@Example.com"}]},
                "userAttributes": {"firstName": "Ana", "middleName": "M", "lastName": "Horvat", "gender": "female",
                    "birthday": "1990-05-17", "tags": ["vip", "beta", "Ž"],
                    "customAttributes": {"tier": "gold", "points": 120, "ratio": 19.99, "newsletter": true,
                        "since": "2024-02-29", "lastLogin": "2020-02-26T09:41:57.5Z",
                        "orders": [{"sku": "A1", "price": 9.5, "at": "2024-01-02T10:00:00Z"},
                                   {"sku": "B2", "price": 120, "at": "2024-03-04T05:06:07Z"}]}}
            }),
            true,
        )
        .await;
    // An iPhone whose anonymous person gets data, then logs in as the same customer: a merge.
    let iphone = shop_phone
        .register(json!({
            "pushServiceType": "APNS", "pushServiceToken": "0B30557A9FC4E90E33587DA2C7EC1136",
            "os": "iOS", "inappchat": false, "inbox": true, "webrtcui": false, "customAttributes": {}
        }))
        .await;
    shop_phone
        .ok(
            "PATCH",
            &format!("/mobile/1/appinstance/{iphone}/user"),
            Some(&iphone),
            Some(json!({"firstName": "Anna", "tags": ["ios"], "customAttributes": {"onboardingDone": true}})),
        )
        .await;
    let merged = shop_phone
        .personalize(&iphone, json!({"userIdentity": {"externalUserId": "cust-1001"}}), true)
        .await;
    assert_eq!(merged["instances"].as_array().unwrap().len(), 2, "{merged}");
    // An installation attribute, and a second person with a plain installation.
    shop_phone
        .ok(
            "PATCH",
            &format!("/mobile/1/appinstance/{android}"),
            Some(&android),
            Some(json!({"customAttributes": {"screen": "large", "launches": 3}})),
        )
        .await;
    let tablet = shop_phone
        .register(json!({"pushServiceType": "HMS", "pushServiceToken": "hms-1", "regEnabled": false}))
        .await;
    shop_phone
        .personalize(
            &tablet,
            json!({"userIdentity": {"emails": [{"address": "bo@example.org"}]}, "userAttributes": {"lastName": "Bo"}}),
            false,
        )
        .await;
    // In the other application: personalized, then logged out (depersonalized).
    let kiosk_inst = kiosk_phone
        .register(json!({"pushServiceType": "GCM", "pushServiceToken": "gcm-9", "isPrimary": true}))
        .await;
    kiosk_phone
        .personalize(
            &kiosk_inst,
            json!({"userIdentity": {"externalUserId": "cust-2002", "phones": [{"number": "14155550100"}]}}),
            true,
        )
        .await;
    kiosk_phone
        .ok(
            "POST",
            &format!("/mobile/1/appinstance/{kiosk_inst}/depersonalize"),
            Some(&kiosk_inst),
            None,
        )
        .await;

    let mut served = Vec::new();
    for id in [&android, &iphone, &tablet] {
        let inst = shop_phone
            .ok("GET", &format!("/mobile/1/appinstance/{id}"), Some(id), None)
            .await;
        served.push((id.clone(), inst));
    }

    // Push: FCM through the stand-in (the iPhone's APNs is not configured: its records fail).
    let fcm = FcmStandIn::start(FcmStandInConfig::test()).await.unwrap();
    let shop_id = shop["id"].as_str().unwrap();
    let providers = json!({"providers": {"fcm": fcm.application_settings()}});
    let path = format!("/api/v1/applications/{shop_id}");
    let (status, answer) = manage(&serve, &admin_key, "PATCH", &path, None, Some(providers)).await;
    assert_eq!(status, 200, "{answer}");
    let segment = json!({"name": "VIP", "description": "tagged vip", "filter": {"tags": "vip"}});
    let (status, segment) = manage(
        &serve,
        &admin_key,
        "POST",
        "/api/v1/segments",
        Some("seg-1"),
        Some(segment),
    )
    .await;
    assert_eq!(status, 201, "{segment}");
    let segment_id = segment["id"].as_str().unwrap().to_string();
    let send = json!({"messages": [{
        "sender": code,
        "destinations": [
            {"type": "EXTERNAL_USER_ID", "externalUserId": "cust-1001"},
            {"type": "MULTIPLE", "segmentId": segment_id}
        ],
        "content": {"title": "Sale", "text": "20% off today"},
        "options": {"customPayload": {"deeplink": "acme://sale"}}
    }]});
    let (status, sent) = manage(
        &serve,
        &admin_key,
        "POST",
        "/push/3/messages",
        Some("send-1"),
        Some(send),
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    for m in sent["messages"].as_array().unwrap() {
        let id = m["messageId"].as_str().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, m) = manage(&serve, &admin_key, "GET", &format!("/api/v1/messages/{id}"), None, None).await;
            assert_eq!(status, 200, "{m}");
            if m["done"] == true {
                break;
            }
            assert!(Instant::now() < deadline, "message never done: {m}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let preview = preview(&serve, &admin_key, &segment_id).await;
    drop(serve);
    Built {
        code,
        served,
        admin_key,
        segment_id,
        preview,
    }
}

/// Checks that a store built by [`build_store`] holds what the move must carry.
fn assert_non_trivial(s: &Snapshot) {
    assert_eq!(s.accounts.len(), 1);
    assert_eq!(s.applications.len(), 3);
    assert_eq!(s.jwt_keys.len(), 3);
    assert_eq!(s.api_keys.len(), 2);
    assert!(
        s.attribute_definitions
            .iter()
            .any(|d| d.attr_type == AttributeType::ListOfObjects)
    );
    assert!(s.attribute_definitions.len() >= 10, "{:?}", s.attribute_definitions);
    assert_eq!(s.merge_log.len(), 1, "the personalize merge is logged");
    assert!(s.merge_log[0].before.is_some());
    assert_eq!(s.installations.len(), 4);
    assert!(s.installations.iter().any(|i| i.is_primary));
    let customer = s
        .persons
        .iter()
        .find(|p| p.external_user_id.as_deref() == Some("cust-1001"))
        .unwrap();
    assert_eq!(customer.first_name.as_deref(), Some("Ana"));
    assert_eq!(customer.middle_name.as_deref(), Some("M"));
    assert_eq!(customer.phones, ["385911234567"]);
    assert!(customer.tags.contains("ios") && customer.tags.contains("Ž"));
    assert_eq!(customer.custom_attributes["orders"].as_array().unwrap().len(), 2);
    assert_eq!(customer.custom_attributes["onboardingDone"], json!(true));
    // The depersonalized kiosk installation moved to a new anonymous person; cust-2002 stays.
    assert!(
        s.persons
            .iter()
            .any(|p| p.external_user_id.as_deref() == Some("cust-2002"))
    );
    assert!(s.persons.iter().any(|p| p.is_anonymous()));
    // Segment, message and delivery history, idempotency records.
    assert_eq!(s.segments.len(), 1);
    assert_eq!(s.bulks.len(), 1);
    assert_eq!(s.messages.len(), 2);
    assert!(s.audience_jobs.is_empty(), "both audiences are resolved");
    assert_eq!(s.deliveries.len(), 4, "the customer's two installations, twice");
    let statuses: std::collections::BTreeSet<_> = s.deliveries.iter().map(|d| d.status).collect();
    assert_eq!(
        statuses,
        [DeliveryStatus::Accepted, DeliveryStatus::Failed].into_iter().collect(),
        "{:?}",
        s.deliveries
    );
    assert_eq!(s.idempotency_records.len(), 2);
    assert!(s.idempotency_records.iter().all(|r| r.response_body.is_some()));
}

// --- the tests ------------------------------------------------------------------------------------

/// SQLite -> PostgreSQL with `migrate-store`, PostgreSQL -> SQLite through `export` / `import`:
/// three equal snapshots, every invariant, and the moved installations served as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_moves_between_backends_with_nothing_lost() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let source = sqlite_url(&d.join("source.db"));
    let built = build_store(d, &source).await;
    let original = checked_snapshot(&source).await;
    assert_non_trivial(&original);

    // The middle store: PostgreSQL when available, else another SQLite file.
    let pg = fresh_postgres("the SQLite -> PostgreSQL -> SQLite round trip").await;
    let middle = match &pg {
        Some((url, _)) => url.clone(),
        None => sqlite_url(&d.join("middle.db")),
    };
    let summary = json_of(d, &["migrate-store", "--from", &source, "--to", &middle, "--json"]);
    assert_eq!(summary["counts"], counts_of(&original), "{summary}");
    assert_eq!(summary["sourceBackend"], "sqlite");
    assert_eq!(
        summary["targetBackend"],
        if pg.is_some() { "postgres" } else { "sqlite" }
    );
    assert_eq!(checked_snapshot(&middle).await, original);

    let dump = d.join("store.jsonl");
    let dump_arg = dump.to_str().unwrap();
    let summary = json_of(d, &["export", "--database-url", &middle, "--out", dump_arg, "--json"]);
    assert_eq!(summary["counts"], counts_of(&original), "{summary}");
    // One header line, then one line per row.
    let lines = std::fs::read_to_string(&dump).unwrap();
    let total = summary["counts"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(lines.lines().count() as u64, 1 + total);
    let header: Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!(
        (header["format"].as_str(), header["version"].as_u64()),
        (Some("roster-dump"), Some(2))
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dump).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the dump holds secrets: owner only, not {mode:o}");
    }

    let last = sqlite_url(&d.join("last.db"));
    let summary = json_of(d, &["import", dump_arg, "--database-url", &last, "--json"]);
    assert_eq!(summary["counts"], counts_of(&original), "{summary}");
    assert_eq!(checked_snapshot(&last).await, original);

    // A version 1 dump (as written before segments and push rows were carried: those lines and
    // counts absent) still imports, with none of them.
    let v1: String = lines
        .lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let mut value: Value = serde_json::from_str(line).unwrap();
            if i == 0 {
                value["version"] = json!(1);
                let counts = value["counts"].as_object_mut().unwrap();
                for kind in [
                    "segment",
                    "bulk",
                    "message",
                    "audienceJob",
                    "delivery",
                    "idempotencyRecord",
                ] {
                    counts.remove(kind).unwrap();
                }
            } else if [
                "segment",
                "bulk",
                "message",
                "audienceJob",
                "delivery",
                "idempotencyRecord",
            ]
            .contains(&value["kind"].as_str().unwrap())
            {
                return None;
            }
            Some(format!("{value}\n"))
        })
        .collect();
    let v1_path = d.join("v1.jsonl");
    std::fs::write(&v1_path, v1).unwrap();
    let v1_store = sqlite_url(&d.join("v1.db"));
    ok(
        d,
        &[
            "import",
            v1_path.to_str().unwrap(),
            "--database-url",
            &v1_store,
            "--quiet",
        ],
    );
    let expected = Snapshot {
        segments: vec![],
        bulks: vec![],
        messages: vec![],
        audience_jobs: vec![],
        deliveries: vec![],
        idempotency_records: vec![],
        ..original.clone()
    };
    assert_eq!(checked_snapshot(&v1_store).await, expected);

    // The moved store serves what was registered before the move (PostgreSQL when available).
    let serve = Serve::start(d, &middle);
    let phone = Phone {
        serve: &serve,
        code: built.code.clone(),
        http: reqwest::Client::new(),
    };
    for (id, before) in &built.served {
        let after = phone
            .ok("GET", &format!("/mobile/1/appinstance/{id}"), Some(id), None)
            .await;
        assert_eq!(&after, before);
    }
    // The audience index was rebuilt by the inserts: the segment previews as before the move.
    assert_eq!(
        preview(&serve, &built.admin_key, &built.segment_id).await,
        built.preview
    );
    let (status, m) = manage(
        &serve,
        &built.admin_key,
        "GET",
        &format!("/api/v1/messages?bulkId={}", original.bulks[0].bulk_id),
        None,
        None,
    )
    .await;
    assert_eq!((status, m["items"].as_array().map(Vec::len)), (200, Some(2)), "{m}");
    drop(serve);
    if let Some((_, guard)) = pg {
        guard.cleanup().await.unwrap();
    }
    println!("round trip took {:?}", started.elapsed());
}

/// Import and migrate-store refuse a target that holds anything, name what it holds, and leave
/// it exactly as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_empty_target_is_refused_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let source = sqlite_url(&d.join("source.db"));
    json_of(
        d,
        &["app", "create", "--name", "Shop", "--database-url", &source, "--json"],
    );
    let dump = d.join("dump.jsonl");
    ok(
        d,
        &[
            "export",
            "--database-url",
            &source,
            "--out",
            dump.to_str().unwrap(),
            "--quiet",
        ],
    );

    let pg = fresh_postgres("refusing a non-empty target").await;
    let mut targets = vec![sqlite_url(&d.join("busy.db"))];
    if let Some((url, _)) = &pg {
        targets.push(url.clone());
    }
    for target in &targets {
        json_of(
            d,
            &[
                "apikey",
                "create",
                "--scopes",
                "admin",
                "--database-url",
                target,
                "--json",
            ],
        );
        let before = snapshot(target).await;
        let err = fails(d, &["import", dump.to_str().unwrap(), "--database-url", target]);
        assert!(
            err.contains("not empty") && err.contains("1 account, 1 API key"),
            "{err}"
        );
        let err = fails(d, &["migrate-store", "--from", &source, "--to", target]);
        assert!(err.contains("not empty"), "{err}");
        assert_eq!(snapshot(target).await, before, "a refused import changed {target}");
    }
    // The same store on both sides is refused before anything else.
    let err = fails(d, &["migrate-store", "--from", &source, "--to", &source]);
    assert!(err.contains("same store"), "{err}");
    // A source that does not exist is not created empty.
    let missing = d.join("missing.db");
    let err = fails(
        d,
        &["export", "--database-url", &sqlite_url(&missing), "--out", "x.jsonl"],
    );
    assert!(err.contains("no SQLite store"), "{err}");
    assert!(!missing.exists() && !d.join("x.jsonl").exists());
    if let Some((_, guard)) = pg {
        guard.cleanup().await.unwrap();
    }
}

/// A damaged dump (truncated at a line end or inside a line, a corrupt line, lines out of order,
/// a duplicate row, another version, not a dump at all) is refused with the line at fault and
/// leaves the target empty, so that importing the good dump into the same target then works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_dump_is_refused_with_its_line_and_leaves_the_target_empty() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let source = sqlite_url(&d.join("source.db"));
    let app = json_of(
        d,
        &["app", "create", "--name", "Shop", "--database-url", &source, "--json"],
    );
    let code = app["applicationCode"].as_str().unwrap();
    json_of(
        d,
        &[
            "app",
            "jwt-key",
            "create",
            code,
            "--kid",
            "k1",
            "--database-url",
            &source,
            "--json",
        ],
    );
    json_of(
        d,
        &[
            "apikey",
            "create",
            "--scopes",
            "admin",
            "--database-url",
            &source,
            "--json",
        ],
    );
    let good_path = d.join("good.jsonl");
    ok(
        d,
        &[
            "export",
            "--database-url",
            &source,
            "--out",
            good_path.to_str().unwrap(),
        ],
    );
    let good = std::fs::read_to_string(&good_path).unwrap();
    let lines: Vec<&str> = good.lines().collect();
    // header, account, application, JWT key, API key
    assert_eq!(lines.len(), 5, "{good}");
    let joined = |ls: &[&str]| ls.iter().map(|l| format!("{l}\n")).collect::<String>();

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "truncated after a line",
            joined(&lines[..4]),
            "the dump ends at line 4, before the end its header announces: 1 API keys announced, 0 found",
        ),
        (
            "truncated inside a line",
            format!("{}{}", joined(&lines[..4]), &lines[4][..lines[4].len() / 2]),
            "line 5: not a valid record",
        ),
        (
            "a corrupt line",
            joined(&[
                lines[0],
                lines[1],
                "{\"kind\":\"application\",\"id\":42}",
                lines[3],
                lines[4],
            ]),
            "line 3: not a valid record",
        ),
        (
            "an unknown kind",
            joined(&[lines[0], lines[1], lines[2], "{\"kind\":\"planet\"}", lines[4]]),
            "line 4: not a valid record: unknown variant `planet`",
        ),
        (
            "lines out of dependency order",
            joined(&[lines[0], lines[1], lines[2], lines[4], lines[3]]),
            "line 5: JWT key \"k1\" of application",
        ),
        (
            "a duplicate row",
            joined(&[lines[0], lines[1], lines[2], lines[3], lines[3], lines[4]]),
            "line 5: cannot store JWT key \"k1\"",
        ),
        (
            "an empty line",
            joined(&[lines[0], lines[1], "", lines[2], lines[3], lines[4]]),
            "line 3: empty line",
        ),
        (
            "another version",
            joined(&[&lines[0].replace("\"version\":2", "\"version\":99"), lines[1]]),
            "dump version 99 is not supported",
        ),
        (
            "not a dump",
            "{\"hello\":\"world\"}\n".into(),
            "line 1: not a roster-dump header",
        ),
        ("an empty file", String::new(), "is empty"),
    ];
    let pg = fresh_postgres("damaged dumps").await;
    let mut targets = vec![sqlite_url(&d.join("target.db"))];
    if let Some((url, _)) = &pg {
        targets.push(url.clone());
    }
    for target in &targets {
        for (what, content, expected) in &cases {
            let path = d.join("damaged.jsonl");
            std::fs::write(&path, content).unwrap();
            let err = fails(
                d,
                &["import", path.to_str().unwrap(), "--database-url", target, "--quiet"],
            );
            assert!(err.contains(expected), "{what}: expected {expected:?} in {err}");
            if what.contains("order") {
                assert!(err.contains("dependency order"), "{err}");
            }
            let after = snapshot(target).await;
            assert_eq!(after, Snapshot::default(), "{what}: the target is not empty any more");
        }
        // The good dump then goes into the same target.
        ok(d, &["import", good_path.to_str().unwrap(), "--database-url", target]);
        assert_eq!(checked_snapshot(target).await, checked_snapshot(&source).await);
    }
    if let Some((_, guard)) = pg {
        guard.cleanup().await.unwrap();
    }
}

/// Measures `migrate-store` on a large store (100,000 persons with one installation each, phones,
/// emails and tags) both ways; not part of the suite: `cargo test -p roster-cli --release --test
/// migrate_store -- --ignored --nocapture`, with ROSTER_TEST_POSTGRES_URL set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement (minutes), not a check"]
async fn large_store_round_trip() {
    let n: usize = std::env::var("ROSTER_TEST_LARGE_PERSONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let source = sqlite_url(&d.join("large.db"));
    let app = json_of(
        d,
        &["app", "create", "--name", "Big", "--database-url", &source, "--json"],
    );
    let app_id: uuid::Uuid = app["id"].as_str().unwrap().parse().unwrap();
    {
        let store = open_store(&source).await.unwrap();
        let mut tx = store.begin().await.unwrap();
        let account = tx.default_account().await.unwrap().unwrap();
        for i in 0..n {
            let mut p = roster_model::Person::new_anonymous(account.id, 1_700_000_000_000 + i as i64);
            p.external_user_id = Some(format!("user-{i}"));
            p.phones = vec![format!("3859{i:08}")];
            p.emails = vec![format!("user{i}@example.com")];
            p.tags = ["a".to_string(), format!("t{}", i % 10)].into();
            p.custom_attributes = [("n".to_string(), json!(i))].into();
            tx.insert_person(&p).await.unwrap();
            let inst = roster_model::Installation {
                account_id: account.id,
                application_id: app_id,
                push_reg_id: uuid::Uuid::new_v4().to_string(),
                person_id: p.id,
                push_service_type: Some(roster_model::PushServiceType::Firebase),
                push_service_token: Some(format!("token-{i}")),
                reg_enabled: true,
                is_primary: true,
                application_user_id: None,
                custom_attributes: Default::default(),
                system: Default::default(),
                created_at: p.created_at,
                updated_at: p.created_at,
                last_seen_at: p.created_at,
                token_cleared_at: None,
                token_cleared_reason: None,
            };
            tx.insert_installation(&inst).await.unwrap();
        }
        tx.commit().await.unwrap();
    }
    let timed = |label: &str, args: &[&str]| {
        let t = Instant::now();
        let summary = json_of(d, args);
        println!("{label}: {:?} ({})", t.elapsed(), summary["counts"]);
    };
    let copy = sqlite_url(&d.join("copy.db"));
    timed(
        "SQLite -> SQLite",
        &["migrate-store", "--from", &source, "--to", &copy, "--json"],
    );
    let dump = d.join("large.jsonl");
    timed(
        "export SQLite",
        &[
            "export",
            "--database-url",
            &source,
            "--out",
            dump.to_str().unwrap(),
            "--json",
        ],
    );
    if let Some((pg, guard)) = fresh_postgres("the large store on PostgreSQL").await {
        timed(
            "SQLite -> PostgreSQL",
            &["migrate-store", "--from", &source, "--to", &pg, "--json"],
        );
        let back = sqlite_url(&d.join("back.db"));
        timed(
            "PostgreSQL -> SQLite",
            &["migrate-store", "--from", &pg, "--to", &back, "--json"],
        );
        let (pg2, guard2) = fresh_postgres("import").await.unwrap();
        timed(
            "import into PostgreSQL",
            &["import", dump.to_str().unwrap(), "--database-url", &pg2, "--json"],
        );
        guard2.cleanup().await.unwrap();
        guard.cleanup().await.unwrap();
    }
}
