//! ApnsClient against the APNs stand-in (real HTTP/2, real ES256 verification): every §6.3
//! outcome, provider-token reuse and regeneration, multiplexing, and the bytes on the wire.

use std::time::Duration;

use futures::future::join_all;
use roster_push::payload::apns_payload;
use roster_push::{
    ApnsClient, ApnsCredentials, ContentKind, Outcome, PushContent, PushMessage, Transport, TransportSettings,
};
use roster_push_standins::{ApnsAnswer, ApnsStandIn, ApnsStandInConfig, fixtures};
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
        content: PushContent {
            title: Some("Sale".into()),
            ..PushContent::text("20% off today")
        },
        bulk_id: "spring-sale-1".into(),
        send_date_time: now,
        expires_at: now + 6 * 3600 * 1000,
    }
}

fn client_for(settings: &Value, transport: &Transport) -> ApnsClient {
    ApnsClient::new(ApnsCredentials::parse(settings).unwrap(), transport)
}

async fn setup() -> (ApnsStandIn, ApnsClient) {
    let standin = ApnsStandIn::start(ApnsStandInConfig::test()).await.unwrap();
    let client = client_for(
        &standin.application_settings(),
        &Transport::new(Default::default()).unwrap(),
    );
    (standin, client)
}

#[tokio::test]
async fn every_outcome_of_the_table() {
    let (standin, client) = setup().await;
    let cases = [
        (ApnsAnswer::Success, 200, "OK", Outcome::Accepted),
        (ApnsAnswer::Unregistered, 410, "Unregistered", Outcome::Unregistered),
        (
            ApnsAnswer::BadDeviceToken,
            400,
            "BadDeviceToken",
            Outcome::Rejected {
                reason: "BadDeviceToken".into(),
            },
        ),
        (
            ApnsAnswer::DeviceTokenNotForTopic,
            400,
            "DeviceTokenNotForTopic",
            Outcome::Rejected {
                reason: "DeviceTokenNotForTopic".into(),
            },
        ),
        (
            ApnsAnswer::TooManyRequests { retry_after: Some(17) },
            429,
            "TooManyRequests",
            Outcome::Retry {
                retry_after: Some(Duration::from_secs(17)),
            },
        ),
        (
            ApnsAnswer::TooManyRequests { retry_after: None },
            429,
            "TooManyRequests",
            Outcome::Retry { retry_after: None },
        ),
        (
            ApnsAnswer::InternalServerError,
            500,
            "InternalServerError",
            Outcome::Retry { retry_after: None },
        ),
        (
            ApnsAnswer::ServiceUnavailable,
            503,
            "ServiceUnavailable",
            Outcome::Retry { retry_after: None },
        ),
    ];
    for (i, (answer, status, reason, outcome)) in cases.into_iter().enumerate() {
        let token = format!("{i:064x}");
        standin.script(&token, [answer.clone()]);
        let report = client.send(&message(), Uuid::new_v4(), &token).await;
        assert_eq!(report.outcome, outcome, "{answer:?}");
        assert_eq!(report.response.http_status, Some(status), "{answer:?}");
        assert_eq!(report.response.reason, reason, "{answer:?}");
        assert!(!report.credential_refreshed);
    }
    // InvalidProviderToken: a credential failure for the application.
    standin.script("feed", [ApnsAnswer::InvalidProviderToken]);
    let report = client.send(&message(), Uuid::new_v4(), "feed").await;
    assert!(matches!(&report.outcome, Outcome::Failed { last_error } if last_error.contains("InvalidProviderToken")));
    assert_eq!(report.response.http_status, Some(403));
    let stats = standin.stats();
    assert_eq!(stats.requests, 9);
    assert_eq!(
        (stats.count(200), stats.count(400), stats.count(403), stats.count(410)),
        (1, 2, 1, 1)
    );
    assert_eq!((stats.count(429), stats.count(500), stats.count(503)), (2, 1, 1));
}

