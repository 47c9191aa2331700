//! The retention sweep (management-api.md §3.3, §6.7; people.md §9.2) against the real server on
//! every backend: aged rows written with controlled timestamps, one sweep run now, and what went
//! and what stayed, seen through the management API where it shows it. A merge whose snapshots
//! were purged can no longer be reversed (`MERGE_NOT_REVERSIBLE`, nothing changes). Every
//! scenario ends with the invariant checker of people.md §11.

mod common;

use common::{NO_FLAGS, Resp, TestServer, people_helpers::assert_same_store};
use roster_model::{MergeLogEntry, Provider};
use roster_server::retention::{RetentionPolicy, SweepReport, sweep};
use roster_store::push::{
    AudienceState, Bulk, Delivery, DeliveryStatus, IdempotencyRecord, IdempotencyState, Message, SubmissionStatus,
};
use serde_json::json;
use uuid::Uuid;

const DAY: i64 = 86_400_000;

/// A key of the test's account with `scopes`; returns the secret.
async fn key(server: &TestServer, scopes: &[&str]) -> String {
    server.api_key(scopes).await
}

async fn api(server: &TestServer, key: &str, method: &str, path: &str) -> Resp {
    server.api(Some(key), method, path, &[], None).await
}

/// A message of the test application sent `at`.
fn message(server: &TestServer, bulk_id: &str, message_id: &str, at: i64) -> Message {
    Message {
        account_id: server.app.account_id,
        message_id: message_id.into(),
        bulk_id: bulk_id.into(),
        position: 0,
        application_id: server.app.id,
        destination: json!({"type": "PUSH_REG_ID", "pushRegId": "x"}),
        content: json!({"type": "TEXT", "text": "hi"}),
        options: json!({"silent": false}),
        target_only_primary: false,
        submission_status: SubmissionStatus::PendingAccepted,
        audience_state: AudienceState::Resolved,
        audience_count: 1,
        created_at: at,
        expires_at: at + DAY,
        updated_at: at,
    }
}

/// A record of `m` to `push_reg_id` with `status`, last changed `at`.
fn record(m: &Message, push_reg_id: &str, person_id: Uuid, status: DeliveryStatus, at: i64) -> Delivery {
    Delivery {
        account_id: m.account_id,
        delivery_id: Uuid::new_v4(),
        message_id: m.message_id.clone(),
        application_id: m.application_id,
        push_reg_id: Some(push_reg_id.into()),
        person_id: Some(person_id),
        provider: Provider::Fcm,
        status,
        attempts: u8::from(status != DeliveryStatus::Queued).into(),
        provider_http_status: None,
        provider_reason: None,
        created_at: m.created_at,
        updated_at: at,
        last_attempt_at: None,
        next_attempt_at: at,
        claim_id: None,
        delivered_at: None,
        seen_at: None,
    }
}

/// Personalizes a new anonymous installation into the person of `ext` (made by another
/// installation first): a merge with snapshots. Returns its entry.
async fn merge(server: &TestServer, ext: &str) -> MergeLogEntry {
    let owner = server.register_primary(&format!("fcm-{}", Uuid::new_v4())).await;
    server
        .personalize_ok(&owner, json!({"userIdentity": {"externalUserId": ext}}), NO_FLAGS)
        .await;
    let anonymous = server.register_primary(&format!("fcm-{}", Uuid::new_v4())).await;
    server
        .personalize_ok(&anonymous, json!({"userIdentity": {"externalUserId": ext}}), NO_FLAGS)
        .await;
    let entry = server
        .snapshot()
        .await
        .merge_log
        .into_iter()
        .find(|e| e.push_reg_id == anonymous)
        .expect("a merge entry");
    assert!(entry.before.is_some());
    entry
}

/// Moves a merge-log entry `days` into the past.
async fn age_entry(server: &TestServer, entry: &MergeLogEntry, at: i64) {
    let mut tx = server.store.begin().await.unwrap();
    let mut aged = entry.clone();
    aged.created_at = at;
    tx.update_merge_entry(&aged).await.unwrap();
    tx.commit().await.unwrap();
}

