//! The `roster` binary as scripts use it: run on a temp dir, stdout parsed, a real server started
//! with `roster serve --listen 127.0.0.1:0` and talked to over HTTP.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::Path,
    process::{Child, Command, Output, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::Value;

const ROSTER: &str = env!("CARGO_BIN_EXE_roster");

/// A scratch directory the commands run in (so no ./roster.toml of the developer applies).
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `roster ARGS` in the scratch dir with a clean `ROSTER_*` environment plus `env`.
    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(ROSTER);
        cmd.args(args).current_dir(self.path()).env_remove("RUST_LOG");
        for (k, _) in std::env::vars() {
            if k.starts_with("ROSTER_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env.iter().copied());
        cmd
    }

    fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.command(args, env).output().unwrap()
    }

    /// Runs a command that must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run_with(args, &[]);
        assert!(out.status.success(), "roster {args:?} failed: {}", text(&out.stderr));
        text(&out.stdout)
    }

    /// Runs a `--json` command that must succeed; its one JSON value.
    fn json(&self, args: &[&str]) -> Value {
        let stdout = self.ok(args);
        assert_eq!(stdout.lines().count(), 1, "one JSON line expected: {stdout}");
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
    }

    /// Runs a command that must fail cleanly; its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run_with(args, &[]);
        let stderr = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "roster {args:?} should fail with 1: {stderr}"
        );
        // Logs may come first; the message is the last thing said.
        let last = stderr.trim_end().rsplit('\n').next().unwrap_or_default();
        assert!(last.starts_with("error: "), "{stderr}");
        assert!(
            !stderr.contains("panicked") && !stderr.contains("backtrace"),
            "{stderr}"
        );
        stderr
    }

    /// Starts `roster serve` on a free port with the given extra arguments.
    fn serve(&self, args: &[&str]) -> Serve {
        let mut all = vec!["serve", "--listen", "127.0.0.1:0"];
        all.extend_from_slice(args);
        Serve::start(self.command(&all, &[]))
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A running `roster serve`, killed if the test ends without stopping it.
struct Serve {
    child: Option<Child>,
    addr: String,
    /// Stdout up to and including the `listening on` line.
    banner: String,
    stderr: Arc<Mutex<String>>,
}

impl Serve {
    fn start(mut cmd: Command) -> Serve {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let (err_pipe, sink) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let (tx, rx) = mpsc::channel();
        let out_pipe = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out_pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut serve = Serve {
            child: Some(child),
            addr: String::new(),
            banner: String::new(),
            stderr,
        };
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("no `listening on` line; stderr: {}", serve.stderr()));
            serve.banner.push_str(&line);
            serve.banner.push('\n');
            if let Some(addr) = line.strip_prefix("listening on http://") {
                serve.addr = addr.trim().to_string();
                break;
            }
        }
        // Keep draining stdout so that the server never blocks on a full pipe.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        serve
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// One HTTP/1.1 request over a fresh connection: status and body.
    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
        let mut stream = TcpStream::connect(&self.addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.addr
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        stream.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        let raw = text(&raw);
        let (head, body) = raw
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("bad response {raw}"));
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let body = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
        };
        (status, body)
    }

    /// Sends SIGTERM and expects a clean exit.
    fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        let killed = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(std::time::Instant::now() < deadline, "serve did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(status.success(), "serve exited with {status}: {}", self.stderr());
        assert!(self.stderr().contains("stopped"), "{}", self.stderr());
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn is_timestamp(v: &Value) -> bool {
    // 2025-01-01T00:00:00.000Z
    v.as_str()
        .is_some_and(|s| s.len() == 24 && s.ends_with('Z') && s.as_bytes()[10] == b'T' && s.as_bytes()[19] == b'.')
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

#[test]
fn app_create_json_prints_the_application_resource() {
    let s = Scratch::new();
    let app = s.json(&["app", "create", "--name", "Acme Shop", "--data-dir", "data", "--json"]);
    // management-api.md §7.1
    let code = app["applicationCode"].as_str().unwrap();
    assert!(is_hex64(code), "{code}");
    assert!(uuid::Uuid::parse_str(app["id"].as_str().unwrap()).is_ok());
    assert_eq!(app["name"], "Acme Shop");
    assert_eq!(app["enabled"], true);
    assert_eq!(app["requireJwtForUserData"], false);
    assert_eq!(app["restrictUserDataFromSdk"], false);
    assert_eq!(
        app["providers"],
        serde_json::json!({"apns":{"configured":false},"fcm":{"configured":false},"hms":{"configured":false}})
    );
    assert!(
        is_timestamp(&app["createdAt"]) && is_timestamp(&app["updatedAt"]),
        "{app}"
    );
    assert!(s.path().join("data/roster.db").exists());

    // show by code and by id, list
    let id = app["id"].as_str().unwrap();
    assert_eq!(s.json(&["app", "show", code, "--data-dir", "data", "--json"]), app);
    assert_eq!(s.json(&["app", "show", id, "--data-dir", "data", "--json"]), app);
    let other = s.json(&["app", "create", "--name", "Other", "--data-dir", "data", "--json"]);
    assert_ne!(other["applicationCode"], app["applicationCode"]);
    let list = s.json(&["app", "list", "--data-dir", "data", "--json"]);
    assert_eq!(list["items"], serde_json::json!([app, other]));
    assert_eq!(list["nextCursor"], Value::Null);

    // without --json: readable text naming the code
    let shown = s.ok(&["app", "show", code, "--data-dir", "data"]);
    assert!(shown.contains("Acme Shop") && shown.contains(code), "{shown}");
    let listed = s.ok(&["app", "list", "--data-dir", "data"]);
    assert!(listed.contains(code) && listed.contains("Other"), "{listed}");
}

#[test]
fn app_created_while_serving_is_accepted_at_once() {
    let s = Scratch::new();
    let server = s.serve(&["--data-dir", "data"]);
    assert!(
        server.banner.contains("roster app create --name NAME"),
        "{}",
        server.banner
    );

    let app = s.json(&["app", "create", "--name", "Live", "--data-dir", "data", "--json"]);
    let auth = format!("App {}", app["applicationCode"].as_str().unwrap());
    let (status, installation) = server.request(
        "POST",
        "/mobile/1/appinstance",
        &[("Authorization", auth.as_str())],
        "{}",
    );
    assert_eq!(status, 200, "{installation}");
    let push_reg_id = installation["pushRegId"].as_str().unwrap().to_string();
    assert!(uuid::Uuid::parse_str(&push_reg_id).is_ok());

    // app set reaches the running server at once too (mobile-api.md §2.3).
    let user_path = format!("/mobile/1/appinstance/{push_reg_id}/user");
    let code = app["applicationCode"].as_str().unwrap();
    assert_eq!(
        server
            .request("GET", &user_path, &[("Authorization", auth.as_str())], "")
            .0,
        200
    );
    s.json(&[
        "app",
        "set",
        code,
        "--require-jwt",
        "true",
        "--data-dir",
        "data",
        "--json",
    ]);
    let (status, body) = server.request("GET", &user_path, &[("Authorization", auth.as_str())], "");
    assert_eq!(status, 401);
    assert_eq!(body["requestError"]["serviceException"]["messageId"], "JWT_INVALID");

    s.json(&["app", "set", code, "--enabled", "false", "--data-dir", "data", "--json"]);
    let (status, body) = server.request(
        "POST",
        "/mobile/1/appinstance",
        &[("Authorization", auth.as_str())],
        "{}",
    );
    assert_eq!(status, 401);
    assert_eq!(
        body["requestError"]["serviceException"]["messageId"],
        "INVALID_APPLICATION_CODE"
    );

    server.stop();
}

#[test]
fn jwt_keys_are_created_listed_and_deleted() {
    let s = Scratch::new();
    let app = s.json(&["app", "create", "--name", "J", "--data-dir", "d", "--json"]);
    let code = app["applicationCode"].as_str().unwrap();

    let key = s.json(&[
        "app",
        "jwt-key",
        "create",
        code,
        "--kid",
        "key-2025",
        "--data-dir",
        "d",
        "--json",
    ]);
    assert_eq!(key["kid"], "key-2025");
    assert!(is_timestamp(&key["createdAt"]));
    let secret = STANDARD.decode(key["secret"].as_str().unwrap()).unwrap();
    assert_eq!(secret.len(), 32, "32 random bytes in standard base64");

    let generated = s.json(&["app", "jwt-key", "create", code, "--data-dir", "d", "--json"]);
    let generated_kid = generated["kid"].as_str().unwrap().to_string();
    assert!(!generated_kid.is_empty() && generated_kid != "key-2025");
    assert_ne!(generated["secret"], key["secret"]);

    let taken = s.fails(&["app", "jwt-key", "create", code, "--kid", "key-2025", "--data-dir", "d"]);
    assert!(taken.contains("key-2025"), "{taken}");
    s.fails(&["app", "jwt-key", "create", code, "--kid", "bad kid!", "--data-dir", "d"]);

    let list = s.json(&["app", "jwt-key", "list", code, "--data-dir", "d", "--json"]);
    let mut kids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            assert!(k.get("secret").is_none(), "a list never shows secrets: {k}");
            k["kid"].as_str().unwrap()
        })
        .collect();
    kids.sort();
    let mut expected = vec!["key-2025", generated_kid.as_str()];
    expected.sort();
    assert_eq!(kids, expected);

    s.ok(&["app", "jwt-key", "delete", code, "key-2025", "--data-dir", "d"]);
    let list = s.json(&["app", "jwt-key", "list", code, "--data-dir", "d", "--json"]);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["kid"], generated_kid.as_str());
    s.fails(&["app", "jwt-key", "delete", code, "key-2025", "--data-dir", "d"]);
}

