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
        Serve::start_on(dir, "127.0.0.1:0")
    }

    /// `roster serve` on `listen` over the store in `dir/data`.
    fn start_on(dir: &Path, listen: &str) -> Serve {
        let mut child = command(dir, &["serve", "--listen", listen, "--data-dir", "data"])
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

    /// Kills the server (as a crash or an outage would).
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.url.clone()
    }

    /// Starts the server again on the same address and store, once the port is free.
    fn restart(dir: &Path, url: &str) -> Serve {
        let addr = url.strip_prefix("http://").expect("an http URL");
        for _ in 0..50 {
            if std::net::TcpListener::bind(addr).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let serve = Serve::start_on(dir, addr);
        assert_eq!(serve.url, url);
        serve
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

/// Runs a command that must fail with exit status 1; its stdout and stderr.
fn fails(dir: &Path, args: &[&str]) -> (String, String) {
    let out = command(dir, args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "roster {args:?} should fail: {stdout}{stderr}"
    );
    assert!(stderr.starts_with("error: "), "one clear message on stderr: {stderr}");
    (stdout, stderr)
}

/// A server with one application; the application code.
fn serve_with_app(dir: &Path) -> (Serve, String) {
    let serve = Serve::start(dir);
    let app = json(
        dir,
        &["app", "create", "--name", "Devices", "--data-dir", "data", "--json"],
    );
    (serve, app["applicationCode"].as_str().unwrap().to_string())
}

/// `roster device --state STATE register --server URL --app-code CODE [extra] --json`.
fn register(dir: &Path, state: &str, url: &str, code: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "device",
        "--state",
        state,
        "register",
        "--server",
        url,
        "--app-code",
        code,
    ];
    args.extend_from_slice(extra);
    args.push("--json");
    json(dir, &args)
}

/// The arguments of `roster device --state STATE <args>`.
fn device<'a>(state: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    ["device", "--state", state]
        .into_iter()
        .chain(args.iter().copied())
        .collect()
}

