//! GET and PATCH user over HTTP (mobile-api.md §5.6, §5.7): the user JSON of an anonymous
//! person, PATCH semantics people.md §6.1 row by row, the identity rules, the validation order
//! and the limits of people.md §3.7, and the caller/target rules of mobile-api.md §2.4.
mod common;

use common::{TestServer, ext_identity, people_helpers::*, tick, user_path};
use roster_model::PersonType;
use serde_json::{Value, json};

/// PATCH user, asserting 200; returns the user JSON.
async fn patch_ok(ts: &TestServer, id: &str, body: Value) -> Value {
    patch_user(ts, id, &body).await.ok().json()
}

async fn get_user_of_anonymous_person() {
    let ts = TestServer::start().await;
    let i = ts.register_android().await;
    let r = get_user(&ts, &i).await.ok();
    assert_eq!(r.headers["content-type"], "application/json");
    let u = r.json();
    assert_eq!(
        without_instances(&u),
        json!({"phones": [], "emails": [], "tags": [], "customAttributes": {}, "type": "LEAD"})
    );
    assert_eq!(instance_ids(&u), vec![i.clone()]);
    let own = instance(&u, &i);
    assert!(own["pushServiceToken"].is_string());
    assert_eq!(own["pushServiceType"], "Firebase");
    assert_eq!(own["regEnabled"], true);
    assert_eq!(own["isPrimary"], false);
    assert_eq!(own["customAttributes"], json!({}));
    // The ignored query parameters of the SDKs change nothing.
    let r = ts
        .call(
            "GET",
            &format!("/mobile/1/appinstance/{i}/user?ri=1&rt=0"),
            Some(&i),
            None,
        )
        .await
        .ok();
    assert_eq!(r.json(), u);
    // Without a pushregistrationid header the caller is the target.
    let r = ts.call("GET", &user_path(&i), None, None).await.ok();
    assert_eq!(r.json(), u);
    ts.finish().await;
}

async fn patch_absent_fields_are_kept() {
    let ts = TestServer::start().await;
    let i = ts.register_android().await;
    let u = patch_ok(
        &ts,
        &i,
        json!({"firstName": "Ana", "lastName": "Horvat", "tags": ["a"], "customAttributes": {"k": 1}}),
    )
    .await;
    let s0 = ts.snapshot().await;
    let v0 = person_of(&s0, &i).version;
    assert_eq!(v0, 2);
    let u2 = patch_ok(&ts, &i, json!({})).await;
    assert_eq!(u2, u, "PATCH {{}} changes nothing");
    assert_same_store(&s0, &ts.snapshot().await, "PATCH {} writes nothing (version unchanged)");
    let u3 = patch_ok(&ts, &i, json!({"middleName": "M"})).await;
    assert_eq!(u3["firstName"], "Ana");
    assert_eq!(u3["lastName"], "Horvat");
    assert_eq!(u3["middleName"], "M");
    assert_eq!(u3["tags"], json!(["a"]));
    assert_eq!(u3["customAttributes"], json!({"k": 1}));
    assert_eq!(person_of(&ts.snapshot().await, &i).version, v0 + 1);
    ts.finish().await;
}

async fn patch_null_and_empty_string_clear_scalars() {
    let ts = TestServer::start().await;
    let i = ts.register_android().await;
    let full =
        json!({"firstName": "Ana", "middleName": "M", "lastName": "H", "gender": "Female", "birthday": "1990-05-17"});
    let u = patch_ok(&ts, &i, full.clone()).await;
    for k in ["firstName", "middleName", "lastName", "gender", "birthday"] {
        assert_eq!(u[k], full[k]);
    }
    let u = patch_ok(
        &ts,
        &i,
        json!({"firstName": null, "middleName": "", "lastName": null, "gender": "", "birthday": null}),
    )
    .await;
    for k in ["firstName", "middleName", "lastName", "gender", "birthday"] {
        assert!(u.get(k).is_none(), "{k} cleared and omitted: {u}");
    }
    let p = person_of(&ts.snapshot().await, &i).clone();
    assert_eq!(p.first_name, None);
    assert_eq!(p.middle_name, None);
    assert_eq!(p.last_name, None);
    assert_eq!(p.gender, None);
    assert_eq!(p.birthday, None);
    patch_ok(&ts, &i, full.clone()).await;
    let u = patch_ok(&ts, &i, json!({"firstName": "", "birthday": ""})).await;
    assert!(u.get("firstName").is_none());
    assert!(u.get("birthday").is_none());
    assert_eq!(u["lastName"], "H");
    ts.finish().await;
}