/// Aged and young push records, messages, bulks, idempotency records and merge-log entries; one
/// sweep; exactly the aged ones go (QUEUED records never), and the API shows it.
async fn one_sweep_purges_what_aged_and_keeps_the_rest() {
    let server = TestServer::start_with(|s| {
        // No delivery worker would leave a QUEUED record alone, and the sweep runs only when the
        // test says so.
        s.delivery.enabled = false;
        s.retention.sweep_interval_seconds = 0;
    })
    .await;
    let reader = key(&server, &["people:read", "push:send"]).await;
    let writer = key(&server, &["people:write"]).await;
    let now = roster_model::now_millis();

    // Merges: one past the image retention, one past the entry retention, one young.
    let past_images = merge(&server, "u-images").await;
    let past_entries = merge(&server, "u-entries").await;
    let young = merge(&server, "u-young").await;
    age_entry(&server, &past_images, now - 91 * DAY).await;
    age_entry(&server, &past_entries, now - 366 * DAY).await;

    // Push rows of a real installation.
    let snapshot = server.snapshot().await;
    let inst = &snapshot.installations[0];
    let (rid, pid) = (inst.push_reg_id.clone(), inst.person_id);
    let old = message(&server, "bulk-old", "msg-old", now - 100 * DAY);
    let emptied = message(&server, "bulk-emptied", "msg-emptied", now - 95 * DAY);
    let recent = message(&server, "bulk-recent", "msg-recent", now - 10 * DAY);
    let old_accepted = record(&old, &rid, pid, DeliveryStatus::Accepted, now - 31 * DAY);
    let old_queued = record(&old, "queued-inst", pid, DeliveryStatus::Queued, now - 99 * DAY);
    let emptied_failed = record(&emptied, &rid, pid, DeliveryStatus::Failed, now - 40 * DAY);
    let recent_accepted = record(&recent, &rid, pid, DeliveryStatus::Accepted, now - 29 * DAY);
    let idem = |k: &str, expires_at: i64| IdempotencyRecord {
        account_id: server.app.account_id,
        key: k.into(),
        fingerprint: "f".into(),
        owner: Uuid::new_v4(),
        state: IdempotencyState::Done,
        response_status: Some(200),
        response_body: Some(b"{}".to_vec()),
        created_at: expires_at - 24 * 3_600_000,
        expires_at,
    };
    {
        let mut tx = server.store.begin().await.unwrap();
        for m in [&old, &emptied, &recent] {
            tx.insert_bulk(&Bulk {
                account_id: m.account_id,
                bulk_id: m.bulk_id.clone(),
                created_at: m.created_at,
            })
            .await
            .unwrap();
            tx.insert_message(m).await.unwrap();
        }
        tx.insert_deliveries(&[
            old_accepted.clone(),
            old_queued.clone(),
            emptied_failed.clone(),
            recent_accepted.clone(),
        ])
        .await
        .unwrap();
        tx.insert_idempotency_record(&idem("expired", now - 1_000))
            .await
            .unwrap();
        tx.insert_idempotency_record(&idem("live", now + 3_600_000))
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }

    let policy = RetentionPolicy::new(
        &roster_server::settings::RetentionSettings::default(),
        &roster_server::settings::MergeLogSettings::default(),
    );
    let started = std::time::Instant::now();
    let report = sweep(&server.store, &policy, roster_model::now_millis()).await.unwrap();
    println!("one sweep took {:?}", started.elapsed());
    assert_eq!(
        report,
        SweepReport {
            deliveries: 2,
            messages: 1,
            bulks: 1,
            idempotency_records: 1,
            merge_snapshots: 2,
            merge_entries: 1,
        }
    );

    // Push rows: what the API shows.
    let show = |id: &str| format!("/api/v1/messages/{id}");
    api(&server, &reader, "GET", &show("msg-emptied"))
        .await
        .assert_error(404, "NOT_FOUND");
    let kept = api(&server, &reader, "GET", &show("msg-old")).await.ok().json();
    assert_eq!(kept["messageId"], "msg-old", "{kept}");
    let kept = api(&server, &reader, "GET", &show("msg-recent")).await.ok().json();
    assert_eq!(kept["messageId"], "msg-recent", "{kept}");
    // A write transaction: reading an idempotency record locks it on PostgreSQL.
    let mut tx = server.store.begin().await.unwrap();
    let account = server.app.account_id;
    assert!(tx.delivery(account, old_accepted.delivery_id).await.unwrap().is_none());
    assert!(
        tx.delivery(account, emptied_failed.delivery_id)
            .await
            .unwrap()
            .is_none()
    );
    let queued = tx
        .delivery(account, old_queued.delivery_id)
        .await
        .unwrap()
        .expect("QUEUED stays");
    assert_eq!(queued.status, DeliveryStatus::Queued);
    assert!(
        tx.delivery(account, recent_accepted.delivery_id)
            .await
            .unwrap()
            .is_some()
    );
    assert!(!tx.bulk_exists(account, "bulk-emptied").await.unwrap());
    assert!(tx.bulk_exists(account, "bulk-old").await.unwrap());
    assert!(tx.idempotency_record(account, "expired").await.unwrap().is_none());
    assert!(tx.idempotency_record(account, "live").await.unwrap().is_some());
    tx.rollback().await.unwrap();

    // Merges: the aged one is listed without snapshots and cannot be reversed; the oldest is
    // gone; the young one is untouched.
    let entry = |id: Uuid| format!("/api/v1/merges/{id}");
    let shown = api(&server, &reader, "GET", &entry(past_images.id)).await.ok().json();
    assert_eq!(shown["status"], "APPLIED");
    assert_eq!(shown["reversible"], false, "{shown}");
    assert!(shown.get("before").is_none(), "{shown}");
    let unchanged = server.snapshot().await;
    api(&server, &writer, "POST", &format!("{}/reverse", entry(past_images.id)))
        .await
        .assert_error(409, "MERGE_NOT_REVERSIBLE");
    assert_same_store(&unchanged, &server.snapshot().await, "reversal of a purged merge");
    api(&server, &reader, "GET", &entry(past_entries.id))
        .await
        .assert_error(404, "NOT_FOUND");
    let shown = api(&server, &reader, "GET", &entry(young.id)).await.ok().json();
    assert_eq!(shown["reversible"], true);
    assert!(shown["before"].is_object(), "{shown}");

    // A second sweep finds nothing more.
    let again = sweep(&server.store, &policy, roster_model::now_millis()).await.unwrap();
    assert_eq!(again, SweepReport::default());
    server.finish().await;
}