/// The pushRegIds of the `instances` of a user JSON.
fn instance_ids(user: &Value) -> Vec<String> {
    let mut ids: Vec<String> = user["instances"]
        .as_array()
        .unwrap_or_else(|| panic!("instances in {user}"))
        .iter()
        .map(|i| i["pushRegId"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[test]
fn personalize_by_phone_and_email_with_keep_as_lead_primary_and_force() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (serve, code) = serve_with_app(dir);
    let a = dir.join("a");
    let b = dir.join("b");
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let id_a = register(dir, a, &serve.url, &code, &[])["pushRegId"]
        .as_str()
        .unwrap()
        .to_string();
    let id_b = register(
        dir,
        b,
        &serve.url,
        &code,
        &["--push-token", "fcm-b", "--push-type", "Firebase"],
    )["pushRegId"]
        .as_str()
        .unwrap()
        .to_string();

    // By phone and email only, kept a LEAD; the phone comes back normalised.
    let user = json(
        dir,
        &device(
            a,
            &[
                "personalize",
                "--phone",
                "+385 91 123 4567",
                "--email",
                "Ana@Example.com",
                "--keep-as-lead",
                "--json",
            ],
        ),
    );
    assert_eq!(
        user["phones"],
        serde_json::json!([{"number": "385911234567"}]),
        "{user}"
    );
    assert_eq!(
        user["emails"],
        serde_json::json!([{"address": "Ana@Example.com"}]),
        "{user}"
    );
    assert_eq!(user["type"], "LEAD", "{user}");
    assert!(user.get("externalUserId").is_none(), "{user}");
    assert_eq!(instance_ids(&user), vec![id_a.clone()]);

    // b finds the same person by the email (another case), gives it an externalUserId and
    // becomes its primary installation; without --keep-as-lead the person is a CUSTOMER.
    let user = json(
        dir,
        &device(
            b,
            &[
                "personalize",
                "--external-user-id",
                "cust-7",
                "--email",
                "ana@example.com",
                "--primary",
                "--json",
            ],
        ),
    );
    assert_eq!(user["externalUserId"], "cust-7", "{user}");
    assert_eq!(user["type"], "CUSTOMER", "{user}");
    let mut both = vec![id_a.clone(), id_b.clone()];
    both.sort();
    assert_eq!(instance_ids(&user), both);
    let shown = json(dir, &device(b, &["show", "--json"]));
    assert_eq!(shown["installation"]["isPrimary"], true, "{shown}");
    assert_eq!(shown["installation"]["pushServiceToken"], "fcm-b", "{shown}");
    // a sees the change after a fetch.
    let fetched = json(dir, &device(a, &["fetch", "--json"]));
    assert_eq!(fetched["user"]["externalUserId"], "cust-7", "{fetched}");
    assert_eq!(fetched["installation"]["isPrimary"], false, "{fetched}");

    // Another user without --force: the server's refusal, clearly, and nothing printed on stdout.
    let (stdout, stderr) = fails(
        dir,
        &device(a, &["personalize", "--external-user-id", "cust-8", "--json"]),
    );
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("409 PERSONALIZATION_IMPOSSIBLE"), "{stderr}");
    // With --force and --primary: a leaves cust-7 and is cust-8's primary installation.
    let user = json(
        dir,
        &device(
            a,
            &[
                "personalize",
                "--external-user-id",
                "cust-8",
                "--force",
                "--primary",
                "--json",
            ],
        ),
    );
    assert_eq!(user["externalUserId"], "cust-8", "{user}");
    assert_eq!(instance_ids(&user), vec![id_a.clone()]);
    assert_eq!(user["instances"][0]["isPrimary"], true, "{user}");
    let shown = json(dir, &device(a, &["show", "--json"]));
    assert_eq!(shown["installation"]["isPrimary"], true, "{shown}");
    assert_eq!(shown["user"]["externalUserId"], "cust-8", "{shown}");
    // cust-7 keeps only b.
    let list = json(dir, &device(b, &["installations", "--json"]));
    let items: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["pushRegId"].as_str().unwrap())
        .collect();
    assert_eq!(items, vec![id_b.as_str()], "{list}");

    // An identity key of another person under a new externalUserId: the server's conflict code.
    let (_, stderr) = fails(
        dir,
        &device(
            b,
            &[
                "personalize",
                "--external-user-id",
                "cust-9",
                "--email",
                "ana@example.com",
                "--force",
            ],
        ),
    );
    assert!(stderr.contains("409 USER_MERGE_INTERRUPTED"), "{stderr}");
    // No identity at all is refused before anything is sent.
    let (_, stderr) = fails(dir, &device(b, &["personalize", "--json"]));
    assert!(stderr.contains("--external-user-id, --phone or --email"), "{stderr}");
    // A malformed phone is refused locally, naming the field.
    let (_, stderr) = fails(dir, &device(b, &["personalize", "--phone", "12"]));
    assert!(stderr.contains("phones[0].number"), "{stderr}");
    let shown = json(dir, &device(b, &["show", "--json"]));
    assert_eq!(shown["user"]["externalUserId"], "cust-7", "nothing changed: {shown}");
}