async fn patch_external_user_id_null_strings_clear() {
    let ts = TestServer::start().await;
    let i = ts.register_android().await;
    for clear in [
        json!(null),
        json!(""),
        json!("null"),
        json!("NULL"),
        json!("Null"),
        json!("nUlL"),
    ] {
        let u = patch_ok(&ts, &i, json!({"externalUserId": "u1"})).await;
        assert_eq!(u["externalUserId"], "u1");
        let u = patch_ok(&ts, &i, json!({"externalUserId": clear})).await;
        assert!(u.get("externalUserId").is_none(), "{clear} clears: {u}");
        let s = ts.snapshot().await;
        assert_eq!(person_of(&s, &i).external_user_id, None);
        assert!(person_of(&s, &i).is_anonymous());
    }
    // "nullx" is an ordinary value.
    let u = patch_ok(&ts, &i, json!({"externalUserId": "nullx"})).await;
    assert_eq!(u["externalUserId"], "nullx");
    ts.finish().await;
}

async fn patch_lists_replace_and_clear() {
    let ts = TestServer::start().await;
    let i = ts.register_android().await;
    let u = patch_ok(
        &ts,
        &i,
        json!({"phones": [{"number": "385911234567"}, {"number": "4930123456"}],
               "emails": [{"address": "a@x.com"}, {"address": "b@x.com"}], "tags": ["x", "y"]}),
    )
    .await;
    assert_eq!(
        u["phones"],
        json!([{"number": "385911234567"}, {"number": "4930123456"}])
    );
    assert_eq!(u["emails"], json!([{"address": "a@x.com"}, {"address": "b@x.com"}]));
    assert_eq!(u["tags"], json!(["x", "y"]));
    let u = patch_ok(
        &ts,
        &i,
        json!({"phones": [{"number": "4930999999"}], "emails": [{"address": "c@x.com", "preferred": true}], "tags": ["z"]}),
    )
    .await;
    assert_eq!(
        u["phones"],
        json!([{"number": "4930999999"}]),
        "the whole list is replaced"
    );
    assert_eq!(
        u["emails"],
        json!([{"address": "c@x.com"}]),
        "extra members are never emitted"
    );
    assert_eq!(u["tags"], json!(["z"]));
    let u = patch_ok(&ts, &i, json!({"phones": null, "emails": [], "tags": null})).await;
    assert_eq!(u["phones"], json!([]));
    assert_eq!(u["emails"], json!([]));
    assert_eq!(u["tags"], json!([]));
    patch_ok(
        &ts,
        &i,
        json!({"phones": [{"number": "4930999999"}], "emails": [{"address": "c@x.com"}], "tags": ["z"]}),
    )
    .await;
    let u = patch_ok(&ts, &i, json!({"phones": [], "emails": null, "tags": []})).await;
    assert_eq!(without_instances(&u)["phones"], json!([]));
    assert_eq!(u["emails"], json!([]));
    assert_eq!(u["tags"], json!([]));
    let s = ts.snapshot().await;
    let p = person_of(&s, &i);
    assert!(p.phones.is_empty() && p.emails.is_empty() && p.tags.is_empty());
    assert!(p.is_anonymous());
    ts.finish().await;
}