/// The server's own sweeper runs every `retention.sweep_interval_seconds` (here 1 s) and stops
/// with the server: an aged record disappears without anyone asking.
async fn the_server_sweeps_by_itself() {
    let server = TestServer::start_with(|s| s.retention.sweep_interval_seconds = 1).await;
    let now = roster_model::now_millis();
    let record = |key: &str, expires_at: i64| IdempotencyRecord {
        account_id: server.app.account_id,
        key: key.into(),
        fingerprint: "f".into(),
        owner: Uuid::new_v4(),
        state: IdempotencyState::Done,
        response_status: Some(200),
        response_body: Some(b"{}".to_vec()),
        created_at: now - 25 * 3_600_000,
        expires_at,
    };
    let mut tx = server.store.begin().await.unwrap();
    tx.insert_idempotency_record(&record("expired", now - 3_600_000))
        .await
        .unwrap();
    tx.insert_idempotency_record(&record("live", now + 3_600_000))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut tx = server.store.begin().await.unwrap();
        let expired = tx.idempotency_record(server.app.account_id, "expired").await.unwrap();
        let live = tx.idempotency_record(server.app.account_id, "live").await.unwrap();
        tx.rollback().await.unwrap();
        assert!(live.is_some(), "a live record stays");
        if expired.is_none() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no sweep within 10 s");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    server.finish().await;
}

on_every_backend!(
    one_sweep_purges_what_aged_and_keeps_the_rest,
    the_server_sweeps_by_itself
);
