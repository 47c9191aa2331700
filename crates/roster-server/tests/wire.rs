//! Transport and wire quirks (mobile-api.md §1 and the §6 checklist): method override, query
//! booleans, body-less POSTs, Content-Type tolerance, path normalisation, case-insensitive ids,
//! response framing and headers, the stub endpoints, duplicate keys, unknown fields, base path.
mod common;

use common::{
    NO_FLAGS, RawResponse, Resp, TestServer, ext_identity, ipath,
    people_helpers::{depersonalize, get_user, patch_user, person_of},
    raw_request, user_path,
};
use serde_json::{Value, json};

// ----- helpers ------------------------------------------------------------------------------

/// A raw request relative to the server's base path.
async fn raw(ts: &TestServer, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> RawResponse {
    let full = format!("{}{}", ts.server.state.base_path, path);
    ts.raw(&raw_request(method, &full, headers, body)).await
}

/// mobile-api.md §1.6 on a raw response: explicit Content-Length equal to the body, never
/// chunked, never compressed, no New-Base-URL, no cookies, an X-Request-Id; JSON bodies carry
/// exactly `application/json`, empty bodies no Content-Type.
fn assert_framing(r: &RawResponse) {
    let cl = r
        .header("content-length")
        .unwrap_or_else(|| panic!("no content-length: {:?}", r.headers));
    assert_eq!(cl, r.body.len().to_string(), "content-length matches the body");
    assert!(
        r.header("transfer-encoding").is_none(),
        "never chunked: {:?}",
        r.headers
    );
    assert!(
        r.header("content-encoding").is_none(),
        "never compressed: {:?}",
        r.headers
    );
    assert!(r.header("new-base-url").is_none(), "never New-Base-URL");
    assert!(r.header("set-cookie").is_none(), "no cookies");
    assert!(
        r.header("x-request-id").is_some_and(|v| !v.is_empty()),
        "x-request-id present: {:?}",
        r.headers
    );
    if r.body.is_empty() {
        assert!(
            r.header("content-type").is_none(),
            "empty body has no content-type: {:?}",
            r.headers
        );
    } else {
        assert_eq!(r.header("content-type"), Some("application/json"));
        let _ = r.json();
    }
}

fn allow_methods(r: &Resp) -> Vec<String> {
    let v = r.headers.get("allow").expect("Allow header").to_str().unwrap();
    v.split(',').map(|m| m.trim().to_string()).collect()
}

// ----- §6.1 method override --------------------------------------------------------------------

async fn post_with_method_override_patch_is_a_patch() {
    let ts = TestServer::start().await;
    let id = ts.register_android().await;
    let auth = ts.app_auth();
    // Exact header value.
    let r = ts
        .call_with(
            "POST",
            &ipath(&id),
            &[("authorization", &auth), ("X-HTTP-Method-Override", "PATCH")],
            Some(&id),
            Some(br#"{"language":"en"}"#.to_vec()),
        )
        .await
        .ok();
    assert_eq!(r.json()["language"], "en");
    // Any case, surrounding whitespace ignored (raw, so nothing normalises the value).
    let body = br#"{"language":"fr"}"#;
    let r = raw(
        &ts,
        "POST",
        &ipath(&id),
        &[
            ("Authorization", &auth),
            ("X-Http-Method-Override", "  pAtCh \t"),
            ("Content-Type", "application/json"),
        ],
        Some(body),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["language"], "fr");
    // On the user path too.
    let r = ts
        .call_with(
            "POST",
            &user_path(&id),
            &[("authorization", &auth), ("x-http-method-override", "patch")],
            Some(&id),
            Some(br#"{"firstName":"Ovr"}"#.to_vec()),
        )
        .await
        .ok();
    assert_eq!(r.json()["firstName"], "Ovr");
    ts.finish().await;
}

async fn bad_method_override_is_405_and_changes_nothing() {
    let ts = TestServer::start().await;
    let id = ts.register_android().await;
    let auth = ts.app_auth();
    let before = ts.snapshot().await;
    let body = Some(br#"{"language":"de"}"#.to_vec());
    // On GET.
    let r = ts
        .call_with(
            "GET",
            &ipath(&id),
            &[("authorization", &auth), ("x-http-method-override", "PATCH")],
            Some(&id),
            None,
        )
        .await;
    r.assert_error(405, "METHOD_NOT_ALLOWED");
    let allow = allow_methods(&r);
    for m in ["GET", "PATCH", "DELETE"] {
        assert!(allow.iter().any(|a| a == m), "Allow {allow:?} lacks {m}");
    }
    // On POST with another value.
    for value in ["PUT", "GET", "DELETE", "PATCHX", ""] {
        let r = ts
            .call_with(
                "POST",
                &ipath(&id),
                &[("authorization", &auth), ("x-http-method-override", value)],
                Some(&id),
                body.clone(),
            )
            .await;
        r.assert_error(405, "METHOD_NOT_ALLOWED");
        assert!(r.headers.get("allow").is_some());
    }
    // On a real PATCH and on DELETE.
    ts.call_with(
        "PATCH",
        &ipath(&id),
        &[("authorization", &auth), ("x-http-method-override", "PATCH")],
        Some(&id),
        body.clone(),
    )
    .await
    .assert_error(405, "METHOD_NOT_ALLOWED");
    let other = ts.register_android().await;
    let before_delete = ts.snapshot().await;
    ts.call_with(
        "DELETE",
        &ipath(&other),
        &[("authorization", &auth), ("x-http-method-override", "PATCH")],
        Some(&id),
        None,
    )
    .await
    .assert_error(405, "METHOD_NOT_ALLOWED");
    assert_eq!(ts.snapshot().await, before_delete);
    // The override on a POST-only route: the effective PATCH is not allowed there.
    ts.call_with(
        "POST",
        &format!("{}/personalize", ipath(&id)),
        &[("authorization", &auth), ("x-http-method-override", "PATCH")],
        Some(&id),
        Some(br#"{"userIdentity":{"externalUserId":"x"}}"#.to_vec()),
    )
    .await
    .assert_error(405, "METHOD_NOT_ALLOWED");
    let s = ts.snapshot().await;
    assert_eq!(
        s.installations.iter().find(|i| i.push_reg_id == id),
        before.installations.iter().find(|i| i.push_reg_id == id)
    );
    assert!(s.persons.iter().all(|p| p.external_user_id.is_none()));
    ts.finish().await;
}

async fn plain_post_to_a_patch_path_is_405() {
    let ts = TestServer::start().await;
    let id = ts.register_android().await;
    let before = ts.snapshot().await;
    let r = ts
        .call("POST", &ipath(&id), Some(&id), Some(&json!({"language": "de"})))
        .await;
    r.assert_error(405, "METHOD_NOT_ALLOWED");
    assert!(allow_methods(&r).iter().any(|m| m == "PATCH"));
    let r = ts
        .call("POST", &user_path(&id), Some(&id), Some(&json!({"firstName": "X"})))
        .await;
    r.assert_error(405, "METHOD_NOT_ALLOWED");
    let allow = allow_methods(&r);
    assert!(
        allow.iter().any(|m| m == "GET") && allow.iter().any(|m| m == "PATCH"),
        "{allow:?}"
    );
    // Other methods on other routes.
    let r = ts.call("GET", "/mobile/1/appinstance", None, None).await;
    r.assert_error(405, "METHOD_NOT_ALLOWED");
    assert_eq!(allow_methods(&r), vec!["POST".to_string()]);
    ts.call("PUT", &ipath(&id), Some(&id), None)
        .await
        .assert_error(405, "METHOD_NOT_ALLOWED");
    ts.call("POST", "/mobile/1/baseurl", None, None)
        .await
        .assert_error(405, "METHOD_NOT_ALLOWED");
    ts.call("GET", &format!("{}/depersonalize", ipath(&id)), Some(&id), None)
        .await
        .assert_error(405, "METHOD_NOT_ALLOWED");
    assert_eq!(ts.snapshot().await, before);
    ts.finish().await;
}

// ----- §6.2/§6.3 query parameters ---------------------------------------------------------------

async fn query_booleans_accept_true_false_1_0_any_case_any_order() {
    let ts = TestServer::start().await;
    let cases = [
        // (query, expected type, expected primary)
        (
            "setDeviceAsPrimary=true&keepAsLead=false&forceDepersonalize=true",
            "CUSTOMER",
            true,
        ),
        ("forceDepersonalize=0&keepAsLead=1&setDeviceAsPrimary=1", "LEAD", true),
        (
            "forceDepersonalize=FALSE&keepAsLead=TRUE&setDeviceAsPrimary=False",
            "LEAD",
            false,
        ),
        ("keepAsLead=0&setDeviceAsPrimary=0", "CUSTOMER", false),
        ("", "CUSTOMER", false),
    ];
    for (n, (q, ty, primary)) in cases.iter().enumerate() {
        let id = ts.register_android().await;
        let r = ts
            .personalize_ok(&id, json!({"userIdentity": {"externalUserId": format!("qb-{n}")}}), q)
            .await;
        assert_eq!(r["type"], *ty, "query {q}");
        assert_eq!(r["instances"][0]["isPrimary"], *primary, "query {q}");
    }
    // forceDepersonalize=1 does force.
    let id = ts.register_personalized("force-a").await;
    let r = ts
        .personalize_ok(
            &id,
            ext_identity("force-b"),
            "forceDepersonalize=1&keepAsLead=0&setDeviceAsPrimary=0",
        )
        .await;
    assert_eq!(r["externalUserId"], "force-b");
    ts.finish().await;
}

async fn repeated_query_parameter_last_wins() {
    let ts = TestServer::start().await;
    let a = ts.register_android().await;
    let r = ts
        .personalize_ok(
            &a,
            ext_identity("rep-a"),
            "keepAsLead=1&setDeviceAsPrimary=true&keepAsLead=0&setDeviceAsPrimary=false",
        )
        .await;
    assert_eq!(r["type"], "CUSTOMER");
    assert_eq!(r["instances"][0]["isPrimary"], false);
    let b = ts.register_android().await;
    let r = ts
        .personalize_ok(
            &b,
            ext_identity("rep-b"),
            "keepAsLead=0&keepAsLead=true&setDeviceAsPrimary=0&setDeviceAsPrimary=1",
        )
        .await;
    assert_eq!(r["type"], "LEAD");
    assert_eq!(r["instances"][0]["isPrimary"], true);
    ts.finish().await;
}

async fn bad_query_boolean_is_400_naming_the_parameter() {
    let ts = TestServer::start().await;
    let id = ts.register_android().await;
    let before = ts.snapshot().await;
    for (q, name) in [
        ("keepAsLead=&setDeviceAsPrimary=0&forceDepersonalize=0", "keepAsLead"),
        (
            "keepAsLead=0&setDeviceAsPrimary=yes&forceDepersonalize=0",
            "setDeviceAsPrimary",
        ),
        ("forceDepersonalize=2", "forceDepersonalize"),
        ("forceDepersonalize=truee", "forceDepersonalize"),
        // The last occurrence is the one that counts (and is bad here).
        ("keepAsLead=1&keepAsLead=no", "keepAsLead"),
    ] {
        let r = ts.personalize(&id, ext_identity("bq"), q).await;
        r.assert_error(400, "REQUEST_FORMAT_INVALID");
        assert!(r.text().contains(name), "{q}: text {} names {name}", r.text());
    }
    assert_eq!(ts.snapshot().await, before);
    ts.finish().await;
}

async fn unknown_and_ignored_query_parameters_are_ignored() {
    let ts = TestServer::start().await;
    let r = ts
        .call(
            "POST",
            "/mobile/1/appinstance?ri=true&rt=1&validate=true&foo=bar&platformType=GCM&deviceApplicationInstanceId=x",
            None,
            Some(&json!({"pushServiceType": "Firebase", "pushServiceToken": "qp-1"})),
        )
        .await
        .ok();
    let id = r.json()["pushRegId"].as_str().unwrap().to_string();
    ts.call("GET", &format!("{}?rt=1&zzz", ipath(&id)), Some(&id), None)
        .await
        .ok();
    ts.call("GET", &format!("{}/user?ri=1&rt=0", ipath(&id)), Some(&id), None)
        .await
        .ok();
    ts.personalize_ok(
        &id,
        ext_identity("qp"),
        "ri=1&rt=0&forceDepersonalize=0&keepAsLead=0&setDeviceAsPrimary=0&other=whatever",
    )
    .await;
    // Repersonalize ignores any query, even flags with bad values.
    let r = ts
        .call(
            "POST",
            &format!("{}/repersonalize?keepAsLead=yes&setDeviceAsPrimary=1", ipath(&id)),
            Some(&id),
            Some(&json!({"userIdentity": {"externalUserId": "qp"}})),
        )
        .await
        .ok()
        .json();
    assert_eq!(r["type"], "CUSTOMER");
    assert_eq!(
        r["instances"][0]["isPrimary"], false,
        "repersonalize never sets primary"
    );
    ts.finish().await;
}

// ----- §6.4/§6.5 body-less POSTs and Content-Type ---------------------------------------------------

async fn depersonalize_without_content_length_or_content_type_android() {
    let ts = TestServer::start().await;
    let id = ts.register_personalized("android-logout").await;
    let auth = ts.app_auth();
    let path = format!("{}{}/depersonalize", ts.server.state.base_path, ipath(&id));
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\npushregistrationid: {id}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    let r = ts.raw(req.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-length"), Some("0"));
    assert!(r.body.is_empty());
    assert_framing(&r);
    let u = get_user(&ts, &id).await.ok().json();
    assert!(u.get("externalUserId").is_none(), "depersonalized: {u}");
    assert_eq!(u["type"], "LEAD");
    ts.finish().await;
}

async fn depersonalize_with_json_content_type_and_empty_body_ios() {
    let ts = TestServer::start().await;
    let id = ts.register_personalized("ios-logout").await;
    let auth = ts.app_auth();
    let r = raw(
        &ts,
        "POST",
        &format!("{}/depersonalize", ipath(&id)),
        &[
            ("Authorization", &auth),
            ("pushregistrationid", &id),
            ("Content-Type", "application/json"),
        ],
        Some(b""),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_framing(&r);
    assert!(r.body.is_empty());
    // Any body is ignored, even one that is not JSON.
    ts.personalize_as(&id, "ios-logout").await;
    let r = raw(
        &ts,
        "POST",
        &format!("{}/depersonalize", ipath(&id)),
        &[("Authorization", &auth), ("pushregistrationid", &id)],
        Some(b"this is not json"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(person_of(&ts.snapshot().await, &id).is_anonymous());
    ts.finish().await;
}

async fn json_bodies_are_parsed_whatever_the_content_type() {
    let ts = TestServer::start().await;
    let id = ts.register_android().await;
    let auth = ts.app_auth();
    for (ct, lang) in [
        (None, "aa"),
        (Some("application/json; charset=utf-8"), "bb"),
        (Some("text/plain"), "cc"),
        (Some("application/x-www-form-urlencoded"), "dd"),
    ] {
        let body = format!(r#"{{"language":"{lang}"}}"#);
        let mut headers: Vec<(&str, &str)> = vec![("Authorization", &auth), ("pushregistrationid", &id)];
        if let Some(ct) = ct {
            headers.push(("Content-Type", ct));
        }
        let r = raw(&ts, "PATCH", &ipath(&id), &headers, Some(body.as_bytes())).await;
        assert_eq!(r.status, 200, "{ct:?}: {}", r.text());
        assert_eq!(r.json()["language"], lang);
    }
    // Create without Content-Type.
    let r = raw(
        &ts,
        "POST",
        "/mobile/1/appinstance",
        &[("Authorization", &auth)],
        Some(br#"{"os":"NoCT"}"#),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["os"], "NoCT");
    ts.finish().await;
}

async fn chunked_request_bodies_are_accepted() {
    let ts = TestServer::start().await;
    let id = ts.register_android().await;
    let auth = ts.app_auth();
    let path = format!("{}{}", ts.server.state.base_path, ipath(&id));
    let req = format!(
        "PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\npushregistrationid: {id}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n8\r\n{{\"langua\r\n9\r\nge\":\"ch\"}}\r\n0\r\n\r\n"
    );
    let r = ts.raw(req.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_framing(&r);
    assert_eq!(r.json()["language"], "ch");
    ts.finish().await;
}

async fn get_and_delete_ignore_any_body() {
    let ts = TestServer::start().await;
    let id = ts.register_android().await;
    let auth = ts.app_auth();
    let r = raw(
        &ts,
        "GET",
        &ipath(&id),
        &[("Authorization", &auth), ("Content-Type", "application/json")],
        Some(b"{not json"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = raw(&ts, "GET", &user_path(&id), &[("Authorization", &auth)], Some(b"[1,2")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let old = ts.register_android().await;
    let r = raw(
        &ts,
        "DELETE",
        &ipath(&old),
        &[("Authorization", &auth), ("pushregistrationid", &id)],
        Some(b"garbage"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!ts.snapshot().await.installations.iter().any(|i| i.push_reg_id == old));
    ts.finish().await;
}

// ----- §6.12 paths ------------------------------------------------------------------------------

async fn trailing_and_repeated_slashes_are_tolerated() {
    let ts = TestServer::start().await;
    let auth = ts.app_auth();
    let r = raw(
        &ts,
        "POST",
        "//mobile/1//appinstance/",
        &[("Authorization", &auth), ("Content-Type", "application/json")],
        Some(br#"{"pushServiceType":"Firebase","pushServiceToken":"slashes"}"#),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.json()["pushRegId"].as_str().unwrap().to_string();
    for path in [
        format!("{}/", ipath(&id)),
        format!("//mobile//1/appinstance//{id}//"),
        format!("/mobile/1/appinstance/{id}///user/"),
        format!("///mobile/1/appinstance/{id}/user"),
    ] {
        let r = raw(&ts, "GET", &path, &[("Authorization", &auth)], None).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_framing(&r);
    }
    // No redirect: the normalised path is served directly.
    let r = raw(&ts, "GET", "/mobile/1/baseurl/", &[], None).await;
    assert_eq!(r.status, 200);
    assert!(r.header("location").is_none());
    // Literal segments are case-sensitive.
    let r = raw(&ts, "GET", "/Mobile/1/baseurl", &[], None).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "RESOURCE_NOT_FOUND");
    ts.finish().await;
}

async fn push_reg_id_matches_case_insensitively_in_path_and_header() {
    let ts = TestServer::start().await;
    let a = ts.register_android().await;
    let b = ts.register_android().await;
    ts.personalize_as(&a, "case-user").await;
    ts.personalize_as(&b, "case-user").await;
    let auth = ts.app_auth();
    let up = a.to_uppercase();
    // Upper-case path, no header: own, with token, canonical lowercase in the response.
    let r = ts.call("GET", &ipath(&up), None, None).await.ok().json();
    assert_eq!(r["pushRegId"], a.as_str());
    assert!(r["pushServiceToken"].is_string());
    // Upper-case path and upper-case header: own.
    let r = ts.call("GET", &ipath(&up), Some(&up), None).await.ok().json();
    assert!(r["pushServiceToken"].is_string());
    // Lower-case path, upper-case header: own.
    let r = ts.call("GET", &ipath(&a), Some(&up), None).await.ok().json();
    assert!(r["pushServiceToken"].is_string());
    // Header name in mixed case (raw, so the name goes over the wire as written).
    let r = raw(
        &ts,
        "GET",
        &ipath(&b),
        &[("Authorization", &auth), ("PushRegistrationId", &up)],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["pushRegId"], b.as_str());
    assert!(j.get("pushServiceToken").is_none(), "B seen from A: {j}");
    // Upper-case path on PATCH user and personalize.
    ts.call("PATCH", &user_path(&up), Some(&a), Some(&json!({"firstName": "Up"})))
        .await
        .ok();
    // Upper-case path of the caller on depersonalize = own.
    depersonalize(&ts, &up, &a).await.ok();
    assert!(person_of(&ts.snapshot().await, &a).is_anonymous());
    ts.finish().await;
}

// ----- §6.10 / §1.6 responses ---------------------------------------------------------------------

async fn responses_have_explicit_length_and_are_never_chunked_or_compressed() {
    let ts = TestServer::start().await;
    let id = ts
        .register(json!({"pushServiceType": "Firebase", "pushServiceToken": "frame", "deviceName": "x".repeat(200)}))
        .await;
    ts.personalize_as(&id, "framing").await;
    let auth = ts.app_auth();
    let enc = ("Accept-Encoding", "gzip, deflate, br");
    let cases: Vec<(&str, String, Option<&[u8]>, u16)> = vec![
        ("GET", ipath(&id), None, 200),
        ("GET", user_path(&id), None, 200),
        ("PATCH", user_path(&id), Some(br#"{"tags":["a"]}"#), 200),
        ("POST", "/mobile/1/appinstance".to_string(), Some(b"{}"), 200),
        ("GET", "/mobile/1/baseurl".to_string(), None, 200),
        ("GET", "/mobile/3/version".to_string(), None, 200),
        ("POST", "/mobile/5/messages".to_string(), Some(b"{}"), 200),
        ("POST", "/mobile/1/messages/seen".to_string(), Some(b"{}"), 200),
        ("GET", "/nope".to_string(), None, 404),
        ("GET", ipath(&uuid::Uuid::new_v4().to_string()), None, 403),
        ("PUT", ipath(&id), None, 405),
        ("PATCH", ipath(&id), Some(b"{bad"), 400),
        ("POST", format!("{}/depersonalize", ipath(&id)), None, 200),
    ];
    for (method, path, body, status) in cases {
        let r = raw(
            &ts,
            method,
            &path,
            &[("Authorization", &auth), ("pushregistrationid", &id), enc],
            body,
        )
        .await;
        assert_eq!(r.status, status, "{method} {path}: {}", r.text());
        assert_framing(&r);
        if status >= 400 {
            let se = &r.json()["requestError"]["serviceException"];
            assert!(
                se["messageId"].is_string() && se["text"].is_string(),
                "envelope: {}",
                r.text()
            );
        }
    }
    ts.finish().await;
}

async fn empty_200_bodies_have_zero_length_and_no_content_type() {
    let ts = TestServer::start().await;
    let id = ts.register_android().await;
    let old = ts.register_android().await;
    let auth = ts.app_auth();
    for (method, path, caller) in [
        ("POST", format!("{}/depersonalize", ipath(&id)), id.clone()),
        ("DELETE", ipath(&old), id.clone()),
        ("POST", format!("{}/user/events/session", ipath(&id)), id.clone()),
        (
            "POST",
            format!("{}/user/events/custom?validate=true", ipath(&id)),
            id.clone(),
        ),
        ("POST", "/mobile/2/messages/seen".to_string(), id.clone()),
        ("POST", "/mobile/1/messages/deliveryreport".to_string(), id.clone()),
    ] {
        let r = raw(
            &ts,
            method,
            &path,
            &[("Authorization", &auth), ("pushregistrationid", &caller)],
            Some(b"{}"),
        )
        .await;
        assert_eq!(r.status, 200, "{method} {path}: {}", r.text());
        assert_eq!(r.header("content-length"), Some("0"), "{method} {path}");
        assert!(r.header("content-type").is_none(), "{method} {path}");
        assert_framing(&r);
    }
    ts.finish().await;
}

// ----- §6.13/§6.14 base URL and version ---------------------------------------------------------------

async fn baseurl_is_always_null() {
    let ts = TestServer::start().await;
    let auth = ts.app_auth();
    let unknown = format!("App {}", "0".repeat(64));
    for headers in [
        vec![],
        vec![("Authorization", auth.as_str())],
        vec![("Authorization", unknown.as_str())],
        vec![("Authorization", "Bearer not.a.jwt")],
        vec![("Authorization", "Basic abc")],
    ] {
        let r = raw(&ts, "GET", "/mobile/1/baseurl", &headers, None).await;
        assert_eq!(r.status, 200, "{headers:?}: {}", r.text());
        assert_eq!(r.body, br#"{"baseUrl":null}"#);
        assert_framing(&r);
    }
    ts.finish().await;
}

async fn version_answers_three_strings() {
    let ts = TestServer::start().await;
    let r = raw(&ts, "GET", "/mobile/3/version?platformType=GCM", &[], None).await;
    assert_eq!(r.status, 200);
    assert_framing(&r);
    assert_eq!(
        r.json(),
        json!({"platformType": "GCM", "libraryVersion": "0.0.0", "updateUrl": ""})
    );
    let auth = ts.app_auth();
    let r = raw(&ts, "GET", "/mobile/3/version", &[("Authorization", &auth)], None).await;
    assert_eq!(
        r.json(),
        json!({"platformType": "", "libraryVersion": "0.0.0", "updateUrl": ""})
    );
    let r = raw(
        &ts,
        "GET",
        "/mobile/3/version?platformType=APNS",
        &[("Authorization", "App nope")],
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["platformType"], "APNS");
    ts.finish().await;

    let ts = TestServer::start_with(|s| {
        s.mobile.latest_sdk_version = "15.6.0".into();
        s.mobile.sdk_update_url = "https://example.com/sdk".into();
    })
    .await;
    let r = raw(&ts, "GET", "/mobile/3/version?platformType=GCM", &[], None).await;
    assert_eq!(
        r.json(),
        json!({"platformType": "GCM", "libraryVersion": "15.6.0", "updateUrl": "https://example.com/sdk"})
    );
    ts.finish().await;
}

// ----- §6.15 message and event stubs -----------------------------------------------------------------

async fn message_sync_answers_empty_payloads_whatever_the_caller() {
    let ts = TestServer::start().await;
    let id = ts.register_android().await;
    let auth = ts.app_auth();
    let before = ts.snapshot().await;
    let unknown = uuid::Uuid::new_v4().to_string();
    for path in [
        "/mobile/5/messages",
        "/mobile/3/messages",
        "/mobile/5/messages?platformType=GCM",
    ] {
        for (caller, body) in [
            (Some(id.as_str()), &br#"{"mIDs":["m1"],"drIDs":["d1"]}"#[..]),
            (Some(unknown.as_str()), &b"{}"[..]),
            (Some("not-a-uuid"), &b"{not json"[..]),
            (None, &b""[..]),
            (None, &b"[1,2,3]"[..]),
        ] {
            let mut headers = vec![("Authorization", auth.as_str())];
            if let Some(c) = caller {
                headers.push(("pushregistrationid", c));
            }
            let r = raw(&ts, "POST", path, &headers, Some(body)).await;
            assert_eq!(r.status, 200, "{path} {caller:?}: {}", r.text());
            assert_framing(&r);
            assert_eq!(r.json(), json!({"payloads": []}));
        }
    }
    // Authentication is still required.
    let r = raw(&ts, "POST", "/mobile/5/messages", &[], Some(b"{}")).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.code(), "APP_CODE_MISSING");
    let r = raw(
        &ts,
        "POST",
        "/mobile/5/messages",
        &[("Authorization", &format!("App {}", "1".repeat(64)))],
        Some(b"{}"),
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.code(), "INVALID_APPLICATION_CODE");
    assert_eq!(ts.snapshot().await, before);
    ts.finish().await;
}

async fn seen_deliveryreport_and_mo_stubs() {
    let ts = TestServer::start().await;
    let id = ts.register_android().await;
    let auth = ts.app_auth();
    let unknown = uuid::Uuid::new_v4().to_string();
    for path in [
        "/mobile/2/messages/seen",
        "/mobile/1/messages/seen",
        "/mobile/1/messages/deliveryreport",
    ] {
        for (caller, body) in [
            (
                id.as_str(),
                &br#"{"messages":[{"messageId":"x","timestampDelta":5}],"dlrIds":["y"]}"#[..],
            ),
            (unknown.as_str(), &b"garbage"[..]),
        ] {
            let r = raw(
                &ts,
                "POST",
                path,
                &[("Authorization", &auth), ("pushregistrationid", caller)],
                Some(body),
            )
            .await;
            assert_eq!(r.status, 200, "{path}: {}", r.text());
            assert!(r.body.is_empty());
            assert_framing(&r);
        }
    }
    let body = json!({"from": id, "messages": [
        {"messageId": "mo-1", "destination": "d", "text": "hello", "customPayload": {"a": 1}},
        {"messageId": "mo-2", "text": "again"}
    ]});
    let r = ts
        .call("POST", "/mobile/1/messages/mo?platformType=GCM", Some(&id), Some(&body))
        .await
        .ok();
    assert_eq!(
        r.json(),
        json!({"messages": [
            {"messageId": "mo-1", "statusCode": 0, "status": "SUCCESS"},
            {"messageId": "mo-2", "statusCode": 0, "status": "SUCCESS"}
        ]})
    );
    let r = raw(
        &ts,
        "POST",
        "/mobile/1/messages/mo",
        &[("Authorization", &auth)],
        Some(b"not json"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"messages": []}));
    ts.finish().await;
}

async fn session_and_custom_events_follow_the_caller_rules() {
    let ts = TestServer::start().await;
    let a = ts.register_android().await;
    let b = ts.register_android().await;
    ts.personalize_as(&a, "events").await;
    ts.personalize_as(&b, "events").await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let before = ts.snapshot().await;
    for kind in ["session", "custom"] {
        let path = |id: &str| format!("{}/user/events/{kind}", ipath(id));
        let body = json!({"systemData": {}, "sessionStarts": ["2024-01-01T00:00:00Z"], "events": []});
        let r = ts.call("POST", &path(&a), Some(&a), Some(&body)).await.ok();
        assert!(r.body.is_empty());
        // Unparsable body: still 200.
        ts.call_bytes("POST", &path(&a), Some(&a), Some(b"{oops".to_vec()))
            .await
            .ok();
        // Unknown caller: 404. Remote (even of the same person): 403.
        ts.call("POST", &path(&unknown), None, Some(&body))
            .await
            .assert_error(404, "NO_REGISTRATION");
        ts.call("POST", &path(&a), Some(&unknown), Some(&body))
            .await
            .assert_error(404, "NO_REGISTRATION");
        ts.call("POST", &path(&b), Some(&a), Some(&body))
            .await
            .assert_error(403, "FORBIDDEN_INSTALLATION");
        // Bearer is not accepted here.
        ts.call_with(
            "POST",
            &path(&a),
            &[("authorization", "Bearer a.b.c")],
            Some(&a),
            Some(b"{}".to_vec()),
        )
        .await
        .assert_error(401, "APP_CODE_MISSING");
    }
    assert_eq!(ts.snapshot().await, before);
    ts.finish().await;
}

// ----- §1.5 bodies: duplicate keys, unknown fields --------------------------------------------------------

async fn duplicate_json_keys_last_one_wins() {
    let ts = TestServer::start().await;
    let id = ts.register_android().await;
    let r = ts
        .call_bytes(
            "PATCH",
            &user_path(&id),
            Some(&id),
            Some(br#"{"firstName":"First","lastName":"L","firstName":"Second"}"#.to_vec()),
        )
        .await
        .ok();
    assert_eq!(r.json()["firstName"], "Second");
    let r = ts
        .call_bytes(
            "PATCH",
            &ipath(&id),
            Some(&id),
            Some(br#"{"language":"en","customAttributes":{"k":1,"k":"two"},"language":"de"}"#.to_vec()),
        )
        .await
        .ok();
    assert_eq!(r.json()["language"], "de");
    assert_eq!(r.json()["customAttributes"], json!({"k": "two"}));
    ts.finish().await;
}

async fn unknown_fields_are_ignored_at_every_level() {
    let ts = TestServer::start().await;
    let r = ts
        .call(
            "POST",
            "/mobile/1/appinstance",
            None,
            Some(
                &json!({"pushRegId": "11111111-1111-4111-8111-111111111111", "whatever": {"x": [1]},
                         "os": "Android", "systemData": {"a": 1}}),
            ),
        )
        .await
        .ok();
    let id = r.json()["pushRegId"].as_str().unwrap().to_string();
    assert_ne!(
        id, "11111111-1111-4111-8111-111111111111",
        "pushRegId in a body is ignored"
    );
    // PATCH own with pushRegId and unknown fields: ignored.
    let r = ts
        .call(
            "PATCH",
            &ipath(&id),
            Some(&id),
            Some(&json!({"pushRegId": "other", "unknown": null, "language": "en"})),
        )
        .await
        .ok();
    assert_eq!(r.json()["pushRegId"], id.as_str());
    // User: type and instances ignored, extra members in phone/email objects ignored.
    let r = patch_user(
        &ts,
        &id,
        &json!({
            "type": "CUSTOMER", "instances": [{"pushRegId": "x"}], "nickname": "n",
            "phones": [{"number": "+385 91 765 4321", "preferred": true}],
            "emails": [{"address": "x@example.com", "preferred": false, "verified": true}]
        }),
    )
    .await
    .ok()
    .json();
    assert_eq!(r["type"], "LEAD");
    assert_eq!(r["phones"], json!([{"number": "385917654321"}]));
    assert_eq!(r["emails"], json!([{"address": "x@example.com"}]));
    assert!(r.get("nickname").is_none());
    // Personalize: unknown members at the top level and in userIdentity.
    let id = ts.register_android().await;
    let r = ts
        .personalize_ok(
            &id,
            json!({"userIdentity": {"externalUserId": "unk", "foo": 1}, "userAttributes": {"bar": 2},
                   "baz": true}),
            NO_FLAGS,
        )
        .await;
    assert_eq!(r["externalUserId"], "unk");
    assert!(r.get("bar").is_none() && r.get("foo").is_none());
    ts.finish().await;
}

// ----- §6.7–§6.9, §6.16, §6.18–§6.20 -----------------------------------------------------------------

async fn dates_in_responses_have_the_exact_shapes() {
    let ts = TestServer::start().await;
    let id = ts.register_android().await;
    let r = patch_user(
        &ts,
        &id,
        &json!({"birthday": "1990-05-17", "customAttributes": {
            "since": "2020-02-26T09:41:57.999+00:00", "day": "2024-02-29", "at": "2020-02-26T09:41:57Z"
        }}),
    )
    .await
    .ok();
    let t = r.text();
    assert!(t.contains(r#""birthday":"1990-05-17""#), "{t}");
    assert!(t.contains(r#""since":"2020-02-26T09:41:57Z""#), "{t}");
    assert!(t.contains(r#""day":"2024-02-29""#), "{t}");
    assert!(t.contains(r#""at":"2020-02-26T09:41:57Z""#), "{t}");
    let g = get_user(&ts, &id).await.ok();
    assert_eq!(g.json()["customAttributes"]["since"], "2020-02-26T09:41:57Z");
    ts.finish().await;
}

async fn user_responses_always_contain_instances_and_the_always_fields() {
    let ts = TestServer::start().await;
    let id = ts.register_android().await;
    let user = user_path(&id);
    let g = ts.call("GET", &user, Some(&id), None).await.ok().json();
    let inst = ts.call("GET", &ipath(&id), Some(&id), None).await.ok().json();
    assert_eq!(
        g,
        json!({"phones": [], "emails": [], "tags": [], "customAttributes": {}, "type": "LEAD", "instances": [inst]})
    );
    let p = ts.call("PATCH", &user, Some(&id), Some(&json!({}))).await.ok().json();
    assert_eq!(p, g);
    let r = ts.personalize_ok(&id, ext_identity("inst"), "").await;
    assert_eq!(r["instances"].as_array().unwrap().len(), 1);
    assert!(
        r["instances"][0]["pushServiceToken"].is_string(),
        "own element carries its token"
    );
    let r = ts
        .call(
            "POST",
            &format!("{}/repersonalize", ipath(&id)),
            Some(&id),
            Some(&json!({"userIdentity": {"externalUserId": "inst"}})),
        )
        .await
        .ok()
        .json();
    assert_eq!(r["instances"].as_array().unwrap().len(), 1);
    for k in ["phones", "emails", "tags", "customAttributes", "type"] {
        assert!(r.get(k).is_some(), "{k} always present: {r}");
    }
    ts.finish().await;
}

async fn no_registration_is_never_about_a_remote_target() {
    let ts = TestServer::start().await;
    let a = ts.register_android().await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let before = ts.snapshot().await;
    let cases: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", ipath(&unknown), None),
        ("PATCH", ipath(&unknown), Some(json!({"isPrimary": true}))),
        ("POST", format!("{}/depersonalize", ipath(&unknown)), None),
        ("GET", user_path(&unknown), None),
        ("PATCH", user_path(&unknown), Some(json!({"firstName": "x"}))),
        (
            "POST",
            format!("{}/personalize", ipath(&unknown)),
            Some(json!({"userIdentity": {"externalUserId": "x"}})),
        ),
        (
            "POST",
            format!("{}/repersonalize", ipath(&unknown)),
            Some(json!({"userIdentity": {"externalUserId": "x"}})),
        ),
        (
            "POST",
            format!("{}/user/events/session", ipath(&unknown)),
            Some(json!({})),
        ),
        ("GET", ipath("NOT-A-UUID"), None),
    ];
    for (m, p, b) in cases {
        ts.call(m, &p, Some(&a), b.as_ref())
            .await
            .assert_error(403, "FORBIDDEN_INSTALLATION");
    }
    assert_eq!(ts.snapshot().await, before);
    ts.finish().await;
}

async fn sdk_headers_are_tolerated_and_ignored() {
    let ts = TestServer::start().await;
    let auth = ts.app_auth();
    let headers = [
        ("Authorization", auth.as_str()),
        ("applicationcode", "ffffffffff"),
        ("installationid", "5E3B1C2D-7A8F-4B9C-8D0E-1F2A3B4C5D6E"),
        ("foreground", "true"),
        ("sessionId", "abc"),
        (
            "User-Agent",
            "MobileMessaging/15.5.2(iOS;18.1;;iPhone16,1;;com.acme.shop;3.2.1;Ana's iPhone;;;)",
        ),
        ("Accept", "application/json"),
        ("Cache-Control", "no-cache"),
        ("Pragma", "no-cache"),
        ("Content-Type", "application/json"),
    ];
    // iOS sends sorted keys.
    let r = raw(
        &ts,
        "POST",
        "/mobile/1/appinstance?rt=1",
        &headers,
        Some(br#"{"customAttributes":{},"isPrimary":false,"os":"iOS","pushServiceToken":"AB12","pushServiceType":"APNS","regEnabled":true}"#),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["pushServiceToken"], "ab12");
    let id = j["pushRegId"].as_str().unwrap().to_string();
    let mut h2 = headers.to_vec();
    h2.push(("pushregistrationid", id.as_str()));
    let r = raw(&ts, "GET", &format!("{}/user?ri=1&rt=0", ipath(&id)), &h2, None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    ts.finish().await;
}

// ----- §1.1 base path ---------------------------------------------------------------------------

async fn base_path_serves_every_route_under_the_prefix() {
    let ts = TestServer::start_with(|s| s.http.base_path = "/roster".into()).await;
    assert!(ts.url("/x").ends_with("/roster/x"));
    let id = ts.register_android().await;
    ts.call("GET", &ipath(&id), Some(&id), None).await.ok();
    get_user(&ts, &id).await.ok();
    let r = ts.call("GET", "/mobile/1/baseurl", None, None).await.ok();
    assert_eq!(r.body, br#"{"baseUrl":null}"#);
    // Repeated slashes around the prefix are tolerated too.
    let auth = ts.app_auth();
    let r = ts
        .raw(&raw_request(
            "GET",
            &format!("//roster//mobile/1/appinstance/{id}/"),
            &[("Authorization", &auth)],
            None,
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Without the prefix, or with another prefix: no such route.
    for path in [
        "/mobile/1/baseurl".to_string(),
        format!("/mobile/1/appinstance/{id}"),
        "/rosterx/mobile/1/baseurl".to_string(),
        "/other/mobile/1/baseurl".to_string(),
    ] {
        let r = ts
            .raw(&raw_request("GET", &path, &[("Authorization", &auth)], None))
            .await;
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert_eq!(r.code(), "RESOURCE_NOT_FOUND");
        assert_framing(&r);
    }
    ts.finish().await;
}

async fn empty_caller_header_means_the_target_and_create_ignores_it() {
    let ts = TestServer::start().await;
    let unknown = uuid::Uuid::new_v4().to_string();
    // Create ignores a pushregistrationid header, even an unknown one.
    let r = ts
        .call(
            "POST",
            "/mobile/1/appinstance",
            Some(&unknown),
            Some(&json!({"pushServiceType": "GCM", "pushServiceToken": "hdr"})),
        )
        .await
        .ok();
    let id = r.json()["pushRegId"].as_str().unwrap().to_string();
    assert_ne!(id, unknown);
    // An empty header: the caller is the target (own, with token).
    let auth = ts.app_auth();
    let r = raw(
        &ts,
        "GET",
        &ipath(&id),
        &[("Authorization", &auth), ("pushregistrationid", "")],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["pushServiceToken"], "hdr");
    ts.finish().await;
}

on_every_backend!(
    post_with_method_override_patch_is_a_patch,
    bad_method_override_is_405_and_changes_nothing,
    plain_post_to_a_patch_path_is_405,
    query_booleans_accept_true_false_1_0_any_case_any_order,
    repeated_query_parameter_last_wins,
    bad_query_boolean_is_400_naming_the_parameter,
    unknown_and_ignored_query_parameters_are_ignored,
    depersonalize_without_content_length_or_content_type_android,
    depersonalize_with_json_content_type_and_empty_body_ios,
    json_bodies_are_parsed_whatever_the_content_type,
    chunked_request_bodies_are_accepted,
    get_and_delete_ignore_any_body,
    trailing_and_repeated_slashes_are_tolerated,
    push_reg_id_matches_case_insensitively_in_path_and_header,
    responses_have_explicit_length_and_are_never_chunked_or_compressed,
    empty_200_bodies_have_zero_length_and_no_content_type,
    baseurl_is_always_null,
    version_answers_three_strings,
    message_sync_answers_empty_payloads_whatever_the_caller,
    seen_deliveryreport_and_mo_stubs,
    session_and_custom_events_follow_the_caller_rules,
    duplicate_json_keys_last_one_wins,
    unknown_fields_are_ignored_at_every_level,
    dates_in_responses_have_the_exact_shapes,
    user_responses_always_contain_instances_and_the_always_fields,
    no_registration_is_never_about_a_remote_target,
    sdk_headers_are_tolerated_and_ignored,
    base_path_serves_every_route_under_the_prefix,
    empty_caller_header_means_the_target_and_create_ignores_it,
);
