//! `Authorization: Bearer <jwt>` on the user-data endpoints (mobile-api.md §2.2, §2.3, §6.18;
//! people.md §5.4): acceptance, every verification failure, the subject rules, and
//! `requireJwtForUserData`.
mod common;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use common::{
    NO_FLAGS, Resp, TestServer, ipath, make_jwt, now_secs,
    people_helpers::{depersonalize, get_user, patch_user, person_of, without_new_installation},
    user_path,
};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

// ----- helpers ------------------------------------------------------------------------------

const SUB: &str = "jwt-user";

fn personalize_path(id: &str) -> String {
    format!("{}/personalize?{NO_FLAGS}", ipath(id))
}

/// A token from an explicit header and claims, signed HS256 with `secret` (whatever the header
/// says), so that malformed headers can be built.
fn sign_raw(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let msg = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = jsonwebtoken::crypto::sign(
        msg.as_bytes(),
        &EncodingKey::from_secret(secret).unwrap(),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{msg}.{sig}")
}

fn claims(code: &str, sub: &str) -> Value {
    let n = now_secs();
    json!({"typ": "Bearer", "sub": sub, "infobip-api-key": code, "iat": n, "exp": n + 300,
           "jti": uuid::Uuid::new_v4().to_string()})
}

async fn bearer(ts: &TestServer, method: &str, path: &str, caller: &str, token: &str, body: Option<Value>) -> Resp {
    ts.call_with(
        method,
        path,
        &[("authorization", &format!("Bearer {token}"))],
        Some(caller),
        body.map(|b| b.to_string().into_bytes()),
    )
    .await
}

/// `GET /user` of `id` as `id` with `Authorization: Bearer <token>`.
async fn bearer_get_user(ts: &TestServer, id: &str, token: &str) -> Resp {
    bearer(ts, "GET", &user_path(id), id, token, None).await
}

/// `PATCH /user` of `id` as `id` with `Authorization: Bearer <token>`.
async fn bearer_patch_user(ts: &TestServer, id: &str, token: &str, body: Value) -> Resp {
    bearer(ts, "PATCH", &user_path(id), id, token, Some(body)).await
}

/// `POST /personalize` (all flags `false`) of `id` as `id` with `Authorization: Bearer <token>`.
async fn bearer_personalize(ts: &TestServer, id: &str, token: &str, body: Value) -> Resp {
    bearer(ts, "POST", &personalize_path(id), id, token, Some(body)).await
}

/// `POST /repersonalize` of `id` as `id` with `Authorization: Bearer <token>`.
async fn bearer_repersonalize(ts: &TestServer, id: &str, token: &str, body: Value) -> Resp {
    bearer(
        ts,
        "POST",
        &format!("{}/repersonalize", ipath(id)),
        id,
        token,
        Some(body),
    )
    .await
}

/// A server with JWT key `k1`, and an installation personalized (with App auth) as [`SUB`].
async fn setup() -> (TestServer, Vec<u8>, String) {
    let ts = TestServer::start().await;
    let key = ts.core().create_jwt_key(&ts.app, Some("k1")).await.unwrap();
    let id = ts
        .register_personalized_with(
            json!({"userIdentity": {"externalUserId": SUB}, "userAttributes": {"firstName": "Jay"}}),
            NO_FLAGS,
        )
        .await;
    (ts, key.key.secret.clone(), id)
}

// ----- acceptance ---------------------------------------------------------------------------

async fn bearer_is_accepted_on_the_user_data_endpoints() {
    let (ts, secret, id) = setup().await;
    let code = ts.app.application_code.clone();
    let tok = || make_jwt("k1", &secret, &code, SUB, json!({}));

    let r = bearer_get_user(&ts, &id, &tok()).await.ok().json();
    assert_eq!(r["externalUserId"], SUB);
    assert_eq!(r["firstName"], "Jay");
    assert!(r["instances"][0]["pushServiceToken"].is_string());
    let r = bearer_patch_user(&ts, &id, &tok(), json!({"lastName": "Doe"}))
        .await
        .ok()
        .json();
    assert_eq!(r["lastName"], "Doe");
    // Setting externalUserId to the subject itself is fine.
    bearer_patch_user(&ts, &id, &tok(), json!({"externalUserId": SUB}))
        .await
        .ok();
    // Android POST + override with Bearer.
    let r = ts
        .call_with(
            "POST",
            &user_path(&id),
            &[
                ("authorization", &format!("Bearer {}", tok())),
                ("x-http-method-override", "PATCH"),
            ],
            Some(&id),
            Some(br#"{"middleName":"M"}"#.to_vec()),
        )
        .await
        .ok();
    assert_eq!(r.json()["middleName"], "M");
    // The scheme is case-insensitive.
    ts.call_with(
        "GET",
        &user_path(&id),
        &[("authorization", &format!("bearer {}", tok()))],
        Some(&id),
        None,
    )
    .await
    .ok();
    // Personalize and repersonalize with userIdentity.externalUserId = sub.
    let r = bearer_personalize(
        &ts,
        &id,
        &tok(),
        json!({"userIdentity": {"externalUserId": SUB, "emails": [{"address": "jay@example.com"}]}}),
    )
    .await
    .ok()
    .json();
    assert_eq!(r["emails"], json!([{"address": "jay@example.com"}]));
    bearer_repersonalize(&ts, &id, &tok(), json!({"userIdentity": {"externalUserId": SUB}}))
        .await
        .ok();
    // A fresh anonymous installation may personalize with a token for a new subject.
    let fresh = ts.register_android().await;
    let r = bearer_personalize(
        &ts,
        &fresh,
        &make_jwt("k1", &secret, &code, "newcomer", json!({})),
        json!({"userIdentity": {"externalUserId": "newcomer"}}),
    )
    .await
    .ok()
    .json();
    assert_eq!(r["externalUserId"], "newcomer");
    assert_eq!(r["type"], "CUSTOMER");
    // The same token may be used again (jti is not checked for reuse).
    let t = tok();
    bearer_get_user(&ts, &id, &t).await.ok();
    bearer_get_user(&ts, &id, &t).await.ok();
    ts.finish().await;
}

// ----- verification failures --------------------------------------------------------------------

async fn malformed_or_badly_signed_tokens_are_jwt_invalid() {
    let (ts, secret, id) = setup().await;
    let code = ts.app.application_code.clone();
    let other_app = ts.other_app().await;
    let other_key = ts.core().create_jwt_key(&other_app, Some("k2")).await.unwrap();
    let deleted = ts.core().create_jwt_key(&ts.app, Some("gone")).await.unwrap();
    assert!(ts.core().delete_jwt_key(&ts.app, "gone").await.unwrap());
    let c = claims(&code, SUB);
    let hs = |h: Value| sign_raw(&h, &c, &secret);
    let good = hs(json!({"alg": "HS256", "typ": "JWT", "kid": "k1"}));
    // Sanity: the hand-made token is accepted; the header typ value is not checked.
    bearer_get_user(&ts, &id, &good).await.ok();
    let odd_typ = hs(json!({"alg": "HS256", "typ": "whatever", "kid": "k1"}));
    bearer_get_user(&ts, &id, &odd_typ).await.ok();

    let parts: Vec<&str> = good.split('.').collect();
    let none_header = URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT", "kid": "k1"}).to_string());
    let hs512 = {
        let mut h = jsonwebtoken::Header::new(Algorithm::HS512);
        h.kid = Some("k1".into());
        h.typ = Some("JWT".into());
        jsonwebtoken::encode(&h, &c, &EncodingKey::from_secret(&secret).unwrap()).unwrap()
    };
    let tampered_payload = {
        let mut c2 = c.clone();
        c2["sub"] = json!("somebody-else");
        format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(c2.to_string()), parts[2])
    };
    let cases: Vec<(&str, String)> = vec![
        ("not a jwt", "abc".into()),
        ("two parts", format!("{}.{}", parts[0], parts[1])),
        ("alg none, no signature", format!("{none_header}.{}.", parts[1])),
        (
            "alg none, with signature",
            format!("{none_header}.{}.{}", parts[1], parts[2]),
        ),
        ("HS512", hs512),
        ("alg missing", hs(json!({"typ": "JWT", "kid": "k1"}))),
        ("typ header missing", hs(json!({"alg": "HS256", "kid": "k1"}))),
        ("kid missing", hs(json!({"alg": "HS256", "typ": "JWT"}))),
        ("unknown kid", hs(json!({"alg": "HS256", "typ": "JWT", "kid": "nope"}))),
        ("deleted kid", {
            let h = json!({"alg": "HS256", "typ": "JWT", "kid": "gone"});
            sign_raw(&h, &c, &deleted.key.secret)
        }),
        ("kid of another application", {
            let h = json!({"alg": "HS256", "typ": "JWT", "kid": "k2"});
            sign_raw(&h, &c, &other_key.key.secret)
        }),
        (
            "bad signature",
            sign_raw(&json!({"alg": "HS256", "typ": "JWT", "kid": "k1"}), &c, &[9u8; 32]),
        ),
        ("tampered payload", tampered_payload),
        (
            "header not JSON",
            format!("{}.{}.{}", URL_SAFE_NO_PAD.encode("nope"), parts[1], parts[2]),
        ),
    ];
    let before = ts.snapshot().await;
    for (what, token) in &cases {
        let r = bearer_get_user(&ts, &id, token).await;
        assert_eq!(r.status.as_u16(), 401, "{what}: {}", r.text());
        r.assert_error(401, "JWT_INVALID");
        bearer_patch_user(&ts, &id, token, json!({"firstName": "Hacked"}))
            .await
            .assert_error(401, "JWT_INVALID");
        bearer_personalize(&ts, &id, token, json!({"userIdentity": {"externalUserId": SUB}}))
            .await
            .assert_error(401, "JWT_INVALID");
    }
    assert_eq!(ts.snapshot().await, before);
    ts.finish().await;
}

async fn claims_are_checked_with_60_seconds_leeway() {
    let (ts, secret, id) = setup().await;
    let code = ts.app.application_code.clone();
    let n = now_secs();
    let tok = |extra: Value| make_jwt("k1", &secret, &code, SUB, extra);
    // Rejected.
    for (what, extra) in [
        ("typ claim JWT", json!({"typ": "JWT"})),
        ("typ claim missing", json!({"typ": null})),
        ("typ claim lowercase", json!({"typ": "bearer"})),
        ("iat 120 s in the future", json!({"iat": n + 120})),
        ("exp 120 s ago", json!({"exp": n - 120, "iat": n - 600})),
        ("exp 61 s ago", json!({"exp": n - 61, "iat": n - 600})),
        ("jti missing", json!({"jti": null})),
        ("jti empty", json!({"jti": ""})),
        ("jti not a string", json!({"jti": 5})),
        ("unknown application", json!({"infobip-api-key": "0".repeat(64)})),
        ("infobip-api-key missing", json!({"infobip-api-key": null})),
        ("sub missing", json!({"sub": null})),
    ] {
        let r = bearer_get_user(&ts, &id, &tok(extra)).await;
        assert_eq!(r.status.as_u16(), 401, "{what}: {}", r.text());
        r.assert_error(401, "JWT_INVALID");
    }
    // Accepted: within the leeway, and the application code in upper case.
    for (what, extra) in [
        ("iat 30 s in the future", json!({"iat": n + 30})),
        ("exp 30 s ago", json!({"exp": n - 30, "iat": n - 600})),
        ("exp just now", json!({"exp": n, "iat": n - 600})),
        ("code in upper case", json!({"infobip-api-key": code.to_uppercase()})),
    ] {
        let r = bearer_get_user(&ts, &id, &tok(extra)).await;
        assert_eq!(r.status.as_u16(), 200, "{what}: {}", r.text());
    }
    ts.finish().await;
}

async fn token_of_a_disabled_application_is_jwt_invalid() {
    let (ts, secret, id) = setup().await;
    let token = make_jwt("k1", &secret, &ts.app.application_code, SUB, json!({}));
    bearer_get_user(&ts, &id, &token).await.ok();
    ts.core()
        .update_application_settings(&ts.app, Some(false), None, None)
        .await
        .unwrap();
    bearer_get_user(&ts, &id, &token).await.assert_error(401, "JWT_INVALID");
    ts.finish().await;
}

async fn token_of_another_application_does_not_see_this_applications_installations() {
    let (ts, _secret, id) = setup().await;
    let other = ts.other_app().await;
    let k2 = ts.core().create_jwt_key(&other, Some("k2")).await.unwrap();
    // A valid token of the other application: the caller is unknown there.
    let token = make_jwt("k2", &k2.key.secret, &other.application_code, SUB, json!({}));
    bearer_get_user(&ts, &id, &token)
        .await
        .assert_error(404, "NO_REGISTRATION");
    ts.finish().await;
}

// ----- subject rules ------------------------------------------------------------------------------

async fn subject_must_be_the_persons_external_user_id() {
    let (ts, secret, id) = setup().await;
    let code = ts.app.application_code.clone();
    let as_sub = |sub: &str| make_jwt("k1", &secret, &code, sub, json!({}));
    let before = ts.snapshot().await;
    // GET / PATCH user with another subject.
    bearer_get_user(&ts, &id, &as_sub("someone-else"))
        .await
        .assert_error(401, "JWT_INVALID");
    bearer_patch_user(&ts, &id, &as_sub("someone-else"), json!({"firstName": "X"}))
        .await
        .assert_error(401, "JWT_INVALID");
    // The subject check (step 7) comes before field validation (step 8).
    bearer_patch_user(
        &ts,
        &id,
        &as_sub("someone-else"),
        json!({"emails": [{"address": "bad"}]}),
    )
    .await
    .assert_error(401, "JWT_INVALID");
    // An anonymous person has no externalUserId: any subject is wrong.
    let anon = ts.register_android().await;
    bearer_get_user(&ts, &anon, &as_sub(SUB))
        .await
        .assert_error(401, "JWT_INVALID");
    bearer_patch_user(&ts, &anon, &as_sub(SUB), json!({"firstName": "X"}))
        .await
        .assert_error(401, "JWT_INVALID");
    // PATCH user changing or clearing externalUserId: 403 USER_DATA_RESTRICTED.
    let before_anon = without_new_installation(ts.snapshot().await, &anon, &before);
    assert_eq!(before_anon, before);
    let after_anon = ts.snapshot().await;
    for body in [
        json!({"externalUserId": "renamed"}),
        json!({"externalUserId": null}),
        json!({"externalUserId": ""}),
        json!({"externalUserId": "NULL"}),
        json!({"firstName": "Ok", "externalUserId": "jwt-user2"}),
    ] {
        bearer_patch_user(&ts, &id, &as_sub(SUB), body.clone())
            .await
            .assert_error(403, "USER_DATA_RESTRICTED");
    }
    // Personalize / repersonalize: userIdentity.externalUserId must be present and equal sub.
    for body in [
        json!({"userIdentity": {"externalUserId": "someone-else"}}),
        json!({"userIdentity": {"emails": [{"address": "jay@example.com"}]}}),
        json!({"userIdentity": {"externalUserId": "JWT-USER"}}),
        json!({}),
    ] {
        bearer_personalize(&ts, &id, &as_sub(SUB), body.clone())
            .await
            .assert_error(401, "JWT_INVALID");
        bearer_repersonalize(&ts, &id, &as_sub(SUB), body)
            .await
            .assert_error(401, "JWT_INVALID");
    }
    assert_eq!(ts.snapshot().await, after_anon);
    ts.finish().await;
}

// ----- requireJwtForUserData -------------------------------------------------------------------------

async fn require_jwt_for_user_data() {
    let (ts, secret, id) = setup().await;
    let code = ts.app.application_code.clone();
    let other = ts.register_android().await;
    ts.core()
        .update_application_settings(&ts.app, None, Some(true), None)
        .await
        .unwrap();
    let before = ts.snapshot().await;
    // App auth on the user endpoints: 401 JWT_INVALID.
    get_user(&ts, &id).await.assert_error(401, "JWT_INVALID");
    patch_user(&ts, &id, &json!({"firstName": "X"}))
        .await
        .assert_error(401, "JWT_INVALID");
    ts.call(
        "POST",
        &personalize_path(&other),
        Some(&other),
        Some(&json!({"userIdentity": {"externalUserId": "anyone"}})),
    )
    .await
    .assert_error(401, "JWT_INVALID");
    ts.call(
        "POST",
        &format!("{}/repersonalize", ipath(&other)),
        Some(&other),
        Some(&json!({"userIdentity": {"externalUserId": "anyone"}})),
    )
    .await
    .assert_error(401, "JWT_INVALID");
    assert_eq!(ts.snapshot().await, before);
    // Bearer works.
    let tok = make_jwt("k1", &secret, &code, SUB, json!({}));
    let r = bearer_get_user(&ts, &id, &tok).await.ok().json();
    assert_eq!(r["externalUserId"], SUB);
    bearer_patch_user(&ts, &id, &tok, json!({"tags": ["jwt"]})).await.ok();
    // Installation endpoints and depersonalize keep using App auth.
    ts.call("GET", &ipath(&id), Some(&id), None).await.ok();
    ts.call("PATCH", &ipath(&id), Some(&id), Some(&json!({"language": "hr"})))
        .await
        .ok();
    let created = ts.register_android().await;
    ts.call("DELETE", &ipath(&created), Some(&other), None).await.ok();
    ts.call(
        "POST",
        &format!("{}/user/events/session", ipath(&id)),
        Some(&id),
        Some(&json!({})),
    )
    .await
    .ok();
    depersonalize(&ts, &id, &id).await.ok();
    assert!(person_of(&ts.snapshot().await, &id).is_anonymous());
    // Personalize of the (now anonymous) installation with Bearer.
    let r = bearer_personalize(&ts, &id, &tok, json!({"userIdentity": {"externalUserId": SUB}}))
        .await
        .ok()
        .json();
    assert_eq!(r["externalUserId"], SUB);
    assert_eq!(r["tags"], json!(["jwt"]));
    ts.finish().await;
}

on_every_backend!(
    bearer_is_accepted_on_the_user_data_endpoints,
    malformed_or_badly_signed_tokens_are_jwt_invalid,
    claims_are_checked_with_60_seconds_leeway,
    token_of_a_disabled_application_is_jwt_invalid,
    token_of_another_application_does_not_see_this_applications_installations,
    subject_must_be_the_persons_external_user_id,
    require_jwt_for_user_data,
);
