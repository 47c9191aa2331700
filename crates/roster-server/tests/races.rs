//! Management deletions racing the writes that depend on what they delete, over HTTP on every
//! backend (real concurrency on PostgreSQL; SQLite's single writer serialises them, so there the
//! scenarios check the same outcomes without a race to lose):
//!
//! - `DELETE /api/v1/attributes/PERSON/{name}` against person writes of that attribute: no value
//!   may outlive its definition (people.md §11, invariant 14);
//! - `DELETE /api/v1/applications/{appRef}` against registrations of that application: each is
//!   either registered before the deletion (and deleted with it) or refused as an unknown
//!   application (`401 INVALID_APPLICATION_CODE`), never a server fault.

mod common;

use common::TestServer;
use futures::future::join_all;
use serde_json::{Value, json};

/// Rounds of each race: enough to lose it on PostgreSQL without the locks (see
/// docs/decisions.md, "Deletions racing writes").
const ROUNDS: usize = 25;

async fn key(server: &TestServer, scopes: &[&str]) -> String {
    server.api_key(scopes).await
}

async fn api(server: &TestServer, key: &str, method: &str, path: &str, body: Option<Value>) -> common::Resp {
    server.api(Some(key), method, path, &[], body.as_ref()).await
}

/// Person writes of a custom attribute racing the deletion of its definition: every write
/// succeeds (before the deletion it stores a value that the deletion then removes; after it, the
/// value defines the name anew, people.md §8.2), the deletion succeeds, and no stored value is
/// left without a definition.
async fn attribute_deletion_racing_person_writes() {
    let server = TestServer::start_with(|s| s.delivery.enabled = false).await;
    let admin = key(&server, &["admin"]).await;
    let writer = key(&server, &["people:write"]).await;
    let mut installations = Vec::new();
    for i in 0..8 {
        installations.push(server.register_personalized(&format!("racer-{i}")).await);
    }
    let snapshot = server.snapshot().await;
    let persons: Vec<String> = installations
        .iter()
        .map(|id| common::people_helpers::person_of(&snapshot, id).id.to_string())
        .collect();
    for round in 0..ROUNDS {
        let name = format!("race{round}");
        let defined = api(
            &server,
            &admin,
            "POST",
            "/api/v1/attributes",
            Some(json!({"scope": "PERSON", "name": name, "type": "DECIMAL"})),
        )
        .await;
        assert_eq!(defined.status, 201, "{}", defined.text());
        // Half the writes through the management API, half through the mobile API.
        let writes = join_all(
            persons
                .iter()
                .zip(&installations)
                .enumerate()
                .map(|(i, (person, inst))| {
                    let body = json!({"customAttributes": {name.clone(): round}});
                    let server = &server;
                    let writer = &writer;
                    async move {
                        if i % 2 == 0 {
                            api(server, writer, "PATCH", &format!("/api/v1/people/{person}"), Some(body)).await
                        } else {
                            server
                                .call("PATCH", &common::user_path(inst), Some(inst), Some(&body))
                                .await
                        }
                    }
                }),
        );
        let definition_path = format!("/api/v1/attributes/PERSON/{name}");
        let deletion = api(&server, &admin, "DELETE", &definition_path, None);
        let (answers, deleted) = tokio::join!(writes, deletion);
        assert_eq!(deleted.status, 204, "{}", deleted.text());
        for r in &answers {
            assert_eq!(r.status, 200, "round {round}: {}", r.text());
        }
        let s = server.snapshot().await;
        let violations = roster_core::invariants::check(&s);
        assert!(violations.is_empty(), "round {round}:\n{}", violations.join("\n"));
    }
    server.finish().await;
}

/// Merges racing the deletion of an attribute definition (people.md §5: personalizing an
/// anonymous installation as a known person moves its person's custom attributes onto that
/// person): after both, no person holds a value of the deleted definition.
async fn attribute_deletion_racing_merges() {
    let server = TestServer::start_with(|s| s.delivery.enabled = false).await;
    let admin = key(&server, &["admin"]).await;
    for round in 0..ROUNDS {
        let name = format!("merged{round}");
        let defined = api(
            &server,
            &admin,
            "POST",
            "/api/v1/attributes",
            Some(json!({"scope": "PERSON", "name": name, "type": "DECIMAL"})),
        )
        .await;
        assert_eq!(defined.status, 201, "{}", defined.text());
        // Eight anonymous persons holding the attribute, each to be merged into a known person.
        let mut sources = Vec::new();
        for i in 0..8 {
            server.register_personalized(&format!("target-{round}-{i}")).await;
            let source = server.register_android().await;
            server
                .call(
                    "PATCH",
                    &common::user_path(&source),
                    Some(&source),
                    Some(&json!({"customAttributes": {name.clone(): i}})),
                )
                .await
                .ok();
            sources.push((source, format!("target-{round}-{i}")));
        }
        let merges = join_all(sources.iter().map(|(source, target)| {
            let server = &server;
            async move {
                server
                    .personalize(source, common::ext_identity(target), common::NO_FLAGS)
                    .await
            }
        }));
        let definition_path = format!("/api/v1/attributes/PERSON/{name}");
        let deletion = api(&server, &admin, "DELETE", &definition_path, None);
        let (answers, deleted) = tokio::join!(merges, deletion);
        assert_eq!(deleted.status, 204, "{}", deleted.text());
        for r in &answers {
            assert_eq!(r.status, 200, "round {round}: {}", r.text());
        }
        let violations = roster_core::invariants::check(&server.snapshot().await);
        assert!(violations.is_empty(), "round {round}:\n{}", violations.join("\n"));
    }
    server.finish().await;
}

/// Registrations racing the deletion of their application: `200` (registered first, then deleted
/// with the application) or `401 INVALID_APPLICATION_CODE`, never a `500`; none of the
/// application's installations is left.
async fn registrations_racing_application_deletion() {
    let server = TestServer::start_with(|s| s.delivery.enabled = false).await;
    let admin = key(&server, &["admin"]).await;
    for round in 0..ROUNDS {
        let doomed = server
            .core()
            .create_application(server.app.account_id, &format!("doomed-{round}"))
            .await
            .unwrap();
        let auth = format!("App {}", doomed.application_code);
        let registrations = join_all((0..8).map(|_| {
            let body = json!({"pushServiceType": "Firebase", "pushServiceToken": uuid::Uuid::new_v4().to_string()});
            let (server, auth) = (&server, &auth);
            async move {
                server
                    .call_with(
                        "POST",
                        "/mobile/1/appinstance",
                        &[("authorization", auth)],
                        None,
                        Some(body.to_string().into_bytes()),
                    )
                    .await
            }
        }));
        let app_path = format!("/api/v1/applications/{}", doomed.id);
        let deletion = api(&server, &admin, "DELETE", &app_path, None);
        let (answers, deleted) = tokio::join!(registrations, deletion);
        assert_eq!(deleted.status, 204, "{}", deleted.text());
        for r in &answers {
            match r.status.as_u16() {
                200 => {}
                401 => assert_eq!(r.code(), "INVALID_APPLICATION_CODE", "{}", r.text()),
                other => panic!("round {round}: {other} {}", r.text()),
            }
        }
        let s = server.snapshot().await;
        assert!(s.installations.iter().all(|i| i.application_id != doomed.id));
    }
    server.finish().await;
}

on_every_backend!(multi_thread:
    attribute_deletion_racing_person_writes,
    attribute_deletion_racing_merges,
    registrations_racing_application_deletion,
);
