//! The example exchanges of mobile-api.md §7 as golden tests, in one story: requests sent byte
//! for byte as the spec shows them (with the test application's code and the generated
//! pushRegIds substituted), responses compared byte for byte.
//!
//! Note: mobile-api.md §1.6 says tests MUST NOT depend on key order; these golden tests compare
//! the parsed JSON first (order-insensitive) and then the exact bytes, because §7 shows the exact
//! bodies (with their `Content-Length`) and the responses SHOULD follow that order.
mod common;

use common::{
    RawResponse, TestServer,
    people_helpers::{get_user, inst, patch_user, person_of},
};
use roster_model::{MergeStatus, PersonType};
use serde_json::{Value, json};

const SPEC_CODE: &str = "8f2d41c9a7e35b06d1c4f8a29e7b3c50a6d9f1e24b8c7a3d05e6f19b2c4d8a71";
const SPEC_A: &str = "7c0e9f5a-3b1d-4e2a-9c8f-1a2b3c4d5e6f";
const SPEC_B: &str = "d2a41f7e-8b3c-4f10-a6e5-0c9b8a7d6e5f";

/// mobile-api.md §7: head of REQ_7_1, one line per element.
const REQ_7_1_HEAD: &[&str] = &[
    r#"POST /mobile/1/appinstance?ri=true HTTP/1.1"#,
    r#"Authorization: App 8f2d41c9a7e35b06d1c4f8a29e7b3c50a6d9f1e24b8c7a3d05e6f19b2c4d8a71"#,
    r#"applicationcode: 6e04a5de32"#,
    r#"installationid: 0b6f2c1e-5d4a-4e3b-8f7a-6c5d4e3f2a1b"#,
    r#"foreground: true"#,
    r#"User-Agent: Infobip Mobile API Client/15.0.0(Android;14;arm64-v8a;Pixel 8;Google;Acme Shop;3.2.1;Pixel 8;;;;;;)"#,
    r#"Accept: application/json"#,
    r#"Content-Type: application/json"#,
    r#"Content-Length: 382"#,
];
const REQ_7_1_BODY: &str = r#"{"regEnabled":true,"notificationsEnabled":true,"sdkVersion":"15.0.0","appVersion":"3.2.1","os":"Android","osVersion":"14","deviceManufacturer":"Google","deviceModel":"Pixel 8","deviceSecure":true,"language":"en","deviceTimezoneOffset":"GMT+01:00","deviceName":"Pixel 8","pushServiceType":"Firebase","pushServiceToken":"dQw4w9WgXcQ:APA91bHx7Yk2LmN3pQ4rS5tU6vW7xY8zA9bC0dE1fG2hI3jK4"}"#;

/// mobile-api.md §7: head of RESP_7_1, one line per element.
const RESP_7_1_HEAD: &[&str] = &[
    r#"HTTP/1.1 200 OK"#,
    r#"Content-Type: application/json"#,
    r#"Content-Length: 473"#,
];
const RESP_7_1_BODY: &str = r#"{"pushRegId":"7c0e9f5a-3b1d-4e2a-9c8f-1a2b3c4d5e6f","pushServiceType":"Firebase","pushServiceToken":"dQw4w9WgXcQ:APA91bHx7Yk2LmN3pQ4rS5tU6vW7xY8zA9bC0dE1fG2hI3jK4","regEnabled":true,"isPrimary":false,"notificationsEnabled":true,"customAttributes":{},"sdkVersion":"15.0.0","appVersion":"3.2.1","os":"Android","osVersion":"14","deviceManufacturer":"Google","deviceModel":"Pixel 8","deviceName":"Pixel 8","deviceSecure":true,"language":"en","deviceTimezoneOffset":"GMT+01:00"}"#;

