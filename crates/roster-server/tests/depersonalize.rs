//! Depersonalize over HTTP (people.md §7, mobile-api.md §5.10): own logout, the anonymous
//! no-op, remote logout and its refusals, body handling, and invariant 17 of people.md §11.
mod common;

use common::{
    Resp, TestServer,
    client_helpers::{Device, assert_api, is_primary_in, options},
    ext_identity,
    people_helpers::*,
    tick,
};
use roster_client::{ErrorCode, SuccessPending, UserAttributes, UserIdentity};
use roster_model::PersonType;
use roster_store::Snapshot;
use serde_json::json;

/// Asserts a `200` with an empty body (mobile-api.md §5.10).
fn assert_empty_ok(r: Resp) {
    let r = r.ok();
    assert!(r.body.is_empty(), "depersonalize answers an empty body: {}", r.text());
    assert_eq!(r.headers["content-length"], "0");
    assert!(r.headers.get("content-type").is_none());
}

/// Invariant 17 of people.md §11 for installation `id` right after a depersonalization that
/// changed something.
fn assert_invariant_17(s: &Snapshot, id: &str) {
    let i = inst(s, id);
    let p = person_of(s, id);
    assert!(p.is_anonymous(), "17: the person is anonymous");
    assert_eq!(p.person_type, PersonType::Lead, "17: LEAD");
    assert_eq!(p.first_name, None);
    assert_eq!(p.middle_name, None);
    assert_eq!(p.last_name, None);
    assert_eq!(p.gender, None);
    assert_eq!(p.birthday, None);
    assert!(p.tags.is_empty(), "17: no tags");
    assert!(p.custom_attributes.is_empty(), "17: no custom attributes");
    assert_eq!(p.version, 1, "a fresh person");
    let owned: Vec<_> = installations_of(s, p.id)
        .iter()
        .map(|x| x.push_reg_id.clone())
        .collect();
    assert_eq!(owned, vec![id.to_string()], "17: owns only that installation");
    assert!(!i.is_primary, "17: isPrimary false");
    assert!(i.custom_attributes.is_empty(), "17: no installation custom attributes");
    assert_eq!(i.application_user_id, None, "17: no applicationUserId");
}

/// A registered installation personalized as `ext` with attributes, made primary, with
/// installation custom attributes and an `applicationUserId`.
async fn rich_login(ts: &TestServer, ext: &str) -> String {
    let i = ts
        .register(json!({
            "pushServiceType": "Firebase", "pushServiceToken": format!("tok-{}", uuid::Uuid::new_v4()),
            "regEnabled": false, "os": "Android", "osVersion": "14", "sdkVersion": "15.0.0",
            "deviceModel": "Pixel 8", "language": "en", "notificationsEnabled": true,
            "applicationUserId": "app-user-1", "customAttributes": {"deviceAttr": "x"}
        }))
        .await;
    ts.personalize_ok(
        &i,
        json!({"userIdentity": {"externalUserId": ext, "emails": [{"address": format!("{ext}@x.com")}]},
               "userAttributes": {"firstName": "Ana", "tags": ["vip"], "customAttributes": {"tier": "gold"}}}),
        &flags(false, false, true),
    )
    .await;
    tick().await;
    i
}

