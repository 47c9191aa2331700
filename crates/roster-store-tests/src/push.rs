//! Scenarios of the push queue primitives ([`roster_store::PushTx`]): what every backend must
//! answer for bulks, messages, delivery records, claims, audience jobs, device reports,
//! compare-and-clear and idempotency records. Listed in
//! [`store_behaviour_suite!`](crate::store_behaviour_suite) next to [`crate::scenarios`].

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use roster_model::filter::Filter;
use roster_model::{Provider, PushServiceType, TokenClearedReason};
use roster_store::audience::Scope;
use roster_store::push::{
    AttemptResult, AudienceJob, AudienceState, Bulk, Delivery, DeliveryStatus, IdempotencyRecord, IdempotencyState,
    Message, SubmissionStatus, constraints,
};
use roster_store::{Constraint, Store};
use serde_json::json;
use uuid::Uuid;

use crate::fixtures::{
    application, bulk_with_message, conflict_on, delivery, installation, message, person, queued, seeded, with_token,
};

async fn read_delivery(store: &dyn Store, d: &Delivery) -> Delivery {
    let mut tx = store.begin_read().await.unwrap();
    let got = tx
        .delivery(d.account_id, d.delivery_id)
        .await
        .unwrap()
        .expect("record exists");
    tx.rollback().await.unwrap();
    got
}

