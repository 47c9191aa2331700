//! `roster people find | show | export | erase` against a real `roster serve` (SQLite store),
//! with people made by devices through the mobile API: readable output, `--json` equal to the
//! management API's resource, flags or `ROSTER_SERVER` / `ROSTER_API_KEY`, clear errors with exit
//! status 1, the export file's permissions, and the erase confirmation on a terminal.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::{Output, Stdio};

use serde_json::{Value, json};
use support::process::{Server, StoreSpec, command, create_app};
use tokio::io::AsyncWriteExt;

/// `roster apikey create --scopes SCOPES --json` on the store; the key.
async fn api_key(store: &StoreSpec, scopes: &str) -> String {
    let mut args: Vec<String> = ["apikey", "create", "--scopes", scopes, "--json"]
        .map(String::from)
        .to_vec();
    args.extend(store.args());
    let out = command(&args).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["key"].as_str().unwrap().to_string()
}

/// A mobile API call with the application's code.
async fn mobile(server: &Server, code: &str, method: &str, path: &str, caller: Option<&str>, body: Value) -> Value {
    let http = reqwest::Client::new();
    let mut rb = http
        .request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path}", server.base_url),
        )
        .header("authorization", format!("App {code}"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(c) = caller {
        rb = rb.header("pushregistrationid", c);
    }
    let r = rb.send().await.unwrap();
    assert!(r.status().is_success(), "{method} {path}: {}", r.status());
    r.json().await.unwrap()
}

/// `roster people ARGS` with extra environment; its output.
async fn people(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut all: Vec<String> = vec!["people".into()];
    all.extend(args.iter().map(|a| a.to_string()));
    let mut cmd = command(&all);
    cmd.envs(env.iter().copied());
    cmd.stdin(Stdio::null());
    cmd.output().await.unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success; stdout.
fn ok(o: &Output) -> String {
    assert!(o.status.success(), "failed: {}", stderr(o));
    stdout(o)
}

/// Asserts a clean failure (exit 1, `error: ...` last); stderr.
fn fails(o: &Output) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "should fail with 1: {err}");
    let last = err.trim_end().rsplit('\n').next().unwrap_or_default();
    assert!(last.starts_with("error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[tokio::test]
async fn find_show_export_and_erase_through_a_running_server() {
    let store = StoreSpec::sqlite();
    let code = create_app(&store, "cli people").await;
    let writer = api_key(&store, "people:write").await;
    let reader = api_key(&store, "people:read").await;
    let server = Server::start(&store).await;
    let url = server.base_url.clone();

    // A device logs a user in; another device stays anonymous.
    let token = "cli-token-0123456789abcdef";
    let device = mobile(
        &server,
        &code,
        "POST",
        "/mobile/1/appinstance",
        None,
        json!({"pushServiceType": "Firebase", "pushServiceToken": token, "os": "Android", "osVersion": "14"}),
    )
    .await["pushRegId"]
        .as_str()
        .unwrap()
        .to_string();
    mobile(
        &server,
        &code,
        "POST",
        &format!("/mobile/1/appinstance/{device}/personalize"),
        Some(&device),
        json!({"userIdentity": {"externalUserId": "cli-1", "phones": [{"number": "385911234567"}],
                                "emails": [{"address": "Ana.Horvat@Example.com"}]},
               "userAttributes": {"firstName": "Ana", "lastName": "Horvat", "tags": ["vip"]}}),
    )
    .await;

    // find --json: the API's person resource, by each key.
    let flags = ["--server", url.as_str(), "--api-key", reader.as_str()];
    let by_ext = people(
        &[&["find", "--external-user-id", "cli-1", "--json"][..], &flags].concat(),
        &[],
    )
    .await;
    let person: Value = serde_json::from_str(ok(&by_ext).trim()).unwrap();
    assert_eq!(ok(&by_ext).lines().count(), 1);
    let id = person["id"].as_str().unwrap().to_string();
    assert_eq!(person["externalUserId"], "cli-1");
    assert_eq!(person["installations"][0]["pushRegId"], device);
    assert!(!ok(&by_ext).contains(token), "the token is not shown");
    for key in [
        ["--phone", "+385 91 123 4567"],
        ["--email", "ANA.HORVAT@example.com"],
        ["--push-reg-id", device.as_str()],
    ] {
        let o = people(&[&["find", key[0], key[1], "--json"][..], &flags].concat(), &[]).await;
        let found: Value = serde_json::from_str(ok(&o).trim()).unwrap();
        assert_eq!(found, person, "{key:?}");
    }
    // The server and key from the environment; readable output.
    let env = [("ROSTER_SERVER", url.as_str()), ("ROSTER_API_KEY", reader.as_str())];
    let text = ok(&people(&["show", &id], &env).await);
    assert!(text.starts_with(&format!("Person {id}  CUSTOMER  version ")), "{text}");
    for expected in [
        "externalUserId  cli-1",
        "name            Ana Horvat",
        "385911234567",
        "Ana.Horvat@Example.com",
        "tags            vip",
        "Installations (1):",
        "PUSH REG ID",
        device.as_str(),
        "…89abcdef",
        "Android 14",
    ] {
        assert!(text.contains(expected), "{expected:?} missing in:\n{text}");
    }
    let shown = ok(&people(&["show", &id, "--json"], &env).await);
    assert_eq!(serde_json::from_str::<Value>(shown.trim()).unwrap(), person);

    // Clear errors: unknown, invalid, forbidden, unreachable, usage.
    let err = fails(&people(&[&["find", "--external-user-id", "nobody"][..], &flags].concat(), &[]).await);
    assert!(err.contains("(NOT_FOUND, HTTP 404)"), "{err}");
    let err = fails(&people(&[&["find", "--phone", "12"][..], &flags].concat(), &[]).await);
    assert!(err.contains("BAD_REQUEST, HTTP 400"), "{err}");
    let err = fails(&people(&["show", "not-an-id"], &env).await);
    assert!(err.contains("not a person id"), "{err}");
    let err = fails(&people(&["show", &id, "--server", &url, "--api-key", "rk_wrong"], &[]).await);
    assert!(err.contains("UNAUTHORIZED, HTTP 401"), "{err}");
    let err = fails(&people(&["show", &id, "--server", "http://127.0.0.1:1", "--api-key", "k"], &[]).await);
    assert!(err.contains("cannot reach the server"), "{err}");
    for usage in [
        vec!["find"],
        vec!["find", "--phone", "1", "--email", "a@b.c"],
        vec!["show", &id],
    ] {
        let o = people(&usage, &[]).await;
        assert_eq!(o.status.code(), Some(2), "{usage:?}: {}", stderr(&o));
    }

    // export: stdout, or a file readable by its owner only, with the whole token.
    let doc: Value = serde_json::from_str(ok(&people(&["export", &id], &env).await).trim()).unwrap();
    assert_eq!(doc["format"], "roster.person-export.v1");
    assert_eq!(doc["installations"][0]["pushServiceToken"], token);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ana.json");
    let o = people(&["export", &id, "--out", file.to_str().unwrap()], &env).await;
    assert!(ok(&o).is_empty());
    assert!(stderr(&o).contains("1 installations"), "{}", stderr(&o));
    let written: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(written["person"], doc["person"]);
    assert_eq!(written["installations"], doc["installations"]);
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);

    // erase: refused without --yes off a terminal, refused with a read-only key, then done.
    let err = fails(&people(&["erase", &id], &env).await);
    assert!(err.contains("--yes"), "{err}");
    let err = fails(&people(&["erase", &id, "--yes"], &env).await);
    assert!(err.contains("FORBIDDEN, HTTP 403"), "{err}");
    ok(&people(&["show", &id], &env).await);
    let write_env = [("ROSTER_SERVER", url.as_str()), ("ROSTER_API_KEY", writer.as_str())];
    // On a terminal the answer decides: anything but "yes" keeps the person.
    let o = erase_on_terminal(&id, &write_env, "no\n").await;
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(stdout(&o).contains("Type yes to erase"), "{}", stdout(&o));
    ok(&people(&["show", &id], &env).await);
    let o = erase_on_terminal(&id, &write_env, "yes\n").await;
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(stdout(&o).contains(&format!("Erased person {id}")), "{}", stdout(&o));
    assert!(stdout(&o).contains("installations deleted   1"), "{}", stdout(&o));
    let err = fails(&people(&["show", &id], &env).await);
    assert!(err.contains("NOT_FOUND"), "{err}");
    // --json, and a second erase is 404.
    let err = fails(&people(&["erase", &id, "--yes", "--json"], &write_env).await);
    assert!(err.contains("NOT_FOUND, HTTP 404"), "{err}");
    server.stop().await;
    // The store agrees: no person, no installation left.
    let s = store.snapshot().await;
    assert!(s.persons.is_empty() && s.installations.is_empty(), "{s:?}");
}

/// `roster people erase ID` with a pseudo-terminal as stdin (util-linux `script`), typing
/// `answer`; the terminal's output comes back on stdout.
async fn erase_on_terminal(id: &str, env: &[(&str, &str)], answer: &str) -> Output {
    let inner = format!("{} people erase {id}", support::process::ROSTER);
    let mut cmd = tokio::process::Command::new("script");
    cmd.args(["-qec", &inner, "/dev/null"])
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Let the prompt appear before answering.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    stdin.write_all(answer.as_bytes()).await.unwrap();
    drop(stdin);
    tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("erase on a terminal did not finish")
        .unwrap()
}

#[tokio::test]
async fn erase_json_prints_the_report() {
    let store = StoreSpec::sqlite();
    let code = create_app(&store, "cli erase").await;
    let writer = api_key(&store, "people:write").await;
    let server = Server::start(&store).await;
    let device = mobile(&server, &code, "POST", "/mobile/1/appinstance", None, json!({})).await["pushRegId"]
        .as_str()
        .unwrap()
        .to_string();
    mobile(
        &server,
        &code,
        "POST",
        &format!("/mobile/1/appinstance/{device}/personalize"),
        Some(&device),
        json!({"userIdentity": {"externalUserId": "gone"}}),
    )
    .await;
    let env = [
        ("ROSTER_SERVER", server.base_url.as_str()),
        ("ROSTER_API_KEY", writer.as_str()),
    ];
    let found: Value =
        serde_json::from_str(ok(&people(&["find", "--external-user-id", "gone", "--json"], &env).await).trim())
            .unwrap();
    let id = found["id"].as_str().unwrap();
    let report: Value =
        serde_json::from_str(ok(&people(&["erase", id, "--yes", "--json"], &env).await).trim()).unwrap();
    assert_eq!(report["personId"], id);
    assert_eq!(report["installationsDeleted"], 1);
    assert_eq!(report["mergeEntriesRedacted"], 0);
    assert!(report["erasedAt"].is_string());
    server.stop().await;
}
