//! Personalize over HTTP (people.md §5, mobile-api.md §5.8, §5.9): every row of the decision
//! table people.md §5.2, the merge of §9.1 with its "what wins" table and merge-log entry
//! (§9.2), the primary rule of §4, repersonalize, identity normalisation (§3.2, §3.3) and the
//! user JSON of the response (mobile-api.md §4.2).
mod common;

use common::{
    TestServer,
    client_helpers::{Device, is_primary_in, options},
    ext_identity,
    people_helpers::*,
    tick,
};
use roster_client::UserType;
use roster_model::{InstallationBefore, MergeStatus, PersonSnapshot, PersonType};
use roster_store::Snapshot;
use serde_json::{Value, json};

/// Registers an installation and personalizes it (`attributes` `Value::Null`: none).
async fn login(ts: &TestServer, identity: Value, attributes: Value, query: &str) -> String {
    let i = ts
        .register_personalized_with(json!({"userIdentity": identity, "userAttributes": attributes}), query)
        .await;
    tick().await;
    i
}

/// Personalizes `id` with the identity `K` only (no attributes, all flags `false`), asserting a
/// 200; returns the user JSON.
async fn personalize_k(ts: &TestServer, id: &str, identity: Value) -> Value {
    ts.personalize_ok(id, json!({"userIdentity": identity}), NO_FLAGS).await
}

/// [`login`] with an identity only: no attributes, all flags `false`.
async fn login_as(ts: &TestServer, identity: Value) -> String {
    login(ts, identity, Value::Null, NO_FLAGS).await
}

/// [`login`] with an identity only, as the primary device (`setDeviceAsPrimary=true`).
async fn login_as_primary(ts: &TestServer, identity: Value) -> String {
    login(ts, identity, Value::Null, &flags(false, false, true)).await
}

/// Gives installation `id` custom attributes and an `applicationUserId` (its own PATCH).
async fn give_installation_data(ts: &TestServer, id: &str) {
    patch_installation(
        ts,
        id,
        id,
        &json!({"customAttributes": {"k": "v"}, "applicationUserId": "au"}),
    )
    .await
    .ok();
}

/// [`login`] as `externalUserId` `t` with `n` custom attributes `t000`, `t001`, … (value `n`).
async fn login_t_with_attributes(ts: &TestServer, n: usize) -> String {
    let mut attrs = serde_json::Map::new();
    for n in 0..n {
        attrs.insert(format!("t{n:03}"), json!(n));
    }
    login(
        ts,
        json!({"externalUserId": "t"}),
        json!({"customAttributes": attrs}),
        NO_FLAGS,
    )
    .await
}

/// The installation part of the "before" of the first merge-log entry naming installation `id`.
fn installation_before<'a>(s: &'a Snapshot, id: &str) -> &'a InstallationBefore {
    &merges_of(s, id)[0].before.as_ref().unwrap().installation
}

/// The snapshot of a fresh anonymous `LEAD` person (people.md §7.1 P0′).
fn empty_snapshot() -> PersonSnapshot {
    PersonSnapshot {
        external_user_id: None,
        first_name: None,
        middle_name: None,
        last_name: None,
        gender: None,
        birthday: None,
        phones: vec![],
        emails: vec![],
        tags: Default::default(),
        custom_attributes: Default::default(),
        person_type: PersonType::Lead,
        version: 1,
    }
}

// ---------------------------------------------------------------------------------------------
// Decision table people.md §5.2
// ---------------------------------------------------------------------------------------------

async fn row01_anonymous_new_identity_receives_k_and_a() {
    let ts = TestServer::start().await;
    let i = ts.register_android().await;
    let s0 = ts.snapshot().await;
    let p0 = person_of(&s0, &i).clone();
    assert!(p0.is_anonymous());
    assert_eq!(p0.person_type, PersonType::Lead);
    assert_eq!(p0.version, 1);

    let u = ts
        .personalize_ok(
            &i,
            json!({
                "userIdentity": {"externalUserId": "u1", "phones": [{"number": "+385 91 123 4567"}], "emails": [{"address": "Ana@Example.com"}]},
                "userAttributes": {"firstName": "Ana", "tags": ["vip"], "customAttributes": {"tier": "gold"}}
            }),
            NO_FLAGS,
        )
        .await;
    assert_eq!(u["externalUserId"], "u1");
    assert_eq!(u["firstName"], "Ana");
    assert_eq!(u["phones"], json!([{"number": "385911234567"}]));
    assert_eq!(u["emails"], json!([{"address": "Ana@Example.com"}]));
    assert_eq!(u["tags"], json!(["vip"]));
    assert_eq!(u["customAttributes"], json!({"tier": "gold"}));
    assert_eq!(u["type"], "CUSTOMER");
    assert_eq!(instance_ids(&u), vec![i.clone()]);
    assert!(instance(&u, &i)["pushServiceToken"].is_string());

    let s1 = ts.snapshot().await;
    let p = person_of(&s1, &i);
    assert_eq!(p.id, p0.id, "row 1: I stays on P0");
    assert_eq!(p.person_type, PersonType::Customer);
    assert_eq!(p.version, 2);
    assert_eq!(p.external_user_id.as_deref(), Some("u1"));
    assert_eq!(p.phones, vec!["385911234567"]);
    assert_eq!(p.emails, vec!["Ana@Example.com"]);
    assert!(s1.merge_log.is_empty(), "row 1 writes no merge-log entry");
    assert_eq!(s1.persons.len(), 1);
    ts.finish().await;
}

async fn row02_anonymous_meets_existing_person_is_merged() {
    // The story of mobile-api.md §7.3.
    let ts = TestServer::start().await;
    let j = login(
        &ts,
        json!({"externalUserId": "cust-1001", "phones": [{"number": "385911234567"}]}),
        json!({"firstName": "Ana", "lastName": "Horvat", "tags": ["vip"], "customAttributes": {"favoriteColor": "green", "newsletter": true}}),
        &flags(false, false, true),
    )
    .await;
    let i = ts.register_android().await;
    patch_installation(
        &ts,
        &i,
        &i,
        &json!({"customAttributes": {"device": "x"}, "applicationUserId": "app-u"}),
    )
    .await
    .ok();
    patch_user(
        &ts,
        &i,
        &json!({"firstName": "Anna", "middleName": "Marija", "gender": "female", "tags": ["beta"],
                "customAttributes": {"newsletter": false, "onboardingDone": true}}),
    )
    .await
    .ok();
    let s0 = ts.snapshot().await;
    let p0 = person_of(&s0, &i).clone();
    let p1 = person_of(&s0, &j).clone();
    assert!(p0.is_anonymous());

    let u = ts
        .personalize_ok(
            &i,
            json!({"userAttributes": {"customAttributes": {"lastLoginDevice": "iPhone"}},
                   "userIdentity": {"emails": [{"address": "Ana.Horvat@Example.com"}], "externalUserId": "cust-1001"}}),
            NO_FLAGS,
        )
        .await;
    assert_eq!(u["externalUserId"], "cust-1001");
    assert_eq!(u["firstName"], "Ana", "T's value wins");
    assert_eq!(u["middleName"], "Marija", "empty field filled from P0");
    assert_eq!(u["lastName"], "Horvat");
    assert_eq!(u["gender"], "Female", "empty field filled from P0");
    assert_eq!(u["phones"], json!([{"number": "385911234567"}]));
    assert_eq!(u["emails"], json!([{"address": "Ana.Horvat@Example.com"}]));
    assert_eq!(u["tags"], json!(["beta", "vip"]), "tags united");
    assert_eq!(
        u["customAttributes"],
        json!({"favoriteColor": "green", "lastLoginDevice": "iPhone", "newsletter": true, "onboardingDone": true})
    );
    assert_eq!(u["type"], "CUSTOMER");
    assert_eq!(instance_ids(&u), vec![j.clone(), i.clone()], "oldest first");
    assert!(instance(&u, &j).get("pushServiceToken").is_none());
    assert!(instance(&u, &i)["pushServiceToken"].is_string());
    assert_eq!(instance(&u, &j)["isPrimary"], true);
    assert_eq!(instance(&u, &i)["isPrimary"], false);

    let s1 = ts.snapshot().await;
    let t = person_of(&s1, &i);
    assert_eq!(t.id, p1.id, "I ends on P1");
    assert!(person(&s1, p0.id).is_none(), "P0 deleted (no installation left)");
    assert_eq!(s1.persons.len(), 1);
    assert_eq!(t.version, p1.version + 1);
    assert_eq!(t.person_type, PersonType::Customer);
    // I's own data is unchanged by the merge.
    let mut expected_i = inst(&s0, &i).clone();
    let actual_i = inst(&s1, &i);
    expected_i.person_id = actual_i.person_id;
    expected_i.updated_at = actual_i.updated_at;
    assert_eq!(*actual_i, expected_i);

    assert_eq!(s1.merge_log.len(), 1);
    let e = &s1.merge_log[0];
    assert_eq!(e.push_reg_id, i);
    assert_eq!(e.source_person_id, Some(p0.id));
    assert_eq!(e.target_person_id, Some(p1.id));
    assert!(e.source_deleted);
    assert!(!e.after_forced_depersonalize);
    assert!(e.dropped_attributes.is_empty());
    assert_eq!(e.after_target_version, t.version);
    assert_eq!(e.after_source_version, None);
    assert_eq!(e.status, MergeStatus::Applied);
    assert_eq!(e.reversed_at, None);
    assert!(!e.redacted);
    assert_eq!(
        e.actor,
        json!({"type": "INSTALLATION", "pushRegId": i, "applicationCode": ts.app.application_code})
    );
    let before = e.before.as_ref().expect("snapshots present");
    assert_eq!(before.source, PersonSnapshot::of(&p0));
    assert_eq!(before.target, PersonSnapshot::of(&p1));
    assert_eq!(
        before.installation,
        InstallationBefore {
            is_primary: false,
            target_primary_push_reg_id: Some(j.clone())
        }
    );
    ts.finish().await;
}

