//! Segments, segment preview and people search (management-api.md §7.6, §7.4, §4) over HTTP
//! against the real server, on every backend. The people are made by devices through the mobile
//! API; expected answers are computed from a store snapshot with the reference semantics
//! (`Filter::matches`) besides the literal values the scenarios set up. Every scenario ends with
//! the invariant checker (`finish()`).

mod common;

use std::collections::BTreeSet;

use common::{
    NO_FLAGS, Resp, TestServer,
    people_helpers::{personalize_in, register_in_with},
};
use roster_model::filter::Filter;
use roster_model::{Application, Installation};
use roster_store::Snapshot;
use serde_json::{Value, json};
use uuid::Uuid;

/// A key of the test's account with `scopes`; returns the secret.
async fn key(server: &TestServer, scopes: &[&str]) -> String {
    server.api_key(scopes).await
}

async fn api_with(
    server: &TestServer,
    key: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Resp {
    server.api(Some(key), method, path, headers, body.as_ref()).await
}

async fn api(server: &TestServer, key: &str, method: &str, path: &str, body: Option<Value>) -> Resp {
    api_with(server, key, method, path, &[], body).await
}

fn validation(r: &Resp) -> Value {
    r.json()["requestError"]["serviceException"]["validationErrors"].clone()
}

/// The paths named in `validationErrors`.
fn problem_paths(r: &Resp) -> Vec<String> {
    validation(r)
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn is_timestamp(v: &Value) -> bool {
    let Some(s) = v.as_str() else { return false };
    let b = s.as_bytes();
    s.len() == 24 && b[10] == b'T' && b[19] == b'.' && b[23] == b'Z'
}

/// What the scenarios build: two applications and the pushRegIds of the devices.
struct World {
    other: Application,
    /// p1's Android phone (primary, token, app 1).
    p1_phone: String,
    /// p1's iPad (token, not primary, app 1).
    p1_ipad: String,
    /// p1's tablet in the other application.
    p1_other: String,
    /// p2's phone, push disabled (app 1).
    p2_phone: String,
    /// An anonymous iPhone on an old app version (app 1).
    anon_iphone: String,
}

/// Defines the list attribute and registers and personalizes the devices of [`World`]:
/// p1 (`vip`, 120 points, one order), p2 (`beta`, 50 points), an anonymous person, and p3 whose
/// only installation is in the other application.
async fn build_world(server: &TestServer) -> World {
    let admin = key(server, &["admin"]).await;
    api(
        server,
        &admin,
        "POST",
        "/api/v1/attributes",
        Some(json!({"scope": "PERSON", "name": "orders", "type": "LIST_OF_OBJECTS",
                    "objectSchema": [{"name": "sku", "type": "STRING"}, {"name": "price", "type": "DECIMAL"}]})),
    )
    .await;
    let other = server.other_app().await;
    let android = |token: &str, version: &str| {
        json!({"pushServiceType": "Firebase", "pushServiceToken": token, "os": "Android", "osVersion": "14",
               "appVersion": version, "sdkVersion": "15.0.0", "isPrimary": true, "notificationsEnabled": true})
    };
    let p1_phone = server.register(android("fcm-p1-phone", "3.2.1")).await;
    server
        .personalize_ok(
            &p1_phone,
            json!({"userIdentity": {"externalUserId": "p1"},
                   "userAttributes": {"firstName": "Ana", "tags": ["vip"],
                                      "customAttributes": {"points": 120, "orders": [{"sku": "A1", "price": 15}]}}}),
            NO_FLAGS,
        )
        .await;
    common::tick().await;
    let p1_ipad = server
        .register(
            json!({"pushServiceType": "APNS", "pushServiceToken": "aa11bb22", "os": "iOS", "osVersion": "17.4",
                         "appVersion": "3.10.0", "sdkVersion": "12.1.0"}),
        )
        .await;
    server
        .personalize_ok(&p1_ipad, common::ext_identity("p1"), NO_FLAGS)
        .await;
    common::tick().await;
    let p1_other = register_in_with(
        server,
        &other,
        &json!({"pushServiceType": "Firebase", "pushServiceToken": "fcm-p1-other", "os": "Android", "appVersion": "1.0"}),
    )
    .await;
    personalize_in(server, &other, &p1_other, &common::ext_identity("p1"), NO_FLAGS).await;
    common::tick().await;
    let p2_phone = server
        .register(
            json!({"pushServiceType": "Firebase", "pushServiceToken": "fcm-p2", "os": "Android",
                         "appVersion": "3.2", "regEnabled": false, "isPrimary": true}),
        )
        .await;
    server
        .personalize_ok(
            &p2_phone,
            json!({"userIdentity": {"externalUserId": "p2"},
                   "userAttributes": {"firstName": "Ivan", "tags": ["beta"], "customAttributes": {"points": 50}}}),
            NO_FLAGS,
        )
        .await;
    common::tick().await;
    let anon_iphone = server
        .register(
            json!({"pushServiceType": "APNS", "pushServiceToken": "cc33dd44", "os": "iOS", "appVersion": "2.9.5"}),
        )
        .await;
    common::tick().await;
    let p3_other = register_in_with(server, &other, &json!({"os": "Android", "appVersion": "3.3"})).await;
    personalize_in(
        server,
        &other,
        &p3_other,
        &json!({"userIdentity": {"externalUserId": "p3"}, "userAttributes": {"tags": ["vip"]}}),
        NO_FLAGS,
    )
    .await;
    World {
        other,
        p1_phone,
        p1_ipad,
        p1_other,
        p2_phone,
        anon_iphone,
    }
}

/// What the reference semantics say for a preview: (people, installations, deliverable).
fn reference_counts(snap: &Snapshot, filter: &Filter, app: Option<Uuid>, primary_only: bool) -> (u64, u64, u64) {
    let mut people = BTreeSet::new();
    let (mut installations, mut deliverable) = (0, 0);
    for i in snap
        .installations
        .iter()
        .filter(|i| app.is_none_or(|a| i.application_id == a))
    {
        let person = snap.persons.iter().find(|p| p.id == i.person_id).unwrap();
        if filter.matches(person, Some(i)) {
            people.insert(person.id);
            installations += 1;
            if i.is_deliverable() && (!primary_only || i.is_primary) {
                deliverable += 1;
            }
        }
    }
    (people.len() as u64, installations, deliverable)
}

async fn definitions(server: &TestServer) -> Vec<roster_model::AttributeDefinition> {
    server.core().definitions(server.app.account_id, None).await.unwrap()
}

fn counts(r: &Resp) -> (u64, u64, u64) {
    let v = r.json();
    (
        v["people"].as_u64().unwrap(),
        v["installations"].as_u64().unwrap(),
        v["deliverableInstallations"].as_u64().unwrap(),
    )
}

/// Create, read, list (paged by name), change and delete segments; every invalid field at its
/// path at once; a taken name is `409 ALREADY_EXISTS`; refusals change nothing.
async fn segments_crud_and_validation() {
    let server = TestServer::start().await;
    build_world(&server).await;
    let writer = key(&server, &["people:write"]).await;

    let r = api(
        &server,
        &writer,
        "POST",
        "/api/v1/segments",
        Some(
            json!({"name": "VIP on iOS", "description": "loyal", "filter": {"tags": "vip", "installation.os": "iOS"}}),
        ),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let created = r.json();
    let keys: Vec<&str> = created.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["id", "name", "description", "filter", "valid", "createdAt", "updatedAt"]
    );
    assert_eq!(created["filter"], json!({"tags": "vip", "installation.os": "iOS"}));
    assert_eq!(created["valid"], true);
    assert!(is_timestamp(&created["createdAt"]) && is_timestamp(&created["updatedAt"]));
    let id = created["id"].as_str().unwrap().to_string();
    let got = api(&server, &writer, "GET", &format!("/api/v1/segments/{id}"), None)
        .await
        .ok();
    assert_eq!(got.json(), created);

    for name in ["b", "a", "c"] {
        let r = api(
            &server,
            &writer,
            "POST",
            "/api/v1/segments",
            Some(json!({"name": name, "filter": {}})),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text());
        assert!(r.json().get("description").is_none(), "no description: omitted");
    }
    // Paged by name, two at a time.
    let mut names = Vec::new();
    let mut path = "/api/v1/segments?limit=2".to_string();
    loop {
        let page = api(&server, &writer, "GET", &path, None).await.ok().json();
        names.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["name"].as_str().unwrap().to_string()),
        );
        match page["nextCursor"].as_str() {
            Some(c) => path = format!("/api/v1/segments?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(names, ["VIP on iOS", "a", "b", "c"]);

    // Every invalid field at once, each at its path; nothing is created.
    let before = api(&server, &writer, "GET", "/api/v1/segments", None).await.ok().json();
    let r = api(
        &server,
        &writer,
        "POST",
        "/api/v1/segments",
        Some(json!({"name": "", "description": "x".repeat(1001),
                    "filter": {"nope": 1, "tags": {"$gt": "a"}, "installation.appVersion": {"$gte": 3},
                               "orders": {"$elemMatch": {"sku": {"$startsWith": 5}}}, "$or": []}})),
    )
    .await;
    r.assert_error(400, "BAD_REQUEST");
    assert_eq!(
        problem_paths(&r),
        [
            "description",
            "filter.$or",
            "filter.installation.appVersion.$gte",
            "filter.nope",
            "filter.orders.$elemMatch.sku.$startsWith",
            "filter.tags.$gt",
            "name",
        ]
    );
    // A JSON type error and a filter problem together.
    let r = api(
        &server,
        &writer,
        "POST",
        "/api/v1/segments",
        Some(json!({"name": 5, "filter": {"tags": {"$x": 1}}})),
    )
    .await;
    r.assert_error(400, "BAD_REQUEST");
    assert_eq!(problem_paths(&r), ["filter.tags.$x", "name"]);
    let r = api(
        &server,
        &writer,
        "POST",
        "/api/v1/segments",
        Some(json!({"description": "d"})),
    )
    .await;
    assert_eq!(problem_paths(&r), ["filter", "name"]);
    let r = api(
        &server,
        &writer,
        "POST",
        "/api/v1/segments",
        Some(json!({"name": "x", "filter": {"tags": "a\u{0}"}})),
    )
    .await;
    r.assert_error(400, "BAD_REQUEST");
    assert_eq!(problem_paths(&r), ["filter.tags"]);
    let r = api(
        &server,
        &writer,
        "POST",
        "/api/v1/segments",
        Some(json!({"name": "a", "filter": {}})),
    )
    .await;
    r.assert_error(409, "ALREADY_EXISTS");
    let r = api(&server, &writer, "POST", "/api/v1/segments", Some(json!([1]))).await;
    r.assert_error(400, "BAD_REQUEST");
    assert_eq!(
        api(&server, &writer, "GET", "/api/v1/segments", None).await.ok().json(),
        before
    );

    // PATCH: name, description removed with null, a new filter; a taken name is refused.
    common::tick().await;
    let r = api(
        &server,
        &writer,
        "PATCH",
        &format!("/api/v1/segments/{id}"),
        Some(json!({"name": "VIP", "description": null, "filter": {"tags": {"$in": ["vip", "beta"]}}})),
    )
    .await
    .ok();
    let changed = r.json();
    assert_eq!(changed["name"], "VIP");
    assert!(changed.get("description").is_none());
    assert_eq!(changed["filter"], json!({"tags": {"$in": ["vip", "beta"]}}));
    assert_eq!(changed["createdAt"], created["createdAt"]);
    assert!(changed["updatedAt"].as_str() > created["updatedAt"].as_str());
    let r = api(
        &server,
        &writer,
        "PATCH",
        &format!("/api/v1/segments/{id}"),
        Some(json!({"name": "a"})),
    )
    .await;
    r.assert_error(409, "ALREADY_EXISTS");
    let r = api(
        &server,
        &writer,
        "PATCH",
        &format!("/api/v1/segments/{id}"),
        Some(json!({"filter": {"score": 1}, "name": null})),
    )
    .await;
    r.assert_error(400, "BAD_REQUEST");
    assert_eq!(problem_paths(&r), ["filter.score", "name"]);
    let still = api(&server, &writer, "GET", &format!("/api/v1/segments/{id}"), None)
        .await
        .ok();
    assert_eq!(still.json(), changed);

    // Delete; then it is gone. Unknown and malformed ids are 404.
    let r = api(&server, &writer, "DELETE", &format!("/api/v1/segments/{id}"), None).await;
    assert_eq!(r.status, 204);
    for path in [
        format!("/api/v1/segments/{id}"),
        "/api/v1/segments/not-a-uuid".to_string(),
    ] {
        api(&server, &writer, "GET", &path, None)
            .await
            .assert_error(404, "NOT_FOUND");
    }
    api(&server, &writer, "DELETE", &format!("/api/v1/segments/{id}"), None)
        .await
        .assert_error(404, "NOT_FOUND");
    api(
        &server,
        &writer,
        "PATCH",
        &format!("/api/v1/segments/{}", Uuid::new_v4()),
        Some(json!({"name": "z"})),
    )
    .await
    .assert_error(404, "NOT_FOUND");
    server.finish().await;
}

/// Preview: exact counts and the sample (§7.6) for a filter, a saved segment, both (their
/// conjunction) and neither (everything), per application and for all, with and without
/// `targetOnlyPrimaryDevices`; every answer equals the reference semantics over the snapshot.
async fn preview_counts_and_sample() {
    let server = TestServer::start().await;
    let w = build_world(&server).await;
    let reader = key(&server, &["people:read"]).await;
    let writer = key(&server, &["people:write"]).await;
    let snap = server.snapshot().await;
    let defs = definitions(&server).await;
    let app = server.app.clone();
    let person_of = |id: &str| {
        snap.installations
            .iter()
            .find(|i| i.push_reg_id == id)
            .unwrap()
            .person_id
    };
    let p1 = person_of(&w.p1_phone);

    // Literal expectations first: VIP persons' iOS installations (not every device of a VIP).
    let r = api(
        &server,
        &reader,
        "POST",
        "/api/v1/segments/preview",
        Some(json!({"filter": {"tags": "vip", "installation.os": "iOS"}})),
    )
    .await
    .ok();
    let v = r.json();
    assert_eq!(counts(&r), (1, 1, 1));
    assert_eq!(
        v["sample"],
        json!([{"personId": p1, "externalUserId": "p1", "firstName": "Ana", "type": "CUSTOMER", "installations": [w.p1_ipad]}])
    );
    // Every VIP installation of the test application; primary only: the phone.
    let body =
        json!({"filter": {"tags": "vip"}, "applicationCode": app.application_code, "targetOnlyPrimaryDevices": true});
    let r = api(&server, &reader, "POST", "/api/v1/segments/preview", Some(body))
        .await
        .ok();
    let vip = Filter::parse(&json!({"tags": "vip"}), &defs, "filter").unwrap();
    assert_eq!(counts(&r), reference_counts(&snap, &vip, Some(app.id), true));
    assert_eq!((counts(&r).0, counts(&r).1), (1, 2));
    let mut devices: Vec<String> = vec![w.p1_phone.clone(), w.p1_ipad.clone()];
    let created = |id: &String| {
        snap.installations
            .iter()
            .find(|i| &i.push_reg_id == id)
            .unwrap()
            .created_at
    };
    devices.sort_by_key(created);
    assert_eq!(r.json()["sample"][0]["installations"], json!(devices));
    // p3's only device is in the other application: all applications count it.
    let r = api(
        &server,
        &reader,
        "POST",
        "/api/v1/segments/preview",
        Some(json!({"filter": {"tags": "vip"}})),
    )
    .await
    .ok();
    assert_eq!(counts(&r).0, 2);

    // A saved segment, alone and together with a filter.
    let seg = api(
        &server,
        &writer,
        "POST",
        "/api/v1/segments",
        Some(json!({"name": "app 3.x", "filter": {"installation.appVersion": {"$gte": "3"}}})),
    )
    .await
    .json();
    let seg_id = seg["id"].as_str().unwrap();

    // (filter, with the saved segment, application, targetOnlyPrimaryDevices, sampleSize)
    type Case<'a> = (Option<Value>, bool, Option<&'a Application>, bool, Option<u64>);
    let cases: Vec<Case<'_>> = vec![
        (None, false, None, false, None),
        (None, false, Some(&app), true, Some(1)),
        (None, true, None, false, Some(0)),
        (Some(json!({"points": {"$gt": 100}})), true, None, false, None),
        (None, true, Some(&w.other), false, None),
        (
            Some(json!({"$not": {"tags": {"$exists": true}}})),
            false,
            Some(&app),
            false,
            None,
        ),
        (
            Some(json!({"orders": {"$elemMatch": {"price": {"$gt": 10}, "sku": {"$startsWith": "a"}}}})),
            false,
            None,
            false,
            None,
        ),
        (
            Some(json!({"installation.hasPushServiceToken": true, "installation.regEnabled": true})),
            false,
            None,
            true,
            Some(100),
        ),
    ];
    for (n, (filter, with_segment, scope, primary_only, sample_size)) in cases.into_iter().enumerate() {
        let mut body = json!({"targetOnlyPrimaryDevices": primary_only});
        let mut reference = Filter::All;
        if with_segment {
            body["segmentId"] = json!(seg_id);
            reference = reference.and(Filter::parse(&seg["filter"], &defs, "filter").unwrap());
        }
        if let Some(f) = &filter {
            body["filter"] = f.clone();
            reference = reference.and(Filter::parse(f, &defs, "filter").unwrap());
        }
        if let Some(a) = scope {
            body["applicationCode"] = json!(a.application_code);
        }
        if let Some(size) = sample_size {
            body["sampleSize"] = json!(size);
        }
        let r = api(&server, &reader, "POST", "/api/v1/segments/preview", Some(body.clone()))
            .await
            .ok();
        let want = reference_counts(&snap, &reference, scope.map(|a| a.id), primary_only);
        assert_eq!(counts(&r), want, "case {n}: {body}");
        let sample = r.json()["sample"].as_array().unwrap().clone();
        assert_eq!(
            sample.len(),
            (want.0 as usize).min(sample_size.unwrap_or(10) as usize),
            "case {n}"
        );
        let ids: Vec<&str> = sample.iter().map(|s| s["personId"].as_str().unwrap()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted, "sample ordered by person id");
        for s in &sample {
            let person = snap
                .persons
                .iter()
                .find(|p| p.id.to_string() == s["personId"].as_str().unwrap())
                .unwrap();
            for id in s["installations"].as_array().unwrap() {
                let i: &Installation = snap
                    .installations
                    .iter()
                    .find(|i| i.push_reg_id == id.as_str().unwrap())
                    .unwrap();
                assert_eq!(i.person_id, person.id);
                assert!(reference.matches(person, Some(i)), "a sampled installation matches");
            }
        }
    }
    // A segment and a filter together: fewer than the segment alone here (p2 has 50 points).
    let alone = api(
        &server,
        &reader,
        "POST",
        "/api/v1/segments/preview",
        Some(json!({"segmentId": seg_id})),
    )
    .await
    .ok();
    let both = api(
        &server,
        &reader,
        "POST",
        "/api/v1/segments/preview",
        Some(json!({"segmentId": seg_id, "filter": {"points": {"$gt": 100}}})),
    )
    .await
    .ok();
    assert!(
        counts(&both).1 < counts(&alone).1,
        "{} vs {}",
        both.text(),
        alone.text()
    );

    // Refusals: a bad sample size, an unknown application or segment, a malformed segment id.
    let r = api(
        &server,
        &reader,
        "POST",
        "/api/v1/segments/preview",
        Some(json!({"sampleSize": 101, "filter": {"x": 1}})),
    )
    .await;
    r.assert_error(400, "BAD_REQUEST");
    assert_eq!(problem_paths(&r), ["filter.x", "sampleSize"]);
    let r = api(
        &server,
        &reader,
        "POST",
        "/api/v1/segments/preview",
        Some(json!({"segmentId": "nope", "targetOnlyPrimaryDevices": 1})),
    )
    .await;
    assert_eq!(problem_paths(&r), ["segmentId", "targetOnlyPrimaryDevices"]);
    api(
        &server,
        &reader,
        "POST",
        "/api/v1/segments/preview",
        Some(json!({"applicationCode": "0".repeat(64)})),
    )
    .await
    .assert_error(404, "NOT_FOUND");
    api(
        &server,
        &reader,
        "POST",
        "/api/v1/segments/preview",
        Some(json!({"segmentId": Uuid::new_v4()})),
    )
    .await
    .assert_error(404, "NOT_FOUND");
    // The application code is case-insensitive, like the mobile API's.
    let r = api(
        &server,
        &reader,
        "POST",
        "/api/v1/segments/preview",
        Some(json!({"applicationCode": app.application_code.to_uppercase()})),
    )
    .await
    .ok();
    assert_eq!(counts(&r), reference_counts(&snap, &Filter::All, Some(app.id), false));
    let _ = (&w.p1_other, &w.p2_phone, &w.anon_iphone);
    server.finish().await;
}

/// People search: persons by id with cursors bound to the query, every person resource with
/// its installations of all applications; `applicationCode` restricts what `installation.*`
/// conditions look at, and a person without installations in scope is evaluated with them
/// absent (§4.2).
async fn people_search_pages_and_scope() {
    let server = TestServer::start().await;
    let w = build_world(&server).await;
    // A few more persons, so that pages have something to walk.
    for n in 0..5 {
        let id = server
            .register(json!({"pushServiceType": "Firebase", "pushServiceToken": format!("fcm-x{n}"), "os": "Android"}))
            .await;
        server
            .personalize_ok(
                &id,
                json!({"userIdentity": {"externalUserId": format!("x{n}")}, "userAttributes": {"tags": ["bulk"]}}),
                NO_FLAGS,
            )
            .await;
    }
    let reader = key(&server, &["people:read"]).await;
    let snap = server.snapshot().await;
    let defs = definitions(&server).await;

    let search = |filter: Value, app: Option<&Application>, limit: u64, cursor: Option<String>| {
        let mut body = json!({"filter": filter, "limit": limit});
        if let Some(a) = app {
            body["applicationCode"] = json!(a.application_code);
        }
        if let Some(c) = cursor {
            body["cursor"] = json!(c);
        }
        body
    };
    // The reference: persons with a matching pair in scope, or without installations in scope
    // and matching with installation fields absent.
    let expected = |filter: &Value, app: Option<Uuid>| -> Vec<String> {
        let f = Filter::parse(filter, &defs, "filter").unwrap();
        let mut persons: Vec<_> = snap.persons.iter().collect();
        persons.sort_by_key(|p| p.id);
        persons
            .into_iter()
            .filter(|p| {
                let mine: Vec<&Installation> = snap
                    .installations
                    .iter()
                    .filter(|i| i.person_id == p.id && app.is_none_or(|a| i.application_id == a))
                    .collect();
                mine.iter().any(|i| f.matches(p, Some(i))) || (mine.is_empty() && f.matches(p, None))
            })
            .map(|p| p.id.to_string())
            .collect()
    };
    let filters = [
        json!({}),
        json!({"tags": {"$in": ["bulk", "vip"]}}),
        json!({"installation.os": {"$exists": false}}),
        json!({"installation.os": "Android", "installation.appVersion": {"$lt": "3.3"}}),
        json!({"$or": [{"points": {"$gte": 100}}, {"installation.regEnabled": false}]}),
    ];
    for filter in &filters {
        for app in [None, Some(&w.other), Some(&server.app)] {
            let want = expected(filter, app.map(|a| a.id));
            let mut got = Vec::new();
            let mut cursor = None;
            loop {
                let r = api(
                    &server,
                    &reader,
                    "POST",
                    "/api/v1/people/search",
                    Some(search(filter.clone(), app, 2, cursor)),
                )
                .await
                .ok();
                let page = r.json();
                let items = page["items"].as_array().unwrap();
                assert!(items.len() <= 2);
                got.extend(items.iter().map(|p| p["id"].as_str().unwrap().to_string()));
                match page["nextCursor"].as_str() {
                    Some(c) => cursor = Some(c.to_string()),
                    None => break,
                }
            }
            assert_eq!(got, want, "search {filter} in {:?}", app.map(|a| &a.name));
        }
    }
    // Literal: in the other application, p1's and p3's devices are Android and both are VIP.
    let r = api(
        &server,
        &reader,
        "POST",
        "/api/v1/people/search",
        Some(search(
            json!({"installation.os": "Android", "tags": "vip"}),
            Some(&w.other),
            50,
            None,
        )),
    )
    .await
    .ok();
    let items = r.json()["items"].as_array().unwrap().clone();
    let mut exts: Vec<&str> = items.iter().map(|p| p["externalUserId"].as_str().unwrap()).collect();
    exts.sort();
    assert_eq!(exts, ["p1", "p3"]);
    let p1 = items.iter().find(|p| p["externalUserId"] == "p1").unwrap();
    // The person resource with every installation of the account, oldest first.
    let ids: Vec<&str> = p1["installations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["pushRegId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [w.p1_phone.as_str(), w.p1_ipad.as_str(), w.p1_other.as_str()]);
    assert!(
        p1["installations"][0].get("pushServiceToken").is_none(),
        "tokens are never returned"
    );

    // A cursor is bound to its query: another filter or application refuses it; limit may change.
    let first = api(
        &server,
        &reader,
        "POST",
        "/api/v1/people/search",
        Some(search(json!({}), None, 2, None)),
    )
    .await
    .ok()
    .json();
    let cursor = first["nextCursor"].as_str().unwrap().to_string();
    let r = api(
        &server,
        &reader,
        "POST",
        "/api/v1/people/search",
        Some(search(json!({}), None, 3, Some(cursor.clone()))),
    )
    .await;
    assert_eq!(r.status, 200);
    for other in [
        search(json!({"tags": "vip"}), None, 2, Some(cursor.clone())),
        search(json!({}), Some(&w.other), 2, Some(cursor.clone())),
    ] {
        let r = api(&server, &reader, "POST", "/api/v1/people/search", Some(other)).await;
        r.assert_error(400, "BAD_REQUEST");
        assert_eq!(problem_paths(&r), ["cursor"]);
    }
    // Bad requests: no filter, bad limit, invalid filter, unknown application.
    let r = api(
        &server,
        &reader,
        "POST",
        "/api/v1/people/search",
        Some(json!({"limit": 0})),
    )
    .await;
    assert_eq!(problem_paths(&r), ["filter"]);
    let r = api(
        &server,
        &reader,
        "POST",
        "/api/v1/people/search",
        Some(json!({"filter": {}, "limit": 501})),
    )
    .await;
    assert_eq!(problem_paths(&r), ["limit"]);
    let r = api(
        &server,
        &reader,
        "POST",
        "/api/v1/people/search",
        Some(json!({"filter": {"$nope": 1}, "cursor": 5})),
    )
    .await;
    assert_eq!(problem_paths(&r), ["cursor", "filter.$nope"]);
    api(
        &server,
        &reader,
        "POST",
        "/api/v1/people/search",
        Some(json!({"filter": {}, "applicationCode": "x"})),
    )
    .await
    .assert_error(404, "NOT_FOUND");
    let _ = (&w.p2_phone, &w.anon_iphone);
    server.finish().await;
}

/// Scopes (§10): `people:read` reads segments, previews and searches; creating, changing and
/// deleting segments needs `people:write` (or `admin`); `push:send` gets none of it; no key is
/// `401`.
async fn scopes() {
    let server = TestServer::start().await;
    let reader = key(&server, &["people:read"]).await;
    let writer = key(&server, &["people:write"]).await;
    let admin = key(&server, &["admin"]).await;
    let sender = key(&server, &["push:send"]).await;
    let seg = api(
        &server,
        &writer,
        "POST",
        "/api/v1/segments",
        Some(json!({"name": "s", "filter": {}})),
    )
    .await;
    assert_eq!(seg.status, 201);
    let id = seg.json()["id"].as_str().unwrap().to_string();
    let one = format!("/api/v1/segments/{id}");
    let reads: Vec<(&str, &str, Option<Value>)> = vec![
        ("GET", "/api/v1/segments", None),
        ("GET", &one, None),
        ("POST", "/api/v1/segments/preview", Some(json!({}))),
        ("POST", "/api/v1/people/search", Some(json!({"filter": {}}))),
    ];
    for (method, path, body) in &reads {
        for k in [&reader, &writer, &admin] {
            let r = api(&server, k, method, path, body.clone()).await;
            assert_eq!(r.status, 200, "{method} {path}: {}", r.text());
        }
        api(&server, &sender, method, path, body.clone())
            .await
            .assert_error(403, "FORBIDDEN");
        let r = server
            .call_with(
                method,
                path,
                &[],
                None,
                body.as_ref().map(|b| b.to_string().into_bytes()),
            )
            .await;
        r.assert_error(401, "UNAUTHORIZED");
    }
    let writes: Vec<(&str, &str, Option<Value>)> = vec![
        ("POST", "/api/v1/segments", Some(json!({"name": "t", "filter": {}}))),
        ("PATCH", &one, Some(json!({"description": "d"}))),
        ("DELETE", &one, None),
    ];
    for (method, path, body) in &writes {
        for k in [&reader, &sender] {
            let r = api(&server, k, method, path, body.clone()).await;
            r.assert_error(403, "FORBIDDEN");
            assert!(
                r.json()["requestError"]["serviceException"]["text"]
                    .as_str()
                    .unwrap()
                    .contains("people:write")
            );
        }
    }
    // The writes the readers could not do, done by the writer and by an admin.
    assert_eq!(
        api(&server, &writer, "PATCH", &one, Some(json!({"description": "d"})))
            .await
            .status,
        200
    );
    assert_eq!(
        api(
            &server,
            &admin,
            "POST",
            "/api/v1/segments",
            Some(json!({"name": "t", "filter": {}}))
        )
        .await
        .status,
        201
    );
    assert_eq!(api(&server, &admin, "DELETE", &one, None).await.status, 204);
    // Wrong methods answer 405 with the envelope.
    let r = api(&server, &admin, "GET", "/api/v1/segments/preview", None).await;
    r.assert_error(405, "METHOD_NOT_ALLOWED");
    let r = api(&server, &admin, "GET", "/api/v1/people/search", None).await;
    r.assert_error(405, "METHOD_NOT_ALLOWED");
    server.finish().await;
}

/// `POST /api/v1/segments` honours `Idempotency-Key` (§3.3): the same request again gets the
/// stored `201` and creates nothing; preview and search ignore the header.
async fn idempotent_segment_creation() {
    let server = TestServer::start().await;
    let writer = key(&server, &["people:write"]).await;
    let body = json!({"name": "once", "filter": {"tags": "vip"}});
    let headers = [("idempotency-key", "seg-1")];
    let first = api_with(
        &server,
        &writer,
        "POST",
        "/api/v1/segments",
        &headers,
        Some(body.clone()),
    )
    .await;
    assert_eq!(first.status, 201, "{}", first.text());
    let again = api_with(
        &server,
        &writer,
        "POST",
        "/api/v1/segments",
        &headers,
        Some(body.clone()),
    )
    .await;
    assert_eq!(again.status, 201);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.json(), first.json());
    let list = api(&server, &writer, "GET", "/api/v1/segments", None).await.ok().json();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    // Another body with the same key is refused.
    let r = api_with(
        &server,
        &writer,
        "POST",
        "/api/v1/segments",
        &headers,
        Some(json!({"name": "twice", "filter": {}})),
    )
    .await;
    r.assert_error(422, "IDEMPOTENCY_KEY_REUSED");
    // Read-only POSTs ignore the header: no replay marker, fresh answers.
    for (path, body) in [
        ("/api/v1/segments/preview", json!({})),
        ("/api/v1/people/search", json!({"filter": {}})),
    ] {
        for _ in 0..2 {
            let r = api_with(
                &server,
                &writer,
                "POST",
                path,
                &[("idempotency-key", "read-1")],
                Some(body.clone()),
            )
            .await;
            assert_eq!(r.status, 200, "{}", r.text());
            assert!(r.headers.get("idempotent-replayed").is_none());
        }
    }
    server.finish().await;
}

