//! Real headless Chromium for the portal's browser tests, driven over WebDriver (chromedriver,
//! started by the test on an ephemeral port; fantoccini as the client).
//!
//! When Debian's `chromium` or `chromium-driver` is not installed the tests are skipped with a
//! clear line, except under CI (env `CI` set), where that is a failure: `.ci/run` installs both.
//! One browser per test binary: its client belongs to the runtime that started it, so a test
//! file runs all its browser scenarios in one `#[tokio::test]`.

use std::{path::Path, process::Stdio, time::Duration};

use fantoccini::{Client, ClientBuilder, Locator, elements::Element};
use serde_json::json;
use tokio::process::{Child, Command};

/// Where Debian puts the browser (overridable with `ROSTER_CHROMIUM`).
const CHROMIUM: &str = "/usr/bin/chromium";
/// Where Debian puts the driver (overridable with `ROSTER_CHROMEDRIVER`).
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long a wait for an element lasts unless a test says otherwise (fantoccini's default).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);

/// A headless Chromium session and the chromedriver process serving it. Dropping it (also when a
/// test panics) ends the browser: see the `Drop` impl.
pub struct Chrome {
    /// The WebDriver session.
    pub client: Client,
    driver: Child,
    /// chromedriver's port and the session's id, to end the session from `Drop`.
    port: u16,
    session: Option<String>,
    _profile: tempfile::TempDir,
}

impl Chrome {
    /// Starts chromedriver and a fresh headless Chromium; `None` (after printing why) when they
    /// are not installed and `CI` is not set.
    pub async fn start() -> Option<Chrome> {
        let chromium = std::env::var("ROSTER_CHROMIUM").unwrap_or_else(|_| CHROMIUM.into());
        let chromedriver = std::env::var("ROSTER_CHROMEDRIVER").unwrap_or_else(|_| CHROMEDRIVER.into());
        if !Path::new(&chromium).exists() || !Path::new(&chromedriver).exists() {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "portal browser tests need {chromium} and {chromedriver} (Debian packages chromium and \
                     chromium-driver; .ci/run installs them)"
                );
            }
            println!("portal browser tests skipped: chromium/chromedriver not installed");
            return None;
        }
        // An ephemeral port for the driver: bound and released here, taken by chromedriver next.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {chromedriver}: {e}"));
        let url = format!("http://127.0.0.1:{port}");
        let status = reqwest::Client::new();
        let mut ready = false;
        for _ in 0..100 {
            if status.get(format!("{url}/status")).send().await.is_ok() {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ready, "chromedriver did not answer on {url} within 10 s");
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--window-size=1280,1800".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut caps = serde_json::Map::new();
        caps.insert("goog:chromeOptions".into(), json!({"binary": chromium, "args": args}));
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .unwrap_or_else(|e| panic!("cannot open a Chromium session through chromedriver: {e}"));
        let session = client.session_id().await.ok().flatten();
        Some(Chrome {
            client,
            driver,
            port,
            session,
            _profile: profile,
        })
    }

    /// Opens `{base}/portal/people`, is sent to the sign-in form, signs in with `key` and waits
    /// for the people page.
    pub async fn sign_in(&self, base: &str, key: &str) {
        let c = &self.client;
        c.goto(&format!("{base}/portal/people")).await.unwrap();
        let url = c.current_url().await.unwrap();
        assert!(url.path().ends_with("/portal/sign-in"), "not sent to sign-in: {url}");
        self.type_into("#key", key).await;
        self.click("form button[type=submit]").await;
        self.wait_for("#q", DEFAULT_WAIT).await;
    }

    /// Types `text` into the element matching `css` (panics when there is none).
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.client.find(Locator::Css(css)).await.unwrap();
        element.send_keys(text).await.unwrap();
    }

    /// Clicks the element matching `css` (panics when there is none).
    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    /// The text of the element matching `css` (panics when there is none).
    pub async fn text(&self, css: &str) -> String {
        self.client.find(Locator::Css(css)).await.unwrap().text().await.unwrap()
    }

    /// Waits up to `at_most` for an element matching `css` (panics when none appears).
    pub async fn wait_for(&self, css: &str, at_most: Duration) -> Element {
        self.client
            .wait()
            .at_most(at_most)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} within {at_most:?}: {e}"))
    }

    /// Ends the browser session and the driver.
    pub async fn close(self) {
        drop(self);
    }
}

impl Drop for Chrome {
    /// Deletes the WebDriver session, which makes chromedriver quit Chromium, then stops the
    /// driver. Done here with a plain blocking HTTP/1.1 request rather than `Client::close`,
    /// which does nothing while elements still hold clones of the client, and which cannot run
    /// during a panic; killing chromedriver alone would leave Chromium running as an orphan.
    fn drop(&mut self) {
        if let Some(id) = &self.session {
            use std::io::{Read, Write};
            if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let request = format!(
                    "DELETE /session/{id} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    self.port
                );
                if stream.write_all(request.as_bytes()).is_ok() {
                    let mut answer = Vec::new();
                    let _ = stream.read_to_end(&mut answer);
                }
            }
        }
        let _ = self.driver.start_kill();
    }
}
