//! The system under test: a fresh store (a SQLite file in a scratch directory, or a new
//! PostgreSQL database), the real server on an ephemeral port (the `roster` binary as a child
//! process, so that its memory is its own, or in this process for the smoke tests), its first
//! admin key, and management-API calls to set it up.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use roster_server::{
    RunningServer, Settings,
    settings::{ManagementRateSettings, MobileRateSettings},
    store::open_store,
};
use roster_store::Store;
use roster_store_postgres::testing::{TestDbGuard, fresh_test_database};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::system::{self, Memory};

/// Which store backend a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The name reports use.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// How the server runs.
#[derive(Debug, Clone)]
pub enum ServerMode {
    /// `roster serve` from this binary, as a child process.
    Child(PathBuf),
    /// In this process (memory figures then include the load generator).
    InProcess,
}

/// Server settings a scenario may change.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// `delivery.workers`, when set.
    pub delivery_workers: Option<usize>,
    /// Extra environment for a child server (e.g. `SSL_CERT_FILE`).
    pub env: Vec<(String, String)>,
}

/// Where the store lives, kept alive (and cleaned up) with the run.
pub struct FreshStore {
    pub backend: Backend,
    pub url: String,
    /// The scratch directory (the SQLite file, the server's log).
    pub dir: tempfile::TempDir,
    pg: Option<TestDbGuard>,
}

impl FreshStore {
    /// A new, empty store of `backend`; for PostgreSQL a new database on the server of
    /// `postgres_url`.
    pub async fn create(backend: Backend, postgres_url: &str) -> anyhow::Result<FreshStore> {
        let dir = tempfile::Builder::new().prefix("roster-bench-").tempdir()?;
        let (url, pg) = match backend {
            Backend::Sqlite => (format!("sqlite://{}", dir.path().join("roster.db").display()), None),
            Backend::Postgres => {
                let (url, guard) = fresh_test_database(postgres_url)
                    .await
                    .with_context(|| format!("cannot create a database on {postgres_url}"))?;
                (url, Some(guard))
            }
        };
        Ok(FreshStore { backend, url, dir, pg })
    }

    /// The SQLite file, for SQLite stores.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        (self.backend == Backend::Sqlite).then(|| self.dir.path().join("roster.db"))
    }

    /// Bytes the store takes on disk now. SQLite: the database file after a checkpoint that
    /// empties the WAL into it (so the figure does not depend on when the last checkpoint ran);
    /// PostgreSQL: `pg_database_size`.
    ///
    /// The checkpoint is tried again until it empties the log: a reader (the server building its
    /// audience index after the seeder's writes, ~20 s at 1M people) makes it give up, and the
    /// log left (up to 160 MiB) was counted as if it grew with the people. After 5 minutes
    /// what is left is counted.
    pub async fn bytes_on_disk(&self) -> anyhow::Result<u64> {
        match self.backend {
            Backend::Sqlite => {
                let path = self.sqlite_path().expect("sqlite store");
                tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
                    let conn = rusqlite::Connection::open(&path)?;
                    conn.busy_timeout(Duration::from_secs(30))?;
                    let deadline = std::time::Instant::now() + Duration::from_secs(300);
                    loop {
                        // (busy, log frames, frames copied): busy 0 once the log is emptied.
                        let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
                        if busy == 0 || std::time::Instant::now() >= deadline {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(500));
                    }
                    let mut total = std::fs::metadata(&path)?.len();
                    for ext in ["-wal", "-shm"] {
                        let mut p = path.clone().into_os_string();
                        p.push(ext);
                        if let Ok(m) = std::fs::metadata(PathBuf::from(p)) {
                            total += m.len();
                        }
                    }
                    Ok(total)
                })
                .await?
            }
            Backend::Postgres => {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&self.url).await?;
                let (size,): (i64,) = sqlx::query_as("SELECT pg_database_size(current_database())")
                    .fetch_one(&mut conn)
                    .await?;
                conn.close().await?;
                Ok(size as u64)
            }
        }
    }

    /// Bytes per table and index, largest first: where the bytes on disk go. SQLite: the
    /// `dbstat` virtual table; PostgreSQL: `pg_relation_size` of every relation of the schema.
    pub async fn relation_sizes(&self) -> anyhow::Result<Vec<(String, u64)>> {
        match self.backend {
            Backend::Sqlite => {
                let path = self.sqlite_path().expect("sqlite store");
                tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<(String, u64)>> {
                    let conn = rusqlite::Connection::open(&path)?;
                    conn.busy_timeout(Duration::from_secs(30))?;
                    let mut stmt = conn
                        .prepare("SELECT name, sum(pgsize) AS bytes FROM dbstat GROUP BY name ORDER BY bytes DESC")?;
                    let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
                    Ok(rows.collect::<Result<_, _>>()?)
                })
                .await?
            }
            Backend::Postgres => {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&self.url).await?;
                let rows: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT c.relname::text, pg_relation_size(c.oid) FROM pg_class c \
                     JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'i', 't') \
                     ORDER BY 2 DESC",
                )
                .fetch_all(&mut conn)
                .await?;
                conn.close().await?;
                Ok(rows.into_iter().map(|(n, b)| (n, b as u64)).collect())
            }
        }
    }

    /// Drops the PostgreSQL database (the scratch directory goes when dropped).
    pub async fn cleanup(mut self) -> anyhow::Result<()> {
        if let Some(pg) = self.pg.take() {
            pg.cleanup().await?;
        }
        Ok(())
    }
}