/// Bulks, messages, records, jobs and idempotency records read back as written; bulk ids,
/// message ids and (message, installation) pairs are unique per account, and the same ids in
/// another account are another bulk and message.
pub async fn push_records_round_trip(store: Arc<dyn Store>) {
    let (app, m) = bulk_with_message(store.as_ref()).await;
    let mut tx = store.begin_read().await.unwrap();
    assert!(tx.bulk_exists(app.account_id, "bulk-1").await.unwrap());
    assert!(!tx.bulk_exists(app.account_id, "bulk-2").await.unwrap());
    assert_eq!(tx.message(app.account_id, "msg-1").await.unwrap(), Some(m.clone()));
    assert_eq!(tx.message(Uuid::new_v4(), "msg-1").await.unwrap(), None);
    tx.rollback().await.unwrap();

    // Uniqueness per account, each violation named.
    let mut tx = store.begin().await.unwrap();
    let bulk = Bulk {
        account_id: app.account_id,
        bulk_id: "bulk-1".into(),
        created_at: 6_000,
    };
    assert_eq!(
        conflict_on(tx.insert_bulk(&bulk).await),
        Constraint::Other(constraints::BULK_ID.into())
    );
    drop(tx);
    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        conflict_on(tx.insert_message(&message(&app, "bulk-1", "msg-1", 1)).await),
        Constraint::Other(constraints::MESSAGE_ID.into())
    );
    drop(tx);

    // Later messages of the bulk list in position order, paged.
    let mut tx = store.begin().await.unwrap();
    for (i, id) in ["msg-3", "msg-2"].iter().enumerate() {
        let mut later = message(&app, "bulk-1", id, 2 - i as i64);
        later.audience_state = AudienceState::Resolving;
        later.target_only_primary = true;
        later.submission_status = SubmissionStatus::RejectedNoDeliverableInstallation;
        tx.insert_message(&later).await.unwrap();
    }
    tx.set_message_audience(app.account_id, "msg-2", AudienceState::Resolved, 7, 9_000)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin_read().await.unwrap();
    let ids = |ms: Vec<Message>| ms.into_iter().map(|m| m.message_id).collect::<Vec<_>>();
    assert_eq!(
        ids(tx.messages_of_bulk(app.account_id, "bulk-1", None, 10).await.unwrap()),
        ["msg-1", "msg-2", "msg-3"]
    );
    assert_eq!(
        ids(tx.messages_of_bulk(app.account_id, "bulk-1", Some(0), 1).await.unwrap()),
        ["msg-2"]
    );
    let m2 = tx.message(app.account_id, "msg-2").await.unwrap().unwrap();
    assert_eq!(
        (m2.audience_state, m2.audience_count, m2.updated_at),
        (AudienceState::Resolved, 7, 9_000)
    );
    assert!(m2.target_only_primary);
    assert_eq!(
        m2.submission_status,
        SubmissionStatus::RejectedNoDeliverableInstallation
    );
    tx.rollback().await.unwrap();

    // A record reads back field for field; a second one for the same installation conflicts.
    let mut d = delivery(&m, "0b9e2f8a-6c1d-4a3e-9f7b-5d2c1e0a8b64", Uuid::new_v4(), 5_000);
    d.provider = Provider::Apns;
    d.provider_http_status = Some(429);
    d.provider_reason = Some("TooManyRequests".into());
    d.last_attempt_at = Some(5_100);
    d.attempts = 2;
    let mut tx = store.begin().await.unwrap();
    tx.insert_deliveries(std::slice::from_ref(&d)).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(read_delivery(store.as_ref(), &d).await, d);
    let mut twin = d.clone();
    twin.delivery_id = Uuid::new_v4();
    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        conflict_on(tx.insert_deliveries(&[twin]).await),
        Constraint::Other(constraints::DELIVERY_PER_INSTALLATION.into())
    );
    drop(tx);

    // Many records at once (a resolution's chunk; the backends may write them in multi-row
    // statements): every one reads back field for field, none twice.
    let many: Vec<Delivery> = (0..77)
        .map(|i| {
            let mut d = delivery(&m, &format!("many-{i:03}"), Uuid::new_v4(), 6_000 + i);
            if i % 3 == 0 {
                d.person_id = None;
            }
            if i % 5 == 0 {
                d.claim_id = Some(Uuid::new_v4());
                d.provider = Provider::Apns;
                d.attempts = 1;
                d.last_attempt_at = Some(6_500 + i);
            }
            if i % 7 == 0 {
                d.status = DeliveryStatus::Failed;
                d.provider_http_status = Some(500);
                d.provider_reason = Some(format!("reason {i}"));
                d.delivered_at = Some(7_000 + i);
            }
            d
        })
        .collect();
    let mut tx = store.begin().await.unwrap();
    tx.insert_deliveries(&many).await.unwrap();
    tx.commit().await.unwrap();
    for d in &many {
        assert_eq!(&read_delivery(store.as_ref(), d).await, d);
    }
    // A chunk with a conflicting record fails, and its transaction leaves nothing.
    let mut clash: Vec<Delivery> = (0..40)
        .map(|i| delivery(&m, &format!("clash-{i:03}"), Uuid::new_v4(), 8_000))
        .collect();
    clash[37].push_reg_id = Some("many-005".into());
    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        conflict_on(tx.insert_deliveries(&clash).await),
        Constraint::Other(constraints::DELIVERY_PER_INSTALLATION.into())
    );
    drop(tx);
    let mut tx = store.begin_read().await.unwrap();
    assert_eq!(
        tx.delivery(clash[0].account_id, clash[0].delivery_id).await.unwrap(),
        None
    );
    tx.rollback().await.unwrap();

    // Audience jobs and idempotency records.
    let job = AudienceJob {
        account_id: app.account_id,
        message_id: "msg-3".into(),
        application_id: app.id,
        filter: json!({"$or": [{"tags": "vip"}, {"installation.os": "iOS"}]}),
        target_only_primary: true,
        after_push_reg_id: None,
        created_at: 5_000,
        updated_at: 5_000,
    };
    let record = IdempotencyRecord {
        account_id: app.account_id,
        key: "key-1".into(),
        fingerprint: "f1".into(),
        owner: Uuid::new_v4(),
        state: IdempotencyState::Running,
        response_status: None,
        response_body: None,
        created_at: 5_000,
        expires_at: 90_000,
    };
    let mut tx = store.begin().await.unwrap();
    tx.insert_audience_job(&job).await.unwrap();
    tx.put_idempotency_record(&record).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.claim_audience_job().await.unwrap(), Some(job.clone()));
    let done = IdempotencyRecord {
        state: IdempotencyState::Done,
        response_status: Some(200),
        response_body: Some(b"{\"bulkId\":\"b\"}".to_vec()),
        ..record.clone()
    };
    assert_eq!(
        tx.idempotency_record(app.account_id, "key-1").await.unwrap(),
        Some(record.clone())
    );
    tx.put_idempotency_record(&done).await.unwrap();
    assert!(
        !tx.delete_idempotency_record(app.account_id, "key-1", Uuid::new_v4())
            .await
            .unwrap(),
        "only the owner deletes"
    );
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        tx.idempotency_record(app.account_id, "key-1").await.unwrap(),
        Some(done)
    );
    assert_eq!(tx.idempotency_record(Uuid::new_v4(), "key-1").await.unwrap(), None);
    assert!(
        tx.delete_idempotency_record(app.account_id, "key-1", record.owner)
            .await
            .unwrap()
    );
    assert_eq!(tx.idempotency_record(app.account_id, "key-1").await.unwrap(), None);
    tx.delete_audience_job(app.account_id, "msg-3").await.unwrap();
    assert_eq!(tx.claim_audience_job().await.unwrap(), None);
    tx.commit().await.unwrap();
}