async fn patch_duplicates_collapse_to_first_occurrence() {
    let ts = TestServer::start().await;
    let i = ts.register_android().await;
    let u = patch_ok(
        &ts,
        &i,
        json!({
            "phones": [{"number": "4930123456"}, {"number": "+385 91 123 4567"}, {"number": "49-30-123456"}, {"number": "385911234567"}],
            "emails": [{"address": "B@x.com"}, {"address": "a@x.com"}, {"address": "b@X.COM"}, {"address": " A@x.com "}],
            "tags": ["zeta", "Alpha", "beta", "zeta", "alpha", "Alpha", "ä", "Zeta"]
        }),
    )
    .await;
    assert_eq!(
        u["phones"],
        json!([{"number": "4930123456"}, {"number": "385911234567"}])
    );
    assert_eq!(u["emails"], json!([{"address": "B@x.com"}, {"address": "a@x.com"}]));
    assert_eq!(
        u["tags"],
        json!(["Alpha", "Zeta", "alpha", "beta", "zeta", "ä"]),
        "distinct, sorted by code point"
    );
    let s = ts.snapshot().await;
    let p = person_of(&s, &i);
    assert_eq!(p.phones, vec!["4930123456", "385911234567"]);
    assert_eq!(p.emails, vec!["B@x.com", "a@x.com"]);
    assert_eq!(p.tags.len(), 6);
    ts.finish().await;
}

async fn patch_custom_attributes_semantics() {
    let ts = TestServer::start().await;
    let i = ts.register_android().await;
    let u = patch_ok(
        &ts,
        &i,
        json!({"customAttributes": {"a": "x", "b": 2, "c": true, "d": "2024-02-29"}}),
    )
    .await;
    assert_eq!(
        u["customAttributes"],
        json!({"a": "x", "b": 2, "c": true, "d": "2024-02-29"})
    );
    // Merged per key: a value sets, null deletes, absent keys stay.
    let u = patch_ok(&ts, &i, json!({"customAttributes": {"b": 3, "c": null, "e": "new"}})).await;
    assert_eq!(
        u["customAttributes"],
        json!({"a": "x", "b": 3, "d": "2024-02-29", "e": "new"})
    );
    // {} is unchanged.
    let s0 = ts.snapshot().await;
    let u = patch_ok(&ts, &i, json!({"customAttributes": {}})).await;
    assert_eq!(
        u["customAttributes"],
        json!({"a": "x", "b": 3, "d": "2024-02-29", "e": "new"})
    );
    assert_same_store(&s0, &ts.snapshot().await, "no-op");
    // Deleting a key that does not exist is fine.
    patch_ok(&ts, &i, json!({"customAttributes": {"nope": null}})).await;
    // null deletes every attribute.
    let u = patch_ok(&ts, &i, json!({"customAttributes": null})).await;
    assert_eq!(u["customAttributes"], json!({}));
    assert!(person_of(&ts.snapshot().await, &i).custom_attributes.is_empty());
    // A value of the wrong type for its (auto-)definition is rejected.
    let s0 = ts.snapshot().await;
    let r = patch_user(&ts, &i, &json!({"customAttributes": {"b": "not a number"}})).await;
    assert!(r.text().contains("customAttributes.b"), "{}", r.text());
    assert_unchanged(&ts, r, 400, "REQUEST_FORMAT_INVALID", &s0).await;
    ts.finish().await;
}

async fn patch_type_and_instances_are_ignored() {
    let ts = TestServer::start().await;
    let i = ts.register_android().await;
    let s0 = ts.snapshot().await;
    let u = patch_ok(
        &ts,
        &i,
        json!({"type": "CUSTOMER", "instances": [{"pushRegId": "x", "isPrimary": true}], "unknown": {"a": 1}}),
    )
    .await;
    assert_eq!(u["type"], "LEAD");
    assert_eq!(instance(&u, &i)["isPrimary"], false);
    assert_same_store(&s0, &ts.snapshot().await, "nothing written");
    // Wrong JSON types of ignored members are ignored too.
    patch_ok(&ts, &i, json!({"type": 5, "instances": "x"})).await;
    // A CUSTOMER stays CUSTOMER.
    let c = ts.register_personalized("c1").await;
    let u = patch_ok(&ts, &c, json!({"type": "LEAD"})).await;
    assert_eq!(u["type"], "CUSTOMER");
    ts.finish().await;
}