/// A segment whose filter names an attribute that is no longer defined becomes `valid: false`
/// when definitions change (`roster_core::segments::invalidate_segments`, run by the transaction
/// that deletes a definition); previewing it is refused at `segmentId`, and a new filter makes it
/// valid again.
async fn invalid_segments() {
    let server = TestServer::start().await;
    let writer = key(&server, &["people:write"]).await;
    let account_id = server.app.account_id;
    // Saved while an attribute `gone` existed, as a deletion would leave it.
    let now = common::now_ms();
    let stale = roster_store::audience::Segment {
        account_id,
        id: Uuid::new_v4(),
        name: "stale".into(),
        description: None,
        filter: json!({"gone": {"$gt": 1}}),
        valid: true,
        created_at: now,
        updated_at: now,
    };
    let fine = api(
        &server,
        &writer,
        "POST",
        "/api/v1/segments",
        Some(json!({"name": "fine", "filter": {"tags": "x"}})),
    )
    .await;
    assert_eq!(fine.status, 201);
    let mut tx = server.store.begin().await.unwrap();
    tx.insert_segment(&stale).await.unwrap();
    let marked = roster_core::segments::invalidate_segments(tx.as_mut(), account_id)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(marked, 1, "only the segment using the missing attribute");
    let path = format!("/api/v1/segments/{}", stale.id);
    assert_eq!(
        api(&server, &writer, "GET", &path, None).await.ok().json()["valid"],
        false
    );
    let fine_id = fine.json()["id"].as_str().unwrap().to_string();
    let still = api(&server, &writer, "GET", &format!("/api/v1/segments/{fine_id}"), None)
        .await
        .ok();
    assert_eq!(still.json()["valid"], true);
    let r = api(
        &server,
        &writer,
        "POST",
        "/api/v1/segments/preview",
        Some(json!({"segmentId": stale.id})),
    )
    .await;
    r.assert_error(400, "BAD_REQUEST");
    assert_eq!(problem_paths(&r), ["segmentId"]);
    let r = api(
        &server,
        &writer,
        "PATCH",
        &path,
        Some(json!({"filter": {"tags": "vip"}})),
    )
    .await
    .ok();
    assert_eq!(r.json()["valid"], true);
    let r = api(
        &server,
        &writer,
        "POST",
        "/api/v1/segments/preview",
        Some(json!({"segmentId": stale.id})),
    )
    .await;
    assert_eq!(counts(&r.ok()), (0, 0, 0));
    server.finish().await;
}

on_every_backend!(
    segments_crud_and_validation,
    preview_counts_and_sample,
    people_search_pages_and_scope,
    scopes,
    idempotent_segment_creation,
    invalid_segments,
);