/// mobile-api.md §7: head of REQ_7_2, one line per element.
const REQ_7_2_HEAD: &[&str] = &[
    r#"POST /mobile/1/appinstance/7c0e9f5a-3b1d-4e2a-9c8f-1a2b3c4d5e6f/user HTTP/1.1"#,
    r#"Authorization: App 8f2d41c9a7e35b06d1c4f8a29e7b3c50a6d9f1e24b8c7a3d05e6f19b2c4d8a71"#,
    r#"pushregistrationid: 7c0e9f5a-3b1d-4e2a-9c8f-1a2b3c4d5e6f"#,
    r#"X-HTTP-Method-Override: PATCH"#,
    r#"Accept: application/json"#,
    r#"Content-Type: application/json"#,
    r#"Content-Length: 144"#,
];
const REQ_7_2_BODY: &str = r#"{"birthday":"1990-05-17","lastName":null,"phones":[{"number":"+385 91 123 4567"}],"customAttributes":{"favoriteColor":null,"loyaltyPoints":120}}"#;

/// mobile-api.md §7: head of RESP_7_2, one line per element.
const RESP_7_2_HEAD: &[&str] = &[
    r#"HTTP/1.1 200 OK"#,
    r#"Content-Type: application/json"#,
    r#"Content-Length: 700"#,
];
const RESP_7_2_BODY: &str = r#"{"externalUserId":"cust-1001","firstName":"Ana","birthday":"1990-05-17","phones":[{"number":"385911234567"}],"emails":[],"tags":["vip"],"customAttributes":{"loyaltyPoints":120,"newsletter":true},"type":"CUSTOMER","instances":[{"pushRegId":"7c0e9f5a-3b1d-4e2a-9c8f-1a2b3c4d5e6f","pushServiceType":"Firebase","pushServiceToken":"dQw4w9WgXcQ:APA91bHx7Yk2LmN3pQ4rS5tU6vW7xY8zA9bC0dE1fG2hI3jK4","regEnabled":true,"isPrimary":true,"notificationsEnabled":true,"customAttributes":{},"sdkVersion":"15.0.0","appVersion":"3.2.1","os":"Android","osVersion":"14","deviceManufacturer":"Google","deviceModel":"Pixel 8","deviceName":"Pixel 8","deviceSecure":true,"language":"en","deviceTimezoneOffset":"GMT+01:00"}]}"#;

/// mobile-api.md §7: head of REQ_7_3, one line per element.
const REQ_7_3_HEAD: &[&str] = &[
    r#"POST /mobile/1/appinstance/d2a41f7e-8b3c-4f10-a6e5-0c9b8a7d6e5f/personalize?forceDepersonalize=0&keepAsLead=0&setDeviceAsPrimary=1 HTTP/1.1"#,
    r#"Authorization: App 8f2d41c9a7e35b06d1c4f8a29e7b3c50a6d9f1e24b8c7a3d05e6f19b2c4d8a71"#,
    r#"pushregistrationid: d2a41f7e-8b3c-4f10-a6e5-0c9b8a7d6e5f"#,
    r#"installationid: 5E3B1C2D-7A8F-4B9C-8D0E-1F2A3B4C5D6E"#,
    r#"foreground: true"#,
    r#"User-Agent: MobileMessaging/15.5.2(iOS;18.1;;iPhone16,1;;com.acme.shop;3.2.1;Ana's iPhone;;;)"#,
    r#"Accept: application/json"#,
    r#"Content-Type: application/json"#,
    r#"Content-Length: 162"#,
];
const REQ_7_3_BODY: &str = r#"{"userAttributes":{"customAttributes":{"lastLoginDevice":"iPhone"}},"userIdentity":{"emails":[{"address":"Ana.Horvat@Example.com"}],"externalUserId":"cust-1001"}}"#;

