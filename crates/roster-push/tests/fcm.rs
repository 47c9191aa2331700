//! FcmClient against the FCM stand-in (real OAuth assertion verification, real HTTP/2): every
//! §6.3 outcome, access-token caching and refresh, token URL precedence, multiplexing, and the
//! bytes on the wire.

use std::time::Duration;

use futures::future::join_all;
use roster_push::{
    ContentKind, FcmClient, FcmCredentials, Outcome, ProviderResponse, PushContent, PushMessage, Transport,
};
use roster_push_standins::{FcmAnswer, FcmStandIn, FcmStandInConfig, fixtures};
use serde_json::{Value, json};
use uuid::Uuid;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn message() -> PushMessage {
    let now = now_ms();
    PushMessage {
        content: PushContent::text("20% off today"),
        bulk_id: "spring-sale-1".into(),
        send_date_time: now,
        expires_at: now + 6 * 3600 * 1000,
    }
}

fn client_for(settings: &Value, transport: &Transport) -> FcmClient {
    FcmClient::new(FcmCredentials::parse(settings).unwrap(), transport)
}

async fn setup(config: FcmStandInConfig) -> (FcmStandIn, FcmClient) {
    let standin = FcmStandIn::start(config).await.unwrap();
    let client = client_for(
        &standin.application_settings(),
        &Transport::new(Default::default()).unwrap(),
    );
    (standin, client)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn every_outcome_of_the_table() {
    let (standin, client) = setup(FcmStandInConfig::test()).await;
    let rejected = |r: &str| Outcome::Rejected { reason: r.into() };
    let cases = [
        (FcmAnswer::Success, 200, "OK", Outcome::Accepted),
        (FcmAnswer::Unregistered, 404, "UNREGISTERED", Outcome::Unregistered),
        (
            FcmAnswer::InvalidArgument,
            400,
            "INVALID_ARGUMENT",
            rejected("INVALID_ARGUMENT"),
        ),
        (
            FcmAnswer::SenderIdMismatch,
            403,
            "SENDER_ID_MISMATCH",
            rejected("SENDER_ID_MISMATCH"),
        ),
        (
            FcmAnswer::QuotaExceeded { retry_after: Some(30) },
            429,
            "QUOTA_EXCEEDED",
            Outcome::Retry {
                retry_after: Some(Duration::from_secs(30)),
            },
        ),
        (
            FcmAnswer::Internal,
            500,
            "INTERNAL",
            Outcome::Retry { retry_after: None },
        ),
        (
            FcmAnswer::Unavailable,
            503,
            "UNAVAILABLE",
            Outcome::Retry { retry_after: None },
        ),
    ];
    for (i, (answer, status, reason, outcome)) in cases.into_iter().enumerate() {
        let token = format!("fcm-token-{i}");
        standin.script(&token, [answer.clone()]);
        let report = client.send(&message(), Uuid::new_v4(), &token).await;
        assert_eq!(report.outcome, outcome, "{answer:?}");
        assert_eq!(
            report.response,
            ProviderResponse {
                http_status: Some(status),
                reason: reason.into()
            },
            "{answer:?}"
        );
        assert!(!report.credential_refreshed);
    }
    standin.script("third-party", [FcmAnswer::ThirdPartyAuthError]);
    let report = client.send(&message(), Uuid::new_v4(), "third-party").await;
    assert!(matches!(&report.outcome, Outcome::Failed { last_error } if last_error.contains("THIRD_PARTY_AUTH_ERROR")));
    assert_eq!(report.response.reason, "THIRD_PARTY_AUTH_ERROR");
    assert!(
        !report.credential_refreshed,
        "THIRD_PARTY_AUTH_ERROR is not an expired token"
    );
    let stats = standin.stats();
    assert_eq!((stats.sends, stats.tokens_issued), (8, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_token_request_and_one_connection_for_many_concurrent_sends() {
    let (standin, client) = setup(FcmStandInConfig::test()).await;
    let msg = message();
    let sends = (0..300).map(|i| {
        let client = client.clone();
        let msg = &msg;
        async move { client.send(msg, Uuid::new_v4(), &format!("t{i}")).await }
    });
    assert!(join_all(sends).await.iter().all(|r| r.outcome == Outcome::Accepted));
    for i in 0..20 {
        assert_eq!(
            client.send(&msg, Uuid::new_v4(), &format!("u{i}")).await.outcome,
            Outcome::Accepted
        );
    }
    let stats = standin.stats();
    assert_eq!(stats.sends, 320);
    assert_eq!((stats.token_requests, stats.tokens_issued), (1, 1));
    assert_eq!(stats.send_connections, 1);
    assert_eq!(stats.token_connections, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_access_token_is_refreshed_on_401_once() {
    let (standin, client) = setup(FcmStandInConfig::test()).await;
    assert_eq!(
        client.send(&message(), Uuid::new_v4(), "a").await.outcome,
        Outcome::Accepted
    );
    standin.script("b", [FcmAnswer::ExpiredToken]);
    let report = client.send(&message(), Uuid::new_v4(), "b").await;
    assert_eq!(report.outcome, Outcome::Accepted);
    assert!(report.credential_refreshed);
    assert_eq!(standin.stats().tokens_issued, 2);

    // Every token expires at once; many concurrent sends get 401 and share one refresh.
    standin.expire_access_tokens();
    let msg = message();
    let sends = (0..50).map(|i| {
        let client = client.clone();
        let msg = &msg;
        async move { client.send(msg, Uuid::new_v4(), &format!("c{i}")).await }
    });
    let reports = join_all(sends).await;
    assert!(reports.iter().all(|r| r.outcome == Outcome::Accepted));
    // Sends that started before the refresh met a 401 and retried; later ones used the new token.
    let refreshed = reports.iter().filter(|r| r.credential_refreshed).count() as u64;
    assert!(refreshed >= 1);
    let stats = standin.stats();
    assert_eq!(stats.tokens_issued, 3);
    assert_eq!(stats.count(401), 1 + refreshed);

    // 401 again with a fresh token: a credential failure, not a loop.
    standin.script("d", [FcmAnswer::ExpiredToken, FcmAnswer::ExpiredToken]);
    let report = client.send(&message(), Uuid::new_v4(), "d").await;
    assert!(matches!(&report.outcome, Outcome::Failed { .. }), "{report:?}");
    assert_eq!(
        report.response,
        ProviderResponse {
            http_status: Some(401),
            reason: "UNAUTHENTICATED".into()
        }
    );
    assert_eq!(standin.stats().tokens_issued, 4);
}

#[tokio::test]
async fn access_tokens_are_refreshed_before_they_expire() {
    // Two-second tokens: used for one second, then replaced without ever meeting a 401.
    let config = FcmStandInConfig {
        token_lifetime: Duration::from_secs(2),
        ..FcmStandInConfig::test()
    };
    let (standin, client) = setup(config).await;
    assert_eq!(
        client.send(&message(), Uuid::new_v4(), "a").await.outcome,
        Outcome::Accepted
    );
    assert_eq!(
        client.send(&message(), Uuid::new_v4(), "a").await.outcome,
        Outcome::Accepted
    );
    assert_eq!(standin.stats().tokens_issued, 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let report = client.send(&message(), Uuid::new_v4(), "a").await;
    assert_eq!(report.outcome, Outcome::Accepted);
    assert!(!report.credential_refreshed, "proactive, not after a 401");
    let stats = standin.stats();
    assert_eq!((stats.tokens_issued, stats.count(401)), (2, 0));
}

#[tokio::test]
async fn token_url_setting_wins_over_token_uri_and_is_the_audience() {
    let standin = FcmStandIn::start(FcmStandInConfig::test()).await.unwrap();
    let settings = json!({
        "serviceAccount": fixtures::service_account(&format!("http://127.0.0.1:{}/token", free_port())),
        "baseUrl": standin.base_url(),
        "tokenUrl": standin.token_url(),
    });
    let client = client_for(&settings, &Transport::new(Default::default()).unwrap());
    assert_eq!(
        client.send(&message(), Uuid::new_v4(), "a").await.outcome,
        Outcome::Accepted
    );
    assert_eq!(standin.stats().tokens_issued, 1);
}

/// On one runtime thread, so that all twenty sends are waiting before the token request can be
/// answered: with a second worker the stand-in sometimes answered it before the next send began
/// (seen under load), and a send that begins after a failure rightly asks again.
#[tokio::test]
async fn a_refused_service_account_fails_every_waiting_send_with_one_request() {
    let standin = FcmStandIn::start(FcmStandInConfig::test()).await.unwrap();
    let mut settings = standin.application_settings();
    settings["serviceAccount"]["client_email"] = json!("someone-else@roster-test.iam.gserviceaccount.com");
    let client = client_for(&settings, &Transport::new(Default::default()).unwrap());
    let msg = message();
    let sends = (0..20).map(|i| {
        let client = client.clone();
        let msg = &msg;
        async move { client.send(msg, Uuid::new_v4(), &format!("t{i}")).await }
    });
    for report in join_all(sends).await {
        assert!(
            matches!(&report.outcome, Outcome::Failed { last_error } if last_error.contains("invalid_grant")),
            "{report:?}"
        );
        assert_eq!(
            report.response,
            ProviderResponse {
                http_status: Some(400),
                reason: "invalid_grant".into()
            }
        );
    }
    let stats = standin.stats();
    assert_eq!((stats.token_requests, stats.tokens_issued, stats.sends), (1, 0, 0));
}

#[tokio::test]
async fn unreachable_endpoints_are_retryable() {
    let standin = FcmStandIn::start(FcmStandInConfig::test()).await.unwrap();
    let transport = Transport::new(Default::default()).unwrap();
    let mut no_token_endpoint = standin.application_settings();
    no_token_endpoint["tokenUrl"] = json!(format!("http://127.0.0.1:{}/token", free_port()));
    let mut no_fcm = standin.application_settings();
    no_fcm["baseUrl"] = json!(format!("http://127.0.0.1:{}", free_port()));
    for settings in [no_token_endpoint, no_fcm] {
        let report = client_for(&settings, &transport)
            .send(&message(), Uuid::new_v4(), "a")
            .await;
        assert_eq!(report.outcome, Outcome::Retry { retry_after: None });
        assert_eq!(
            report.response,
            ProviderResponse {
                http_status: None,
                reason: "CONNECTION_ERROR".into()
            }
        );
    }
}

#[tokio::test]
async fn the_wire_carries_the_spec_body() {
    let (standin, client) = setup(FcmStandInConfig::test()).await;
    let id: Uuid = "0b9e2f8a-6c1d-4a3e-9f7b-5d2c1e0a8b64".parse().unwrap();
    let now = now_ms();
    let msg = PushMessage {
        content: PushContent {
            kind: ContentKind::Image {
                url: "https://cdn.example.com/sale.png".into(),
            },
            title: Some("Sale".into()),
            text: "20% off today".into(),
            custom_payload: Some(json!({"deeplink": "acme://sale"}).as_object().unwrap().clone()),
            sound: Some("default".into()),
            badge: Some(3),
            silent: false,
        },
        bulk_id: "spring-sale-1".into(),
        send_date_time: 1_735_689_600_000,
        expires_at: now + 21_600_000,
    };
    assert_eq!(client.send(&msg, id, "reg-token-1").await.outcome, Outcome::Accepted);
    let recorded = standin.recorded();
    assert_eq!(recorded.len(), 1);
    let body = std::str::from_utf8(&recorded[0].body).unwrap();
    // The remaining validity depends on when the send happened: read it, bound it, then compare
    // the whole body byte for byte.
    let ttl: i64 = body
        .split(r#""ttl":""#)
        .nth(1)
        .unwrap()
        .split('s')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((21_590..=21_600).contains(&ttl), "{ttl}");
    let ib = r#"{"messageId":"0b9e2f8a-6c1d-4a3e-9f7b-5d2c1e0a8b64","text":"20% off today","notification":{"title":"Sale","sound":"default","contentUrl":"https://cdn.example.com/sale.png"},"custom":{"deeplink":"acme://sale"},"internal":{"sendDateTime":1735689600000,"bulkId":"spring-sale-1"}}"#;
    let expected = format!(
        r#"{{"message":{{"token":"reg-token-1","android":{{"priority":"HIGH","ttl":"{ttl}s"}},"data":{{"org_ib_d":{}}}}}}}"#,
        serde_json::to_string(ib).unwrap()
    );
    assert_eq!(body, expected);
    let h = |name: &str| recorded[0].headers.get(name).unwrap().to_str().unwrap().to_owned();
    assert!(h("authorization").starts_with("Bearer ya29.standin-"));
    assert_eq!(h("content-type"), "application/json; charset=UTF-8");
}