async fn row02_match_by_email_target_without_external_user_id_receives_it() {
    let ts = TestServer::start().await;
    let j = login_as(&ts, json!({"emails": [{"address": "a@x.com"}]})).await;
    let i = ts.register_android().await;
    let s0 = ts.snapshot().await;
    let p1 = person_of(&s0, &j).clone();
    let p0 = person_of(&s0, &i).clone();
    let u = personalize_k(
        &ts,
        &i,
        json!({"externalUserId": "u1", "emails": [{"address": "A@X.COM"}]}),
    )
    .await;
    assert_eq!(u["externalUserId"], "u1");
    assert_eq!(
        u["emails"],
        json!([{"address": "a@x.com"}]),
        "a key T already has stays as stored"
    );
    let s1 = ts.snapshot().await;
    assert_eq!(person_of(&s1, &i).id, p1.id);
    assert!(person(&s1, p0.id).is_none());
    let e = merges_of(&s1, &i);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].source_person_id, Some(p0.id));
    assert_eq!(e[0].target_person_id, Some(p1.id));
    ts.finish().await;
}

async fn row02_match_by_phone_without_external_user_id_in_k() {
    let ts = TestServer::start().await;
    let j = login_as(
        &ts,
        json!({"externalUserId": "u1", "phones": [{"number": "385911234567"}]}),
    )
    .await;
    let i = ts.register_android().await;
    let s0 = ts.snapshot().await;
    let p1 = person_of(&s0, &j).clone();
    let u = personalize_k(&ts, &i, json!({"phones": [{"number": "+385911234567"}]})).await;
    assert_eq!(u["externalUserId"], "u1");
    let s1 = ts.snapshot().await;
    assert_eq!(person_of(&s1, &i).id, p1.id);
    assert_eq!(merges_of(&s1, &i).len(), 1);
    ts.finish().await;
}

async fn row03_anonymous_external_user_id_contradicts_owner() {
    let ts = TestServer::start().await;
    login_as(&ts, json!({"externalUserId": "u1", "emails": [{"address": "a@x.com"}]})).await;
    let i = ts.register_android().await;
    patch_user(&ts, &i, &json!({"firstName": "Anon"})).await.ok();
    let s0 = ts.snapshot().await;
    for query in [NO_FLAGS.to_string(), flags(true, true, true)] {
        let r = ts
            .personalize(
                &i,
                json!({"userIdentity": {"externalUserId": "u2", "emails": [{"address": "a@x.com"}]}, "userAttributes": {"lastName": "L"}}),
                &query,
            )
            .await;
        assert_unchanged(&ts, r, 409, "USER_MERGE_INTERRUPTED", &s0).await;
    }
    ts.finish().await;
}

async fn row04_same_person_logs_in_again_with_new_key() {
    let ts = TestServer::start().await;
    let i = login(
        &ts,
        json!({"externalUserId": "u1", "emails": [{"address": "a@x.com"}]}),
        json!({"firstName": "Ana"}),
        NO_FLAGS,
    )
    .await;
    let s0 = ts.snapshot().await;
    let p0 = person_of(&s0, &i).clone();
    let u = ts
        .personalize_ok(
            &i,
            json!({"userIdentity": {"externalUserId": "u1", "phones": [{"number": "4930123456"}]}, "userAttributes": {"lastName": "Horvat"}}),
            NO_FLAGS,
        )
        .await;
    assert_eq!(u["phones"], json!([{"number": "4930123456"}]));
    assert_eq!(u["emails"], json!([{"address": "a@x.com"}]), "keys T already has stay");
    assert_eq!(u["firstName"], "Ana");
    assert_eq!(u["lastName"], "Horvat");
    // K without externalUserId, matched by email only (ext(K) none).
    let u = personalize_k(&ts, &i, json!({"emails": [{"address": "A@x.COM"}]})).await;
    assert_eq!(u["externalUserId"], "u1");
    assert_eq!(u["emails"], json!([{"address": "a@x.com"}]));
    let s1 = ts.snapshot().await;
    let p = person_of(&s1, &i);
    assert_eq!(p.id, p0.id, "row 4: I stays on P0");
    assert_eq!(p.version, p0.version + 1, "only the first request changed data");
    assert!(s1.merge_log.is_empty());
    assert_eq!(s1.persons.len(), 1);
    ts.finish().await;
}

async fn row05_other_external_user_id_matched_by_email_without_force() {
    let ts = TestServer::start().await;
    let i = login_as(&ts, json!({"externalUserId": "u1", "emails": [{"address": "a@x.com"}]})).await;
    let s0 = ts.snapshot().await;
    let r = ts
        .personalize(
            &i,
            json!({"userIdentity": {"externalUserId": "u2", "emails": [{"address": "a@x.com"}]}}),
            &flags(false, true, true),
        )
        .await;
    assert_unchanged(&ts, r, 409, "PERSONALIZATION_IMPOSSIBLE", &s0).await;
    ts.finish().await;
}

async fn row06_other_external_user_id_matched_by_email_with_force_rolls_back() {
    let ts = TestServer::start().await;
    let i = login_as_primary(&ts, json!({"externalUserId": "u1", "emails": [{"address": "a@x.com"}]})).await;
    give_installation_data(&ts, &i).await;
    let s0 = ts.snapshot().await;
    assert!(inst(&s0, &i).is_primary);
    let r = ts
        .personalize(
            &i,
            json!({"userIdentity": {"externalUserId": "u2", "emails": [{"address": "a@x.com"}]}}),
            &flags(true, false, false),
        )
        .await;
    // The depersonalization of step 3 is rolled back: I keeps its person, flag, attributes.
    assert_unchanged(&ts, r, 409, "USER_MERGE_INTERRUPTED", &s0).await;
    ts.finish().await;
}

async fn row07_personalized_all_keys_new_without_force() {
    let ts = TestServer::start().await;
    let i = login_as(&ts, json!({"externalUserId": "u1"})).await;
    let s0 = ts.snapshot().await;
    let r = ts.personalize(&i, ext_identity("u2"), &flags(false, false, true)).await;
    assert_unchanged(&ts, r, 409, "PERSONALIZATION_IMPOSSIBLE", &s0).await;
    // Also when the new key is only an email and P0 has no externalUserId.
    let k = login_as(&ts, json!({"emails": [{"address": "k@x.com"}]})).await;
    let s0 = ts.snapshot().await;
    let r = ts
        .personalize(
            &k,
            json!({"userIdentity": {"emails": [{"address": "other@x.com"}]}}),
            NO_FLAGS,
        )
        .await;
    assert_unchanged(&ts, r, 409, "PERSONALIZATION_IMPOSSIBLE", &s0).await;
    ts.finish().await;
}

