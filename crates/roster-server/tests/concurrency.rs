//! Concurrent requests (people.md §4, §5.1 step 8, §2.3, §11): many simultaneous
//! personalizations with overlapping identities, concurrent primary promotions, concurrent
//! registrations with one token, and concurrent claims of one identity key. Requests are sent
//! together over HTTP to a multi-threaded server; afterwards the store must be consistent.
mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{TestServer, ext_identity, people_helpers::*};
use futures::future::join_all;
use roster_model::TokenClearedReason;
use serde_json::json;

/// Registers `n` Firebase installations concurrently.
async fn register_many(ts: &TestServer, n: usize) -> Vec<String> {
    join_all((0..n).map(|_| ts.register_android())).await
}

/// How many installations of `ids` are primary in the snapshot.
fn primaries(s: &roster_store::Snapshot, ids: &[String]) -> Vec<String> {
    ids.iter().filter(|i| inst(s, i).is_primary).cloned().collect()
}

async fn fifty_concurrent_personalizations_with_overlapping_identities() {
    let ts = TestServer::start().await;
    const N: usize = 60;
    const GROUPS: usize = 5;
    let ids = register_many(&ts, N).await;
    let group = |n: usize| n % GROUPS;
    let with_email = |n: usize| n.is_multiple_of(3);
    let responses = join_all(ids.iter().enumerate().map(|(n, id)| {
        let g = group(n);
        let mut identity = json!({"externalUserId": format!("g{g}")});
        if with_email(n) {
            identity["emails"] = json!([{"address": format!("G{g}@x.com")}]);
        }
        let attrs = json!({"tags": [format!("t{n}")], "customAttributes": {format!("n{n}"): n as i64}});
        let query = flags(false, n.is_multiple_of(4), n.is_multiple_of(7));
        let ts = &ts;
        async move {
            ts.personalize(id, json!({"userIdentity": identity, "userAttributes": attrs}), &query)
                .await
        }
    }))
    .await;
    for (n, r) in responses.iter().enumerate() {
        assert_eq!(r.status, 200, "request {n}: {}", r.text());
        assert_eq!(r.json()["externalUserId"], format!("g{}", group(n)));
    }

    let s = ts.snapshot().await;
    assert_eq!(s.persons.len(), GROUPS, "exactly one person per identity group");
    let mut owners = BTreeMap::new();
    for g in 0..GROUPS {
        let p = person_by_ext(&s, &format!("g{g}")).unwrap_or_else(|| panic!("nobody owns g{g}"));
        owners.insert(g, p.id);
        let email_sent = (0..N).any(|n| group(n) == g && with_email(n));
        assert_eq!(
            p.emails.clone(),
            if email_sent {
                vec![format!("G{g}@x.com")]
            } else {
                vec![]
            },
            "group {g} owns its email"
        );
    }
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(
            inst(&s, id).person_id,
            owners[&group(n)],
            "installation {n} is under the person owning g{}",
            group(n)
        );
    }
    // Every group started with one installation's own person (row 1); every other request of
    // the group merged its anonymous person into it (row 2): one entry each (invariant 18).
    assert_eq!(s.merge_log.len(), N - GROUPS);
    let logged: BTreeSet<&str> = s.merge_log.iter().map(|e| e.push_reg_id.as_str()).collect();
    assert_eq!(logged.len(), N - GROUPS, "at most one entry per installation");
    for e in &s.merge_log {
        let n = ids.iter().position(|i| *i == e.push_reg_id).unwrap();
        assert_eq!(e.target_person_id, Some(owners[&group(n)]));
        assert!(e.source_deleted);
    }
    for g in 0..GROUPS {
        let mine: Vec<String> = (0..N).filter(|n| group(*n) == g).map(|n| ids[n].clone()).collect();
        assert!(primaries(&s, &mine).len() <= 1);
        // Custom attributes of every request of the group arrived (A is applied per key).
        let p = person_by_ext(&s, &format!("g{g}")).unwrap();
        for n in (0..N).filter(|n| group(*n) == g) {
            assert_eq!(
                p.custom_attributes.get(&format!("n{n}")),
                Some(&json!(n)),
                "n{n} of group {g}"
            );
        }
    }
    ts.finish().await;
}

