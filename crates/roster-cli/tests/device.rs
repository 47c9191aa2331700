//! `roster device ...` against a real `roster serve --listen 127.0.0.1:0`, as scripts use it.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use serde_json::Value;

const ROSTER: &str = env!("CARGO_BIN_EXE_roster");

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

/// Runs a command that must succeed; its stdout.
fn ok(dir: &Path, args: &[&str]) -> String {
    let out = command(dir, args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "roster {args:?} failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Runs a `--json` command that must succeed; its one JSON value.
fn json(dir: &Path, args: &[&str]) -> Value {
    let stdout = ok(dir, args);
    assert_eq!(stdout.lines().count(), 1, "one JSON line expected: {stdout}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// A running `roster serve`, killed when dropped.
struct Serve {
    child: Child,
    url: String,
}

impl Serve {
    fn start(dir: &Path) -> Serve {
        let mut child = command(dir, &["serve", "--listen", "127.0.0.1:0", "--data-dir", "data"])
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
        let url = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("no `listening on` line");
            if let Some(addr) = line.strip_prefix("listening on ") {
                break addr.trim().to_string();
            }
        };
        Serve { child, url }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn two_devices_share_a_user_and_the_second_becomes_primary() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let serve = Serve::start(dir);
    let app = json(
        dir,
        &["app", "create", "--name", "Devices", "--data-dir", "data", "--json"],
    );
    let code = app["applicationCode"].as_str().unwrap();

    let a = dir.join("a");
    let b = dir.join("b");
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let inst_a = json(
        dir,
        &[
            "device",
            "--state",
            a,
            "register",
            "--server",
            &serve.url,
            "--app-code",
            code,
            "--json",
        ],
    );
    let id_a = inst_a["pushRegId"].as_str().unwrap().to_string();
    let inst_b = json(
        dir,
        &[
            "device",
            "--state",
            b,
            "register",
            "--server",
            &serve.url,
            "--app-code",
            code,
            "--push-token",
            "0b30557a",
            "--push-type",
            "APNS",
            "--json",
        ],
    );
    let id_b = inst_b["pushRegId"].as_str().unwrap().to_string();
    assert_ne!(id_a, id_b);
    assert_eq!(inst_b["pushServiceType"], "APNS");
    assert!(Path::new(b).join("device.json").exists());

    let user_a = json(
        dir,
        &[
            "device",
            "--state",
            a,
            "personalize",
            "--external-user-id",
            "cust-1",
            "--email",
            "ana@example.com",
            "--json",
        ],
    );
    assert_eq!(user_a["externalUserId"], "cust-1");
    assert_eq!(user_a["emails"][0]["address"], "ana@example.com");
    let user_b = json(
        dir,
        &[
            "device",
            "--state",
            b,
            "personalize",
            "--external-user-id",
            "cust-1",
            "--primary",
            "--json",
        ],
    );
    assert_eq!(user_b["externalUserId"], "cust-1");

    let shown = json(dir, &["device", "--state", b, "show", "--json"]);
    assert_eq!(shown["installation"]["pushRegId"], id_b.as_str());
    assert_eq!(shown["installation"]["isPrimary"], true);
    assert_eq!(shown["user"]["externalUserId"], "cust-1");

    // Both installations belong to the user; only b is primary.
    let list = json(dir, &["device", "--state", a, "installations", "--json"]);
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{list}");
    for item in items {
        assert_eq!(item["isPrimary"], item["pushRegId"] == id_b.as_str(), "{list}");
    }

    // set-user on a, then fetch on b sees it.
    let saved = json(
        dir,
        &[
            "device",
            "--state",
            a,
            "set-user",
            "--first-name",
            "Ana",
            "--tag",
            "vip",
            "--attr",
            "tier=\"gold\"",
            "--json",
        ],
    );
    assert_eq!(saved["firstName"], "Ana");
    let fetched = json(dir, &["device", "--state", b, "fetch", "--json"]);
    assert_eq!(fetched["user"]["firstName"], "Ana");
    assert_eq!(fetched["user"]["tags"], serde_json::json!(["vip"]));
    assert_eq!(fetched["user"]["customAttributes"]["tier"], "gold");

    let sync = json(dir, &["device", "--state", b, "sync", "--json"]);
    assert_eq!(sync["userFields"], serde_json::json!([]), "{sync}");

    let text = ok(dir, &["device", "--state", b, "show"]);
    assert!(text.contains("cust-1"), "{text}");

    let status = json(dir, &["device", "--state", b, "depersonalize", "--json"]);
    assert_eq!(status, serde_json::json!({"status": "Success"}));
    let shown = json(dir, &["device", "--state", b, "show", "--json"]);
    assert!(shown["user"].get("externalUserId").is_none(), "{shown}");

    // b is no longer the user's: only a remains.
    let list = json(dir, &["device", "--state", a, "installations", "--json"]);
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");

    // Remote operations from a on a third device c of the same user.
    let c = dir.join("c");
    let c = c.to_str().unwrap();
    let inst_c = json(
        dir,
        &[
            "device",
            "--state",
            c,
            "register",
            "--server",
            &serve.url,
            "--app-code",
            code,
            "--json",
        ],
    );
    let id_c = inst_c["pushRegId"].as_str().unwrap().to_string();
    json(
        dir,
        &[
            "device",
            "--state",
            c,
            "personalize",
            "--external-user-id",
            "cust-1",
            "--json",
        ],
    );
    let set = json(dir, &["device", "--state", a, "set-primary", &id_c, "--json"]);
    assert_eq!(set["status"], "Reported");
    let list = json(dir, &["device", "--state", a, "installations", "--json"]);
    let primary: Vec<&Value> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["isPrimary"] == true)
        .map(|i| &i["pushRegId"])
        .collect();
    assert_eq!(primary, vec![&Value::from(id_c.as_str())], "{list}");
    let out = json(dir, &["device", "--state", a, "logout", &id_c, "--json"]);
    assert_eq!(out["status"], "Success");
    let list = json(dir, &["device", "--state", a, "installations", "--json"]);
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["items"][0]["pushRegId"], id_a.as_str());
}

#[test]
fn commands_without_register_fail_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let out = command(tmp.path(), &["device", "--state", "nowhere", "show"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("register"), "{stderr}");
}