/// mobile-api.md §7: head of RESP_7_3, one line per element.
const RESP_7_3_HEAD: &[&str] = &[
    r#"HTTP/1.1 200 OK"#,
    r#"Content-Type: application/json"#,
    r#"Content-Length: 1209"#,
];
const RESP_7_3_BODY: &str = r#"{"externalUserId":"cust-1001","firstName":"Ana","middleName":"Marija","birthday":"1990-05-17","phones":[{"number":"385911234567"}],"emails":[{"address":"Ana.Horvat@Example.com"}],"tags":["beta","vip"],"customAttributes":{"lastLoginDevice":"iPhone","loyaltyPoints":120,"newsletter":true,"onboardingDone":true},"type":"CUSTOMER","instances":[{"pushRegId":"7c0e9f5a-3b1d-4e2a-9c8f-1a2b3c4d5e6f","pushServiceType":"Firebase","regEnabled":true,"isPrimary":false,"notificationsEnabled":true,"customAttributes":{},"sdkVersion":"15.0.0","appVersion":"3.2.1","os":"Android","osVersion":"14","deviceManufacturer":"Google","deviceModel":"Pixel 8","deviceName":"Pixel 8","deviceSecure":true,"language":"en","deviceTimezoneOffset":"GMT+01:00"},{"pushRegId":"d2a41f7e-8b3c-4f10-a6e5-0c9b8a7d6e5f","pushServiceType":"APNS","pushServiceToken":"0b30557a9fc4e90e33587da2c7ec11365b80a5caef14395e83a8cdf2173c6186","regEnabled":true,"isPrimary":true,"notificationsEnabled":true,"customAttributes":{},"sdkVersion":"15.5.2","appVersion":"3.2.1","os":"iOS","osVersion":"18.1","deviceManufacturer":"Apple","deviceModel":"iPhone16,1","deviceName":"Ana's iPhone","deviceSecure":true,"language":"hr","deviceTimezoneOffset":"GMT+01:00"}]}"#;

/// mobile-api.md §7: head of REQ_7_4, one line per element.
const REQ_7_4_HEAD: &[&str] = &[
    r#"PATCH /mobile/1/appinstance/7c0e9f5a-3b1d-4e2a-9c8f-1a2b3c4d5e6f?rt=0 HTTP/1.1"#,
    r#"Authorization: App 8f2d41c9a7e35b06d1c4f8a29e7b3c50a6d9f1e24b8c7a3d05e6f19b2c4d8a71"#,
    r#"pushregistrationid: d2a41f7e-8b3c-4f10-a6e5-0c9b8a7d6e5f"#,
    r#"Accept: application/json"#,
    r#"Content-Type: application/json"#,
    r#"Content-Length: 18"#,
];
const REQ_7_4_BODY: &str = r#"{"isPrimary":true}"#;

/// mobile-api.md §7: head of RESP_7_4, one line per element.
const RESP_7_4_HEAD: &[&str] = &[
    r#"HTTP/1.1 200 OK"#,
    r#"Content-Type: application/json"#,
    r#"Content-Length: 389"#,
];
const RESP_7_4_BODY: &str = r#"{"pushRegId":"7c0e9f5a-3b1d-4e2a-9c8f-1a2b3c4d5e6f","pushServiceType":"Firebase","regEnabled":true,"isPrimary":true,"notificationsEnabled":true,"customAttributes":{},"sdkVersion":"15.0.0","appVersion":"3.2.1","os":"Android","osVersion":"14","deviceManufacturer":"Google","deviceModel":"Pixel 8","deviceName":"Pixel 8","deviceSecure":true,"language":"en","deviceTimezoneOffset":"GMT+01:00"}"#;

/// mobile-api.md §7: head of REQ_7_5, one line per element.
const REQ_7_5_HEAD: &[&str] = &[
    r#"POST /mobile/1/appinstance/7c0e9f5a-3b1d-4e2a-9c8f-1a2b3c4d5e6f/depersonalize HTTP/1.1"#,
    r#"Authorization: App 8f2d41c9a7e35b06d1c4f8a29e7b3c50a6d9f1e24b8c7a3d05e6f19b2c4d8a71"#,
    r#"pushregistrationid: 7c0e9f5a-3b1d-4e2a-9c8f-1a2b3c4d5e6f"#,
    r#"Accept: application/json"#,
];
const REQ_7_5_BODY: &str = r#""#;

