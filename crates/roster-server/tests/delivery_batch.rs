//! Delivery answers recorded in batches (`Core::finish_deliveries`, the finisher of the delivery
//! workers), end to end on every backend: each answer of a batch is recorded exactly as one
//! recorded alone would be (status, token compare-and-clear, provider status, lost claims), and
//! a server stopped in the middle of a send has recorded every answer it got, so that the next
//! server sends each remaining record once and no installation twice.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::TestServer;
use roster_core::push::{AttemptOutcome, ClaimedDelivery};
use roster_model::{Application, Provider, now_millis};
use roster_push::{Outcome, ProviderResponse, SendReport};
use roster_push_standins::{FcmStandIn, FcmStandInConfig};
use roster_server::settings::{ManagementRateSettings, MobileRateSettings};
use roster_server::{RunningServer, Settings};
use roster_store::push::{Delivery, DeliveryStatus, QueueState};
use serde_json::{Value, json};
use uuid::Uuid;

async fn api_key(server: &TestServer, scopes: &[&str]) -> String {
    server.api_key(scopes).await
}

async fn call(ts: &TestServer, method: &str, path: &str, key: &str, body: Option<Value>) -> common::Resp {
    ts.api(Some(key), method, path, &[], body.as_ref()).await
}

/// Points the test application's FCM settings at the stand-in.
async fn use_stand_in(ts: &TestServer, key: &str, fcm: &FcmStandIn) {
    let path = format!("/api/v1/applications/{}", ts.app.id);
    let body = json!({"providers": {"fcm": fcm.application_settings()}});
    call(ts, "PATCH", &path, key, Some(body)).await.ok();
}

/// Registers Firebase installations with these tokens; their pushRegIds by token.
async fn install(ts: &TestServer, tokens: impl IntoIterator<Item = String>) -> BTreeMap<String, String> {
    let mut ids = BTreeMap::new();
    for token in tokens {
        let id = ts
            .register(json!({"pushServiceType": "Firebase", "pushServiceToken": token, "os": "Android"}))
            .await;
        ids.insert(token, id);
    }
    ids
}

/// Sends one message of the test application to `destinations`; its id.
async fn send(ts: &TestServer, key: &str, destinations: Vec<Value>) -> String {
    let body = json!({"messages": [{
        "sender": ts.app.application_code,
        "destinations": destinations,
        "content": {"title": "Batch", "text": "one of many"}
    }]});
    let r = call(ts, "POST", "/push/3/messages", key, Some(body)).await.ok().json();
    r["messages"][0]["messageId"].as_str().unwrap().to_owned()
}

async fn stored_app(ts: &TestServer) -> Application {
    let mut tx = ts.store.begin_read().await.unwrap();
    let app = tx.application(ts.app.account_id, ts.app.id).await.unwrap().unwrap();
    tx.rollback().await.unwrap();
    app
}

async fn record(ts: &TestServer, delivery_id: Uuid) -> Delivery {
    let mut tx = ts.store.begin_read().await.unwrap();
    let d = tx.delivery(ts.app.account_id, delivery_id).await.unwrap().unwrap();
    tx.rollback().await.unwrap();
    d
}

fn sent(outcome: Outcome, http_status: u16, reason: &str, token: &str) -> AttemptOutcome {
    AttemptOutcome::Sent {
        report: SendReport {
            outcome,
            response: ProviderResponse {
                http_status: Some(http_status),
                reason: reason.into(),
            },
            credential_refreshed: false,
        },
        token: token.into(),
    }
}