async fn concurrent_personalizations_with_one_new_email_end_on_one_person() {
    let ts = TestServer::start().await;
    let ids = register_many(&ts, 25).await;
    let t = &ts;
    let responses = join_all(ids.iter().map(|id| async move {
        t.personalize(
            id,
            json!({"userIdentity": {"emails": [{"address": "same@x.com"}]}}),
            &flags(false, false, true),
        )
        .await
    }))
    .await;
    for r in &responses {
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let s = ts.snapshot().await;
    assert_eq!(s.persons.len(), 1);
    let p = &s.persons[0];
    assert_eq!(p.emails, vec!["same@x.com"]);
    for id in &ids {
        assert_eq!(inst(&s, id).person_id, p.id);
    }
    assert_eq!(
        primaries(&s, &ids).len(),
        1,
        "every request set its device primary: one wins"
    );
    assert_eq!(s.merge_log.len(), ids.len() - 1);
    ts.finish().await;
}

async fn concurrent_primary_promotions_end_with_exactly_one_primary() {
    let ts = TestServer::start().await;
    let ids = register_many(&ts, 12).await;
    for id in &ids {
        ts.personalize_as(id, "u1").await;
    }
    for round in 0..3 {
        // Each installation promotes itself and, remotely, its neighbour.
        let t = &ts;
        let ids_ref = &ids;
        let own = ids.iter().map(|id| (id, id));
        let remote = ids
            .iter()
            .enumerate()
            .map(|(n, id)| (&ids_ref[(n + 1) % ids_ref.len()], id));
        let responses = join_all(own.chain(remote).map(|(target, caller)| async move {
            patch_installation(t, target, caller, &json!({"isPrimary": true})).await
        }))
        .await;
        for r in &responses {
            assert_eq!(r.status, 200, "round {round}: {}", r.text());
            assert_eq!(r.json()["isPrimary"], true);
        }
        let s = ts.snapshot().await;
        assert_eq!(primaries(&s, &ids).len(), 1, "round {round}: exactly one primary");
        ts.check_invariants().await;
    }
    // Concurrent personalizations with setDeviceAsPrimary into the same person.
    let fresh = register_many(&ts, 10).await;
    let t = &ts;
    let responses = join_all(
        fresh
            .iter()
            .map(|id| async move { t.personalize(id, ext_identity("u1"), &flags(false, false, true)).await }),
    )
    .await;
    for r in &responses {
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let all: Vec<String> = ids.iter().chain(fresh.iter()).cloned().collect();
    let s = ts.snapshot().await;
    let p = person_by_ext(&s, "u1").unwrap().id;
    assert!(all.iter().all(|i| inst(&s, i).person_id == p));
    let winners = primaries(&s, &all);
    assert_eq!(winners.len(), 1, "exactly one primary: {winners:?}");
    assert!(
        fresh.contains(&winners[0]),
        "the last promotion came from a setDeviceAsPrimary personalize"
    );
    ts.finish().await;
}

async fn concurrent_registrations_with_the_same_token_end_with_one_holder() {
    let ts = TestServer::start().await;
    // Firebase and GCM are the same provider (FCM).
    let t = &ts;
    let responses = join_all((0..30usize).map(|n| async move {
        let kind = if n.is_multiple_of(3) { "GCM" } else { "Firebase" };
        t.create(
            &json!({"pushServiceType": kind, "pushServiceToken": "shared-fcm-token", "isPrimary": n.is_multiple_of(2)}),
        )
        .await
    }))
    .await;
    let mut ids = Vec::new();
    for r in &responses {
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["pushServiceToken"], "shared-fcm-token");
        ids.push(r.json()["pushRegId"].as_str().unwrap().to_string());
    }
    let s = ts.snapshot().await;
    let holders: Vec<&String> = ids
        .iter()
        .filter(|i| inst(&s, i).push_service_token.is_some())
        .collect();
    assert_eq!(holders.len(), 1, "exactly one holder: {holders:?}");
    for id in &ids {
        let i = inst(&s, id);
        if i.push_service_token.is_none() {
            assert_eq!(i.token_cleared_reason, Some(TokenClearedReason::TakenOver));
            assert!(i.token_cleared_at.is_some());
        }
    }
    // APNs tokens compare case-insensitively and are stored lowercase.
    let responses = join_all((0..15usize).map(|n| async move {
        let token = if n.is_multiple_of(2) {
            "ABCDEF0123456789"
        } else {
            "abcdef0123456789"
        };
        t.create(&json!({"pushServiceType": "APNS", "pushServiceToken": token}))
            .await
    }))
    .await;
    let apns: Vec<String> = responses
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(r.json()["pushServiceToken"], "abcdef0123456789");
            r.json()["pushRegId"].as_str().unwrap().to_string()
        })
        .collect();
    let s = ts.snapshot().await;
    let holders = apns.iter().filter(|i| inst(&s, i).push_service_token.is_some()).count();
    assert_eq!(holders, 1);
    // Existing installations taking one token by PATCH at the same time.
    let existing = register_many(&ts, 20).await;
    let responses =
        join_all(existing.iter().map(|id| async move {
            patch_installation(t, id, id, &json!({"pushServiceToken": "patched-token"})).await
        }))
        .await;
    for r in &responses {
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let s = ts.snapshot().await;
    let holders = existing
        .iter()
        .filter(|i| inst(&s, i).push_service_token.as_deref() == Some("patched-token"))
        .count();
    assert_eq!(holders, 1);
    ts.finish().await;
}