#[tokio::test]
async fn expired_provider_token_is_regenerated_and_retried_once() {
    let (standin, client) = setup().await;
    assert_eq!(
        client.send(&message(), Uuid::new_v4(), "aa01").await.outcome,
        Outcome::Accepted
    );
    standin.script("aa02", [ApnsAnswer::ExpiredProviderToken]);
    let report = client.send(&message(), Uuid::new_v4(), "aa02").await;
    assert_eq!(report.outcome, Outcome::Accepted);
    assert!(report.credential_refreshed);
    // The stand-in now refuses the old token: the new one must be used from here on.
    for _ in 0..5 {
        assert_eq!(
            client.send(&message(), Uuid::new_v4(), "aa01").await.outcome,
            Outcome::Accepted
        );
    }
    let stats = standin.stats();
    assert_eq!(stats.provider_tokens, 2);
    assert_eq!((stats.count(200), stats.count(403)), (7, 1));

    // Expired again right after regeneration: not a retry loop, a credential failure.
    standin.script(
        "aa03",
        [ApnsAnswer::ExpiredProviderToken, ApnsAnswer::ExpiredProviderToken],
    );
    let report = client.send(&message(), Uuid::new_v4(), "aa03").await;
    assert!(
        matches!(&report.outcome, Outcome::Failed { last_error } if last_error.contains("clock")),
        "{report:?}"
    );
    assert_eq!(
        report.response,
        roster_push::ProviderResponse {
            http_status: Some(403),
            reason: "ExpiredProviderToken".into()
        }
    );
    assert!(report.credential_refreshed);
    assert_eq!(standin.stats().provider_tokens, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_provider_token_and_one_connection_for_many_concurrent_sends() {
    let (standin, client) = setup().await;
    let msg = message();
    let sends = (0..400).map(|i| {
        let client = client.clone();
        let msg = &msg;
        async move { client.send(msg, Uuid::new_v4(), &format!("{i:064x}")).await }
    });
    let reports = join_all(sends).await;
    assert!(reports.iter().all(|r| r.outcome == Outcome::Accepted));
    // A second application of the same team and base URL shares the connection too.
    let transport = Transport::new(Default::default()).unwrap();
    let first = client_for(&standin.application_settings(), &transport);
    let second = client_for(&standin.application_settings(), &transport);
    let more = (0..200).map(|i| {
        let client = if i % 2 == 0 { first.clone() } else { second.clone() };
        let msg = &msg;
        async move { client.send(msg, Uuid::new_v4(), &format!("{i:064x}")).await }
    });
    assert!(join_all(more).await.iter().all(|r| r.outcome == Outcome::Accepted));
    let stats = standin.stats();
    assert_eq!(stats.requests, 600);
    // One connection per transport: 400 streams multiplexed on the first, 200 on the second.
    assert_eq!(stats.connections, 2);
    // One provider token per client (three clients), reused for every send.
    assert_eq!(stats.provider_tokens, 3);
}

#[tokio::test]
async fn credentials_the_provider_refuses_are_failures() {
    let standin = ApnsStandIn::start(ApnsStandInConfig::test()).await.unwrap();
    let transport = Transport::new(Default::default()).unwrap();
    let mut other_key = standin.application_settings();
    other_key["privateKey"] = json!(fixtures::APNS_OTHER_PRIVATE_KEY_PEM);
    let mut other_team = standin.application_settings();
    other_team["teamId"] = json!("ZZZZZ99999");
    let mut other_kid = standin.application_settings();
    other_kid["keyId"] = json!("ZZZZZ99999");
    for settings in [other_key, other_team, other_kid] {
        let report = client_for(&settings, &transport)
            .send(&message(), Uuid::new_v4(), "ab")
            .await;
        assert!(
            matches!(&report.outcome, Outcome::Failed { last_error } if last_error.contains("InvalidProviderToken")),
            "{report:?}"
        );
    }
    // A topic the key does not cover: the request is refused (400), as the table says.
    let mut other_topic = standin.application_settings();
    other_topic["topic"] = json!("com.example.other");
    let report = client_for(&other_topic, &transport)
        .send(&message(), Uuid::new_v4(), "ab")
        .await;
    assert_eq!(
        report.outcome,
        Outcome::Rejected {
            reason: "TopicDisallowed".into()
        }
    );
}

#[tokio::test]
async fn no_answer_is_retryable() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut settings = ApnsStandIn::start(ApnsStandInConfig::test())
        .await
        .unwrap()
        .application_settings();
    settings["baseUrl"] = json!(format!("http://127.0.0.1:{port}"));
    let client = client_for(&settings, &Transport::new(Default::default()).unwrap());
    let report = client.send(&message(), Uuid::new_v4(), "ab").await;
    assert_eq!(report.outcome, Outcome::Retry { retry_after: None });
    assert_eq!(report.response.http_status, None);
    assert_eq!(report.response.reason, "CONNECTION_ERROR");

    // An https base URL whose server does not speak TLS: the handshake fails, retryable.
    let standin = ApnsStandIn::start(ApnsStandInConfig::test()).await.unwrap();
    let mut settings = standin.application_settings();
    settings["baseUrl"] = json!(standin.base_url().replace("http://", "https://"));
    let report = client_for(&settings, &Transport::new(Default::default()).unwrap())
        .send(&message(), Uuid::new_v4(), "ab")
        .await;
    assert_eq!(report.outcome, Outcome::Retry { retry_after: None });
    assert_eq!(report.response.reason, "CONNECTION_ERROR");
    assert_eq!(standin.stats().requests, 0);
}

#[tokio::test]
async fn a_silent_server_times_out_retryably() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let mut settings = ApnsStandIn::start(ApnsStandInConfig::test())
        .await
        .unwrap()
        .application_settings();
    settings["baseUrl"] = json!(format!("http://127.0.0.1:{port}"));
    let transport = Transport::new(TransportSettings {
        request_timeout: Duration::from_millis(300),
        ..Default::default()
    })
    .unwrap();
    let started = std::time::Instant::now();
    let report = client_for(&settings, &transport)
        .send(&message(), Uuid::new_v4(), "ab")
        .await;
    assert_eq!(report.outcome, Outcome::Retry { retry_after: None });
    assert_eq!(
        report.response,
        roster_push::ProviderResponse {
            http_status: None,
            reason: "TIMEOUT".into()
        }
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    holder.abort();
}

#[tokio::test]
async fn the_wire_carries_the_spec_headers_and_payloads() {
    let (standin, client) = setup().await;
    let id: Uuid = "0b9e2f8a-6c1d-4a3e-9f7b-5d2c1e0a8b64".parse().unwrap();
    let image = PushMessage {
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
        expires_at: 4_102_444_800_000, // 2100-01-01
    };
    let mut silent = image.clone();
    silent.content.silent = true;
    let token = "5f2c".repeat(16);
    assert_eq!(client.send(&image, id, &token).await.outcome, Outcome::Accepted);
    assert_eq!(client.send(&silent, id, &token).await.outcome, Outcome::Accepted);

    let recorded = standin.recorded();
    assert_eq!(recorded.len(), 2);
    let expected_image = r#"{"aps":{"alert":{"title":"Sale","body":"20% off today"},"sound":"default","badge":3,"mutable-content":1},"messageId":"0b9e2f8a-6c1d-4a3e-9f7b-5d2c1e0a8b64","internalData":{"sendDateTime":1735689600000,"bulkId":"spring-sale-1","atts":[{"url":"https://cdn.example.com/sale.png"}]},"customPayload":{"deeplink":"acme://sale"}}"#;
    let expected_silent = r#"{"aps":{"content-available":1},"messageId":"0b9e2f8a-6c1d-4a3e-9f7b-5d2c1e0a8b64","internalData":{"sendDateTime":1735689600000,"bulkId":"spring-sale-1","silent":{"title":"Sale","body":"20% off today","sound":"default"},"atts":[{"url":"https://cdn.example.com/sale.png"}]},"customPayload":{"deeplink":"acme://sale"}}"#;
    assert_eq!(std::str::from_utf8(&recorded[0].body).unwrap(), expected_image);
    assert_eq!(std::str::from_utf8(&recorded[1].body).unwrap(), expected_silent);
    assert_eq!(recorded[0].body, apns_payload(&image, id));
    for (request, push_type, priority) in [(&recorded[0], "alert", "10"), (&recorded[1], "background", "5")] {
        let h = |name: &str| request.headers.get(name).unwrap().to_str().unwrap().to_owned();
        assert_eq!(request.device_token, token);
        assert_eq!(h("apns-topic"), fixtures::APNS_TOPIC);
        assert_eq!(h("apns-id"), "0b9e2f8a-6c1d-4a3e-9f7b-5d2c1e0a8b64");
        assert_eq!(h("apns-expiration"), "4102444800");
        assert_eq!(h("apns-push-type"), push_type);
        assert_eq!(h("apns-priority"), priority);
        assert!(h("authorization").starts_with("bearer ey"));
        assert!(request.headers.get("apns-collapse-id").is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_origin_spreads_streams_over_that_many_connections() {
    let standin = ApnsStandIn::start(ApnsStandInConfig::test()).await.unwrap();
    let transport = Transport::new(TransportSettings {
        connections_per_origin: 3,
        ..Default::default()
    })
    .unwrap();
    let client = client_for(&standin.application_settings(), &transport);
    let msg = message();
    let sends = (0..90).map(|i| {
        let client = client.clone();
        let msg = &msg;
        async move { client.send(msg, Uuid::new_v4(), &format!("{i:064x}")).await }
    });
    assert!(join_all(sends).await.iter().all(|r| r.outcome == Outcome::Accepted));
    let stats = standin.stats();
    assert_eq!((stats.requests, stats.connections, stats.provider_tokens), (90, 3, 1));
}