async fn row08_personalized_all_keys_new_with_force() {
    let ts = TestServer::start().await;
    let other = login_as(&ts, json!({"externalUserId": "u1"})).await;
    let i = ts
        .register_personalized_with(ext_identity("u1"), &flags(false, false, true))
        .await;
    give_installation_data(&ts, &i).await;
    patch_user(&ts, &i, &json!({"firstName": "Ana", "tags": ["t"]}))
        .await
        .ok();
    let s0 = ts.snapshot().await;
    let p0 = person_of(&s0, &i).clone();
    assert!(inst(&s0, &i).is_primary);

    let u = ts
        .personalize_ok(
            &i,
            json!({"userIdentity": {"externalUserId": "u2"}, "userAttributes": {"lastName": "New"}}),
            &flags(true, false, false),
        )
        .await;
    assert_eq!(u["externalUserId"], "u2");
    assert_eq!(u["lastName"], "New");
    assert!(u.get("firstName").is_none(), "P0′ starts empty");
    assert_eq!(u["tags"], json!([]));
    assert_eq!(u["type"], "CUSTOMER");
    assert_eq!(instance_ids(&u), vec![i.clone()]);
    assert_eq!(instance(&u, &i)["isPrimary"], false);
    assert_eq!(instance(&u, &i)["customAttributes"], json!({}));
    assert!(instance(&u, &i).get("applicationUserId").is_none());

    let s1 = ts.snapshot().await;
    let p = person_of(&s1, &i);
    assert_ne!(p.id, p0.id, "row 8: I ends on a fresh P0′");
    assert_eq!(p.version, 2, "created, then received K and A");
    assert_eq!(person(&s1, p0.id), Some(&p0), "P0 keeps its data untouched");
    let p0_insts: Vec<_> = installations_of(&s1, p0.id)
        .iter()
        .map(|x| x.push_reg_id.clone())
        .collect();
    assert_eq!(p0_insts, vec![other.clone()], "P0 keeps its other installation");
    let ii = inst(&s1, &i);
    let i0 = inst(&s0, &i);
    assert!(!ii.is_primary);
    assert!(ii.custom_attributes.is_empty());
    assert_eq!(ii.application_user_id, None);
    assert_eq!(ii.push_service_token, i0.push_service_token);
    assert_eq!(ii.reg_enabled, i0.reg_enabled);
    assert_eq!(ii.system, i0.system);
    assert_eq!(s1.merge_log, s0.merge_log, "row 8 writes no merge-log entry");
    ts.finish().await;
}

async fn row08_force_leaves_old_person_without_installation() {
    let ts = TestServer::start().await;
    let i = login_as(&ts, json!({"externalUserId": "u1"})).await;
    let p0 = person_of(&ts.snapshot().await, &i).clone();
    ts.personalize_ok(&i, ext_identity("u2"), &flags(true, false, false))
        .await;
    let s1 = ts.snapshot().await;
    assert_eq!(
        person(&s1, p0.id),
        Some(&p0),
        "a personalized person is never deleted implicitly"
    );
    assert!(installations_of(&s1, p0.id).is_empty());
    assert_eq!(person_of(&s1, &i).external_user_id.as_deref(), Some("u2"));
    ts.finish().await;
}

async fn row09_personalized_other_person_without_force() {
    let ts = TestServer::start().await;
    login_as(&ts, json!({"externalUserId": "u2"})).await;
    let i = login_as(&ts, json!({"externalUserId": "u1"})).await;
    let s0 = ts.snapshot().await;
    let r = ts.personalize(&i, ext_identity("u2"), &flags(false, false, true)).await;
    assert_unchanged(&ts, r, 409, "PERSONALIZATION_IMPOSSIBLE", &s0).await;
    ts.finish().await;
}

async fn row10_personalized_other_person_with_force_merges_fresh_person() {
    let ts = TestServer::start().await;
    let j = login(
        &ts,
        json!({"externalUserId": "u2"}),
        json!({"firstName": "Bob"}),
        &flags(false, false, true),
    )
    .await;
    let i = login(
        &ts,
        json!({"externalUserId": "u1"}),
        json!({"firstName": "Ana"}),
        &flags(false, false, true),
    )
    .await;
    give_installation_data(&ts, &i).await;
    let s0 = ts.snapshot().await;
    let p0 = person_of(&s0, &i).clone();
    let p1 = person_of(&s0, &j).clone();
    assert!(inst(&s0, &i).is_primary);

    let u = ts
        .personalize_ok(
            &i,
            json!({"userIdentity": {"externalUserId": "u2", "emails": [{"address": "bob@x.com"}]}, "userAttributes": {"lastName": "B"}}),
            &flags(true, false, false),
        )
        .await;
    assert_eq!(u["externalUserId"], "u2");
    assert_eq!(u["firstName"], "Bob");
    assert_eq!(u["lastName"], "B");
    assert_eq!(u["emails"], json!([{"address": "bob@x.com"}]));
    assert_eq!(instance_ids(&u), vec![j.clone(), i.clone()]);

    let s1 = ts.snapshot().await;
    assert_eq!(person_of(&s1, &i).id, p1.id, "row 10: I ends on P1");
    assert_eq!(person(&s1, p0.id), Some(&p0), "the original P0 keeps its data");
    assert!(installations_of(&s1, p0.id).is_empty());
    assert_eq!(s1.persons.len(), 2, "P0′ was merged and deleted");
    let ii = inst(&s1, &i);
    assert!(!ii.is_primary, "the forced depersonalization cleared the flag");
    assert!(ii.custom_attributes.is_empty());
    assert_eq!(ii.application_user_id, None);
    assert!(inst(&s1, &j).is_primary);

    let e = merges_of(&s1, &i);
    assert_eq!(e.len(), 1);
    let e = e[0];
    assert!(e.after_forced_depersonalize);
    assert!(e.source_deleted);
    let src = e.source_person_id.unwrap();
    assert_ne!(src, p0.id, "the source is P0′, not the original P0");
    assert!(person(&s1, src).is_none());
    assert_eq!(e.target_person_id, Some(p1.id));
    assert_eq!(e.after_target_version, person(&s1, p1.id).unwrap().version);
    assert_eq!(e.after_target_version, p1.version + 1);
    let before = e.before.as_ref().unwrap();
    assert_eq!(before.source, empty_snapshot());
    assert_eq!(before.target, PersonSnapshot::of(&p1));
    assert_eq!(
        before.installation,
        InstallationBefore {
            is_primary: true,
            target_primary_push_reg_id: Some(j.clone())
        },
        "isPrimary of I before the personalize"
    );
    ts.finish().await;
}

async fn row10_with_force_but_contradicting_external_user_id_rolls_back() {
    let ts = TestServer::start().await;
    login_as(&ts, json!({"externalUserId": "u2", "emails": [{"address": "b@x.com"}]})).await;
    let i = login_as_primary(&ts, json!({"externalUserId": "u1"})).await;
    let s0 = ts.snapshot().await;
    let r = ts
        .personalize(
            &i,
            json!({"userIdentity": {"externalUserId": "u3", "emails": [{"address": "b@x.com"}]}}),
            &flags(true, false, false),
        )
        .await;
    assert_unchanged(&ts, r, 409, "USER_MERGE_INTERRUPTED", &s0).await;
    ts.finish().await;
}

async fn row11_two_candidates_are_ambiguous() {
    let ts = TestServer::start().await;
    login_as(&ts, json!({"externalUserId": "u1"})).await;
    login_as(&ts, json!({"emails": [{"address": "b@x.com"}]})).await;
    login_as(&ts, json!({"phones": [{"number": "4930123456"}]})).await;
    let anon = ts.register_android().await;
    let personalized = login_as(&ts, json!({"externalUserId": "u9"})).await;
    let s0 = ts.snapshot().await;
    let body = json!({"userIdentity": {"externalUserId": "u1", "emails": [{"address": "B@X.com"}]}});
    for query in [NO_FLAGS.to_string(), flags(true, true, true)] {
        let r = ts.personalize(&anon, body.clone(), &query).await;
        assert_unchanged(&ts, r, 409, "AMBIGUOUS_PERSONALIZE_CANDIDATES", &s0).await;
        // Checked before the conflict with the current person (no PERSONALIZATION_IMPOSSIBLE,
        // no forced depersonalization).
        let r = ts.personalize(&personalized, body.clone(), &query).await;
        assert_unchanged(&ts, r, 409, "AMBIGUOUS_PERSONALIZE_CANDIDATES", &s0).await;
    }
    let r = ts
        .personalize(
            &anon,
            json!({"userIdentity": {"emails": [{"address": "b@x.com"}], "phones": [{"number": "+49 30 123456"}]}}),
            NO_FLAGS,
        )
        .await;
    assert_unchanged(&ts, r, 409, "AMBIGUOUS_PERSONALIZE_CANDIDATES", &s0).await;
    ts.finish().await;
}

