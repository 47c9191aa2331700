//! The stand-ins refuse what the real providers refuse: hand-made requests with one thing wrong
//! each, so that a client bug cannot pass the client tests unnoticed.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Client;
use roster_push_standins::{
    ApnsStandIn, ApnsStandInConfig, FcmAnswer, FcmStandIn, FcmStandInConfig, HmsStandIn, HmsStandInConfig, fixtures,
};
use serde_json::{Value, json};

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn h2() -> Client {
    Client::builder().http2_prior_knowledge().build().unwrap()
}

fn provider_token(pem: &str, kid: &str, iss: &str, iat: u64) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.into());
    let key = EncodingKey::from_ec_pem(pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, &json!({"iss": iss, "iat": iat}), &key).unwrap()
}

fn good_token() -> String {
    provider_token(
        fixtures::APNS_PRIVATE_KEY_PEM,
        fixtures::APNS_KEY_ID,
        fixtures::APNS_TEAM_ID,
        now(),
    )
}

const ID: &str = "0b9e2f8a-6c1d-4a3e-9f7b-5d2c1e0a8b64";

fn alert_body() -> Value {
    json!({"aps": {"alert": {"body": "hi"}}, "messageId": ID,
           "internalData": {"sendDateTime": 1, "bulkId": "b"}})
}

/// An APNs request that passes every check, as a list of headers and a body to spoil one by one.
struct ApnsCall {
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl ApnsCall {
    fn good() -> Self {
        ApnsCall {
            headers: vec![
                ("authorization", format!("bearer {}", good_token())),
                ("apns-topic", fixtures::APNS_TOPIC.into()),
                ("apns-push-type", "alert".into()),
                ("apns-priority", "10".into()),
                ("apns-id", ID.into()),
                ("apns-expiration", "4102444800".into()),
            ],
            body: alert_body().to_string().into_bytes(),
        }
    }
    fn set(mut self, name: &'static str, value: Option<&str>) -> Self {
        self.headers.retain(|(n, _)| *n != name);
        if let Some(v) = value {
            self.headers.push((name, v.into()));
        }
        self
    }
    fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }
    async fn send(self, client: &Client, base: &str) -> (u16, String) {
        let mut request = client.post(format!("{base}/3/device/abcd"));
        for (name, value) in self.headers {
            request = request.header(name, value);
        }
        let answer = request.body(self.body).send().await.unwrap();
        let status = answer.status().as_u16();
        let body = answer.text().await.unwrap();
        let reason = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["reason"].as_str().map(str::to_owned))
            .unwrap_or_default();
        (status, reason)
    }
}