#[test]
fn a_jwt_key_from_the_cli_signs_tokens_the_server_accepts() {
    let s = Scratch::new();
    let server = s.serve(&["--data-dir", "d"]);
    let app = s.json(&["app", "create", "--name", "J", "--data-dir", "d", "--json"]);
    let code = app["applicationCode"].as_str().unwrap();
    s.json(&["app", "set", code, "--require-jwt", "true", "--data-dir", "d", "--json"]);
    let key = s.json(&[
        "app",
        "jwt-key",
        "create",
        code,
        "--kid",
        "k1",
        "--data-dir",
        "d",
        "--json",
    ]);

    let auth = format!("App {code}");
    let (status, installation) = server.request(
        "POST",
        "/mobile/1/appinstance",
        &[("Authorization", auth.as_str())],
        "{}",
    );
    assert_eq!(status, 200, "{installation}");
    let path = format!(
        "/mobile/1/appinstance/{}/personalize",
        installation["pushRegId"].as_str().unwrap()
    );

    // mobile-api.md §2.2: HS256 with the decoded secret bytes, `kid` in the header.
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("k1".into());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims =
        serde_json::json!({"typ":"Bearer","sub":"cust-1","infobip-api-key":code,"iat":now,"exp":now + 600,"jti":"t1"});
    let secret = STANDARD.decode(key["secret"].as_str().unwrap()).unwrap();
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&secret).unwrap(),
    )
    .unwrap();
    let bearer = format!("Bearer {token}");
    let body = r#"{"userIdentity":{"externalUserId":"cust-1"}}"#;

    let (status, user) = server.request("POST", &path, &[("Authorization", bearer.as_str())], body);
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["externalUserId"], "cust-1");

    s.ok(&["app", "jwt-key", "delete", code, "k1", "--data-dir", "d"]);
    let (status, body) = server.request("POST", &path, &[("Authorization", bearer.as_str())], body);
    assert_eq!(status, 401, "a deleted key signs nothing: {body}");
    assert_eq!(body["requestError"]["serviceException"]["messageId"], "JWT_INVALID");
    server.stop();
}