/// Six answers in one transaction, each recorded as if alone: accepted, unregistered (the token
/// is cleared from the installation still holding it), a credential failure (the provider status
/// becomes `ERROR`), a retry (`QUEUED` again, its claim released), rejected, and an answer under
/// a claim the record no longer carries (nothing written for it, `None`). Recording the same
/// answers again writes nothing.
async fn every_answer_of_a_batch_is_recorded_as_alone() {
    // No workers: the test is the worker.
    let ts = TestServer::start_with(|s| s.delivery.enabled = false).await;
    let admin = api_key(&ts, &["admin"]).await;
    let key = api_key(&ts, &["push:send"]).await;
    let fcm = FcmStandIn::start(FcmStandInConfig::test()).await.unwrap();
    use_stand_in(&ts, &admin, &fcm).await;
    let ids = install(&ts, (0..6).map(|i| format!("b-{i}"))).await;
    let destinations = ids
        .values()
        .map(|id| json!({"type": "REGISTRATION", "pushRegistrationId": id}))
        .collect();
    send(&ts, &key, destinations).await;
    let core = ts.core();
    let claimed = core.claim_deliveries(Duration::from_secs(60), 100).await.unwrap();
    assert_eq!(claimed.len(), 6);
    let by_token: BTreeMap<String, ClaimedDelivery> = claimed
        .into_iter()
        .map(|c| {
            let token = c.installation.as_ref().unwrap().push_service_token.clone().unwrap();
            (token, c)
        })
        .collect();
    let mut stale = by_token["b-5"].clone();
    stale.delivery.claim_id = Some(Uuid::new_v4());
    let answers = [
        (&by_token["b-0"], sent(Outcome::Accepted, 200, "OK", "b-0")),
        (
            &by_token["b-1"],
            sent(Outcome::Unregistered, 404, "UNREGISTERED", "b-1"),
        ),
        (
            &by_token["b-2"],
            sent(
                Outcome::Failed {
                    last_error: "the service account was refused".into(),
                },
                401,
                "UNAUTHENTICATED",
                "b-2",
            ),
        ),
        (
            &by_token["b-3"],
            sent(
                Outcome::Retry {
                    retry_after: Some(Duration::from_secs(30)),
                },
                503,
                "UNAVAILABLE",
                "b-3",
            ),
        ),
        (
            &by_token["b-4"],
            sent(
                Outcome::Rejected {
                    reason: "INVALID_ARGUMENT".into(),
                },
                400,
                "INVALID_ARGUMENT",
                "b-4",
            ),
        ),
        (&stale, sent(Outcome::Accepted, 200, "OK", "b-5")),
    ];
    let done: Vec<(&ClaimedDelivery, &AttemptOutcome)> = answers.iter().map(|(c, o)| (*c, o)).collect();
    let before = common::now_ms();
    let statuses = core.finish_deliveries(&done).await.unwrap();
    assert_eq!(
        statuses,
        [
            Some(DeliveryStatus::Accepted),
            Some(DeliveryStatus::Unregistered),
            Some(DeliveryStatus::Failed),
            Some(DeliveryStatus::Queued),
            Some(DeliveryStatus::Rejected),
            None,
        ]
    );

    let r0 = record(&ts, by_token["b-0"].delivery.delivery_id).await;
    assert_eq!((r0.status, r0.attempts), (DeliveryStatus::Accepted, 1));
    assert_eq!(
        (r0.provider_http_status, r0.provider_reason.as_deref()),
        (Some(200), Some("OK"))
    );
    let r1 = record(&ts, by_token["b-1"].delivery.delivery_id).await;
    assert_eq!(r1.status, DeliveryStatus::Unregistered);
    let r2 = record(&ts, by_token["b-2"].delivery.delivery_id).await;
    assert_eq!(
        (r2.status, r2.provider_http_status),
        (DeliveryStatus::Failed, Some(401))
    );
    let r3 = record(&ts, by_token["b-3"].delivery.delivery_id).await;
    assert_eq!((r3.status, r3.attempts, r3.claim_id), (DeliveryStatus::Queued, 1, None));
    assert!(r3.next_attempt_at >= before + 30_000, "a retry waits for Retry-After");
    let r4 = record(&ts, by_token["b-4"].delivery.delivery_id).await;
    assert_eq!(r4.status, DeliveryStatus::Rejected);
    // The stale answer changed nothing: still queued under its real claim, never attempted.
    let r5 = record(&ts, by_token["b-5"].delivery.delivery_id).await;
    assert_eq!(r5.status, DeliveryStatus::Queued);
    assert_eq!((r5.attempts, r5.claim_id), (0, by_token["b-5"].delivery.claim_id));

    // Compare-and-clear: the unregistered token went, the others stayed.
    let s = ts.snapshot().await;
    let token_of = |id: &str| {
        s.installations
            .iter()
            .find(|i| i.push_reg_id == *id)
            .unwrap()
            .push_service_token
            .clone()
    };
    assert_eq!(token_of(&ids["b-1"]), None);
    assert_eq!(token_of(&ids["b-0"]).as_deref(), Some("b-0"));
    // The credential failure shows on the application.
    let app = call(&ts, "GET", &format!("/api/v1/applications/{}", ts.app.id), &admin, None)
        .await
        .ok()
        .json();
    assert_eq!(app["providers"]["fcm"]["status"], "ERROR", "{app}");
    assert_eq!(app["providers"]["fcm"]["lastError"], "the service account was refused");

    // The same answers again: every claim is used up or released, nothing is written.
    let again = core.finish_deliveries(&done).await.unwrap();
    assert!(again.iter().all(Option::is_none), "{again:?}");
    assert_eq!(record(&ts, by_token["b-0"].delivery.delivery_id).await, r0);
    // The real claim of the stale one still records its answer; an accepted push with the
    // provider in error sets it back to OK.
    let mut real = by_token["b-5"].clone();
    real.application = Some(stored_app(&ts).await.into());
    let accepted = sent(Outcome::Accepted, 200, "OK", "b-5");
    assert_eq!(
        core.finish_deliveries(&[(&real, &accepted)]).await.unwrap(),
        [Some(DeliveryStatus::Accepted)]
    );
    let app = call(&ts, "GET", &format!("/api/v1/applications/{}", ts.app.id), &admin, None)
        .await
        .ok()
        .json();
    assert_eq!(app["providers"]["fcm"]["status"], "OK", "{app}");
    ts.finish().await;
}