async fn own_depersonalize_moves_installation_to_fresh_anonymous_person() {
    let ts = TestServer::start().await;
    let i = rich_login(&ts, "u1").await;
    let other = ts.register_personalized("u1").await;
    let s0 = ts.snapshot().await;
    let p0 = person_of(&s0, &i).clone();
    let i0 = inst(&s0, &i).clone();
    assert!(i0.is_primary && !i0.custom_attributes.is_empty() && i0.application_user_id.is_some());

    assert_empty_ok(depersonalize(&ts, &i, &i).await);

    let s1 = ts.snapshot().await;
    assert_invariant_17(&s1, &i);
    let p = person_of(&s1, &i);
    assert_ne!(p.id, p0.id);
    assert_eq!(
        person(&s1, p0.id),
        Some(&p0),
        "the old person keeps all its data, version too"
    );
    let left: Vec<_> = installations_of(&s1, p0.id)
        .iter()
        .map(|x| x.push_reg_id.clone())
        .collect();
    assert_eq!(left, vec![other.clone()], "and its other installations");
    let i1 = inst(&s1, &i);
    assert_eq!(i1.push_service_token, i0.push_service_token, "token kept");
    assert_eq!(i1.push_service_type, i0.push_service_type);
    assert_eq!(i1.reg_enabled, i0.reg_enabled, "regEnabled kept");
    assert_eq!(i1.system, i0.system, "system data kept");
    assert_eq!(i1.created_at, i0.created_at);
    assert_eq!(s1.persons.len(), s0.persons.len() + 1);
    assert_eq!(s1.merge_log, s0.merge_log, "depersonalize writes no merge-log entry");
    assert_eq!(
        *inst(&s1, &other),
        *inst(&s0, &other),
        "the other installation is untouched"
    );

    // What the device sees (people.md §7.3).
    let u = get_user(&ts, &i).await.ok().json();
    assert_eq!(
        without_instances(&u),
        json!({"phones": [], "emails": [], "tags": [], "customAttributes": {}, "type": "LEAD"})
    );
    assert_eq!(instance_ids(&u), vec![i.clone()]);
    let own = instance(&u, &i);
    assert_eq!(own["isPrimary"], false);
    assert_eq!(own["customAttributes"], json!({}));
    assert_eq!(own["regEnabled"], false);
    assert!(own.get("applicationUserId").is_none());
    assert_eq!(own["pushServiceToken"].as_str(), i0.push_service_token.as_deref());
    assert_eq!(own["deviceModel"], "Pixel 8");
    // The old user no longer lists it.
    let u = get_user(&ts, &other).await.ok().json();
    assert_eq!(instance_ids(&u), vec![other.clone()]);
    assert_eq!(u["externalUserId"], "u1");
    ts.finish().await;
}

async fn depersonalize_may_leave_the_old_person_without_installations() {
    let ts = TestServer::start().await;
    let i = rich_login(&ts, "u1").await;
    let s0 = ts.snapshot().await;
    let p0 = person_of(&s0, &i).clone();
    assert_empty_ok(depersonalize(&ts, &i, &i).await);
    let s1 = ts.snapshot().await;
    assert_invariant_17(&s1, &i);
    assert_eq!(
        person(&s1, p0.id),
        Some(&p0),
        "a personalized person is never deleted implicitly"
    );
    assert!(installations_of(&s1, p0.id).is_empty());
    // Logging in again merges the fresh anonymous person back into the old one.
    let p_fresh = person_of(&s1, &i).id;
    let u = ts.personalize_as(&i, "u1").await;
    assert_eq!(u["firstName"], "Ana");
    assert_eq!(u["customAttributes"], json!({"tier": "gold"}));
    let s2 = ts.snapshot().await;
    assert_eq!(person_of(&s2, &i).id, p0.id);
    assert!(
        person(&s2, p_fresh).is_none(),
        "the fresh person was merged and deleted"
    );
    let e = merges_of(&s2, &i);
    assert_eq!(e.last().unwrap().source_person_id, Some(p_fresh));
    assert_eq!(e.last().unwrap().target_person_id, Some(p0.id));
    ts.finish().await;
}

async fn depersonalize_of_anonymous_person_changes_nothing() {
    let ts = TestServer::start().await;
    let i = ts
        .register(
            json!({"pushServiceType": "Firebase", "pushServiceToken": "tok-anon", "isPrimary": true,
                         "applicationUserId": "au", "customAttributes": {"k": "v"}}),
        )
        .await;
    // An anonymous person may have standard fields, tags and custom attributes.
    patch_user(
        &ts,
        &i,
        &json!({"firstName": "Anon", "tags": ["t"], "customAttributes": {"c": 1}}),
    )
    .await
    .ok();
    let s0 = ts.snapshot().await;
    assert!(person_of(&s0, &i).is_anonymous());
    assert_empty_ok(depersonalize(&ts, &i, &i).await);
    assert_same_store(&s0, &ts.snapshot().await, "anonymous: nothing changes");
    // Twice in a row after a real logout: the second one is a no-op.
    let j = rich_login(&ts, "u1").await;
    assert_empty_ok(depersonalize(&ts, &j, &j).await);
    let s1 = ts.snapshot().await;
    assert_empty_ok(depersonalize(&ts, &j, &j).await);
    assert_same_store(&s1, &ts.snapshot().await, "no-op");
    ts.finish().await;
}