/// mobile-api.md §7: head of RESP_7_5, one line per element.
const RESP_7_5_HEAD: &[&str] = &[r#"HTTP/1.1 200 OK"#, r#"Content-Length: 0"#];
const RESP_7_5_BODY: &str = r#""#;

/// mobile-api.md §7: head of REQ_7_6, one line per element.
const REQ_7_6_HEAD: &[&str] = &[
    r#"POST /mobile/1/appinstance/d2a41f7e-8b3c-4f10-a6e5-0c9b8a7d6e5f/personalize?forceDepersonalize=0&keepAsLead=0&setDeviceAsPrimary=0 HTTP/1.1"#,
    r#"Authorization: App 8f2d41c9a7e35b06d1c4f8a29e7b3c50a6d9f1e24b8c7a3d05e6f19b2c4d8a71"#,
    r#"pushregistrationid: d2a41f7e-8b3c-4f10-a6e5-0c9b8a7d6e5f"#,
    r#"Accept: application/json"#,
    r#"Content-Type: application/json"#,
    r#"Content-Length: 47"#,
];
const REQ_7_6_BODY: &str = r#"{"userIdentity":{"externalUserId":"cust-2002"}}"#;

/// mobile-api.md §7: head of RESP_7_6, one line per element.
const RESP_7_6_HEAD: &[&str] = &[
    r#"HTTP/1.1 409 Conflict"#,
    r#"Content-Type: application/json"#,
    r#"Content-Length: 188"#,
];
const RESP_7_6_BODY: &str = r#"{"requestError":{"serviceException":{"messageId":"PERSONALIZATION_IMPOSSIBLE","text":"Installation is personalized as another person; personalize with forceDepersonalize=true to switch"}}}"#;

/// mobile-api.md §7: head of RESP_NO_REG, one line per element.
const RESP_NO_REG_HEAD: &[&str] = &[
    r#"HTTP/1.1 404 Not Found"#,
    r#"Content-Type: application/json"#,
    r#"Content-Length: 104"#,
];
const RESP_NO_REG_BODY: &str =
    r#"{"requestError":{"serviceException":{"messageId":"NO_REGISTRATION","text":"Unknown push registration"}}}"#;

// ----- helpers ------------------------------------------------------------------------------

fn substitute(s: &str, subs: &[(&str, &str)]) -> String {
    subs.iter().fold(s.to_string(), |acc, (from, to)| acc.replace(from, to))
}

/// The request of a §7 example as bytes: the spec's head and body with substitutions, a `Host`
/// header after the request line and `Connection: close` at the end (both omitted by the spec).
/// A stated `Content-Length` must equal the byte count of the (substituted) body.
fn request(head: &[&str], body: &str, subs: &[(&str, &str)]) -> Vec<u8> {
    let body = substitute(body, subs);
    let mut lines: Vec<String> = head.iter().map(|l| substitute(l, subs)).collect();
    for l in &lines {
        if let Some(n) = l.strip_prefix("Content-Length: ") {
            assert_eq!(
                n.parse::<usize>().unwrap(),
                body.len(),
                "stated Content-Length of {}",
                lines[0]
            );
        }
    }
    lines.insert(1, "Host: 127.0.0.1".into());
    lines.push("Connection: close".into());
    let mut out = lines.join("\r\n").into_bytes();
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body.as_bytes());
    out
}

/// Compares a response with a §7 example: status, the example's headers, and the body (parsed,
/// then byte for byte). An example without `Content-Type` means the response has none.
fn check(r: &RawResponse, head: &[&str], body: &str, subs: &[(&str, &str)]) {
    let expected = substitute(body, subs);
    let status: u16 = head[0].split(' ').nth(1).unwrap().parse().unwrap();
    assert_eq!(r.status, status, "{}: body {}", head[0], r.text());
    let mut saw_content_type = false;
    for l in &head[1..] {
        let (name, value) = l.split_once(": ").unwrap();
        let name = name.to_ascii_lowercase();
        saw_content_type |= name == "content-type";
        assert_eq!(r.header(&name), Some(value), "header {name}; all {:?}", r.headers);
    }
    if !saw_content_type {
        assert!(r.header("content-type").is_none(), "no Content-Type: {:?}", r.headers);
    }
    assert!(r.header("transfer-encoding").is_none());
    assert!(r.header("new-base-url").is_none());
    if !expected.is_empty() {
        let got = r.json();
        let want: Value = serde_json::from_str(&expected).unwrap();
        assert_eq!(got, want, "JSON of the response");
    }
    assert_eq!(r.text(), expected, "exact bytes of the response");
}