/// Concurrent claims never take the same record: every due record is claimed exactly once, a
/// record that is not due yet is not claimed, and a claim holds its records for its lease.
pub async fn claims_are_exclusive(store: Arc<dyn Store>) {
    let (_, m) = bulk_with_message(store.as_ref()).await;
    let due = queued(store.as_ref(), &m, 40, 1_000).await;
    let later = queued(store.as_ref(), &m, 1, 65_000).await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let claim = Uuid::new_v4();
            let mut got = Vec::new();
            loop {
                let mut tx = store.begin().await.unwrap();
                let batch = tx.claim_deliveries(10_000, 70_000, claim, 3).await.unwrap();
                tx.commit().await.unwrap();
                if batch.is_empty() {
                    break;
                }
                assert!(batch.len() <= 3);
                for d in &batch {
                    assert_eq!(d.claim_id, Some(claim));
                    assert_eq!(d.next_attempt_at, 70_000, "claimed until the end of the lease");
                    assert_eq!(d.status, DeliveryStatus::Queued);
                }
                got.extend(batch.into_iter().map(|d| d.delivery_id));
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let distinct: BTreeSet<Uuid> = all.iter().copied().collect();
    assert_eq!(all.len(), distinct.len(), "a record was claimed twice");
    let expected: BTreeSet<Uuid> = due.iter().map(|d| d.delivery_id).collect();
    assert_eq!(distinct, expected, "every due record, and only those");
    assert!(!distinct.contains(&later[0].delivery_id));

    // Within the lease nothing is due; after it (a worker died) everything is, most overdue first.
    let mut tx = store.begin().await.unwrap();
    assert!(
        tx.claim_deliveries(60_000, 99_000, Uuid::new_v4(), 100)
            .await
            .unwrap()
            .is_empty()
    );
    let first = tx.claim_deliveries(80_000, 99_000, Uuid::new_v4(), 1).await.unwrap();
    let rest = tx.claim_deliveries(80_000, 99_000, Uuid::new_v4(), 100).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].delivery_id, later[0].delivery_id, "most overdue first");
    assert_eq!(rest.len(), 40);
}

/// Results recorded together (`finish_attempts`: one statement on PostgreSQL, the trait's loop
/// on SQLite) apply exactly as one by one, in order: under its claim while `QUEUED` only, a
/// retry releasing the claim, and each result's own values. The first batch names no record
/// twice; the second names one record twice (the first result applies; the second finds it
/// finished).
pub async fn attempt_results_in_one_batch_apply_as_one_by_one(store: Arc<dyn Store>) {
    let (_, m) = bulk_with_message(store.as_ref()).await;
    let records = queued(store.as_ref(), &m, 45, 1_000).await;
    let claim = Uuid::new_v4();
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.claim_deliveries(2_000, 62_000, claim, 100).await.unwrap().len(), 45);
    tx.commit().await.unwrap();
    let result = |d: &Delivery, status, claim_id, k: i64| AttemptResult {
        account_id: d.account_id,
        delivery_id: d.delivery_id,
        claim_id,
        status,
        provider: if k % 2 == 0 { Provider::Fcm } else { Provider::Apns },
        attempts: 1,
        provider_http_status: Some(200 + k),
        provider_reason: Some(format!("reason-{k}")),
        last_attempt_at: Some(2_100 + k),
        next_attempt_at: if status == DeliveryStatus::Queued {
            9_000 + k
        } else {
            2_100 + k
        },
        now: 3_000 + k,
    };
    // Record 3 is finished before the batch.
    let mut tx = store.begin().await.unwrap();
    assert!(
        tx.finish_attempt(&result(&records[3], DeliveryStatus::Accepted, claim, 3))
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();

    let stranger = Delivery {
        delivery_id: Uuid::new_v4(),
        ..records[0].clone()
    };
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for (k, d) in records.iter().enumerate() {
        let k = k as i64;
        let (r, applies) = match k {
            1 => (result(d, DeliveryStatus::Accepted, Uuid::new_v4(), k), false), // another claim
            2 => (result(d, DeliveryStatus::Queued, claim, k), true),             // a retry
            3 => (result(d, DeliveryStatus::Rejected, claim, k), false),          // finished before
            4 => continue,                                                        // the second batch
            _ if k % 3 == 0 => (result(d, DeliveryStatus::Unregistered, claim, k), true),
            _ => (result(d, DeliveryStatus::Accepted, claim, k), true),
        };
        batch.push(r);
        expected.push(applies);
    }
    batch.insert(5, result(&stranger, DeliveryStatus::Accepted, claim, 99));
    expected.insert(5, false);
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.finish_attempts(&batch).await.unwrap(), expected);
    tx.commit().await.unwrap();
    for (r, applied) in batch.iter().zip(&expected) {
        if r.delivery_id == stranger.delivery_id {
            continue;
        }
        let d = records.iter().find(|d| d.delivery_id == r.delivery_id).unwrap();
        let got = read_delivery(store.as_ref(), d).await;
        if *applied {
            assert_eq!(
                (
                    got.status,
                    got.provider,
                    got.attempts,
                    got.provider_http_status,
                    got.provider_reason.as_deref(),
                    got.last_attempt_at,
                    got.next_attempt_at,
                    got.updated_at,
                ),
                (
                    r.status,
                    r.provider,
                    1,
                    r.provider_http_status,
                    r.provider_reason.as_deref(),
                    r.last_attempt_at,
                    r.next_attempt_at,
                    r.now,
                ),
                "record {}",
                r.delivery_id
            );
            let kept = if r.status == DeliveryStatus::Queued {
                None
            } else {
                Some(claim)
            };
            assert_eq!(
                got.claim_id, kept,
                "a retry releases the claim, a terminal status keeps it"
            );
        } else if r.delivery_id == records[3].delivery_id {
            assert_eq!((got.status, got.updated_at), (DeliveryStatus::Accepted, 3_003));
        } else {
            assert_eq!(
                (got.status, got.attempts, got.claim_id),
                (DeliveryStatus::Queued, 0, Some(claim))
            );
        }
    }

    // One record twice: the first result applies, the second finds it finished.
    let twice = [
        result(&records[4], DeliveryStatus::Rejected, claim, 4),
        result(&records[0], DeliveryStatus::Accepted, claim, 0),
        result(&records[4], DeliveryStatus::Accepted, claim, 5),
    ];
    let mut tx = store.begin().await.unwrap();
    assert_eq!(tx.finish_attempts(&twice).await.unwrap(), vec![true, false, false]);
    tx.commit().await.unwrap();
    let got = read_delivery(store.as_ref(), &records[4]).await;
    assert_eq!(
        (got.status, got.provider_http_status, got.updated_at),
        (DeliveryStatus::Rejected, Some(204), 3_004)
    );
}

