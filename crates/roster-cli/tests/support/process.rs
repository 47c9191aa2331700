//! The real `roster` binary as a child process: a store (a temp SQLite data dir, or a fresh
//! PostgreSQL database), `roster app create --json` to bootstrap it, and `roster serve --listen
//! 127.0.0.1:0` started, read for its `listening on` line, and stopped with SIGTERM or killed with
//! SIGKILL.

use std::{
    collections::VecDeque,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

/// The binary under test.
pub const ROSTER: &str = env!("CARGO_BIN_EXE_roster");

/// Lines of a server's stderr kept for a failure message.
const STDERR_TAIL: usize = 200;

/// A store the server processes share.
pub enum StoreSpec {
    /// `--data-dir DIR` (the file `DIR/roster.db`).
    Sqlite { dir: tempfile::TempDir },
    /// `--database-url URL`; the guard drops the database at the end.
    Postgres {
        url: String,
        _guard: roster_store_postgres::testing::TestDbGuard,
    },
}

impl StoreSpec {
    /// A fresh SQLite data dir.
    pub fn sqlite() -> StoreSpec {
        StoreSpec::Sqlite {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A fresh PostgreSQL database, or `None` (after a printed `SKIPPED` line) when
    /// `ROSTER_TEST_POSTGRES_URL` is not set.
    pub async fn postgres() -> Option<StoreSpec> {
        let base = roster_store_postgres::testing::test_base_url()?;
        let (url, guard) = roster_store_postgres::testing::fresh_test_database(&base)
            .await
            .expect("cannot create a test database");
        Some(StoreSpec::Postgres { url, _guard: guard })
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        match self {
            StoreSpec::Sqlite { .. } => "sqlite",
            StoreSpec::Postgres { .. } => "postgres",
        }
    }

    /// The `roster` flags naming this store.
    pub fn args(&self) -> Vec<String> {
        match self {
            StoreSpec::Sqlite { dir } => vec!["--data-dir".into(), dir.path().display().to_string()],
            StoreSpec::Postgres { url, .. } => vec!["--database-url".into(), url.clone()],
        }
    }

    /// The store URL `roster_server::store::open_store` takes (what `roster serve` opens).
    pub fn url(&self) -> String {
        match self {
            StoreSpec::Sqlite { dir } => format!("sqlite://{}", dir.path().join("roster.db").display()),
            StoreSpec::Postgres { url, .. } => url.clone(),
        }
    }

    /// Everything in the store, read by this process through the store layer while no server
    /// runs on it (what `roster serve` would find on its next start).
    pub async fn snapshot(&self) -> roster_store::Snapshot {
        match self {
            StoreSpec::Sqlite { .. } => {
                let store = roster_server::store::open_store(&self.url()).await.unwrap();
                read_all(store.as_ref()).await
            }
            StoreSpec::Postgres { url, .. } => {
                // Opened directly (not through open_store) to close its pool before the next
                // server starts.
                let store = roster_store_postgres::PgStore::connect(url).await.unwrap();
                let snapshot = read_all(&store).await;
                store.close().await;
                snapshot
            }
        }
    }
}

async fn read_all(store: &dyn roster_store::Store) -> roster_store::Snapshot {
    let mut tx = store.begin_read().await.unwrap();
    let snapshot = tx.snapshot().await.unwrap();
    tx.rollback().await.unwrap();
    snapshot
}

/// `roster ARGS` with a clean `ROSTER_*` environment, the mobile rate limits off (a load test
/// from one address would otherwise measure the limiter), and warnings-only logs.
pub fn command(args: &[String]) -> Command {
    let mut cmd = Command::new(ROSTER);
    cmd.args(args).env("RUST_LOG", "warn");
    for (k, _) in std::env::vars() {
        if k.starts_with("ROSTER_") {
            cmd.env_remove(k);
        }
    }
    for limit in [
        "PER_INSTALLATION_RPS",
        "PER_INSTALLATION_BURST",
        "CREATE_PER_IP_RPS",
        "CREATE_PER_IP_BURST",
    ] {
        cmd.env(format!("ROSTER_MOBILE__RATE__{limit}"), "0");
    }
    cmd.kill_on_drop(true);
    cmd
}

/// `roster app create --json` on the store; the new application's code.
pub async fn create_app(store: &StoreSpec, name: &str) -> String {
    let mut args: Vec<String> = vec![
        "app".into(),
        "create".into(),
        "--name".into(),
        name.into(),
        "--json".into(),
    ];
    args.extend(store.args());
    let out = command(&args).output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "roster app create failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let app: serde_json::Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    app["applicationCode"].as_str().unwrap().to_string()
}

/// A running `roster serve` child process (killed if dropped).
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    stderr: Arc<Mutex<VecDeque<String>>>,
}

impl Server {
    /// Starts `roster serve --listen 127.0.0.1:0` on the store and waits for `listening on`.
    pub async fn start(store: &StoreSpec) -> Server {
        let child = Server::spawn(store);
        Server::wait_listening(child).await
    }

    /// Spawns `roster serve` without waiting for it to listen.
    pub fn spawn(store: &StoreSpec) -> Child {
        let mut args: Vec<String> = vec!["serve".into(), "--listen".into(), "127.0.0.1:0".into()];
        args.extend(store.args());
        command(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Reads a spawned server's stdout up to its `listening on http://ADDR` line.
    pub async fn wait_listening(mut child: Child) -> Server {
        let stderr = Arc::new(Mutex::new(VecDeque::new()));
        let sink = stderr.clone();
        let mut err_lines = BufReader::new(child.stderr.take().unwrap()).lines();
        tokio::spawn(async move {
            while let Ok(Some(line)) = err_lines.next_line().await {
                let mut tail = sink.lock().unwrap();
                if tail.len() == STDERR_TAIL {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
        let mut out_lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let listening = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = out_lines.next_line().await {
                if let Some(addr) = line.strip_prefix("listening on http://") {
                    return Some(addr.trim().to_string());
                }
            }
            None
        })
        .await;
        let tail = || stderr.lock().unwrap().iter().cloned().collect::<Vec<_>>().join("\n");
        let addr = match listening {
            Ok(Some(addr)) => addr,
            Ok(None) => panic!("roster serve exited without listening; stderr:\n{}", tail()),
            Err(_) => panic!("roster serve did not listen within 60 s; stderr:\n{}", tail()),
        };
        // Keep draining stdout so that the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = out_lines.next_line().await {} });
        Server {
            child,
            base_url: format!("http://{addr}"),
            stderr,
        }
    }

    /// The last lines the server wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        self.stderr
            .lock()
            .unwrap()
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// SIGKILL: the process dies at once, whatever it was doing; waits until it is gone.
    pub async fn sigkill(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }

    /// SIGTERM, and asserts a clean exit within 30 s.
    pub async fn stop(mut self) {
        let pid = self.child.id().expect("server already exited");
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await
            .unwrap();
        assert!(sent.success());
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("roster serve did not stop within 30 s of SIGTERM")
            .unwrap();
        assert!(
            status.success(),
            "roster serve exited with {status}:\n{}",
            self.stderr_tail()
        );
    }
}

/// Waits until no other client session is connected to a PostgreSQL database: after a SIGKILL,
/// so that a commit the dead server had sent cannot land after the store is read.
pub async fn wait_for_sessions_to_end(url: &str) {
    use sqlx::{Connection, PgConnection};
    let mut conn = PgConnection::connect(url).await.unwrap();
    for _ in 0..300 {
        let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if left == 0 {
            let _ = conn.close().await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("other sessions on the test database did not end within 30 s");
}