async fn remote_logout_of_another_installation_of_the_same_person() {
    let ts = TestServer::start().await;
    let target = rich_login(&ts, "u1").await;
    let caller = ts.register_personalized("u1").await;
    let s0 = ts.snapshot().await;
    let p0 = person_of(&s0, &target).clone();
    assert_empty_ok(depersonalize(&ts, &target, &caller).await);
    let s1 = ts.snapshot().await;
    assert_invariant_17(&s1, &target);
    assert_eq!(person_of(&s1, &caller).id, p0.id, "the caller stays with the person");
    assert_eq!(person(&s1, p0.id), Some(&p0));
    assert_eq!(*inst(&s1, &caller), *inst(&s0, &caller));
    // The caller no longer sees the target; the target is no longer of the caller's person.
    let u = get_user(&ts, &caller).await.ok().json();
    assert_eq!(instance_ids(&u), vec![caller.clone()]);
    let s1 = ts.snapshot().await;
    let r = depersonalize(&ts, &target, &caller).await;
    assert_unchanged(&ts, r, 403, "FORBIDDEN_INSTALLATION", &s1).await;
    // The pushRegIds are matched case-insensitively.
    let k = ts.register_personalized("u1").await;
    assert_empty_ok(depersonalize(&ts, &k.to_uppercase(), &caller.to_uppercase()).await);
    assert_invariant_17(&ts.snapshot().await, &k);
    ts.finish().await;
}

async fn remote_logout_refusals() {
    let ts = TestServer::start().await;
    let other_app = ts.other_app().await;
    let caller = rich_login(&ts, "u1").await;
    let stranger = rich_login(&ts, "u2").await;
    let anon = ts.register_android().await;
    // An installation of the same person, but in another application.
    let foreign = register_in(&ts, &other_app).await;
    personalize_in(&ts, &other_app, &foreign, &ext_identity("u1"), "").await;
    let s0 = ts.snapshot().await;
    assert_eq!(person_of(&s0, &foreign).id, person_of(&s0, &caller).id);
    let unknown = uuid::Uuid::new_v4().to_string();
    for target in [&stranger, &anon, &foreign, &unknown, &"not-a-uuid".to_string()] {
        let r = depersonalize(&ts, target, &caller).await;
        assert_unchanged(&ts, r, 403, "FORBIDDEN_INSTALLATION", &s0).await;
    }
    // An unknown caller is NO_REGISTRATION, also for its own id and for another app's id.
    for caller in [&unknown, &foreign] {
        let r = depersonalize(&ts, caller, caller).await;
        assert_unchanged(&ts, r, 404, "NO_REGISTRATION", &s0).await;
        let r = depersonalize(&ts, &stranger, caller).await;
        assert_unchanged(&ts, r, 404, "NO_REGISTRATION", &s0).await;
    }
    // Depersonalize accepts App auth only.
    let r = ts
        .call_with(
            "POST",
            &format!("/mobile/1/appinstance/{caller}/depersonalize"),
            &[("authorization", "Bearer a.b.c")],
            Some(&caller),
            None,
        )
        .await;
    assert_unchanged(&ts, r, 401, "APP_CODE_MISSING", &s0).await;
    ts.finish().await;
}