// ----- the story ----------------------------------------------------------------------------

async fn example_exchanges_of_section_7() {
    let ts = TestServer::start().await;
    let code = ts.app.application_code.clone();
    assert_eq!(code.len(), SPEC_CODE.len());

    // §7.1 Register (Android).
    let r = ts
        .raw(&request(REQ_7_1_HEAD, REQ_7_1_BODY, &[(SPEC_CODE, &code)]))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let a = r.json()["pushRegId"].as_str().unwrap().to_string();
    check(&r, RESP_7_1_HEAD, RESP_7_1_BODY, &[(SPEC_A, &a)]);
    let s = ts.snapshot().await;
    let pa = person_of(&s, &a);
    assert!(pa.is_anonymous());
    assert_eq!(pa.person_type, PersonType::Lead);

    // State before §7.2: A personalized as cust-1001 (P1) and primary.
    let r = ts
        .personalize_ok(
            &a,
            json!({"userIdentity": {"externalUserId": "cust-1001"},
                   "userAttributes": {"firstName": "Ana", "lastName": "Horvat", "tags": ["vip"],
                                      "customAttributes": {"favoriteColor": "green", "newsletter": true}}}),
            "setDeviceAsPrimary=true&keepAsLead=false&forceDepersonalize=false",
        )
        .await;
    assert_eq!(r["type"], "CUSTOMER");
    assert_eq!(r["instances"][0]["isPrimary"], true);

    // §7.2 Patch user with nulls (Android, method override).
    let subs_a = [(SPEC_CODE, code.as_str()), (SPEC_A, a.as_str())];
    let r = ts.raw(&request(REQ_7_2_HEAD, REQ_7_2_BODY, &subs_a)).await;
    check(&r, RESP_7_2_HEAD, RESP_7_2_BODY, &subs_a);

    // State before §7.3: B registered (iOS), anonymous P2 with some data.
    let r = ts
        .call(
            "POST",
            "/mobile/1/appinstance?rt=1",
            None,
            Some(&json!({
                "appVersion": "3.2.1", "customAttributes": {}, "deviceManufacturer": "Apple",
                "deviceModel": "iPhone16,1", "deviceName": "Ana's iPhone", "deviceSecure": true,
                "deviceTimezoneOffset": "GMT+01:00", "isPrimary": false, "language": "hr",
                "notificationsEnabled": true, "os": "iOS", "osVersion": "18.1",
                "pushServiceToken": "0B30557A9FC4E90E33587DA2C7EC11365B80A5CAEF14395E83A8CDF2173C6186",
                "pushServiceType": "APNS", "regEnabled": true, "sdkVersion": "15.5.2"
            })),
        )
        .await
        .ok();
    let b = r.json()["pushRegId"].as_str().unwrap().to_string();
    assert_eq!(
        r.json()["pushServiceToken"],
        "0b30557a9fc4e90e33587da2c7ec11365b80a5caef14395e83a8cdf2173c6186"
    );
    let r = patch_user(
        &ts,
        &b,
        &json!({"firstName": "Anna", "middleName": "Marija", "tags": ["beta"],
                "customAttributes": {"newsletter": false, "onboardingDone": true}}),
    )
    .await
    .ok()
    .json();
    assert_eq!(r["type"], "LEAD");
    assert!(r.get("externalUserId").is_none());
    let s = ts.snapshot().await;
    let p1 = person_of(&s, &a).clone();
    let p2 = person_of(&s, &b).clone();
    assert!(p2.is_anonymous());

    // §7.3 Personalize with merge (iOS).
    let subs_ab = [(SPEC_CODE, code.as_str()), (SPEC_A, a.as_str()), (SPEC_B, b.as_str())];
    let r = ts.raw(&request(REQ_7_3_HEAD, REQ_7_3_BODY, &subs_ab)).await;
    check(&r, RESP_7_3_HEAD, RESP_7_3_BODY, &subs_ab);
    let s = ts.snapshot().await;
    assert!(!s.persons.iter().any(|p| p.id == p2.id), "P2 was deleted");
    let p1_now = person_of(&s, &b).clone();
    assert_eq!(p1_now.id, p1.id, "B moved to P1");
    assert_eq!(p1_now.person_type, PersonType::Customer);
    assert!(p1_now.version > p1.version);
    let ia = inst(&s, &a);
    let ib = inst(&s, &b);
    assert!(!ia.is_primary && ib.is_primary);
    // The merge-log entry (people.md §9.2).
    assert_eq!(s.merge_log.len(), 1);
    let e = &s.merge_log[0];
    assert_eq!(e.account_id, ts.app.account_id);
    assert_eq!(e.push_reg_id, b);
    assert_eq!(e.source_person_id, Some(p2.id));
    assert_eq!(e.target_person_id, Some(p1.id));
    assert!(e.source_deleted);
    assert!(!e.after_forced_depersonalize);
    assert!(e.dropped_attributes.is_empty());
    assert_eq!(e.status, MergeStatus::Applied);
    assert_eq!(e.reversed_at, None);
    assert!(!e.redacted);
    assert_eq!(
        e.actor,
        json!({"type": "INSTALLATION", "pushRegId": b, "applicationCode": code})
    );
    assert_eq!(e.after_target_version, p1_now.version);
    assert_eq!(e.after_source_version, None);
    let before = e.before.as_ref().expect("snapshots kept");
    assert_eq!(before.source.first_name.as_deref(), Some("Anna"));
    assert_eq!(before.source.middle_name.as_deref(), Some("Marija"));
    assert_eq!(before.source.tags.iter().collect::<Vec<_>>(), vec!["beta"]);
    assert_eq!(
        serde_json::to_value(&before.source.custom_attributes).unwrap(),
        json!({"newsletter": false, "onboardingDone": true})
    );
    assert_eq!(before.source.person_type, PersonType::Lead);
    assert_eq!(before.source.version, p2.version);
    assert_eq!(before.target.external_user_id.as_deref(), Some("cust-1001"));
    assert_eq!(before.target.first_name.as_deref(), Some("Ana"));
    assert_eq!(before.target.last_name, None);
    assert_eq!(before.target.phones, vec!["385911234567".to_string()]);
    assert!(before.target.emails.is_empty());
    assert_eq!(
        serde_json::to_value(&before.target.custom_attributes).unwrap(),
        json!({"loyaltyPoints": 120, "newsletter": true})
    );
    assert_eq!(before.target.person_type, PersonType::Customer);
    assert_eq!(before.target.version, p1.version);
    assert!(!before.installation.is_primary);
    assert_eq!(
        before.installation.target_primary_push_reg_id.as_deref(),
        Some(a.as_str())
    );

    // §7.4 Set the other installation primary (iOS, real PATCH).
    let r = ts.raw(&request(REQ_7_4_HEAD, REQ_7_4_BODY, &subs_ab)).await;
    check(&r, RESP_7_4_HEAD, RESP_7_4_BODY, &subs_ab);
    let s = ts.snapshot().await;
    assert!(inst(&s, &a).is_primary);
    assert!(!inst(&s, &b).is_primary);
    let p1_before_logout = person_of(&s, &b).clone();

    // §7.5 Depersonalize (Android, body-less POST without Content-Length).
    let req = request(REQ_7_5_HEAD, REQ_7_5_BODY, &subs_ab);
    assert!(
        !String::from_utf8_lossy(&req)
            .to_ascii_lowercase()
            .contains("content-length")
    );
    let r = ts.raw(&req).await;
    check(&r, RESP_7_5_HEAD, RESP_7_5_BODY, &subs_ab);
    let s = ts.snapshot().await;
    let ia = inst(&s, &a).clone();
    let pa = person_of(&s, &a).clone();
    assert_ne!(pa.id, p1.id);
    assert!(pa.is_anonymous());
    assert_eq!(pa.person_type, PersonType::Lead);
    assert!(pa.first_name.is_none() && pa.tags.is_empty() && pa.custom_attributes.is_empty());
    assert_eq!(s.installations.iter().filter(|i| i.person_id == pa.id).count(), 1);
    assert!(!ia.is_primary);
    assert!(ia.custom_attributes.is_empty());
    assert_eq!(ia.application_user_id, None);
    assert!(ia.push_service_token.is_some(), "the token is unchanged");
    let p1_after = s.persons.iter().find(|p| p.id == p1.id).expect("P1 kept").clone();
    assert_eq!(p1_after, p1_before_logout, "P1 keeps all its data");
    let p1_insts: Vec<_> = s.installations.iter().filter(|i| i.person_id == p1.id).collect();
    assert_eq!(p1_insts.len(), 1);
    assert_eq!(p1_insts[0].push_reg_id, b);
    assert!(!p1_insts[0].is_primary, "P1 has no primary installation now");
    let g = get_user(&ts, &a).await.ok().json();
    assert_eq!(g["type"], "LEAD");
    assert_eq!(g["instances"].as_array().unwrap().len(), 1);
    assert_eq!(g["instances"][0]["pushRegId"], a.as_str());

    // §7.6 Error: personalize as somebody else without force.
    let before_409 = ts.snapshot().await;
    let r = ts.raw(&request(REQ_7_6_HEAD, REQ_7_6_BODY, &subs_ab)).await;
    check(&r, RESP_7_6_HEAD, RESP_7_6_BODY, &subs_ab);
    assert_eq!(ts.snapshot().await, before_409, "nothing changed");
    // The same request with forceDepersonalize=1 succeeds.
    let head: Vec<&str> = REQ_7_6_HEAD
        .iter()
        .map(|l| {
            if l.starts_with("POST ") {
                "POST /mobile/1/appinstance/d2a41f7e-8b3c-4f10-a6e5-0c9b8a7d6e5f/personalize?forceDepersonalize=1&keepAsLead=0&setDeviceAsPrimary=0 HTTP/1.1"
            } else {
                *l
            }
        })
        .collect();
    let r = ts.raw(&request(&head, REQ_7_6_BODY, &subs_ab)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["externalUserId"], "cust-2002");
    assert_eq!(j["type"], "CUSTOMER");
    assert_eq!(j["phones"], json!([]));
    assert_eq!(j["instances"].as_array().unwrap().len(), 1);
    assert_eq!(j["instances"][0]["pushRegId"], b.as_str());
    let s = ts.snapshot().await;
    let pb = person_of(&s, &b).clone();
    assert_ne!(pb.id, p1.id);
    assert_eq!(pb.external_user_id.as_deref(), Some("cust-2002"));
    assert_eq!(pb.person_type, PersonType::Customer);
    let p1_final = s
        .persons
        .iter()
        .find(|p| p.id == p1.id)
        .expect("P1 kept without installations");
    assert_eq!(p1_final, &p1_before_logout);
    assert_eq!(s.merge_log.len(), 1, "no merge: the fresh person received the identity");

    // For comparison: an unknown caller.
    let unknown = uuid::Uuid::new_v4().to_string();
    let req = format!(
        "GET /mobile/1/appinstance/{unknown} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: App {code}\r\npushregistrationid: {unknown}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    let r = ts.raw(req.as_bytes()).await;
    check(&r, RESP_NO_REG_HEAD, RESP_NO_REG_BODY, &[]);
    ts.finish().await;
}

on_every_backend!(example_exchanges_of_section_7,);