/// The tokens the stand-in accepted, with how many pushes each got.
fn accepted_per_token(fcm: &FcmStandIn) -> BTreeMap<String, usize> {
    let mut per_token = BTreeMap::new();
    for r in fcm.recorded().into_iter().filter(|r| r.status == 200) {
        *per_token.entry(r.device_token).or_default() += 1;
    }
    per_token
}

async fn delivery_counts(ts: &TestServer, key: &str, message_id: &str) -> Value {
    call(ts, "GET", &format!("/api/v1/messages/{message_id}"), key, None)
        .await
        .ok()
        .json()
}

/// Another server on the test's store, with or without delivery workers.
async fn server_on(ts: &TestServer, workers: bool) -> RunningServer {
    let mut settings = Settings {
        data_dir: std::env::temp_dir(),
        ..Settings::default()
    };
    settings.http.listen = "127.0.0.1:0".into();
    settings.mobile.rate = MobileRateSettings::disabled();
    settings.management.rate = ManagementRateSettings::disabled();
    settings.delivery.enabled = workers;
    settings.delivery.poll_interval_ms = 50;
    RunningServer::start(&settings, ts.store.clone()).await.unwrap()
}

/// A server stopped in the middle of a send records, before its stop returns, the answer of
/// every provider call it made (the finisher's queue is drained): the records `ACCEPTED` are
/// exactly the pushes the provider accepted. A new server on the same store then sends each
/// remaining record, and every installation gets the push exactly once.
async fn a_stop_in_the_middle_loses_no_answer() {
    const N: usize = 400;
    let ts = TestServer::start_with(|s| {
        s.delivery.poll_interval_ms = 50;
        s.delivery.chunk_size = 50;
        s.delivery.workers = 8;
    })
    .await;
    let admin = api_key(&ts, &["admin"]).await;
    let key = api_key(&ts, &["push:send"]).await;
    let fcm = FcmStandIn::start(FcmStandInConfig::test()).await.unwrap();
    use_stand_in(&ts, &admin, &fcm).await;
    let ids = install(&ts, (0..N).map(|i| format!("s-{i:03}"))).await;
    let message_id = send(&ts, &key, vec![json!({"type": "MULTIPLE"})]).await;
    // Stop once some of the pushes went out, not all. Meanwhile the process holds at most one
    // batch beyond its calls: twice `delivery.workers` records claimed and not yet attempted.
    // Records the stand-in answered stay claimed in the store until the finisher records
    // them, so those count on top (the stand-in's count read after the snapshot bounds them).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while fcm.stats().count(200) < (N / 10) as u64 {
        assert!(tokio::time::Instant::now() < deadline, "the send never started");
        let mut tx = ts.store.begin_read().await.unwrap();
        let depth = tx.queue_depth(now_millis()).await.unwrap();
        let counts = tx.delivery_counts(ts.app.account_id, &message_id).await.unwrap();
        tx.rollback().await.unwrap();
        let answered_unrecorded = fcm.stats().count(200) - counts.count(DeliveryStatus::Accepted);
        let claimed = depth.count(Provider::Fcm, QueueState::Claimed);
        assert!(
            claimed <= 2 * 8 + answered_unrecorded,
            "{claimed} records claimed by 8 workers, {answered_unrecorded} of them answered"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Stop it, with a server without workers taking its place for the reads.
    let mut ts = ts;
    let quiet = server_on(&ts, false).await;
    let first = std::mem::replace(&mut ts.server, quiet);
    first.stop().await.unwrap();
    let accepted_at_stop = accepted_per_token(&fcm);
    let mut tx = ts.store.begin_read().await.unwrap();
    let counts = tx.delivery_counts(ts.app.account_id, &message_id).await.unwrap();
    tx.rollback().await.unwrap();
    let recorded = counts.by_status.get(&DeliveryStatus::Accepted).copied().unwrap_or(0);
    assert!(
        accepted_at_stop.values().all(|n| *n == 1),
        "a push went out twice before the stop"
    );
    assert_eq!(
        recorded,
        accepted_at_stop.len() as u64,
        "every accepted push is recorded once the stop returns"
    );
    assert!(
        accepted_at_stop.len() < N,
        "the stop came after the whole send; nothing was left to resume"
    );

    // Another server with workers on the same store finishes the send.
    let second = server_on(&ts, true).await;
    let quiet = std::mem::replace(&mut ts.server, second);
    quiet.stop().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let m = loop {
        let m = delivery_counts(&ts, &key, &message_id).await;
        if m["done"] == true {
            break m;
        }
        assert!(tokio::time::Instant::now() < deadline, "the send never finished: {m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(m["deliveries"]["ACCEPTED"], N, "{m}");
    let per_token = accepted_per_token(&fcm);
    assert_eq!(
        per_token.keys().cloned().collect::<BTreeSet<_>>(),
        ids.keys().cloned().collect::<BTreeSet<_>>()
    );
    assert!(
        per_token.values().all(|n| *n == 1),
        "an installation got the push twice: {:?}",
        per_token.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    ts.finish().await;
}

on_every_backend!(
    every_answer_of_a_batch_is_recorded_as_alone,
    a_stop_in_the_middle_loses_no_answer,
);