async fn row12_empty_identity_is_invalid() {
    let ts = TestServer::start().await;
    let anon = ts.register_android().await;
    let personalized = login_as(&ts, json!({"externalUserId": "u1"})).await;
    let s0 = ts.snapshot().await;
    let bodies = [
        json!({}),
        json!({"userIdentity": null}),
        json!({"userIdentity": {}}),
        json!({"userIdentity": {"externalUserId": ""}}),
        json!({"userIdentity": {"externalUserId": "null"}}),
        json!({"userIdentity": {"externalUserId": "NULL", "phones": [], "emails": []}}),
        json!({"userIdentity": {"externalUserId": null, "phones": null}}),
        json!({"userIdentity": {"foo": "bar"}, "userAttributes": {"firstName": "A"}}),
        // K is checked before A (people.md §5.1 step 1).
        json!({"userIdentity": {}, "userAttributes": {"middleName": "x".repeat(51)}}),
    ];
    for id in [&anon, &personalized] {
        for body in &bodies {
            for query in [NO_FLAGS.to_string(), flags(true, true, true)] {
                let r = ts.personalize(id, body.clone(), &query).await;
                assert_unchanged(&ts, r, 400, "USER_IDENTITY_INVALID", &s0).await;
            }
        }
    }
    ts.finish().await;
}

// Through the client: the flags reach the server as the SDK sends them (docs/decisions.md,
// "Server tests: client or raw HTTP"); the query spellings are pinned by query_booleans_of_personalize.
async fn row13_keep_as_lead_keeps_lead_and_never_demotes_customer() {
    let ts = TestServer::start().await;
    let d = Device::start(&ts).await;
    let i = d.id();
    let keep_as_lead = options(false, true, false);
    let u = d.login("u1", keep_as_lead).await;
    assert_eq!(u.user_type, Some(UserType::Lead), "row 1 with keepAsLead");
    assert_eq!(person_of(&ts.snapshot().await, &i).person_type, PersonType::Lead);
    let u = d.login("u1", options(false, false, false)).await;
    assert_eq!(
        u.user_type,
        Some(UserType::Customer),
        "row 4 without keepAsLead promotes"
    );
    let u = d.login("u1", keep_as_lead).await;
    assert_eq!(
        u.user_type,
        Some(UserType::Customer),
        "keepAsLead never demotes a CUSTOMER"
    );
    // Row 8 with keepAsLead: the fresh P0′ stays LEAD.
    let u = d.login("u2", options(true, true, false)).await;
    assert_eq!(u.user_type, Some(UserType::Lead));
    let s = ts.snapshot().await;
    assert_eq!(person_by_ext(&s, "u1").unwrap().person_type, PersonType::Customer);
    assert_eq!(person_by_ext(&s, "u2").unwrap().person_type, PersonType::Lead);
    d.stop().await;
    ts.finish().await;
}

async fn row13_keep_as_lead_in_merges() {
    let ts = TestServer::start().await;
    // LEAD target, LEAD source, keepAsLead: stays LEAD.
    let j = login(
        &ts,
        json!({"externalUserId": "lead"}),
        Value::Null,
        &flags(false, true, false),
    )
    .await;
    let i = ts.register_android().await;
    let u = ts
        .personalize_ok(&i, ext_identity("lead"), &flags(false, true, false))
        .await;
    assert_eq!(u["type"], "LEAD");
    assert_eq!(person_of(&ts.snapshot().await, &j).person_type, PersonType::Lead);
    // CUSTOMER target, keepAsLead: stays CUSTOMER.
    login_as(&ts, json!({"externalUserId": "cust"})).await;
    let k = ts.register_android().await;
    let u = ts
        .personalize_ok(&k, ext_identity("cust"), &flags(false, true, false))
        .await;
    assert_eq!(u["type"], "CUSTOMER");
    // LEAD target, LEAD source, no keepAsLead: promoted.
    let m = ts.register_android().await;
    let u = ts.personalize_as(&m, "lead").await;
    assert_eq!(u["type"], "CUSTOMER");
    ts.finish().await;
}

async fn row13_customer_source_makes_target_customer_and_surviving_source_is_logged() {
    // An anonymous CUSTOMER with two installations: personalized, then every key removed.
    let ts = TestServer::start().await;
    let t_inst = login(
        &ts,
        json!({"externalUserId": "target"}),
        json!({"firstName": "T"}),
        &flags(false, true, false),
    )
    .await;
    let i1 = login(
        &ts,
        json!({"externalUserId": "shared"}),
        json!({"lastName": "S"}),
        NO_FLAGS,
    )
    .await;
    let i2 = ts.register_personalized("shared").await;
    patch_user(&ts, &i1, &json!({"externalUserId": null})).await.ok();
    let s0 = ts.snapshot().await;
    let p0 = person_of(&s0, &i1).clone();
    let t = person_of(&s0, &t_inst).clone();
    assert!(p0.is_anonymous());
    assert_eq!(p0.person_type, PersonType::Customer);
    assert_eq!(person_of(&s0, &i2).id, p0.id);
    assert_eq!(t.person_type, PersonType::Lead);

    let u = ts
        .personalize_ok(&i1, ext_identity("target"), &flags(false, true, false))
        .await;
    assert_eq!(
        u["type"], "CUSTOMER",
        "CUSTOMER if either is CUSTOMER, keepAsLead or not"
    );
    assert_eq!(u["firstName"], "T");
    assert_eq!(u["lastName"], "S", "filled from P0");
    assert_eq!(instance_ids(&u), vec![t_inst.clone(), i1.clone()], "only I moves");

    let s1 = ts.snapshot().await;
    assert_eq!(person_of(&s1, &i1).id, t.id);
    assert_eq!(person_of(&s1, &i2).id, p0.id, "P0's other installation stays with P0");
    assert_eq!(person(&s1, p0.id), Some(&p0), "P0 survives unchanged");
    let e = merges_of(&s1, &i1);
    assert_eq!(e.len(), 1);
    assert!(!e[0].source_deleted);
    assert_eq!(e[0].after_source_version, Some(p0.version));
    assert_eq!(e[0].after_target_version, t.version + 1);
    assert_eq!(e[0].before.as_ref().unwrap().source, PersonSnapshot::of(&p0));
    ts.finish().await;
}

async fn row14_set_device_as_primary_demotes_others_in_the_application() {
    let ts = TestServer::start().await;
    let other_app = ts.other_app().await;
    let j = login_as_primary(&ts, json!({"externalUserId": "u1"})).await;
    let k = login_as(&ts, json!({"externalUserId": "u1"})).await;
    // A primary installation of the same person in another application is not touched.
    let x = register_in(&ts, &other_app).await;
    let r = personalize_in(&ts, &other_app, &x, &ext_identity("u1"), &flags(false, false, true)).await;
    assert_eq!(instance_ids(&r.json()), vec![x.clone()]);
    let s0 = ts.snapshot().await;
    assert!(inst(&s0, &j).is_primary);
    assert!(inst(&s0, &x).is_primary);
    assert!(!inst(&s0, &k).is_primary);

    // Merge (row 2) with setDeviceAsPrimary.
    let i = ts.register_android().await;
    let u = ts
        .personalize_ok(&i, ext_identity("u1"), &flags(false, false, true))
        .await;
    assert_eq!(instance(&u, &i)["isPrimary"], true);
    assert_eq!(instance(&u, &j)["isPrimary"], false);
    assert_eq!(instance(&u, &k)["isPrimary"], false);
    let s1 = ts.snapshot().await;
    assert!(inst(&s1, &i).is_primary);
    assert!(!inst(&s1, &j).is_primary);
    assert!(!inst(&s1, &k).is_primary);
    assert!(inst(&s1, &x).is_primary, "other application untouched");

    // Same person again (row 4) with setDeviceAsPrimary from K.
    let u = ts
        .personalize_ok(&k, ext_identity("u1"), &flags(false, false, true))
        .await;
    assert_eq!(instance(&u, &k)["isPrimary"], true);
    assert_eq!(instance(&u, &i)["isPrimary"], false);
    let s2 = ts.snapshot().await;
    assert!(inst(&s2, &k).is_primary);
    assert!(!inst(&s2, &i).is_primary);
    assert!(inst(&s2, &x).is_primary);
    assert_eq!(s2.merge_log, s1.merge_log, "row 4 writes no merge-log entry");
    ts.finish().await;
}

async fn row15_without_set_primary_the_flag_is_kept_when_not_moving() {
    let ts = TestServer::start().await;
    let i = ts.register_primary("tok-row15").await;
    let u = ts.personalize_as(&i, "u1").await;
    assert_eq!(instance(&u, &i)["isPrimary"], true, "row 1 keeps the flag");
    let u = ts.personalize_as(&i, "u1").await;
    assert_eq!(instance(&u, &i)["isPrimary"], true, "row 4 keeps the flag");
    // A non-primary installation stays non-primary.
    let j = ts.register_android().await;
    let u = ts.personalize_as(&j, "u2").await;
    assert_eq!(instance(&u, &j)["isPrimary"], false);
    ts.finish().await;
}

