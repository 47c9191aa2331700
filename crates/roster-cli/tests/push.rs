//! `roster push send` against a real server (port 0, SQLite file, and PostgreSQL when
//! `ROSTER_TEST_POSTGRES_URL` is set) delivering to the FCM stand-in, as scripts use it: JSON
//! and readable output, rejections and refusals with exit status 1. Each scenario ends with the
//! invariant checker.

use std::sync::Arc;
use std::time::Duration;

use roster_push_standins::{FcmStandIn, FcmStandInConfig};
use roster_server::{RunningServer, Settings, settings::MobileRateSettings, store::open_store};
use roster_store::Store;
use serde_json::{Value, json};

const ROSTER: &str = env!("CARGO_BIN_EXE_roster");

/// A running server with one application pointed at an FCM stand-in.
struct Setup {
    server: RunningServer,
    store: Arc<dyn Store>,
    fcm: FcmStandIn,
    http: reqwest::Client,
    app_code: String,
    push_key: String,
    admin_key: String,
    _dir: tempfile::TempDir,
    _pg: Option<roster_store_postgres::testing::TestDbGuard>,
}

impl Setup {
    async fn start(postgres: bool) -> Option<Setup> {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings {
            data_dir: dir.path().to_path_buf(),
            ..Settings::default()
        };
        settings.http.listen = "127.0.0.1:0".into();
        settings.mobile.rate = MobileRateSettings::disabled();
        settings.delivery.poll_interval_ms = 50;
        let mut pg = None;
        if postgres {
            let base = roster_store_postgres::testing::test_base_url()?;
            let (url, guard) = roster_store_postgres::testing::fresh_test_database(&base)
                .await
                .unwrap();
            settings.database_url = url;
            pg = Some(guard);
        }
        println!("backend: {}", if postgres { "postgres" } else { "sqlite" });
        let store = open_store(&settings.store_url()).await.unwrap();
        let server = RunningServer::start(&settings, store.clone()).await.unwrap();
        let core = server.state.core.clone();
        let account = core.account_or_default(None).await.unwrap();
        let app = core.create_application(account.id, "Shop").await.unwrap();
        let key = |scope: &str| {
            let core = core.clone();
            let scopes = vec![scope.to_string()];
            async move {
                core.create_api_key(account.id, "cli", &scopes, None)
                    .await
                    .unwrap()
                    .secret
            }
        };
        let fcm = FcmStandIn::start(FcmStandInConfig::test()).await.unwrap();
        let setup = Setup {
            app_code: app.application_code.clone(),
            push_key: key("push:send").await,
            admin_key: key("admin").await,
            server,
            store,
            fcm,
            http: reqwest::Client::new(),
            _dir: dir,
            _pg: pg,
        };
        let r = setup
            .http
            .patch(format!("{}/api/v1/applications/{}", setup.server.base_url(), app.id))
            .header("authorization", format!("App {}", setup.admin_key))
            .json(&json!({"providers": {"fcm": setup.fcm.application_settings()}}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        Some(setup)
    }

    /// Registers a Firebase installation with `token` and `extra` fields; its pushRegId.
    async fn register(&self, token: &str, extra: Value) -> String {
        let mut body = json!({"pushServiceType": "Firebase", "pushServiceToken": token});
        if let (Some(b), Value::Object(e)) = (body.as_object_mut(), extra) {
            b.extend(e);
        }
        let r: Value = self.mobile("POST", "/mobile/1/appinstance", None, body).await;
        r["pushRegId"].as_str().unwrap().to_owned()
    }

    async fn mobile(&self, method: &str, path: &str, caller: Option<&str>, body: Value) -> Value {
        let mut rb = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.server.base_url()))
            .header("authorization", format!("App {}", self.app_code))
            .json(&body);
        if let Some(c) = caller {
            rb = rb.header("pushregistrationid", c);
        }
        let r = rb.send().await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap_or(Value::Null)
    }

