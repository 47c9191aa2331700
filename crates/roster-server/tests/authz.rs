//! The authorization matrix (mobile-api.md §2, §5): every installation route × every kind of
//! credential, and every route aimed at somebody else's installation. What must hold:
//! an application's code never reaches another application's installations (of the same
//! account or another one); an installation never reads or changes another person's
//! installations; a JWT for person A never works for person B; expired, badly signed,
//! wrong-key, `alg: none` and wrong-application tokens are refused. Every refused request
//! changes nothing (people.md invariant 16).
mod common;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use common::{
    NO_FLAGS, Resp, TestServer, ipath, make_jwt, now_secs,
    people_helpers::{assert_same_store, personalize_in, register_in},
    user_path,
};
use jsonwebtoken::{Algorithm, EncodingKey};
use roster_model::{Account, Application, now_millis};
use serde_json::{Value, json};

/// The cast: applications of two accounts, persons alice (in both accounts) and bob, and the
/// JWT keys of each application.
struct World {
    ts: TestServer,
    /// The test application ("app1") and another application of the same account.
    app2: Application,
    /// An application of another account.
    app3: Application,
    /// alice's two installations in app1, bob's one, an anonymous one.
    a1: String,
    a2: String,
    b1: String,
    n1: String,
    /// alice's installation in app2 (same account: the same person as a1, a2).
    x1: String,
    /// An installation in the other account personalized as "alice" (another person).
    y1: String,
    secret1: Vec<u8>,
    secret2: Vec<u8>,
    secret3: Vec<u8>,
}

async fn world() -> World {
    let ts = TestServer::start().await;
    let app2 = ts.other_app().await;
    let account2 = Account {
        id: uuid::Uuid::new_v4(),
        name: "Elsewhere".into(),
        created_at: now_millis(),
    };
    let mut tx = ts.store.begin().await.unwrap();
    tx.insert_account(&account2).await.unwrap();
    tx.commit().await.unwrap();
    let app3 = ts.core().create_application(account2.id, "Foreign").await.unwrap();
    let secret1 = ts.core().create_jwt_key(&ts.app, Some("k1")).await.unwrap().key.secret;
    let secret2 = ts.core().create_jwt_key(&app2, Some("k2")).await.unwrap().key.secret;
    let secret3 = ts.core().create_jwt_key(&app3, Some("k3")).await.unwrap().key.secret;

    let a1 = ts.register_personalized("alice").await;
    let a2 = ts.register_personalized("alice").await;
    let b1 = ts.register_personalized("bob").await;
    let n1 = ts.register_android().await;
    let x1 = register_in(&ts, &app2).await;
    personalize_in(
        &ts,
        &app2,
        &x1,
        &json!({"userIdentity": {"externalUserId": "alice"}}),
        NO_FLAGS,
    )
    .await;
    let y1 = register_in(&ts, &app3).await;
    personalize_in(
        &ts,
        &app3,
        &y1,
        &json!({"userIdentity": {"externalUserId": "alice"}}),
        NO_FLAGS,
    )
    .await;

    let s = ts.snapshot().await;
    let person = |id: &str| s.installations.iter().find(|i| i.push_reg_id == id).unwrap().person_id;
    assert_eq!(person(&a1), person(&a2));
    assert_eq!(person(&a1), person(&x1), "one account: one alice");
    assert_ne!(person(&a1), person(&y1), "another account: another alice");
    assert_ne!(person(&a1), person(&b1));
    World {
        ts,
        app2,
        app3,
        a1,
        a2,
        b1,
        n1,
        x1,
        y1,
        secret1,
        secret2,
        secret3,
    }
}

/// A token signed HS256 with `secret` from an explicit header and claims.
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
    json!({"typ": "Bearer", "sub": sub, "infobip-api-key": code, "iat": n, "exp": n + 300, "jti": "j-1"})
}

/// What a request must get.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Ok,
    Err(u16, &'static str),
}

use Expect::Err as E;

/// One credential of the matrix and what it gets on an App-only route and on a user-data
/// route whose caller and target are alice's a1.
struct Credential {
    name: &'static str,
    authorization: Option<String>,
    on_app_route: Expect,
    on_user_route: Expect,
}