async fn concurrent_patches_claiming_one_key_have_one_winner() {
    let ts = TestServer::start().await;
    let ids = register_many(&ts, 20).await;
    let t = &ts;
    let responses = join_all(ids.iter().map(|id| async move {
        patch_user(
            t,
            id,
            &json!({"emails": [{"address": "Claim@X.com"}], "firstName": "F"}),
        )
        .await
    }))
    .await;
    let mut winners = Vec::new();
    for (n, r) in responses.iter().enumerate() {
        if r.status == 200 {
            winners.push(n);
        } else {
            r.assert_error(409, "USER_MERGE_INTERRUPTED");
        }
    }
    assert_eq!(winners.len(), 1, "exactly one PATCH claims the key");
    let s = ts.snapshot().await;
    let owners: Vec<_> = s.persons.iter().filter(|p| !p.emails.is_empty()).collect();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].id, inst(&s, &ids[winners[0]]).person_id);
    // The losers changed nothing (their firstName was not written either).
    let named = s.persons.iter().filter(|p| p.first_name.is_some()).count();
    assert_eq!(named, 1);
    assert!(s.merge_log.is_empty(), "PATCH never merges");
    ts.finish().await;
}

async fn concurrent_logins_and_logouts_keep_invariants() {
    let ts = TestServer::start().await;
    let ids = register_many(&ts, 30).await;
    for id in &ids {
        ts.personalize_as(id, "storm").await;
    }
    // Own logouts, remote logouts, re-logins with setDeviceAsPrimary and promotions, together.
    let ops = ids.iter().enumerate().map(|(n, id)| {
        let ts = &ts;
        let ids = &ids;
        async move {
            let r = match n % 4 {
                0 => depersonalize(ts, id, id).await,
                1 => depersonalize(ts, &ids[(n + 1) % ids.len()], id).await,
                2 => {
                    ts.personalize(id, ext_identity("storm"), &flags(false, false, true))
                        .await
                }
                _ => patch_installation(ts, id, id, &json!({"isPrimary": true})).await,
            };
            (n, r)
        }
    });
    let responses = join_all(ops).await;
    for (n, r) in &responses {
        // A remote logout may find its target already gone from the person: 403 is allowed.
        if r.status != 200 {
            assert_eq!(n % 4, 1, "op {n}: {}", r.text());
            r.assert_error(403, "FORBIDDEN_INSTALLATION");
        }
    }
    let s = ts.snapshot().await;
    let p = person_by_ext(&s, "storm").unwrap().id;
    let still: Vec<String> = ids.iter().filter(|i| inst(&s, i).person_id == p).cloned().collect();
    assert!(primaries(&s, &still).len() <= 1);
    for id in &ids {
        let i = inst(&s, id);
        if i.person_id != p {
            let owner = person_of(&s, id);
            assert!(
                owner.is_anonymous(),
                "a logged-out installation is on an anonymous person"
            );
            assert_eq!(installations_of(&s, owner.id).len(), 1);
            assert!(!i.is_primary);
        }
    }
    ts.finish().await;
}

on_every_backend!(multi_thread:
    fifty_concurrent_personalizations_with_overlapping_identities,
    concurrent_personalizations_with_one_new_email_end_on_one_person,
    concurrent_primary_promotions_end_with_exactly_one_primary,
    concurrent_registrations_with_the_same_token_end_with_one_holder,
    concurrent_patches_claiming_one_key_have_one_winner,
    concurrent_logins_and_logouts_keep_invariants,
);