async fn depersonalize_ignores_any_body() {
    let ts = TestServer::start().await;
    let auth = ts.app_auth();
    let bodies: [&[u8]; 4] = [b"this is {not json", b"[1,2,3]", b"{\"externalUserId\":\"x\"}", b"   "];
    for body in bodies {
        let i = rich_login(&ts, &format!("u-{}", uuid::Uuid::new_v4())).await;
        let r = ts
            .call_bytes(
                "POST",
                &format!("/mobile/1/appinstance/{i}/depersonalize"),
                Some(&i),
                Some(body.to_vec()),
            )
            .await;
        assert_empty_ok(r);
        assert_invariant_17(&ts.snapshot().await, &i);
    }
    // iOS: Content-Type but an empty body; Android: no Content-Length at all.
    let i = rich_login(&ts, "ios").await;
    let r = ts
        .call_with(
            "POST",
            &format!("/mobile/1/appinstance/{i}/depersonalize"),
            &[("authorization", &auth), ("content-type", "application/json")],
            Some(&i),
            None,
        )
        .await;
    assert_empty_ok(r);
    assert_invariant_17(&ts.snapshot().await, &i);
    let a = rich_login(&ts, "android").await;
    let req = format!(
        "POST /mobile/1/appinstance/{a}/depersonalize HTTP/1.1\r\nHost: localhost\r\nAuthorization: {auth}\r\npushregistrationid: {a}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    let raw = ts.raw(req.as_bytes()).await;
    assert_eq!(raw.status, 200, "{}", raw.text());
    assert_eq!(raw.header("content-length"), Some("0"));
    assert!(raw.body.is_empty());
    assert_invariant_17(&ts.snapshot().await, &a);
    ts.finish().await;
}

// The two scenarios below are pure rules: every step is a client call (docs/decisions.md,
// "Server tests: client or raw HTTP"); the empty 200 of the wire is pinned above.

async fn depersonalized_installation_can_personalize_as_someone_else_without_force() {
    let ts = TestServer::start().await;
    let d = Device::start(&ts).await;
    d.personalize(
        UserIdentity::external("u1"),
        Some(UserAttributes {
            first_name: Some("Ana".into()),
            ..Default::default()
        }),
        options(false, false, true),
    )
    .await
    .unwrap();
    let i = d.id();
    let s0 = ts.snapshot().await;
    let e = d.login_err("u2", options(false, false, false)).await;
    assert_api(&e, 409, ErrorCode::PersonalizationImpossible);
    assert_same_store(&s0, &ts.snapshot().await, "personalize as another user without force");
    assert_eq!(d.depersonalize().await.unwrap(), SuccessPending::Success);
    assert_invariant_17(&ts.snapshot().await, &i);
    let fresh = person_of(&ts.snapshot().await, &i).id;
    let u = d.login("u2", options(false, false, false)).await;
    assert_eq!(u.external_user_id.as_deref(), Some("u2"));
    assert_eq!(u.first_name, None);
    let s = ts.snapshot().await;
    assert_eq!(person_of(&s, &i).id, fresh, "row 1 on the fresh person");
    assert_eq!(person_by_ext(&s, "u1").unwrap().first_name.as_deref(), Some("Ana"));
    d.stop().await;
    ts.finish().await;
}

async fn depersonalize_does_not_touch_primary_of_others() {
    let ts = TestServer::start().await;
    let (a, b, c) = (
        Device::start(&ts).await,
        Device::start(&ts).await,
        Device::start(&ts).await,
    );
    a.login("u1", options(false, false, true)).await;
    b.login("u1", options(false, false, false)).await;
    assert!(inst(&ts.snapshot().await, &a.id()).is_primary);
    // Logging out the primary leaves the person without a primary; nobody is promoted.
    b.depersonalize_installation(&a.id()).await.unwrap();
    let s = ts.snapshot().await;
    assert!(!inst(&s, &a.id()).is_primary);
    assert!(!inst(&s, &b.id()).is_primary);
    assert_invariant_17(&s, &a.id());
    // Logging out a non-primary installation keeps the other's primary flag.
    c.login("u1", options(false, false, true)).await;
    assert_eq!(b.depersonalize().await.unwrap(), SuccessPending::Success);
    let s = ts.snapshot().await;
    assert!(inst(&s, &c.id()).is_primary);
    assert_invariant_17(&s, &b.id());
    let u = c.fetch_user().await.unwrap();
    assert_eq!(
        u.installations
            .iter()
            .map(|i| i.push_reg_id.clone().unwrap())
            .collect::<Vec<_>>(),
        vec![c.id()]
    );
    assert!(is_primary_in(&u, &c.id()));
    for d in [a, b, c] {
        d.stop().await;
    }
    ts.finish().await;
}

async fn empty_caller_header_means_the_target_is_the_caller() {
    let ts = TestServer::start().await;
    let i = rich_login(&ts, "u1").await;
    assert_empty_ok(depersonalize(&ts, &i, "").await);
    assert_invariant_17(&ts.snapshot().await, &i);
    let j = rich_login(&ts, "u2").await;
    let r = ts
        .call("POST", &format!("/mobile/1/appinstance/{j}/depersonalize"), None, None)
        .await;
    assert_empty_ok(r);
    assert_invariant_17(&ts.snapshot().await, &j);
    ts.finish().await;
}

on_every_backend!(
    own_depersonalize_moves_installation_to_fresh_anonymous_person,
    depersonalize_may_leave_the_old_person_without_installations,
    depersonalize_of_anonymous_person_changes_nothing,
    remote_logout_of_another_installation_of_the_same_person,
    remote_logout_refusals,
    depersonalize_ignores_any_body,
    depersonalized_installation_can_personalize_as_someone_else_without_force,
    depersonalize_does_not_touch_primary_of_others,
    empty_caller_header_means_the_target_is_the_caller,
);