async fn android_method_override_patch_example() {
    // mobile-api.md §7.2.
    let ts = TestServer::start().await;
    let a = ts
        .register_personalized_with(
            json!({"userIdentity": {"externalUserId": "cust-1001"},
                   "userAttributes": {"firstName": "Ana", "lastName": "Horvat", "tags": ["vip"],
                                      "customAttributes": {"favoriteColor": "green", "newsletter": true}}}),
            &flags(false, false, true),
        )
        .await;
    let body = br#"{"birthday":"1990-05-17","lastName":null,"phones":[{"number":"+385 91 123 4567"}],"customAttributes":{"favoriteColor":null,"loyaltyPoints":120}}"#;
    let auth = ts.app_auth();
    let r = ts
        .call_with(
            "POST",
            &user_path(&a),
            &[("authorization", &auth), ("x-http-method-override", "PATCH")],
            Some(&a),
            Some(body.to_vec()),
        )
        .await
        .ok();
    let u = r.json();
    assert_eq!(
        without_instances(&u),
        json!({"externalUserId": "cust-1001", "firstName": "Ana", "birthday": "1990-05-17",
               "phones": [{"number": "385911234567"}], "emails": [], "tags": ["vip"],
               "customAttributes": {"loyaltyPoints": 120, "newsletter": true}, "type": "CUSTOMER"})
    );
    assert_eq!(instance(&u, &a)["isPrimary"], true);
    ts.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Identity rules (people.md §6.1)
// ---------------------------------------------------------------------------------------------

async fn patch_new_key_owned_by_another_person_is_refused() {
    let ts = TestServer::start().await;
    let owner = ts
        .register_personalized_with(
            json!({"userIdentity": {"externalUserId": "owner", "phones": [{"number": "385911234567"}], "emails": [{"address": "Ana@X.com"}]}}),
            NO_FLAGS,
        )
        .await;
    let anon = ts.register_android().await;
    let other = ts.register_personalized("other").await;
    let s0 = ts.snapshot().await;
    for id in [&anon, &other] {
        for body in [
            json!({"externalUserId": "owner", "firstName": "X"}),
            json!({"phones": [{"number": "+385 91 123 4567"}], "firstName": "X"}),
            json!({"emails": [{"address": "ana@x.com"}], "firstName": "X"}),
            json!({"emails": [{"address": "free@x.com"}, {"address": "ANA@X.COM"}], "tags": ["t"]}),
        ] {
            let r = patch_user(&ts, id, &body).await;
            assert_unchanged(&ts, r, 409, "USER_MERGE_INTERRUPTED", &s0).await;
        }
    }
    // The owner itself may re-send its keys (no new key), even in another letter case.
    let u = patch_ok(
        &ts,
        &owner,
        json!({"emails": [{"address": "ANA@x.com"}], "phones": [{"number": "385911234567"}]}),
    )
    .await;
    assert_eq!(u["emails"], json!([{"address": "ANA@x.com"}]), "stored as given");
    ts.finish().await;
}

async fn patch_adds_identity_to_anonymous_person_which_stays_lead() {
    let ts = TestServer::start().await;
    let i = ts.register_android().await;
    let p0 = person_of(&ts.snapshot().await, &i).clone();
    let u = patch_ok(
        &ts,
        &i,
        json!({"externalUserId": "u1", "emails": [{"address": "a@x.com"}]}),
    )
    .await;
    assert_eq!(u["externalUserId"], "u1");
    assert_eq!(u["type"], "LEAD", "PATCH never changes type");
    let s = ts.snapshot().await;
    let p = person_of(&s, &i);
    assert_eq!(p.id, p0.id);
    assert!(!p.is_anonymous());
    assert_eq!(p.person_type, PersonType::Lead);
    assert!(s.merge_log.is_empty(), "PATCH never merges");
    // The keys are now owned: a personalize elsewhere finds this person.
    let j = ts
        .register_personalized_with(json!({"userIdentity": {"emails": [{"address": "A@X.com"}]}}), NO_FLAGS)
        .await;
    assert_eq!(person_of(&ts.snapshot().await, &j).id, p0.id);
    ts.finish().await;
}

async fn patch_removing_all_keys_makes_person_anonymous_again() {
    let ts = TestServer::start().await;
    let i = ts
        .register_personalized_with(
            json!({"userIdentity": {"externalUserId": "u1", "phones": [{"number": "4930123456"}], "emails": [{"address": "a@x.com"}]},
                   "userAttributes": {"firstName": "Ana"}}),
            NO_FLAGS,
        )
        .await;
    let p0 = person_of(&ts.snapshot().await, &i).clone();
    let u = patch_ok(&ts, &i, json!({"externalUserId": null, "phones": [], "emails": null})).await;
    assert_eq!(
        without_instances(&u),
        json!({"firstName": "Ana", "phones": [], "emails": [], "tags": [], "customAttributes": {}, "type": "CUSTOMER"}),
        "anonymous, keeps its data, a CUSTOMER never becomes LEAD again"
    );
    let s = ts.snapshot().await;
    let p = person_of(&s, &i);
    assert_eq!(p.id, p0.id);
    assert!(p.is_anonymous());
    assert_eq!(
        installations_of(&s, p.id).len(),
        1,
        "still owns the calling installation"
    );
    // Anonymous again: a personalize as a new identity is row 1 (no force needed).
    let u = ts.personalize_as(&i, "u2").await;
    assert_eq!(u["externalUserId"], "u2");
    assert_eq!(person_of(&ts.snapshot().await, &i).id, p0.id);
    ts.finish().await;
}

async fn patch_renames_external_user_id() {
    let ts = TestServer::start().await;
    let i = ts.register_personalized("u1").await;
    let p0 = person_of(&ts.snapshot().await, &i).clone();
    let u = patch_ok(&ts, &i, json!({"externalUserId": "u1-renamed"})).await;
    assert_eq!(u["externalUserId"], "u1-renamed");
    let s = ts.snapshot().await;
    assert_eq!(person_of(&s, &i).id, p0.id);
    assert_eq!(person_of(&s, &i).version, p0.version + 1);
    assert!(person_by_ext(&s, "u1").is_none());
    // The old id is free: personalizing another installation as u1 is a new person.
    let j = ts.register_personalized("u1").await;
    let s = ts.snapshot().await;
    assert_ne!(person_of(&s, &j).id, p0.id);
    // Renaming onto a taken id is refused.
    let r = patch_user(&ts, &i, &json!({"externalUserId": "u1"})).await;
    assert_unchanged(&ts, r, 409, "USER_MERGE_INTERRUPTED", &s).await;
    ts.finish().await;
}

async fn released_keys_can_be_claimed_by_others() {
    let ts = TestServer::start().await;
    let a = ts.register_android().await;
    patch_ok(
        &ts,
        &a,
        json!({"externalUserId": "ua", "phones": [{"number": "4930123456"}], "emails": [{"address": "Shared@X.com"}, {"address": "keep@x.com"}]}),
    )
    .await;
    let b = ts.register_android().await;
    let s0 = ts.snapshot().await;
    let r = patch_user(&ts, &b, &json!({"emails": [{"address": "shared@x.com"}]})).await;
    assert_unchanged(&ts, r, 409, "USER_MERGE_INTERRUPTED", &s0).await;
    // A releases the phone, one email and its externalUserId.
    patch_ok(
        &ts,
        &a,
        json!({"externalUserId": "ua2", "phones": null, "emails": [{"address": "keep@x.com"}]}),
    )
    .await;
    let u = patch_ok(
        &ts,
        &b,
        json!({"externalUserId": "ua", "phones": [{"number": "+49 30 123456"}], "emails": [{"address": "shared@x.com"}]}),
    )
    .await;
    assert_eq!(u["externalUserId"], "ua");
    assert_eq!(u["phones"], json!([{"number": "4930123456"}]));
    assert_eq!(u["emails"], json!([{"address": "shared@x.com"}]));
    let s = ts.snapshot().await;
    assert_ne!(person_of(&s, &a).id, person_of(&s, &b).id);
    assert_eq!(person_of(&s, &a).emails, vec!["keep@x.com"]);
    ts.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Validation (people.md §3.7, §6.1 validation order)
// ---------------------------------------------------------------------------------------------

async fn validation_order_reports_the_first_failing_field() {
    let ts = TestServer::start().await;
    let i = ts.register_android().await;
    let s0 = ts.snapshot().await;
    let long = |n: usize| "x".repeat(n);
    let cases = [
        (
            json!({"phones": [{"number": "12"}], "firstName": long(256)}),
            "REQUEST_FORMAT_INVALID",
            "firstName",
        ),
        (
            json!({"firstName": long(256), "externalUserId": long(257)}),
            "REQUEST_FORMAT_INVALID",
            "externalUserId",
        ),
        (
            json!({"lastName": long(256), "middleName": long(51)}),
            "REQUEST_FORMAT_INVALID",
            "middleName",
        ),
        (
            json!({"gender": "x", "lastName": long(256)}),
            "REQUEST_FORMAT_INVALID",
            "lastName",
        ),
        (
            json!({"birthday": "bad", "gender": "x"}),
            "REQUEST_FORMAT_INVALID",
            "gender",
        ),
        (
            json!({"phones": [{"number": "12"}], "birthday": "2023-02-29"}),
            "REQUEST_FORMAT_INVALID",
            "birthday",
        ),
        (
            json!({"emails": [{"address": "bad"}], "phones": [{"number": "4930123456"}, {"number": "999"}, {"number": "888"}]}),
            "PHONE_INVALID",
            "999",
        ),
        (
            json!({"tags": [""], "emails": [{"address": "a@x.com"}, {"address": "no-at"}]}),
            "EMAIL_INVALID",
            "no-at",
        ),
        (
            json!({"customAttributes": {"$bad": 1}, "tags": ["ok", ""]}),
            "REQUEST_FORMAT_INVALID",
            "tags",
        ),
        (
            json!({"customAttributes": {"first": {"an": "object"}, "$second": 1}}),
            "REQUEST_FORMAT_INVALID",
            "customAttributes.first",
        ),
    ];
    for (body, code, names) in cases {
        let r = patch_user(&ts, &i, &body).await;
        assert!(
            r.text().contains(names),
            "{body}: expected the error to name {names}: {}",
            r.text()
        );
        assert_unchanged(&ts, r, 400, code, &s0).await;
    }
    ts.finish().await;
}

async fn limits_of_standard_fields() {
    let ts = TestServer::start().await;
    let i = ts.register_android().await;
    let ok = [
        json!({"externalUserId": "x".repeat(256)}),
        json!({"externalUserId": " spaced id "}),
        json!({"firstName": "é".repeat(255), "lastName": "ß".repeat(255)}),
        json!({"middleName": "名".repeat(50)}),
        json!({"birthday": "2024-02-29"}),
        json!({"birthday": "0001-01-01"}),
        json!({"birthday": "9999-12-31"}),
    ];
    for body in ok {
        patch_ok(&ts, &i, body).await;
    }
    let u = patch_ok(&ts, &i, json!({"gender": "male"})).await;
    assert_eq!(u["gender"], "Male");
    let u = patch_ok(&ts, &i, json!({"gender": "FEMALE"})).await;
    assert_eq!(u["gender"], "Female");
    let s0 = ts.snapshot().await;
    let bad = [
        json!({"externalUserId": "x".repeat(257)}),
        json!({"externalUserId": "a\u{7}b"}),
        json!({"externalUserId": "tab\there"}),
        json!({"firstName": "x".repeat(256)}),
        json!({"lastName": "é".repeat(256)}),
        json!({"middleName": "x".repeat(51)}),
        json!({"gender": "m"}),
        json!({"gender": "other"}),
        json!({"birthday": "2023-02-29"}),
        json!({"birthday": "0000-01-01"}),
        json!({"birthday": "1990-5-17"}),
        json!({"birthday": "1990-05-17T00:00:00Z"}),
        json!({"birthday": "2024-13-01"}),
    ];
    for body in bad {
        let r = patch_user(&ts, &i, &body).await;
        assert_unchanged(&ts, r, 400, "REQUEST_FORMAT_INVALID", &s0).await;
    }
    ts.finish().await;
}

async fn limits_of_lists_and_attributes() {
    let ts = TestServer::start().await;
    let i = ts.register_android().await;
    let tags = |n: usize| (0..n).map(|k| format!("tag{k}")).collect::<Vec<_>>();
    let phones = |n: usize| {
        (0..n)
            .map(|k| json!({"number": format!("49301{k:05}")}))
            .collect::<Vec<_>>()
    };
    let emails = |n: usize| {
        (0..n)
            .map(|k| json!({"address": format!("e{k}@x.com")}))
            .collect::<Vec<_>>()
    };
    let attrs = |n: usize| {
        (0..n)
            .map(|k| (format!("a{k:03}"), json!(k)))
            .collect::<serde_json::Map<String, Value>>()
    };
    // Exactly at the limits.
    let mut dup_tags = tags(100);
    dup_tags.push("tag0".into());
    let u = patch_ok(
        &ts,
        &i,
        json!({"tags": dup_tags, "phones": phones(100), "emails": emails(100), "customAttributes": attrs(250)}),
    )
    .await;
    assert_eq!(
        u["tags"].as_array().unwrap().len(),
        100,
        "101 entries with a duplicate are 100 tags"
    );
    assert_eq!(u["phones"].as_array().unwrap().len(), 100);
    assert_eq!(u["emails"].as_array().unwrap().len(), 100);
    assert_eq!(u["customAttributes"].as_object().unwrap().len(), 250);
    patch_ok(&ts, &i, json!({"tags": ["y".repeat(255)]})).await;
    let s0 = ts.snapshot().await;
    let bad = [
        (json!({"tags": tags(101)}), "REQUEST_FORMAT_INVALID"),
        (json!({"tags": [""]}), "REQUEST_FORMAT_INVALID"),
        (json!({"tags": ["y".repeat(256)]}), "REQUEST_FORMAT_INVALID"),
        (json!({"phones": phones(101)}), "REQUEST_FORMAT_INVALID"),
        (json!({"emails": emails(101)}), "REQUEST_FORMAT_INVALID"),
        (
            json!({"emails": [{"address": format!("{}@{}.com", "a".repeat(64), "b".repeat(63) + "." + &"c".repeat(63) + "." + &"d".repeat(60))}]}),
            "EMAIL_INVALID",
        ),
        (json!({"customAttributes": {"one_more": 1}}), "REQUEST_FORMAT_INVALID"),
        (
            json!({"customAttributes": {"x".repeat(101): 1}}),
            "REQUEST_FORMAT_INVALID",
        ),
        (
            json!({"customAttributes": {"a000": null, "s": "z".repeat(4097)}}),
            "REQUEST_FORMAT_INVALID",
        ),
    ];
    for (body, code) in bad {
        let r = patch_user(&ts, &i, &body).await;
        assert_unchanged(&ts, r, 400, code, &s0).await;
    }
    // Counts are checked after the change: deleting one and adding one is fine.
    let u = patch_ok(&ts, &i, json!({"customAttributes": {"a000": null, "one_more": 1}})).await;
    assert_eq!(u["customAttributes"].as_object().unwrap().len(), 250);
    ts.finish().await;
}

// ---------------------------------------------------------------------------------------------
// Caller and target (mobile-api.md §2.4)
// ---------------------------------------------------------------------------------------------

async fn get_and_patch_user_of_a_remote_target_are_forbidden() {
    let ts = TestServer::start().await;
    let other_app = ts.other_app().await;
    let i = ts.register_personalized("u1").await;
    let same_person = ts.register_personalized("u1").await;
    let stranger = ts.register_personalized("u2").await;
    let foreign = register_in(&ts, &other_app).await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let s0 = ts.snapshot().await;
    for target in [&same_person, &stranger, &foreign, &unknown, &"not-a-uuid".to_string()] {
        let path = format!("/mobile/1/appinstance/{target}/user");
        let r = ts.call("GET", &path, Some(&i), None).await;
        assert_unchanged(&ts, r, 403, "FORBIDDEN_INSTALLATION", &s0).await;
        let r = ts
            .call("PATCH", &path, Some(&i), Some(&json!({"firstName": "X"})))
            .await;
        assert_unchanged(&ts, r, 403, "FORBIDDEN_INSTALLATION", &s0).await;
    }
    // An unknown caller (also an installation of another application) is NO_REGISTRATION.
    for caller in [&unknown, &foreign] {
        let r = get_user(&ts, caller).await;
        assert_unchanged(&ts, r, 404, "NO_REGISTRATION", &s0).await;
        let r = patch_user(&ts, caller, &json!({"firstName": "X"})).await;
        assert_unchanged(&ts, r, 404, "NO_REGISTRATION", &s0).await;
    }
    // The caller's id is matched case-insensitively.
    let upper = i.to_uppercase();
    let r = get_user(&ts, &upper).await.ok();
    assert_eq!(r.json()["externalUserId"], "u1");
    ts.finish().await;
}

async fn patch_user_response_lists_instances_of_the_calling_application() {
    let ts = TestServer::start().await;
    let other_app = ts.other_app().await;
    let i = ts.register_personalized("u1").await;
    tick().await;
    let j = ts.register_personalized("u1").await;
    let x = register_in(&ts, &other_app).await;
    let r = personalize_in(&ts, &other_app, &x, &ext_identity("u1"), "").await;
    assert_eq!(instance_ids(&r.json()), vec![x.clone()]);
    let u = patch_ok(&ts, &j, json!({"firstName": "A"})).await;
    assert_eq!(instance_ids(&u), vec![i.clone(), j.clone()]);
    assert!(instance(&u, &j)["pushServiceToken"].is_string());
    assert!(instance(&u, &i).get("pushServiceToken").is_none());
    ts.finish().await;
}

/// Responses never contain `null` (mobile-api.md §1.6).
fn assert_no_null(v: &Value, path: &str) {
    match v {
        Value::Null => panic!("null at {path}"),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| assert_no_null(x, &format!("{path}[{i}]"))),
        Value::Object(o) => o.iter().for_each(|(k, x)| assert_no_null(x, &format!("{path}.{k}"))),
        _ => {}
    }
}

async fn user_json_has_no_nulls_and_canonical_attribute_values() {
    let ts = TestServer::start().await;
    let i = ts.register_android().await;
    let u = patch_ok(
        &ts,
        &i,
        json!({"firstName": "A", "lastName": null, "gender": null, "customAttributes": {
            "whole": 120.0, "frac": 19.99, "when": "2020-02-26T09:41:57.123+00:00", "day": "2024-02-29", "flag": false
        }}),
    )
    .await;
    assert_no_null(&u, "$");
    assert_eq!(
        u["customAttributes"],
        json!({"day": "2024-02-29", "flag": false, "frac": 19.99, "whole": 120, "when": "2020-02-26T09:41:57Z"})
    );
    let raw = get_user(&ts, &i).await.ok().text();
    assert!(raw.contains(r#""whole":120"#) && !raw.contains("120.0"), "{raw}");
    assert_no_null(&serde_json::from_str(&raw).unwrap(), "$");
    ts.finish().await;
}

async fn refused_patch_leaves_no_auto_defined_attributes() {
    let ts = TestServer::start().await;
    ts.register_personalized("owner").await;
    let i = ts.register_android().await;
    let s0 = ts.snapshot().await;
    let r = patch_user(
        &ts,
        &i,
        &json!({"externalUserId": "owner", "customAttributes": {"fresh": 1}}),
    )
    .await;
    assert_unchanged(&ts, r, 409, "USER_MERGE_INTERRUPTED", &s0).await;
    let r = patch_user(&ts, &i, &json!({"customAttributes": {"fresh2": 1, "bad": [1]}})).await;
    assert_unchanged(&ts, r, 400, "REQUEST_FORMAT_INVALID", &s0).await;
    assert!(
        !ts.snapshot()
            .await
            .attribute_definitions
            .iter()
            .any(|d| d.name.starts_with("fresh"))
    );
    ts.finish().await;
}

on_every_backend!(
    get_user_of_anonymous_person,
    patch_absent_fields_are_kept,
    patch_null_and_empty_string_clear_scalars,
    patch_external_user_id_null_strings_clear,
    patch_lists_replace_and_clear,
    patch_duplicates_collapse_to_first_occurrence,
    patch_custom_attributes_semantics,
    patch_type_and_instances_are_ignored,
    android_method_override_patch_example,
    patch_new_key_owned_by_another_person_is_refused,
    patch_adds_identity_to_anonymous_person_which_stays_lead,
    patch_removing_all_keys_makes_person_anonymous_again,
    patch_renames_external_user_id,
    released_keys_can_be_claimed_by_others,
    validation_order_reports_the_first_failing_field,
    limits_of_standard_fields,
    limits_of_lists_and_attributes,
    get_and_patch_user_of_a_remote_target_are_forbidden,
    patch_user_response_lists_instances_of_the_calling_application,
    user_json_has_no_nulls_and_canonical_attribute_values,
    refused_patch_leaves_no_auto_defined_attributes,
);
