//! The OpenAPI document served at `GET /api/v1/openapi.json` agrees with the real routes, both ways.
//!
//! - Documented → routed: every documented (method, path) is called on the running server with an
//!   admin key and placeholder ids. The server's own `/metrics` then must list a request of that
//!   method on that route template (the label comes from axum's `MatchedPath`, so only a request
//!   that reached a route counts; the `/api/v1` fallback and the mobile dispatcher do not carry
//!   one), and the answer must be neither `405` nor the router's `404 "No such route"`. A
//!   handler's own `404` for a missing resource is fine.
//! - Routed → documented: the real (method, path) set is read from the source at test time: every
//!   `.route("path", get(a).post(b))` call in `src/management/*.rs` (nested under `/api/v1`, except
//!   `push.rs`, which is merged at the root) and in `src/lib.rs` (root). A new file in
//!   `src/management/` is picked up without touching this test. A `.route` whose method router the
//!   small parser does not understand fails the test, naming the file.
//! - The document itself: `openapi: 3.1.x`, unique operationIds, every `$ref` resolves, every
//!   path parameter declared, and every `x-scope` matches the security requirement and what the
//!   server enforces (a key lacking the scope gets `403`, a key with exactly it does not).
//!
//! Runs on SQLite only: routing does not depend on the backend. About 1 s.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::TestServer;
use serde_json::Value;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];
const SCOPES: [&str; 4] = ["people:read", "people:write", "push:send", "admin"];