fn credentials(w: &World) -> Vec<Credential> {
    let code1 = w.ts.app.application_code.clone();
    let code2 = w.app2.application_code.clone();
    let code3 = w.app3.application_code.clone();
    let alice1 = make_jwt("k1", &w.secret1, &code1, "alice", json!({}));
    let none_header = URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT", "kid": "k1"}).to_string());
    let alice_payload = URL_SAFE_NO_PAD.encode(claims(&code1, "alice").to_string());
    let bearer = |t: String| Some(format!("Bearer {t}"));
    let c = |name, authorization: Option<String>, on_app_route, on_user_route| Credential {
        name,
        authorization,
        on_app_route,
        on_user_route,
    };
    let missing = E(401, "APP_CODE_MISSING");
    let jwt_invalid = E(401, "JWT_INVALID");
    vec![
        c(
            "own application code",
            Some(format!("App {code1}")),
            Expect::Ok,
            Expect::Ok,
        ),
        c(
            "own code, upper case",
            Some(format!("APP {}", code1.to_uppercase())),
            Expect::Ok,
            Expect::Ok,
        ),
        // §2.4: an installation of another application is unknown in this one.
        c(
            "code of another application",
            Some(format!("App {code2}")),
            E(404, "NO_REGISTRATION"),
            E(404, "NO_REGISTRATION"),
        ),
        c(
            "code of another account's application",
            Some(format!("App {code3}")),
            E(404, "NO_REGISTRATION"),
            E(404, "NO_REGISTRATION"),
        ),
        c("no Authorization", None, missing, missing),
        c("empty App credential", Some("App".into()), missing, missing),
        c("App and spaces", Some("App    ".into()), missing, missing),
        c("Basic scheme", Some(format!("Basic {code1}")), missing, missing),
        c("no scheme", Some(code1.clone()), missing, missing),
        c(
            "unknown code",
            Some(format!("App {}", "0".repeat(64))),
            E(401, "INVALID_APPLICATION_CODE"),
            E(401, "INVALID_APPLICATION_CODE"),
        ),
        c(
            "code with junk",
            Some(format!("App {code1}x")),
            E(401, "INVALID_APPLICATION_CODE"),
            E(401, "INVALID_APPLICATION_CODE"),
        ),
        c("empty Bearer", Some("Bearer ".into()), missing, missing),
        // §2.2: Bearer only on the user-data endpoints.
        c("alice's JWT", bearer(alice1.clone()), missing, Expect::Ok),
        c("garbage JWT", bearer("not.a.jwt".into()), missing, jwt_invalid),
        // A JWT for person B never works for person A.
        c(
            "bob's JWT",
            bearer(make_jwt("k1", &w.secret1, &code1, "bob", json!({}))),
            missing,
            jwt_invalid,
        ),
        c(
            "expired JWT",
            bearer(make_jwt(
                "k1",
                &w.secret1,
                &code1,
                "alice",
                json!({"iat": now_secs() - 900, "exp": now_secs() - 120}),
            )),
            missing,
            jwt_invalid,
        ),
        c(
            "JWT not yet issued",
            bearer(make_jwt(
                "k1",
                &w.secret1,
                &code1,
                "alice",
                json!({"iat": now_secs() + 600}),
            )),
            missing,
            jwt_invalid,
        ),
        // Another application's key: its kid is not a key of app1.
        c(
            "JWT with another application's key",
            bearer(make_jwt("k2", &w.secret2, &code1, "alice", json!({}))),
            missing,
            jwt_invalid,
        ),
        // app1's kid, another application's secret: the signature does not verify.
        c(
            "JWT signed with another secret",
            bearer(make_jwt("k1", &w.secret2, &code1, "alice", json!({}))),
            missing,
            jwt_invalid,
        ),
        c(
            "JWT with an unknown kid",
            bearer(make_jwt("nope", &w.secret1, &code1, "alice", json!({}))),
            missing,
            jwt_invalid,
        ),
        c(
            "JWT without kid",
            bearer(sign_raw(
                &json!({"alg": "HS256", "typ": "JWT"}),
                &claims(&code1, "alice"),
                &w.secret1,
            )),
            missing,
            jwt_invalid,
        ),
        c(
            "alg none, no signature",
            bearer(format!("{none_header}.{alice_payload}.")),
            missing,
            jwt_invalid,
        ),
        c(
            "alg none, with a signature",
            bearer(format!(
                "{none_header}.{alice_payload}.{}",
                alice1.rsplit('.').next().unwrap()
            )),
            missing,
            jwt_invalid,
        ),
        // alice's header and claims with the signature of bob's token.
        c(
            "signature of another token",
            bearer(format!(
                "{}.{}",
                alice1.rsplit_once('.').unwrap().0,
                make_jwt("k1", &w.secret1, &code1, "bob", json!({}))
                    .rsplit('.')
                    .next()
                    .unwrap()
            )),
            missing,
            jwt_invalid,
        ),
        // A valid token of another application (same account, or another account): it
        // authenticates that application, where a1 is unknown.
        c(
            "valid JWT of another application",
            bearer(make_jwt("k2", &w.secret2, &code2, "alice", json!({}))),
            missing,
            E(404, "NO_REGISTRATION"),
        ),
        c(
            "valid JWT of another account",
            bearer(make_jwt("k3", &w.secret3, &code3, "alice", json!({}))),
            missing,
            E(404, "NO_REGISTRATION"),
        ),
        c(
            "JWT naming an unknown application",
            bearer(make_jwt("k1", &w.secret1, &"f".repeat(64), "alice", json!({}))),
            missing,
            jwt_invalid,
        ),
    ]
}