async fn row15_primary_moving_to_target_with_primary_loses_flag() {
    let ts = TestServer::start().await;
    let j = login_as_primary(&ts, json!({"externalUserId": "u1"})).await;
    let i = ts.register_primary("tok-move").await;
    let u = ts.personalize_as(&i, "u1").await;
    assert_eq!(instance(&u, &i)["isPrimary"], false, "I loses its flag");
    assert_eq!(instance(&u, &j)["isPrimary"], true, "T's primary stays");
    let s = ts.snapshot().await;
    assert!(!inst(&s, &i).is_primary);
    assert!(inst(&s, &j).is_primary);
    assert_eq!(
        *installation_before(&s, &i),
        InstallationBefore {
            is_primary: true,
            target_primary_push_reg_id: Some(j.clone())
        }
    );
    ts.finish().await;
}

async fn primary_moving_to_target_without_primary_keeps_flag() {
    let ts = TestServer::start().await;
    let j = login_as(&ts, json!({"externalUserId": "u1"})).await;
    let i = ts.register_primary("tok-keep").await;
    let u = ts.personalize_as(&i, "u1").await;
    assert_eq!(instance(&u, &i)["isPrimary"], true);
    assert_eq!(instance(&u, &j)["isPrimary"], false);
    let s = ts.snapshot().await;
    assert!(inst(&s, &i).is_primary);
    assert_eq!(
        *installation_before(&s, &i),
        InstallationBefore {
            is_primary: true,
            target_primary_push_reg_id: None
        }
    );
    ts.finish().await;
}

async fn primary_moving_to_target_with_primary_and_set_primary_takes_over() {
    let ts = TestServer::start().await;
    let j = login_as_primary(&ts, json!({"externalUserId": "u1"})).await;
    let i = ts.register_primary("tok-take").await;
    let u = ts
        .personalize_ok(&i, ext_identity("u1"), &flags(false, false, true))
        .await;
    assert_eq!(instance(&u, &i)["isPrimary"], true);
    assert_eq!(instance(&u, &j)["isPrimary"], false);
    let s = ts.snapshot().await;
    assert!(inst(&s, &i).is_primary);
    assert!(!inst(&s, &j).is_primary);
    ts.finish().await;
}

async fn row15_forced_depersonalization_clears_flag_even_with_set_primary_false() {
    let ts = TestServer::start().await;
    login_as(&ts, json!({"externalUserId": "u2"})).await;
    let d = Device::start(&ts).await;
    let i = d.id();
    d.login("u1", options(false, false, true)).await;
    assert!(d.installation().is_primary);
    // Row 10: P1 has no primary, but the forced depersonalization already cleared I's flag.
    let u = d.login("u2", options(true, false, false)).await;
    assert!(!is_primary_in(&u, &i));
    assert!(!d.installation().is_primary);
    assert!(!inst(&ts.snapshot().await, &i).is_primary);
    // Row 8 with setDeviceAsPrimary=true: primary again on the fresh person.
    let u = d.login("u3", options(true, false, true)).await;
    assert!(is_primary_in(&u, &i));
    assert!(d.installation().is_primary);
    assert!(inst(&ts.snapshot().await, &i).is_primary);
    d.stop().await;
    ts.finish().await;
}

async fn row16_email_only_person_receives_external_user_id() {
    let ts = TestServer::start().await;
    let i = login_as(&ts, json!({"emails": [{"address": "a@x.com"}]})).await;
    let s0 = ts.snapshot().await;
    let p0 = person_of(&s0, &i).clone();
    let u = personalize_k(
        &ts,
        &i,
        json!({"externalUserId": "u9", "emails": [{"address": "a@x.com"}]}),
    )
    .await;
    assert_eq!(u["externalUserId"], "u9");
    let s1 = ts.snapshot().await;
    let p = person_of(&s1, &i);
    assert_eq!(p.id, p0.id);
    assert_eq!(p.external_user_id.as_deref(), Some("u9"));
    assert_eq!(p.version, p0.version + 1);
    assert!(s1.merge_log.is_empty());
    ts.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Merge details (people.md §5.2 "what wins", §9.1)
// ---------------------------------------------------------------------------------------------

async fn merge_what_wins_then_attributes_override() {
    let ts = TestServer::start().await;
    let j = login(
        &ts,
        json!({"externalUserId": "t", "emails": [{"address": "t@x.com"}]}),
        json!({"firstName": "TFirst", "birthday": "1980-01-02", "tags": ["t1", "shared"],
               "customAttributes": {"a": "T", "onlyT": 1}}),
        &flags(false, true, false),
    )
    .await;
    let i = ts.register_android().await;
    patch_user(
        &ts,
        &i,
        &json!({"firstName": "PFirst", "lastName": "PLast", "middleName": "PMid", "gender": "MALE",
                "birthday": "1999-09-09", "tags": ["p1", "shared"],
                "customAttributes": {"a": "P", "onlyP": true, "gone": "x"}}),
    )
    .await
    .ok();
    let u = ts
        .personalize_ok(
            &i,
            json!({"userIdentity": {"externalUserId": "t", "phones": [{"number": "4930123456"}]},
                   "userAttributes": {"lastName": "ALast", "tags": ["fromA", "Zed", "alpha"],
                                      "customAttributes": {"gone": null, "fromA": "yes"}}}),
            NO_FLAGS,
        )
        .await;
    assert_eq!(u["externalUserId"], "t");
    assert_eq!(u["firstName"], "TFirst", "T's value wins");
    assert_eq!(u["middleName"], "PMid", "filled");
    assert_eq!(u["lastName"], "ALast", "A overrides the filled value");
    assert_eq!(u["gender"], "Male");
    assert_eq!(u["birthday"], "1980-01-02");
    assert_eq!(u["phones"], json!([{"number": "4930123456"}]), "K's new key added");
    assert_eq!(u["emails"], json!([{"address": "t@x.com"}]));
    assert_eq!(
        u["tags"],
        json!(["Zed", "alpha", "fromA"]),
        "A's tags replace the union; sorted"
    );
    assert_eq!(
        u["customAttributes"],
        json!({"a": "T", "fromA": "yes", "onlyP": true, "onlyT": 1}),
        "T's entries, P0's for missing keys, then A per key"
    );
    assert_eq!(u["type"], "CUSTOMER");
    let s = ts.snapshot().await;
    assert_eq!(person_of(&s, &i).id, person_of(&s, &j).id);
    ts.finish().await;
}

async fn merge_without_attributes_unites_tags() {
    let ts = TestServer::start().await;
    login(
        &ts,
        json!({"externalUserId": "t"}),
        json!({"tags": ["b", "a"]}),
        NO_FLAGS,
    )
    .await;
    let i = ts.register_android().await;
    patch_user(&ts, &i, &json!({"tags": ["c", "a", "B"]})).await.ok();
    let u = ts.personalize_as(&i, "t").await;
    assert_eq!(u["tags"], json!(["B", "a", "b", "c"]));
    ts.finish().await;
}

async fn merge_custom_attribute_limit_drops_in_ascending_key_order() {
    let ts = TestServer::start().await;
    let j = login_t_with_attributes(&ts, 249).await;
    let i = ts.register_android().await;
    patch_user(
        &ts,
        &i,
        &json!({"customAttributes": {"z_new": 3, "m_new": 2, "a_new": 1, "t000": 999}}),
    )
    .await
    .ok();
    let u = ts.personalize_as(&i, "t").await;
    let ca = u["customAttributes"].as_object().unwrap();
    assert_eq!(ca.len(), 250);
    assert_eq!(ca["a_new"], 1, "copied first (ascending key order)");
    assert_eq!(ca["t000"], 0, "T's value wins, not a drop");
    assert!(!ca.contains_key("m_new"));
    assert!(!ca.contains_key("z_new"));
    let s = ts.snapshot().await;
    let t = person_of(&s, &j);
    assert_eq!(t.custom_attributes.len(), 250);
    let e = merges_of(&s, &i);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].dropped_attributes, vec!["m_new".to_string(), "z_new".to_string()]);
    ts.finish().await;
}

