//! HmsClient against the HMS stand-in: every §6.3 outcome, token caching and refresh, the body
//! on the wire.

use std::time::Duration;

use futures::future::join_all;
use roster_push::payload::ib_json;
use roster_push::{
    HmsClient, HmsCredentials, Outcome, ProviderClient, ProviderResponse, PushContent, PushMessage, Transport,
};
use roster_push_standins::{HmsAnswer, HmsStandIn, HmsStandInConfig};
use serde_json::{Value, json};
use uuid::Uuid;

fn message() -> PushMessage {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
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

fn client_for(settings: &Value) -> HmsClient {
    HmsClient::new(
        HmsCredentials::parse(settings).unwrap(),
        &Transport::new(Default::default()).unwrap(),
    )
}

#[tokio::test]
async fn every_outcome_of_the_table() {
    let standin = HmsStandIn::start(HmsStandInConfig::test()).await.unwrap();
    let client = client_for(&standin.application_settings());
    let response = |status, reason: &str| ProviderResponse {
        http_status: Some(status),
        reason: reason.into(),
    };
    let cases = [
        (HmsAnswer::Success, Outcome::Accepted, response(200, "80000000")),
        (
            HmsAnswer::IllegalToken,
            Outcome::Unregistered,
            response(200, "80100000"),
        ),
        (
            HmsAnswer::InvalidTokens,
            Outcome::Unregistered,
            response(400, "80300007"),
        ),
        (
            HmsAnswer::InvalidParameter,
            Outcome::Rejected {
                reason: "80100001".into(),
            },
            response(400, "80100001"),
        ),
        (
            HmsAnswer::TooManyRequests { retry_after: Some(12) },
            Outcome::Retry {
                retry_after: Some(Duration::from_secs(12)),
            },
            response(429, "HTTP_429"),
        ),
        (
            HmsAnswer::Internal,
            Outcome::Retry { retry_after: None },
            response(500, "81000001"),
        ),
    ];
    for (i, (answer, outcome, expected)) in cases.into_iter().enumerate() {
        let token = format!("hms-token-{i}");
        standin.script(&token, [answer.clone()]);
        let report = client.send(&message(), Uuid::new_v4(), &token).await;
        assert_eq!((report.outcome, report.response), (outcome, expected), "{answer:?}");
    }
    for (answer, code) in [
        (HmsAnswer::AuthError, "80200001"),
        (HmsAnswer::NoPermission, "80300002"),
    ] {
        standin.script("x", [answer]);
        let report = client.send(&message(), Uuid::new_v4(), "x").await;
        assert!(matches!(report.outcome, Outcome::Failed { .. }), "{report:?}");
        assert_eq!(report.response.reason, code);
    }
    let stats = standin.stats();
    assert_eq!((stats.sends, stats.tokens_issued, stats.send_connections), (8, 1, 1));

    // The same through the provider-agnostic wrapper.
    let any: ProviderClient = client.into();
    standin.script("via-any", [HmsAnswer::InvalidTokens]);
    assert_eq!(
        any.send(&message(), Uuid::new_v4(), "via-any").await.outcome,
        Outcome::Unregistered
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_cached_and_refreshed_once_on_expiry() {
    let standin = HmsStandIn::start(HmsStandInConfig::test()).await.unwrap();
    let client = client_for(&standin.application_settings());
    let msg = message();
    let sends = (0..100).map(|i| {
        let client = client.clone();
        let msg = &msg;
        async move { client.send(msg, Uuid::new_v4(), &format!("t{i}")).await }
    });
    assert!(join_all(sends).await.iter().all(|r| r.outcome == Outcome::Accepted));
    assert_eq!((standin.stats().token_requests, standin.stats().tokens_issued), (1, 1));

    standin.script("e", [HmsAnswer::TokenExpired]);
    let report = client.send(&msg, Uuid::new_v4(), "e").await;
    assert_eq!(report.outcome, Outcome::Accepted);
    assert!(report.credential_refreshed);
    standin.script("f", [HmsAnswer::TokenExpired, HmsAnswer::TokenExpired]);
    let report = client.send(&msg, Uuid::new_v4(), "f").await;
    assert!(matches!(report.outcome, Outcome::Failed { .. }), "{report:?}");
    assert_eq!(standin.stats().tokens_issued, 3);
}

#[tokio::test]
async fn a_refused_client_secret_is_a_credential_failure() {
    let standin = HmsStandIn::start(HmsStandInConfig::test()).await.unwrap();
    let mut settings = standin.application_settings();
    settings["clientSecret"] = json!("wrong");
    let report = client_for(&settings).send(&message(), Uuid::new_v4(), "a").await;
    assert!(
        matches!(&report.outcome, Outcome::Failed { last_error } if last_error.contains("1101")),
        "{report:?}"
    );
    assert_eq!(
        report.response,
        ProviderResponse {
            http_status: Some(401),
            reason: "1101".into()
        }
    );
    assert_eq!(standin.stats().sends, 0);
}

#[tokio::test]
async fn the_wire_carries_the_spec_body() {
    let standin = HmsStandIn::start(HmsStandInConfig::test()).await.unwrap();
    let client = client_for(&standin.application_settings());
    let msg = message();
    let id = Uuid::new_v4();
    assert_eq!(client.send(&msg, id, "hms-1").await.outcome, Outcome::Accepted);
    let recorded = standin.recorded();
    let body = std::str::from_utf8(&recorded[0].body).unwrap();
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
    let data = serde_json::to_string(&format!(r#"{{"org_ib_d":{}}}"#, ib_json(&msg, id))).unwrap();
    assert_eq!(
        body,
        format!(
            r#"{{"validate_only":false,"message":{{"token":["hms-1"],"android":{{"urgency":"HIGH","ttl":"{ttl}s"}},"data":{data}}}}}"#
        )
    );
    assert!(
        recorded[0].headers["authorization"]
            .to_str()
            .unwrap()
            .starts_with("Bearer hms-standin-")
    );
}