#[test]
fn offline_changes_are_queued_shown_as_pending_and_synced_later() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (serve, code) = serve_with_app(dir);
    let a = dir.join("a");
    let b = dir.join("b");
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    register(dir, a, &serve.url, &code, &[]);
    register(dir, b, &serve.url, &code, &[]);
    json(
        dir,
        &device(a, &["personalize", "--external-user-id", "off-1", "--json"]),
    );
    let shown = json(dir, &device(a, &["show", "--json"]));
    assert_eq!(
        shown["pending"],
        serde_json::json!({"userFields": [], "installationFields": [],
            "depersonalizePending": false, "registrationPending": false}),
        "{shown}"
    );
    assert!(ok(dir, &device(a, &["show"])).contains("pending\n  nothing"));

    // The server goes away: a change is kept, and `show` says it is not reported yet.
    let url = serve.stop();
    let queued = json(
        dir,
        &device(a, &["set-user", "--first-name", "Ana", "--tag", "vip", "--json"]),
    );
    assert_eq!(queued["status"], "Queued", "{queued}");
    assert!(queued["reason"].as_str().unwrap().contains("network error"), "{queued}");
    let shown = json(dir, &device(a, &["show", "--json"]));
    assert_eq!(shown["user"]["firstName"], "Ana", "the local view has it: {shown}");
    assert_eq!(shown["user"]["tags"], serde_json::json!(["vip"]), "{shown}");
    assert_eq!(
        shown["pending"]["userFields"],
        serde_json::json!(["firstName", "tags"]),
        "{shown}"
    );
    let text = ok(dir, &device(a, &["show"]));
    assert!(
        text.contains("user fields") && text.contains("firstName, tags"),
        "{text}"
    );
    // `sync` cannot deliver it: it says what is pending and fails.
    let out = command(dir, &device(a, &["sync", "--json"])).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let pending: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pending["userFields"], serde_json::json!(["firstName", "tags"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the sync pass stopped") && stderr.contains("network error"),
        "{stderr}"
    );

    // Back online: `sync` delivers it, and b sees it.
    let serve = Serve::restart(dir, &url);
    let pending = json(dir, &device(a, &["sync", "--json"]));
    assert_eq!(pending["userFields"], serde_json::json!([]), "{pending}");
    let shown = json(dir, &device(a, &["show", "--json"]));
    assert_eq!(shown["pending"]["userFields"], serde_json::json!([]), "{shown}");
    let user = json(
        dir,
        &device(b, &["personalize", "--external-user-id", "off-1", "--json"]),
    );
    assert_eq!(user["firstName"], "Ana", "{user}");
    assert_eq!(user["tags"], serde_json::json!(["vip"]), "{user}");
    assert_eq!(instance_ids(&user).len(), 2, "{user}");

    // Offline again: the logout is Pending, the local user is wiped at once.
    let url = serve.stop();
    let status = json(dir, &device(a, &["depersonalize", "--json"]));
    assert_eq!(status, serde_json::json!({"status": "Pending"}));
    let shown = json(dir, &device(a, &["show", "--json"]));
    assert!(shown["user"].get("externalUserId").is_none(), "{shown}");
    assert_eq!(shown["pending"]["depersonalizePending"], true, "{shown}");
    // Calls that would act as the old user are refused while the logout is pending.
    let (_, stderr) = fails(dir, &device(a, &["set-user", "--first-name", "X"]));
    assert!(stderr.contains("depersonalization is pending"), "{stderr}");

    // Back online: `sync` completes the logout.
    let _serve = Serve::restart(dir, &url);
    let pending = json(dir, &device(a, &["sync", "--json"]));
    assert_eq!(pending["depersonalizePending"], false, "{pending}");
    let fetched = json(dir, &device(a, &["fetch", "--json"]));
    assert!(fetched["user"].get("externalUserId").is_none(), "{fetched}");
    assert_eq!(fetched["user"]["type"], "LEAD", "{fetched}");
    let list = json(dir, &device(b, &["installations", "--json"]));
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        1,
        "only b is off-1's now: {list}"
    );
    let user = json(dir, &device(b, &["fetch", "--json"]));
    assert_eq!(
        user["user"]["firstName"], "Ana",
        "the server kept the person's data: {user}"
    );
}