/// A route of the matrix, from a1 to itself (or to a2 where it is a remote operation).
struct Route {
    name: &'static str,
    method: &'static str,
    path: String,
    caller: String,
    body: Option<Value>,
    user_data: bool,
    /// Whether the request succeeds again after succeeding once (a remote logout does not:
    /// the target has left the person).
    repeatable: bool,
}

fn routes(w: &World) -> Vec<Route> {
    let a1 = &w.a1;
    let r = |name, method, path: String, body: Option<Value>, user_data| Route {
        name,
        method,
        path,
        caller: a1.clone(),
        body,
        user_data,
        repeatable: true,
    };
    let alice = json!({"userIdentity": {"externalUserId": "alice"}});
    vec![
        r("GET installation", "GET", ipath(a1), None, false),
        r(
            "PATCH installation",
            "PATCH",
            ipath(a1),
            Some(json!({"language": "hr"})),
            false,
        ),
        r("GET other installation of the person", "GET", ipath(&w.a2), None, false),
        r(
            "PATCH other installation's isPrimary",
            "PATCH",
            ipath(&w.a2),
            Some(json!({"isPrimary": false})),
            false,
        ),
        r("GET user", "GET", user_path(a1), None, true),
        r(
            "PATCH user",
            "PATCH",
            user_path(a1),
            Some(json!({"lastName": "Liddell"})),
            true,
        ),
        r(
            "personalize",
            "POST",
            format!("{}/personalize?{NO_FLAGS}", ipath(a1)),
            Some(alice.clone()),
            true,
        ),
        r(
            "repersonalize",
            "POST",
            format!("{}/repersonalize", ipath(a1)),
            Some(alice),
            true,
        ),
        r(
            "session events",
            "POST",
            format!("{}/user/events/session", ipath(a1)),
            Some(json!({})),
            false,
        ),
        r(
            "custom events",
            "POST",
            format!("{}/user/events/custom", ipath(a1)),
            Some(json!({"events": []})),
            false,
        ),
        // Last: it moves a2 away from alice.
        Route {
            repeatable: false,
            ..r(
                "remote logout of the person's other installation",
                "POST",
                format!("{}/depersonalize", ipath(&w.a2)),
                None,
                false,
            )
        },
    ]
}

async fn send(
    ts: &TestServer,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    caller: Option<&str>,
    body: Option<&Value>,
) -> Resp {
    let headers: Vec<(&str, &str)> = authorization.map(|a| ("authorization", a)).into_iter().collect();
    ts.call_with(method, path, &headers, caller, body.map(|b| b.to_string().into_bytes()))
        .await
}

fn check(r: &Resp, expect: Expect, what: &str) {
    match expect {
        Expect::Ok => assert_eq!(
            r.status.as_u16(),
            200,
            "{what}: expected 200, got {} {}",
            r.status,
            r.text()
        ),
        Expect::Err(status, code) => {
            let got = serde_json::from_slice::<Value>(&r.body).ok().and_then(|v| {
                v["requestError"]["serviceException"]["messageId"]
                    .as_str()
                    .map(str::to_string)
            });
            assert!(
                r.status.as_u16() == status && got.as_deref() == Some(code),
                "{what}: expected {status} {code}, got {} {}",
                r.status,
                r.text()
            );
            r.assert_error(status, code);
        }
    }
}