/// An attempt's result applies only under the claim it was made with and only while the record
/// is `QUEUED`; a retry releases the claim; terminal statuses never change, and device reports
/// add their times without touching the status.
pub async fn attempts_need_their_claim_and_terminal_statuses_stay(store: Arc<dyn Store>) {
    let (_, m) = bulk_with_message(store.as_ref()).await;
    let records = queued(store.as_ref(), &m, 2, 1_000).await;
    let claim = Uuid::new_v4();
    let mut tx = store.begin().await.unwrap();
    let claimed = tx.claim_deliveries(2_000, 62_000, claim, 10).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(claimed.len(), 2);
    let d = &records[0];
    let result = |status, claim_id, attempts, next| AttemptResult {
        account_id: d.account_id,
        delivery_id: d.delivery_id,
        claim_id,
        status,
        provider: Provider::Apns,
        attempts,
        provider_http_status: Some(500),
        provider_reason: Some("InternalServerError".into()),
        last_attempt_at: Some(2_100),
        next_attempt_at: next,
        now: 2_100,
    };

    // Another claim's answer does not apply.
    let mut tx = store.begin().await.unwrap();
    assert!(
        !tx.finish_attempt(&result(DeliveryStatus::Accepted, Uuid::new_v4(), 1, 0))
            .await
            .unwrap()
    );
    // A retry: QUEUED again, due later, claim released.
    assert!(
        tx.finish_attempt(&result(DeliveryStatus::Queued, claim, 1, 3_000))
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();
    let after_retry = read_delivery(store.as_ref(), d).await;
    assert_eq!(
        (
            after_retry.status,
            after_retry.attempts,
            after_retry.next_attempt_at,
            after_retry.claim_id
        ),
        (DeliveryStatus::Queued, 1, 3_000, None)
    );
    assert_eq!(after_retry.provider, Provider::Apns);
    assert_eq!(after_retry.provider_http_status, Some(500));
    assert_eq!(after_retry.updated_at, 2_100);
    // The old claim is gone with the retry: it cannot finish the record any more.
    let mut tx = store.begin().await.unwrap();
    assert!(
        !tx.finish_attempt(&result(DeliveryStatus::Accepted, claim, 2, 0))
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();

    // Claimed again, accepted: terminal, and nothing changes it afterwards.
    let claim2 = Uuid::new_v4();
    let mut tx = store.begin().await.unwrap();
    let got = tx.claim_deliveries(3_000, 63_000, claim2, 10).await.unwrap();
    assert_eq!(got.len(), 1);
    let mut accepted = result(DeliveryStatus::Accepted, claim2, 2, 63_000);
    accepted.provider_http_status = Some(200);
    accepted.provider_reason = Some("OK".into());
    assert!(tx.finish_attempt(&accepted).await.unwrap());
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    for status in DeliveryStatus::ALL {
        assert!(!tx.finish_attempt(&result(status, claim2, 3, 0)).await.unwrap());
    }
    assert!(
        tx.claim_deliveries(1_000_000, 2_000_000, Uuid::new_v4(), 10)
            .await
            .unwrap()
            .len()
            == 1
    );
    tx.commit().await.unwrap();
    let final_ = read_delivery(store.as_ref(), d).await;
    assert_eq!((final_.status, final_.attempts), (DeliveryStatus::Accepted, 2));
    assert_eq!(final_.provider_reason.as_deref(), Some("OK"));

    // Device reports: only for the installation the record was made to; first report wins; the
    // status stays.
    let push_reg_id = d.push_reg_id.clone().unwrap();
    let mut tx = store.begin().await.unwrap();
    assert_eq!(
        tx.record_device_reports(d.account_id, "someone-else", &[d.delivery_id], 7_000, true)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        tx.record_device_reports(
            d.account_id,
            &push_reg_id,
            &[d.delivery_id, Uuid::new_v4()],
            7_000,
            false
        )
        .await
        .unwrap(),
        1
    );
    assert_eq!(
        tx.record_device_reports(d.account_id, &push_reg_id, &[d.delivery_id], 8_000, false)
            .await
            .unwrap(),
        0,
        "the first delivered report wins"
    );
    assert_eq!(
        tx.record_device_reports(d.account_id, &push_reg_id, &[d.delivery_id], 9_000, true)
            .await
            .unwrap(),
        1
    );
    tx.commit().await.unwrap();
    let reported = read_delivery(store.as_ref(), d).await;
    assert_eq!(
        (reported.status, reported.delivered_at, reported.seen_at),
        (DeliveryStatus::Accepted, Some(7_000), Some(9_000))
    );

    // Counts per status, with the reports.
    let mut tx = store.begin_read().await.unwrap();
    let counts = tx.delivery_counts(d.account_id, &m.message_id).await.unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(counts.count(DeliveryStatus::Accepted), 1);
    assert_eq!(counts.count(DeliveryStatus::Queued), 1);
    assert_eq!(counts.total(), 2);
    assert_eq!((counts.delivered, counts.seen), (1, 1));
}

/// A claimed audience job is held by its chunk transaction: another transaction never gets it
/// with the cursor it had before that chunk committed (it skips it on PostgreSQL, waits for the
/// single writer on SQLite), and the walk sees an application's installations in pushRegId
/// order with their persons.
pub async fn audience_jobs_resume_at_their_cursor(store: Arc<dyn Store>) {
    let (app, m) = bulk_with_message(store.as_ref()).await;
    let other_app = application(app.account_id);
    let owner = person(app.account_id);
    let mut tx = store.begin().await.unwrap();
    tx.insert_application(&other_app).await.unwrap();
    tx.insert_person(&owner).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        let inst = with_token(
            installation(&app, owner.id, 3_000 + i),
            PushServiceType::Firebase,
            &format!("t{i}"),
        );
        ids.push(inst.push_reg_id.clone());
        tx.insert_installation(&inst).await.unwrap();
    }
    tx.insert_installation(&installation(&other_app, owner.id, 3_000))
        .await
        .unwrap();
    tx.insert_audience_job(&AudienceJob {
        account_id: app.account_id,
        message_id: m.message_id.clone(),
        application_id: app.id,
        filter: json!({}),
        target_only_primary: false,
        after_push_reg_id: None,
        created_at: 5_000,
        updated_at: 5_000,
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();
    ids.sort();

    let mut first = store.begin().await.unwrap();
    let job = first.claim_audience_job().await.unwrap().expect("a job");
    let scope = Scope {
        account_id: app.account_id,
        application_id: Some(app.id),
    };
    let chunk = first
        .audience_installations(scope, &Filter::All, job.after_push_reg_id.as_deref(), 3)
        .await
        .unwrap();
    let walked: Vec<String> = chunk.iter().map(|i| i.push_reg_id.clone()).collect();
    assert_eq!(walked, ids[..3]);
    assert!(
        chunk
            .iter()
            .all(|i| i.person_id == owner.id && i.application_id == app.id)
    );
    // A second claimer, while the first chunk is open.
    let second = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut tx = store.begin().await.unwrap();
            let got = tx.claim_audience_job().await.unwrap();
            tx.commit().await.unwrap();
            got
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    first
        .advance_audience_job(app.account_id, &m.message_id, &walked[2], 6_000)
        .await
        .unwrap();
    first.commit().await.unwrap();
    match second.await.unwrap() {
        None => {}
        Some(seen) => assert_eq!(
            seen.after_push_reg_id.as_deref(),
            Some(walked[2].as_str()),
            "a job is never handed out with the cursor of a chunk in progress"
        ),
    }
    // The walk resumes at the cursor and ends with an empty chunk.
    let mut tx = store.begin().await.unwrap();
    let job = tx.claim_audience_job().await.unwrap().unwrap();
    assert_eq!(job.updated_at, 6_000);
    let rest = tx
        .audience_installations(scope, &Filter::All, job.after_push_reg_id.as_deref(), 3)
        .await
        .unwrap();
    assert_eq!(rest.iter().map(|i| i.push_reg_id.clone()).collect::<Vec<_>>(), ids[3..]);
    assert!(
        tx.audience_installations(scope, &Filter::All, Some(&ids[4]), 3)
            .await
            .unwrap()
            .is_empty()
    );
    let elsewhere = Scope {
        account_id: Uuid::new_v4(),
        ..scope
    };
    assert!(
        tx.audience_installations(elsewhere, &Filter::All, None, 3)
            .await
            .unwrap()
            .is_empty(),
        "filtered by account"
    );
    tx.rollback().await.unwrap();
}

/// Compare-and-clear (people.md §2.3): the token goes only if the installation still holds it.
pub async fn compare_and_clear_takes_only_the_held_token(store: Arc<dyn Store>) {
    let (_, app) = seeded(store.as_ref()).await;
    let owner = person(app.account_id);
    let inst = with_token(installation(&app, owner.id, 3_000), PushServiceType::Apns, "abc123");
    let mut tx = store.begin().await.unwrap();
    tx.insert_person(&owner).await.unwrap();
    tx.insert_installation(&inst).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    let reason = TokenClearedReason::Unregistered;
    assert!(
        !tx.clear_token_if_held(app.account_id, &inst.push_reg_id, "other", reason, 4_000)
            .await
            .unwrap()
    );
    assert!(
        !tx.clear_token_if_held(Uuid::new_v4(), &inst.push_reg_id, "abc123", reason, 4_000)
            .await
            .unwrap()
    );
    assert!(
        tx.clear_token_if_held(app.account_id, &inst.push_reg_id, "abc123", reason, 4_000)
            .await
            .unwrap()
    );
    let cleared = tx.installation(&inst.push_reg_id).await.unwrap().unwrap();
    // The batch read of claimed installations: the account's only, unknown ids skipped.
    let ids = [inst.push_reg_id.clone(), "no-such-installation".to_string()];
    assert_eq!(
        tx.installations_by_ids(app.account_id, &ids).await.unwrap(),
        vec![cleared.clone()]
    );
    assert!(tx.installations_by_ids(Uuid::new_v4(), &ids).await.unwrap().is_empty());
    assert!(tx.installations_by_ids(app.account_id, &[]).await.unwrap().is_empty());
    tx.commit().await.unwrap();
    assert_eq!(cleared.push_service_token, None);
    assert_eq!(cleared.token_cleared_reason, Some(TokenClearedReason::Unregistered));
    assert_eq!((cleared.token_cleared_at, cleared.updated_at), (Some(4_000), 4_000));
    assert_eq!(
        cleared.push_service_type,
        Some(PushServiceType::Apns),
        "everything else stays"
    );
}

/// GDPR (management-api.md §8): the export finds the records made to a person's installations;
/// erase takes `pushRegId` and `personId` off them (and off records naming the person), turns the
/// `QUEUED` ones into `FAILED` with reason `ERASED`, and leaves other persons' records alone.
pub async fn erase_anonymises_deliveries(store: Arc<dyn Store>) {
    let (_, m) = bulk_with_message(store.as_ref()).await;
    let person = Uuid::new_v4();
    let other = Uuid::new_v4();
    let mut queued_one = delivery(&m, "inst-1", person, 1_000);
    let mut accepted = delivery(&m, "inst-2", person, 1_000);
    accepted.status = DeliveryStatus::Accepted;
    accepted.provider_http_status = Some(200);
    accepted.provider_reason = Some("OK".into());
    // Made to an installation of the person while it belonged to someone else (before a merge).
    let before_merge = delivery(&m, "inst-3", other, 1_000);
    // Named by the person, to an installation that is gone.
    let gone = delivery(&m, "inst-gone", person, 1_000);
    let unrelated = delivery(&m, "inst-9", other, 1_000);
    queued_one.provider_http_status = Some(500);
    let all = [
        queued_one.clone(),
        accepted.clone(),
        before_merge.clone(),
        gone.clone(),
        unrelated.clone(),
    ];
    let mut tx = store.begin().await.unwrap();
    tx.insert_deliveries(&all).await.unwrap();
    tx.commit().await.unwrap();

    let installations = ["inst-1".to_string(), "inst-2".to_string(), "inst-3".to_string()];
    let mut tx = store.begin_read().await.unwrap();
    let exported = tx
        .deliveries_of_installations(m.account_id, &installations)
        .await
        .unwrap();
    assert!(
        tx.deliveries_of_installations(Uuid::new_v4(), &installations)
            .await
            .unwrap()
            .is_empty()
    );
    tx.rollback().await.unwrap();
    let mut want: Vec<Uuid> = vec![queued_one.delivery_id, accepted.delivery_id, before_merge.delivery_id];
    want.sort();
    assert_eq!(exported.iter().map(|d| d.delivery_id).collect::<Vec<_>>(), want);

    let mut tx = store.begin().await.unwrap();
    let changed = tx
        .anonymise_deliveries(m.account_id, person, &installations, 9_000)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(changed, 4);
    let q = read_delivery(store.as_ref(), &queued_one).await;
    assert_eq!((q.push_reg_id.clone(), q.person_id), (None, None));
    assert_eq!(q.status, DeliveryStatus::Failed);
    assert_eq!(
        (q.provider_http_status, q.provider_reason.as_deref()),
        (None, Some("ERASED"))
    );
    assert_eq!(q.updated_at, 9_000);
    let a = read_delivery(store.as_ref(), &accepted).await;
    assert_eq!(
        (a.push_reg_id.clone(), a.person_id, a.status),
        (None, None, DeliveryStatus::Accepted)
    );
    assert_eq!(
        a.provider_reason.as_deref(),
        Some("OK"),
        "a terminal record keeps its answer"
    );
    assert_eq!(read_delivery(store.as_ref(), &before_merge).await.push_reg_id, None);
    assert_eq!(read_delivery(store.as_ref(), &gone).await.person_id, None);
    assert_eq!(read_delivery(store.as_ref(), &unrelated).await, unrelated);
    // An anonymised QUEUED record is no longer due.
    let mut tx = store.begin().await.unwrap();
    let claimed = tx.claim_deliveries(10_000, 20_000, Uuid::new_v4(), 10).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        claimed.iter().map(|d| d.delivery_id).collect::<Vec<_>>(),
        [unrelated.delivery_id]
    );
}

/// Export's walk of the push and segment tables: per account, counts and keyset pages by primary
/// key (`limit` 1 walks one row at a time, `after` the last key), rows read back field for field
/// (a claimed record keeps its claim and lease, an idempotency record its stored answer), another
/// account's rows never mixed in; the snapshot holds every row of every account by key.
pub async fn push_and_segment_pages_walk_each_account(store: Arc<dyn Store>) {
    use roster_store::audience::Segment;
    use roster_store::push::PushTable;

    let (app, m1) = bulk_with_message(store.as_ref()).await;
    let account = app.account_id;
    let (other_app, other_m) = bulk_with_message(store.as_ref()).await;
    let other = other_app.account_id;
    let mut m2 = message(&app, "bulk-1", "msg-0", 1);
    m2.audience_state = AudienceState::Resolving;
    m2.destination = json!({"type": "MULTIPLE", "filter": {"tags": {"contains": "vip"}}});
    let job = AudienceJob {
        account_id: account,
        message_id: "msg-0".into(),
        application_id: app.id,
        filter: json!({"tags": {"contains": "vip"}}),
        target_only_primary: true,
        after_push_reg_id: Some("4f1c".into()),
        created_at: 5_000,
        updated_at: 5_500,
    };
    let mut claimed = delivery(&m1, "7a0b", Uuid::new_v4(), 9_000);
    claimed.claim_id = Some(Uuid::new_v4());
    claimed.attempts = 1;
    let mut accepted = delivery(&m1, "7a0c", Uuid::new_v4(), 5_000);
    accepted.status = DeliveryStatus::Accepted;
    accepted.provider_http_status = Some(200);
    accepted.delivered_at = Some(6_000);
    accepted.seen_at = Some(6_100);
    let mut erased = delivery(&m1, "7a0d", Uuid::new_v4(), 5_000);
    erased.push_reg_id = None;
    erased.person_id = None;
    erased.status = DeliveryStatus::Failed;
    erased.provider_reason = Some("ERASED".into());
    let done = IdempotencyRecord {
        account_id: account,
        key: "k-2".into(),
        fingerprint: "f".repeat(64),
        owner: Uuid::new_v4(),
        state: IdempotencyState::Done,
        response_status: Some(200),
        response_body: Some(br#"{"bulkId":"bulk-1"}"#.to_vec()),
        created_at: 5_000,
        expires_at: 1_000,
    };
    let running = IdempotencyRecord {
        key: "k-1".into(),
        state: IdempotencyState::Running,
        response_status: None,
        response_body: None,
        ..done.clone()
    };
    let segment = |account_id: Uuid, name: &str, valid: bool| Segment {
        account_id,
        id: Uuid::new_v4(),
        name: name.into(),
        description: valid.then(|| "buyers".into()),
        filter: json!({"tags": {"contains": name}}),
        valid,
        created_at: 3_000,
        updated_at: 3_500,
    };
    let segments = [segment(account, "vip", true), segment(account, "old", false)];
    let other_segment = segment(other, "vip", true);
    let other_delivery = delivery(&other_m, "7a0b", Uuid::new_v4(), 5_000);
    let mut tx = store.begin().await.unwrap();
    tx.insert_message(&m2).await.unwrap();
    tx.insert_audience_job(&job).await.unwrap();
    tx.insert_deliveries(&[
        claimed.clone(),
        accepted.clone(),
        erased.clone(),
        other_delivery.clone(),
    ])
    .await
    .unwrap();
    tx.insert_idempotency_record(&done).await.unwrap();
    tx.insert_idempotency_record(&running).await.unwrap();
    for s in segments.iter().chain([&other_segment]) {
        tx.insert_segment(s).await.unwrap();
    }
    tx.commit().await.unwrap();

    let mut tx = store.begin_read().await.unwrap();
    let mut counts = Vec::new();
    for table in PushTable::ALL {
        counts.push(tx.count_push_rows(account, table).await.unwrap());
    }
    assert_eq!(counts, [1, 2, 1, 3, 2]);
    assert_eq!(tx.count_segments(account).await.unwrap(), 2);
    assert_eq!(tx.count_segments(other).await.unwrap(), 1);
    assert_eq!(tx.count_push_rows(other, PushTable::Delivery).await.unwrap(), 1);
    assert_eq!(tx.count_push_rows(Uuid::new_v4(), PushTable::Bulk).await.unwrap(), 0);

    // One row per page, each page after the last key of the one before.
    let mut walked = Vec::new();
    let mut after = None;
    while let Some(row) = tx.deliveries_page(account, after, 1).await.unwrap().pop() {
        after = Some(row.delivery_id);
        walked.push(row);
    }
    let mut expected = vec![claimed.clone(), accepted.clone(), erased.clone()];
    expected.sort_by_key(|d| d.delivery_id.hyphenated().to_string());
    assert_eq!(walked, expected);
    let mut walked = Vec::new();
    let mut after: Option<String> = None;
    while let Some(row) = tx.messages_page(account, after.as_deref(), 1).await.unwrap().pop() {
        after = Some(row.message_id.clone());
        walked.push(row);
    }
    assert_eq!(walked, [m2, m1.clone()]);
    let keys: Vec<String> = tx
        .idempotency_records_page(account, None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.key)
        .collect();
    assert_eq!(keys, ["k-1", "k-2"]);
    let page = tx.idempotency_records_page(account, Some("k-1"), 10).await.unwrap();
    assert_eq!(page, std::slice::from_ref(&done));
    assert_eq!(
        tx.audience_jobs_page(account, None, 10).await.unwrap(),
        std::slice::from_ref(&job)
    );
    assert!(
        tx.audience_jobs_page(account, Some("msg-0"), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let bulks = tx.bulks_page(account, None, 10).await.unwrap();
    assert_eq!(bulks.iter().map(|b| b.bulk_id.as_str()).collect::<Vec<_>>(), ["bulk-1"]);
    assert!(tx.bulks_page(account, Some("bulk-1"), 10).await.unwrap().is_empty());
    let mut sorted = segments.to_vec();
    sorted.sort_by_key(|s| s.id.hyphenated().to_string());
    assert_eq!(tx.segments_page(account, None, 10).await.unwrap(), sorted);
    assert_eq!(
        tx.segments_page(account, Some(sorted[0].id), 10).await.unwrap(),
        sorted[1..]
    );
    assert_eq!(
        tx.segments_page(other, None, 10).await.unwrap(),
        std::slice::from_ref(&other_segment)
    );
    assert_eq!(
        tx.deliveries_page(other, None, 10).await.unwrap(),
        std::slice::from_ref(&other_delivery)
    );

    // The snapshot: every account's rows, by (account, key).
    let snapshot = tx.snapshot().await.unwrap();
    tx.rollback().await.unwrap();
    let by_key = |a: Uuid, key: String| (a.hyphenated().to_string(), key);
    let mut keys: Vec<_> = snapshot
        .deliveries
        .iter()
        .map(|d| by_key(d.account_id, d.delivery_id.to_string()))
        .collect();
    assert_eq!(keys.len(), 4);
    let unsorted = keys.clone();
    keys.sort();
    assert_eq!(unsorted, keys);
    assert!(snapshot.deliveries.contains(&claimed) && snapshot.deliveries.contains(&other_delivery));
    assert_eq!(snapshot.segments.len(), 3);
    assert!(snapshot.segments.contains(&other_segment));
    assert_eq!(snapshot.bulks.len(), 2);
    assert_eq!(snapshot.messages.len(), 3);
    assert_eq!(snapshot.audience_jobs, std::slice::from_ref(&job));
    assert_eq!(snapshot.idempotency_records.len(), 2);
    assert!(snapshot.idempotency_records.contains(&done));
}
