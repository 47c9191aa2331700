//! The harness: the real Roster server in-process over a real SQLite file in a temp dir (as in
//! roster-server's tests), which can be stopped and started again on the same data dir and the
//! same port, plus client configurations pointing at it.
#![allow(dead_code)]

use std::{net::SocketAddr, path::Path, sync::Arc, time::Duration};

use roster_client::{Config, Event, EventReceiver, RetrySettings, RosterClient, SystemInfo};
use roster_core::Core;
use roster_model::{Application, Installation, Person};
use roster_server::{RunningServer, Settings, settings::MobileRateSettings, store::open_store};
use roster_store::{Snapshot, Store};

/// A server with one application; `stop` and `restart` keep the data dir and the port.
pub struct TestServer {
    pub settings: Settings,
    pub running: Option<RunningServer>,
    pub store: Arc<dyn Store>,
    pub app: Application,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server on an ephemeral port with rate limits off and creates one application.
    pub async fn start() -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings {
            data_dir: dir.path().to_path_buf(),
            ..Settings::default()
        };
        settings.http.listen = "127.0.0.1:0".into();
        settings.mobile.rate = MobileRateSettings::disabled();
        let store = open_store(&settings.store_url()).await.unwrap();
        let running = RunningServer::start(&settings, store.clone()).await.unwrap();
        let core = running.state.core.clone();
        let account = core.account_or_default(None).await.unwrap();
        let app = core.create_application(account.id, "x").await.unwrap();
        let addr = running.addr;
        TestServer {
            settings,
            running: Some(running),
            store,
            app,
            addr,
            _dir: dir,
        }
    }

    /// The core over the store.
    pub fn core(&self) -> Core {
        match &self.running {
            Some(r) => r.state.core.clone(),
            None => Core::new(self.store.clone(), Default::default()),
        }
    }

    /// Stops the server (the port is free afterwards).
    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await.unwrap();
        }
    }

    /// Starts the server again on the same data dir and the same address.
    pub async fn restart(&mut self) {
        self.stop().await;
        let mut settings = self.settings.clone();
        settings.http.listen = self.addr.to_string();
        let store = open_store(&settings.store_url()).await.unwrap();
        // The port was just released; binding may need a moment on a busy machine.
        let mut last = None;
        for _ in 0..50 {
            match RunningServer::start(&settings, store.clone()).await {
                Ok(r) => {
                    self.running = Some(r);
                    self.store = store;
                    return;
                }
                Err(e) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        panic!("cannot bind {} again: {:?}", self.addr, last);
    }

    /// Everything in the store.
    pub async fn snapshot(&self) -> Snapshot {
        let mut tx = self.store.begin_read().await.unwrap();
        let s = tx.snapshot().await.unwrap();
        tx.rollback().await.unwrap();
        s
    }

    /// An installation as stored.
    pub async fn installation(&self, id: &str) -> Option<Installation> {
        self.snapshot()
            .await
            .installations
            .into_iter()
            .find(|i| i.push_reg_id == id)
    }

    /// The person owning an installation.
    pub async fn person_of(&self, id: &str) -> Person {
        let s = self.snapshot().await;
        let inst = s
            .installations
            .iter()
            .find(|i| i.push_reg_id == id)
            .unwrap_or_else(|| panic!("no installation {id}"));
        s.persons
            .into_iter()
            .find(|p| p.id == inst.person_id)
            .expect("the person of an installation")
    }

    /// The person with an externalUserId.
    pub async fn person_by_external_id(&self, ext: &str) -> Option<Person> {
        self.snapshot()
            .await
            .persons
            .into_iter()
            .find(|p| p.external_user_id.as_deref() == Some(ext))
    }

    /// Deletes an installation server-side, as an administrator would.
    pub async fn delete_installation(&self, id: &str) {
        let mut tx = self.store.begin().await.unwrap();
        let inst = tx.installation(id).await.unwrap().expect("installation to delete");
        roster_core::installation::delete_installation_in(&mut *tx, &inst)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }

    /// Asserts the invariants of people.md §11 on the store.
    pub async fn check_invariants(&self) {
        let violations = roster_core::invariants::check(&self.snapshot().await);
        assert!(violations.is_empty(), "invariants violated:\n{}", violations.join("\n"));
    }

    /// A client configuration for this server's application.
    pub fn config(&self, dir: &Path) -> Config {
        Config {
            application_code: self.app.application_code.clone(),
            base_url: format!("http://{}", self.addr).parse().unwrap(),
            storage_dir: dir.to_path_buf(),
            system_info: SystemInfo {
                app_version: Some("3.2.1".into()),
                device_model: Some("Test Box".into()),
                device_manufacturer: Some("Roster".into()),
                language: Some("en".into()),
                notifications_enabled: Some(true),
                ..SystemInfo::detect()
            },
            retry: RetrySettings {
                initial: Duration::from_millis(500),
                max: Duration::from_secs(5),
            },
            ..Config::default()
        }
    }

    /// Starts a client on `dir` and waits until it is registered.
    pub async fn client(&self, dir: &Path) -> RosterClient {
        let c = RosterClient::start(self.config(dir)).await.unwrap();
        c.sync_now().await.unwrap();
        assert!(c.installation().push_reg_id.is_some());
        c
    }
}

/// The next event, within 10 seconds.
pub async fn next_event(rx: &mut EventReceiver) -> Event {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("no event within 10 s")
        .expect("event channel")
}

/// Every file under `dir`, concatenated (for "no personal data on disk" checks).
pub fn all_files(dir: &Path) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            out.push_str(&String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()));
            out.push('\n');
        }
    }
    out
}

/// The persisted state file as JSON.
pub fn state_file(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("state.json")).unwrap()).unwrap()
}