/// A running server.
pub struct Server {
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The admin key the first start created.
    pub admin_key: String,
    /// The server process's id (this process when in-process).
    pub pid: u32,
    pub mode_name: &'static str,
    kind: ServerKind,
    http: reqwest::Client,
}

enum ServerKind {
    Child(tokio::process::Child),
    InProcess(RunningServer),
}

/// Settings every benchmark server gets: no rate limits (the load comes from one IP and a few
/// installations on purpose), quiet logs, no retention sweeps during a run.
fn bench_env(opts: &ServerOptions) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("ROSTER_MOBILE__RATE__PER_INSTALLATION_RPS", "0"),
        ("ROSTER_MOBILE__RATE__PER_INSTALLATION_BURST", "0"),
        ("ROSTER_MOBILE__RATE__CREATE_PER_IP_RPS", "0"),
        ("ROSTER_MOBILE__RATE__CREATE_PER_IP_BURST", "0"),
        // The poller of a fan-out and the audience previews are one API key's requests.
        ("ROSTER_MANAGEMENT__RATE__RPS", "0"),
        ("ROSTER_MANAGEMENT__RATE__BURST", "0"),
        ("ROSTER_LOG__FILTER", "error"),
        ("ROSTER_RETENTION__SWEEP_INTERVAL_SECONDS", "0"),
        ("ROSTER_DELIVERY__POLL_INTERVAL_MS", "100"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if let Some(w) = opts.delivery_workers {
        env.push(("ROSTER_DELIVERY__WORKERS".into(), w.to_string()));
    }
    env.extend(opts.env.iter().cloned());
    env
}

impl Server {
    /// Starts the server on `store` and waits until it accepts connections.
    pub async fn start(mode: &ServerMode, store: &FreshStore, opts: &ServerOptions) -> anyhow::Result<Server> {
        let http = reqwest::Client::builder().pool_max_idle_per_host(8).build()?;
        match mode {
            ServerMode::Child(bin) => Self::start_child(bin, store, opts, http).await,
            ServerMode::InProcess => Self::start_in_process(store, opts, http).await,
        }
    }