/// Every installation route × every credential: refusals change nothing; the two accepted
/// credentials (the application's own code, and alice's JWT on user-data routes) succeed.
async fn every_route_with_every_credential() {
    let w = world().await;
    let ts = &w.ts;
    let creds = credentials(&w);
    for route in routes(&w) {
        let before = ts.snapshot().await;
        let mut accepted = Vec::new();
        for cred in &creds {
            let expect = if route.user_data {
                cred.on_user_route
            } else {
                cred.on_app_route
            };
            if expect == Expect::Ok {
                accepted.push(cred);
                continue;
            }
            let r = send(
                ts,
                route.method,
                &route.path,
                cred.authorization.as_deref(),
                Some(&route.caller),
                route.body.as_ref(),
            )
            .await;
            check(&r, expect, &format!("{} with {}", route.name, cred.name));
        }
        assert_same_store(
            &before,
            &ts.snapshot().await,
            &format!("refused requests to {}", route.name),
        );
        // The accepted credentials, after the refusals (they may change data).
        assert!(!accepted.is_empty());
        if !route.repeatable {
            accepted.truncate(1);
        }
        for cred in accepted {
            let r = send(
                ts,
                route.method,
                &route.path,
                cred.authorization.as_deref(),
                Some(&route.caller),
                route.body.as_ref(),
            )
            .await;
            check(&r, Expect::Ok, &format!("{} with {}", route.name, cred.name));
        }
    }
    // Creation: no installation is addressed, but a credential is still required.
    let before = ts.snapshot().await;
    for cred in &creds {
        let expect = match cred.on_app_route {
            // Another application's code creates in that application: nothing to refuse.
            Expect::Err(404, _) | Expect::Ok => continue,
            other => other,
        };
        let r = send(
            ts,
            "POST",
            "/mobile/1/appinstance",
            cred.authorization.as_deref(),
            None,
            Some(&json!({"os": "x"})),
        )
        .await;
        check(&r, expect, &format!("create with {}", cred.name));
    }
    assert_same_store(&before, &ts.snapshot().await, "refused creations");
    w.ts.finish().await;
}

/// The expired-installation DELETE (§5.5) with every credential: only the own code deletes,
/// and only inside its application.
async fn delete_with_every_credential() {
    let w = world().await;
    let ts = &w.ts;
    let doomed = ts.register_android().await;
    let before = ts.snapshot().await;
    for cred in credentials(&w) {
        if cred.on_app_route == Expect::Ok {
            continue;
        }
        let r = send(
            ts,
            "DELETE",
            &ipath(&doomed),
            cred.authorization.as_deref(),
            Some(&w.a1),
            None,
        )
        .await;
        check(&r, cred.on_app_route, &format!("DELETE with {}", cred.name));
    }
    // Installations of other applications are unknown here: 200, and they stay.
    for other in [&w.x1, &w.y1] {
        send(ts, "DELETE", &ipath(other), Some(&ts.app_auth()), Some(&w.a1), None)
            .await
            .ok();
    }
    // And another application's code cannot delete app1's installations, even naming an
    // installation of its own as caller.
    let app2_auth = format!("App {}", w.app2.application_code);
    send(ts, "DELETE", &ipath(&doomed), Some(&app2_auth), Some(&w.x1), None)
        .await
        .ok();
    assert_same_store(&before, &ts.snapshot().await, "refused or foreign deletes");
    // The own code deletes it (§5.5: any installation of the same application).
    send(ts, "DELETE", &ipath(&doomed), Some(&ts.app_auth()), Some(&w.a1), None)
        .await
        .ok();
    assert!(
        ts.snapshot()
            .await
            .installations
            .iter()
            .all(|i| i.push_reg_id != doomed)
    );
    w.ts.finish().await;
}