#[test]
fn app_set_changes_the_security_settings() {
    let s = Scratch::new();
    let app = s.json(&["app", "create", "--name", "S", "--data-dir", "d", "--json"]);
    let id = app["id"].as_str().unwrap();
    let set = s.json(&["app", "set", id, "--require-jwt", "true", "--data-dir", "d", "--json"]);
    assert_eq!(set["requireJwtForUserData"], true);
    assert_eq!(set["restrictUserDataFromSdk"], false);
    assert_eq!(set["enabled"], true);
    assert_eq!(set["createdAt"], app["createdAt"]);
    assert!(set["updatedAt"].as_str() >= app["updatedAt"].as_str());
    let shown = s.json(&["app", "show", id, "--data-dir", "d", "--json"]);
    assert_eq!(shown, set);

    let set = s.json(&[
        "app",
        "set",
        id,
        "--require-jwt",
        "false",
        "--restrict-user-data",
        "true",
        "--data-dir",
        "d",
        "--json",
    ]);
    assert_eq!(set["requireJwtForUserData"], false);
    assert_eq!(set["restrictUserDataFromSdk"], true);

    s.fails(&["app", "set", id, "--data-dir", "d"]);
    // Not `true`/`false`: a usage error from clap (status 2), still no panic.
    let out = s.run_with(&["app", "set", id, "--require-jwt", "maybe", "--data-dir", "d"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn apikey_create_prints_the_key_once() {
    let s = Scratch::new();
    let created = s.json(&[
        "apikey",
        "create",
        "--scopes",
        "push:send,people:read",
        "--data-dir",
        "d",
        "--json",
    ]);
    // management-api.md §1.1: rk_ + 43 base64url characters.
    let key = created["key"].as_str().unwrap();
    assert!(key.starts_with("rk_") && key.len() == 46, "{key}");
    assert!(
        key[3..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    );
    assert_eq!(created["keyPrefix"], &key[..10]);
    assert_eq!(created["scopes"], serde_json::json!(["push:send", "people:read"]));
    assert!(!created["name"].as_str().unwrap().is_empty(), "a name is generated");
    assert!(uuid::Uuid::parse_str(created["id"].as_str().unwrap()).is_ok());
    assert!(is_timestamp(&created["createdAt"]));
    assert!(created.get("expiresAt").is_none());

    let named = s.json(&[
        "apikey",
        "create",
        "--name",
        "ci",
        "--scopes",
        "admin",
        "--expires-at",
        "2999-01-01T00:00:00Z",
        "--data-dir",
        "d",
        "--json",
    ]);
    assert_eq!(named["name"], "ci");
    assert_eq!(named["expiresAt"], "2999-01-01T00:00:00.000Z");

    let list = s.json(&["apikey", "list", "--data-dir", "d", "--json"]);
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert!(
        items.iter().all(|k| k.get("key").is_none()),
        "the key is shown only once"
    );
    let listed = s.ok(&["apikey", "list", "--data-dir", "d"]);
    assert!(!listed.contains(key) && listed.contains("ci"), "{listed}");

    s.fails(&["apikey", "create", "--scopes", "root", "--data-dir", "d"]);
    s.fails(&[
        "apikey",
        "create",
        "--scopes",
        "admin",
        "--expires-at",
        "2000-01-01T00:00:00Z",
        "--data-dir",
        "d",
    ]);
}

#[test]
fn config_example_is_a_valid_configuration() {
    let s = Scratch::new();
    let example = s.ok(&["config", "example"]);
    assert_eq!(example.trim_end(), roster_server::settings::EXAMPLE.trim_end());
    std::fs::write(s.path().join("example.toml"), &example).unwrap();
    // Settings::load rejects unknown keys, so this parses every key of the example.
    let out = s.ok(&["migrate", "--config", "example.toml", "--data-dir", "d"]);
    assert!(out.contains("migrated"), "{out}");
}

#[test]
fn settings_precedence_is_file_then_env_then_flags() {
    let s = Scratch::new();
    std::fs::write(s.path().join("roster.toml"), "data_dir = \"from-file\"\n").unwrap();
    let store_of = |args: &[&str], env: &[(&str, &str)]| {
        let out = s.run_with(args, env);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    // ./roster.toml is read by default
    assert!(store_of(&["migrate"], &[]).contains("from-file/roster.db"));
    // ROSTER_* beats the file
    let env = [("ROSTER_DATA_DIR", "from-env")];
    assert!(store_of(&["migrate"], &env).contains("from-env/roster.db"));
    // a flag beats both
    assert!(store_of(&["migrate", "--data-dir", "from-flag"], &env).contains("from-flag/roster.db"));
    // --data-dir also beats a database URL from the environment
    let url_env = [("ROSTER_DATABASE_URL", "sqlite://from-url.db")];
    assert!(store_of(&["migrate"], &url_env).contains("from-url.db"));
    assert!(store_of(&["migrate", "--data-dir", "from-flag"], &url_env).contains("from-flag/roster.db"));
    // --config (and ROSTER_CONFIG) name another file
    std::fs::write(s.path().join("other.toml"), "data_dir = \"from-other\"\n").unwrap();
    assert!(store_of(&["migrate", "--config", "other.toml"], &[]).contains("from-other/roster.db"));
    assert!(store_of(&["migrate"], &[("ROSTER_CONFIG", "other.toml")]).contains("from-other/roster.db"));
}

#[test]
fn unknown_roster_variables_are_warned_about_not_fatal() {
    let s = Scratch::new();
    let out = s.run_with(&["migrate", "--data-dir", "d"], &[("ROSTER_DATA_DIRR", "typo")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("ROSTER_DATA_DIRR"), "{}", text(&out.stderr));
}

#[test]
fn serve_prints_the_admin_key_only_on_the_first_start() {
    let s = Scratch::new();
    let first = s.serve(&["--data-dir", "d"]);
    let key_line = first
        .banner
        .lines()
        .find(|l| l.contains("admin API key: "))
        .unwrap_or_else(|| panic!("no admin key printed: {}", first.banner));
    let key = key_line.split("admin API key: ").nth(1).unwrap().trim().to_string();
    assert!(key.starts_with("rk_") && key.len() == 46, "{key}");
    assert!(first.banner.contains("shown only now"), "{}", first.banner);
    // The portal's address, to open in a browser and sign in with that key.
    assert!(
        first
            .banner
            .contains(&format!("People portal: http://{}/portal", first.addr)),
        "{}",
        first.banner
    );
    first.stop();

    let keys = s.json(&["apikey", "list", "--data-dir", "d", "--json"]);
    assert_eq!(keys["items"].as_array().unwrap().len(), 1);
    assert_eq!(keys["items"][0]["scopes"], serde_json::json!(["admin"]));
    assert_eq!(keys["items"][0]["keyPrefix"], &key[..10]);

    let second = s.serve(&["--data-dir", "d"]);
    assert!(!second.banner.contains("rk_"), "{}", second.banner);
    second.stop();
}

#[test]
fn errors_are_one_message_and_status_1() {
    let s = Scratch::new();
    let no_app = s.fails(&["app", "show", "nope", "--data-dir", "d"]);
    assert!(no_app.contains("nope"), "{no_app}");
    s.fails(&["app", "create", "--name", "", "--data-dir", "d"]);
    let no_account = s.fails(&[
        "app",
        "create",
        "--name",
        "A",
        "--account",
        "00000000-0000-4000-8000-000000000000",
        "--data-dir",
        "d",
    ]);
    assert!(no_account.contains("account"), "{no_account}");
    let no_file = s.fails(&["migrate", "--config", "missing.toml"]);
    assert!(no_file.contains("missing.toml"), "{no_file}");
    s.fails(&["migrate", "--database-url", "mysql://x"]);
    std::fs::write(s.path().join("bad.toml"), "[http]\nlisten = 5\n").unwrap();
    let bad = s.fails(&["migrate", "--config", "bad.toml"]);
    assert!(bad.contains("listen"), "{bad}");
    // the listen address is taken
    let server = s.serve(&["--data-dir", "d"]);
    let taken = s.fails(&["serve", "--listen", &server.addr.clone(), "--data-dir", "d"]);
    assert!(taken.contains("cannot listen"), "{taken}");
    server.stop();
}