    async fn start_child(
        bin: &Path,
        store: &FreshStore,
        opts: &ServerOptions,
        http: reqwest::Client,
    ) -> anyhow::Result<Server> {
        let log = std::fs::File::create(store.dir.path().join("server.log"))?;
        let mut cmd = tokio::process::Command::new(bin);
        cmd.args(["serve", "--database-url", &store.url, "--listen", "127.0.0.1:0"])
            .current_dir(store.dir.path())
            .env_remove("ROSTER_CONFIG")
            .envs(bench_env(opts))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        let mut child = cmd.spawn().with_context(|| {
            format!(
                "cannot start {} (build it with cargo build --release -p roster-cli, or pass --roster-bin)",
                bin.display()
            )
        })?;
        let pid = child.id().context("the server exited at once")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut admin_key = None;
        let addr = loop {
            let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
                .await
                .context("the server did not start within 120 s")??;
            let Some(line) = line else {
                let log = std::fs::read_to_string(store.dir.path().join("server.log")).unwrap_or_default();
                bail!("the server exited before listening:\n{log}");
            };
            if let Some(key) = line.trim().strip_prefix("admin API key: ") {
                admin_key = Some(key.to_owned());
            }
            if let Some(addr) = line.trim().strip_prefix("listening on http://") {
                break addr.to_owned();
            }
        };
        // Keep reading stdout so that the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Server {
            base_url: format!("http://{addr}"),
            addr,
            admin_key: admin_key.context("the server printed no admin key (is the store fresh?)")?,
            pid,
            mode_name: "child process (roster serve)",
            kind: ServerKind::Child(child),
            http,
        })
    }

    async fn start_in_process(
        store: &FreshStore,
        opts: &ServerOptions,
        http: reqwest::Client,
    ) -> anyhow::Result<Server> {
        let mut settings = Settings {
            database_url: store.url.clone(),
            ..Settings::default()
        };
        settings.http.listen = "127.0.0.1:0".into();
        settings.mobile.rate = MobileRateSettings::disabled();
        settings.management.rate = ManagementRateSettings::disabled();
        settings.retention.sweep_interval_seconds = 0;
        settings.delivery.poll_interval_ms = 100;
        if let Some(w) = opts.delivery_workers {
            settings.delivery.workers = w;
        }
        let opened: Arc<dyn Store> = open_store(&store.url).await?;
        let core = roster_core::Core::new(
            opened.clone(),
            roster_core::CoreSettings {
                max_attribute_definitions: settings.limits.attribute_definitions,
            },
        );
        let account = core
            .account_or_default(None)
            .await
            .map_err(|e| anyhow::anyhow!("default account: {e:?}"))?;
        let created = core
            .create_first_admin_key(account.id, "admin")
            .await
            .map_err(|e| anyhow::anyhow!("admin key: {e:?}"))?
            .context("the store already has an admin key")?;
        let running = RunningServer::start(&settings, opened).await?;
        let addr = running.addr.to_string();
        Ok(Server {
            base_url: running.base_url(),
            addr,
            admin_key: created.secret,
            pid: std::process::id(),
            mode_name: "in-process (memory figures include the load generator)",
            kind: ServerKind::InProcess(running),
            http,
        })
    }

    /// The server's memory now (and its peak).
    pub fn memory(&self) -> Option<Memory> {
        system::memory_of(self.pid)
    }

    /// CPU seconds the server process has used.
    pub fn cpu_seconds(&self) -> Option<f64> {
        system::cpu_seconds_of(self.pid)
    }

    /// Whether the server runs in this process.
    pub fn in_process(&self) -> bool {
        matches!(self.kind, ServerKind::InProcess(_))
    }

    /// A management-API call with the admin key; fails on any status but 2xx, naming it.
    pub async fn api(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base_url))
            .header("authorization", format!("App {}", self.admin_key));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        if !status.is_success() {
            bail!("{method} {path}: {status}: {}", String::from_utf8_lossy(&bytes));
        }
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// Creates an application (with provider settings, if any); returns (id, code).
    pub async fn create_application(&self, name: &str, providers: Option<Value>) -> anyhow::Result<App> {
        let mut body = json!({ "name": name });
        if let Some(p) = providers {
            body["providers"] = p;
        }
        let app = self.api("POST", "/api/v1/applications", Some(body)).await?;
        Ok(App {
            id: app["id"].as_str().context("application id")?.parse()?,
            code: app["applicationCode"].as_str().context("application code")?.to_owned(),
        })
    }

    /// Defines a person attribute.
    pub async fn define_person_attribute(&self, name: &str, kind: &str) -> anyhow::Result<()> {
        self.api(
            "POST",
            "/api/v1/attributes",
            Some(json!({"scope": "PERSON", "name": name, "type": kind})),
        )
        .await?;
        Ok(())
    }

    /// Stops the server (SIGTERM for a child, then waits for it).
    pub async fn stop(self) -> anyhow::Result<()> {
        match self.kind {
            ServerKind::Child(mut child) => {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &self.pid.to_string()])
                    .status();
                if tokio::time::timeout(Duration::from_secs(30), child.wait())
                    .await
                    .is_err()
                {
                    child.kill().await?;
                }
                Ok(())
            }
            ServerKind::InProcess(running) => running.stop().await,
        }
    }
}

/// An application of the benchmark account.
#[derive(Debug, Clone)]
pub struct App {
    pub id: uuid::Uuid,
    pub code: String,
}

/// The `roster` binary next to this one (both land in the same target directory).
pub fn default_roster_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("roster")))
        .unwrap_or_else(|| PathBuf::from("roster"))
}