/// An installation never reads or changes another person's installations, nor installations
/// of another application (even of the same person): every remote route answers
/// FORBIDDEN_INSTALLATION and changes nothing. Never NO_REGISTRATION for a remote target
/// (§6.16).
async fn remote_targets_of_other_persons_and_applications_are_forbidden() {
    let w = world().await;
    let ts = &w.ts;
    let auth = ts.app_auth();
    let before = ts.snapshot().await;
    let unknown = uuid::Uuid::new_v4().to_string();
    let forbidden = E(403, "FORBIDDEN_INSTALLATION");
    // (target, why)
    let targets = [
        (w.b1.clone(), "another person's installation"),
        (w.n1.clone(), "an anonymous person's installation"),
        (w.x1.clone(), "the same person's installation in another application"),
        (w.y1.clone(), "an installation of another account"),
        (unknown, "an unknown installation"),
        ("not-a-uuid".to_string(), "a malformed id"),
    ];
    for (target, why) in &targets {
        let cases: Vec<(&str, String, Option<Value>)> = vec![
            ("GET", ipath(target), None),
            ("PATCH", ipath(target), Some(json!({"isPrimary": true}))),
            ("PATCH", ipath(target), Some(json!({"isPrimary": false}))),
            ("PATCH", ipath(target), Some(json!({"regEnabled": false}))),
            ("POST", format!("{}/depersonalize", ipath(target)), None),
            ("GET", user_path(target), None),
            ("PATCH", user_path(target), Some(json!({"firstName": "Mallory"}))),
            (
                "POST",
                format!("{}/personalize?{NO_FLAGS}", ipath(target)),
                Some(json!({"userIdentity": {"externalUserId": "alice"}})),
            ),
            (
                "POST",
                format!("{}/repersonalize", ipath(target)),
                Some(json!({"userIdentity": {"externalUserId": "alice"}})),
            ),
            (
                "POST",
                format!("{}/user/events/session", ipath(target)),
                Some(json!({})),
            ),
            ("POST", format!("{}/user/events/custom", ipath(target)), Some(json!({}))),
        ];
        for (method, path, body) in cases {
            let r = send(ts, method, &path, Some(&auth), Some(&w.a1), body.as_ref()).await;
            check(&r, forbidden, &format!("{method} {path} ({why}) from a1"));
        }
    }
    // Even the same person's own installation is out of reach for the routes that allow no
    // remote target, and a remote PATCH may only carry isPrimary.
    for (method, path, body) in [
        ("GET", user_path(&w.a2), None),
        ("PATCH", user_path(&w.a2), Some(json!({"firstName": "X"}))),
        (
            "POST",
            format!("{}/personalize?{NO_FLAGS}", ipath(&w.a2)),
            Some(json!({"userIdentity": {"externalUserId": "alice"}})),
        ),
        (
            "PATCH",
            ipath(&w.a2),
            Some(json!({"isPrimary": true, "language": "de"})),
        ),
    ] {
        let r = send(ts, method, &path, Some(&auth), Some(&w.a1), body.as_ref()).await;
        check(&r, forbidden, &format!("{method} {path} (same person) from a1"));
    }
    // A JWT does not widen the reach: alice's own token from a1 to bob's installation.
    let alice = make_jwt("k1", &w.secret1, &w.ts.app.application_code, "alice", json!({}));
    let r = send(
        ts,
        "GET",
        &user_path(&w.b1),
        Some(&format!("Bearer {alice}")),
        Some(&w.a1),
        None,
    )
    .await;
    check(&r, forbidden, "alice's JWT, GET user of b1 from a1");
    assert_same_store(
        &before,
        &ts.snapshot().await,
        "remote operations on foreign installations",
    );
    w.ts.finish().await;
}