#[test]
fn errors_print_one_clear_message_and_exit_non_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (serve, code) = serve_with_app(dir);
    let a = dir.join("a");
    let a = a.to_str().unwrap();

    // An unknown state directory, for every command that needs a registration.
    for args in [
        vec!["personalize", "--external-user-id", "x"],
        vec!["depersonalize", "--json"],
        vec!["sync"],
        vec!["fetch", "--json"],
    ] {
        let mut full = vec!["device", "--state", "nowhere"];
        full.extend(args);
        let (_, stderr) = fails(dir, &full);
        assert!(
            stderr.contains("run `roster device --state nowhere register` first"),
            "{stderr}"
        );
    }
    assert!(!dir.join("nowhere").exists(), "nothing is created by a failed command");

    // The server answers the registration with an error: the code is shown, nothing is kept.
    let (_, stderr) = fails(
        dir,
        &[
            "device",
            "--state",
            a,
            "register",
            "--server",
            &serve.url,
            "--app-code",
            "0000000000",
            "--json",
        ],
    );
    assert!(stderr.contains("registration failed"), "{stderr}");
    assert!(stderr.contains("401 INVALID_APPLICATION_CODE"), "{stderr}");
    assert!(!Path::new(a).join("device.json").exists());
    // An unreachable server.
    let (_, stderr) = fails(
        dir,
        &[
            "device",
            "--state",
            a,
            "register",
            "--server",
            "http://127.0.0.1:9",
            "--app-code",
            &code,
        ],
    );
    assert!(
        stderr.contains("registration failed") && stderr.contains("network error"),
        "{stderr}"
    );
    // Bad flags.
    let (_, stderr) = fails(
        dir,
        &[
            "device",
            "--state",
            a,
            "register",
            "--server",
            &serve.url,
            "--app-code",
            &code,
            "--push-token",
            "t",
            "--push-type",
            "Pigeon",
        ],
    );
    assert!(stderr.contains("unknown push type \"Pigeon\""), "{stderr}");
    let (_, stderr) = fails(
        dir,
        &[
            "device",
            "--state",
            a,
            "register",
            "--server",
            "not a url",
            "--app-code",
            &code,
        ],
    );
    assert!(stderr.contains("invalid server URL"), "{stderr}");

    // Registered now; the server refuses operations on installations of other persons.
    let id_a = register(dir, a, &serve.url, &code, &[])["pushRegId"]
        .as_str()
        .unwrap()
        .to_string();
    let b = dir.join("b");
    let b = b.to_str().unwrap();
    let id_b = register(dir, b, &serve.url, &code, &[])["pushRegId"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, stderr) = fails(dir, &["device", "--state", a, "set-primary", &id_b]);
    assert!(stderr.contains("403 FORBIDDEN_INSTALLATION"), "{stderr}");
    let (_, stderr) = fails(dir, &["device", "--state", a, "logout", &id_b, "--json"]);
    assert!(stderr.contains("403 FORBIDDEN_INSTALLATION"), "{stderr}");
    let (_, stderr) = fails(dir, &["device", "--state", a, "logout", &id_a]);
    assert!(stderr.contains("use depersonalize"), "{stderr}");
    // A value the server rejects: the code, and the change is not kept.
    let user = json(dir, &["device", "--state", a, "set-user", "--attr", "n=3", "--json"]);
    assert_eq!(user["customAttributes"], serde_json::json!({"n": 3}), "{user}");
    let (_, stderr) = fails(dir, &["device", "--state", a, "set-user", "--attr", "n=\"three\""]);
    assert!(stderr.contains("400 REQUEST_FORMAT_INVALID"), "{stderr}");
    let shown = json(dir, &["device", "--state", a, "show", "--json"]);
    assert_eq!(
        shown["user"]["customAttributes"],
        serde_json::json!({"n": 3}),
        "{shown}"
    );
    assert_eq!(shown["pending"]["userFields"], serde_json::json!([]), "{shown}");
    // A damaged device.json.
    std::fs::write(Path::new(a).join("device.json"), "{").unwrap();
    let (_, stderr) = fails(dir, &["device", "--state", a, "show"]);
    assert!(stderr.contains("device.json is malformed"), "{stderr}");
}
