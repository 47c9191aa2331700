//! `roster segment create | list | preview | delete` against a real `roster serve` (SQLite store)
//! with people registered through the mobile API: counts equal to the management API's preview,
//! validation errors naming the filter path, exit status 1 on refusals.

mod support;

use std::process::{Output, Stdio};

use serde_json::{Value, json};
use support::process::{Server, StoreSpec, command, create_app};

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

/// Registers a device and personalizes it with `ext` and `tags`; its pushRegId.
async fn person(server: &Server, code: &str, ext: &str, tags: &[&str], primary: bool) -> String {
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: String, caller: Option<String>, body: Value| {
        let mut rb = http
            .request(method, format!("{}{path}", server.base_url))
            .header("authorization", format!("App {code}"))
            .body(body.to_string());
        if let Some(c) = caller {
            rb = rb.header("pushregistrationid", c);
        }
        rb.send()
    };
    let r = call(
        reqwest::Method::POST,
        "/mobile/1/appinstance".into(),
        None,
        json!({"pushServiceType": "Firebase", "pushServiceToken": format!("tok-{ext}-{primary}"), "isPrimary": primary}),
    )
    .await
    .unwrap();
    let id = r.json::<Value>().await.unwrap()["pushRegId"]
        .as_str()
        .unwrap()
        .to_string();
    let r = call(
        reqwest::Method::POST,
        format!("/mobile/1/appinstance/{id}/personalize"),
        Some(id.clone()),
        json!({"userIdentity": {"externalUserId": ext}, "userAttributes": {"tags": tags}}),
    )
    .await
    .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    id
}

async fn segment(args: &[&str]) -> Output {
    let mut all: Vec<String> = vec!["segment".into()];
    all.extend(args.iter().map(|a| a.to_string()));
    let mut cmd = command(&all);
    cmd.stdin(Stdio::null());
    cmd.output().await.unwrap()
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fails(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "should fail with 1: {err}");
    assert!(err.contains("error: ") && !err.contains("panicked"), "{err}");
    err
}

#[tokio::test]
async fn create_list_preview_and_delete_segments() {
    let store = StoreSpec::sqlite();
    let code = create_app(&store, "cli segments").await;
    let writer = api_key(&store, "people:write").await;
    let reader = api_key(&store, "people:read").await;
    let server = Server::start(&store).await;
    let url = server.base_url.clone();
    person(&server, &code, "vip-1", &["vip"], true).await;
    person(&server, &code, "vip-1", &["vip"], false).await; // a second device of vip-1
    person(&server, &code, "vip-2", &["vip", "beta"], false).await;
    person(&server, &code, "other", &["beta"], true).await;
    let w = ["--server", url.as_str(), "--api-key", writer.as_str()];
    let r = ["--server", url.as_str(), "--api-key", reader.as_str()];

    // Create, with a description; --json is the API's resource.
    let created: Value = serde_json::from_str(
        ok(&segment(
            &[
                &[
                    "create",
                    "--name",
                    "VIPs",
                    "--filter",
                    r#"{"tags":"vip"}"#,
                    "--description",
                    "tagged vip",
                    "--json",
                ][..],
                &w,
            ]
            .concat(),
        )
        .await)
        .trim(),
    )
    .unwrap();
    assert_eq!(created["name"], "VIPs");
    assert_eq!(created["filter"], json!({"tags": "vip"}));
    let id = created["id"].as_str().unwrap().to_string();
    // A read-only key cannot create; an invalid filter names its path; bad JSON is caught here.
    let err = fails(&segment(&[&["create", "--name", "x", "--filter", "{}"][..], &r].concat()).await);
    assert!(err.contains("FORBIDDEN"), "{err}");
    let err = fails(
        &segment(
            &[
                &["create", "--name", "x", "--filter", r#"{"tags":{"$gt":"a"}}"#][..],
                &w,
            ]
            .concat(),
        )
        .await,
    );
    assert!(err.contains("filter.tags.$gt"), "{err}");
    let err = fails(&segment(&[&["create", "--name", "x", "--filter", "{nope"][..], &w].concat()).await);
    assert!(err.contains("--filter is not valid JSON"), "{err}");

    // Preview of the saved segment: 2 people, 3 installations, all deliverable; primary only: 1.
    let preview: Value = serde_json::from_str(
        ok(&segment(&[&["preview", "--segment", id.as_str(), "--json"][..], &r].concat()).await).trim(),
    )
    .unwrap();
    assert_eq!(
        (
            &preview["people"],
            &preview["installations"],
            &preview["deliverableInstallations"]
        ),
        (&json!(2), &json!(3), &json!(3)),
        "{preview}"
    );
    let primary: Value = serde_json::from_str(
        ok(&segment(
            &[
                &["preview", "--segment", id.as_str(), "--primary-only", "--json"][..],
                &r,
            ]
            .concat(),
        )
        .await)
        .trim(),
    )
    .unwrap();
    assert_eq!(primary["deliverableInstallations"], 1);
    // A segment and a filter together: their conjunction; readable output.
    let text = ok(&segment(
        &[
            &[
                "preview",
                "--segment",
                id.as_str(),
                "--filter",
                r#"{"tags":"beta"}"#,
                "--app",
                code.as_str(),
            ][..],
            &r,
        ]
        .concat(),
    )
    .await);
    assert!(text.contains("people") && text.contains("vip-2"), "{text}");
    assert!(!text.contains("vip-1"), "{text}");

    // List, then delete; the list is empty afterwards.
    let list = ok(&segment(&[&["list"][..], &r].concat()).await);
    assert!(list.contains(&id) && list.contains("VIPs"), "{list}");
    ok(&segment(&[&["delete", id.as_str()][..], &w].concat()).await);
    let list: Value = serde_json::from_str(ok(&segment(&[&["list", "--json"][..], &r].concat()).await).trim()).unwrap();
    assert_eq!(list["items"], json!([]));
    let err = fails(&segment(&[&["delete", id.as_str()][..], &w].concat()).await);
    assert!(err.contains("NOT_FOUND"), "{err}");
    server.stop().await;
}