/// A JWT for person A never works on person B's installation (B being the caller), nor on an
/// anonymous one; and a JWT for "alice" of one account never reaches the "alice" of another.
async fn a_jwt_for_one_person_never_works_for_another() {
    let w = world().await;
    let ts = &w.ts;
    let code1 = ts.app.application_code.clone();
    let alice = format!("Bearer {}", make_jwt("k1", &w.secret1, &code1, "alice", json!({})));
    let before = ts.snapshot().await;
    let jwt_invalid = E(401, "JWT_INVALID");
    for (target, expect, what) in [
        (&w.b1, jwt_invalid, "bob's installation"),
        (&w.n1, jwt_invalid, "an anonymous installation"),
        // y1 is an "alice" of another account, in another application: unknown here.
        (&w.y1, E(404, "NO_REGISTRATION"), "another account's alice"),
    ] {
        for (method, path, body) in [
            ("GET", user_path(target), None),
            ("PATCH", user_path(target), Some(json!({"firstName": "Mallory"}))),
            // Personalizing as the installation's own user, with somebody else's token.
            (
                "POST",
                format!("{}/personalize?{NO_FLAGS}", ipath(target)),
                Some(json!({"userIdentity": {"externalUserId": "bob"}})),
            ),
            (
                "POST",
                format!("{}/repersonalize", ipath(target)),
                Some(json!({"userIdentity": {"externalUserId": "bob"}})),
            ),
        ] {
            let r = send(ts, method, &path, Some(&alice), Some(target), body.as_ref()).await;
            check(&r, expect, &format!("alice's JWT: {method} {path} on {what}"));
        }
    }
    // alice's token on app1 never names bob's data either way: bob's token on alice's
    // installation, and a PATCH that would rename alice to bob.
    let bob = format!("Bearer {}", make_jwt("k1", &w.secret1, &code1, "bob", json!({})));
    let r = send(ts, "GET", &user_path(&w.a1), Some(&bob), Some(&w.a1), None).await;
    check(&r, jwt_invalid, "bob's JWT on a1");
    let r = send(
        ts,
        "PATCH",
        &user_path(&w.a1),
        Some(&alice),
        Some(&w.a1),
        Some(&json!({"externalUserId": "bob"})),
    )
    .await;
    check(&r, E(403, "USER_DATA_RESTRICTED"), "alice's JWT renaming alice");
    // The other account's alice token on app1's alice.
    let alice3 = format!(
        "Bearer {}",
        make_jwt("k3", &w.secret3, &w.app3.application_code, "alice", json!({}))
    );
    let r = send(ts, "GET", &user_path(&w.a1), Some(&alice3), Some(&w.a1), None).await;
    check(&r, E(404, "NO_REGISTRATION"), "other account's alice on a1");
    assert_same_store(&before, &ts.snapshot().await, "JWTs used for another person");
    // The right token works, and shows only alice's app1 installations, only a1's token.
    let u = send(ts, "GET", &user_path(&w.a1), Some(&alice), Some(&w.a1), None)
        .await
        .ok()
        .json();
    let instances = u["instances"].as_array().unwrap();
    let ids: Vec<&str> = instances.iter().map(|i| i["pushRegId"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2, "{u}");
    assert!(ids.contains(&w.a1.as_str()) && ids.contains(&w.a2.as_str()), "{u}");
    for i in instances {
        assert_eq!(
            i.get("pushServiceToken").is_some(),
            i["pushRegId"] == w.a1.as_str(),
            "{i}"
        );
    }
    w.ts.finish().await;
}

/// What a caller sees of its person never crosses applications or accounts: GET user lists
/// only the installations of the calling application (people.md invariant 23), and another
/// application of the same person sees only its own.
async fn user_views_stay_inside_the_calling_application() {
    let w = world().await;
    let ts = &w.ts;
    let ids = |u: &Value| -> Vec<String> {
        u["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["pushRegId"].as_str().unwrap().to_string())
            .collect()
    };
    let u1 = send(ts, "GET", &user_path(&w.a1), Some(&ts.app_auth()), Some(&w.a1), None)
        .await
        .ok()
        .json();
    let mut got = ids(&u1);
    got.sort();
    let mut want = vec![w.a1.clone(), w.a2.clone()];
    want.sort();
    assert_eq!(got, want);
    let app2_auth = format!("App {}", w.app2.application_code);
    let u2 = send(ts, "GET", &user_path(&w.x1), Some(&app2_auth), Some(&w.x1), None)
        .await
        .ok()
        .json();
    assert_eq!(ids(&u2), vec![w.x1.clone()]);
    assert_eq!(u1["externalUserId"], u2["externalUserId"]);
    let app3_auth = format!("App {}", w.app3.application_code);
    let u3 = send(ts, "GET", &user_path(&w.y1), Some(&app3_auth), Some(&w.y1), None)
        .await
        .ok()
        .json();
    assert_eq!(ids(&u3), vec![w.y1.clone()]);
    // A change through app3's alice does not reach the first account's alice.
    send(
        ts,
        "PATCH",
        &user_path(&w.y1),
        Some(&app3_auth),
        Some(&w.y1),
        Some(&json!({"firstName": "Other"})),
    )
    .await
    .ok();
    let u1 = send(ts, "GET", &user_path(&w.a1), Some(&ts.app_auth()), Some(&w.a1), None)
        .await
        .ok()
        .json();
    assert!(u1.get("firstName").is_none(), "{u1}");
    // A remote GET of the same person's installation never carries its token.
    let r = send(ts, "GET", &ipath(&w.a2), Some(&ts.app_auth()), Some(&w.a1), None)
        .await
        .ok()
        .json();
    assert!(r.get("pushServiceToken").is_none(), "{r}");
    w.ts.finish().await;
}

on_every_backend!(
    every_route_with_every_credential,
    delete_with_every_credential,
    remote_targets_of_other_persons_and_applications_are_forbidden,
    a_jwt_for_one_person_never_works_for_another,
    user_views_stay_inside_the_calling_application,
);