    /// Runs `roster push send` with the server, key and application filled in.
    async fn roster(&self, key: &str, with_app: bool, args: &[&str]) -> std::process::Output {
        let mut all: Vec<String> = vec![
            "push".into(),
            "send".into(),
            "--server".into(),
            self.server.base_url(),
            "--api-key".into(),
            key.into(),
        ];
        if with_app {
            all.extend(["--app".into(), self.app_code.clone()]);
        }
        all.extend(args.iter().map(|s| s.to_string()));
        let mut cmd = tokio::process::Command::new(ROSTER);
        cmd.args(&all).env_remove("RUST_LOG");
        for (k, _) in std::env::vars() {
            if k.starts_with("ROSTER_") {
                cmd.env_remove(k);
            }
        }
        tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .expect("roster push send did not end")
            .unwrap()
    }

    async fn finish(self) {
        let mut tx = self.store.begin_read().await.unwrap();
        let snapshot = tx.snapshot().await.unwrap();
        tx.rollback().await.unwrap();
        let violations = roster_core::invariants::check(&snapshot);
        assert!(violations.is_empty(), "invariants violated:\n{}", violations.join("\n"));
        self.server.stop().await.unwrap();
    }
}

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn push_send(postgres: bool) {
    let Some(s) = Setup::start(postgres).await else {
        return;
    };
    let a = s.register("cli-a", json!({})).await;
    let b = s.register("cli-b", json!({"isPrimary": true})).await;
    for id in [&a, &b] {
        s.mobile(
            "POST",
            &format!("/mobile/1/appinstance/{id}/personalize"),
            Some(id),
            json!({"userIdentity": {"externalUserId": "cust-1"}}),
        )
        .await;
    }
    s.mobile(
        "PATCH",
        &format!("/mobile/1/appinstance/{b}/user"),
        Some(&b),
        json!({"tags": ["vip"]}),
    )
    .await;

    // JSON: the final message resource, after every device got it with the payload.
    let out = s
        .roster(
            &s.push_key,
            true,
            &[
                "--external-user-id",
                "cust-1",
                "--title",
                "Sale",
                "--text",
                "20% off",
                "--payload",
                r#"{"deeplink":"acme://sale"}"#,
                "--json",
            ],
        )
        .await;
    assert!(out.status.success(), "{}{}", stderr(&out), stdout(&out));
    assert_eq!(stdout(&out).lines().count(), 1);
    let m: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(m["done"], true);
    assert_eq!(m["audience"], json!({"state": "RESOLVED", "installations": 2}));
    assert_eq!(m["deliveries"]["ACCEPTED"], 2);
    assert_eq!(
        m["content"],
        json!({"type": "TEXT", "title": "Sale", "text": "20% off"})
    );
    let pushed: Vec<Value> = s
        .fcm
        .recorded()
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_slice(&r.body).unwrap();
            serde_json::from_str(body["message"]["data"]["org_ib_d"].as_str().unwrap()).unwrap()
        })
        .collect();
    assert_eq!(pushed.len(), 2);
    assert!(
        pushed
            .iter()
            .all(|ib| ib["custom"] == json!({"deeplink": "acme://sale"}))
    );

    // Readable, a filter and primary only; the application found with an admin key.
    let out = s
        .roster(
            &s.admin_key,
            false,
            &["--filter", r#"{"tags":"vip"}"#, "--primary-only", "--text", "hi"],
        )
        .await;
    assert!(out.status.success(), "{}{}", stderr(&out), stdout(&out));
    let text = stdout(&out);
    assert!(text.contains("PENDING_ACCEPTED"), "{text}");
    assert!(text.contains("done: 1 installation(s)"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["ACCEPTED", "1"]),
        "{text}"
    );
    assert_eq!(s.fcm.recorded().iter().filter(|r| r.device_token == "cli-b").count(), 2);

    // A rejected destination, an invalid one, and a key without push:send: exit status 1.
    let out = s
        .roster(&s.push_key, true, &["--external-user-id", "nobody", "--text", "x"])
        .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("REJECTED_DESTINATION_NOT_FOUND"),
        "{}",
        stderr(&out)
    );
    let out = s.roster(&s.push_key, true, &["--phone", "12", "--text", "x"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("messages[0].destinations[0].phoneNumber: not a valid E.164 number"),
        "{}",
        stderr(&out)
    );
    let out = s
        .roster(&s.push_key, false, &["--phone", "+385911234567", "--text", "x"])
        .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--app"), "{}", stderr(&out));
    assert_eq!(s.fcm.stats().sends, 3, "nothing more was sent");
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_send_sqlite() {
    push_send(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_send_postgres() {
    push_send(true).await;
}