async fn merge_attributes_beyond_limit_after_fill_are_rejected() {
    let ts = TestServer::start().await;
    login_t_with_attributes(&ts, 250).await;
    let i = ts.register_android().await;
    let s0 = ts.snapshot().await;
    let r = ts
        .personalize(
            &i,
            json!({"userIdentity": {"externalUserId": "t"}, "userAttributes": {"customAttributes": {"extra": 1}}}),
            NO_FLAGS,
        )
        .await;
    assert_unchanged(&ts, r, 400, "REQUEST_FORMAT_INVALID", &s0).await;
    ts.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Repersonalize (people.md §5.3, mobile-api.md §5.9)
// ---------------------------------------------------------------------------------------------

async fn repersonalize_ignores_query_flags() {
    let ts = TestServer::start().await;
    let i = login_as(&ts, json!({"externalUserId": "u1"})).await;
    let s0 = ts.snapshot().await;
    let body = json!({"userIdentity": {"externalUserId": "u2"}});
    let r = repersonalize(&ts, &i, &body, "forceDepersonalize=true").await;
    assert_unchanged(&ts, r, 409, "PERSONALIZATION_IMPOSSIBLE", &s0).await;
    let r = repersonalize(&ts, &i, &body, "forceDepersonalize=1&keepAsLead=1&setDeviceAsPrimary=1").await;
    assert_unchanged(&ts, r, 409, "PERSONALIZATION_IMPOSSIBLE", &s0).await;
    // The same body through personalize with force succeeds.
    ts.personalize_ok(&i, body.clone(), "forceDepersonalize=true").await;

    // keepAsLead and setDeviceAsPrimary in the query are ignored too; so are bad values.
    let k = ts.register_android().await;
    let u = repersonalize(
        &ts,
        &k,
        &json!({"userIdentity": {"externalUserId": "u3"}}),
        "keepAsLead=true&setDeviceAsPrimary=true",
    )
    .await
    .ok()
    .json();
    assert_eq!(u["type"], "CUSTOMER");
    assert_eq!(instance(&u, &k)["isPrimary"], false);
    let u = repersonalize(
        &ts,
        &k,
        &json!({"userIdentity": {"externalUserId": "u3"}}),
        "keepAsLead=maybe",
    )
    .await
    .ok()
    .json();
    assert_eq!(u["externalUserId"], "u3");
    ts.finish().await;
}

async fn repersonalize_merges_like_personalize() {
    // Android recovery: a re-created installation re-sends its stored user.
    let ts = TestServer::start().await;
    let j = login(
        &ts,
        json!({"externalUserId": "u1"}),
        json!({"firstName": "Ana"}),
        NO_FLAGS,
    )
    .await;
    let i = ts.register_android().await;
    let u = repersonalize(
        &ts,
        &i,
        &json!({"userIdentity": {"externalUserId": "u1"}, "userAttributes": {"lastName": "H"}}),
        "",
    )
    .await
    .ok()
    .json();
    assert_eq!(u["firstName"], "Ana");
    assert_eq!(u["lastName"], "H");
    assert_eq!(instance_ids(&u), vec![j.clone(), i.clone()]);
    let s = ts.snapshot().await;
    assert_eq!(merges_of(&s, &i).len(), 1);
    ts.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Identity (people.md §3.2–3.4, mobile-api.md §4.3)
// ---------------------------------------------------------------------------------------------

async fn phone_numbers_are_normalised_and_matched() {
    let ts = TestServer::start().await;
    let j = login_as(&ts, json!({"phones": [{"number": "+385 91 123 4567"}]})).await;
    let s = ts.snapshot().await;
    assert_eq!(person_of(&s, &j).phones, vec!["385911234567"]);
    let i = ts.register_android().await;
    let u = personalize_k(&ts, &i, json!({"phones": [{"number": " +385 (91) 123-45.67 "}]})).await;
    assert_eq!(u["phones"], json!([{"number": "385911234567"}]));
    let s = ts.snapshot().await;
    assert_eq!(person_of(&s, &i).id, person_of(&s, &j).id, "the same identity key");
    // A leading 00 is not rewritten: invalid.
    let k = ts.register_android().await;
    let s0 = ts.snapshot().await;
    let r = ts
        .personalize(
            &k,
            json!({"userIdentity": {"phones": [{"number": "00385911234567"}]}}),
            NO_FLAGS,
        )
        .await;
    assert_unchanged(&ts, r, 400, "PHONE_INVALID", &s0).await;
    ts.finish().await;
}

async fn emails_match_case_insensitively_and_are_stored_as_given() {
    let ts = TestServer::start().await;
    let j = login_as(&ts, json!({"emails": [{"address": "Ana@X.com"}]})).await;
    let i = ts.register_android().await;
    let u = personalize_k(&ts, &i, json!({"emails": [{"address": "ana@x.com"}]})).await;
    assert_eq!(u["emails"], json!([{"address": "Ana@X.com"}]));
    let k = ts.register_android().await;
    let u = personalize_k(
        &ts,
        &k,
        json!({"emails": [{"address": "  ANA@X.COM  "}, {"address": " Bob@Y.com "}]}),
    )
    .await;
    assert_eq!(u["emails"], json!([{"address": "Ana@X.com"}, {"address": "Bob@Y.com"}]));
    let s = ts.snapshot().await;
    let p = person_of(&s, &j);
    assert_eq!(person_of(&s, &i).id, p.id);
    assert_eq!(person_of(&s, &k).id, p.id);
    assert_eq!(p.emails, vec!["Ana@X.com", "Bob@Y.com"]);
    assert_eq!(s.persons.len(), 1);
    ts.finish().await;
}

async fn external_user_id_is_compared_exactly() {
    let ts = TestServer::start().await;
    let a = login_as(&ts, json!({"externalUserId": "User"})).await;
    let b = login_as(&ts, json!({"externalUserId": "user"})).await;
    let c = login_as(&ts, json!({"externalUserId": " user "})).await;
    let s = ts.snapshot().await;
    let ids = [person_of(&s, &a).id, person_of(&s, &b).id, person_of(&s, &c).id];
    assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
    assert_eq!(person_of(&s, &c).external_user_id.as_deref(), Some(" user "));
    ts.finish().await;
}

async fn identity_members_of_user_attributes_are_ignored() {
    let ts = TestServer::start().await;
    let i = ts.register_android().await;
    let u = ts
        .personalize_ok(
            &i,
            json!({"userIdentity": {"externalUserId": "u1"},
                   "userAttributes": {"externalUserId": "evil", "phones": [{"number": "385911111111"}],
                                      "emails": [{"address": "e@x.com"}], "firstName": "Ana"}}),
            NO_FLAGS,
        )
        .await;
    assert_eq!(u["externalUserId"], "u1");
    assert_eq!(u["phones"], json!([]));
    assert_eq!(u["emails"], json!([]));
    assert_eq!(u["firstName"], "Ana");
    // Wrong types of ignored members are ignored too.
    ts.personalize_ok(
        &i,
        json!({"userIdentity": {"externalUserId": "u1"}, "userAttributes": {"phones": 5, "emails": "x", "externalUserId": 7}}),
        NO_FLAGS,
    )
    .await;
    // The ignored keys are free.
    let k = ts.register_android().await;
    let u = personalize_k(&ts, &k, json!({"phones": [{"number": "385911111111"}]})).await;
    assert!(u.get("externalUserId").is_none());
    let s = ts.snapshot().await;
    assert_ne!(person_of(&s, &i).id, person_of(&s, &k).id);
    assert!(person_by_ext(&s, "evil").is_none());
    ts.finish().await;
}

async fn validation_order_of_personalize() {
    let ts = TestServer::start().await;
    login_as(&ts, json!({"externalUserId": "u1"})).await;
    login_as(&ts, json!({"externalUserId": "u2", "emails": [{"address": "a@x.com"}]})).await;
    let i = ts.register_android().await;
    let s0 = ts.snapshot().await;
    let cases = [
        (
            json!({"userIdentity": {"externalUserId": "x".repeat(257), "phones": [{"number": "12"}]}}),
            "REQUEST_FORMAT_INVALID",
        ),
        (
            json!({"userIdentity": {"externalUserId": "bad\u{1}id"}}),
            "REQUEST_FORMAT_INVALID",
        ),
        (
            json!({"userIdentity": {"phones": [{"number": "12"}], "emails": [{"address": "nope"}]}}),
            "PHONE_INVALID",
        ),
        (
            json!({"userIdentity": {"emails": [{"address": "nope"}]}, "userAttributes": {"firstName": "x".repeat(256)}}),
            "EMAIL_INVALID",
        ),
        // Validation comes before the domain rules (the two keys are ambiguous).
        (
            json!({"userIdentity": {"externalUserId": "u1", "emails": [{"address": "a@x.com"}]},
                   "userAttributes": {"gender": "other"}}),
            "REQUEST_FORMAT_INVALID",
        ),
        (
            json!({"userIdentity": {"externalUserId": "u1"}, "userAttributes": {"birthday": "2023-02-29"}}),
            "REQUEST_FORMAT_INVALID",
        ),
    ];
    for (body, code) in cases {
        let r = ts.personalize(&i, body.clone(), NO_FLAGS).await;
        assert_unchanged(&ts, r, 400, code, &s0).await;
    }
    let r = ts
        .personalize(
            &i,
            json!({"userIdentity": {"externalUserId": "u1"}, "userAttributes": {"firstName": "x".repeat(256)}}),
            NO_FLAGS,
        )
        .await;
    assert!(r.text().contains("userAttributes.firstName"), "{}", r.text());
    assert_unchanged(&ts, r, 400, "REQUEST_FORMAT_INVALID", &s0).await;
    ts.finish().await;
}

// ---------------------------------------------------------------------------------------------
// The response and the caller
// ---------------------------------------------------------------------------------------------

async fn user_json_lists_only_installations_of_the_calling_application() {
    let ts = TestServer::start().await;
    let other = ts.other_app().await;
    let i1 = ts.register_android().await;
    tick().await;
    let x = register_in(&ts, &other).await;
    tick().await;
    let i2 = ts.register_android().await;
    tick().await;
    ts.personalize_as(&i1, "u1").await;
    let r = personalize_in(&ts, &other, &x, &ext_identity("u1"), NO_FLAGS).await;
    assert_eq!(
        instance_ids(&r.json()),
        vec![x.clone()],
        "only the other application's installation"
    );
    assert!(instance(&r.json(), &x)["pushServiceToken"].is_string());
    let u = ts.personalize_as(&i2, "u1").await;
    assert_eq!(
        instance_ids(&u),
        vec![i1.clone(), i2.clone()],
        "oldest first, caller's application only"
    );
    assert!(
        instance(&u, &i2)["pushServiceToken"].is_string(),
        "the caller's element has its token"
    );
    assert!(instance(&u, &i1).get("pushServiceToken").is_none(), "others never do");
    let u = get_user(&ts, &i1).await.ok().json();
    assert_eq!(instance_ids(&u), vec![i1.clone(), i2.clone()]);
    assert!(instance(&u, &i1)["pushServiceToken"].is_string());
    assert!(instance(&u, &i2).get("pushServiceToken").is_none());
    // One person across both applications of the account.
    let s = ts.snapshot().await;
    let p = person_of(&s, &i1).id;
    assert_eq!(person_of(&s, &x).id, p);
    assert_eq!(person_of(&s, &i2).id, p);
    ts.finish().await;
}

async fn personalize_of_a_remote_target_is_forbidden() {
    let ts = TestServer::start().await;
    let i = login_as(&ts, json!({"externalUserId": "u1"})).await;
    let j = login_as(&ts, json!({"externalUserId": "u1"})).await;
    let stranger = ts.register_android().await;
    let s0 = ts.snapshot().await;
    let body = json!({"userIdentity": {"externalUserId": "u1"}, "userAttributes": {"firstName": "X"}});
    for (target, caller) in [(&j, &i), (&stranger, &i), (&i, &stranger)] {
        for ep in ["personalize", "repersonalize"] {
            let r = ts
                .call(
                    "POST",
                    &format!("/mobile/1/appinstance/{target}/{ep}?{NO_FLAGS}"),
                    Some(caller),
                    Some(&body),
                )
                .await;
            assert_unchanged(&ts, r, 403, "FORBIDDEN_INSTALLATION", &s0).await;
        }
    }
    // An unknown remote target is 403 too, an unknown caller 404.
    let unknown = uuid::Uuid::new_v4().to_string();
    let r = ts
        .call(
            "POST",
            &format!("/mobile/1/appinstance/{unknown}/personalize"),
            Some(&i),
            Some(&body),
        )
        .await;
    assert_unchanged(&ts, r, 403, "FORBIDDEN_INSTALLATION", &s0).await;
    let r = ts.personalize(&unknown, body.clone(), NO_FLAGS).await;
    assert_unchanged(&ts, r, 404, "NO_REGISTRATION", &s0).await;
    ts.finish().await;
}

async fn version_increments_only_on_change() {
    let ts = TestServer::start().await;
    let i = ts.register_android().await;
    let v = |s: &Snapshot| person_of(s, &i).version;
    assert_eq!(v(&ts.snapshot().await), 1);
    ts.personalize_as(&i, "u1").await;
    assert_eq!(v(&ts.snapshot().await), 2);
    // Same identity, nothing new, already CUSTOMER: no change, no new version.
    ts.personalize_as(&i, "u1").await;
    assert_eq!(v(&ts.snapshot().await), 2);
    ts.personalize_ok(
        &i,
        json!({"userIdentity": {"externalUserId": "u1"}, "userAttributes": {"firstName": "A"}}),
        NO_FLAGS,
    )
    .await;
    assert_eq!(v(&ts.snapshot().await), 3);
    // setDeviceAsPrimary changes the installation, not the person.
    ts.personalize_ok(&i, ext_identity("u1"), &flags(false, false, true))
        .await;
    let s = ts.snapshot().await;
    assert_eq!(v(&s), 3);
    assert!(inst(&s, &i).is_primary);
    // Promotion alone (LEAD → CUSTOMER) is a change.
    let k = ts
        .register_personalized_with(ext_identity("k"), &flags(false, true, false))
        .await;
    assert_eq!(person_of(&ts.snapshot().await, &k).version, 2);
    ts.personalize_as(&k, "k").await;
    let s = ts.snapshot().await;
    assert_eq!(person_of(&s, &k).version, 3);
    assert_eq!(person_of(&s, &k).person_type, PersonType::Customer);
    ts.finish().await;
}

async fn query_booleans_of_personalize() {
    let ts = TestServer::start().await;
    let i = login_as(&ts, json!({"externalUserId": "u1"})).await;
    let s0 = ts.snapshot().await;
    let body = json!({"userIdentity": {"externalUserId": "u2"}});
    for query in [
        "keepAsLead=yes",
        "setDeviceAsPrimary=",
        "forceDepersonalize=2&keepAsLead=0",
    ] {
        let r = ts.personalize(&i, body.clone(), query).await;
        assert_unchanged(&ts, r, 400, "REQUEST_FORMAT_INVALID", &s0).await;
    }
    // The last occurrence wins; absent means false.
    let r = ts
        .personalize(&i, body.clone(), "forceDepersonalize=true&forceDepersonalize=false")
        .await;
    assert_unchanged(&ts, r, 409, "PERSONALIZATION_IMPOSSIBLE", &s0).await;
    let r = ts.personalize(&i, body.clone(), "").await;
    assert_unchanged(&ts, r, 409, "PERSONALIZATION_IMPOSSIBLE", &s0).await;
    // iOS spelling, sorted keys, any letter case.
    let u = ts
        .personalize_ok(
            &i,
            body.clone(),
            "forceDepersonalize=1&keepAsLead=0&setDeviceAsPrimary=TRUE&ri=1&rt=0",
        )
        .await;
    assert_eq!(u["externalUserId"], "u2");
    assert_eq!(instance(&u, &i)["isPrimary"], true);
    ts.finish().await;
}

async fn malformed_personalize_bodies_are_rejected_before_anything_else() {
    let ts = TestServer::start().await;
    let i = ts.register_android().await;
    let s0 = ts.snapshot().await;
    let cases = [
        (json!({"userIdentity": "u1"}), "userIdentity"),
        (
            json!({"userIdentity": {"phones": [{"number": 5}]}}),
            "userIdentity.phones[0].number",
        ),
        (
            json!({"userIdentity": {"externalUserId": 7}}),
            "userIdentity.externalUserId",
        ),
        (
            json!({"userIdentity": {"externalUserId": "u1"}, "userAttributes": {"tags": ["a", 2]}}),
            "userAttributes.tags[1]",
        ),
        (
            json!({"userIdentity": {"externalUserId": "u1"}, "userAttributes": []}),
            "userAttributes",
        ),
    ];
    for (body, path) in cases {
        let r = ts.personalize(&i, body.clone(), NO_FLAGS).await;
        assert!(r.text().contains(path), "{body}: {}", r.text());
        assert_unchanged(&ts, r, 400, "REQUEST_FORMAT_INVALID", &s0).await;
    }
    // Malformed JSON and a non-object body, also for an unknown caller (step 5 before step 6).
    let unknown = uuid::Uuid::new_v4().to_string();
    for id in [&i, &unknown] {
        for raw in [&b"{\"userIdentity\":"[..], b"[1]", b"\"x\""] {
            let r = ts
                .call_bytes(
                    "POST",
                    &format!("/mobile/1/appinstance/{id}/personalize"),
                    Some(id),
                    Some(raw.to_vec()),
                )
                .await;
            assert_unchanged(&ts, r, 400, "REQUEST_FORMAT_INVALID", &s0).await;
        }
    }
    ts.finish().await;
}

async fn rejected_personalize_leaves_no_auto_defined_attributes() {
    let ts = TestServer::start().await;
    login_as(&ts, json!({"externalUserId": "u1"})).await;
    login_as(&ts, json!({"emails": [{"address": "b@x.com"}]})).await;
    let p = login_as(&ts, json!({"externalUserId": "p"})).await;
    let i = ts.register_android().await;
    let s0 = ts.snapshot().await;
    let attrs = json!({"customAttributes": {"brandNew": 1, "another": "x"}, "tags": ["t"]});
    let cases = [
        (
            &i,
            json!({"externalUserId": "u1", "emails": [{"address": "b@x.com"}]}),
            NO_FLAGS.to_string(),
            409,
            "AMBIGUOUS_PERSONALIZE_CANDIDATES",
        ),
        (
            &p,
            json!({"externalUserId": "zz"}),
            NO_FLAGS.to_string(),
            409,
            "PERSONALIZATION_IMPOSSIBLE",
        ),
        (
            &i,
            json!({"externalUserId": "u9", "emails": [{"address": "b@x.com"}]}),
            NO_FLAGS.to_string(),
            200,
            "",
        ),
    ];
    for (id, identity, query, status, code) in cases {
        let r = ts
            .personalize(id, json!({"userIdentity": identity, "userAttributes": attrs}), &query)
            .await;
        if status == 200 {
            let s = ts.snapshot().await;
            assert!(s.attribute_definitions.iter().any(|d| d.name == "brandNew"));
            continue;
        }
        assert_unchanged(&ts, r, status, code, &s0).await;
        assert!(
            !ts.snapshot()
                .await
                .attribute_definitions
                .iter()
                .any(|d| d.name == "brandNew")
        );
    }
    ts.finish().await;
}

async fn identity_limits_hold_after_adding_k() {
    let ts = TestServer::start().await;
    let i = ts.register_android().await;
    let phones: Vec<Value> = (0..100).map(|k| json!({"number": format!("49301{k:05}")})).collect();
    patch_user(&ts, &i, &json!({"externalUserId": "u1", "phones": phones}))
        .await
        .ok();
    let s0 = ts.snapshot().await;
    // Adding a 101st phone through personalize breaks the limit: nothing changes.
    let r = ts
        .personalize(
            &i,
            json!({"userIdentity": {"externalUserId": "u1", "phones": [{"number": "385911234567"}]}}),
            NO_FLAGS,
        )
        .await;
    assert_unchanged(&ts, r, 400, "REQUEST_FORMAT_INVALID", &s0).await;
    // Re-sending owned keys is fine.
    personalize_k(&ts, &i, json!({"phones": [{"number": "4930100042"}]})).await;
    // 101 phones in one identity are refused too, for an anonymous installation.
    let k = ts.register_android().await;
    let s0 = ts.snapshot().await;
    let many: Vec<Value> = (0..101).map(|n| json!({"number": format!("38591{n:05}")})).collect();
    let r = ts
        .personalize(&k, json!({"userIdentity": {"phones": many}}), NO_FLAGS)
        .await;
    assert_unchanged(&ts, r, 400, "REQUEST_FORMAT_INVALID", &s0).await;
    ts.finish().await;
}

async fn unicode_email_keys_use_unicode_lowercase() {
    let ts = TestServer::start().await;
    let j = login_as(&ts, json!({"emails": [{"address": "Ärger@Straße.de"}]})).await;
    let i = ts.register_android().await;
    let u = personalize_k(&ts, &i, json!({"emails": [{"address": "ärger@STRAßE.DE"}]})).await;
    assert_eq!(u["emails"], json!([{"address": "Ärger@Straße.de"}]));
    let s = ts.snapshot().await;
    assert_eq!(person_of(&s, &i).id, person_of(&s, &j).id);
    ts.finish().await;
}

async fn merge_attributes_null_clear_after_fill() {
    let ts = TestServer::start().await;
    login(
        &ts,
        json!({"externalUserId": "t"}),
        json!({"tags": ["t"], "customAttributes": {"a": 1}}),
        NO_FLAGS,
    )
    .await;
    let i = ts.register_android().await;
    patch_user(
        &ts,
        &i,
        &json!({"tags": ["p"], "customAttributes": {"b": 2}, "firstName": "P"}),
    )
    .await
    .ok();
    let u = ts
        .personalize_ok(
            &i,
            json!({"userIdentity": {"externalUserId": "t"},
                   "userAttributes": {"tags": null, "customAttributes": null, "firstName": null}}),
            NO_FLAGS,
        )
        .await;
    assert_eq!(u["tags"], json!([]), "A's tags: null clears the united set");
    assert_eq!(u["customAttributes"], json!({}), "customAttributes: null deletes all");
    assert!(u.get("firstName").is_none(), "A's null clears the filled value");
    ts.finish().await;
}

async fn primary_in_another_application_does_not_count_for_the_move() {
    let ts = TestServer::start().await;
    let other = ts.other_app().await;
    let x = register_in(&ts, &other).await;
    personalize_in(&ts, &other, &x, &ext_identity("u1"), &flags(false, false, true)).await;
    let i = ts.register_primary("tok-app").await;
    let u = ts.personalize_as(&i, "u1").await;
    assert_eq!(instance_ids(&u), vec![i.clone()]);
    assert_eq!(
        instance(&u, &i)["isPrimary"],
        true,
        "T has no primary in this application"
    );
    let s = ts.snapshot().await;
    assert!(inst(&s, &x).is_primary);
    assert!(inst(&s, &i).is_primary);
    assert_eq!(
        *installation_before(&s, &i),
        InstallationBefore {
            is_primary: true,
            target_primary_push_reg_id: None
        }
    );
    ts.finish().await;
}

async fn forced_switch_with_set_primary_takes_over_target_primary() {
    let ts = TestServer::start().await;
    let j = login_as_primary(&ts, json!({"externalUserId": "u2"})).await;
    let i = login_as_primary(&ts, json!({"externalUserId": "u1"})).await;
    let u = ts
        .personalize_ok(&i, ext_identity("u2"), &flags(true, false, true))
        .await;
    assert_eq!(instance(&u, &i)["isPrimary"], true);
    assert_eq!(instance(&u, &j)["isPrimary"], false);
    let s = ts.snapshot().await;
    assert!(inst(&s, &i).is_primary);
    assert!(!inst(&s, &j).is_primary);
    let e = merges_of(&s, &i);
    assert_eq!(e.len(), 1);
    assert!(e[0].after_forced_depersonalize);
    ts.finish().await;
}

on_every_backend!(
    row01_anonymous_new_identity_receives_k_and_a,
    row02_anonymous_meets_existing_person_is_merged,
    row02_match_by_email_target_without_external_user_id_receives_it,
    row02_match_by_phone_without_external_user_id_in_k,
    row03_anonymous_external_user_id_contradicts_owner,
    row04_same_person_logs_in_again_with_new_key,
    row05_other_external_user_id_matched_by_email_without_force,
    row06_other_external_user_id_matched_by_email_with_force_rolls_back,
    row07_personalized_all_keys_new_without_force,
    row08_personalized_all_keys_new_with_force,
    row08_force_leaves_old_person_without_installation,
    row09_personalized_other_person_without_force,
    row10_personalized_other_person_with_force_merges_fresh_person,
    row10_with_force_but_contradicting_external_user_id_rolls_back,
    row11_two_candidates_are_ambiguous,
    row12_empty_identity_is_invalid,
    row13_keep_as_lead_keeps_lead_and_never_demotes_customer,
    row13_keep_as_lead_in_merges,
    row13_customer_source_makes_target_customer_and_surviving_source_is_logged,
    row14_set_device_as_primary_demotes_others_in_the_application,
    row15_without_set_primary_the_flag_is_kept_when_not_moving,
    row15_primary_moving_to_target_with_primary_loses_flag,
    primary_moving_to_target_without_primary_keeps_flag,
    primary_moving_to_target_with_primary_and_set_primary_takes_over,
    row15_forced_depersonalization_clears_flag_even_with_set_primary_false,
    row16_email_only_person_receives_external_user_id,
    merge_what_wins_then_attributes_override,
    merge_without_attributes_unites_tags,
    merge_custom_attribute_limit_drops_in_ascending_key_order,
    merge_attributes_beyond_limit_after_fill_are_rejected,
    repersonalize_ignores_query_flags,
    repersonalize_merges_like_personalize,
    phone_numbers_are_normalised_and_matched,
    emails_match_case_insensitively_and_are_stored_as_given,
    external_user_id_is_compared_exactly,
    identity_members_of_user_attributes_are_ignored,
    validation_order_of_personalize,
    user_json_lists_only_installations_of_the_calling_application,
    personalize_of_a_remote_target_is_forbidden,
    version_increments_only_on_change,
    query_booleans_of_personalize,
    malformed_personalize_bodies_are_rejected_before_anything_else,
    rejected_personalize_leaves_no_auto_defined_attributes,
    identity_limits_hold_after_adding_k,
    unicode_email_keys_use_unicode_lowercase,
    merge_attributes_null_clear_after_fill,
    primary_in_another_application_does_not_count_for_the_move,
    forced_switch_with_set_primary_takes_over_target_primary,
);