#[tokio::test]
async fn apns_standin_refuses_what_apns_refuses() {
    let standin = ApnsStandIn::start(ApnsStandInConfig::test()).await.unwrap();
    let base = standin.base_url();
    let client = h2();
    assert_eq!(ApnsCall::good().send(&client, &base).await, (200, String::new()));

    let other_key = provider_token(
        fixtures::APNS_OTHER_PRIVATE_KEY_PEM,
        fixtures::APNS_KEY_ID,
        fixtures::APNS_TEAM_ID,
        now(),
    );
    let other_kid = provider_token(
        fixtures::APNS_PRIVATE_KEY_PEM,
        "ZZZZZ99999",
        fixtures::APNS_TEAM_ID,
        now(),
    );
    let other_team = provider_token(
        fixtures::APNS_PRIVATE_KEY_PEM,
        fixtures::APNS_KEY_ID,
        "ZZZZZ99999",
        now(),
    );
    let old = provider_token(
        fixtures::APNS_PRIVATE_KEY_PEM,
        fixtures::APNS_KEY_ID,
        fixtures::APNS_TEAM_ID,
        now() - 3700,
    );
    let future = provider_token(
        fixtures::APNS_PRIVATE_KEY_PEM,
        fixtures::APNS_KEY_ID,
        fixtures::APNS_TEAM_ID,
        now() + 600,
    );
    let background = json!({"aps": {"content-available": 1}, "messageId": ID,
        "internalData": {"sendDateTime": 1, "bulkId": "b", "silent": {"body": "hi"}}});
    let cases: Vec<(ApnsCall, u16, &str)> = vec![
        (ApnsCall::good().set("authorization", None), 403, "MissingProviderToken"),
        (
            ApnsCall::good().set("authorization", Some("basic abc")),
            403,
            "MissingProviderToken",
        ),
        (
            ApnsCall::good().set("authorization", Some(&format!("bearer {other_key}"))),
            403,
            "InvalidProviderToken",
        ),
        (
            ApnsCall::good().set("authorization", Some(&format!("bearer {other_kid}"))),
            403,
            "InvalidProviderToken",
        ),
        (
            ApnsCall::good().set("authorization", Some(&format!("bearer {other_team}"))),
            403,
            "InvalidProviderToken",
        ),
        (
            ApnsCall::good().set("authorization", Some(&format!("bearer {future}"))),
            403,
            "InvalidProviderToken",
        ),
        (
            ApnsCall::good().set("authorization", Some(&format!("bearer {old}"))),
            403,
            "ExpiredProviderToken",
        ),
        (ApnsCall::good().set("apns-topic", None), 400, "MissingTopic"),
        (
            ApnsCall::good().set("apns-topic", Some("com.other")),
            400,
            "TopicDisallowed",
        ),
        (ApnsCall::good().set("apns-push-type", None), 400, "InvalidPushType"),
        (
            ApnsCall::good().set("apns-push-type", Some("voip")),
            400,
            "InvalidPushType",
        ),
        (ApnsCall::good().set("apns-priority", Some("5")), 400, "BadPriority"),
        (
            ApnsCall::good()
                .set("apns-push-type", Some("background"))
                .body(background.to_string()),
            400,
            "BadPriority",
        ),
        (ApnsCall::good().set("apns-id", Some("not-a-uuid")), 400, "BadMessageId"),
        (
            ApnsCall::good().set("apns-expiration", Some("tomorrow")),
            400,
            "BadExpirationDate",
        ),
        (ApnsCall::good().body(""), 400, "PayloadEmpty"),
        (ApnsCall::good().body(vec![b' '; 4097]), 413, "PayloadTooLarge"),
        (ApnsCall::good().body("{"), 400, "BadPayload: not JSON"),
        (
            ApnsCall::good().body(background.to_string()),
            400,
            "BadPayload: alert push without aps.alert object",
        ),
        (
            ApnsCall::good().set("apns-id", Some("11111111-2222-3333-4444-555555555555")),
            400,
            "BadPayload: messageId differs from apns-id",
        ),
        (
            ApnsCall::good()
                .set("apns-push-type", Some("background"))
                .set("apns-priority", Some("5"))
                .body(alert_body().to_string()),
            400,
            "BadPayload: background push without content-available 1",
        ),
    ];
    let count = cases.len() as u64;
    for (i, (call, status, reason)) in cases.into_iter().enumerate() {
        assert_eq!(call.send(&client, &base).await, (status, reason.to_owned()), "case {i}");
    }
    // The well-formed silent push passes.
    let silent = ApnsCall::good()
        .set("apns-push-type", Some("background"))
        .set("apns-priority", Some("5"))
        .body(background.to_string());
    assert_eq!(silent.send(&client, &base).await.0, 200);

    // HTTP/1.1 and other methods are refused too.
    let http1 = Client::builder().http1_only().build().unwrap();
    let answer = http1.post(format!("{base}/3/device/abcd")).send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 400);
    let answer = client.get(format!("{base}/3/device/abcd")).send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 405);
    assert!(answer.headers().contains_key("apns-id"));

    let stats = standin.stats();
    assert_eq!(stats.requests, count + 4);
    assert_eq!(stats.count(200), 2);
    assert_eq!(stats.connections, 2);
    let recorded = standin.recorded();
    assert_eq!(recorded.len() as u64, count + 4);
    assert_eq!(recorded[0].device_token, "abcd");
    assert_eq!(recorded[1].reason.as_deref(), Some("MissingProviderToken"));
}

#[tokio::test]
async fn apns_standin_without_recording_keeps_only_counts() {
    let standin = ApnsStandIn::start(ApnsStandInConfig {
        record: false,
        ..ApnsStandInConfig::test()
    })
    .await
    .unwrap();
    let client = h2();
    let bearer = format!("bearer {}", good_token());
    for _ in 0..3 {
        let call = ApnsCall::good().set("authorization", Some(&bearer));
        assert_eq!(call.send(&client, &standin.base_url()).await.0, 200);
    }
    assert!(standin.recorded().is_empty());
    let stats = standin.stats();
    assert_eq!((stats.requests, stats.provider_tokens, stats.connections), (3, 1, 1));
}

fn assertion(pem: &str, alg: Algorithm, claims: Value) -> String {
    let key = match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        _ => EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
    };
    jsonwebtoken::encode(&Header::new(alg), &claims, &key).unwrap()
}

fn claims(aud: &str) -> Value {
    let iat = now();
    json!({"iss": fixtures::FCM_CLIENT_EMAIL, "scope": "https://www.googleapis.com/auth/firebase.messaging",
           "aud": aud, "iat": iat, "exp": iat + 3600})
}

async fn token_request(client: &Client, url: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let answer = client.post(url).form(form).send().await.unwrap();
    (answer.status().as_u16(), answer.json().await.unwrap())
}

const GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