/// `/api/v1/applications/{app_ref}` → `/api/v1/applications/{}`: parameter names differ between
/// the document (camelCase, as in the spec) and the axum templates (snake_case).
fn shape(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.starts_with('{') && seg.ends_with('}') {
                "{}"
            } else {
                seg
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Source without line comments (so that docs mentioning `.route(` are not read as routes).
fn code_of(source: &str) -> String {
    source
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Skips whitespace from `i`.
fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// From an opening `(` at `i`, the index just after its matching `)`.
fn skip_parens(b: &[u8], mut i: usize) -> usize {
    assert_eq!(b[i], b'(');
    let mut depth = 0;
    loop {
        match b[i] {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
}

/// The (METHOD, path) pairs of the `.route("path", m1(h).m2(h))` calls of one source file.
fn routes_in(file: &str, source: &str, prefix: &str) -> Vec<(String, String)> {
    let code = code_of(source);
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(found) = code[from..].find(".route(") {
        let mut i = skip_ws(b, from + found + ".route(".len());
        assert_eq!(
            b[i], b'"',
            "{file}: a .route( whose path is not a string literal; extend the parser"
        );
        let end = i + 1 + code[i + 1..].find('"').unwrap();
        let path = format!("{prefix}{}", &code[i + 1..end]);
        i = skip_ws(b, end + 1);
        assert_eq!(
            b[i], b',',
            "{file}: unexpected text after the path of .route(\"{path}\""
        );
        loop {
            i = skip_ws(b, i + 1);
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                i += 1;
            }
            let ident = code[start..i].rsplit("::").next().unwrap();
            assert!(
                METHODS.contains(&ident),
                "{file}: .route(\"{path}\", ...) uses `{ident}`, which this test does not understand; extend the parser"
            );
            out.push((ident.to_uppercase(), path.clone()));
            i = skip_ws(b, skip_parens(b, skip_ws(b, i)));
            match b[i] {
                b'.' => continue,
                b',' => {
                    i = skip_ws(b, i + 1);
                    assert_eq!(b[i], b')', "{file}: .route(\"{path}\", ...) has a third argument");
                    break;
                }
                b')' => break,
                other => panic!("{file}: unexpected `{}` in .route(\"{path}\", ...)", other as char),
            }
        }
        from = i;
    }
    out
}

/// The real routes: (METHOD, path shape) → the template as written in the source.
fn real_routes() -> BTreeMap<(String, String), String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![(src.join("lib.rs"), "")];
    for entry in std::fs::read_dir(src.join("management")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let prefix = if path.file_name().unwrap() == "push.rs" {
                ""
            } else {
                "/api/v1"
            };
            files.push((path, prefix));
        }
    }
    let mut out = BTreeMap::new();
    for (file, prefix) in files {
        let source = std::fs::read_to_string(&file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let found = routes_in(&name, &source, prefix);
        // A file whose routes come only through `.merge` (mod.rs) has none of its own; one that
        // builds routes must yield some (every `.route(` is parsed or fails the test above).
        if source.contains("fn routes()") {
            assert!(!found.is_empty(), "{name} has routes() but no .route( was read from it");
        }
        for (method, path) in found {
            out.insert((method, shape(&path)), path);
        }
    }
    out
}

/// The documented operations: (METHOD, path shape) → (path, operation).
fn documented(doc: &Value) -> BTreeMap<(String, String), (String, Value)> {
    let mut out = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            assert!(METHODS.contains(&method.as_str()), "{path}: unexpected member {method}");
            out.insert((method.to_uppercase(), shape(path)), (path.clone(), op.clone()));
        }
    }
    out
}

/// Resolves a local `$ref` (`#/a/b`), JSON-pointer style.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref" {
                    out.push(x.as_str().expect("$ref is a string").to_string());
                } else {
                    collect_refs(x, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

/// The parameters of an operation, `$ref`s resolved.
fn parameters<'a>(doc: &'a Value, op: &'a Value) -> Vec<&'a Value> {
    op["parameters"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| match p.get("$ref") {
                    Some(r) => resolve(doc, r.as_str().unwrap()).unwrap(),
                    None => p,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A concrete URL path: placeholder values for the path parameters.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| match seg {
            "{scope}" => "PERSON".to_string(),
            "{name}" => "noSuchAttribute".to_string(),
            "{kid}" => "no-such-kid".to_string(),
            s if s.starts_with('{') => uuid::Uuid::new_v4().to_string(),
            s => s.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

async fn key(server: &TestServer, scopes: &[&str]) -> String {
    server.api_key(scopes).await
}

async fn call(server: &TestServer, key: &str, method: &str, path: &str) -> common::Resp {
    let auth = format!("App {key}");
    let body = matches!(method, "POST" | "PATCH" | "PUT").then(|| b"{}".to_vec());
    server
        .call_with(method, path, &[("authorization", auth.as_str())], None, body)
        .await
}

/// (route template shape, METHOD) pairs that `/metrics` has counted requests for.
fn metric_routes(text: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for line in text.lines().filter(|l| l.starts_with("roster_http_requests_total{")) {
        let label = |name: &str| {
            let start = line.find(&format!("{name}=\""))? + name.len() + 2;
            let end = start + line[start..].find('"')?;
            Some(line[start..end].to_string())
        };
        if let (Some(route), Some(method)) = (label("route"), label("method")) {
            out.insert((method, shape(&route)));
        }
    }
    out
}

async fn fetch_document(server: &TestServer) -> Value {
    let r = server.call_with("GET", "/api/v1/openapi.json", &[], None, None).await;
    assert_eq!(
        r.status.as_u16(),
        200,
        "the document is served without a key: {}",
        r.text()
    );
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "{:?}",
        r.headers
    );
    serde_json::from_slice(&r.body).expect("the document is JSON")
}

#[tokio::test]
async fn the_document_is_well_formed() {
    let server = TestServer::start().await;
    let doc = fetch_document(&server).await;

    let version = doc["openapi"].as_str().expect("openapi");
    assert!(version.starts_with("3.1."), "openapi is {version}");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let scheme = &doc["components"]["securitySchemes"]["apiKey"];
    assert_eq!(scheme["type"], "apiKey");
    assert_eq!(scheme["in"], "header");
    assert_eq!(scheme["name"], "Authorization");

    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(refs.len() > 100, "only {} $refs", refs.len());
    let broken: BTreeSet<&String> = refs.iter().filter(|r| resolve(&doc, r).is_none()).collect();
    assert!(broken.is_empty(), "unresolved $refs: {broken:?}");

    let ops = documented(&doc);
    let mut ids = BTreeSet::new();
    for ((method, _), (path, op)) in &ops {
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path}: no operationId"));
        assert!(ids.insert(id.to_string()), "operationId {id} is used twice");
        assert!(
            !op["summary"].as_str().unwrap_or("").is_empty(),
            "{method} {path}: no summary"
        );
        assert!(
            op["responses"].as_object().is_some_and(|r| !r.is_empty()),
            "{method} {path}: no responses"
        );

        // Every `{param}` of the template is declared as a required path parameter, and no other.
        let params = parameters(&doc, op);
        let in_template: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        let declared: BTreeSet<&str> = params
            .iter()
            .filter(|p| p["in"] == "path")
            .map(|p| {
                assert_eq!(p["required"], true, "{method} {path}: path parameter not required");
                p["name"].as_str().unwrap()
            })
            .collect();
        assert_eq!(in_template, declared, "{method} {path}: path parameters");

        // The scope: a known one, in `x-scope` and in the security requirement.
        match op.get("x-scope") {
            Some(scope) => {
                let scope = scope.as_str().unwrap();
                assert!(SCOPES.contains(&scope), "{method} {path}: unknown scope {scope}");
                assert_eq!(
                    op["security"],
                    serde_json::json!([{"apiKey": [scope]}]),
                    "{method} {path}"
                );
                for status in ["401", "403"] {
                    assert!(op["responses"].get(status).is_some(), "{method} {path}: no {status}");
                }
            }
            None => assert_eq!(
                op["security"],
                serde_json::json!([]),
                "{method} {path}: unauthenticated"
            ),
        }
        // Error responses use the envelope.
        for (status, response) in op["responses"].as_object().unwrap() {
            if status.starts_with('4') || status.starts_with('5') {
                let response = match response.get("$ref") {
                    Some(r) => resolve(&doc, r.as_str().unwrap()).unwrap(),
                    None => response,
                };
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorEnvelope",
                    "{method} {path}: {status}"
                );
            }
        }
    }
    server.finish().await;
}

#[tokio::test]
async fn every_real_route_is_documented_and_every_documented_route_is_real() {
    let server = TestServer::start().await;
    let doc = fetch_document(&server).await;
    let ops = documented(&doc);

    // Routed → documented (static: the source's `.route` calls).
    let real = real_routes();
    assert!(
        real.len() >= 30,
        "only {} routes read from the source: {real:?}",
        real.len()
    );
    let documented_paths: BTreeSet<&String> = ops.keys().map(|(_, p)| p).collect();
    let mut problems = Vec::new();
    for ((method, shaped), template) in &real {
        if !ops.contains_key(&(method.clone(), shaped.clone())) {
            if documented_paths.contains(shaped) {
                problems.push(format!("undocumented method: {method} {template}"));
            } else {
                problems.push(format!("undocumented route: {method} {template}"));
            }
        }
    }
    for (method, shaped) in ops.keys() {
        if !real.contains_key(&(method.clone(), shaped.clone())) {
            problems.push(format!(
                "documented but not routed in the source: {method} {}",
                ops[&(method.clone(), shaped.clone())].0
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "the document and the routes disagree:\n{}",
        problems.join("\n")
    );

    // Documented → routed (dynamic: the running server).
    let admin = key(&server, &["admin"]).await;
    for ((method, _), (path, _)) in &ops {
        let r = call(&server, &admin, method, &concrete(path)).await;
        assert_ne!(
            r.status.as_u16(),
            405,
            "{method} {path}: method not routed: {}",
            r.text()
        );
        assert!(
            !(r.status.as_u16() == 404 && r.text().contains("No such route")),
            "{method} {path}: no such route: {}",
            r.text()
        );
        assert!(r.status.as_u16() < 500, "{method} {path}: {} {}", r.status, r.text());
    }
    // Read twice: a request is counted after its answer, so the second read includes the first.
    let _ = server.call_with("GET", "/metrics", &[], None, None).await;
    let metrics = server.call_with("GET", "/metrics", &[], None, None).await.text();
    let counted = metric_routes(&metrics);
    let missing: Vec<String> = ops
        .iter()
        .filter(|((method, shaped), _)| !counted.contains(&(method.clone(), shaped.clone())))
        .map(|((method, _), (path, _))| format!("{method} {path}"))
        .collect();
    assert!(
        missing.is_empty(),
        "documented operations that reached no route: {missing:?}\n{metrics}"
    );
    server.finish().await;
}

/// The key a request lacking `scope` is made with: every other scope that does not imply it.
fn lacking(scope: &str) -> Vec<&'static str> {
    match scope {
        "admin" => vec!["people:write", "push:send"],
        "people:write" => vec!["people:read", "push:send"],
        "people:read" => vec!["push:send"],
        "push:send" => vec!["people:write"],
        other => panic!("unknown scope {other}"),
    }
}

#[tokio::test]
async fn every_documented_scope_is_the_one_the_server_enforces() {
    let server = TestServer::start().await;
    let doc = fetch_document(&server).await;
    let mut keys = BTreeMap::new();
    for ((method, _), (path, op)) in documented(&doc) {
        let Some(scope) = op.get("x-scope").and_then(Value::as_str) else {
            continue;
        };
        let url = concrete(&path);
        if !keys.contains_key(scope) {
            keys.insert(
                scope.to_string(),
                (key(&server, &[scope]).await, key(&server, &lacking(scope)).await),
            );
        }
        let (with, without) = &keys[scope];
        let r = call(&server, without, &method, &url).await;
        r.assert_error(403, "FORBIDDEN");
        assert!(
            r.text().contains(scope),
            "{method} {path}: the 403 names {scope}: {}",
            r.text()
        );
        let r = call(&server, with, &method, &url).await;
        assert!(
            !matches!(r.status.as_u16(), 401 | 403),
            "{method} {path}: a key with exactly {scope} is refused: {}",
            r.text()
        );
        // And no key at all: 401.
        let r = server.call_with(&method, &url, &[], None, None).await;
        r.assert_error(401, "UNAUTHORIZED");
    }
    assert_eq!(
        keys.len(),
        4,
        "every scope is used by some operation: {:?}",
        keys.keys()
    );
    server.finish().await;
}