#[tokio::test]
async fn fcm_token_endpoint_checks_the_assertion() {
    let standin = FcmStandIn::start(FcmStandInConfig::test()).await.unwrap();
    let url = standin.token_url();
    let client = Client::new();
    let good = assertion(fixtures::FCM_PRIVATE_KEY_PEM, Algorithm::RS256, claims(&url));
    let (status, body) = token_request(&client, &url, &[("grant_type", GRANT), ("assertion", &good)]).await;
    assert_eq!(status, 200);
    assert!(body["access_token"].as_str().unwrap().starts_with("ya29."));
    assert_eq!(body["expires_in"], 3600);

    let mut wrong_aud = claims(&url);
    wrong_aud["aud"] = json!("https://oauth2.googleapis.com/token");
    let mut wrong_iss = claims(&url);
    wrong_iss["iss"] = json!("other@example.com");
    let mut wrong_scope = claims(&url);
    wrong_scope["scope"] = json!("https://www.googleapis.com/auth/cloud-platform.read-only");
    let mut too_long = claims(&url);
    too_long["exp"] = json!(now() + 7200);
    let mut expired = claims(&url);
    expired["iat"] = json!(now() - 7200);
    expired["exp"] = json!(now() - 3600);
    let es256 = assertion(fixtures::APNS_PRIVATE_KEY_PEM, Algorithm::ES256, claims(&url));
    let signed = |c: Value| assertion(fixtures::FCM_PRIVATE_KEY_PEM, Algorithm::RS256, c);
    for (i, bad) in [
        signed(wrong_aud),
        signed(wrong_iss),
        signed(wrong_scope),
        signed(too_long),
        signed(expired),
        es256,
    ]
    .into_iter()
    .enumerate()
    {
        let (status, body) = token_request(&client, &url, &[("grant_type", GRANT), ("assertion", &bad)]).await;
        assert_eq!(
            (status, body["error"].as_str().unwrap()),
            (400, "invalid_grant"),
            "case {i}: {body}"
        );
    }
    let (status, body) = token_request(
        &client,
        &url,
        &[("grant_type", "client_credentials"), ("assertion", &good)],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (400, "unsupported_grant_type")
    );
    let answer = client
        .post(&url)
        .json(&json!({"grant_type": GRANT, "assertion": good}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 400);
    let stats = standin.stats();
    assert_eq!((stats.token_requests, stats.tokens_issued), (9, 1));
}

#[tokio::test]
async fn fcm_send_checks_the_bearer_and_the_message() {
    let standin = FcmStandIn::start(FcmStandInConfig::test()).await.unwrap();
    let client = h2();
    let good = assertion(
        fixtures::FCM_PRIVATE_KEY_PEM,
        Algorithm::RS256,
        claims(&standin.token_url()),
    );
    let (_, token) = token_request(
        &Client::new(),
        &standin.token_url(),
        &[("grant_type", GRANT), ("assertion", &good)],
    )
    .await;
    let bearer = format!("Bearer {}", token["access_token"].as_str().unwrap());
    let url = format!(
        "{}/v1/projects/{}/messages:send",
        standin.base_url(),
        fixtures::FCM_PROJECT_ID
    );
    let ib = json!({"messageId": ID, "text": "hi", "notification": {}, "internal": {"sendDateTime": 1, "bulkId": "b"}});
    let message = |edit: &dyn Fn(&mut Value)| {
        let mut m = json!({"message": {"token": "t1", "android": {"priority": "HIGH", "ttl": "60s"},
                                       "data": {"org_ib_d": ib.to_string()}}});
        edit(&mut m);
        m
    };
    let send = |url: String, auth: Option<String>, body: Value| {
        let client = client.clone();
        async move {
            let mut request = client.post(url).json(&body);
            if let Some(auth) = auth {
                request = request.header("authorization", auth);
            }
            let answer = request.send().await.unwrap();
            let status = answer.status().as_u16();
            let body: Value = answer.json().await.unwrap();
            (status, body)
        }
    };
    let (status, body) = send(url.clone(), Some(bearer.clone()), message(&|_| {})).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["name"]
            .as_str()
            .unwrap()
            .starts_with("projects/roster-test/messages/")
    );

    let (status, body) = send(url.clone(), None, message(&|_| {})).await;
    assert_eq!(
        (status, body["error"]["status"].as_str().unwrap()),
        (401, "UNAUTHENTICATED")
    );
    let (status, _) = send(url.clone(), Some("Bearer ya29.made-up".into()), message(&|_| {})).await;
    assert_eq!(status, 401);
    let other_project = url.replace("roster-test", "other-project");
    let (status, body) = send(other_project, Some(bearer.clone()), message(&|_| {})).await;
    assert_eq!(
        (status, body["error"]["status"].as_str().unwrap()),
        (403, "PERMISSION_DENIED")
    );

    let bad_messages: [fn(&mut Value); 8] = [
        |m| m["message"]["token"] = json!(""),
        |m| m["message"]["notification"] = json!({"title": "x"}),
        |m| m["message"]["android"]["priority"] = json!("NORMAL"),
        |m| m["message"]["android"]["ttl"] = json!("60"),
        |m| m["message"]["data"]["n"] = json!(5),
        |m| m["message"]["data"]["pad"] = json!("x".repeat(4000)),
        |m| m["message"]["data"]["org_ib_d"] = json!("{"),
        |m| m["message"]["data"]["org_ib_d"] = json!(r#"{"messageId":"x","text":"t","internal":{}}"#),
    ];
    for (i, edit) in bad_messages.iter().enumerate() {
        let (status, body) = send(url.clone(), Some(bearer.clone()), message(edit)).await;
        assert_eq!(status, 400, "case {i}: {body}");
        assert_eq!(body["error"]["details"][0]["errorCode"], "INVALID_ARGUMENT", "case {i}");
    }

    // A scripted expiry revokes the presented token for good.
    standin.script("t1", [FcmAnswer::ExpiredToken]);
    assert_eq!(send(url.clone(), Some(bearer.clone()), message(&|_| {})).await.0, 401);
    assert_eq!(send(url.clone(), Some(bearer.clone()), message(&|_| {})).await.0, 401);
    let stats = standin.stats();
    assert_eq!(
        (stats.count(200), stats.count(400), stats.count(401), stats.count(403)),
        (1, 8, 4, 1)
    );
}

#[tokio::test]
async fn hms_standin_checks_the_client_the_bearer_and_the_message() {
    let standin = HmsStandIn::start(HmsStandInConfig::test()).await.unwrap();
    let plain = Client::new();
    let token_url = standin.token_url();
    let form = |secret: &'static str| {
        [
            ("grant_type", "client_credentials"),
            ("client_id", fixtures::HMS_CLIENT_ID),
            ("client_secret", secret),
        ]
    };
    let answer = plain.post(&token_url).form(&form("wrong")).send().await.unwrap();
    assert_eq!(answer.status().as_u16(), 401);
    assert_eq!(answer.json::<Value>().await.unwrap()["error"], 1101);
    let answer = plain
        .post(&token_url)
        .form(&form(fixtures::HMS_CLIENT_SECRET))
        .send()
        .await
        .unwrap();
    let token: Value = answer.json().await.unwrap();
    let bearer = format!("Bearer {}", token["access_token"].as_str().unwrap());

    let url = format!("{}/v1/{}/messages:send", standin.base_url(), fixtures::HMS_APP_ID);
    let ib = json!({"messageId": ID, "text": "hi", "notification": {}, "internal": {"sendDateTime": 1, "bulkId": "b"}});
    let good = json!({"validate_only": false, "message": {"token": ["h1"], "android": {"urgency": "HIGH", "ttl": "60s"},
                      "data": json!({"org_ib_d": ib}).to_string()}});
    let client = h2();
    let send = |auth: Option<String>, body: Value| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let mut request = client.post(url).json(&body);
            if let Some(auth) = auth {
                request = request.header("authorization", auth);
            }
            let answer = request.send().await.unwrap();
            let status = answer.status().as_u16();
            (
                status,
                answer.json::<Value>().await.unwrap()["code"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            )
        }
    };
    assert_eq!(send(Some(bearer.clone()), good.clone()).await, (200, "80000000".into()));
    assert_eq!(send(None, good.clone()).await, (401, "80200003".into()));
    let bad: [fn(&mut Value); 6] = [
        |m| m["validate_only"] = json!(true),
        |m| m["message"]["token"] = json!("h1"),
        |m| m["message"]["android"]["urgency"] = json!("NORMAL"),
        |m| m["message"]["android"]["ttl"] = json!(60),
        |m| m["message"]["data"] = json!({"org_ib_d": "x"}),
        |m| m["message"]["data"] = json!(r#"{"org_ib_d":"{\"messageId\":\"x\"}"}"#),
    ];
    for (i, edit) in bad.iter().enumerate() {
        let mut body = good.clone();
        edit(&mut body);
        assert_eq!(
            send(Some(bearer.clone()), body).await,
            (400, "80100003".into()),
            "case {i}"
        );
    }
    let mut big = good.clone();
    big["message"]["data"] = json!(json!({"org_ib_d": ib, "pad": "x".repeat(4096)}).to_string());
    assert_eq!(send(Some(bearer.clone()), big).await, (413, "80300008".into()));
    let stats = standin.stats();
    assert_eq!((stats.token_requests, stats.tokens_issued, stats.sends), (2, 1, 9));
}
